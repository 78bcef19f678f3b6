// In-memory WeightSource: named float32 tensors held in a Map (tests, converted weights).
import { createHash } from "node:crypto";
import type { TensorInfo, WeightSource } from "./source.js";

export class MemoryWeights implements WeightSource {
  private readonly tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  constructor(
    entries: Record<string, { shape: number[]; data: Float32Array | number[] }> = {},
    readonly description = "in-memory weights",
  ) {
    for (const [k, v] of Object.entries(entries)) this.set(k, v.shape, v.data);
  }
  set(key: string, shape: number[], data: Float32Array | number[]): void {
    this.tensors.set(key, { shape, data: Float32Array.from(data) });
  }
  keys(): string[] {
    return [...this.tensors.keys()];
  }
  info(key: string): TensorInfo | undefined {
    const t = this.tensors.get(key);
    return t && { dtype: "F32", shape: t.shape };
  }
  read(key: string): Float32Array {
    const t = this.tensors.get(key);
    if (!t) throw new Error(`no tensor '${key}' in ${this.description}`);
    return t.data.slice();
  }
  fingerprint(): string {
    const h = createHash("sha256");
    for (const [k, t] of this.tensors) {
      h.update(k)
        .update(JSON.stringify(t.shape))
        .update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    return h.digest("hex");
  }
}
