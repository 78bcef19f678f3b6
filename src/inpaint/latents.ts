// The latent-space pieces of diffusers' StableDiffusionInpaintPipeline as pure functions over float32 arrays:
// the order of random draws, prepare_latents' start latents (strength 1 = pure noise), the 9-channel UNet input,
// the 4-channel ("legacy") blend after every scheduler step. Same in StableDiffusionXLInpaintPipeline.
// Ref: diffusers pipeline_stable_diffusion_inpaint.py (prepare_latents, prepare_mask_latents, __call__ 6.-10.).
import { ReimagineError } from "../errors.js";
import type { Scheduler } from "../schedulers/scheduler.js";

// Notation: N = batch (images per prompt), C = latent channels (4), h x w = latent size, mask m in {0, 1} (1 = repaint).

const f32 = Math.fround;

/** Who draws from the run's one generator, in order (the fixture's `random_draws` roles). */
export type DrawRole = "vae_posterior_sample_image" | "prepare_latents_noise" | "vae_posterior_sample_masked_image" | "scheduler_step_noise";

/**
 * The order in which StableDiffusionInpaintPipeline draws from its generator:
 * 1. the picture's VAE posterior sample, only when the UNet has 4 channels (image_latents feed the blend) or strength < 1;
 * 2. prepare_latents' noise [N, C, h, w] (one call);
 * 3. the masked picture's VAE posterior sample (always, even on the 4-channel path that never uses it);
 * 4. one per denoising step when the sampler draws in step() (Euler a, DDPM, LCM, DDIM with eta > 0).
 * @example drawOrder(9, 1, 10, false) // ["prepare_latents_noise", "vae_posterior_sample_masked_image"]
 */
export function drawOrder(unetInChannels: number, strength: number, steps: number, stochasticSampler: boolean): DrawRole[] {
  const roles: DrawRole[] = [];
  if (unetInChannels === 4 || strength !== 1) roles.push("vae_posterior_sample_image");
  roles.push("prepare_latents_noise", "vae_posterior_sample_masked_image");
  if (stochasticSampler) for (let i = 0; i < steps; i++) roles.push("scheduler_step_noise");
  return roles;
}

/** The UNet kinds the inpaint pipeline accepts (diffusers __call__ 8.): 4 = blend, 9 = latents + mask + masked-image latents. */
export function checkInpaintUnetChannels(unetInChannels: number, latentChannels: number): "blend" | "concat" {
  if (unetInChannels === latentChannels) return "blend";
  if (unetInChannels === 2 * latentChannels + 1) return "concat";
  throw new ReimagineError(
    `this UNet has ${unetInChannels} input channels; inpainting needs ${latentChannels} (any model, latent blend) or ${2 * latentChannels + 1} (an inpainting model)`,
  );
}

/**
 * prepare_latents: strength 1 ("is_strength_max") starts from noise * init_noise_sigma and ignores the picture;
 * otherwise scheduler.add_noise(image_latents, noise, timesteps[0]) as img2img.
 * `imageLatents` is [N, C, h, w] (already repeated per image), required when strength < 1.
 * @example const latents = initialLatents(scheduler, { strength: 1, noise })
 */
export function initialLatents(
  scheduler: Scheduler,
  a: { strength: number; noise: Float32Array; imageLatents?: Float32Array; latentTimestep?: number },
): Float32Array {
  if (a.strength === 1) {
    const s = f32(scheduler.initNoiseSigma);
    return a.noise.map((v) => f32(v * s));
  }
  if (!a.imageLatents || a.latentTimestep === undefined) {
    throw new ReimagineError("strength < 1 starts from the picture: pass imageLatents and latentTimestep");
  }
  return scheduler.addNoise(a.imageLatents, a.noise, a.latentTimestep);
}

/** [N, C, h, w] of a latent batch. */
export type LatentShape = readonly [number, number, number, number];

