// The pixel side of diffusers' StableDiffusionInpaintPipeline: mask_processor (VaeImageProcessor with
// do_normalize=False, do_binarize=True, do_convert_grayscale=True), get_crop_region, the cropped image
// preprocessing of `padding_mask_crop`, masked_image, the mask's nearest resize to latents, apply_overlay.
// Ref: diffusers image_processor.py (VaeImageProcessor), pipeline_stable_diffusion_inpaint.py (__call__ 5./7., prepare_mask_latents).
import { ReimagineError } from "../errors.js";
import { imageToTensor, resizeImage, type ResizeMode } from "../image.js";
import type { RGBImage } from "../image-sheet.js";
import {
  alphaComposite,
  channel,
  crop,
  getbbox,
  grayToRgb,
  invert,
  paste,
  premultiply,
  rgbaToRgb,
  rgbToRgba,
  toGray,
  unpremultiply,
  type Box,
  type GrayImage,
  type RGBAImage,
} from "./pil.js";

const f32 = Math.fround;

/**
 * VaeImageProcessor.get_crop_region(mask, width, height, pad): the box of non-zero mask pixels, padded by `pad`,
 * then grown (integer truncation) to the width:height aspect ratio and shifted back inside the picture.
 * An all-black mask has no region: callers check `isMaskEmpty` first (this throws).
 * @example getCropRegion(mask, 512, 512, 32) // [x1, y1, x2, y2], x2/y2 exclusive
 */
export function getCropRegion(mask: GrayImage, width: number, height: number, pad = 0): Box {
  const bbox = getbbox(mask);
  if (!bbox) throw new ReimagineError("the mask is all black: there is nothing to repaint, so there is no region to crop to");
  const [w, h] = [mask.width, mask.height];
  // 1.-2. bounding box of the non-zero pixels, padded and clipped
  let x1 = Math.max(bbox[0] - pad, 0);
  let y1 = Math.max(bbox[1] - pad, 0);
  let x2 = Math.min(bbox[2] + pad, w);
  let y2 = Math.min(bbox[3] + pad, h);
  // 3. grow to the processing aspect ratio
  const ratioCrop = (x2 - x1) / (y2 - y1);
  const ratioProcessing = width / height;
  if (ratioCrop > ratioProcessing) {
    const diff = Math.trunc((x2 - x1) / ratioProcessing - (y2 - y1));
    y1 -= Math.floor(diff / 2);
    y2 += diff - Math.floor(diff / 2);
    if (y2 >= h) [y1, y2] = [y1 - (y2 - h), h];
    if (y1 < 0) [y1, y2] = [0, y2 - y1];
    if (y2 >= h) y2 = h;
  } else {
    const diff = Math.trunc((y2 - y1) * ratioProcessing - (x2 - x1));
    x1 -= Math.floor(diff / 2);
    x2 += diff - Math.floor(diff / 2);
    if (x2 >= w) [x1, x2] = [x1 - (x2 - w), w];
    if (x1 < 0) [x1, x2] = [0, x2 - x1];
    if (x2 >= w) x2 = w;
  }
  return [x1, y1, x2, y2];
}

/** Resizes a gray image exactly as Pillow resizes an "L" image (LANCZOS runs per channel, so via R = G = B). */
export async function resizeGray(g: GrayImage, width: number, height: number, mode: ResizeMode = "just-resize"): Promise<GrayImage> {
  if (g.width === width && g.height === height && mode === "just-resize") return { ...g, data: g.data.slice() };
  return channel(await resizeImage(grayToRgb(g), width, height, mode), 0);
}

export interface InpaintPreprocessOptions {
  /** Output (processing) size, multiples of the VAE scale factor. */
  width: number;
  height: number;
  /** diffusers `padding_mask_crop`: crop to the mask's region grown by this many pixels ("inpaint only masked"). */
  paddingMaskCrop?: number;
}

