// `npx tsx bench/compare.ts BEFORE.json AFTER.json`: a Markdown before/after table from two
// `npm run bench` results: per component the first run, the steady state and what the first run cost
// (faults, system time), then the end-to-end rows with their ratio to the sum of the components.
// Times are also given as a share of the peak measured in the same run, the only figure that
// survives a change of load between the two runs.
import { readFileSync } from "node:fs";
import type { CliResult, ComponentResult, PeakResult } from "./types.js";
import { median } from "./usage.js";

interface BenchJson {
  machine: { loadAverage: number[] };
  peak?: { gflops: number; start?: PeakResult; end?: PeakResult };
  sumOfComponentsMs: number | null;
  components: (ComponentResult | CliResult | { what: string; skipped: string })[];
  loadAverages?: { what: string; before: number; after: number }[];
}

const read = (p: string) => JSON.parse(readFileSync(p, "utf8")) as BenchJson;
const s = (ms: number | undefined) => (ms === undefined ? "-" : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const k = (n: number | undefined) => (n === undefined ? "-" : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
const row = (b: BenchJson, what: string) => b.components.find((c) => c.what === what && !("skipped" in c));
const load = (b: BenchJson, what: string) => {
  const l = b.loadAverages?.find((x) => x.what === what);
  return l ? `${l.before.toFixed(1)}-${l.after.toFixed(1)}` : "-";
};

export function compare(before: BenchJson, after: BenchJson): string {
  const out: string[] = [];
  const peaks = (b: BenchJson) => `${b.peak?.start?.gflops.toFixed(0) ?? "-"} / ${b.peak?.end?.gflops.toFixed(0) ?? "-"}`;
  out.push(`Peak at start / end of each run (GFLOP/s): before ${peaks(before)}, after ${peaks(after)}.`, "");
  out.push("| component | first run (before → after) | steady median | first / steady | first-run minor faults | first-run system CPU | peak RSS MiB | load avg (before; after) |");
  out.push("|---|---|---|---|---|---|---|---|");
  for (const what of ["text-encoder", "vae-encode", "unet-b1", "unet-b2", "vae-decode"]) {
    const [b, a] = [row(before, what), row(after, what)] as (ComponentResult | undefined)[];
    if (!b || !a) continue;
    out.push(
      `| ${what} | ${s(b.first.wallMs)} → ${s(a.first.wallMs)} | ${s(b.medianMs)} → ${s(a.medianMs)} | ${(b.first.wallMs / b.medianMs).toFixed(2)} → ${(a.first.wallMs / a.medianMs).toFixed(2)} | ${k(b.first.minorFaults)} → ${k(a.first.minorFaults)} | ${s(b.first.systemMs)} → ${s(a.first.systemMs)} | ${b.peakRssMB.toFixed(0)} → ${a.peakRssMB.toFixed(0)} | ${load(before, what)}; ${load(after, what)} |`,
    );
  }
  out.push("", "| end to end | wall (before → after) | sum of steady components | ratio | minor faults | system CPU | peak RSS MiB |");
  out.push("|---|---|---|---|---|---|---|");
  for (const what of ["img2img", "img2img-cli", "img2img-turbo-cli"]) {
    const [b, a] = [row(before, what), row(after, what)];
    if (!b || !a) continue;
    if ("command" in b && "command" in a) {
      const m = (r: CliResult, key: "minorFaults" | "systemMs" | "peakRssMB") => median(r.runs.map((x) => x[key]));
      const ratio = (r: CliResult, j: BenchJson) => (what === "img2img-cli" && j.sumOfComponentsMs ? (r.medianMs / j.sumOfComponentsMs).toFixed(2) : "-");
      const sum = (j: BenchJson) => (what === "img2img-cli" ? s(j.sumOfComponentsMs ?? undefined) : "-");
      out.push(`| ${what} (one process per image) | ${s(b.medianMs)} → ${s(a.medianMs)} | ${sum(before)} → ${sum(after)} | ${ratio(b, before)} → ${ratio(a, after)} | ${k(m(b, "minorFaults"))} → ${k(m(a, "minorFaults"))} | ${s(m(b, "systemMs"))} → ${s(m(a, "systemMs"))} | ${m(b, "peakRssMB").toFixed(0)} → ${m(a, "peakRssMB").toFixed(0)} |`);
    } else {
      const [cb, ca] = [b, a] as ComponentResult[];
      const r = (ms: number, j: BenchJson) => (j.sumOfComponentsMs ? (ms / j.sumOfComponentsMs).toFixed(2) : "-");
      out.push(`| img2img, warm process, first image | ${s(cb.first.wallMs)} → ${s(ca.first.wallMs)} | ${s(before.sumOfComponentsMs ?? undefined)} → ${s(after.sumOfComponentsMs ?? undefined)} | ${r(cb.first.wallMs, before)} → ${r(ca.first.wallMs, after)} | ${k(cb.first.minorFaults)} → ${k(ca.first.minorFaults)} | ${s(cb.first.systemMs)} → ${s(ca.first.systemMs)} | - |`);
      out.push(`| img2img, warm process, later images | ${s(cb.medianMs)} → ${s(ca.medianMs)} | ${s(before.sumOfComponentsMs ?? undefined)} → ${s(after.sumOfComponentsMs ?? undefined)} | ${r(cb.medianMs, before)} → ${r(ca.medianMs, after)} | ${k(median(cb.steady.map((u) => u.minorFaults)))} → ${k(median(ca.steady.map((u) => u.minorFaults)))} | ${s(median(cb.steady.map((u) => u.systemMs)))} → ${s(median(ca.steady.map((u) => u.systemMs)))} | ${cb.peakRssMB.toFixed(0)} → ${ca.peakRssMB.toFixed(0)} |`);
    }
  }
  return out.join("\n");
}

const [b, a] = process.argv.slice(2);
if (!b || !a) {
  console.error("usage: npx tsx bench/compare.ts BEFORE.json AFTER.json");
  process.exit(2);
}
console.log(compare(read(b), read(a)));
