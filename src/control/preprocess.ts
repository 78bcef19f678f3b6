// Control-image preprocessors, cheap and deterministic, on 8-bit RGB: "none" (a ready control image), "invert"
// (dark lines on light -> light on dark), "scribble" (a drawing -> thick white strokes on black) and "canny".
// Ref: sd-webui-controlnet scripts/preprocessor/model_free_preprocessors.py (none, invert, canny) and
// legacy/processor.py (threshold; scribble_hed's thickening: GaussianBlur(sigma 3) then > 4 -> 255).
import { ReimagineError } from "../errors.js";
import type { RGBImage } from "../image.js";
import { canny } from "./canny.js";

export type PreprocessorName = "none" | "invert" | "scribble" | "canny";

export interface PreprocessOptions {
  /** scribble: a pixel is ink when its darkest channel is below this (default 127, ControlNet's scribble demo). */
  threshold?: number;
  /** scribble: the thickening blur's sigma in pixels (default 3 at 512 px, the extension's processor resolution,
   *  scaled with the image's short side so strokes keep their relative weight; 0 = no thickening). */
  sigma?: number;
  /** canny: hysteresis thresholds (default 100 and 200, the extension's defaults). */
  lowThreshold?: number;
  highThreshold?: number;
}

/** The preprocessors, with what each does (for --help, the web UI and A1111's /controlnet/module_list). */
export const PREPROCESSORS: Readonly<Record<PreprocessorName, string>> = {
  none: "use the control image as it is (already white-on-black strokes, edges, ...)",
  invert: "255 - x: a drawing's dark lines on white become white lines on black (lineart, canny and scribble models)",
  scribble: "a drawing -> thick white strokes on black (dark pixels become strokes, thickened as the A1111 extension does)",
  canny: "Canny edges (OpenCV's cv2.Canny, thresholds lowThreshold / highThreshold)",
};

/**
 * The preprocessor called `name`; anything else is a one-line error listing the valid ones.
 * @example parsePreprocessor("scribble") // "scribble"
 */
export function parsePreprocessor(name: string): PreprocessorName {
  if (Object.hasOwn(PREPROCESSORS, name)) return name as PreprocessorName;
  throw new ReimagineError(`unknown preprocessor '${name}': use one of ${Object.keys(PREPROCESSORS).join(", ")}`, "invalid_input");
}

/**
 * Runs a preprocessor on an RGB image of any size; returns a new RGB image of the same size (grey outputs
 * repeated over R, G, B, as the extension's HWC3 does).
 *
 * @example
 *   const control = preprocessControlImage(await loadImage("sketch.png"), "scribble");
 */
export function preprocessControlImage(img: RGBImage, name: string, opts: PreprocessOptions = {}): RGBImage {
  const which = parsePreprocessor(name);
  const { width, height } = img;
  if (which === "none") return { width, height, data: img.data.slice() };
  if (which === "invert") return { width, height, data: img.data.map((v) => 255 - v) };
  if (which === "canny") {
    const low = opts.lowThreshold ?? 100;
    const high = opts.highThreshold ?? 200;
    for (const [k, v] of [
      ["lowThreshold", low],
      ["highThreshold", high],
    ] as const) {
      if (!Number.isFinite(v) || v < 0) throw new ReimagineError(`canny ${k} must be a number >= 0, got ${v}`, "invalid_input");
    }
    return grey(width, height, canny(img.data, width, height, 3, low, high));
  }
  const threshold = opts.threshold ?? 127;
  const sigma = opts.sigma ?? (3 * Math.min(width, height)) / 512;
  if (!(threshold >= 0 && threshold <= 256)) throw new ReimagineError(`scribble threshold must be in [0, 256], got ${threshold}`, "invalid_input");
  if (!(sigma >= 0) || !Number.isFinite(sigma)) throw new ReimagineError(`scribble sigma must be a number >= 0, got ${sigma}`, "invalid_input");
  const ink = new Uint8Array(width * height);
  for (let p = 0; p < ink.length; p++) {
    const d = img.data;
    ink[p] = Math.min(d[3 * p], d[3 * p + 1], d[3 * p + 2]) < threshold ? 255 : 0;
  }
  return grey(width, height, sigma > 0 ? thicken(ink, width, height, sigma) : ink);
}

/** One grey byte per pixel -> RGB. */
function grey(width: number, height: number, g: Uint8Array): RGBImage {
  const data = new Uint8Array(width * height * 3);
  for (let p = 0; p < g.length; p++) data[3 * p] = data[3 * p + 1] = data[3 * p + 2] = g[p];
  return { width, height, data };
}

/** The extension's stroke thickening: cv2.GaussianBlur(x, (0, 0), sigma) on the 0/255 map, then > 4 -> 255. */
export function thicken(map: Uint8Array, width: number, height: number, sigma: number): Uint8Array {
  const blurred = gaussianBlur8(map, width, height, sigma);
  return blurred.map((v) => (v > 4 ? 255 : 0));
}

/** OpenCV reflect-101 border index (…, 2, 1 | 0, 1, 2, … n-1 | n-2, …). */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

/**
 * cv2.GaussianBlur(x, (0, 0), sigma) of one 8-bit channel, bit-exact with OpenCV's fixed-point 8-bit path: kernel
 * size round(6 sigma + 1) | 1, weights exp(-d^2 / (2 sigma^2)) / sum in 8-bit fixed point (error diffused), a row pass
 * into 8.8 fixed point, a column pass into 16.16, rounded half up; reflect-101 borders.
 * Ref: OpenCV modules/imgproc/src/smooth.dispatch.cpp (getGaussianKernelBitExact, getGaussianKernelFixedPoint_ED,
 * GaussianBlurFixedPoint).
 */
export function gaussianBlur8(src: Uint8Array, width: number, height: number, sigma: number): Uint8Array {
  const n = Math.max(1, Math.round(sigma * 6 + 1) | 1);
  const r = (n - 1) / 2;
  const scale2 = -0.125 / (sigma * sigma); // OpenCV steps x by 2: exp((2d)^2 * -0.125 / sigma^2)
  const side = Array.from({ length: r }, (_, i) => Math.exp((1 - n + 2 * i) ** 2 * scale2));
  const inv = 1 / (2 * side.reduce((a, b) => a + b, 0) + 1);
  // to 8 fractional bits with the rounding error carried outwards-in, the centre taking what makes the sum 256
  const k = new Int32Array(n);
  let err = 0;
  for (let i = 0; i < r; i++) {
    const adj = side[i] * inv * 256 + err;
    k[i] = k[n - 1 - i] = Math.round(adj);
    err = adj - k[i];
  }
  k[r] = 256 - 2 * k.subarray(0, r).reduce((a, b) => a + b, 0);
  const tmp = new Int32Array(width * height); // 8.8 fixed point
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += k[i] * src[y * width + reflect101(x + i - r, width)];
      tmp[y * width + x] = Math.min(s, 0xffff);
    }
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0; // 16.16 fixed point
      for (let i = 0; i < n; i++) s += k[i] * tmp[reflect101(y + i - r, height) * width + x];
      out[y * width + x] = Math.min(255, Math.floor((s + 0x8000) / 0x10000));
    }
  }
  return out;
}