/** What diffusers' __call__ steps 5 and 7 compute from the picture and the mask, before any VAE call. */
export interface InpaintPreprocessed {
  /** `crops_coords` when padding_mask_crop is set. */
  cropRegion?: Box;
  /** "fill" (resize-and-fill) when cropping, else "default" (just-resize). */
  resizeMode: ResizeMode;
  /** image_processor.preprocess: [1, 3, H, W] in [-1, 1]. */
  initImage: Float32Array;
  /** mask_processor.preprocess: [1, 1, H, W], 0 or 1 (1 = repaint). */
  maskCondition: Float32Array;
  /** init_image * (mask_condition < 0.5): [1, 3, H, W], the repainted area 0. */
  maskedImage: Float32Array;
}

/**
 * mask_processor.preprocess: [crop] -> resize (LANCZOS, in the mask's own mode) -> grayscale "L" -> x/255 (float32)
 * -> binarize (1 where >= 0.5). Returns [1, 1, H, W].
 * @example const cond = await preprocessMask(mask, 512, 512) // Float32Array of 0 and 1
 */
export async function preprocessMask(
  mask: GrayImage | RGBImage,
  width: number,
  height: number,
  opts: { crop?: Box; resizeMode?: ResizeMode } = {},
): Promise<Float32Array> {
  const mode = opts.resizeMode ?? "just-resize";
  const isGray = mask.data.length === mask.width * mask.height;
  let gray: GrayImage;
  if (isGray) {
    const m = opts.crop ? crop(mask as GrayImage, opts.crop) : (mask as GrayImage);
    gray = await resizeGray(m, width, height, mode);
  } else {
    const m = opts.crop ? crop(mask as RGBImage, opts.crop) : (mask as RGBImage);
    gray = toGray(await resizeImage(m, width, height, mode));
  }
  const out = new Float32Array(width * height); // [1, 1, H, W]
  for (let i = 0; i < out.length; i++) out[i] = f32(gray.data[i] / 255) >= 0.5 ? 1 : 0;
  return out;
}

/**
 * image_processor.preprocess with optional crop: [crop] -> resize -> [-1, 1], [1, 3, H, W].
 * @example const x = await preprocessImage(input, 512, 512, { crop: region, resizeMode: "resize-and-fill" })
 */
export async function preprocessImage(
  image: RGBImage,
  width: number,
  height: number,
  opts: { crop?: Box; resizeMode?: ResizeMode } = {},
): Promise<Float32Array> {
  const img = opts.crop ? crop(image, opts.crop) : image;
  return imageToTensor(await resizeImage(img, width, height, opts.resizeMode ?? "just-resize"));
}

/** masked_image = image * (mask < 0.5): image [B, C, H, W], mask [B, 1, H, W] (one mask plane per image). */
export function maskImage(image: Float32Array, maskCondition: Float32Array): Float32Array {
  const plane = maskCondition.length;
  if (image.length % plane !== 0) throw new ReimagineError(`masked image: ${image.length} image values do not split into planes of ${plane}`);
  const out = new Float32Array(image.length); // [1, 3, H, W]
  for (let i = 0; i < image.length; i++) out[i] = image[i] * (maskCondition[i % plane] < 0.5 ? 1 : 0);
  return out;
}

/**
 * diffusers __call__ steps 5 and 7 on pixels: crop region (padding_mask_crop), image and mask preprocessing,
 * masked image. The mask must have the picture's size (see mask-source.ts for other sizes).
 * @example const pre = await preprocessInpaint(input, mask, { width: 512, height: 512, paddingMaskCrop: 32 })
 */
export async function preprocessInpaint(image: RGBImage, mask: GrayImage, opts: InpaintPreprocessOptions): Promise<InpaintPreprocessed> {
  const { width, height } = opts;
  if (mask.width !== image.width || mask.height !== image.height) {
    throw new ReimagineError(`the mask is ${mask.width}x${mask.height} but the picture is ${image.width}x${image.height}; use a mask of the picture's size`);
  }
  const cropRegion = opts.paddingMaskCrop === undefined ? undefined : getCropRegion(mask, width, height, opts.paddingMaskCrop);
  const resizeMode: ResizeMode = cropRegion ? "resize-and-fill" : "just-resize";
  const initImage = await preprocessImage(image, width, height, { crop: cropRegion, resizeMode });
  const maskCondition = await preprocessMask(mask, width, height, { crop: cropRegion, resizeMode });
  return { cropRegion, resizeMode, initImage, maskCondition, maskedImage: maskImage(initImage, maskCondition) };
}

