// torch-CPU-compatible random numbers: torch.Generator("cpu").manual_seed(seed) + torch.randn(shape, generator=g).
// Ref: pytorch aten/src/ATen/core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp, core/DistributionsHelper.h,
// core/TransformationHelper.h, native/cpu/DistributionTemplates.h (normal_fill_16_AVX2), native/cpu/avx_mathfun.h.
// Bit-exact with x86-64 torch wheels (AVX2 kernel); the same seed gives the same latents as diffusers.

import { randomInt } from "node:crypto";
import { ReimagineError } from "./errors.js";

// Notation (torch names):
//   random()    next 32-bit output of mt19937
//   random64()  (random() << 32) | random()
//   uniform<f32> = (random() & (2^24-1)) * 2^-24          in [0, 1)
//   uniform<f64> = (random64() & (2^53-1)) * 2^-53        in [0, 1)
// randn of a float32 tensor with numel >= 16 ("vector path", normal_fill):
//   draw numel float uniforms, Box-Muller each block of 16 in place over the pairs (j, j+8) with the float32
//   Cephes log/sincos of avx_mathfun.h; when numel % 16 != 0 the LAST 16 slots are redrawn and transformed again.
// randn with numel < 16 ("scalar path"): per element normal_distribution<double> (Box-Muller in doubles over two
//   uniform<f64>, the sin half cached in the generator for the next scalar draw), then cast to float32.

const N = 624; // MERSENNE_STATE_N
const M = 397; // MERSENNE_STATE_M
const MATRIX_A = 0x9908b0df;
const UMASK = 0x80000000;
const LMASK = 0x7fffffff;
const TWO_POW_64 = 1n << 64n;

/** at::mt19937: the reference MT19937 with Knuth seeding; only the low 32 bits of the seed are used. */
class MT19937 {
  private readonly state = new Uint32Array(N);
  private left = 1;
  private next = 0;

