// Times one SD 1.5 graph in a fresh process, as a one-image CLI run meets it: session create, the
// first run, then N steady-state runs, each with its CPU time, page faults and RSS. A second fresh
// process runs the graph twice with ORT profiling on (profileGraph): per-op times of a first and a
// steady run, and the FLOP count. Profiling stays off in the timed runs so it cannot slow them.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeDir } from "../src/graph/builder.js";
import { cachedGraph, graphHash } from "../src/graph/cache.js";
import { readProfile, summarizeProfile, type ProfileEvent } from "../src/graph/flops.js";
import { ModelSession } from "../src/runtime.js";
import { benchWeights } from "./fake-model.js";
import { RandomWeights } from "../src/weights/random.js";
import type { WeightSource } from "../src/weights/source.js";
import { archComponents, benchGraph, componentSize, type GraphComponent } from "./sd15.js";
import type { ComponentResult, RunProfile, Task } from "./types.js";
import { measured, median, peakRssMB, type Usage } from "./usage.js";

export { median, peakRssMB } from "./usage.js";
export const now = (): number => performance.now();

export const fmtMs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);

/** Progress goes to stderr so stdout keeps only the report. */
export const log = (msg: string): void => void process.stderr.write(`  [bench] ${msg}\n`);

export const fmtUsage = (u: Usage): string =>
  `${fmtMs(u.wallMs)} (user ${fmtMs(u.userMs)}, sys ${fmtMs(u.systemMs)}, ${(u.minorFaults / 1000).toFixed(0)}k minor faults, RSS ${u.rssMB.toFixed(0)} MiB)`;

/**
 * A component's graph and cache key (the key StableDiffusionModel.load uses): SD 1.5 on the bench model's
 * files; SDXL on seeded random weights in memory (its 14 GB of float32 files would double the disk use).
 */
function graphKey(name: GraphComponent, task: Task) {
  const arch = task.arch ?? "sd15";
  let weights: WeightSource;
  if (arch === "sdxl") weights = new RandomWeights(task.seed);
  else {
    const w = benchWeights(task.cacheDir, task.seed, log);
    weights = name === "text-encoder" ? w.text_encoder : name.startsWith("vae") ? w.vae : w.unet;
  }
  const c = benchGraph(arch, name, componentSize(arch, name, task.size), weights);
  return { c, key: { kind: c.kind, config: c.config, weights } };
}

/**
 * Builds the graphs of `task.only` that the cache lacks (dropping them first with --rebuild), and
 * loads each once so ONNX Runtime's optimised copy exists before any load is timed.
 */
export async function buildGraphs(task: Task): Promise<string[]> {
  const built: string[] = [];
  const seen = new Set<string>();
  for (const name of archComponents(task.arch ?? "sd15")) {
    const wanted = task.only.includes(name) || task.only.some((o) => o.startsWith("img2img"));
    if (!wanted) continue;
    const { c, key } = graphKey(name, task);
    if (seen.has(c.kind)) continue;
    seen.add(c.kind);
    if (task.rebuild) removeDir(join(task.cacheDir, "graphs", `${c.kind}-${graphHash(key, c.build().structureHash())}`));
    const t = now();
    const r = cachedGraph(key, c.build, task.cacheDir, () => log(`${name}: building the ${c.kind} graph into ${task.cacheDir}`));
    if (r.built) {
      built.push(c.kind);
      log(`${name}: built in ${fmtMs(now() - t)}`);
    }
    await (await ModelSession.load(r.path, { threads: task.threads })).release();
  }
  return built;
}

export async function measureGraph(name: GraphComponent, task: Task): Promise<ComponentResult> {
  const { c, key } = graphKey(name, task);
  const { path } = cachedGraph(key, c.build, task.cacheDir);
  const feeds = c.feeds();

  const { value: session, usage: load } = await measured(() => ModelSession.load(path, { threads: task.threads }));
  log(`${name}: session ${fmtUsage(load)}`);
  const { usage: first } = await measured(() => session.run(feeds));
  log(`${name}: first run ${fmtUsage(first)}`);
  const steady: Usage[] = [];
  for (let i = 0; i < task.runs; i++) {
    const { usage } = await measured(() => session.run(feeds));
    steady.push(usage);
    log(`${name}: run ${i + 1}/${task.runs} ${fmtUsage(usage)}`);
  }
  await session.release();
  const ms = steady.map((u) => u.wallMs);
  return {
    what: name,
    size: componentSize(task.arch ?? "sd15", name, task.size),
    load,
    first,
    steady,
    medianMs: median(ms),
    minMs: Math.min(...ms),
    flops: null,
    peakRssMB: peakRssMB(),
  };
}

type TimedEvent = ProfileEvent & { ts: number };

/** One run's share of a profile: its model_run event and the kernels inside it. */
function runProfile(events: TimedEvent[], run: TimedEvent): RunProfile {
  const inside = events.filter((e) => e === run || (e.cat === "Node" && e.ts >= run.ts && e.ts <= run.ts + run.dur));
  const s = summarizeProfile(inside);
  return { runUs: s.runUs, kernelUs: s.kernelUs, flops: s.flops, ops: s.ops };
}

/**
 * Runs `session` (loaded with `profileFilePrefix` in `dir`) once plus `runs` more times, releases it (ORT writes the
 * profile when the session ends) and returns the first run and the last (steady) one, per op type.
 */
export async function profiledRuns(
  session: ModelSession,
  dir: string,
  feeds: Parameters<ModelSession["run"]>[0],
  runs = 1,
): Promise<{ first: RunProfile; steady: RunProfile }> {
  for (let i = 0; i <= runs; i++) await session.run(feeds);
  await session.release();
  const file = readdirSync(dir).find((f) => f.endsWith(".json"));
  if (!file) throw new Error(`ONNX Runtime wrote no profile into ${dir}`);
  const events = readProfile(join(dir, file)) as TimedEvent[];
  const all = events.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  if (all.length < 2) throw new Error(`profile in ${dir} has ${all.length} model_run events, expected ${runs + 1}`);
  return { first: runProfile(events, all[0]), steady: runProfile(events, all[all.length - 1]) };
}

/** A fresh session with ORT profiling: the first run and the second (steady) run, per op type. */
export async function profileGraph(name: GraphComponent, task: Task): Promise<{ first: RunProfile; steady: RunProfile }> {
  const { c, key } = graphKey(name, task);
  const { path } = cachedGraph(key, c.build, task.cacheDir);
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-profile-"));
  try {
    const session = await ModelSession.load(path, { threads: task.threads, profileFilePrefix: join(dir, "ort") });
    return await profiledRuns(session, dir, c.feeds());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
