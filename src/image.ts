// Image I/O and normalisation; the only module that imports sharp (decode, encode, label text).
// Ref: diffusers VaeImageProcessor (image_processor.py): preprocess = resize (PIL LANCZOS), /255, 2x-1;
// postprocess = (x/2+0.5).clamp(0,1), numpy_to_pil = (x*255).round(). Resizing is a port of Pillow's
// Resample.c (8-bit fixed point) so resized inputs match diffusers bit for bit.
import { randomBytes } from "node:crypto";
import { link, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, extname, join } from "node:path";
import type { Sharp } from "sharp";
import { ReimagineError } from "./errors.js";
import { oneLine, openImageInput, sharp } from "./image-read.js";
export { INPUT_FORMATS } from "./image-read.js";
import { parametersFromBytes, exifWithUserComment, withJpegExif, withPngParameters, withWebpExif } from "./image-metadata.js";
import { roundHalfEven } from "./numeric.js";
import { ssim, sheetLabelsSvg, sheetLayout, type RGBImage } from "./image-sheet.js";

export type { RGBImage } from "./image-sheet.js";
export { latentPreview, ssim, upscaleNearest, LATENT_RGB_FACTORS } from "./image-sheet.js";

export interface LoadOptions {
  /** CSS colour that transparent pixels are flattened onto (default "#ffffff", as A1111). */
  background?: string;
  /** Refuse images with more pixels than this before decoding (default 64 megapixels). */
  maxPixels?: number;
  /** Give up decoding after this many seconds (libvips' timeout; default none). */
  timeoutS?: number;
}
export const DEFAULT_MAX_PIXELS = 64_000_000;

/** Throws loadImage's "invalid background colour" error for a colour sharp cannot parse (no pixels touched). */
export function checkBackground(background: string): void {
  try {
    sharp({ create: { width: 1, height: 1, channels: 3, background: "#000" } }).flatten({ background });
  } catch (e) {
    throw new ReimagineError(`invalid background colour '${background}': use a CSS colour such as '#ffffff' or 'white'`, "invalid_input", { cause: e });
  }
}

/**
 * Format and displayed size (EXIF orientation applied) from the file header only, without decoding.
 * @example await imageHeader(bytes) // { format: "png", width: 512, height: 768 }
 */
export async function imageHeader(bytes: Buffer): Promise<{ format: string; width: number; height: number }> {
  const meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  const o = meta.autoOrient ?? { width: meta.width ?? 0, height: meta.height ?? 0 };
  return { format: meta.format ?? "unknown", width: o.width, height: o.height };
}

// ---------- load ----------

/**
 * Decodes PNG/JPEG/WebP/AVIF/TIFF/GIF (first frame) to 8-bit RGB: EXIF orientation applied, alpha flattened
 * onto `background`. Embedded ICC profiles are ignored (PIL, and so diffusers, does not apply them either).
 * @example const img = await loadImage("sketch.png", { background: "white" })
 */
