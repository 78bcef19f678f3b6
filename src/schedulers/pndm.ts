// PNDMScheduler: pseudo numerical methods for diffusion models (Liu et al. 2022, arXiv:2202.09778):
// Runge-Kutta warm-up (PRK) then linear multistep (PLMS); Stable Diffusion uses skip_prk_steps (PLMS only).
// Ref: diffusers `schedulers/scheduling_pndm.py` (set_timesteps, step_prk, step_plms, _get_prev_sample).
// Notation: ᾱ_t = alphas_cumprod[t], e_t = model output history ("ets"), r = T // n.

import { ReimagineError } from "../errors.js";
import { AlphaSchedulerBase } from "./alphas.js";
import { checkSameLength, f32, spacedTimesteps, type SchedulerConfig, type SchedulerOutput } from "./scheduler.js";

export interface PNDMConfig extends SchedulerConfig {
  skip_prk_steps: boolean;
  set_alpha_to_one: boolean;
}

export const PNDM_DEFAULTS: PNDMConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  skip_prk_steps: false,
  set_alpha_to_one: false,
  prediction_type: "epsilon",
  timestep_spacing: "leading",
  steps_offset: 0,
};

export class PNDMScheduler extends AlphaSchedulerBase<PNDMConfig> {
  override readonly supportsBeginIndex = false;
  readonly finalAlphaCumprod: number;
  prkTimesteps: number[] = [];
  plmsTimesteps: number[] = [];
  private counter = 0;
  private ets: Float32Array[] = [];
  private curSample: Float32Array | null = null;
  private curModelOutput: Float64Array | null = null;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("PNDMScheduler", PNDM_DEFAULTS, source, overrides);
    if (!["epsilon", "v_prediction"].includes(this.config.prediction_type)) {
      throw new ReimagineError(`PNDMScheduler: prediction_type '${this.config.prediction_type}' is not supported; use epsilon or v_prediction`);
    }
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /** diffusers has no set_begin_index on PNDM: its step counter is the state. */
  override setBeginIndex(_beginIndex: number): void {}

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    const n = numInferenceSteps;
    this.numInferenceSteps = n;
    // ascending grid, as diffusers' `_timesteps`
    const grid = spacedTimesteps(c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset, true, this.name).reverse();
    if (c.skip_prk_steps) {
      // PLMS only: the second-to-last grid point is repeated (the first step takes two model calls).
      this.prkTimesteps = [];
      this.plmsTimesteps = [...grid.slice(0, -1), ...grid.slice(-2, -1), ...grid.slice(-1)].reverse();
    } else {
      if (n < 4) throw new ReimagineError(`PNDMScheduler: PRK warm-up needs at least 4 steps (got ${n}); use more steps or skip_prk_steps`);
      const half = Math.floor(Math.floor(c.num_train_timesteps / n) / 2);
      const prk = grid.slice(-4).flatMap((t) => [t, t + half]); // repeat(2) + tile([0, r/2])
      const rep = prk
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1);
      this.prkTimesteps = rep.reverse();
      this.plmsTimesteps = grid.slice(0, -3).reverse();
    }
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.ets = [];
    this.counter = 0;
    this.curModelOutput = null;
    this.curSample = null;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerOutput {
    this.requireTimesteps();
    checkSameLength(modelOutput, sample, "PNDMScheduler.step");
    if (this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps) return this.stepPrk(modelOutput, timestep, sample);
    return this.stepPlms(modelOutput, timestep, sample);
  }

  /** Fourth-order Runge-Kutta warm-up: four model calls per grid step, weights 1/6, 1/3, 1/3, 1/6. */
  private stepPrk(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerOutput {
    const n = this.numInferenceSteps as number;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(this.config.num_train_timesteps / n) / 2);
    const prevTimestep = timestep - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    const acc = (w: number) => {
      const cur = this.curModelOutput ?? new Float64Array(modelOutput.length);
      for (let i = 0; i < cur.length; i++) cur[i] = f32(cur[i] + w * modelOutput[i]);
      this.curModelOutput = cur;
    };
    let eps: Float32Array = modelOutput;
    const phase = this.counter % 4;
    if (phase === 0) {
      acc(1 / 6);
      this.ets.push(modelOutput);
      this.curSample = sample;
    } else if (phase === 1 || phase === 2) {
      acc(1 / 3);
    } else {
      const cur = this.curModelOutput as Float64Array;
      eps = modelOutput.map((m, i) => cur[i] + m / 6);
      this.curModelOutput = null;
    }
    const prev = this.prevSample(this.curSample ?? sample, t, prevTimestep, eps);
    this.counter++;
    return { prevSample: prev };
  }

  /** Linear multistep (Adams-Bashforth) on the ε history; order ramps 1 → 4. */
  private stepPlms(modelOutput: Float32Array, timestep: number, sample: Float32Array): SchedulerOutput {
    const r = Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number));
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new ReimagineError("PNDMScheduler: PLMS steps need the 12 PRK warm-up steps first; start from timesteps[0]");
    }
    let t = timestep;
    let prevTimestep = timestep - r;
    if (this.counter !== 1) {
      this.ets = this.ets.slice(-3);
      this.ets.push(modelOutput);
    } else {
      // second call at the same grid point: average the two ε (Heun-like start)
      prevTimestep = timestep;
      t = timestep + r;
    }
    const e = this.ets;
    const k = e.length;
    let eps: Float32Array;
    let x = sample;
    if (k === 1 && this.counter === 0) {
      eps = modelOutput;
      this.curSample = sample;
    } else if (k === 1 && this.counter === 1) {
      eps = modelOutput.map((m, i) => (m + e[0][i]) / 2);
      x = this.curSample as Float32Array;
      this.curSample = null;
    } else if (k === 2) {
      eps = e[1].map((_, i) => (3 * e[1][i] - e[0][i]) / 2);
    } else if (k === 3) {
      eps = e[2].map((_, i) => (23 * e[2][i] - 16 * e[1][i] + 5 * e[0][i]) / 12);
    } else {
      eps = e[3].map((_, i) => (55 * e[3][i] - 59 * e[2][i] + 37 * e[1][i] - 9 * e[0][i]) / 24);
    }
    const prev = this.prevSample(x, t, prevTimestep, eps);
    this.counter++;
    return { prevSample: prev };
  }

  /** PNDM eq. 11: the transfer φ(x_t, ε, t, t-δ). */
  private prevSample(sample: Float32Array, t: number, prevT: number, modelOutput: Float32Array): Float32Array {
    const a = this.alphaAt(t);
    const ap = prevT >= 0 ? this.alphaAt(prevT) : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    let eps = modelOutput;
    if (this.config.prediction_type === "v_prediction") {
      const sa = f32(Math.sqrt(a));
      const sb = f32(Math.sqrt(b));
      eps = modelOutput.map((m, i) => sa * m + sb * sample[i]);
    }
    const sampleCoeff = f32(Math.sqrt(f32(ap / a)));
    const denom = f32(f32(a * f32(Math.sqrt(bp))) + f32(Math.sqrt(f32(f32(a * b) * ap))));
    const d = f32(ap - a);
    return sample.map((x, i) => sampleCoeff * x - (d * eps[i]) / denom);
  }
}
