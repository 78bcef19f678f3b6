// The benchmark's output: the component table (first run beside steady state, against the measured
// peak), the end-to-end table (warm process and CLI against the sum of the components), per-op
// first-vs-steady profiles, machine info, and the same figures as JSON.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, loadavg, totalmem } from "node:os";
import { dirname } from "node:path";
import { cpuInfo, describeCpu } from "./cpu.js";
import type { CliResult, ComponentResult, PeakResult, RunProfile, Skipped } from "./types.js";
import { median } from "./usage.js";

export type Row = ComponentResult | CliResult | Skipped;
export const isSkipped = (r: Row): r is Skipped => "skipped" in r;
export const isCli = (r: Row): r is CliResult => !isSkipped(r) && "command" in r;

export function machineInfo(threads: number) {
  const require = createRequire(import.meta.url);
  const cpu = cpuInfo();
  return {
    cpu,
    description: describeCpu(cpu),
    availableParallelism: availableParallelism(),
    totalMemoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    platform: `${process.platform} ${process.arch}`,
    node: process.version,
    onnxruntime: (require("onnxruntime-node/package.json") as { version: string }).version,
    threads,
    /** 1, 5, 15-minute load averages when the bench started: other work on the machine skews timings. */
    loadAverage: loadavg().map((x) => +x.toFixed(2)),
  };
}

/** User + system CPU time: on a shared machine it moves much less with the load than wall time. */
export const cpuMs = (u: { userMs: number; systemMs: number }): number => u.userMs + u.systemMs;
export const steadyCpuMs = (r: ComponentResult): number => median(r.steady.map(cpuMs));

/** GFLOP/s of a row at its median time (null without a FLOP count). */
export const gflops = (r: ComponentResult): number | null => (r.flops === null ? null : r.flops / r.medianMs / 1e6);

const f = (v: number | null | undefined, digits = 0): string => (v === null || v === undefined ? "-" : v.toFixed(digits));
const k = (v: number | null | undefined): string => (v === null || v === undefined ? "-" : `${(v / 1000).toFixed(0)}k`);

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The per-component table: first run and steady state side by side. */
export function componentTable(rows: Row[], peak: PeakResult | undefined): string {
  const body = rows
    .filter((r): r is ComponentResult | Skipped => !isCli(r))
    .map((r) => {
      if (isSkipped(r)) return [r.what, "skipped", ...Array(14).fill("")];
      const gf = gflops(r);
      const steadyFaults = median(r.steady.map((u) => u.minorFaults));
      const steadySys = median(r.steady.map((u) => u.systemMs));
      return [
        r.what,
        f(r.first.wallMs),
        f(r.medianMs),
        f(r.minMs),
        f(r.first.wallMs / r.medianMs, 2),
        f(cpuMs(r.first)),
        f(steadyCpuMs(r)),
        f(r.flops === null ? null : r.flops / 1e9, 1),
        f(gf, 1),
        f(gf !== null && peak ? (100 * gf) / peak.gflops : null, 1),
        k(r.first.minorFaults),
        f(r.first.systemMs),
        k(steadyFaults),
        f(steadySys),
        f(r.peakRssMB),
        f(r.load.wallMs),
      ];
    });
  const head = [
    "component",
    "first ms",
    "median ms",
    "min ms",
    "first/med",
    "1st CPU ms",
    "CPU ms",
    "GFLOP",
    "GFLOP/s",
    "% peak",
    "1st faults",
    "1st sys ms",
    "faults",
    "sys ms",
    "peak RSS MB",
    "load ms",
  ];
  const notes = rows.flatMap((r) => (isSkipped(r) ? [`  ${r.what}: skipped: ${r.skipped}`] : !isCli(r) && r.note ? [`  ${r.what}: ${r.note}`] : []));
  return [table(head, body), ...notes].join("\n");
}

/** What one img2img runs, summed over the component rows: 2 text encodes (CFG; SDXL: with both encoders) + encode + steps x UNet batch 2 + decode. */
function sumOver(rows: Row[], steps: number, field: (r: ComponentResult) => number | null): number | null {
  const v = (what: string) => {
    const r = rows.find((x) => x.what === what);
    return r && !isSkipped(r) && !isCli(r) ? field(r as ComponentResult) : null;
  };
  const parts = [v("text-encoder"), v("vae-encode"), v("unet-b2"), v("vae-decode")];
  if (parts.some((p) => p === null)) return null;
  const [te, enc, unet, dec] = parts as number[];
  const te2 = rows.some((x) => x.what === "text-encoder-2") ? v("text-encoder-2") : 0; // SDXL's second encoder
  if (te2 === null) return null;
  return 2 * (te + te2) + enc + steps * unet + dec;
}

/** The components summed for the end-to-end yardstick (sumOver). */
export const SUMMED_COMPONENTS = ["text-encoder", "text-encoder-2", "vae-encode", "unet-b2", "vae-decode"] as const;

/**
 * `rows` with each component's steady runs joined by those of `again` (the same component measured once more
 * after the end-to-end rows), its median taken over both: a sum that brackets the host's drift during the run.
 */