export async function loadImage(input: string | Buffer, opts: LoadOptions = {}): Promise<RGBImage> {
  const { bytes, unreadable } = await openImageInput(input, "image", opts.maxPixels ?? DEFAULT_MAX_PIXELS);
  const background = opts.background ?? "#ffffff";
  let pipeline: Sharp;
  try {
    pipeline = sharp(bytes, { failOn: "truncated", limitInputPixels: false, pages: 1, ignoreIcc: true }).autoOrient().flatten({ background });
    if (opts.timeoutS !== undefined) pipeline = pipeline.timeout({ seconds: Math.max(1, Math.ceil(opts.timeoutS)) });
  } catch (e) {
    throw new ReimagineError(`invalid background colour '${background}': use a CSS colour such as '#ffffff' or 'white'`, "invalid_input", { cause: e });
  }
  try {
    const { data, info } = await pipeline.toColourspace("srgb").removeAlpha().raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (e) {
    if (/timeout/i.test(oneLine(e)) && opts.timeoutS !== undefined) {
      const what = typeof input === "string" ? `image '${input}'` : "image data";
      throw new ReimagineError(`Cannot read ${what}: decoding took longer than ${opts.timeoutS} s; send a smaller or simpler image`, "image_timeout", {
        cause: e,
      });
    }
    throw unreadable(e);
  }
}

// ---------- sizes and resizing ----------

export type ResizeMode = "just-resize" | "crop-and-resize" | "resize-and-fill";

/**
 * Rounds a size DOWN to multiples of `multiple` (diffusers get_default_height_width; multiple = vae_scale_factor).
 * @example defaultSize(1023, 769, 8) // { width: 1016, height: 768 }
 */
export function defaultSize(width: number, height: number, multiple: number): { width: number; height: number } {
  if (!Number.isInteger(multiple) || multiple < 1) throw new ReimagineError(`size multiple must be a positive integer, got ${multiple}`);
  const out = { width: width - (width % multiple), height: height - (height % multiple) };
  if (out.width < multiple || out.height < multiple) {
    throw new ReimagineError(`image is ${width}x${height}; it must be at least ${multiple}x${multiple} pixels (use a larger image or set width/height)`);
  }
  return out;
}

/**
 * Resizes to exactly width x height with Pillow LANCZOS, as diffusers VaeImageProcessor.resize:
 * "just-resize" = stretch ("default"); "crop-and-resize" = cover then centre-crop ("crop");
 * "resize-and-fill" = fit, centre, fill the borders by stretching the edge rows/columns ("fill").
 * The same size returns an unresampled copy.
 * @example await resizeImage(img, 512, 512, "crop-and-resize")
 */
export async function resizeImage(img: RGBImage, width: number, height: number, mode: ResizeMode): Promise<RGBImage> {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ReimagineError(`resize target must be positive integers, got ${width}x${height}`);
  }
  if (mode === "just-resize") return resampleLanczos(img, width, height);
  const ratio = width / height;
  const srcRatio = img.width / img.height;
  if (mode === "crop-and-resize") {
    const srcW = ratio > srcRatio ? width : Math.floor((img.width * height) / img.height);
    const srcH = ratio <= srcRatio ? height : Math.floor((img.height * width) / img.width);
    const resized = resampleLanczos(img, srcW, srcH);
    return paste(blank(width, height), resized, halfDiff(width, srcW), halfDiff(height, srcH));
  }
  if (mode !== "resize-and-fill") throw new ReimagineError(`unknown resize mode '${mode}': use just-resize, crop-and-resize or resize-and-fill`);
  const srcW = ratio < srcRatio ? width : Math.floor((img.width * height) / img.height);
  const srcH = ratio >= srcRatio ? height : Math.floor((img.height * width) / img.width);
  const resized = resampleLanczos(img, srcW, srcH);
  const res = paste(blank(width, height), resized, halfDiff(width, srcW), halfDiff(height, srcH));
  if (ratio < srcRatio) {
    const fill = halfDiff(height, srcH);
    if (fill > 0) {
      // the band is a zero-height box at the top / bottom edge resampled to `fill` rows, with Pillow's
      // default filter (bicubic): diffusers and A1111 call resize() there without a resample argument
      paste(res, resampleBicubic(resized, width, fill, [0, 0, width, 0]), 0, 0);
      paste(res, resampleBicubic(resized, width, fill, [0, resized.height, width, resized.height]), 0, fill + srcH);
    }
  } else if (ratio > srcRatio) {
    const fill = halfDiff(width, srcW);
    if (fill > 0) {
      paste(res, resampleBicubic(resized, fill, height, [0, 0, 0, height]), 0, 0);
      paste(res, resampleBicubic(resized, fill, height, [resized.width, 0, resized.width, height]), fill + srcW, 0);
    }
  }
  return res;
}

/** Python's `a // 2 - b // 2` (offset that centres b in a; negative means crop). */
const halfDiff = (a: number, b: number) => Math.floor(a / 2) - Math.floor(b / 2);
const blank = (width: number, height: number): RGBImage => ({ width, height, data: new Uint8Array(width * height * 3) });

/** PIL Image.paste at (x, y), clipped to dst; modifies and returns dst. */
function paste(dst: RGBImage, src: RGBImage, x: number, y: number): RGBImage {
  const x0 = Math.max(0, x),
    x1 = Math.min(dst.width, x + src.width);
  if (x1 <= x0) return dst;
  for (let dy = Math.max(0, y); dy < Math.min(dst.height, y + src.height); dy++) {
    const s = ((dy - y) * src.width + (x0 - x)) * 3;
    dst.data.set(src.data.subarray(s, s + (x1 - x0) * 3), (dy * dst.width + x0) * 3);
  }
  return dst;
}

