// The one module that imports onnxruntime-node: sessions, execution providers, threads, memory
// (per-session arenas, dropped by the SessionPool policy in runtime-memory.ts), and the on-disk copy of
// ONNX Runtime's optimised graph that makes warm loads fast.
// Everything else passes plain typed arrays in and out (TensorData).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import type * as Ort from "onnxruntime-node";
import { ReimagineError } from "./errors.js";
import { disableOrtTelemetry } from "./ort-env.js";

disableOrtTelemetry(); // before any session: long command lines crash ORT's telemetry (src/ort-env.ts)

// onnxruntime-node loads on first use (a session or availableProviders()): importing the library
// to read metadata, or the CLI's --help and info, should not load a native runtime.
let ortModule: typeof Ort | undefined;
const ort = (): typeof Ort => (ortModule ??= createRequire(import.meta.url)("onnxruntime-node") as typeof Ort);
import { MEMORY_POLICIES, type MemoryPolicy, type PooledSession, SessionPool } from "./runtime-memory.js";

export type Provider = "cpu" | "cuda" | "webgpu";
export const PROVIDERS: readonly Provider[] = ["cpu", "cuda", "webgpu"];

export interface RuntimeOptions {
  /** Execution provider; "cpu" by default. */
  provider?: Provider;
  /** Intra-op threads; default: the machine's physical cores (physicalCores()). */
  threads?: number;
  /** ONNX Runtime graph optimisation level (default "all"). */
  optimization?: "disabled" | "basic" | "extended" | "all";
  /**
   * Prepack MatMul weights into MLAS's blocked layout when the session is created. Default false. Measured on
   * the SD 1.5 UNet at 512, batch 2 (docs/performance.md): loads 10x slower (3.8-4.1 s against 0.33-0.38 s),
   * which the lean memory policy pays again each time it re-creates a dropped session; the first run no
   * faster (7.2-7.3 s against 7.3-7.6 s: MLAS packs panels on the fly, in every thread); later calls 1.5-3 %
   * faster. Worth it only for a session kept for hundreds of calls (memory: "keep").
   */
  prepack?: boolean;
  /**
   * ONNX Runtime's CPU arena (default true): activations are carved from memory the session keeps,
   * so no run but the first faults in fresh pages. Off: every tensor is a fresh allocation, and
   * every run pays for faulting its pages in (docs/performance.md measures both).
   */
  memArena?: boolean;
  /**
   * Which sessions keep their arena while another model runs (see runtime-memory.ts): "lean"
   * (default) holds resident memory near the weights + 1 GiB by dropping idle sessions (re-created on
   * their next run); "keep" never drops (long-lived servers: no re-creation, more memory).
   */
  memory?: MemoryPolicy;
  /** Log ORT profiling to this file prefix (benchmarks). */
  profileFilePrefix?: string;
  /**
   * CPU only, with optimization "all": keep ONNX Runtime's optimised graph (NCHWc conv layouts,
   * fusions; hardware-specific) in `ort-optimized/` beside the model, keyed by the model's bytes, its
   * external data, the ORT version and the CPU, and load that on later runs with optimisation off.
   * Same kernels, identical outputs; an SD 1.5 UNet loads in ~1 s instead of ~10 s. Default true.
   */
  reuseOptimized?: boolean;
}

export interface TensorData {
  data: Float32Array | BigInt64Array | Int32Array;
  dims: readonly number[];
}

/** Providers the installed onnxruntime-node can run (bundled or installed). */
export function availableProviders(): Provider[] {
  const backends = ort().listSupportedBackends() as { name: string; bundled: boolean }[];
  return PROVIDERS.filter((p) => backends.some((b) => b.name === p));
}

let cores: number | undefined;

/**
 * Physical cores this process may use: logical CPUs (availableParallelism, which honours the CPU
 * affinity mask) divided by SMT siblings per core on Linux. MLAS GEMM threads on SMT siblings of
 * one core compete for the same FMA units, so one thread per core is as fast and leaves the
 * siblings to the JS thread and the OS.
 *
 * @example ModelSession.load(path, { threads: physicalCores() })
 */
