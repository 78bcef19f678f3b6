// The pipeline contract for conditionings: a mask, a ControlNet, a refiner hand-over plug into the ONE
// denoise loop of img2img.ts as step implementations (prepare latents, before each UNet call, after each
// scheduler step, after decode) plus the UNet build options they need. Nothing here runs a model.
import type { RGBImage } from "../image.js";
import type { UNetBuildOptions } from "../models/unet.js";
import type { TensorData } from "../runtime.js";
import type { Scheduler } from "../schedulers/scheduler.js";
import type { StableDiffusionModel } from "./components.js";
import type { Conditioning } from "./family.js";

/** Draws standard normal noise in the generator's order (or replays injected draws in tests). */
export interface NoiseSource {
  randn(shape: readonly number[]): Float32Array;
}

/** A 4-D float tensor [N, C, H, W]. */
export interface Tensor4 {
  data: Float32Array;
  dims: [number, number, number, number];
}

/** What the steps of one run share. Steps may replace `latents` (and the fields they own). */
export interface RunState {
  readonly model: StableDiffusionModel;
  readonly scheduler: Scheduler;
  readonly noise: NoiseSource;
  /** Step 3's conditioning record (UNet inputs for the whole CFG batch). */
  readonly conditioning: Conditioning;
  /** Step 4's timesteps (after strength truncation and the denoising window). */
  readonly timesteps: readonly number[];
  readonly numImages: number;
  /** The preprocessed input picture (output size), and as a [1, 3, H, W] tensor in [-1, 1]; absent for latent input. */
  readonly image?: RGBImage;
  readonly pixels?: Float32Array;
  /** The picture as given (before resizing to the output size), e.g. for "inpaint only masked" crops. */
  readonly originalImage?: RGBImage;
  /**
   * diffusers `_encode_vae_image` / retrieve_latents(sample): scaling_factor x a posterior sample of
   * [1, 3, H, W] pixels in [-1, 1] (one generator draw; the tiny VAE when it encodes: no draw). Returns [1, C, h, w].
   */
  encodePixels(pixels: Float32Array, height: number, width: number): Promise<{ latents: Float32Array; dims: [number, number, number, number] }>;
  /** Latent shape of the batch [N, C, h, w]. */
  shape: [number, number, number, number];
  /** Scaled image latents of one picture (init_latents before noise), set by prepare latents. */
  imageLatents?: Float32Array;
  /** The noise prepare latents added (one per batch element), when it drew one. */
  addedNoise?: Float32Array;
  /** The current latents [N, C, h, w]. */
  latents: Float32Array;
}

/** One denoising step as the hooks see it. */
export interface StepState {
  /** 0-based index into RunState.timesteps. */
  index: number;
  t: number;
  /** This call's UNet feeds: `sample` (CFG-doubled, scale_model_input applied), `timestep` and the conditioning
   *  inputs. beforeUnet hooks may add inputs (ControlNet residuals) or replace `sample` (inpainting's channels). */
  unetFeeds: Record<string, TensorData>;
  /** The UNet batch's latents before scaling ([latents] or [latents, latents] with CFG). */
  latentModelInput: Float32Array;
}

/** A conditioning's step implementations; every method is optional. */
export interface PipelineExtension {
  readonly name: string;
  /** UNet build options this conditioning needs (e.g. ControlNet residual inputs). */
  readonly unetOptions?: Omit<UNetBuildOptions, "quantize">;
  /** 6. prepare latents: replaces the default (encode the picture, add noise at the first timestep). */
  prepareLatents?(run: RunState): Promise<void>;
  /** 8. before each UNet call. */
  beforeUnet?(run: RunState, step: StepState): Promise<void>;
  /** 8. after each scheduler step (e.g. blend the unmasked area back). */
  afterStep?(run: RunState, step: StepState): Promise<void>;
  /** 9. after decode (e.g. paste a crop back, overlay the original). */
  afterDecode?(run: RunState, images: RGBImage[]): Promise<RGBImage[]>;
  /** Infotext pairs this conditioning adds to the run's metadata (A1111 extra_generation_params, e.g. "Lora hashes"). */
  infotext?(): Record<string, string>;
}