// Pillow Resample.c, LANCZOS (a = 3) and BICUBIC (a = -0.5), 8-bit: coefficients in double, normalised,
// then fixed point with PRECISION_BITS = 22; horizontal pass first over the rows the vertical pass needs.
const PRECISION_BITS = 32 - 8 - 2;
const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
interface Filter {
  support: number;
  fn: (x: number) => number;
}
const LANCZOS: Filter = { support: 3, fn: (x) => (-3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0) };
const BICUBIC: Filter = {
  support: 2,
  fn: (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
  },
};

interface Coeffs {
  ksize: number;
  bounds: Int32Array;
  kk: Int32Array;
}

function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number, filter: Filter): Coeffs {
  const scale = Math.fround(Math.fround(in1) - Math.fround(in0)) / outSize; // float box, double maths
  const filterscale = Math.max(scale, 1);
  const invFilterscale = 1 / filterscale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = Math.fround(in0) + (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) ww += k[x] = filter.fn((x + xmin - center + 0.5) * invFilterscale);
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = Math.max(xmax, 0);
  }
  return { ksize, bounds, kk };
}

const clip8 = (ss: number) => Math.min(255, Math.max(0, ss >> PRECISION_BITS));

/** Pillow Image.resize((outW, outH), LANCZOS, box) on RGB; box = [x0, y0, x1, y1] source region. */
export function resampleLanczos(img: RGBImage, outW: number, outH: number, box?: [number, number, number, number]): RGBImage {
  return resample(img, outW, outH, box, LANCZOS);
}

/** Pillow Image.resize((outW, outH), BICUBIC, box) on RGB (Pillow's default filter for RGB). */
export function resampleBicubic(img: RGBImage, outW: number, outH: number, box?: [number, number, number, number]): RGBImage {
  return resample(img, outW, outH, box, BICUBIC);
}

function resample(img: RGBImage, outW: number, outH: number, box: [number, number, number, number] | undefined, filter: Filter): RGBImage {
  const [bx0, by0, bx1, by1] = box ?? [0, 0, img.width, img.height];
  if (bx0 < 0 || by0 < 0 || bx1 > img.width || by1 > img.height || bx1 < bx0 || by1 < by0) {
    throw new ReimagineError(`resample box [${bx0}, ${by0}, ${bx1}, ${by1}] is outside the ${img.width}x${img.height} image`);
  }
  if (Number.isInteger(bx0) && Number.isInteger(by0) && bx1 - bx0 === outW && by1 - by0 === outH) {
    return paste(blank(outW, outH), img, -bx0, -by0); // Pillow: an integer box of the output size is a crop
  }
  const needH = outW !== img.width || bx0 !== 0 || bx1 !== outW;
  const needV = outH !== img.height || by0 !== 0 || by1 !== outH;
  if (!needH && !needV) return { width: img.width, height: img.height, data: img.data.slice() };
  const vert = precomputeCoeffs(img.height, by0, by1, outH, filter);
  let src = img;
  if (needH) {
    const yFirst = vert.bounds[0];
    const yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1];
    for (let i = 0; i < outH; i++) vert.bounds[i * 2] -= yFirst;
    const { ksize, bounds, kk } = precomputeCoeffs(img.width, bx0, bx1, outW, filter);
    const tmp = blank(outW, yLast - yFirst); // [rows the vertical pass reads, outW, 3]
    for (let y = 0; y < tmp.height; y++) {
      const row = (y + yFirst) * img.width * 3;
      for (let xx = 0; xx < outW; xx++) {
        const [xmin, n] = [bounds[xx * 2], bounds[xx * 2 + 1]];
        let s0 = 1 << (PRECISION_BITS - 1),
          s1 = s0,
          s2 = s0;
        for (let x = 0; x < n; x++) {
          const kv = kk[xx * ksize + x];
          const p = row + (x + xmin) * 3;
          s0 += img.data[p] * kv;
          s1 += img.data[p + 1] * kv;
          s2 += img.data[p + 2] * kv;
        }
        const o = (y * outW + xx) * 3;
        [tmp.data[o], tmp.data[o + 1], tmp.data[o + 2]] = [clip8(s0), clip8(s1), clip8(s2)];
      }
    }
    src = tmp;
  }
  if (!needV) return src;
  const out = blank(src.width, outH);
  const rowLen = src.width * 3;
  for (let yy = 0; yy < outH; yy++) {
    const [ymin, n] = [vert.bounds[yy * 2], vert.bounds[yy * 2 + 1]];
    for (let i = 0; i < rowLen; i++) {
      let s = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < n; y++) s += src.data[(y + ymin) * rowLen + i] * vert.kk[yy * vert.ksize + y];
      out.data[yy * rowLen + i] = clip8(s);
    }
  }
  return out;
}

