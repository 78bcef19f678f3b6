// SDXL's base -> refiner hand-over ("ensemble of expert denoisers", A1111's "Refiner, switch at"): the
// base denoises the first part of the schedule and returns noisy latents (denoising_end), the refiner
// continues from them without VAE encoding or new noise (denoising_start). Both runs use the same seed,
// steps, sampler and guidance. Ref: diffusers docs "SDXL: Refine image quality" with
// StableDiffusionXLImg2ImgPipeline(denoising_end / denoising_start, output_type="latent").
import { check, ReimagineError } from "../errors.js";
import { extractLoraTags } from "../prompt/extra-networks.js";
import { normalizeSeed } from "../rng.js";
import { denoisingSteps } from "../schedulers/strength.js";
import type { Img2ImgOptions, Img2ImgPipeline, Img2ImgResult } from "./img2img.js";

/** A refiner for a run: a model reference (hub repo, folder or single file) and where to switch to it. */
export interface RefinerSpec {
  model: string;
  /** Fraction of the training schedule where the refiner takes over (A1111 "Refiner switch at"), 0 < x < 1. */
  switchAt: number;
}

/**
 * Runs `base` up to `switchAt` (a fraction of the training schedule, 0 < switchAt < 1), then `refiner`
 * from there. Progress steps count through both runs.
 * @example
 * const base = await loadPipeline("stabilityai/stable-diffusion-xl-base-1.0");
 * const refiner = await loadPipeline("stabilityai/stable-diffusion-xl-refiner-1.0");
 * const out = await runWithRefiner(base, refiner, { image: "photo.png", prompt: "a lighthouse", strength: 0.6 }, 0.8);
 */
export async function runWithRefiner(
  base: Img2ImgPipeline,
  refiner: Img2ImgPipeline | (() => Promise<Img2ImgPipeline>),
  opts: Img2ImgOptions,
  switchAt: number,
): Promise<Img2ImgResult> {
  check(
    Number.isFinite(switchAt) && switchAt > 0 && switchAt < 1,
    `refiner switch must be between 0 and 1, exclusive (got ${switchAt}): e.g. --refiner-switch 0.8`,
  );
  check(
    opts.denoisingStart === undefined && opts.denoisingEnd === undefined,
    "a run with a refiner sets the denoising window itself: leave out denoisingStart/denoisingEnd",
  );
  check(opts.outputType !== "latent", 'a run with a refiner ends in the refiner: leave out outputType "latent"');
  const seed = normalizeSeed(opts.seed);
  // progress counts the whole run's steps from the first one (the two windows together are the uninterrupted run's steps)
  const whole = denoisingSteps(opts.steps ?? base.defaults.steps, opts.strength ?? base.defaults.strength);
  const report = opts.onProgress;
  const first = await base.run({
    ...opts,
    seed,
    denoisingEnd: switchAt,
    outputType: "latent",
    onProgress: report && ((e) => report({ ...e, total: Math.max(e.total, whole) })),
  });
  const pipe = typeof refiner === "function" ? await refiner() : refiner;
  if (pipe.model.family !== "sdxl" || base.model.family !== "sdxl") {
    throw new ReimagineError(`a refiner hand-over needs two SDXL models (got ${base.model.family} base and ${pipe.model.family} refiner)`, "usage");
  }
  const [n, c] = first.latentDims!;
  if (pipe.model.components.unet.config.in_channels !== c || pipe.model.vaeScaleFactor !== base.model.vaeScaleFactor) {
    throw new ReimagineError(
      `the refiner ${pipe.modelName} does not share the base model's latent space (${c} channels, VAE factor ${base.model.vaeScaleFactor})`,
      "usage",
    );
  }
  const done = first.stepsRun;
  // LoRAs are the base model's (as diffusers, where they are loaded into the base pipeline): the refiner runs without
  const untagged = (p: string | undefined) => (p === undefined || opts.promptSyntax === "none" ? p : extractLoraTags(p).prompt);
  const second = await pipe.run({
    ...opts,
    prompt: untagged(opts.prompt)!,
    prompt2: untagged(opts.prompt2),
    loras: undefined,
    controlnets: undefined, // ControlNets condition the base only (diffusers has no ControlNet refiner pipeline)
    seed,
    image: { latents: first.latents!, dims: first.latentDims! },
    numImages: n,
    steps: opts.steps ?? base.defaults.steps,
    guidanceScale: opts.guidanceScale ?? base.defaults.guidanceScale,
    denoisingStart: switchAt,
    onProgress: report && ((e) => report({ ...e, step: done + e.step, total: Math.max(done + e.total, whole) })),
  });
  const t = second.timings;
  const params = { ...first.extraGenerationParams, ...second.extraGenerationParams }; // Lora hashes of the base run
  return {
    ...second,
    ...(Object.keys(params).length ? { extraGenerationParams: params } : {}),
    stepsRun: done + second.stepsRun,
    timings: {
      encodePromptMs: first.timings.encodePromptMs + t.encodePromptMs,
      encodeImageMs: first.timings.encodeImageMs,
      denoiseMs: first.timings.denoiseMs + t.denoiseMs,
      decodeMs: t.decodeMs,
      totalMs: first.timings.totalMs + t.totalMs,
    },
  };
}
