// DPMSolverMultistepScheduler: DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022,
// arXiv:2206.00927 and arXiv:2211.01095); "DPM++ 2M" = dpmsolver++, order 2, midpoint.
// Ref: diffusers `schedulers/scheduling_dpmsolver_multistep.py` (set_timesteps, step, *_update).
// Notation: α_t = 1/sqrt(σ²+1), σ_t = σ·α_t, λ = log α_t - log σ_t, h = λ_t - λ_s, D0/D1/D2 = differences.

import { ReimagineError } from "../errors.js";
import { roundHalfEven } from "../numeric.js";
import {
  checkSameLength,
  drawNoise,
  f32,
  mixPerBatch,
  npArange,
  npLinspace,
  thresholdSample,
  type SchedulerConfig,
  type SchedulerOutput,
  type StepOptions,
} from "./scheduler.js";
import { checkSigmaOptions, exponentialSigmas, karrasSigmas, logF32, npInterp, SigmaSchedulerBase, sigmaToT, trainSigmas } from "./sigmas.js";

export interface DPMSolverMultistepConfig extends SchedulerConfig {
  solver_order: number;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  algorithm_type: string;
  solver_type: string;
  lower_order_final: boolean;
  euler_at_final: boolean;
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  use_beta_sigmas: boolean;
  use_lu_lambdas: boolean;
  use_flow_sigmas: boolean;
  flow_shift: number;
  final_sigmas_type: string;
  lambda_min_clipped: number;
  variance_type: string | null;
  rescale_betas_zero_snr: boolean;
  use_dynamic_shifting: boolean;
  time_shift_type: string;
}

export const DPM_SOLVER_MULTISTEP_DEFAULTS: DPMSolverMultistepConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: "linear",
  trained_betas: null,
  solver_order: 2,
  prediction_type: "epsilon",
  thresholding: false,
  dynamic_thresholding_ratio: 0.995,
  sample_max_value: 1.0,
  algorithm_type: "dpmsolver++",
  solver_type: "midpoint",
  lower_order_final: true,
  euler_at_final: false,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
  use_lu_lambdas: false,
  use_flow_sigmas: false,
  flow_shift: 1.0,
  final_sigmas_type: "zero",
  lambda_min_clipped: -Infinity,
  variance_type: null,
  timestep_spacing: "linspace",
  steps_offset: 0,
  rescale_betas_zero_snr: false,
  use_dynamic_shifting: false,
  time_shift_type: "exponential",
};

const ALGORITHMS = ["dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"];

/** α_t, σ_t for a k-diffusion σ (float32 like diffusers' 0-d tensors). */
function alphaSigma(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}
const lambdaOf = (a: number, s: number) => f32(f32(Math.log(a)) - f32(Math.log(s)));

export class DPMSolverMultistepScheduler extends SigmaSchedulerBase<DPMSolverMultistepConfig> {
  private readonly trainSigma: Float32Array;
  private modelOutputs: (Float32Array | null)[];
  private lowerOrderNums = 0;

