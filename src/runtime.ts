// The one module that imports onnxruntime-node: sessions, execution providers, threads, and the
// on-disk copy of ONNX Runtime's optimised graph that makes warm loads fast.
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

export type Provider = "cpu" | "cuda" | "webgpu";
export const PROVIDERS: readonly Provider[] = ["cpu", "cuda", "webgpu"];

export interface RuntimeOptions {
  /** Execution provider; "cpu" by default. */
  provider?: Provider;
  /** Intra-op threads; default: the machine's physical cores (physicalCores()). */
  threads?: number;
  /** ONNX Runtime graph optimisation level (default "all"). */
  optimization?: "disabled" | "basic" | "extended" | "all";
  /** Prepack MatMul weights at load (slower load, slightly faster runs). Default false. */
  prepack?: boolean;
  /** Keep ONNX Runtime's CPU memory arena (faster reuse, but memory is never returned). Default false. */
  memArena?: boolean;
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

/** Where the optimised copy of `path` lives: <model dir>/ort-optimized/<key>/model.onnx. */
function optimizedDir(path: string): string {
  const dir = dirname(path);
  const h = createHash("sha256").update(readFileSync(path));
  // external data: identified by name, size and mtime (a rebuilt graph gets new files)
  for (const f of readdirSync(dir).sort()) {
    const st = statSync(join(dir, f));
    if (st.isFile() && f !== "model.onnx" && !f.endsWith(".onnx")) h.update(`${f}:${st.size}:${st.mtimeMs}\n`);
  }
  h.update(`${ortVersion()}\n${process.arch}\n${cpus()[0]?.model ?? ""}`);
  return join(dir, "ort-optimized", h.digest("hex").slice(0, 16));
}

/**
 * Creates a CPU session from the optimised copy when there is one; otherwise optimises `path` as
 * usual and saves the result (weights as external data) for next time. Any file-system failure
 * falls back to a plain load.
 */
async function createReusingOptimized(path: string, options: Ort.InferenceSession.SessionOptions): Promise<Ort.InferenceSession> {
  let dir: string;
  try {
    dir = optimizedDir(path);
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
          ...(options.extra as { session?: Record<string, string> } | undefined)?.session,
          optimized_model_external_initializers_file_name: "weights.bin",
          optimized_model_external_initializers_min_size_in_bytes: "1024",
        },
      },
    });
    try {
      // keep one optimised copy per model folder: drop copies for older ORT versions or CPUs
      const parent = dirname(dir);
      for (const old of readdirSync(parent)) if (!old.includes(".tmp-")) rmSync(join(parent, old), { recursive: true, force: true });
      renameSync(tmp, dir);
    } catch {
      // another process saved it first, or the disk is full: this session is fine either way
    }
    return session;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** A loaded ONNX model. */
export class ModelSession {
  private constructor(
    private readonly session: Ort.InferenceSession,
    readonly path: string,
  ) {}

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
      // Without ORT's arena each model's activations are returned to the OS after its run, so
      // a pipeline's peak RSS is the weights plus the largest single model's activations
      // rather than the sum of every model's arena.
      enableCpuMemArena: opts.memArena ?? false,
      // Prepacking copies every MatMul weight into MLAS's blocked layout when the session is created:
      // ~1 s for the SD UNet, for ~3 % faster batch-2 calls. Off by default (sub-second warm loads for
      // one-shot CLI runs); long-lived processes (the server) turn it on.
      extra: opts.prepack ? {} : { session: { disable_prepacking: "1" } },
    };
    if (opts.profileFilePrefix) {
      options.enableProfiling = true;
      options.profileFilePrefix = opts.profileFilePrefix;
    }
    try {
      if (provider === "cpu" && options.graphOptimizationLevel === "all" && (opts.reuseOptimized ?? true)) {
        return new ModelSession(await createReusingOptimized(path, options), path);
      }
      return new ModelSession(await ort().InferenceSession.create(path, options), path);
    } catch (e) {
      if (provider !== "cpu") {
        throw new ReimagineError(
          `could not start execution provider '${provider}' for ${path}: ${(e as Error).message}; use --provider cpu`,
          "unsupported",
          { cause: e },
        );
      }
      throw e;
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }
  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Runs the model; returns every output as plain typed arrays. */
  async run(feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      const type = t.data instanceof Float32Array ? "float32" : t.data instanceof BigInt64Array ? "int64" : "int32";
      ortFeeds[name] = new (ort().Tensor)(type, t.data, t.dims as number[]);
    }
    const out = await this.session.run(ortFeeds);
    const result: Record<string, TensorData> = {};
    for (const [name, t] of Object.entries(out)) {
      result[name] = { data: t.data as Float32Array, dims: t.dims };
    }
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
