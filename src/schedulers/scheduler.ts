// The scheduler contract shared by every sampler, plus the noise-schedule maths they all use
// (betas, alphas_cumprod, timestep spacing). Ref: diffusers `SchedulerMixin` and the
// `__init__`/`set_timesteps` preambles of `scheduling_ddim.py`, `scheduling_euler_discrete.py`.
// diffusers builds these tables in float32 torch; `f32` (Math.fround) reproduces that bit for bit.

import { ReimagineError } from "../errors.js";
import { roundHalfEven } from "../numeric.js";
import { resolveConfig } from "./config.js";

// Notation: T = num_train_timesteps, n = num_inference_steps, ᾱ_t = alphas_cumprod[t], β_t = betas[t].

/** float32 rounding: every scalar op diffusers does on float32 torch tensors goes through this. */
export const f32 = Math.fround;

export interface StepOptions {
  /** Torch-compatible generator (the pipeline's); used by ancestral / LCM / DDPM steps. */
  generator?: { randn(shape: readonly number[]): Float32Array };
  /** Latent shape, e.g. [1, 4, 64, 64]; passed to `generator.randn`. */
  shape?: readonly number[];
  /** Pre-drawn noise (same length as the latents); wins over `generator`. */
  noise?: Float32Array;
  /** DDIMScheduler only: η of DDIM eq. 16 (0 = deterministic, the default). */
  eta?: number;
  /** DDIMScheduler only: re-derive ε̂ from the clipped x̂_0 (diffusers `use_clipped_model_output`). */
  useClippedModelOutput?: boolean;
}

export interface SchedulerOutput {
  prevSample: Float32Array;
  predOriginalSample?: Float32Array;
  /** LCMScheduler only: the consistency-model estimate (diffusers `denoised`). */
  denoised?: Float32Array;
}

/** A fully resolved scheduler config: diffusers' snake_case constructor arguments plus hidden keys. */
export interface SchedulerConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  trained_betas: number[] | null;
  prediction_type: string;
  timestep_spacing: string;
  steps_offset: number;
  [key: string]: unknown;
}

export interface Scheduler {
  readonly name: string; // diffusers class name, e.g. "EulerDiscreteScheduler"
  readonly config: SchedulerConfig;
  readonly order: number;
  readonly timesteps: number[];
  readonly sigmas?: number[];
  readonly initNoiseSigma: number;
  /** False where diffusers has no `set_begin_index` (DDIM, PNDM, DDPM): setBeginIndex is then a no-op. */
  readonly supportsBeginIndex: boolean;
  readonly alphasCumprod: Float32Array;
  setTimesteps(numInferenceSteps: number): void;
  setBeginIndex(beginIndex: number): void;
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput;
  /** `timestep` may be one value, or one per batch item (the latents are split evenly). */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number | readonly number[]): Float32Array;
}

/** State and helpers common to every scheduler: resolved config, betas, ᾱ, begin/step index. */
export abstract class SchedulerBase<C extends SchedulerConfig> {
  readonly name: string;
  readonly config: C;
  readonly order: number = 1;
  readonly supportsBeginIndex: boolean = true;
  readonly betas: Float32Array;
  readonly alphasCumprod: Float32Array;
  timesteps: number[] = [];
  numInferenceSteps: number | null = null;
  protected beginIndexValue: number | null = null;
  protected stepIndexValue: number | null = null;

  protected constructor(
    name: string,
    defaults: C,
    source: Record<string, unknown>,
    overrides: Record<string, unknown>,
    schedule: { rescaleSetsLastTiny?: boolean } = {},
  ) {
    this.name = name;
    this.config = resolveConfig(name, defaults, source, overrides);
    this.betas = betasFor(this.config, name);
    // Only classes that accept rescale_betas_zero_snr read it (a hidden key from another class is ignored).
    const zeroSnr = "rescale_betas_zero_snr" in defaults && this.config.rescale_betas_zero_snr === true;
    if (zeroSnr) this.betas = rescaleZeroTerminalSnr(this.betas);
    this.alphasCumprod = cumprodAlphas(this.betas);
    // Euler / DPM: keep the last sigma finite after the zero-SNR rescale.
    if (zeroSnr && schedule.rescaleSetsLastTiny) {
      this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    }
    checkPredictionType(this.config.prediction_type, name);
  }

