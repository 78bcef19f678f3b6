// EulerAncestralDiscreteScheduler ("Euler a"): Euler step down to σ_down, then fresh noise of
// scale σ_up (k-diffusion `sample_euler_ancestral`, η = 1).
// Ref: diffusers `schedulers/scheduling_euler_ancestral_discrete.py` (set_timesteps, step).
// Notation: σ_from = σ_i, σ_to = σ_{i+1}, σ_up² = σ_to²(σ_from² - σ_to²)/σ_from², σ_down² = σ_to² - σ_up².

import { ReimagineError } from "../errors.js";
import { drawNoise, f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput, type StepOptions } from "./scheduler.js";
import { npInterp, SigmaSchedulerBase, trainSigmas } from "./sigmas.js";

export interface EulerAncestralConfig extends SchedulerConfig {
  rescale_betas_zero_snr: boolean;
}

export const EULER_ANCESTRAL_DEFAULTS: EulerAncestralConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
};

export class EulerAncestralDiscreteScheduler extends SigmaSchedulerBase<EulerAncestralConfig> {
  private readonly trainSigma: Float32Array;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("EulerAncestralDiscreteScheduler", EULER_ANCESTRAL_DEFAULTS, source, overrides, { rescaleSetsLastTiny: true });
    if (!["epsilon", "v_prediction"].includes(this.config.prediction_type)) {
      throw new ReimagineError(
        `EulerAncestralDiscreteScheduler: prediction_type '${this.config.prediction_type}' is not supported; use epsilon or v_prediction`,
      );
    }
    this.trainSigma = trainSigmas(this.alphasCumprod);
    const T = this.config.num_train_timesteps;
    this.sigmas = [...Array.from(this.trainSigma).reverse(), 0];
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, numInferenceSteps, c.steps_offset, false, this.name).map(f32);
    this.sigmas = [...this.timesteps.map((t) => npInterp(t, this.trainSigma)), 0].map(f32);
    this.resetStepState();
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput {
    // 1. x̂_0 from the model output (the constructor refuses prediction_type "sample", as diffusers)
    const { i, sigma, x0 } = this.sigmaStepStart(modelOutput, timestep, sample, "EulerAncestralDiscreteScheduler");
    // 2. split the move to σ_to into a deterministic part (σ_down) and fresh noise (σ_up)
    const from = sigma;
    const to = this.sigmas[i + 1];
    const from2 = f32(from * from);
    const to2 = f32(to * to);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const dt = f32(sigmaDown - sigma);
    // 3. Euler step to σ_down, then add σ_up·z (noise is drawn on every step, even when σ_up = 0)
    const z = drawNoise(opts, sample.length, this.name);
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < prev.length; k++) {
      const d = f32(f32(sample[k] - x0[k]) / sigma);
      prev[k] = f32(sample[k] + d * dt) + z[k] * sigmaUp;
    }
    this.stepIndexValue = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
