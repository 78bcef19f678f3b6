// `npx tsx bench/compare.ts BEFORE.json AFTER.json`: a Markdown before/after table from two
// `npm run bench` results: per component the first run beside the steady state, with what the first
// run cost (page faults, system CPU); then the end-to-end rows against the sum of their components.
// Wall times move with the machine's load; CPU time (user + system) and ratios measured within one
// run much less, so both are given.
import { readFileSync } from "node:fs";
import { IMG2IMG } from "./img2img.js";
import { cpuMs, isCli, isSkipped, type Row, steadyCpuMs, sumOfComponents, sumOfComponentsCpu } from "./report.js";
import type { CliResult, ComponentResult, PeakResult } from "./types.js";
import { median } from "./usage.js";

interface BenchJson {
  peak?: { gflops: number; start?: PeakResult; end?: PeakResult };
  components: Row[];
  sumOfComponentsMs?: number | null;
  sumOfComponentsCpuMs?: number | null;
  loadAverages?: { what: string; before: number; after: number }[];
}

const read = (p: string) => JSON.parse(readFileSync(p, "utf8")) as BenchJson;
const s = (ms: number | null | undefined) => (ms === null || ms === undefined ? "-" : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const k = (n: number | undefined) => (n === undefined ? "-" : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
const x = (v: number | null) => (v === null ? "-" : v.toFixed(2));
const row = (b: BenchJson, what: string) => b.components.find((c) => c.what === what && !isSkipped(c));
const load = (b: BenchJson, what: string) => {
  const l = b.loadAverages?.find((y) => y.what === what);
  return l ? `${l.before.toFixed(1)}-${l.after.toFixed(1)}` : "-";
};
const steps = Math.floor(IMG2IMG.steps * IMG2IMG.strength);

export function compare(before: BenchJson, after: BenchJson): string {
  const out: string[] = [];
  const peaks = (b: BenchJson) => `${b.peak?.start?.gflops.toFixed(0) ?? "-"} / ${b.peak?.end?.gflops.toFixed(0) ?? "-"}`;
  out.push(`Peak (best MatMul or 3x3 Conv, GFLOP/s) at the start / end of each run: before ${peaks(before)}, after ${peaks(after)}.`, "");
  out.push(
    "| component | first run | steady (median) | first / steady | first-run CPU | steady CPU | first-run minor faults | first-run system CPU | peak RSS MiB | load average |",
  );
  out.push("|---|---|---|---|---|---|---|---|---|---|");
  for (const what of ["text-encoder", "vae-encode", "unet-b1", "unet-b2", "vae-decode"]) {
    const [b, a] = [row(before, what), row(after, what)] as (ComponentResult | undefined)[];
    if (!b || !a) continue;
    const ab = <T>(fn: (r: ComponentResult) => T, fmt: (v: T) => string) => `${fmt(fn(b))} → ${fmt(fn(a))}`;
    out.push(
      `| ${what} | ${ab((r) => r.first.wallMs, s)} | ${ab((r) => r.medianMs, s)} | ${ab((r) => r.first.wallMs / r.medianMs, x)} | ${ab((r) => cpuMs(r.first), s)} | ${ab(steadyCpuMs, s)} | ${ab((r) => r.first.minorFaults, k)} | ${ab((r) => r.first.systemMs, s)} | ${ab(
        (r) => r.peakRssMB,
        (v) => v.toFixed(0),
      )} | ${load(before, what)} → ${load(after, what)} |`,
    );
  }
  out.push("", "| end to end | wall | / sum of steady components (wall) | CPU | / sum of steady components (CPU) | minor faults | system CPU | peak RSS MiB |");
  out.push("|---|---|---|---|---|---|---|---|");
  // the bench's own sums when written (both passes of the components), else from the component rows
  const sums = (j: BenchJson) => ({
    wall: j.sumOfComponentsMs ?? sumOfComponents(j.components, steps),
    cpu: j.sumOfComponentsCpuMs ?? sumOfComponentsCpu(j.components, steps),
  });
  const [sb, sa] = [sums(before), sums(after)];
  const ratio = (v: number, sum: number | null) => (sum ? v / sum : null);
  for (const what of ["img2img", "img2img-cli", "img2img-turbo-cli"]) {
    const [b, a] = [row(before, what), row(after, what)];
    if (!b || !a) continue;
    if (isCli(b) && isCli(a)) {
      const exact = what === "img2img-cli";
      const m = (r: CliResult, key: "minorFaults" | "systemMs" | "peakRssMB") => median(r.runs.map((y) => y[key]));
      const cpu = (r: CliResult) => median(r.runs.map(cpuMs));
      out.push(
        `| ${what} (one process per image) | ${s(b.medianMs)} → ${s(a.medianMs)} | ${exact ? `${x(ratio(b.medianMs, sb.wall))} → ${x(ratio(a.medianMs, sa.wall))}` : "-"} | ${s(cpu(b))} → ${s(cpu(a))} | ${exact ? `${x(ratio(cpu(b), sb.cpu))} → ${x(ratio(cpu(a), sa.cpu))}` : "-"} | ${k(m(b, "minorFaults"))} → ${k(m(a, "minorFaults"))} | ${s(m(b, "systemMs"))} → ${s(m(a, "systemMs"))} | ${m(b, "peakRssMB").toFixed(0)} → ${m(a, "peakRssMB").toFixed(0)} |`,
      );
    } else {
      const [cb, ca] = [b, a] as ComponentResult[];
      out.push(
        `| img2img, warm process, first image | ${s(cb.first.wallMs)} → ${s(ca.first.wallMs)} | ${x(ratio(cb.first.wallMs, sb.wall))} → ${x(ratio(ca.first.wallMs, sa.wall))} | ${s(cpuMs(cb.first))} → ${s(cpuMs(ca.first))} | ${x(ratio(cpuMs(cb.first), sb.cpu))} → ${x(ratio(cpuMs(ca.first), sa.cpu))} | ${k(cb.first.minorFaults)} → ${k(ca.first.minorFaults)} | ${s(cb.first.systemMs)} → ${s(ca.first.systemMs)} | - |`,
        `| img2img, warm process, later images | ${s(cb.medianMs)} → ${s(ca.medianMs)} | ${x(ratio(cb.medianMs, sb.wall))} → ${x(ratio(ca.medianMs, sa.wall))} | ${s(steadyCpuMs(cb))} → ${s(steadyCpuMs(ca))} | ${x(ratio(steadyCpuMs(cb), sb.cpu))} → ${x(ratio(steadyCpuMs(ca), sa.cpu))} | ${k(median(cb.steady.map((u) => u.minorFaults)))} → ${k(median(ca.steady.map((u) => u.minorFaults)))} | ${s(median(cb.steady.map((u) => u.systemMs)))} → ${s(median(ca.steady.map((u) => u.systemMs)))} | ${cb.peakRssMB.toFixed(0)} → ${ca.peakRssMB.toFixed(0)} |`,
      );
    }
  }
  out.push(
    "",
    `Sum of steady components (2 text encodes + VAE encode + ${steps} UNet batch-2 calls + VAE decode): wall ${s(sb.wall)} → ${s(sa.wall)}, CPU ${s(sb.cpu)} → ${s(sa.cpu)}.`,
  );
  return out.join("\n");
}

const [b, a] = process.argv.slice(2);
if (!b || !a) {
  console.error("usage: npx tsx bench/compare.ts BEFORE.json AFTER.json");
  process.exit(2);
}
console.log(compare(read(b), read(a)));
