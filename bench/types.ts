// Messages between the benchmark's parent process (bench.ts) and its per-component child
// processes (worker.ts): what to measure, and what came back. Each child is one process so
// that its first run and its peak RSS are its own.
import type { OpStats } from "../src/graph/flops.js";
import type { Arch, GraphComponent } from "./sd15.js";
import type { Usage } from "./usage.js";

export type ComponentName = GraphComponent | "img2img" | "img2img-cli" | "img2img-turbo-cli";

export interface Task {
  /** "build": build the graphs of `only` that the cache lacks; "profile-<component>": the profiled first + steady run. */
  what: "peak" | "build" | ComponentName | `profile-${GraphComponent}`;
  /** The architecture (default "sd15"). */
  arch?: Arch;
  size: number;
  runs: number;
  threads: number;
  cacheDir: string;
  seed: number;
  only: ComponentName[];
  /** Drop the graphs of `only` first, so the build is timed cold ("build" only). */
  rebuild: boolean;
}

export interface PeakKernel {
  label: string;
  flops: number;
  /** From the fastest run. */
  gflops: number;
  runsMs: number[];
  medianMs: number;
  minMs: number;
}

export interface PeakResult {
  what: "peak";
  /** The best of every kernel below: the "% of peak" yardstick. */
  gflops: number;
  matmulGflops: number;
  convGflops: number;
  /** Square MatMuls (constant, prepacked right operand). */
  matmul: PeakKernel[];
  /** 3x3 convolutions, C -> C channels. */
  conv: PeakKernel[];
}

/** A profile summary with where the run's time went, per op type. */
export interface RunProfile {
  runUs: number;
  kernelUs: number;
  flops: number;
  ops: OpStats[];
}

export interface ComponentResult {
  what: GraphComponent | "img2img";
  size: number;
  /** Session create in a new process (graph cached, files in the page cache). */
  load: Usage;
  /** The first run in that process: what a one-image CLI run pays for every model. */
  first: Usage;
  /** The runs after it (the warm-process figures). */
  steady: Usage[];
  medianMs: number;
  minMs: number;
  /** Conv/MatMul/Gemm/attention FLOPs of one run, from the ORT profile (null when unknown). */
  flops: number | null;
  /** Per-op profiles of a first and a steady-state run (a separate process with profiling on). */
  profile?: { first: RunProfile; steady: RunProfile };
  peakRssMB: number;
  /** img2img only: the model's float32 weights (graph files), the base of the RSS bound. */
  weightsMB?: number;
  /** img2img only: UNet calls per run, and the phase timings of the first and median runs. */
  stepsRun?: number;
  phasesMs?: { first: Record<string, number>; steady: Record<string, number> };
  note?: string;
}

/** A whole img2img through the CLI, one process per image (bin/reimagine.js). */
export interface CliResult {
  what: "img2img-cli" | "img2img-turbo-cli";
  command: string[];
  /** Per process: wall, CPU, faults and peak RSS as GNU time reports them for the whole process. */
  runs: { wallMs: number; userMs: number; systemMs: number; minorFaults: number; majorFaults: number; peakRssMB: number; timings?: Record<string, number> }[];
  medianMs: number;
  minMs: number;
  /** `reimagine --version`: process start-up alone. */
  startupMs: number;
  /** The untimed run that built the folder's graphs, when the cache lacked them. */
  prepareMs: number | null;
  note?: string;
}

export interface Skipped {
  what: ComponentName | "peak";
  skipped: string;
}

export type WorkerReply =
  | { ok: true; result: PeakResult | ComponentResult | CliResult | Skipped | { built: string[] } | { profile: { first: RunProfile; steady: RunProfile } } }
  | { ok: false; error: string };
