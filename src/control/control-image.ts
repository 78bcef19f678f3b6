// The control image a ControlNet reads: resized to the generation size by one of A1111's resize modes,
// preprocessed, then as diffusers' control_image_processor gives it (RGB, x / 255, NOT normalised to [-1, 1]).
// Ref: diffusers pipeline_controlnet_img2img.py prepare_control_image (VaeImageProcessor(do_normalize=False));
// sd-webui-controlnet resize modes "Just Resize", "Crop and Resize", "Resize and Fill".
import { type ResizeMode, resizeImage, type RGBImage } from "../image.js";
import { type PreprocessOptions, preprocessControlImage } from "./preprocess.js";

export interface ControlImageOptions extends PreprocessOptions {
  /** The generation size in pixels (the init image's size after its own resize). */
  width: number;
  height: number;
  /** How a control image of another aspect ratio fits (default "just-resize", diffusers' behaviour; A1111's
   *  extension defaults to "crop-and-resize"). The same size is never resampled. */
  resizeMode?: ResizeMode;
  /** "none" (default), "invert", "scribble" or "canny" (see PREPROCESSORS). */
  preprocessor?: string;
}

/**
 * Resizes (Pillow LANCZOS, as diffusers) then preprocesses a control image. Preprocessing after the resize keeps
 * binary maps (scribble, canny) binary at the generation size; A1111 instead preprocesses at its 512 px processor
 * resolution and resamples the map. The result is what the user should be shown before generating.
 *
 * @example
 *   const control = await prepareControlImage(await loadImage("sketch.png"), { width: 512, height: 512, preprocessor: "scribble" });
 */
export async function prepareControlImage(img: RGBImage, opts: ControlImageOptions): Promise<RGBImage> {
  const { width, height, resizeMode = "just-resize", preprocessor = "none", ...pre } = opts;
  const sized = img.width === width && img.height === height ? img : await resizeImage(img, width, height, resizeMode);
  return preprocessControlImage(sized, preprocessor, pre);
}

const OVER_255 = Float32Array.from({ length: 256 }, (_, v) => Math.fround(v / 255));

/**
 * RGB control image -> NCHW float32 [1, 3, H, W] in [0, 1], bit-identical to diffusers' control_image_processor
 * (x / 255 in float32). The pipeline repeats it per image and, with CFG and without guess mode, twice.
 * @example feeds.controlnet_cond = { data: controlImageToTensor(control), dims: [1, 3, control.height, control.width] };
 */
export function controlImageToTensor(img: RGBImage): Float32Array {
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[c * plane + p] = OVER_255[img.data[p * 3 + c]];
  return out;
}