  constructor(seed32: number) {
    const s = this.state;
    s[0] = seed32 >>> 0;
    for (let j = 1; j < N; j++) {
      const prev = s[j - 1];
      s[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
  }

  /** Next 32-bit output (torch's operator()). */
  random(): number {
    if (--this.left === 0) this.nextState();
    let y = this.state[this.next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private nextState(): void {
    const s = this.state;
    this.left = N;
    this.next = 0;
    for (let i = 0; i < N; i++) {
      const u = s[i];
      const v = s[(i + 1) % N];
      const mixed = (u & UMASK) | (v & LMASK);
      s[i] = (s[(i + M) % N] ^ (mixed >>> 1) ^ (v & 1 ? MATRIX_A : 0)) >>> 0;
    }
  }
}

/**
 * A CPU random generator that reproduces torch's exactly.
 *
 * @example
 *   const g = new TorchGenerator(42);
 *   const noise = g.randn([1, 4, 64, 64]); // == torch.randn((1,4,64,64), generator=torch.Generator("cpu").manual_seed(42))
 */
export class TorchGenerator {
  readonly #seed: number | bigint;
  readonly #engine: MT19937;
  /** next_double_normal_sample_: the cached sin half of the last scalar Box-Muller pair. */
  #nextDoubleNormal: number | null = null;

  constructor(seed: number | bigint) {
    this.#seed = checkSeed(seed);
    this.#engine = new MT19937(Number(BigInt(seed) & 0xffffffffn)); // mt19937(uint64 seed) keeps the low 32 bits
  }

  /** The seed this generator was created with (torch's initial_seed()). */
  get seed(): number | bigint {
    return this.#seed;
  }

  /** torch.randn(shape, generator=this, dtype=torch.float32); state carries over between calls like torch's. */
  randn(shape: readonly number[]): Float32Array<ArrayBuffer> {
    let numel = 1;
    for (const d of shape) {
      if (!Number.isSafeInteger(d) || d < 0) {
        throw new ReimagineError(`randn shape [${shape.join(", ")}] is invalid: every size must be a non-negative integer`);
      }
      numel *= d;
    }
    const out = new Float32Array(numel);
    if (numel >= 16) this.normalFill(out);
    else for (let i = 0; i < numel; i++) out[i] = this.normalDouble();
    return out;
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits. */
  private uniformFloat(): number {
    return (this.#engine.random() & 0xffffff) * 2 ** -24;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64() = (hi << 32) | lo. */
  private uniformDouble(): number {
    const hi = this.#engine.random();
    const lo = this.#engine.random();
    return ((hi & 0x1fffff) * 2 ** 32 + lo) * 2 ** -53;
  }

  /** normal_distribution<double>(0, 1) with torch's one-sample cache. */
  private normalDouble(): number {
    if (this.#nextDoubleNormal !== null) {
      const cached = this.#nextDoubleNormal;
      this.#nextDoubleNormal = null;
      return cached;
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.#nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** normal_fill (AVX2): uniforms first, then Box-Muller per block of 16; a ragged tail redraws the last 16. */
  private normalFill(data: Float32Array): void {
    const n = data.length;
    for (let i = 0; i < n; i++) data[i] = this.uniformFloat();
    for (let i = 0; i + 16 <= n; i += 16) normalFill16(data, i);
    if (n % 16 !== 0) {
      const start = n - 16;
      for (let i = 0; i < 16; i++) data[start + i] = this.uniformFloat();
      normalFill16(data, start);
    }
  }
}

/** A random non-negative seed below 2^32 (what "seed -1" means). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}

/**
 * The seed to use for a request: -1, undefined or null pick a random one; anything else must be an
 * integer in [0, 2^64).
 *
 * @example
 *   const g = new TorchGenerator(normalizeSeed(req.seed));
 */
export function normalizeSeed(seed: number | bigint | undefined | null): number | bigint {
  if (seed === undefined || seed === null || seed === -1 || seed === -1n) return randomSeed();
  return checkSeed(seed);
}

function checkSeed(seed: number | bigint): number | bigint {
  if (typeof seed === "bigint") {
    if (seed < 0n || seed >= TWO_POW_64) {
      throw new ReimagineError(`seed ${seed} is out of range: use an integer in [0, 2^64), or -1 for a random seed`);
    }
    return seed;
  }
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0) {
    throw new ReimagineError(`seed ${String(seed)} is invalid: use a non-negative integer, or -1 for a random seed`);
  }
  if (!Number.isSafeInteger(seed)) {
    throw new ReimagineError(`seed ${seed} is above 2^53 and cannot be represented exactly as a number: pass it as a bigint`);
  }
  return seed;
}

// ---- float32 Box-Muller of normal_fill_16_AVX2 (avx_mathfun.h), one lane at a time -------------------------
// The x86-64 torch build compiles these intrinsics with FMA contraction: every multiply whose only use is an add
// becomes one fused multiply-add (single rounding). fma32 reproduces that; f32 = Math.fround rounds each other op.

const f32 = Math.fround;
const scratch = new Float64Array(1);
const scratchWords = new Uint32Array(scratch.buffer);
const LO = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1; // low word index (little-endian: 0)

/** Correctly rounded float32 fma(a, b, c) for float32 inputs: a*b is exact in a double, so only the sum
 *  can double-round, and only when it lands exactly on a float32 midpoint; its exact error breaks the tie. */
function fma32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = f32(s);
  if (r === s) return r;
  scratch[0] = s;
  if ((scratchWords[LO] & 0x1fffffff) !== 0x10000000) return r; // not a float32 midpoint
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // TwoSum: s + err == p + c exactly
  if (err === 0) return r;
  const other = 2 * s - r; // the float32 on the other side of the midpoint
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

const ONE = 1;
const SQRTHF = f32(0.707106781186547524);
const LOG_P = [
  7.0376836292e-2, -1.151461031e-1, 1.167699874e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
].map(f32);
const LOG_Q1 = f32(-2.1219444e-4);
const LOG_Q2 = f32(0.693359375);
const MIN_NORM_POS = 2 ** -126;

const f32buf = new Float32Array(1);
const f32bits = new Uint32Array(f32buf.buffer);

/** log256_ps for one lane (x in (0, 1] here). */
function cephesLog(x0: number): number {
  f32buf[0] = Math.max(x0, MIN_NORM_POS);
  const bits = f32bits[0];
  let e = f32((bits >>> 23) - 0x7f + ONE); // exponent + 1
  f32bits[0] = (bits & ~0x7f800000) | 0x3f000000; // mantissa in [0.5, 1)
  let x = f32buf[0];
  const tmp = x < SQRTHF ? x : 0; // if x < sqrt(1/2): e -= 1; x = x + x - 1
  if (x < SQRTHF) e = f32(e - ONE);
  x = f32(f32(x - ONE) + tmp);
  const z = f32(x * x);
  let y = LOG_P[0];
  for (let k = 1; k < 9; k++) y = fma32(y, x, LOG_P[k]);
  y = f32(y * x);
  y = fma32(y, z, f32(e * LOG_Q1)); // y*z + e*q1, the y*z product fused
  y = fma32(z, -0.5, y); // y - z*0.5
  x = f32(x + y);
  return fma32(e, LOG_Q2, x); // x + e*q2
}

const FOPI = f32(1.27323954473516); // 4 / pi
const DP1 = f32(-0.78515625);
const DP2 = f32(-2.4187564849853515625e-4);
const DP3 = f32(-3.77489497744594108e-8);
const SINCOF = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1].map(f32);
const COSCOF = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2].map(f32);

/** sincos256_ps for one lane (theta >= 0 here); writes [sin, cos] into `out`. */
function cephesSincos(theta: number, out: Float64Array): void {
  let x = Math.abs(theta);
  const sinSignBit = theta < 0 || Object.is(theta, -0);
  let j = Math.trunc(f32(x * FOPI)); // cvttps
  j = (j + 1) & ~1;
  const yq = j; // small integer, exact in float32
  const swapSin = (j & 4) !== 0;
  const poly = (j & 2) === 0; // true: x in [0, pi/4] after reduction -> sin uses the sine polynomial
  const cosNeg = (~(j - 2) & 4) !== 0;
  // Extended precision modular arithmetic: x = ((x - y*DP1) - y*DP2) - y*DP3
  x = fma32(yq, DP1, x);
  x = fma32(yq, DP2, x);
  x = fma32(yq, DP3, x);
  const z = f32(x * x);
  // cosine polynomial: 1 - z/2 + z^2 (c0 z^2 + c1 z + c2); the final *z fuses into the subtraction
  let yc = fma32(COSCOF[0], z, COSCOF[1]);
  yc = fma32(yc, z, COSCOF[2]);
  yc = f32(yc * z);
  yc = fma32(yc, z, -f32(z * 0.5));
  yc = f32(yc + ONE);
  // sine polynomial: x + x z (s0 z^2 + s1 z + s2)
  let ys = fma32(SINCOF[0], z, SINCOF[1]);
  ys = fma32(ys, z, SINCOF[2]);
  ys = f32(ys * z);
  ys = fma32(ys, x, x);
  // the AVX code blends with masks and adds +0 (so -0 becomes +0), then flips sign bits
  let s = (poly ? ys : yc) + 0;
  let c = (poly ? yc : ys) + 0;
  if (sinSignBit !== swapSin) s = -s;
  if (cosNeg) c = -c;
  out[0] = s;
  out[1] = c;
}

const TWO_PI = f32(2 * Math.PI); // _mm256_set1_ps(2.0f * c10::pi<double>)
const sincos = new Float64Array(2);

/** normal_fill_16_AVX2 with mean 0, std 1 (the final fmadd(n, 1, 0) is exact). */
function normalFill16(data: Float32Array, start: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(ONE - data[start + j]); // [0, 1) -> (0, 1] for log
    const u2 = data[start + j + 8];
    const radius = f32(Math.sqrt(f32(-2 * cephesLog(u1))));
    cephesSincos(f32(TWO_PI * u2), sincos);
    data[start + j] = f32(radius * sincos[1]);
    data[start + j + 8] = f32(radius * sincos[0]);
  }
}