export function physicalCores(): number {
  if (cores !== undefined) return cores;
  const logical = Math.max(1, availableParallelism());
  let perCore = 1;
  try {
    // "0-1" or "0,8": the logical CPUs sharing cpu0's core
    const siblings = readFileSync("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "utf8").trim();
    perCore = siblings.split(",").reduce((n, part) => {
      const [a, b] = part.split("-").map(Number);
      return n + (b === undefined ? 1 : b - a + 1);
    }, 0);
  } catch {
    // not Linux (or no sysfs): assume no SMT
  }
  cores = Math.max(1, Math.floor(logical / Math.max(1, perCore)));
  return cores;
}

function defaultThreads(): number {
  return physicalCores();
}

const ortVersion = (): string => (ort().env.versions as Record<string, string | undefined>).node ?? ort().env.versions.common;

/**
 * Bumped when what the optimised copy holds changes. 3: no prepacked weights in it. Version 2 saved MLAS's
 * packed weights (ORT's save_external_prepacked_constant_initializers) when prepacking: such a copy loaded an
 * SD 1.5 UNet in 1.2-1.4 s against ~2 s packing at load, but ORT 1.30 crashes (SIGSEGV) running some graphs
 * loaded from one, the SDXL text_encoder_2 among them.
 */
const OPTIMIZED_FORMAT = 3;

/**
 * Where the optimised copy of `path` lives: <model dir>/ort-optimized/<source key>/model.onnx, the source key
 * covering the model's bytes, its external data, ORT, the CPU and OPTIMIZED_FORMAT. The copy holds the graph
 * after ORT's optimisations (fused ops, NCHWc-reordered conv weights); MatMul weights are packed at load.
 */
function optimizedDir(path: string): { dir: string; sourceKey: string } {
  const dir = dirname(path);
  const h = createHash("sha256").update(readFileSync(path));
  // external data: identified by name, size and mtime (a rebuilt graph gets new files)
  for (const f of readdirSync(dir).sort()) {
    const st = statSync(join(dir, f));
    if (st.isFile() && f !== "model.onnx" && !f.endsWith(".onnx")) h.update(`${f}:${st.size}:${st.mtimeMs}\n`);
  }
  h.update(`${ortVersion()}\n${process.arch}\n${cpus()[0]?.model ?? ""}\n${OPTIMIZED_FORMAT}`);
  const sourceKey = h.digest("hex").slice(0, 16);
  return { dir: join(dir, "ort-optimized", sourceKey), sourceKey };
}

/**
 * Creates a CPU session from the optimised copy when there is one; otherwise optimises `path` as
 * usual and saves the result (weights as external data, memory-mapped on later loads) for next time.
 * Any file-system failure falls back to a plain load.
 */
async function createReusingOptimized(path: string, options: Ort.InferenceSession.SessionOptions): Promise<Ort.InferenceSession> {
  let dir: string;
  let sourceKey: string;
  try {
    ({ dir, sourceKey } = optimizedDir(path));
  } catch {
    return ort().InferenceSession.create(path, options);
  }
  const saved = join(dir, "model.onnx");
  if (existsSync(saved)) {
    try {
      return await ort().InferenceSession.create(saved, { ...options, graphOptimizationLevel: "disabled" });
    } catch {
      rmSync(dir, { recursive: true, force: true }); // unusable copy: rebuild it below
    }
  }
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    mkdirSync(tmp, { recursive: true });
  } catch {
    return ort().InferenceSession.create(path, options); // read-only folder
  }
  try {
    const session = await ort().InferenceSession.create(path, {
      ...options,
      logSeverityLevel: 3, // not the "hardware-specific optimisations" warning: this copy is keyed by CPU
      optimizedModelFilePath: join(tmp, "model.onnx"),
      extra: {
        session: {
          ...sessionExtra(options),
          optimized_model_external_initializers_file_name: "weights.bin",
          optimized_model_external_initializers_min_size_in_bytes: "1024",
        },
      },
    });
    try {
      // drop copies of older sources, ORT versions, CPUs or formats
      const parent = dirname(dir);
      for (const old of readdirSync(parent)) {
        if (!old.includes(".tmp-") && old !== sourceKey) rmSync(join(parent, old), { recursive: true, force: true });
      }
      renameSync(tmp, dir);
    } catch {
      // another process saved it first, or the disk is full: this session is fine either way
    }
    return session;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const sessionExtra = (o: Ort.InferenceSession.SessionOptions): Record<string, string> =>
  (o.extra as { session?: Record<string, string> } | undefined)?.session ?? {};

/** Bytes of the model's files (model.onnx and its external data): the "weights" of the memory bound. */
function modelBytes(path: string): number {
  const dir = dirname(path);
  let n = 0;
  try {
    for (const f of readdirSync(dir)) {
      const st = statSync(join(dir, f));
      if (st.isFile() && (f === "model.onnx" || !f.endsWith(".onnx"))) n += st.size;
    }
  } catch {
    // unreadable folder: count nothing
  }
  return n;
}

/** Every ModelSession of this process (or worker thread), for the memory policy. */
const pool = new SessionPool();
let recreated = 0;

/** Sessions the lean memory policy dropped, and how many were re-created by a later run (this thread). */
export function memoryStats(): { drops: number; recreated: number } {
  return { drops: pool.drops, recreated };
}

/** A loaded ONNX model. Under the "lean" memory policy its ORT session may be dropped between runs
 *  (runtime-memory.ts) and is then re-created, from the same optimised copy, by the next run. */
export class ModelSession implements PooledSession {
  private session: Ort.InferenceSession | undefined;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];

  private constructor(
    session: Ort.InferenceSession,
    readonly path: string,
    private readonly create: () => Promise<Ort.InferenceSession>,
    readonly policy: MemoryPolicy,
    readonly weightBytes: number,
  ) {
    this.session = session;
    this.inputNames = session.inputNames;
    this.outputNames = session.outputNames;
  }

  static async load(path: string, opts: RuntimeOptions = {}): Promise<ModelSession> {
    const provider = opts.provider ?? "cpu";
    if (!PROVIDERS.includes(provider)) {
      throw new ReimagineError(`unknown execution provider '${provider}': use one of ${PROVIDERS.join(", ")}`);
    }
    if (!availableProviders().includes(provider)) {
      throw new ReimagineError(
        `execution provider '${provider}' is not available in this onnxruntime-node install ` +
          `(available: ${availableProviders().join(", ")}); use --provider cpu` +
          (provider === "cuda" ? " or install the CUDA runtime (ONNXRUNTIME_NODE_INSTALL_CUDA=v12 npm rebuild onnxruntime-node)" : ""),
        "unsupported",
      );
    }
    // a GPU provider that fails to load makes ORT print its own multi-line log before throwing; the
    // error below says it in one line (the level is read when ORT's environment starts: the first session)
    if (provider !== "cpu") ort().env.logLevel = "fatal";
    const options: Ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      intraOpNumThreads: opts.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: opts.optimization ?? "all",
      executionMode: "sequential",
      // The arena: without it every tensor of a run is a fresh allocation, and big ones are fresh
      // mmaps whose pages fault in one by one (an SD 1.5 VAE encode at 512x512: 1.7 M faults, its
      // first run 3-4x its steady state). With it only the first run faults, once per page, and the
      // SessionPool below keeps the sum of every model's arena in check. ORT's memory pattern is off:
      // it would carve a second, run-sized block out of the arena on the second run.
      enableCpuMemArena: opts.memArena ?? true,
      enableMemPattern: !(opts.memArena ?? true),
      // prepacking: off unless asked for (RuntimeOptions.prepack says why)
      extra: opts.prepack ? {} : { session: { disable_prepacking: "1" } },
    };
    if (opts.profileFilePrefix) {
      options.enableProfiling = true;
      options.profileFilePrefix = opts.profileFilePrefix;
    }
    const policy = opts.memory ?? "lean";
    if (!MEMORY_POLICIES.includes(policy)) throw new ReimagineError(`unknown memory policy '${policy}': use one of ${MEMORY_POLICIES.join(", ")}`);
    const reuse = provider === "cpu" && options.graphOptimizationLevel === "all" && (opts.reuseOptimized ?? true);
    const create = () => (reuse ? createReusingOptimized(path, options) : ort().InferenceSession.create(path, options));
    try {
      const rss = process.memoryUsage.rss();
      const session = new ModelSession(await create(), path, create, policy, modelBytes(path));
      pool.add(session, process.memoryUsage.rss() - rss);
      return session;
    } catch (e) {
      if (provider !== "cpu") {
        throw new ReimagineError(`could not start execution provider '${provider}' for ${path}: ${(e as Error).message}; use --provider cpu`, "unsupported", {
          cause: e,
        });
      }
      throw e;
    }
  }

  /** Runs the model; returns every output as plain typed arrays. */
  async run(feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      const type = t.data instanceof Float32Array ? "float32" : t.data instanceof BigInt64Array ? "int64" : "int32";
      ortFeeds[name] = new (ort().Tensor)(type, t.data, t.dims as number[]);
    }
    await pool.beforeRun(this);
    let rss = process.memoryUsage.rss();
    try {
      if (!this.session) {
        this.session = await this.create(); // dropped by the pool: map the optimised copy again
        recreated++;
        const now = process.memoryUsage.rss();
        pool.revived(this, now - rss);
        rss = now;
      }
      const out = await this.session.run(ortFeeds);
      const result: Record<string, TensorData> = {};
      for (const [name, t] of Object.entries(out)) {
        result[name] = { data: t.data as Float32Array, dims: t.dims };
      }
      return result;
    } finally {
      pool.afterRun(this, process.memoryUsage.rss() - rss);
    }
  }

  /** Releases the ORT session and its arena; the next run re-creates it (SessionPool only). */
  async drop(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    await s?.release();
  }

  async release(): Promise<void> {
    pool.remove(this);
    await this.drop();
  }
}