  constructor(source: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
    super("DPMSolverMultistepScheduler", DPM_SOLVER_MULTISTEP_DEFAULTS, source, overrides, { rescaleSetsLastTiny: true });
    const c = this.config;
    checkSigmaOptions(c, this.name);
    // diffusers maps these legacy names onto supported ones
    if (c.algorithm_type === "deis") c.algorithm_type = "dpmsolver++";
    if (["logrho", "bh1", "bh2"].includes(c.solver_type)) c.solver_type = "midpoint";
    const refuse = (what: string) => {
      throw new ReimagineError(`DPMSolverMultistepScheduler: ${what}`);
    };
    if (!ALGORITHMS.includes(c.algorithm_type)) refuse(`algorithm_type '${c.algorithm_type}' is not supported; use one of ${ALGORITHMS.join(", ")}`);
    if (c.solver_type !== "midpoint" && c.solver_type !== "heun") refuse(`solver_type '${c.solver_type}' is not supported; use midpoint or heun`);
    if (![1, 2, 3].includes(c.solver_order)) refuse(`solver_order ${c.solver_order} is not supported; use 1, 2 or 3`);
    if (c.solver_order === 3 && c.algorithm_type === "sde-dpmsolver") refuse("third-order sde-dpmsolver is not defined; use solver_order 2");
    if (!c.algorithm_type.endsWith("dpmsolver++") && c.final_sigmas_type === "zero") {
      refuse(`final_sigmas_type 'zero' needs a dpmsolver++ algorithm (got ${c.algorithm_type}); set final_sigmas_type to sigma_min`);
    }
    if (c.final_sigmas_type !== "zero" && c.final_sigmas_type !== "sigma_min")
      refuse(`final_sigmas_type '${c.final_sigmas_type}' is not supported; use zero or sigma_min`);
    if (c.use_lu_lambdas || c.use_flow_sigmas || c.use_dynamic_shifting)
      refuse("use_lu_lambdas / use_flow_sigmas / use_dynamic_shifting are not supported; turn them off");
    if (c.variance_type === "learned" || c.variance_type === "learned_range")
      refuse("learned variance_type is not supported; use a model with variance_type null");
    if (c.prediction_type === "original_sample") refuse("prediction_type 'original_sample' is not supported; use epsilon, sample or v_prediction");
    this.trainSigma = trainSigmas(this.alphasCumprod);
    this.sigmas = Array.from(this.trainSigma);
    const T = c.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
    this.modelOutputs = new Array(c.solver_order).fill(null);
  }

  override get initNoiseSigma(): number {
    return 1;
  }

  /** DPM-Solver works on x_t directly: no input scaling. */
  override scaleModelInput(sample: Float32Array, _timestep: number): Float32Array {
    return sample;
  }

