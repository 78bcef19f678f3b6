// The one module that imports onnxruntime-node: sessions, execution providers, threads.
// Everything else passes plain typed arrays in and out (TensorData).
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { ReimagineError } from "./errors.js";

export type Provider = "cpu" | "cuda" | "webgpu";
export const PROVIDERS: readonly Provider[] = ["cpu", "cuda", "webgpu"];

export interface RuntimeOptions {
  /** Execution provider; "cpu" by default. */
  provider?: Provider;
  /** Intra-op threads; default: the machine's cores. */
  threads?: number;
  /** ONNX Runtime graph optimisation level (default "all"). */
  optimization?: "disabled" | "basic" | "extended" | "all";
  /** Log ORT profiling to this file prefix (benchmarks). */
  profileFilePrefix?: string;
}

export interface TensorData {
  data: Float32Array | BigInt64Array | Int32Array;
  dims: readonly number[];
}

/** Providers the installed onnxruntime-node can run (bundled or installed). */
export function availableProviders(): Provider[] {
  const backends = ort.listSupportedBackends() as { name: string; bundled: boolean }[];
  return PROVIDERS.filter((p) => backends.some((b) => b.name === p));
}

function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

/** A loaded ONNX model. */
export class ModelSession {
  private constructor(
    private readonly session: ort.InferenceSession,
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
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: [provider],
      intraOpNumThreads: opts.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: opts.optimization ?? "all",
      executionMode: "sequential",
    };
    if (opts.profileFilePrefix) {
      options.enableProfiling = true;
      options.profileFilePrefix = opts.profileFilePrefix;
    }
    try {
      return new ModelSession(await ort.InferenceSession.create(path, options), path);
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
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      const type = t.data instanceof Float32Array ? "float32" : t.data instanceof BigInt64Array ? "int64" : "int32";
      ortFeeds[name] = new ort.Tensor(type, t.data, t.dims as number[]);
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
