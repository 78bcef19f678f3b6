// EulerDiscreteScheduler: Euler steps of the probability-flow ODE in σ-space
// (Karras et al. 2022, arXiv:2206.00364, Algorithm 2 with s_churn = 0).
// Ref: diffusers `schedulers/scheduling_euler_discrete.py` (set_timesteps, step).
// Notation: σ_i = sigmas[step_index], x̂_0 = predicted original sample, d = (x - x̂_0)/σ.

import { ReimagineError } from "../errors.js";
import { f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput } from "./scheduler.js";
import { checkSigmaOptions, exponentialSigmas, karrasSigmas, logF32, npInterp, SigmaSchedulerBase, sigmaToT, trainSigmas } from "./sigmas.js";

export interface EulerConfig extends SchedulerConfig {
  interpolation_type: string;
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  use_beta_sigmas: boolean;
  sigma_min: number | null;
  sigma_max: number | null;
  timestep_type: string;
  rescale_betas_zero_snr: boolean;
  final_sigmas_type: string;
}

export const EULER_DEFAULTS: EulerConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  prediction_type: "epsilon",
  interpolation_type: "linear",
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  sigma_min: null,
  sigma_max: null,
  timestep_spacing: "linspace",
  timestep_type: "discrete",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  final_sigmas_type: "zero",
};

export class EulerDiscreteScheduler extends SigmaSchedulerBase<EulerConfig> {
  private readonly trainSigma: Float32Array;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("EulerDiscreteScheduler", EULER_DEFAULTS, source, overrides, { rescaleSetsLastTiny: true });
    checkSigmaOptions(this.config, this.name);
    if (this.config.interpolation_type !== "linear") {
      throw new ReimagineError(`EulerDiscreteScheduler: interpolation_type '${this.config.interpolation_type}' is not supported; use linear`);
    }
    this.trainSigma = trainSigmas(this.alphasCumprod);
    const T = this.config.num_train_timesteps;
    this.sigmas = [...Array.from(this.trainSigma).reverse(), 0];
    this.timesteps = this.continuousV() ? this.sigmas.slice(0, -1).map((s) => f32(0.25 * Math.log(s))) : Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** timestep_type "continuous" with v_prediction: the model is fed 0.25·log σ (EDM-style). */
  private continuousV(): boolean {
    return this.config.timestep_type === "continuous" && this.config.prediction_type === "v_prediction";
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    const n = numInferenceSteps;
    this.numInferenceSteps = n;
    let timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, false, this.name).map(f32);
    let sigmas = timesteps.map((t) => npInterp(t, this.trainSigma));
    const logSigmas = logF32(this.trainSigma);
    if (c.use_karras_sigmas || c.use_exponential_sigmas) {
      const lo = c.sigma_min ?? sigmas[sigmas.length - 1];
      const hi = c.sigma_max ?? sigmas[0];
      sigmas = c.use_karras_sigmas ? karrasSigmas(lo, hi, n) : exponentialSigmas(lo, hi, n);
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logSigmas)));
    }
    const last = c.final_sigmas_type === "sigma_min" ? this.trainSigma[0] : 0;
    if (c.final_sigmas_type !== "zero" && c.final_sigmas_type !== "sigma_min") {
      throw new ReimagineError(`EulerDiscreteScheduler: final_sigmas_type '${c.final_sigmas_type}' is not supported; use zero or sigma_min`);
    }
    this.sigmas = [...sigmas, last].map(f32);
    this.timesteps = this.continuousV() ? this.sigmas.slice(0, -1).map((s) => f32(0.25 * Math.log(s))) : timesteps;
    this.resetStepState();
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerOutput {
    // 1. x̂_0 from the model output; s_churn = 0, so γ = 0 and σ̂ = σ (no extra noise)
    const { i, sigma, x0 } = this.sigmaStepStart(modelOutput, timestep, sample, "EulerDiscreteScheduler");
    const sigmaHat = sigma;
    // 2. Euler step: x_{i+1} = x_i + d·(σ_{i+1} - σ̂), d = (x - x̂_0)/σ̂
    const dt = f32(this.sigmas[i + 1] - sigmaHat);
    const prev = new Float32Array(sample.length);
    for (let k = 0; k < prev.length; k++) {
      const d = f32(f32(sample[k] - x0[k]) / sigmaHat);
      prev[k] = sample[k] + d * dt;
    }
    this.stepIndexValue = i + 1;
    return { prevSample: prev, predOriginalSample: x0 };
  }
}
