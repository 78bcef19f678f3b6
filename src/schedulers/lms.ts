// LMSDiscreteScheduler: linear multistep in σ-space (k-diffusion `sample_lms`, order 4), whose
// coefficients integrate the Lagrange basis over [σ_i, σ_{i+1}] (scipy.integrate.quad in diffusers).
// Ref: diffusers `schedulers/scheduling_lms_discrete.py` (set_timesteps, get_lms_coefficient, step).
// Notation: σ_i = sigmas[step_index], d_i = (x_i - x̂_0)/σ_i, x_{i+1} = x_i + Σ_j c_j·d_{i-j}.

import { integrate } from "./quadrature.js";
import { f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput } from "./scheduler.js";
import { checkSigmaOptions, exponentialSigmas, karrasSigmas, logF32, npInterp, SigmaSchedulerBase, sigmaToT, trainSigmas } from "./sigmas.js";

export interface LMSConfig extends SchedulerConfig {
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  use_beta_sigmas: boolean;
}

export const LMS_DEFAULTS: LMSConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  prediction_type: "epsilon",
  timestep_spacing: "linspace",
  steps_offset: 0,
};

/** Multistep order used by diffusers' LMS `step` (its `order=4` argument). */
const LMS_ORDER = 4;

export class LMSDiscreteScheduler extends SigmaSchedulerBase<LMSConfig> {
  private readonly trainSigma: Float32Array;
  private derivatives: Float32Array[] = [];

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("LMSDiscreteScheduler", LMS_DEFAULTS, source, overrides);
    checkSigmaOptions(this.config, this.name);
    this.trainSigma = trainSigmas(this.alphasCumprod);
    // diffusers calls set_timesteps(num_train_timesteps) in __init__
    this.setTimesteps(this.config.num_train_timesteps);
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    const n = numInferenceSteps;
    this.numInferenceSteps = n;
    let timesteps = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, false, this.name).map(f32);
    let sigmas = timesteps.map((t) => npInterp(t, this.trainSigma));
    if (c.use_karras_sigmas || c.use_exponential_sigmas) {
      const logSigmas = logF32(this.trainSigma);
      sigmas = c.use_karras_sigmas
        ? karrasSigmas(sigmas[sigmas.length - 1], sigmas[0], n)
        : exponentialSigmas(
            (c.sigma_min as number | null | undefined) ?? sigmas[sigmas.length - 1],
            (c.sigma_max as number | null | undefined) ?? sigmas[0],
            n,
          );
      timesteps = sigmas.map((s) => f32(sigmaToT(s, logSigmas)));
    }
    this.sigmas = [...sigmas, 0].map(f32);
    this.timesteps = timesteps;
    this.resetStepState();
    this.derivatives = [];
  }

  /** ∫_{σ_t}^{σ_{t+1}} Π_{k≠j} (τ - σ_{t-k}) / (σ_{t-j} - σ_{t-k}) dτ. */
  lmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === currentOrder) continue;
        prod *= (tau - s[t - k]) / (s[t - currentOrder] - s[t - k]);
      }
      return prod;
    };
    return integrate(basis, s[t], s[t + 1]);
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerOutput {
    // 1. x̂_0 from the model output
    const { i, sigma, x0 } = this.sigmaStepStart(modelOutput, timestep, sample, "LMSDiscreteScheduler");
    // 2. ODE derivative d = (x - x̂_0)/σ, kept for the last `order` steps
    this.derivatives.push(sample.map((x, k) => f32(x - x0[k]) / sigma));
    if (this.derivatives.length > LMS_ORDER) this.derivatives.shift();
    // 3. linear multistep: x_{i+1} = x_i + Σ_j c_j·d_{i-j}
    const order = Math.min(i + 1, LMS_ORDER);
    const prev = Float64Array.from(sample);
    // diffusers zips the coefficients with the history, so a run started mid-schedule (img2img)
    // uses only as many terms as it has derivatives, each with the order-`order` coefficient.
    for (let j = 0; j < Math.min(order, this.derivatives.length); j++) {
      const coeff = this.lmsCoefficient(order, i, j);
      const d = this.derivatives[this.derivatives.length - 1 - j];
      for (let k = 0; k < prev.length; k++) prev[k] += coeff * d[k];
    }
    this.stepIndexValue = i + 1;
    return { prevSample: Float32Array.from(prev), predOriginalSample: x0 };
  }
}
