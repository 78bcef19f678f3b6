// Sigma-space helpers shared by the k-diffusion style samplers (Euler, Euler a, LMS, DPM++):
// σ_t = sqrt((1-ᾱ_t)/ᾱ_t), np.interp onto inference timesteps, Karras/exponential schedules,
// `_sigma_to_t`, and the common base (step index, input scaling, sigma-based add_noise).
// Ref: diffusers `scheduling_euler_discrete.py` (`_sigma_to_t`, `_convert_to_karras`, `add_noise`).

import { ReimagineError } from "../errors.js";
import { checkSameLength, f32, mixPerBatch, npLinspace, SchedulerBase, type SchedulerConfig } from "./scheduler.js";

/** σ_t for every train timestep, float32 as torch computes `((1 - ᾱ) / ᾱ) ** 0.5`. */
export function trainSigmas(alphasCumprod: Float32Array): Float32Array {
  return alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
}

/** np.interp(x, arange(len(fp)), fp) in float64. */
export function npInterp(x: number, fp: ArrayLike<number>): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0];
  if (x >= last) return fp[last];
  const j = Math.floor(x);
  if (x === j) return fp[j];
  return (fp[j + 1] - fp[j]) * (x - j) + fp[j];
}

/** np.log of a float32 array (result float32). */
export function logF32(values: Float32Array): Float32Array {
  return values.map((v) => f32(Math.log(v)));
}

/** diffusers `_sigma_to_t`: fractional timestep whose log-sigma brackets log(σ). */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // argmax of cumsum(dists >= 0): the first index reaching the final count.
  let count = 0;
  let best = 0;
  let bestIdx = 0;
  for (let i = 0; i < logSigmas.length; i++) {
    if (logSigma - logSigmas[i] >= 0) count++;
    if (count > best) {
      best = count;
      bestIdx = i;
    }
  }
  const lowIdx = Math.min(bestIdx, logSigmas.length - 2);
  const low = logSigmas[lowIdx];
  const high = logSigmas[lowIdx + 1];
  const w = Math.min(Math.max((low - logSigma) / (low - high), 0), 1);
  return (1 - w) * lowIdx + w * (lowIdx + 1);
}

/** Karras et al. (2022) eq. 5 schedule with ρ = 7, from σ_max down to σ_min. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7.0;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return npLinspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** Log-uniform schedule from σ_max down to σ_min. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  return npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}

/** Refuse the sigma options we do not implement, and more than one at once. */
export function checkSigmaOptions(config: SchedulerConfig, className: string): void {
  const on = ["use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"].filter((k) => config[k] === true);
  if (on.length > 1) throw new ReimagineError(`${className}: only one of ${on.join(", ")} may be true; pick one`);
  if (config.use_beta_sigmas === true) {
    throw new ReimagineError(`${className}: use_beta_sigmas is not supported; use use_karras_sigmas or use_exponential_sigmas`);
  }
}

/** Schedulers that work in σ (Euler, Euler a, LMS, DPM++): σ table, step index, scaling, add_noise. */
export abstract class SigmaSchedulerBase<C extends SchedulerConfig> extends SchedulerBase<C> {
  /** σ for each entry of `timesteps`, plus the final σ (float32 values). */
  sigmas: number[] = [];

  /** diffusers `init_noise_sigma` for Euler/LMS: σ_max, or sqrt(σ_max²+1) for leading spacing. */
  get initNoiseSigma(): number {
    const max = this.sigmas.reduce((m, s) => Math.max(m, s), -Infinity);
    if (this.config.timestep_spacing === "linspace" || this.config.timestep_spacing === "trailing") return max;
    return f32(Math.sqrt(f32(f32(max * max) + 1)));
  }

  /** x / sqrt(σ² + 1): the k-diffusion input scaling c_in. */
  scaleModelInput(sample: Float32Array, timestep: number): Float32Array {
    const i = this.stepIndexValue ?? this.initStepIndex(timestep);
    const s = this.sigmas[i];
    const d = f32(Math.sqrt(f32(f32(s * s) + 1)));
    return sample.map((x) => x / d);
  }

  /** The σ index add_noise uses: begin/step index when set (img2img), else looked up from t. */
  protected noiseIndex(t: number): number {
    if (this.beginIndexValue === null) return this.indexForTimestep(t);
    return this.stepIndexValue ?? this.beginIndexValue;
  }

  /** x_t = x_0 + σ·ε. */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number | readonly number[]): Float32Array {
    return mixPerBatch(originalSamples, noise, timestep, (t) => [1, this.sigmas[this.noiseIndex(t)]]);
  }

  protected resetStepState(): void {
    this.stepIndexValue = null;
    this.beginIndexValue = null;
  }

  /**
   * The prologue every σ-space step shares: the step index (looked up from `timestep` on the
   * first step), σ at that index, and x̂_0 from the model output
   * (ε: x - σ·ε; v: c_out·v + c_skip·x with c_out = -σ/sqrt(σ²+1), c_skip = 1/(σ²+1); sample: the output).
   */
  protected sigmaStepStart(
    modelOutput: Float32Array,
    timestep: number,
    sample: Float32Array,
    className: string,
  ): { i: number; sigma: number; x0: Float32Array } {
    checkSameLength(modelOutput, sample, `${className}.step`);
    const i = this.stepIndexValue ?? this.initStepIndex(timestep);
    if (i + 1 >= this.sigmas.length) {
      throw new ReimagineError(`${className}: step() called past the last timestep; call setTimesteps again`);
    }
    const sigma = this.sigmas[i];
    const p = this.config.prediction_type;
    const vOut = f32(-sigma / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
    const vSkip = f32(f32(sigma * sigma) + 1);
    const x0 = new Float32Array(sample.length);
    for (let k = 0; k < x0.length; k++) {
      if (p === "epsilon") x0[k] = sample[k] - sigma * modelOutput[k];
      else if (p === "v_prediction") x0[k] = modelOutput[k] * vOut + sample[k] / vSkip;
      else x0[k] = modelOutput[k];
    }
    return { i, sigma, x0 };
  }
}
