// Messages between the benchmark's parent process (bench.ts) and its per-component child
// processes (worker.ts): what to measure, and what came back. Each child is one process so
// that its peak RSS is its own.
import type { OpStats } from "../src/graph/flops.js";
import type { GraphComponent } from "./sd15.js";

export type ComponentName = GraphComponent | "img2img";

export interface Task {
  what: "peak" | ComponentName;
  size: number;
  runs: number;
  threads: number;
  cacheDir: string;
  seed: number;
  /** Drop this component's cached graph first, so the build is timed cold. */
  rebuild: boolean;
}

export interface RunTimes {
  /** The one warm-up run (not in the statistics). */
  warmupMs: number;
  runsMs: number[];
  medianMs: number;
  minMs: number;
}

export interface PeakResult extends RunTimes {
  what: "peak";
  /** MatMul [m, k] x [k, n] with the [k, n] operand a constant (pre-packed, like model weights). */
  m: number;
  k: number;
  n: number;
  flops: number;
  /** From the fastest run. */
  gflops: number;
  peakRssMB: number;
}

export interface ComponentResult extends RunTimes {
  what: ComponentName;
  size: number;
  /** Graph build + save time when this process built it; null when the cache had it. */
  buildMs: number | null;
  /** First session create (right after the build, or the first load in this process). */
  loadColdMs: number;
  /** A second, new session on the cached graph (file already in the page cache). */
  loadWarmMs: number | null;
  /** Conv/MatMul/Gemm/attention FLOPs of one run, from the ORT profile (null when unknown). */
  flops: number | null;
  profile?: { runUs: number; kernelUs: number; ops: OpStats[] };
  peakRssMB: number;
  /** img2img only: UNet calls per run, and the median run's phase timings. */
  stepsRun?: number;
  phasesMs?: Record<string, number>;
  note?: string;
}

export interface Skipped {
  what: ComponentName | "peak";
  skipped: string;
}

export type WorkerReply = { ok: true; result: PeakResult | ComponentResult | Skipped } | { ok: false; error: string };