function checkLengths(shape: LatentShape, parts: [string, Float32Array, number][]): void {
  const [n, c, h, w] = shape;
  for (const [name, t, channels] of parts) {
    if (t.length !== n * channels * h * w) {
      throw new ReimagineError(
        `${name} holds ${t.length} values; [${n}, ${channels}, ${h}, ${w}] needs ${n * channels * h * w} (latents [${n}, ${c}, ${h}, ${w}])`,
      );
    }
  }
}

/**
 * The 9-channel UNet input: cat([scale_model_input(latents), mask, masked_image_latents], dim=1). Only the
 * C latent channels are scaled (the caller passes them scaled); `shape` is theirs, [B, C, h, w] with B = 2N under CFG,
 * and the mask [B, 1, h, w] and masked-image latents [B, C, h, w] come with the same B (maskToLatents, repeatBatch).
 * @example unet.run({ sample: { data: inpaintModelInput(scaled, mask, maskedLatents, [2, 4, 64, 64]), dims: [2, 9, 64, 64] }, ... })
 */
export function inpaintModelInput(scaledLatents: Float32Array, mask: Float32Array, maskedImageLatents: Float32Array, shape: LatentShape): Float32Array {
  const [b, c, h, w] = shape;
  checkLengths(shape, [
    ["latents", scaledLatents, c],
    ["mask", mask, 1],
    ["masked-image latents", maskedImageLatents, c],
  ]);
  const plane = h * w;
  const per = c * plane;
  const out = new Float32Array(b * (2 * c + 1) * plane); // [B, 2C+1, h, w]
  for (let i = 0; i < b; i++) {
    const o = i * (2 * per + plane);
    out.set(scaledLatents.subarray(i * per, (i + 1) * per), o); // [C, h, w]
    out.set(mask.subarray(i * plane, (i + 1) * plane), o + per); // [1, h, w]
    out.set(maskedImageLatents.subarray(i * per, (i + 1) * per), o + per + plane); // [C, h, w]
  }
  return out;
}

/**
 * latents = (1 - m) * initLatentsProper + m * latents: latents and original [N, C, h, w], the mask [N, 1, h, w]
 * broadcast over C, in float32 as torch (each product rounded, then the sum).
 */
export function blendLatents(latents: Float32Array, initLatentsProper: Float32Array, mask: Float32Array, shape: LatentShape): Float32Array {
  const [, c, h, w] = shape;
  checkLengths(shape, [
    ["latents", latents, c],
    ["original latents", initLatentsProper, c],
    ["mask", mask, 1],
  ]);
  const plane = h * w;
  const out = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) {
    const m = mask[Math.floor(i / (c * plane)) * plane + (i % plane)];
    out[i] = f32(f32(f32(1 - m) * initLatentsProper[i]) + f32(m * latents[i]));
  }
  return out;
}

/**
 * The 4-channel ("legacy") inpainting blend after scheduler.step at loop index i: the original latents are re-noised to
 * the NEXT timestep with the SAME prepare_latents noise (no new draw), except after the last step (the clean
 * image_latents), then blended outside the mask. `mask` is one copy (the uncond half of the CFG pair).
 * Call it right after scheduler.step: sigma schedulers take the re-noising sigma from their step index (diffusers add_noise).
 * @example latents = legacyInpaintBlend(scheduler, { latents, imageLatents, noise, mask, shape: [1, 4, 64, 64], timesteps, i })
 */
export function legacyInpaintBlend(
  scheduler: Scheduler,
  a: {
    latents: Float32Array;
    imageLatents: Float32Array;
    noise: Float32Array;
    mask: Float32Array;
    shape: LatentShape;
    timesteps: readonly number[];
    i: number;
  },
): Float32Array {
  const last = a.i >= a.timesteps.length - 1;
  const proper = last ? a.imageLatents : scheduler.addNoise(a.imageLatents, a.noise, [a.timesteps[a.i + 1]]);
  return blendLatents(a.latents, proper, a.mask, a.shape);
}