/**
 * prepare_mask_latents' resize: F.interpolate(mask, size=(H/f, W/f)) (mode "nearest": src = floor(dst * in/out),
 * scale in float32 as torch's CPU kernel), then the batch copies and, with CFG, twice that ([uncond; cond]).
 * `mask` is [1, 1, H, W]; returns [copies * (cfg ? 2 : 1), 1, h, w].
 * @example const m = maskToLatents(cond, 512, 512, 8, { batch: 1, cfg: true }) // [2, 1, 64, 64]
 */
export function maskToLatents(
  mask: Float32Array,
  height: number,
  width: number,
  vaeScaleFactor: number,
  opts: { batch?: number; cfg?: boolean } = {},
): Float32Array {
  if (mask.length !== height * width) throw new ReimagineError(`mask has ${mask.length} values, expected ${height}x${width}`);
  const h = Math.floor(height / vaeScaleFactor);
  const w = Math.floor(width / vaeScaleFactor);
  const one = new Float32Array(h * w); // [1, 1, h, w]
  const idx = (i: number, inSize: number, outSize: number) => {
    if (inSize === outSize) return i;
    if (outSize === 2 * inSize) return i >> 1;
    return Math.min(Math.floor(f32(i * f32(inSize / outSize))), inSize - 1);
  };
  for (let y = 0; y < h; y++) {
    const sy = idx(y, height, h);
    for (let x = 0; x < w; x++) one[y * w + x] = mask[sy * width + idx(x, width, w)];
  }
  return repeatBatch(one, (opts.batch ?? 1) * (opts.cfg ? 2 : 1));
}

/** `tensor.repeat(n, 1, 1, 1)` of one item: n copies, one after another. */
export function repeatBatch(one: Float32Array, n: number): Float32Array {
  if (!Number.isInteger(n) || n < 1) throw new ReimagineError(`batch copies must be a whole number >= 1, got ${n}`);
  const out = new Float32Array(one.length * n);
  for (let i = 0; i < n; i++) out.set(one, i * one.length);
  return out;
}

/**
 * VaeImageProcessor.apply_overlay(mask, init_image, image, crop_coords): the original picture where the mask is 0,
 * the generated one where it is 255, a blend between (the mask is NOT binarised: a blurred mask keeps its soft
 * edge). With `cropCoords` the generated crop is first resized ("crop" mode) into its box on a black canvas.
 * PIL uint8 arithmetic throughout: premultiplied RGBa paste through invert(mask), then alpha_composite.
 * @example const out = await applyOverlay(maskL, input, generated, region) // what padding_mask_crop returns
 */
export async function applyOverlay(mask: GrayImage, initImage: RGBImage, image: RGBImage, cropCoords?: Box): Promise<RGBImage> {
  const { width, height } = initImage;
  if (mask.width !== width || mask.height !== height) {
    throw new ReimagineError(`overlay mask is ${mask.width}x${mask.height} but the picture is ${width}x${height}`);
  }
  // init_image_masked: an empty RGBa canvas with the (premultiplied) picture pasted through invert(mask), back to RGBA
  const canvas: RGBAImage = { width, height, data: new Uint8Array(width * height * 4) };
  const initMasked = unpremultiply(paste(canvas, premultiply(rgbToRgba(initImage)), 0, 0, invert(mask)));
  let base = image;
  if (cropCoords) {
    const [x, y, x2, y2] = cropCoords;
    const resized = await resizeImage(image, x2 - x, y2 - y, "crop-and-resize");
    base = rgbaToRgb(paste({ width, height, data: new Uint8Array(width * height * 4) }, rgbToRgba(resized), x, y));
  }
  if (base.width !== width || base.height !== height) {
    throw new ReimagineError(`the generated picture is ${base.width}x${base.height} but the original is ${width}x${height}; pass the crop box`);
  }
  return rgbaToRgb(alphaComposite(rgbToRgba(base), initMasked));
}
