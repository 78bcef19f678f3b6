// Inpainting as a conditioning of the one img2img loop: diffusers' StableDiffusionInpaintPipeline and
// StableDiffusionXLInpaintPipeline as step implementations. 9-channel UNets get [latents, mask, masked-image latents]
// before every call; 4-channel UNets get the re-noised original blended back after every step.
// Ref: diffusers pipeline_stable_diffusion_inpaint.py (__call__ 4.-11.), pipeline_stable_diffusion_xl_inpaint.py.
import { ReimagineError } from "../errors.js";
import { imageToTensor, type RGBImage } from "../image.js";
import type { PipelineExtension, RunState, StepState } from "../pipeline/extension.js";
import type { ExtensionFactory, Img2ImgOptions } from "../pipeline/img2img.js";
import { TorchGenerator } from "../rng.js";
import { a1111Fill, latentNoiseFill, latentNothingFill } from "./a1111.js";
import { checkInpaintUnetChannels, initialLatents, inpaintModelInput, legacyInpaintBlend } from "./latents.js";
import { maskImage, maskToLatents, preprocessMask, repeatBatch } from "./mask-processor.js";
import { type ResolvedMaskOptions, resolveMaskOptions } from "./options.js";
import { type DecodedMaskSource, decodeMaskSource, overlayResult, type PreparedMask, prepareMask, processingPicture } from "./prepare.js";

// Notation: N images, B = N (or 2N under CFG) UNet batch, C latent channels, h x w latent size, H x W processing size.

/** A 9-channel model without a mask: everything repainted, raw output. */
const EVERYTHING: ResolvedMaskOptions = { rules: "diffusers", blurX: 0, blurY: 0, invert: false, area: "whole", padding: 0, fill: "original", overlay: false };

const isLatentInput = (x: Img2ImgOptions["image"]): boolean => typeof x === "object" && x !== null && "latents" in x;

/**
 * The built-in inpainting conditioning: a run with `mask`, or any run of a 9-channel (inpainting) UNet, which without a
 * mask repaints the whole picture (an all-white mask, as A1111 runs inpainting models in img2img).
 */
export const inpaintExtension: ExtensionFactory = async (pipe, opts) => {
  const unet = pipe.model.components.unet.config;
  const C = pipe.model.components.vae.config.latent_channels;
  if (!opts.mask && unet.in_channels === C) return undefined;
  const kind = checkInpaintUnetChannels(unet.in_channels, C);
  if (isLatentInput(opts.image)) {
    throw new ReimagineError("inpainting needs the picture itself, not latents: run the mask on the base model's image", "invalid_mask");
  }
  const image = opts.image as RGBImage | string | Buffer;
  let src: DecodedMaskSource = { kind: "everything" };
  let o = EVERYTHING;
  if (opts.mask) {
    o = resolveMaskOptions(opts.mask);
    src = await decodeMaskSource(opts.mask, image);
  }
  return new InpaintSteps(kind, src, { ...o, resizeMode: opts.resizeMode, sketchMaskAlpha: opts.mask?.sketchMaskAlpha }, opts.denoisingStart);
};

class InpaintSteps implements PipelineExtension {
  readonly name = "inpaint";
  private prepared?: PreparedMask;
  /** [B, 1, h, w] and [B, C, h, w] for the 9-channel input; [N, 1, h, w] for the blend. */
  private maskB?: Float32Array;
  private maskedB?: Float32Array;
  private maskN?: Float32Array;

  constructor(
    private readonly kind: "blend" | "concat",
    private readonly src: DecodedMaskSource,
    private readonly o: Parameters<typeof prepareMask>[4],
    private readonly denoisingStart: number | undefined,
  ) {}

  /** 4. the mask against the loaded picture: fit, invert, blur, crop region; nothing to repaint -> the input as is. */
  async prepareInput(input: { original: RGBImage; image: RGBImage }): Promise<{ unchanged?: string; notes?: string[] }> {
    this.prepared = await prepareMask(this.src, input.original, input.image.width, input.image.height, this.o);
    if (this.src.kind === "everything") this.prepared.notes.push("an inpainting model without a mask: the whole picture is repainted");
    return { unchanged: this.prepared.unchanged, notes: this.prepared.notes };
  }