  /** x_t = α_t·x_0 + σ_t·ε with (α_t, σ_t) from the σ at the begin/step index. */
  override addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number | readonly number[]): Float32Array {
    return mixPerBatch(originalSamples, noise, timestep, (t) => alphaSigma(this.sigmas[this.noiseIndex(t)]));
  }

  /** DPM variant: an unknown timestep maps to the last index. */
  protected override indexForTimestep(timestep: number, schedule: readonly number[] = this.timesteps): number {
    const hits: number[] = [];
    for (let i = 0; i < schedule.length; i++) if (schedule[i] === timestep) hits.push(i);
    if (hits.length === 0) return this.timesteps.length - 1;
    return hits.length > 1 ? hits[1] : hits[0];
  }

  setTimesteps(numInferenceSteps: number): void {
    this.checkSteps(numInferenceSteps);
    const c = this.config;
    const n = numInferenceSteps;
    const T = c.num_train_timesteps;
    // 1. last usable train timestep (λ clipping)
    const lambdaFlipped = Array.from(this.alphasCumprod, (a) => lambdaOf(f32(Math.sqrt(a)), f32(Math.sqrt(f32(1 - a))))).reverse();
    let clippedIdx = lambdaFlipped.findIndex((l) => l >= c.lambda_min_clipped);
    if (clippedIdx < 0) clippedIdx = lambdaFlipped.length;
    const last = T - clippedIdx;
    // 2. timestep spacing (n+1 grid points, the final one dropped)
    let timesteps: number[];
    if (c.timestep_spacing === "linspace") {
      timesteps = npLinspace(0, last - 1, n + 1)
        .map(roundHalfEven)
        .reverse()
        .slice(0, -1);
    } else if (c.timestep_spacing === "leading") {
      const ratio = Math.floor(last / (n + 1));
      timesteps = Array.from({ length: n + 1 }, (_, i) => i * ratio)
        .reverse()
        .slice(0, -1)
        .map((t) => t + c.steps_offset);
    } else if (c.timestep_spacing === "trailing") {
      timesteps = npArange(last, 0, -(T / n)).map((t) => roundHalfEven(t) - 1);
    } else {
      throw new ReimagineError(`${this.name}: timestep_spacing '${c.timestep_spacing}' is not supported; use linspace, leading or trailing`);
    }
    // 3. σ schedule
    let sigmas: number[];
    if (c.use_karras_sigmas || c.use_exponential_sigmas) {
      const logSigmas = logF32(this.trainSigma);
      const lo = (c.sigma_min as number | null | undefined) ?? this.trainSigma[0];
      const hi = (c.sigma_max as number | null | undefined) ?? this.trainSigma[T - 1];
      sigmas = c.use_karras_sigmas ? karrasSigmas(lo, hi, n) : exponentialSigmas(lo, hi, n);
      const ts = sigmas.map((s) => sigmaToT(s, logSigmas));
      // Karras timesteps are rounded (except for the cosine schedule); the int64 cast truncates the rest.
      const round = c.use_karras_sigmas && c.beta_schedule !== "squaredcos_cap_v2";
      timesteps = ts.map((t) => (round ? roundHalfEven(t) : Math.trunc(t)));
    } else {
      sigmas = timesteps.map((t) => npInterp(t, this.trainSigma));
    }
    const sigmaLast = c.final_sigmas_type === "sigma_min" ? this.trainSigma[0] : 0;
    this.sigmas = [...sigmas, sigmaLast].map(f32);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.modelOutputs = new Array(c.solver_order).fill(null);
    this.lowerOrderNums = 0;
    this.resetStepState();
  }

  /** diffusers `convert_model_output`: x̂_0 for DPM-Solver++, ε̂ for DPM-Solver. */
  private convertModelOutput(modelOutput: Float32Array, sample: Float32Array, opts: StepOptions | undefined): Float32Array {
    const c = this.config;
    const [a, s] = alphaSigma(this.sigmas[this.stepIndexValue as number]);
    const p = c.prediction_type;
    const batch = opts?.shape?.[0] ?? 1;
    if (c.algorithm_type.endsWith("dpmsolver++")) {
      let x0: Float32Array;
      if (p === "epsilon") x0 = sample.map((x, i) => (x - s * modelOutput[i]) / a);
      else if (p === "sample") x0 = modelOutput.slice();
      else x0 = sample.map((x, i) => a * x - s * modelOutput[i]);
      return c.thresholding ? thresholdSample(x0, batch, c.dynamic_thresholding_ratio, c.sample_max_value) : x0;
    }
    let eps: Float32Array;
    if (p === "epsilon") eps = modelOutput.slice();
    else if (p === "sample") eps = sample.map((x, i) => (x - a * modelOutput[i]) / s);
    else eps = modelOutput.map((m, i) => a * m + s * sample[i]);
    if (c.thresholding) {
      const x0 = thresholdSample(
        sample.map((x, i) => (x - s * eps[i]) / a),
        batch,
        c.dynamic_thresholding_ratio,
        c.sample_max_value,
      );
      eps = sample.map((x, i) => (x - a * x0[i]) / s);
    }
    return eps;
  }

  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, opts?: StepOptions): SchedulerOutput {
    this.requireTimesteps();
    checkSameLength(modelOutput, sample, "DPMSolverMultistepScheduler.step");
    const c = this.config;
    const i = this.stepIndexValue ?? this.initStepIndex(timestep);
    if (i + 1 >= this.sigmas.length) throw new ReimagineError(`${this.name}: step() called past the last timestep; call setTimesteps again`);
    const len = this.timesteps.length;
    const lowerOrderFinal = i === len - 1 && (c.euler_at_final || (c.lower_order_final && len < 15) || c.final_sigmas_type === "zero");
    const lowerOrderSecond = i === len - 2 && c.lower_order_final && len < 15;
    // 1. model output -> x̂_0 (or ε̂), pushed onto the history
    const m = this.convertModelOutput(modelOutput, sample, opts);
    this.modelOutputs.shift();
    this.modelOutputs.push(m);
    const sde = c.algorithm_type.startsWith("sde-");
    const noise = sde ? drawNoise(opts, sample.length, this.name) : null;
    // 2. pick the order: warm up from first order, drop to lower orders at the end
    let order = 3;
    if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) order = 1;
    else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) order = 2;
    const prev = this.update(order, sample, noise);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
    this.stepIndexValue = i + 1;
    return { prevSample: prev };
  }

  /** x_{t} = a·x_s + b0·D0 + b1·D1 + b2·D2 + c·z for the chosen order (DPM-Solver(++) eqs.). */
  private update(order: number, sample: Float32Array, noise: Float32Array | null): Float32Array {
    const { algorithm_type: alg, solver_type: solver } = this.config;
    const i = this.stepIndexValue as number;
    const [at, st] = alphaSigma(this.sigmas[i + 1]);
    const [as0, ss0] = alphaSigma(this.sigmas[i]);
    const lt = lambdaOf(at, st);
    const l0 = lambdaOf(as0, ss0);
    const h = f32(lt - l0);
    const em = f32(Math.exp(-h)); // e^{-h}
    const ep = f32(Math.exp(h)); // e^{h}
    const e2 = f32(Math.exp(f32(-2 * h))); // e^{-2h}
    const outs = this.modelOutputs as Float32Array[];
    const m0 = outs[outs.length - 1];
    let a: number;
    let b0: number;
    let b1 = 0;
    let b2 = 0;
    let cz = 0;
    if (alg === "dpmsolver++") {
      a = f32(st / ss0);
      b0 = -f32(at * f32(em - 1));
    } else if (alg === "dpmsolver") {
      a = f32(at / as0);
      b0 = -f32(st * f32(ep - 1));
    } else if (alg === "sde-dpmsolver++") {
      a = f32(f32(st / ss0) * em);
      b0 = f32(at * f32(1 - e2));
      cz = f32(st * f32(Math.sqrt(f32(1 - e2))));
    } else {
      a = f32(at / as0);
      b0 = -2 * f32(st * f32(ep - 1));
      cz = f32(st * f32(Math.sqrt(f32(f32(Math.exp(f32(2 * h))) - 1))));
    }
    let d1: Float32Array | null = null;
    let d2: Float32Array | null = null;
    if (order >= 2) {
      const [as1, ss1] = alphaSigma(this.sigmas[i - 1]);
      const l1 = lambdaOf(as1, ss1);
      const r0 = f32(f32(l0 - l1) / h);
      const m1 = outs[outs.length - 2];
      const d10 = m0.map((v, k) => f32(1 / r0) * f32(v - m1[k]));
      if (order === 2) {
        d1 = d10;
        const mid = solver === "midpoint";
        if (alg === "dpmsolver++") b1 = mid ? 0.5 * b0 : f32(at * f32(f32(f32(em - 1) / h) + 1));
        else if (alg === "dpmsolver") b1 = mid ? 0.5 * b0 : -f32(st * f32(f32(f32(ep - 1) / h) - 1));
        else if (alg === "sde-dpmsolver++") b1 = mid ? 0.5 * b0 : f32(at * f32(f32(f32(1 - e2) / f32(-2 * h)) + 1));
        else b1 = mid ? -f32(st * f32(ep - 1)) : -2 * f32(st * f32(f32(f32(ep - 1) / h) - 1));
      } else {
        const [as2, ss2] = alphaSigma(this.sigmas[i - 2]);
        const r1 = f32(f32(l1 - lambdaOf(as2, ss2)) / h);
        const m2 = outs[outs.length - 3];
        const d11 = m1.map((v, k) => f32(1 / r1) * f32(v - m2[k]));
        const w = f32(r0 / f32(r0 + r1));
        const inv = f32(1 / f32(r0 + r1));
        d1 = d10.map((v, k) => v + w * f32(v - d11[k]));
        d2 = d10.map((v, k) => inv * f32(v - d11[k]));
        if (alg === "dpmsolver++") {
          b1 = f32(at * f32(f32(f32(em - 1) / h) + 1));
          b2 = -f32(at * f32(f32(f32(f32(em - 1) + h) / f32(h * h)) - 0.5));
        } else if (alg === "dpmsolver") {
          b1 = -f32(st * f32(f32(f32(ep - 1) / h) - 1));
          b2 = -f32(st * f32(f32(f32(f32(ep - 1) - h) / f32(h * h)) - 0.5));
        } else {
          const tw = f32(2 * h);
          b1 = f32(at * f32(f32(f32(1 - e2) / -tw) + 1));
          b2 = f32(at * f32(f32(f32(f32(1 - e2) - tw) / f32(tw * tw)) - 0.5));
        }
      }
    }
    const out = new Float32Array(sample.length);
    for (let k = 0; k < out.length; k++) {
      let v = a * sample[k] + b0 * m0[k];
      if (d1) v += b1 * d1[k];
      if (d2) v += b2 * d2[k];
      if (noise) v += cz * noise[k];
      out[k] = v;
    }
    return out;
  }
}
