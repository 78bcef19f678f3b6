// A ControlNet unit as a run option: which ControlNet, its control image and preprocessor, its conditioning scale,
// guidance window and guess mode. Plain data (runs cross into the model process), checked here with one-line errors
// naming the field. Ref: diffusers StableDiffusionControlNetImg2ImgPipeline.__call__ arguments and check_inputs;
// the A1111 ControlNet extension's unit (module, model, weight, guidance_start/end, control_mode, resize_mode).
import { ReimagineError } from "../errors.js";
import { loadImage, type ResizeMode, type RGBImage } from "../image.js";
import { controlImageToTensor, prepareControlImage } from "./control-image.js";
import { parsePreprocessor, type PreprocessOptions } from "./preprocess.js";

export interface ControlNetUnit {
  /** The ControlNet: a diffusers folder (or a pipeline folder with controlnet/), a .safetensors file or a Hugging Face
   *  repo id (lllyasviel/control_v11p_sd15_scribble). */
  model: string;
  /** The control image (a decoded picture, a file path or encoded bytes). Default: the run's input picture at the output
   *  size (sketch-to-image: the drawing is both the start and the layout). */
  image?: RGBImage | string | Buffer;
  /** none (default: the image is a ready control map), invert, scribble or canny; applied after the resize. */
  preprocessor?: string;
  /** The preprocessor's settings (canny thresholds, scribble threshold and thickening). */
  preprocessorOptions?: PreprocessOptions;
  /** controlnet_conditioning_scale (A1111 "Weight"), >= 0; default 1. */
  scale?: number;
  /** control_guidance_start / _end: the part of the denoising steps this ControlNet acts in; default 0 and 1. */
  start?: number;
  end?: number;
  /** diffusers guess_mode (A1111 control mode "ControlNet is more important"): the ControlNet sees only the
   *  conditional batch and its residuals are scaled from 0.1 (shallow) to 1 (mid block). Default false. */
  guessMode?: boolean;
  /** How a control image of another size is fitted to the output size (default just-resize, as diffusers). */
  resizeMode?: ResizeMode;
}

const RESIZE_MODES: readonly ResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill"];

/** A unit with its defaults filled in. */
export type ResolvedUnit = Required<Pick<ControlNetUnit, "model" | "preprocessor" | "scale" | "start" | "end" | "guessMode" | "resizeMode">> &
  Pick<ControlNetUnit, "image" | "preprocessorOptions">;

/**
 * Checks a unit and fills its defaults; a bad field is a one-line error naming `controlnets[i].field` and the fix.
 * @example resolveUnit({ model: "control_v11p_sd15_scribble.safetensors", scale: 0.8 }, 0).end // 1
 */
export function resolveUnit(u: ControlNetUnit, i: number): ResolvedUnit {
  const at = `controlnets[${i}]`;
  const bad = (msg: string) => new ReimagineError(`${at}.${msg}`, "invalid_input");
  if (typeof u !== "object" || u === null) throw new ReimagineError(`${at} must be an object like { model: "control_v11p_sd15_scribble" }`, "invalid_input");
  if (typeof u.model !== "string" || u.model.trim() === "") throw bad(`model is missing: give a ControlNet folder, .safetensors file or Hugging Face repo id`);
  const scale = u.scale ?? 1;
  const start = u.start ?? 0;
  const end = u.end ?? 1;
  if (!(Number.isFinite(scale) && scale >= 0)) throw bad(`scale must be a number >= 0 (got ${u.scale}); 1 is the ControlNet's full strength`);
  if (!(Number.isFinite(start) && start >= 0 && start <= 1)) throw bad(`start must be between 0 and 1 (got ${u.start})`);
  if (!(Number.isFinite(end) && end >= 0 && end <= 1)) throw bad(`end must be between 0 and 1 (got ${u.end})`);
  if (start >= end) throw bad(`start (${start}) must be below end (${end}): the ControlNet acts from start to end of the denoising steps`);
  const resizeMode = u.resizeMode ?? "just-resize";
  if (!RESIZE_MODES.includes(resizeMode)) throw bad(`resizeMode must be one of ${RESIZE_MODES.join(", ")} (got ${JSON.stringify(u.resizeMode)})`);
  let preprocessor: string;
  try {
    preprocessor = parsePreprocessor(u.preprocessor ?? "none");
  } catch (e) {
    throw bad(`preprocessor: ${(e as Error).message}`);
  }
  return {
    model: u.model,
    image: u.image,
    preprocessor,
    preprocessorOptions: u.preprocessorOptions,
    scale,
    start,
    end,
    guessMode: u.guessMode ?? false,
    resizeMode,
  };
}

