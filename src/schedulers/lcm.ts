// LCMScheduler: latent consistency model multistep sampling (Luo et al. 2023, arXiv:2310.04378):
// each step predicts the clean latent with the consistency boundary condition, then re-noises it.
// Ref: diffusers `schedulers/scheduling_lcm.py` (set_timesteps, get_scalings_for_boundary_condition_discrete, step).
// Notation: ᾱ_t = alphas_cumprod[t], c_skip/c_out = boundary scalings, k = T // original_inference_steps.

import { ReimagineError } from "../errors.js";
import { AlphaSchedulerBase } from "./alphas.js";
import { drawNoise, f32, npLinspace, type SchedulerConfig, type SchedulerOutput, type StepOptions } from "./scheduler.js";

export interface LCMConfig extends SchedulerConfig {
  original_inference_steps: number;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  timestep_scaling: number;
  rescale_betas_zero_snr: boolean;
}

export const LCM_DEFAULTS: LCMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  trained_betas: null,
  original_inference_steps: 50,
  clip_sample: false,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  steps_offset: 0,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  timestep_spacing: "leading",
  timestep_scaling: 10.0,
  rescale_betas_zero_snr: false,
};

export class LCMScheduler extends AlphaSchedulerBase<LCMConfig> {
  readonly finalAlphaCumprod: number;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("LCMScheduler", LCM_DEFAULTS, source, overrides);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const T = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    const c = this.config;
    const original = c.original_inference_steps;
    this.checkSteps(numInferenceSteps, Math.min(c.num_train_timesteps, original));
    if (original > c.num_train_timesteps) {
      throw new ReimagineError(`LCMScheduler: original_inference_steps ${original} exceeds num_train_timesteps ${c.num_train_timesteps}; fix the config`);
    }
    // LCM's training schedule: every k-th train timestep, k = T // original_steps
    const k = Math.floor(c.num_train_timesteps / original);
    const origin = Array.from({ length: original }, (_, i) => (i + 1) * k - 1).reverse();
    // n evenly spaced picks from that schedule
    this.timesteps = npLinspace(0, origin.length, numInferenceSteps, false).map((x) => origin[Math.floor(x)]);
    this.numInferenceSteps = numInferenceSteps;
    this.stepIndexValue = null;
    this.beginIndexValue = null;
  }

  /** Consistency boundary condition: c_skip = σ_d²/((t·s)² + σ_d²), c_out = t·s/sqrt((t·s)² + σ_d²). */
  scalings(timestep: number): [number, number] {
    const sigmaData = 0.5;
    const st = f32(timestep * this.config.timestep_scaling);
    const st2 = f32(f32(st * st) + sigmaData ** 2);
    return [f32(sigmaData ** 2 / st2), f32(st / f32(Math.sqrt(st2)))];
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput {
    const n = this.requireTimesteps();
    const i = this.stepIndexValue ?? this.initStepIndex(timestep);
    // 1. previous timestep: the next entry of the schedule
    const prevT = i + 1 < this.timesteps.length ? this.timesteps[i + 1] : timestep;
    // 2. ᾱ_t, ᾱ_prev
    const alphaProdT = this.alphaAt(timestep);
    const alphaProdTPrev = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    // 3. boundary scalings and x̂_0
    const [cSkip, cOut] = this.scalings(timestep);
    const x0 = this.clampX0(this.predict(modelOutput, sample, alphaProdT).x0, opts);
    // 4. denoised = c_out·x̂_0 + c_skip·x_t
    const denoised = x0.map((v, k) => cOut * v + cSkip * sample[k]);
    // 5. re-noise to the previous timestep, except on the last step
    let prev = denoised;
    if (i !== n - 1) {
      const z = drawNoise(opts, sample.length, this.name);
      const a = f32(Math.sqrt(alphaProdTPrev));
      const b = f32(Math.sqrt(f32(1 - alphaProdTPrev)));
      prev = denoised.map((d, k) => a * d + b * z[k]);
    }
    this.stepIndexValue = i + 1;
    return { prevSample: prev, denoised, predOriginalSample: x0 };
  }
}