  get beginIndex(): number | null {
    return this.beginIndexValue;
  }
  get stepIndex(): number | null {
    return this.stepIndexValue;
  }
  setBeginIndex(beginIndex: number): void {
    this.beginIndexValue = beginIndex;
  }

  /** diffusers `index_for_timestep`: the 2nd match when a timestep repeats (img2img may start there). */
  protected indexForTimestep(timestep: number, schedule: readonly number[] = this.timesteps): number {
    const hits: number[] = [];
    for (let i = 0; i < schedule.length; i++) if (schedule[i] === timestep) hits.push(i);
    if (hits.length === 0) {
      throw new ReimagineError(
        `${this.name}: timestep ${timestep} is not in scheduler.timesteps; call setTimesteps() first and pass one of scheduler.timesteps`,
      );
    }
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** diffusers `_init_step_index`. */
  protected initStepIndex(timestep: number): number {
    this.stepIndexValue = this.beginIndexValue ?? this.indexForTimestep(timestep);
    return this.stepIndexValue;
  }

  protected requireTimesteps(): number {
    if (this.numInferenceSteps === null) {
      throw new ReimagineError(`${this.name}: number of inference steps is unset; call setTimesteps(n) before step()`);
    }
    return this.numInferenceSteps;
  }

  protected checkSteps(n: number, max = this.config.num_train_timesteps): void {
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw new ReimagineError(`${this.name}: num_inference_steps must be an integer in 1..${max}, got ${n}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Noise schedule: betas and ᾱ exactly as torch float32 builds them.

/** torch.linspace(start, end, steps, dtype=float32) on CPU: halves computed from each end. */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = f32(start);
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  // step*i is exact in float64 for these sizes; one rounding to float32 matches torch's fused multiply-add.
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? f32(s + step * i) : f32(e - step * (steps - i - 1));
  return out;
}

/** diffusers `betas_for_alpha_bar` (cosine, "squaredcos_cap_v2"): float64 maths, stored as float32. */
export function betasForAlphaBar(T: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos((((t + 0.008) / 1.008) * Math.PI) / 2) ** 2;
  const out = new Float32Array(T);
  for (let i = 0; i < T; i++) out[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), maxBeta);
  return out;
}

/** Betas for `beta_schedule` (or `trained_betas`), as the diffusers constructors build them. */
export function betasFor(config: SchedulerConfig, className: string): Float32Array {
  const T = config.num_train_timesteps;
  if (config.trained_betas != null) return Float32Array.from(config.trained_betas);
  switch (config.beta_schedule) {
    case "linear":
      return torchLinspaceF32(config.beta_start, config.beta_end, T);
    case "scaled_linear": {
      const b = torchLinspaceF32(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), T);
      return b.map((x) => f32(x * x));
    }
    case "squaredcos_cap_v2":
      return betasForAlphaBar(T);
    case "sigmoid": {
      if (className !== "DDPMScheduler") break;
      const x = torchLinspaceF32(-6, 6, T);
      const d = config.beta_end - config.beta_start;
      return x.map((v) => f32(f32(f32(1 / f32(1 + f32(Math.exp(-v)))) * d) + config.beta_start));
    }
  }
  throw new ReimagineError(`${className}: beta_schedule '${String(config.beta_schedule)}' is not supported; use linear, scaled_linear or squaredcos_cap_v2`);
}

/** torch.cumprod(1 - betas) on float32: torch accumulates in double and stores float32. */
export function cumprodAlphas(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - betas[i]);
    out[i] = acc;
  }
  return out;
}

/** diffusers `rescale_zero_terminal_snr` (Lin et al. 2023, Algorithm 1) in float32. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const ac = cumprodAlphas(betas);
  const sq = ac.map((a) => f32(Math.sqrt(a)));
  const s0 = sq[0];
  const sT = sq[sq.length - 1];
  const scale = f32(s0 / f32(s0 - sT));
  const bar = sq.map((s) => {
    const v = f32(f32(s - sT) * scale);
    return f32(v * v);
  });
  const out = new Float32Array(betas.length);
  for (let i = 0; i < out.length; i++) out[i] = f32(1 - (i === 0 ? bar[0] : f32(bar[i] / bar[i - 1])));
  return out;
}

// ---------------------------------------------------------------------------------------------
// numpy emulation for timestep spacing (float64 like numpy; callers cast).

/** np.linspace(start, stop, num, endpoint) in float64. */
export function npLinspace(start: number, stop: number, num: number, endpoint = true): number[] {
  const div = endpoint ? num - 1 : num;
  const delta = stop - start;
  const step = div > 0 ? delta / div : NaN;
  const out: number[] = [];
  for (let i = 0; i < num; i++) {
    const y = div <= 0 ? i * delta : step === 0 ? (i / div) * delta : i * step;
    out.push(y + start);
  }
  if (endpoint && num > 1) out[num - 1] = stop;
  return out;
}

/** np.arange(start, stop, step) with numpy's fill rule (x_i = start + i * (x_1 - x_0)). */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  if (len === 0) return out;
  out.push(start);
  if (len > 1) {
    const d = start + step - start;
    for (let i = 1; i < len; i++) out.push(start + i * d);
  }
  return out;
}

/**
 * The three diffusers `timestep_spacing` rules (DDIM/DDPM/Euler/LMS), descending.
 * `roundLinspace`: DDIM/DDPM round the linspace values to integers; Euler/LMS keep them (float32).
 */
export function spacedTimesteps(spacing: string, T: number, n: number, stepsOffset: number, roundLinspace: boolean, className: string): number[] {
  if (spacing === "linspace") {
    return npLinspace(0, T - 1, n)
      .map((t) => (roundLinspace ? roundHalfEven(t) : t))
      .reverse();
  }
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    const out: number[] = [];
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
    return out;
  }
  if (spacing === "trailing") return npArange(T, 0, -(T / n)).map((t) => roundHalfEven(t) - 1);
  throw new ReimagineError(`${className}: timestep_spacing '${spacing}' is not supported; use linspace, leading or trailing`);
}

function checkPredictionType(p: string, className: string): void {
  if (!["epsilon", "v_prediction", "sample", "original_sample"].includes(p)) {
    throw new ReimagineError(`${className}: prediction_type '${p}' is not supported; use epsilon, v_prediction or sample`);
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise helpers over flat latents.

/** Step noise: `opts.noise` if given, else `opts.generator.randn(opts.shape)`. */
export function drawNoise(opts: StepOptions | undefined, length: number, className: string): Float32Array {
  const noise = opts?.noise ?? opts?.generator?.randn(opts.shape ?? [length]);
  if (!noise) {
    throw new ReimagineError(`${className}.step() draws noise: pass opts.generator (torch-compatible) with opts.shape, or opts.noise`);
  }
  if (noise.length !== length) {
    throw new ReimagineError(`${className}.step(): noise has ${noise.length} values but the latents have ${length}`);
  }
  return noise;
}

export function checkSameLength(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new ReimagineError(`${what}: length mismatch ${a.length} vs ${b.length}`);
}

/**
 * out = a(t)·x + b(t)·noise per batch item, where `coef(t)` gives [a, b] for that item's timestep.
 * One timestep applies to all items; k timesteps split the latents into k equal items.
 */
export function mixPerBatch(x: Float32Array, noise: Float32Array, timestep: number | readonly number[], coef: (t: number) => [number, number]): Float32Array {
  checkSameLength(x, noise, "addNoise");
  const ts = typeof timestep === "number" ? [timestep] : timestep;
  if (ts.length === 0 || x.length % ts.length !== 0) {
    throw new ReimagineError(`addNoise: ${ts.length} timesteps cannot split latents of length ${x.length} into equal items`);
  }
  const per = x.length / ts.length;
  const out = new Float32Array(x.length);
  ts.forEach((t, k) => {
    const [a, b] = coef(t);
    for (let i = k * per; i < (k + 1) * per; i++) out[i] = a * x[i] + b * noise[i];
  });
  return out;
}

/** `torch.quantile(|x|, ratio, dim=1)` dynamic thresholding (Imagen), per batch item. */
export function thresholdSample(x: Float32Array, batch: number, ratio: number, maxValue: number): Float32Array {
  const per = x.length / batch;
  const out = new Float32Array(x.length);
  for (let b = 0; b < batch; b++) {
    const abs = Array.from(x.subarray(b * per, (b + 1) * per), Math.abs).sort((p, q) => p - q);
    const pos = ratio * (abs.length - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, abs.length - 1);
    const q = abs[lo] + (abs[hi] - abs[lo]) * (pos - lo);
    const s = Math.min(Math.max(q, 1), maxValue);
    for (let i = b * per; i < (b + 1) * per; i++) out[i] = Math.min(Math.max(x[i], -s), s) / s;
  }
  return out;
}
