// AUTOMATIC1111's inpainting around the diffusers pipeline: its mask rules (create_binary_mask, invert, the OpenCV
// mask blur of mask_blur_x / mask_blur_y), "inpaint only masked" (get_crop_region_v2 + expand_crop_region), the
// `inpainting_fill` modes, the overlay that puts the original back, and the "inpaint sketch" tab's mask.
// Ref: A1111 modules/processing.py (StableDiffusionProcessingImg2Img.init, apply_overlay), modules/masking.py,
// modules/img2img.py (mode 3), OpenCV imgproc smooth.dispatch.cpp (GaussianBlur 8-bit fixed-point path).
import { ReimagineError } from "../errors.js";
import type { ResizeMode } from "../image.js";
import type { RGBImage } from "../image-sheet.js";
import type { DecodedPixels } from "../image-mask.js";
import { roundHalfEven } from "../numeric.js"; // numpy / cvRound: half to even
import { blendLatents, type LatentShape } from "./latents.js";
import { getCropRegion, resizeGray } from "./mask-processor.js";
import {
  alphaComposite,
  brightness,
  channel,
  composite,
  crop,
  gaussianBlur,
  getbbox,
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

/** A1111's `inpainting_fill` values: 0 fill, 1 original, 2 latent noise, 3 latent nothing. */
export const INPAINTING_FILL = ["fill", "original", "latent noise", "latent nothing"] as const;
export type InpaintingFill = (typeof INPAINTING_FILL)[number];

/** Defaults of A1111's StableDiffusionProcessingImg2Img (and so of /sdapi/v1/img2img) for the mask fields. */
export const A1111_INPAINT_DEFAULTS = {
  mask_blur_x: 4,
  mask_blur_y: 4,
  inpainting_fill: 0, // "fill"
  inpaint_full_res: true, // "Only masked"
  inpaint_full_res_padding: 0,
  inpainting_mask_invert: 0,
  mask_round: true,
} as const;

// ---------- mask rules ----------

/**
 * create_binary_mask: an RGBA mask whose alpha is not all 255 is read from its alpha (opaque = repaint; with
 * `round`, > 128 -> 255 else 0); any other mask is its luma (PIL convert("L"); gray + alpha files use the gray).
 * @example const m = createBinaryMask(await decodePixels("mask.png"))
 */
export function createBinaryMask(mask: DecodedPixels, round = true): GrayImage {
  if (mask.channels === 4) {
    const alpha = channel(mask, 3);
    if (alpha.data.some((a) => a !== 255)) return round ? { ...alpha, data: alpha.data.map((a) => (a > 128 ? 255 : 0)) } : alpha;
  }
  return toGray(mask);
}

/** OpenCV getGaussianKernelBitExact (sigma > 0): exp(-(i - c)^2 / 2 sigma^2), normalised, in doubles. */
function gaussianKernel(n: number, sigma: number): number[] {
  const scale2X = -0.125 / (sigma * sigma);
  const half = (n - 1) >> 1;
  const values: number[] = [];
  let sum = 0;
  for (let i = 0, x = 1 - n; i < half; i++, x += 2) {
    const t = Math.exp(x * x * scale2X); // x = 2(i - c), so x^2 * -1/(8 sigma^2) = -(i - c)^2 / (2 sigma^2)
    values.push(t);
    sum += t;
  }
  sum = sum * 2 + 1;
  const mul = 1 / sum;
  const out = new Array<number>(n);
  for (let i = 0; i < half; i++) out[i] = out[n - 1 - i] = values[i] * mul;
  out[half] = mul;
  return out;
}

/**
 * OpenCV's 8-bit Gaussian kernel in Q8 fixed point (getGaussianKernelFixedPoint_ED): each tap rounded with the
 * error of the previous ones carried, the centre taking what makes the sum exactly 256.
 * @example opencvGaussianKernelQ8(7, 2) // [18, 34, 48, 56, 48, 34, 18]
 */
export function opencvGaussianKernelQ8(n: number, sigma: number): number[] {
  if (!Number.isInteger(n) || n < 1 || n % 2 !== 1) throw new ReimagineError(`Gaussian kernel size must be odd and >= 1, got ${n}`);
  if (!(sigma > 0)) throw new ReimagineError(`Gaussian sigma must be > 0, got ${sigma}`);
  const k = gaussianKernel(n, sigma);
  const half = n >> 1;
  const out = new Array<number>(n);
  let err = 0;
  let sum = 0;
  for (let i = 0; i < half; i++) {
    const adj = k[i] * 256 + err;
    const v = roundHalfEven(adj);
    err = adj - v;
    out[i] = out[n - 1 - i] = v;
    sum += v;
  }
  out[half] = 256 - 2 * sum;
  return out;
}

/** BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba), repeated for kernels wider than the line. */
function reflect101(p: number, len: number): number {
  if (len === 1) return 0;
  while (p < 0 || p >= len) p = p < 0 ? -p : 2 * len - 2 - p;
  return p;
}

/**
 * A1111's mask blur along one axis: cv2.GaussianBlur(mask, (k, 1) or (1, k), sigma) with k = 2*int(2.5*sigma + 0.5) + 1,
 * OpenCV's bit-exact 8-bit path: Q8 taps, exact integer sums, (sum * 256 + 2^15) >> 16 (the other axis' kernel is [256]).
 * @example const soft = a1111MaskBlur(a1111MaskBlur(mask, 4, "x"), 4, "y")
 */
export function a1111MaskBlur(g: GrayImage, sigma: number, axis: "x" | "y"): GrayImage {
  if (!(sigma > 0)) return { ...g, data: g.data.slice() };
  const n = 2 * Math.trunc(2.5 * sigma + 0.5) + 1;
  const len = axis === "x" ? g.width : g.height;
  if (len === 1) return { ...g, data: g.data.slice() }; // OpenCV drops a kernel longer than a 1-pixel axis
  const k = opencvGaussianKernelQ8(n, sigma);
  const half = n >> 1;
  const out = new Uint8Array(g.data.length);
  const [stride, step, lines] = axis === "x" ? [g.width, 1, g.height] : [1, g.width, g.width];
  for (let line = 0; line < lines; line++) {
    const base = line * stride;
    for (let i = 0; i < len; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += k[j] * g.data[base + reflect101(i + j - half, len) * step];
      out[base + i * step] = Math.min(255, (s * 256 + 32768) >>> 16);
    }
  }
  return { width: g.width, height: g.height, data: out };
}

// ---------- processing: mask, crop region, overlay ----------

export interface A1111InpaintOptions {
  /** A1111 `mask_blur_x` / `mask_blur_y` (standard deviations in pixels; `mask_blur` sets both). Default 4 each. */
  maskBlurX?: number;
  maskBlurY?: number;
  /** `inpainting_mask_invert`: repaint what is NOT masked. */
  invert?: boolean;
  /** `inpaint_full_res` ("Only masked"): crop to the mask's region, process it at width x height, paste back. Default true. */
  fullRes?: boolean;
  /** `inpaint_full_res_padding` in pixels. Default 0. */
  fullResPadding?: number;
  /** `mask_round`: threshold alpha masks at 128. Default true. */
  round?: boolean;
  /** img2img resize mode for the whole-picture case (the mask is resized like the picture). Default just-resize. */
  resizeMode?: ResizeMode;
}

/**
 * What A1111's StableDiffusionProcessingImg2Img.init makes of a mask before sampling. Its paste-back (processing
 * apply_overlay / uncrop) gives the same bytes as diffusers' apply_overlay, so the result is
 * `applyOverlay(maskForOverlay, original, generated, cropRegion)` (mask-processor.ts).
 */
export interface A1111Mask {
  /** The processing mask (binary -> inverted -> blurred; cropped and resized to width x height with "only masked"). */
  mask: GrayImage;
  /** The mask the overlay composites with, at the picture's size (blurred; doubled and clipped for the whole picture). */
  maskForOverlay: GrayImage;
  /** "Only masked": the region (x1, y1, x2, y2) of the picture that is processed and pasted back. */
  cropRegion?: Box;
  /** Set when the request cannot be honoured as asked (e.g. "only masked" with an all-black mask). */
  note?: string;
}

/**
 * A1111's mask pipeline for img2img inpainting at width x height: create_binary_mask, invert, OpenCV blur x then y,
 * then either "only masked" (crop region from the blurred mask, get_crop_region_v2 + expand_crop_region, which
 * equal diffusers' get_crop_region) or the whole picture (mask resized like the picture, overlay mask = 2 x mask).
 * An all-black mask with "only masked" returns the black mask at the processing size with a note (A1111 instead drops
 * the mask and repaints everything; callers check emptyMaskReason and return the picture unchanged).
 * @example const m = a1111PrepareMask(decoded, 512, 512, { maskBlurX: 4, maskBlurY: 4, fullRes: true, fullResPadding: 32 })
 */
export async function a1111PrepareMask(mask: DecodedPixels, width: number, height: number, opts: A1111InpaintOptions = {}): Promise<A1111Mask> {
  let m = createBinaryMask(mask, opts.round ?? A1111_INPAINT_DEFAULTS.mask_round);
  if (opts.invert) m = invert(m);
  const bx = opts.maskBlurX ?? A1111_INPAINT_DEFAULTS.mask_blur_x;
  const by = opts.maskBlurY ?? A1111_INPAINT_DEFAULTS.mask_blur_y;
  for (const [v, name] of [
    [bx, "mask_blur_x"],
    [by, "mask_blur_y"],
  ] as const) {
    if (!(Number.isInteger(v) && v >= 0 && v <= 64)) throw new ReimagineError(`${name} must be a whole number of pixels 0..64, got ${v}`);
  }
  if (bx > 0) m = a1111MaskBlur(m, bx, "x");
  if (by > 0) m = a1111MaskBlur(m, by, "y");
  let note: string | undefined;
  if (opts.fullRes ?? A1111_INPAINT_DEFAULTS.inpaint_full_res) {
    if (getbbox(m)) {
      const cropRegion = getCropRegion(m, width, height, opts.fullResPadding ?? A1111_INPAINT_DEFAULTS.inpaint_full_res_padding);
      return { mask: await resizeGray(crop(m, cropRegion), width, height, "resize-and-fill"), maskForOverlay: m, cropRegion };
    }
    // A1111 drops the mask here and repaints the whole picture; we keep the (black) mask so nothing is repainted
    note = 'the mask is blank, so "only masked" has no region and there is nothing to repaint (A1111 would repaint the whole picture)';
  }
  const resized = await resizeGray(m, width, height, opts.resizeMode ?? "just-resize");
  const doubled = { ...resized, data: resized.data.map((v) => Math.min(255, 2 * v)) };
  return { mask: resized, maskForOverlay: doubled, note };
}

// ---------- inpainting_fill ----------

/**
 * inpainting_fill 0 "fill" (masking.fill): the masked area repainted with ever finer blurs of the unmasked colours
 * (radius 256, 64, 16 x2, 4 x4, 2 x2, 0), premultiplied so masked pixels contribute nothing. Run on the picture
 * that is encoded (the crop with "only masked"); `mask` is the processing mask of the same size.
 * @example const filled = a1111Fill(picture, m.mask)
 */
export function a1111Fill(image: RGBImage, mask: GrayImage): RGBImage {
  const { width, height } = image;
  if (mask.width !== width || mask.height !== height)
    throw new ReimagineError(`fill: the mask is ${mask.width}x${mask.height}, the picture ${width}x${height}`);
  const masked = paste({ width, height, data: new Uint8Array(width * height * 4) }, premultiply(rgbToRgba(image)), 0, 0, invert(mask)); // RGBa
  let acc: RGBAImage = { width, height, data: new Uint8Array(width * height * 4) };
  for (const [radius, repeats] of [
    [256, 1],
    [64, 1],
    [16, 2],
    [4, 4],
    [2, 2],
    [0, 1],
  ] as const) {
    const blurred = unpremultiply(gaussianBlur(masked, radius));
    for (let i = 0; i < repeats; i++) acc = alphaComposite(acc, blurred);
  }
  return rgbaToRgb(acc);
}

/**
 * inpainting_fill 2 "latent noise": the start latents' masked area replaced by noise (init * (1 - m) + noise * m).
 * A1111 draws that noise from a fresh generator seeded with the image's seed (create_random_tensors).
 */
export function latentNoiseFill(imageLatents: Float32Array, maskLatents: Float32Array, noise: Float32Array, shape: LatentShape): Float32Array {
  return blendLatents(noise, imageLatents, maskLatents, shape);
}

/** inpainting_fill 3 "latent nothing": the start latents' masked area set to 0 (init * (1 - m)). */
export function latentNothingFill(imageLatents: Float32Array, maskLatents: Float32Array, shape: LatentShape): Float32Array {
  return blendLatents(new Float32Array(imageLatents.length), imageLatents, maskLatents, shape);
}

/** Parses A1111's `inpainting_fill` (0..3, or the UI's names) to a mode name. */
export function parseInpaintingFill(v: number | string): InpaintingFill {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < INPAINTING_FILL.length) return INPAINTING_FILL[v];
  const name = String(v).trim().toLowerCase();
  const hit = INPAINTING_FILL.find((f) => f === name);
  if (hit) return hit;
  throw new ReimagineError(`inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing), got ${JSON.stringify(v)}`);
}

