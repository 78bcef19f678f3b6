// Shared base of the ᾱ-parameterised samplers (DDIM, PNDM, DDPM, LCM): unit input scaling,
// x_t = sqrt(ᾱ_t)·x_0 + sqrt(1-ᾱ_t)·ε, and the x̂_0 / ε̂ conversions from the model output.
// Ref: diffusers `DDIMScheduler.add_noise` and the "1. compute predicted original sample" steps.

import { ReimagineError } from "../errors.js";
import { checkSameLength, f32, mixPerBatch, SchedulerBase, thresholdSample, type SchedulerConfig, type StepOptions } from "./scheduler.js";

export abstract class AlphaSchedulerBase<C extends SchedulerConfig> extends SchedulerBase<C> {
  readonly initNoiseSigma: number = 1;

  /** No input scaling for ᾱ-parameterised samplers. */
  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  /** x_t = sqrt(ᾱ_t)·x_0 + sqrt(1-ᾱ_t)·ε (DDPM eq. 4). */
  addNoise(originalSamples: Float32Array, noise: Float32Array, timestep: number | readonly number[]): Float32Array {
    return mixPerBatch(originalSamples, noise, timestep, (t) => {
      const a = this.alphaAt(t);
      return [f32(Math.sqrt(a)), f32(Math.sqrt(f32(1 - a)))];
    });
  }

  /** ᾱ_t for an integer train timestep, with a clear error otherwise. */
  protected alphaAt(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new ReimagineError(`${this.name}: timestep ${t} is not an integer in 0..${this.alphasCumprod.length - 1}; pass one of scheduler.timesteps`);
    }
    return this.alphasCumprod[t];
  }

  /** x̂_0 and ε̂ from the model output for ᾱ_t (epsilon / sample / v_prediction). */
  protected predict(modelOutput: Float32Array, sample: Float32Array, alphaProdT: number): { x0: Float32Array; eps: Float32Array } {
    checkSameLength(modelOutput, sample, `${this.name}.step`);
    const sa = f32(Math.sqrt(alphaProdT));
    const sb = f32(Math.sqrt(f32(1 - alphaProdT)));
    const n = sample.length;
    const x0 = new Float32Array(n);
    const eps = new Float32Array(n);
    const p = this.config.prediction_type;
    for (let i = 0; i < n; i++) {
      const m = modelOutput[i];
      const x = sample[i];
      if (p === "epsilon") {
        x0[i] = (x - sb * m) / sa;
        eps[i] = m;
      } else if (p === "sample" || p === "original_sample") {
        x0[i] = m;
        eps[i] = (x - sa * m) / sb;
      } else {
        x0[i] = sa * x - sb * m;
        eps[i] = sa * m + sb * x;
      }
    }
    return { x0, eps };
  }

  /** Dynamic thresholding or clipping of x̂_0 when the config asks for it. */
  protected clampX0(x0: Float32Array, opts: StepOptions | undefined): Float32Array {
    const c = this.config;
    if (c.thresholding === true) {
      const batch = opts?.shape?.[0] ?? 1;
      return thresholdSample(x0, batch, c.dynamic_thresholding_ratio as number, c.sample_max_value as number);
    }
    if (c.clip_sample === true) {
      const r = c.clip_sample_range as number;
      return x0.map((v) => Math.min(Math.max(v, -r), r));
    }
    return x0;
  }
}
