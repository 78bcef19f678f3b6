// Pillow-exact 8-bit pixel operations for masks and compositing, as plain loops over bytes (no sharp).
// Ref: Pillow src/libImaging BoxBlur.c (GaussianBlur = 3 extended box passes), Convert.c (L24 luma,
// RGBA <-> premultiplied RGBa), Paste.c (paste_mask_L), AlphaComposite.c, Blend.c; PIL ImageOps.invert,
// Image.getbbox / crop / composite. Every result equals Pillow's byte for byte (tests: pil.test.ts).
import { ReimagineError } from "../errors.js";
import type { RGBImage } from "../image-sheet.js";

/** One 8-bit channel, row-major (PIL mode "L"): data.length === width * height. */
export interface GrayImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** RGBA 8-bit, interleaved: straight alpha (PIL "RGBA") or premultiplied (PIL "RGBa"), as each function says. */
export interface RGBAImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Any of the above: `channels` = data.length / (width * height). */
export type Pixels = GrayImage | RGBImage | RGBAImage;

/** (x1, y1, x2, y2), x2 and y2 exclusive, as PIL boxes. */
export type Box = [number, number, number, number];

const f32 = Math.fround;

export function channelsOf(img: Pixels): number {
  const n = img.width * img.height;
  const c = n === 0 ? 1 : img.data.length / n;
  if (!Number.isInteger(c) || c < 1 || c > 4) {
    throw new ReimagineError(`pixel buffer of ${img.data.length} bytes does not fit ${img.width}x${img.height} with 1-4 channels`);
  }
  return c;
}

const blankLike = <T extends Pixels>(img: T): T => ({ ...img, data: new Uint8Array(img.data.length) });

// ---------- conversions ----------

/** PIL convert("L") of RGB or RGBA (alpha ignored): ITU-R 601-2 luma, (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. */
export function toGray(img: RGBImage | RGBAImage | GrayImage): GrayImage {
  const c = channelsOf(img);
  if (c === 1) return { width: img.width, height: img.height, data: img.data.slice() };
  if (c === 2) return { width: img.width, height: img.height, data: img.data.filter((_, i) => i % 2 === 0) }; // LA -> L
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  for (let p = 0, i = 0; p < n; p++, i += c) out[p] = (img.data[i] * 19595 + img.data[i + 1] * 38470 + img.data[i + 2] * 7471 + 0x8000) >>> 16;
  return { width: img.width, height: img.height, data: out };
}

/** One channel of an interleaved image (PIL getchannel / split()[k]). */
export function channel(img: Pixels, k: number): GrayImage {
  const c = channelsOf(img);
  if (k < 0 || k >= c) throw new ReimagineError(`channel ${k} does not exist in a ${c}-channel image`);
  const out = new Uint8Array(img.width * img.height);
  for (let p = 0; p < out.length; p++) out[p] = img.data[p * c + k];
  return { width: img.width, height: img.height, data: out };
}

/** Gray -> RGB with R = G = B (PIL convert("RGB") of an "L" image). */
export function grayToRgb(g: GrayImage): RGBImage {
  const out = new Uint8Array(g.data.length * 3);
  for (let p = 0; p < g.data.length; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = g.data[p];
  return { width: g.width, height: g.height, data: out };
}

/** RGB -> RGBA with a constant alpha (PIL convert("RGBA"): 255). */
export function rgbToRgba(img: RGBImage, alpha = 255): RGBAImage {
  const n = img.width * img.height;
  const out = new Uint8Array(n * 4);
  for (let p = 0; p < n; p++) {
    out[4 * p] = img.data[3 * p];
    out[4 * p + 1] = img.data[3 * p + 1];
    out[4 * p + 2] = img.data[3 * p + 2];
    out[4 * p + 3] = alpha;
  }
  return { width: img.width, height: img.height, data: out };
}

/** RGBA -> RGB, alpha dropped (PIL convert("RGB") of "RGBA"). */
export function rgbaToRgb(img: RGBAImage): RGBImage {
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    out[3 * p] = img.data[4 * p];
    out[3 * p + 1] = img.data[4 * p + 1];
    out[3 * p + 2] = img.data[4 * p + 2];
  }
  return { width: img.width, height: img.height, data: out };
}