export function withRecheck(rows: Row[], again: Row[]): Row[] {
  return rows.map((r) => {
    const x = again.find((y) => y.what === r.what);
    if (!x || isSkipped(r) || isSkipped(x) || isCli(r) || isCli(x)) return r;
    const steady = [...(r as ComponentResult).steady, ...(x as ComponentResult).steady];
    return { ...(r as ComponentResult), steady, medianMs: median(steady.map((u) => u.wallMs)), minMs: Math.min(...steady.map((u) => u.wallMs)) };
  });
}

/** Steady-state (median) time of the components one img2img runs: the yardstick of the end-to-end rows. */
export const sumOfComponents = (rows: Row[], steps: number): number | null => sumOver(rows, steps, (r) => r.medianMs);

/** The same in CPU time (user + system), the load-robust yardstick. */
export const sumOfComponentsCpu = (rows: Row[], steps: number): number | null => sumOver(rows, steps, steadyCpuMs);

/** FLOPs of one img2img, from the component rows' profiles. */
export const img2imgFlops = (rows: Row[], steps: number): number | null => sumOver(rows, steps, (r) => r.flops);

/** The end-to-end table: warm-process and CLI img2img against the sum of the steady-state components. */
export function endToEndTable(rows: Row[], steps: number, peak: PeakResult | undefined): string {
  const sum = sumOfComponents(rows, steps);
  const sumCpu = sumOfComponentsCpu(rows, steps);
  const flops = img2imgFlops(rows, steps);
  const rate = (ms: number, exact: boolean) => (exact && flops ? flops / ms / 1e6 : null);
  const pct = (gf: number | null) => f(gf !== null && peak ? (100 * gf) / peak.gflops : null, 1);
  const body: string[][] = [];
  const line = (
    what: string,
    ms: number,
    min: number | null,
    exact: boolean,
    cpu: number,
    faults: number,
    sys: number,
    rss: number | null,
    startup: number | null,
  ) => {
    const gf = rate(ms, exact);
    const cpuRatio = exact && sumCpu ? f(cpu / sumCpu, 2) : "-";
    body.push([
      what,
      f(ms),
      f(min),
      exact ? f(sum) : "-",
      exact && sum ? f(ms / sum, 2) : "-",
      f(cpu),
      exact ? f(sumCpu) : "-",
      cpuRatio,
      f(gf, 1),
      pct(gf),
      k(faults),
      f(sys),
      f(rss),
      f(startup),
    ]);
  };
  for (const r of rows) {
    if (isSkipped(r) || !(r.what === "img2img" || isCli(r))) continue;
    if (isCli(r)) {
      const m = (key: keyof CliResult["runs"][number]) => median(r.runs.map((x) => x[key] as number));
      line(r.what, r.medianMs, r.minMs, r.what === "img2img-cli", median(r.runs.map(cpuMs)), m("minorFaults"), m("systemMs"), m("peakRssMB"), r.startupMs);
    } else {
      const c = r as ComponentResult;
      line("img2img (warm process, first image)", c.first.wallMs, null, true, cpuMs(c.first), c.first.minorFaults, c.first.systemMs, null, null);
      line(
        "img2img (warm process, later images)",
        c.medianMs,
        c.minMs,
        true,
        steadyCpuMs(c),
        median(c.steady.map((u) => u.minorFaults)),
        median(c.steady.map((u) => u.systemMs)),
        c.peakRssMB,
        null,
      );
    }
  }
  const head = [
    "end to end",
    "median ms",
    "min ms",
    "sum of parts ms",
    "ratio",
    "CPU ms",
    "sum of parts CPU ms",
    "CPU ratio",
    "GFLOP/s",
    "% peak",
    "minor faults",
    "sys ms",
    "peak RSS MB",
    "startup ms",
  ];
  return table(head, body);
}

/** Where a component's first and steady runs spent their time, per op type (most first-run time first). */
export function profileTable(what: string, p: { first: RunProfile; steady: RunProfile }, top = 10): string {
  const steady = new Map(p.steady.ops.map((o) => [o.opType, o]));
  const rows = p.first.ops.slice(0, top).map((o) => {
    const s = steady.get(o.opType);
    return [
      o.opType,
      f(o.count),
      f(o.timeUs / 1000, 1),
      f(s ? s.timeUs / 1000 : null, 1),
      f(s ? o.timeUs / s.timeUs : null, 2),
      o.flops ? f(o.flops / 1e9, 1) : "-",
      o.flops && s ? f(o.flops / s.timeUs / 1e3, 1) : "-",
    ];
  });
  const title = `${what}: profiled first run ${f(p.first.runUs / 1000)} ms (kernels ${f(p.first.kernelUs / 1000)}), second run ${f(p.steady.runUs / 1000)} ms (kernels ${f(p.steady.kernelUs / 1000)})`;
  return `${title}\n${table(["op", "count", "first ms", "steady ms", "first/steady", "GFLOP", "GFLOP/s steady"], rows)}`;
}

export function peakTable(p: PeakResult): string {
  const rows = [...p.matmul, ...p.conv].map((x) => [x.label, f(x.minMs, 1), f(x.medianMs, 1), f(x.gflops, 1)]);
  return table(["kernel", "best ms", "median ms", "GFLOP/s (best)"], rows);
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}
