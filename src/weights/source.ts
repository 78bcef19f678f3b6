// WeightSource: where a graph's parameters come from, looked up by their diffusers weight key.
// Implementations: safetensors files (single, sharded, variants), LDM single-file checkpoints
// (renamed keys), and seeded random weights for tests and benchmarks.

/** A tensor's declared element type and shape, as stored (before conversion to float32). */
export interface TensorInfo {
  dtype: string; // safetensors dtype tag: "F32" | "F16" | "BF16" | "I64" ...
  shape: number[];
}

export interface WeightSource {
  /** Human-readable origin used in error messages (a file or folder path). */
  readonly description: string;
  /** Every key this source offers (the builder reports keys never bound as "unused"). */
  keys(): string[];
  /** Stored dtype and shape of `key`, or undefined when absent. Synthetic sources may
   *  return `{ dtype: "F32", shape }` for any key once asked through `read`. */
  info(key: string): TensorInfo | undefined;
  /** The tensor converted to float32. `shape` is what the model expects; file sources
   *  ignore it (the builder has already checked it against `info`), synthetic sources use it. */
  read(key: string, shape: readonly number[]): Float32Array;
  /** Stable identity of the weights' content (for graph caches): changes when any file changes. */
  fingerprint(): string;
  /** True for sources that invent tensors on demand (random weights): every key "exists". */
  readonly synthetic?: boolean;
}