/** Pillow's MULDIV255: (a * b + 127) / 255 rounded, in integers. */
const muldiv255 = (a: number, b: number) => {
  const t = a * b + 128;
  return ((t >>> 8) + t) >>> 8;
};

/** RGBA -> RGBa: colour premultiplied by alpha (Convert.c rgbA2rgba). */
export function premultiply(img: RGBAImage): RGBAImage {
  const out = img.data.slice();
  for (let i = 0; i < out.length; i += 4) {
    const a = out[i + 3];
    out[i] = muldiv255(out[i], a);
    out[i + 1] = muldiv255(out[i + 1], a);
    out[i + 2] = muldiv255(out[i + 2], a);
  }
  return { width: img.width, height: img.height, data: out };
}

/** RGBa -> RGBA: un-premultiplied, clipped, integer division (Convert.c rgba2rgbA). */
export function unpremultiply(img: RGBAImage): RGBAImage {
  const out = img.data.slice();
  for (let i = 0; i < out.length; i += 4) {
    const a = out[i + 3];
    if (a === 255 || a === 0) continue;
    for (let k = 0; k < 3; k++) out[i + k] = Math.min(255, Math.floor((255 * out[i + k]) / a));
  }
  return { width: img.width, height: img.height, data: out };
}

/** PIL ImageOps.invert: 255 - v. */
export function invert(g: GrayImage): GrayImage {
  return { width: g.width, height: g.height, data: g.data.map((v) => 255 - v) };
}

// ---------- geometry ----------

/** PIL Image.crop(box): pixels outside the image become 0. */
export function crop<T extends Pixels>(img: T, box: Box): T {
  const c = channelsOf(img);
  const [x1, y1, x2, y2] = box;
  const w = x2 - x1;
  const h = y2 - y1;
  if (!(w >= 0 && h >= 0) || ![x1, y1, x2, y2].every(Number.isInteger)) {
    throw new ReimagineError(`crop box [${box.join(", ")}] is not a valid (x1, y1, x2, y2) box`);
  }
  const out = new Uint8Array(w * h * c);
  for (let y = Math.max(0, -y1); y < Math.min(h, img.height - y1); y++) {
    const sx = Math.max(0, x1);
    const ex = Math.min(img.width, x2);
    if (ex <= sx) break;
    const src = ((y + y1) * img.width + sx) * c;
    out.set(img.data.subarray(src, src + (ex - sx) * c), (y * w + (sx - x1)) * c);
  }
  return { ...img, width: w, height: h, data: out };
}

/** PIL Image.getbbox() of a gray image: the box of non-zero pixels, undefined when all are zero. */
export function getbbox(g: GrayImage): Box | undefined {
  let [x1, y1, x2, y2] = [g.width, g.height, 0, 0];
  for (let y = 0; y < g.height; y++) {
    const row = y * g.width;
    for (let x = 0; x < g.width; x++) {
      if (g.data[row + x] === 0) continue;
      if (x < x1) x1 = x;
      if (x >= x2) x2 = x + 1;
      if (y < y1) y1 = y;
      y2 = y + 1;
    }
  }
  return x2 === 0 ? undefined : [x1, y1, x2, y2];
}

/**
 * PIL dst.paste(src, (x, y), mask) with an "L" mask the size of src (paste_mask_L): every channel
 * becomes BLEND(m, dst, src) = round((dst * (255 - m) + src * m) / 255). Without a mask, a plain copy.
 * Modifies and returns dst; src and dst have the same channel count.
 */