// ---------- tensors ----------

// x/255 in float32 (PIL -> numpy), then 2x-1 in float32 (VaeImageProcessor.normalize): one value per byte.
const TO_TENSOR = Float32Array.from({ length: 256 }, (_, v) => Math.fround(2 * Math.fround(v / 255) - 1));

/**
 * RGB image -> NCHW float32 [1, 3, H, W] in [-1, 1], bit-identical to VaeImageProcessor.preprocess.
 * @example const x = imageToTensor(await loadImage("in.png")) // feed to the VAE encoder
 */
export function imageToTensor(img: RGBImage): Float32Array {
  const plane = img.width * img.height;
  const out = new Float32Array(3 * plane); // [1, 3, H, W]
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[c * plane + p] = TO_TENSOR[img.data[p * 3 + c]];
  }
  return out;
}

/** (x * 0.5 + 0.5).clamp(0, 1) in float32, as VaeImageProcessor.denormalize (NaN stays NaN like torch). */
const denormalize = (x: number) => Math.min(1, Math.max(0, Math.fround(Math.fround(x * 0.5) + 0.5)));

function checkPlanes(data: Float32Array, width: number, height: number, offset: number): void {
  if (offset < 0 || offset + 3 * width * height > data.length) {
    throw new ReimagineError(`decoded tensor holds ${data.length} values; a 3x${height}x${width} image at offset ${offset} does not fit`);
  }
}

/**
 * Decoder output (NCHW, [-1, 1]) of one image starting at element `offset` -> RGB bytes, exactly
 * diffusers postprocess + numpy_to_pil: round-half-even((x/2+0.5).clamp(0,1) * 255) in float32.
 * @example tensorToImage(decoded, 512, 512, 1 * 3 * 512 * 512) // second image of the batch
 */
export function tensorToImage(data: Float32Array, width: number, height: number, offset = 0): RGBImage {
  checkPlanes(data, width, height, offset);
  const plane = width * height;
  const out = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.fround(denormalize(data[offset + c * plane + p]) * 255);
      out[p * 3 + c] = Number.isNaN(v) ? 0 : roundHalfEven(v);
    }
  }
  return { width, height, data: out };
}

/** Decoder output -> float32 HWC [H, W, 3] in [0, 1], as diffusers output_type "np" (one image). */
export function tensorToFloatHWC(data: Float32Array, width: number, height: number, offset = 0): Float32Array {
  checkPlanes(data, width, height, offset);
  const plane = width * height;
  const out = new Float32Array(plane * 3); // [H, W, 3]
  for (let p = 0; p < plane; p++) {
    for (let c = 0; c < 3; c++) out[p * 3 + c] = denormalize(data[offset + c * plane + p]);
  }
  return out;
}

// ---------- save ----------

export type ImageFormat = "png" | "jpeg" | "webp";

/** Output format from a file name's extension (.png, .jpg/.jpeg, .webp). */
export function formatFromPath(path: string): ImageFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".png") return "png";
  if (ext === ".jpg" || ext === ".jpeg") return "jpeg";
  if (ext === ".webp") return "webp";
  throw new ReimagineError(`Cannot tell the image format of '${path}': end the file name with .png, .jpg or .webp`);
}

/**
 * Encodes RGB pixels; `parameters` is stored as A1111 does (PNG tEXt/iTXt "parameters", JPEG/WebP EXIF UserComment).
 * @example await encodeImage(img, "png", { parameters: "a cat\nSteps: 20, Sampler: Euler a, Seed: 1" })
 */
