// Seeded random weights (like tinygrad's --fakeweights): run a whole model without a download, for
// tests and benchmarks. Values are a pure function of (seed, key, shape), from xoshiro128+ seeded by
// a hash of the key; scales follow PyTorch's default init bounds so activations stay sane in deep nets.
import type { TensorInfo, WeightSource } from "./source.js";
import { ReimagineError } from "../errors.js";

export interface RandomWeightsOptions {
  /** Half-width of the uniform bias distribution (default 0.01). */
  biasScale?: number;
}

/**
 * Invents any tensor on demand: 1-D `*norm*.weight` -> ones, `*.bias` -> U(-0.01, 0.01), any other
 * tensor -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = product(shape[1:]) (PyTorch's Linear/Conv
 * bound). Only keys already read are reported by `keys()`/`info()`.
 *
 * @example
 *   const w = new RandomWeights(42);
 *   w.read("conv_in.weight", [320, 4, 3, 3]); // same numbers on every call and machine
 */
export class RandomWeights implements WeightSource {
  readonly synthetic = true;
  readonly description: string;
  private readonly seen = new Map<string, number[]>();
  private readonly biasScale: number;

  constructor(
    readonly seed: number,
    opts: RandomWeightsOptions = {},
  ) {
    if (!Number.isSafeInteger(seed)) throw new ReimagineError(`random weights seed must be an integer, got ${seed}`);
    this.biasScale = opts.biasScale ?? 0.01;
    this.description = `random weights (seed ${seed})`;
  }

  keys(): string[] {
    return [...this.seen.keys()];
  }

  info(key: string): TensorInfo | undefined {
    const shape = this.seen.get(key);
    return shape && { dtype: "F32", shape: [...shape] };
  }

  read(key: string, shape: readonly number[]): Float32Array {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new ReimagineError(`random weights: shape for '${key}' must be non-negative integers, got ${JSON.stringify(shape)}`, "internal");
    }
    this.seen.set(key, [...shape]);
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    if (shape.length === 1 && key.endsWith(".weight") && /norm/i.test(key)) return out.fill(1);
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    const bound = key.endsWith(".bias") ? this.biasScale : 1 / Math.sqrt(Math.max(fanIn, 1));
    fillUniform(out, hashSeed(this.seed, key), bound);
    return out;
  }

  fingerprint(): string {
    return `random-${this.seed}`;
  }
}

/** Four nonzero 32-bit state words from (seed, key): FNV-1a over the key's UTF-16 units, then murmur3 fmix. */
function hashSeed(seed: number, key: string): [number, number, number, number] {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= Math.floor(seed / 2 ** 32) | 0; // high bits of large seeds
  const s: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    h = (h + 0x9e3779b9) | 0; // golden-ratio increments give 4 distinct fmix inputs
    let z = h;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    s[i] = (z ^ (z >>> 16)) | 0;
  }
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1; // xoshiro's one forbidden state
  return s;
}

/** out[i] ~ U(-bound, bound) from xoshiro128+ (~450M values/s on one core). */
function fillUniform(out: Float32Array, state: [number, number, number, number], bound: number): void {
  let [s0, s1, s2, s3] = state;
  const a = 2 * bound * 2 ** -32;
  for (let i = 0; i < out.length; i++) {
    const r = (s0 + s3) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    out[i] = r * a - bound;
  }
}
