// The benchmark's output: a human table, a per-op-type breakdown of each component's profiled
// run, machine info, and the same figures as JSON.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname } from "node:path";
import type { ComponentResult, PeakResult, Skipped } from "./types.js";

export type Row = ComponentResult | Skipped;
export const isSkipped = (r: Row): r is Skipped => "skipped" in r;

export function machineInfo(threads: number) {
  const require = createRequire(import.meta.url);
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
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

/** GFLOP/s of a row at its median time (null without a FLOP count). */
export const gflops = (r: ComponentResult): number | null => (r.flops === null ? null : r.flops / r.medianMs / 1e6);

const f = (v: number | null | undefined, digits = 0): string => (v === null || v === undefined ? "-" : v.toFixed(digits));
const sec = (ms: number | null | undefined): string => (ms === null || ms === undefined ? "-" : (ms / 1000).toFixed(1));

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function summaryTable(rows: Row[], peak: PeakResult | undefined): string {
  const body = rows.map((r) => {
    if (isSkipped(r)) return [r.what, "skipped", "", "", "", "", "", "", "", ""];
    const gf = gflops(r);
    return [
      r.what,
      f(r.medianMs),
      f(r.minMs),
      f(r.flops === null ? null : r.flops / 1e9, 1),
      f(gf, 1),
      f(gf !== null && peak ? (100 * gf) / peak.gflops : null, 1),
      f(r.peakRssMB),
      sec(r.buildMs),
      sec(r.loadColdMs),
      sec(r.loadWarmMs),
    ];
  });
  const head = ["component", "median ms", "min ms", "GFLOP", "GFLOP/s", "% peak", "peak RSS MB", "build s", "load cold s", "load warm s"];
  const notes = rows.flatMap((r) => (isSkipped(r) ? [`  ${r.what}: skipped: ${r.skipped}`] : r.note ? [`  ${r.what}: ${r.note}`] : []));
  return [table(head, body), ...notes].join("\n");
}

/** Where one component's profiled run spent its time, per op type (most time first). */
export function opBreakdown(r: ComponentResult, top = 12): string {
  if (!r.profile) return "";
  const { ops, runUs, kernelUs } = r.profile;
  const rows = ops.slice(0, top).map((o) => [
    o.opType,
    f(o.count),
    f(o.timeUs / 1000, 1),
    f((100 * o.timeUs) / kernelUs, 1),
    o.flops ? f(o.flops / 1e9, 1) : "-",
    o.flops ? f(o.flops / o.timeUs / 1e3, 1) : "-",
  ]);
  const rest = ops.slice(top);
  if (rest.length) {
    const us = rest.reduce((a, o) => a + o.timeUs, 0);
    rows.push([`(${rest.length} more)`, f(rest.reduce((a, o) => a + o.count, 0)), f(us / 1000, 1), f((100 * us) / kernelUs, 1), "-", "-"]);
  }
  const title = `${r.what} (profiled run: ${f(runUs / 1000)} ms, kernels ${f(kernelUs / 1000)} ms)`;
  return `${title}\n${table(["op", "count", "ms", "% time", "GFLOP", "GFLOP/s"], rows)}`;
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
}
