// DDPMScheduler: ancestral sampling of denoising diffusion probabilistic models (Ho et al. 2020, arXiv:2006.11239).
// Ref: diffusers `schedulers/scheduling_ddpm.py` (set_timesteps, _get_variance, step, previous_timestep).
// Notation: ᾱ_t = alphas_cumprod[t], β_t = 1 - ᾱ_t/ᾱ_{t'} for the previous scheduled timestep t'.

import { ReimagineError } from "../errors.js";
import { AlphaSchedulerBase } from "./alphas.js";
import { drawNoise, f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput, type StepOptions } from "./scheduler.js";

export interface DDPMConfig extends SchedulerConfig {
  variance_type: string;
  clip_sample: boolean;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  clip_sample_range: number;
  sample_max_value: number;
  rescale_betas_zero_snr: boolean;
}

export const DDPM_DEFAULTS: DDPMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  variance_type: "fixed_small",
  clip_sample: true,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  clip_sample_range: 1.0,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

// fixed_large_log (sqrt of a log: NaN in diffusers' step) and the learned types (split model output) are refused.
const VARIANCE_TYPES = ["fixed_small", "fixed_small_log", "fixed_large"];

export class DDPMScheduler extends AlphaSchedulerBase<DDPMConfig> {
  override readonly supportsBeginIndex = false;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("DDPMScheduler", DDPM_DEFAULTS, source, overrides);
    if (!VARIANCE_TYPES.includes(this.config.variance_type)) {
      throw new ReimagineError(`DDPMScheduler: variance_type '${this.config.variance_type}' is not supported; use one of ${VARIANCE_TYPES.join(", ")}`);
    }
    const T = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** diffusers has no set_begin_index on DDPM: the previous timestep is looked up from t. */
  override setBeginIndex(_beginIndex: number): void {}

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset, true, this.name);
  }

  /** The scheduled timestep after t (-1 after the last); t-1 before setTimesteps. */
  previousTimestep(t: number): number {
    if (this.numInferenceSteps === null) return t - 1;
    const idx = this.timesteps.indexOf(t);
    if (idx < 0) throw new ReimagineError(`DDPMScheduler: timestep ${t} is not in scheduler.timesteps; pass one of them`);
    return idx === this.timesteps.length - 1 ? -1 : this.timesteps[idx + 1];
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput {
    const t = timestep;
    const prevT = this.previousTimestep(t);
    // 1. ᾱ_t, ᾱ_{t'}, β_t = 1 - α_t
    const alphaProdT = this.alphaAt(t);
    const alphaProdTPrev = prevT >= 0 ? this.alphaAt(prevT) : 1;
    const betaProdT = f32(1 - alphaProdT);
    const betaProdTPrev = f32(1 - alphaProdTPrev);
    const currentAlphaT = f32(alphaProdT / alphaProdTPrev);
    const currentBetaT = f32(1 - currentAlphaT);
    // 2. x̂_0 (eq. 15), clipped/thresholded
    const x0 = this.clampX0(this.predict(modelOutput, sample, alphaProdT).x0, opts);
    // 3. posterior mean μ̃_t(x_t, x̂_0) (eq. 7)
    const x0Coeff = f32(f32(f32(Math.sqrt(alphaProdTPrev)) * currentBetaT) / betaProdT);
    const xtCoeff = f32(f32(f32(Math.sqrt(currentAlphaT)) * betaProdTPrev) / betaProdT);
    const prev = x0.map((v, k) => x0Coeff * v + xtCoeff * sample[k]);
    // 4. add σ_t·z for t > 0
    if (t > 0) {
      const z = drawNoise(opts, sample.length, this.name);
      const variance = f32(Math.max(f32(f32(betaProdTPrev / betaProdT) * currentBetaT), 1e-20));
      const vt = this.config.variance_type;
      let std: number;
      if (vt === "fixed_small") std = f32(Math.sqrt(variance));
      else if (vt === "fixed_small_log") std = f32(Math.exp(f32(0.5 * f32(Math.log(variance)))));
      else std = f32(Math.sqrt(currentBetaT)); // fixed_large
      for (let k = 0; k < prev.length; k++) prev[k] += std * z[k];
    }
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
