// DDIMScheduler: denoising diffusion implicit models (Song et al. 2020, arXiv:2010.02502).
// Ref: diffusers `schedulers/scheduling_ddim.py` (DDIMScheduler.set_timesteps / step).
// Notation: ᾱ_t = alphas_cumprod[t], x̂_0 = predicted original sample, ε̂ = predicted noise, η = eta.

import { AlphaSchedulerBase } from "./alphas.js";
import { drawNoise, f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput, type StepOptions } from "./scheduler.js";

export interface DDIMConfig extends SchedulerConfig {
  clip_sample: boolean;
  set_alpha_to_one: boolean;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  clip_sample_range: number;
  sample_max_value: number;
  rescale_betas_zero_snr: boolean;
}

export const DDIM_DEFAULTS: DDIMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  clip_sample: true,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  rescale_betas_zero_snr: false,
};

export class DDIMScheduler extends AlphaSchedulerBase<DDIMConfig> {
  override readonly supportsBeginIndex = false;
  /** ᾱ used for the step past t = 0. */
  readonly finalAlphaCumprod: number;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("DDIMScheduler", DDIM_DEFAULTS, source, overrides);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    this.timesteps = Array.from({ length: this.config.num_train_timesteps }, (_, i) => this.config.num_train_timesteps - 1 - i);
  }

  /** diffusers has no set_begin_index on DDIM: the step is a pure function of t. */
  override setBeginIndex(_beginIndex: number): void {}

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
    const c = this.config;
    this.timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset, true, this.name);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput {
    const n = this.requireTimesteps();
    const eta = opts?.eta ?? 0;
    // 1. previous timestep t - T/n
    const prevTimestep = timestep - Math.floor(this.config.num_train_timesteps / n);
    // 2. ᾱ_t, ᾱ_{t-1}
    const alphaProdT = this.alphaAt(timestep);
    const alphaProdTPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;
    // 3. x̂_0 and ε̂ (eq. 12 "predicted x_0"), then clip/threshold x̂_0
    const { x0: rawX0, eps: rawEps } = this.predict(modelOutput, sample, alphaProdT);
    const x0 = this.clampX0(rawX0, opts);
    let eps = rawEps;
    if (opts?.useClippedModelOutput) {
      const sa = f32(Math.sqrt(alphaProdT));
      const sb = f32(Math.sqrt(f32(1 - alphaProdT)));
      eps = sample.map((x, i) => (x - sa * x0[i]) / sb);
    }
    // 4. σ_t(η) = η·sqrt((1-ᾱ_{t-1})/(1-ᾱ_t))·sqrt(1-ᾱ_t/ᾱ_{t-1}) (eq. 16)
    const variance = f32(f32(f32(1 - alphaProdTPrev) / f32(1 - alphaProdT)) * f32(1 - f32(alphaProdT / alphaProdTPrev)));
    const stdDevT = f32(eta * f32(Math.sqrt(variance)));
    // 5. "direction pointing to x_t" and x_{t-1} (eq. 12)
    const dirCoef = f32(Math.sqrt(f32(f32(1 - alphaProdTPrev) - f32(stdDevT * stdDevT))));
    const x0Coef = f32(Math.sqrt(alphaProdTPrev));
    const prev = new Float32Array(sample.length);
    for (let i = 0; i < prev.length; i++) prev[i] = x0Coef * x0[i] + dirCoef * eps[i];
    // 6. stochastic part for η > 0
    if (eta > 0) {
      const z = drawNoise(opts, prev.length, this.name);
      for (let i = 0; i < prev.length; i++) prev[i] += stdDevT * z[i];
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