export function paste<T extends Pixels>(dst: T, src: Pixels, x = 0, y = 0, mask?: GrayImage): T {
  const c = channelsOf(dst);
  if (channelsOf(src) !== c) throw new ReimagineError(`paste: ${channelsOf(src)}-channel image onto a ${c}-channel one`);
  if (mask && (mask.width !== src.width || mask.height !== src.height)) {
    throw new ReimagineError(`paste: the mask is ${mask.width}x${mask.height}, the pasted image ${src.width}x${src.height}`);
  }
  for (let sy = Math.max(0, -y); sy < Math.min(src.height, dst.height - y); sy++) {
    for (let sx = Math.max(0, -x); sx < Math.min(src.width, dst.width - x); sx++) {
      const s = (sy * src.width + sx) * c;
      const d = ((sy + y) * dst.width + sx + x) * c;
      const m = mask ? mask.data[sy * src.width + sx] : 255;
      for (let k = 0; k < c; k++) {
        const t = dst.data[d + k] * (255 - m) + src.data[s + k] * m + 128;
        dst.data[d + k] = ((t >>> 8) + t) >>> 8;
      }
    }
  }
  return dst;
}

/** PIL Image.composite(image1, image2, mask): image1 where the mask is 255, image2 where 0, blended between. */
export function composite<T extends Pixels>(image1: T, image2: T, mask: GrayImage): T {
  return paste({ ...image2, data: image2.data.slice() }, image1, 0, 0, mask);
}

/** PIL Image.alpha_composite(dst, src) on straight RGBA (AlphaComposite.c, 7 extra bits of precision). */
export function alphaComposite(dst: RGBAImage, src: RGBAImage): RGBAImage {
  if (dst.width !== src.width || dst.height !== src.height) throw new ReimagineError("alphaComposite: images differ in size");
  const out = new Uint8Array(dst.data.length);
  const d = dst.data;
  const s = src.data;
  const shift = (v: number) => ((v >>> 8) + v) >>> 8; // SHIFTFORDIV255
  for (let i = 0; i < out.length; i += 4) {
    const sa = s[i + 3];
    if (sa === 0) {
      out.set(d.subarray(i, i + 4), i);
      continue;
    }
    const blend = d[i + 3] * (255 - sa);
    const outa255 = sa * 255 + blend;
    const coef1 = Math.floor((sa * 255 * 255 * 128) / outa255);
    const coef2 = 255 * 128 - coef1;
    for (let k = 0; k < 3; k++) out[i + k] = shift(s[i + k] * coef1 + d[i + k] * coef2 + (0x80 << 7)) >>> 7;
    out[i + 3] = shift(outa255 + 0x80);
  }
  return { width: dst.width, height: dst.height, data: out };
}

/** PIL Image.blend(a, b, alpha) for 0 <= alpha <= 1: trunc(a + alpha * (b - a)) in float32 (Blend.c). */
export function blend<T extends Pixels>(a: T, b: T, alpha: number): T {
  if (a.data.length !== b.data.length) throw new ReimagineError("blend: images differ in size");
  if (!(alpha >= 0 && alpha <= 1)) throw new ReimagineError(`blend factor must be in [0, 1], got ${alpha}`);
  const al = f32(alpha);
  if (al === 0) return { ...a, data: a.data.slice() };
  if (al === 1) return { ...b, data: b.data.slice() };
  return { ...a, data: a.data.map((v, i) => Math.trunc(f32(v + f32(al * (b.data[i] - v))))) };
}

/** PIL ImageEnhance.Brightness(img).enhance(factor) for a gray image, factor in [0, 1]. */
export function brightness(g: GrayImage, factor: number): GrayImage {
  return blend(blankLike(g), g, factor);
}

// ---------- Gaussian blur ----------

/**
 * Pillow's box radius for a Gaussian of standard deviation `radius` made of `passes` box blurs
 * (BoxBlur.c _gaussian_blur_radius, Gwosdek et al. 2011 extended box), in C float arithmetic.
 */
export function gaussianBoxRadius(radius: number, passes = 3): number {
  const r = f32(radius);
  const sigma2 = f32(f32(r * r) / passes);
  const L = f32(Math.sqrt(12.0 * sigma2 + 1.0)); // double maths, stored as float
  const l = f32(Math.floor((L - 1.0) / 2.0));
  let a = f32(f32(f32(2 * l) + 1) * f32(f32(l * f32(l + 1)) - f32(3 * sigma2)));
  a = f32(a / f32(6 * f32(sigma2 - f32(f32(l + 1) * f32(l + 1)))));
  return f32(l + a);
}

