// Times one SD 1.5 graph in this process: cold build (cachedGraph), cold and warm session create,
// one warm-up + N timed runs, then one profiled run on a fresh session for the FLOP count and
// per-op breakdown (profiling stays off in the timed runs so it cannot slow them).
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDir } from "../src/graph/builder.js";
import { cachedGraph, graphHash } from "../src/graph/cache.js";
import { readProfile, summarizeProfile } from "../src/graph/flops.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { RandomWeights } from "../src/weights/random.js";
import { sd15Graph, type GraphComponent } from "./sd15.js";
import type { ComponentResult, RunTimes, Task } from "./types.js";

export const now = (): number => performance.now();

/** Peak resident set of this process so far, MiB (maxRSS is in KiB on Linux and macOS). */
export const peakRssMB = (): number => process.resourceUsage().maxRSS / 1024;

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One warm-up call, then `runs` timed calls. */
export async function timeRuns(runs: number, fn: () => Promise<unknown>, label: string): Promise<RunTimes> {
  let t = now();
  await fn();
  const warmupMs = now() - t;
  log(`${label}: warm-up ${fmtMs(warmupMs)}`);
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = now();
    await fn();
    runsMs.push(now() - t);
    log(`${label}: run ${i + 1}/${runs} ${fmtMs(runsMs[i])}`);
  }
  return { warmupMs, runsMs, medianMs: median(runsMs), minMs: Math.min(...runsMs) };
}

export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);

/** Progress goes to stderr so stdout keeps only the report. */
export const log = (msg: string): void => void process.stderr.write(`  [bench] ${msg}\n`);

/** Runs `feeds` once on a profiling session and returns the session's load time and the profile summary. */
async function profiledRun(path: string, threads: number, feeds: Record<string, TensorData>) {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-profile-"));
  try {
    const t = now();
    const session = await ModelSession.load(path, { threads, profileFilePrefix: join(dir, "ort") });
    const loadMs = now() - t;
    await session.run(feeds);
    await session.release(); // ORT writes the profile when the session ends
    const file = readdirSync(dir).find((f) => f.endsWith(".json"));
    if (!file) throw new Error(`ONNX Runtime wrote no profile into ${dir}`);
    return { loadMs, summary: summarizeProfile(readProfile(join(dir, file))) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function measureGraph(name: GraphComponent, task: Task): Promise<ComponentResult> {
  const weights = new RandomWeights(task.seed);
  const c = sd15Graph(name, task.size, weights);
  const key = { kind: c.kind, config: c.config, weights };
  if (task.rebuild) removeDir(join(task.cacheDir, "graphs", `${c.kind}-${graphHash(key, c.build().structureHash())}`));

  // 1. build (only when the cache lacks the graph) and the first session
  let t = now();
  const { path, built } = cachedGraph(key, c.build, task.cacheDir, () => log(`${name}: building the ${c.kind} graph into ${task.cacheDir}`));
  const buildMs = built ? now() - t : null;
  t = now();
  const session = await ModelSession.load(path, { threads: task.threads });
  const loadColdMs = now() - t;
  log(`${name}: ${buildMs === null ? "cached graph" : `built in ${fmtMs(buildMs)}`}, session ${fmtMs(loadColdMs)}`);

  // 2. timed runs
  const feeds = c.feeds();
  const times = await timeRuns(task.runs, () => session.run(feeds), name);
  await session.release();

  // 3. a warm session with profiling: FLOPs and time per op type
  const { loadMs, summary } = await profiledRun(path, task.threads, feeds);
  return {
    what: name,
    size: task.size,
    buildMs,
    loadColdMs,
    loadWarmMs: loadMs,
    ...times,
    flops: summary.flops,
    profile: { runUs: summary.runUs, kernelUs: summary.kernelUs, ops: summary.ops },
    peakRssMB: peakRssMB(),
  };
}