export async function encodeImage(img: RGBImage, format: ImageFormat, opts: { parameters?: string; quality?: number } = {}): Promise<Buffer> {
  const s = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  });
  const q = opts.quality === undefined ? {} : { quality: opts.quality };
  const p = opts.parameters;
  if (format === "png") {
    const png = await s.png().toBuffer();
    return p === undefined ? png : withPngParameters(png, p);
  }
  if (format === "jpeg") {
    const jpeg = await s.jpeg(q).toBuffer();
    return p === undefined ? jpeg : withJpegExif(jpeg, exifWithUserComment(p));
  }
  if (format === "webp") {
    const webp = await s.webp(q).toBuffer();
    return p === undefined ? webp : withWebpExif(webp, exifWithUserComment(p), img.width, img.height);
  }
  throw new ReimagineError(`unknown image format '${format}': use png, jpeg or webp`);
}

/** Generation parameters in a PNG/JPEG/WebP file (ours or A1111's); undefined when it has none. */
export async function readImageParameters(input: string | Buffer): Promise<string | undefined> {
  let bytes = input;
  if (typeof bytes === "string") {
    try {
      bytes = await readFile(bytes);
    } catch (e) {
      throw new ReimagineError(`Cannot read image '${input}': ${oneLine(e)}`, "not_found", { cause: e });
    }
  }
  try {
    return parametersFromBytes(bytes);
  } catch (e) {
    if (e instanceof ReimagineError) {
      throw new ReimagineError(`Cannot read parameters from ${typeof input === "string" ? `'${input}'` : "image data"}: ${e.message}`, e.code);
    }
    throw e;
  }
}

/**
 * Writes via a temp file in the same folder + rename, so readers never see a partial file.
 * Refuses to replace an existing file unless `overwrite` (the check and the write are one atomic link).
 */
export async function writeFileAtomic(path: string, data: Buffer, opts: { overwrite?: boolean } = {}): Promise<void> {
  const exists = () => new ReimagineError(`'${path}' already exists: pass --overwrite to replace it, or choose another name`, "file_exists");
  const dir = dirname(path);
  if (!opts.overwrite && (await stat(path).catch(() => undefined))) throw exists();
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx");
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.overwrite) await rename(tmp, path);
    else {
      try {
        await link(tmp, path); // fails with EEXIST instead of clobbering a file created meanwhile
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST") throw exists();
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EXDEV") throw e;
        await rename(tmp, path); // filesystems without hard links
      }
    }
  } catch (e) {
    if (e instanceof ReimagineError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? `folder '${dir}' does not exist; create it first` : oneLine(e);
    throw new ReimagineError(`Cannot write '${path}': ${why}`, "write_failed", { cause: e });
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

// ---------- comparison and contact sheets ----------

/** SSIM after resizing `b` to `a`'s size (just-resize) when they differ. */
export async function ssimResized(a: RGBImage, b: RGBImage): Promise<number> {
  const bb = a.width === b.width && a.height === b.height ? b : await resizeImage(b, a.width, a.height, "just-resize");
  return ssim(a, bb);
}

/**
 * A labelled grid: each image scaled to cellWidth (aspect kept), its label below (sharp SVG text).
 * @example await contactSheet([{ image: input, label: "input" }, { image: out, label: "strength 0.40 · SSIM 0.83" }])
 */
export async function contactSheet(cells: { image: RGBImage; label: string }[], opts: { cellWidth?: number; columns?: number } = {}): Promise<RGBImage> {
  const layout = sheetLayout(
    cells.map((c) => c.image),
    opts.cellWidth ?? 256,
    opts.columns ?? 4,
  );
  const raw = (img: RGBImage) => ({ raw: { width: img.width, height: img.height, channels: 3 as const } });
  const tiles = await Promise.all(
    cells.map(async (c, i) => {
      const { width, height } = layout.cells[i];
      const input = await sharp(Buffer.from(c.image.data), raw(c.image)).resize(width, height, { fit: "fill", kernel: "lanczos3" }).raw().toBuffer();
      return { input, raw: { width, height, channels: 3 as const }, left: layout.cells[i].left, top: layout.cells[i].top };
    }),
  );
  const svg = Buffer.from(
    sheetLabelsSvg(
      layout,
      cells.map((c) => c.label),
    ),
  );
  const { data, info } = await sharp({ create: { width: layout.width, height: layout.height, channels: 3, background: "#202020" } })
    .composite([...tiles, { input: svg, left: 0, top: 0 }])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}