/**
 * controlnet_keep of step i of n (n = the timesteps after strength truncation): 0 outside [start, end], as diffusers'
 * `1 - (i / n < start or (i + 1) / n > end)`.
 * @example controlNetKeep(3, 7, 0, 0.5) // 0: (3 + 1) / 7 > 0.5
 */
export function controlNetKeep(i: number, n: number, start: number, end: number): number {
  return i / n < start || (i + 1) / n > end ? 0 : 1;
}

/**
 * The picture a unit's ControlNet reads, as the user should see it: its control image (else `input`, the run's input
 * picture, itself resized to the output size with the run's resize mode), fitted to width x height by the unit's
 * resize mode, then preprocessed. The pipeline and the front ends (previews, A1111's detected maps) call this one
 * function, so what is shown is what conditions the run.
 *
 * @example
 *   const map = await unitControlImage(resolveUnit({ model: "scribble", preprocessor: "scribble" }, 0), { input: sketch, width: 512, height: 512 });
 */
export async function unitControlImage(
  u: ResolvedUnit,
  o: { input?: RGBImage; width: number; height: number; inputResizeMode?: ResizeMode },
): Promise<RGBImage> {
  const { width, height } = o;
  let img: RGBImage;
  let resizeMode = u.resizeMode;
  if (u.image !== undefined) {
    img = typeof u.image === "string" || Buffer.isBuffer(u.image) || u.image instanceof Uint8Array ? await loadImage(asBytesOrPath(u.image)) : u.image;
  } else if (o.input) {
    img = o.input;
    resizeMode = o.inputResizeMode ?? "just-resize"; // the run's input picture fits as the run fits it
  } else {
    throw new ReimagineError(
      "a ControlNet needs a control image when the run's input is latents (a refiner hand-over): give controlnets[i].image",
      "invalid_input",
    );
  }
  return prepareControlImage(img, { width, height, resizeMode, preprocessor: u.preprocessor, ...u.preprocessorOptions });
}

/** Bytes that crossed a process boundary arrive as plain Uint8Arrays: loadImage wants a Buffer or a path. */
function asBytesOrPath(x: string | Uint8Array): string | Buffer {
  return typeof x === "string" || Buffer.isBuffer(x) ? x : Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

/** A control image as the ControlNet's `controlnet_cond` for a batch of `batch` rows: [batch, 3, H, W] in [0, 1]. */
export function controlCond(img: RGBImage, batch: number): { data: Float32Array; dims: [number, number, number, number] } {
  const one = controlImageToTensor(img); // [1, 3, H, W]
  const data = new Float32Array(batch * one.length);
  for (let b = 0; b < batch; b++) data.set(one, b * one.length); // image.repeat_interleave (one control image for all rows)
  return { data, dims: [batch, 3, img.height, img.width] };
}

/**
 * The units with every ControlNet's scale set to `scale` (a ControlNet scale sweep's cell).
 * @example withControlScale([{ model: "scribble" }], 0.7) // [{ model: "scribble", scale: 0.7 }]
 */
export function withControlScale(units: readonly ControlNetUnit[] | undefined, scale: number): ControlNetUnit[] | undefined {
  return units?.map((u) => ({ ...u, scale }));
}