/** One horizontal extended-box pass over every row, in place (ImagingHorizontalBoxBlur, 8-bit lines). */
function horizontalBoxBlur(data: Uint8Array, width: number, height: number, c: number, floatRadius: number): void {
  const radius = Math.trunc(floatRadius);
  const ww = Math.trunc(f32((1 << 24) / f32(f32(floatRadius * 2) + 1))); // UINT32 of a float quotient
  const fw = Math.floor(((1 << 24) - (radius * 2 + 1) * ww) / 2);
  const lastx = width - 1;
  const edgeA = Math.min(radius + 1, width);
  const edgeB = Math.max(width - radius - 1, 0);
  const line = new Uint8Array(width * c);
  const acc = new Float64Array(c);
  for (let y = 0; y < height; y++) {
    const row = y * width * c;
    const px = (x: number, k: number) => data[row + x * c + k];
    for (let k = 0; k < c; k++) {
      // acc for pixel "-1": the first pixel radius+1 times, then pixels 0..edgeA-2, then the last pixel for the rest
      let s = px(0, k) * (radius + 1);
      for (let x = 0; x < edgeA - 1; x++) s += px(x, k);
      acc[k] = s + px(lastx, k) * (radius - edgeA + 1);
    }
    const step = (x: number, sub: number, add: number, left: number, right: number) => {
      for (let k = 0; k < c; k++) {
        acc[k] += px(add, k) - px(sub, k);
        const bulk = acc[k] * ww + (px(left, k) + px(right, k)) * fw; // < 2^32, exact in a double
        line[x * c + k] = Math.floor((bulk + (1 << 23)) / (1 << 24));
      }
    };
    if (edgeA <= edgeB) {
      for (let x = 0; x < edgeA; x++) step(x, 0, x + radius, 0, x + radius + 1);
      for (let x = edgeA; x < edgeB; x++) step(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1);
      for (let x = edgeB; x <= lastx; x++) step(x, x - radius - 1, lastx, x - radius - 1, lastx);
    } else {
      for (let x = 0; x < edgeB; x++) step(x, 0, x + radius, 0, x + radius + 1);
      for (let x = edgeB; x < edgeA; x++) step(x, 0, lastx, 0, lastx);
      for (let x = edgeA; x <= lastx; x++) step(x, x - radius - 1, lastx, x - radius - 1, lastx);
    }
    data.set(line, row);
  }
}

function transpose(data: Uint8Array, width: number, height: number, c: number): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < c; k++) out[(x * height + y) * c + k] = data[(y * width + x) * c + k];
    }
  }
  return out;
}

/**
 * PIL ImageFilter.GaussianBlur(radius) (radius = standard deviation; [x, y] for different ones):
 * three extended box blurs per axis. Works on L, RGB and RGBA/RGBa pixels (each channel alone).
 * @example const soft = gaussianBlur(mask, 4) // == pipe.mask_processor.blur(mask, 4)
 */
export function gaussianBlur<T extends Pixels>(img: T, radius: number | [number, number]): T {
  const [rx, ry] = typeof radius === "number" ? [radius, radius] : radius;
  if (!(rx >= 0 && ry >= 0) || !Number.isFinite(rx) || !Number.isFinite(ry)) {
    throw new ReimagineError(`blur radius must be a number >= 0, got ${radius}`);
  }
  const c = channelsOf(img);
  const out = img.data.slice();
  if (img.width === 0 || img.height === 0 || (rx === 0 && ry === 0)) return { ...img, data: out };
  const bx = gaussianBoxRadius(rx);
  const by = gaussianBoxRadius(ry);
  if (bx !== 0) for (let i = 0; i < 3; i++) horizontalBoxBlur(out, img.width, img.height, c, bx);
  if (by === 0) return { ...img, data: out };
  const t = transpose(out, img.width, img.height, c);
  for (let i = 0; i < 3; i++) horizontalBoxBlur(t, img.height, img.width, c, by);
  return { ...img, data: transpose(t, img.height, img.width, c) };
}