// ---------- inpaint sketch ----------

/**
 * A1111's "Inpaint sketch" tab (img2img.py mode 3): the mask is every pixel where the sketch differs from the original
 * in any channel, dimmed by `maskAlpha` (percent transparency, ImageEnhance.Brightness(1 - alpha/100)); the picture fed
 * to img2img is the blurred sketch composited over the original through the blurred mask (PIL GaussianBlur(maskBlur)).
 * The returned mask then goes through the usual mask processing (a1111PrepareMask blurs it again, as A1111 does).
 * @example const { image, mask } = inpaintSketch(photo, photoWithStrokes, { maskBlur: 4 })
 */
export function inpaintSketch(
  original: RGBImage,
  sketch: RGBImage,
  opts: { maskBlur?: number; maskAlpha?: number } = {},
): { image: RGBImage; mask: GrayImage } {
  if (original.width !== sketch.width || original.height !== sketch.height) {
    throw new ReimagineError(
      `the sketch is ${sketch.width}x${sketch.height} but the original is ${original.width}x${original.height}; draw on the picture itself`,
    );
  }
  const n = original.width * original.height;
  const diff = new Uint8Array(n);
  for (let p = 0; p < n; p++) {
    const i = 3 * p;
    if (original.data[i] !== sketch.data[i] || original.data[i + 1] !== sketch.data[i + 1] || original.data[i + 2] !== sketch.data[i + 2]) diff[p] = 255;
  }
  const alpha = opts.maskAlpha ?? 0;
  if (!(alpha >= 0 && alpha <= 100)) throw new ReimagineError(`mask transparency must be 0..100 percent, got ${alpha}`);
  const mask = brightness({ width: original.width, height: original.height, data: diff }, 1 - alpha / 100);
  const blur = opts.maskBlur ?? A1111_INPAINT_DEFAULTS.mask_blur_x;
  const image = composite(gaussianBlur(sketch, blur), original, gaussianBlur(mask, blur));
  return { image, mask };
}