  /**
   * 6. prepare_latents + prepare_mask_latents, drawing in diffusers' order from the run's generator:
   * [the picture's posterior if 4 channels or strength < 1] -> prepare_latents noise -> the masked picture's posterior.
   */
  async prepareLatents(run: RunState): Promise<void> {
    const p = this.prepared!;
    const { width: W, height: H } = run.image!;
    const N = run.numImages;
    const copies = run.conditioning.batch / N; // 2 under CFG
    // 5. preprocess: image_processor (crop -> resize -> [A1111 "fill"] -> [-1, 1]) and mask_processor (-> 0/1)
    let pic = await processingPicture(p, W, H);
    if (this.o.fill === "fill") pic = a1111Fill(pic, p.processMask);
    const initImage = imageToTensor(pic); // [1, 3, H, W]
    const maskCondition = await preprocessMask(p.processMask, W, H); // [1, 1, H, W]
    const maskedImage = maskImage(initImage, maskCondition); // [1, 3, H, W]
    const windowed = this.denoisingStart !== undefined && this.denoisingStart > 0 && this.denoisingStart < 1;
    const strengthMax = run.strength === 1 && !windowed;

    // draw 1: image_latents (return_image_latents for 4 channels, or the start for strength < 1)
    const one = this.kind === "blend" || !strengthMax ? (await run.encodePixels(initImage, H, W)).latents : undefined; // [1, C, h, w]
    // draw 2: prepare_latents' noise [N, C, h, w], kept: the blend re-noises with it at every step
    const f = run.model.vaeScaleFactor;
    const C = run.model.components.vae.config.latent_channels;
    run.shape = [N, C, Math.floor(H / f), Math.floor(W / f)];
    const noise = run.noise.randn(run.shape);
    run.addedNoise = noise;
    // draw 3: masked_image_latents. diffusers encodes them on both paths; the 4-channel path never reads them, so it
    // only consumes the posterior's draw ([1, C, h, w], the generator ends in the same state) and saves a VAE encode
    const maskLatent = maskToLatents(maskCondition, H, W, f); // [1, 1, h, w]
    this.maskN = repeatBatch(maskLatent, N);
    this.maskB = repeatBatch(maskLatent, N * copies);
    if (this.kind === "concat") this.maskedB = repeatBatch((await run.encodePixels(maskedImage, H, W)).latents, N * copies);
    else if (run.model.tinyVae?.use !== "all") run.noise.randn([1, C, run.shape[2], run.shape[3]]); // TAESD draws nothing

    if (one) {
      run.imageLatents = one;
      let start = repeatBatch(one, N); // [N, C, h, w]
      if (this.o.fill === "latent noise") {
        // A1111 draws this noise from a fresh generator seeded with the seed, so the run's draw order is untouched
        start = latentNoiseFill(start, this.maskN, new TorchGenerator(run.seed).randn(run.shape), run.shape);
      } else if (this.o.fill === "latent nothing") start = latentNothingFill(start, this.maskN, run.shape);
      run.latents = windowed ? start : initialLatents(run.scheduler, { strength: run.strength, noise, imageLatents: start, latentTimestep: run.timesteps[0] });
    } else {
      run.latents = initialLatents(run.scheduler, { strength: 1, noise });
    }
  }

  /** 8. 9-channel UNets: cat([scale_model_input(latents), mask, masked_image_latents], dim=1). */
  async beforeUnet(run: RunState, step: StepState): Promise<void> {
    if (this.kind !== "concat") return;
    const [, C, h, w] = run.shape;
    const B = run.conditioning.batch;
    const sample = step.unetFeeds.sample.data as Float32Array;
    step.unetFeeds.sample = { data: inpaintModelInput(sample, this.maskB!, this.maskedB!, [B, C, h, w]), dims: [B, 2 * C + 1, h, w] };
  }

  /** 8. 4-channel UNets, right after scheduler.step: the original re-noised to the next timestep outside the mask. */
  async afterStep(run: RunState, step: StepState): Promise<void> {
    if (this.kind !== "blend") return;
    run.latents = legacyInpaintBlend(run.scheduler, {
      latents: run.latents,
      imageLatents: repeatBatch(run.imageLatents!, run.numImages),
      noise: run.addedNoise!,
      mask: this.maskN!,
      shape: run.shape,
      timesteps: run.timesteps,
      i: step.index,
    }) as Float32Array<ArrayBuffer>;
  }

  /** 11. paste the crop back ("only masked") or composite over the picture (whole), unless the overlay is off. */
  async afterDecode(_run: RunState, images: RGBImage[]): Promise<RGBImage[]> {
    if (!this.o.overlay) return images;
    return Promise.all(images.map((img) => overlayResult(this.prepared!, img)));
  }
}
