// Image comparison and preview helpers on plain RGB pixels (no sharp): SSIM, the cheap latent->RGB
// preview, nearest-neighbour upscaling and the contact-sheet layout (image.ts renders it with sharp).
// Ref: Wang et al. 2004 "Image quality assessment: from error visibility to structural similarity" (ssim_index.m);
// latent factors from A1111 sd_vae_approx.cheap_approximation (SD1.x and SDXL).
import { ReimagineError } from "./errors.js";

/** RGB 8-bit, interleaved, row-major: data.length === width * height * 3. */
export interface RGBImage {
  width: number;
  height: number;
  data: Uint8Array;
}

// ---------- SSIM ----------

/** Luminance (ITU-R BT.601, as MATLAB rgb2gray) of every pixel, 0..255. */
function luma(img: RGBImage): Float64Array {
  const n = img.width * img.height;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = 0.299 * img.data[3 * i] + 0.587 * img.data[3 * i + 1] + 0.114 * img.data[3 * i + 2];
  }
  return out;
}

function gaussianWindow(size: number, sigma: number): Float64Array {
  const w = new Float64Array(size);
  const c = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) sum += w[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
  return w.map((v) => v / sum);
}

/** Separable 'valid' filtering of a w x h plane -> (w-k+1) x (h-k+1). */
function filterValid(src: Float64Array, w: number, h: number, k: Float64Array): Float64Array {
  const ow = w - k.length + 1;
  const oh = h - k.length + 1;
  const tmp = new Float64Array(ow * h); // [h, ow]
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let i = 0; i < k.length; i++) s += k[i] * src[y * w + x + i];
      tmp[y * ow + x] = s;
    }
  }
  const out = new Float64Array(ow * oh); // [oh, ow]
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let i = 0; i < k.length; i++) s += k[i] * tmp[(y + i) * ow + x];
      out[y * ow + x] = s;
    }
  }
  return out;
}

/**
 * Mean SSIM on luminance: Gaussian window 11 (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, 'valid' region.
 * Images smaller than 11 px use the largest odd window that fits. 1 means identical.
 * @example ssim(input, output) // 0.83
 */
export function ssim(a: RGBImage, b: RGBImage): number {
  if (a.width !== b.width || a.height !== b.height) {
    throw new ReimagineError(
      `ssim needs images of the same size (got ${a.width}x${a.height} and ${b.width}x${b.height}); use ssimResized to resize the second first`,
    );
  }
  const size = Math.min(11, a.width - ((a.width + 1) % 2), a.height - ((a.height + 1) % 2));
  if (size < 1) throw new ReimagineError("ssim needs non-empty images");
  const win = gaussianWindow(size, 1.5);
  const [x, y] = [luma(a), luma(b)];
  const n = x.length;
  const xx = new Float64Array(n),
    yy = new Float64Array(n),
    xy = new Float64Array(n);
  for (let i = 0; i < n; i++) [xx[i], yy[i], xy[i]] = [x[i] * x[i], y[i] * y[i], x[i] * y[i]];
  const f = (p: Float64Array) => filterValid(p, a.width, a.height, win);
  const [mx, my, sxx, syy, sxy] = [f(x), f(y), f(xx), f(yy), f(xy)];
  const C1 = (0.01 * 255) ** 2;
  const C2 = (0.03 * 255) ** 2;
  let total = 0;
  for (let i = 0; i < mx.length; i++) {
    const [ux, uy] = [mx[i], my[i]];
    const vx = sxx[i] - ux * ux,
      vy = syy[i] - uy * uy,
      cxy = sxy[i] - ux * uy;
    total += ((2 * ux * uy + C1) * (2 * cxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
  }
  return total / mx.length;
}

// ---------- previews ----------

/** A1111 "Approx cheap" latent -> RGB factors, [latent channel][r, g, b], applied to unscaled latents. */
export const LATENT_RGB_FACTORS = {
  sd1: [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
  ],
  sdxl: [
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.029, 0.025],
    [0.1074, 0.0886, -0.0163],
    [-0.373, -0.2499, -0.2088],
  ],
} as const;

/**
 * Cheap latent preview: one pixel per latent cell (callers upscale, e.g. upscaleNearest(p, 8)).
 * 4 channels: the A1111 linear factors, then (v + 1) / 2 clamped to [0, 1]. Other channel counts: channel
 * c feeds colour c % 3 (averaged), each colour stretched to its own min..max.
 * @example latentPreview(latents, [1, 4, 64, 64]) // 64x64 RGBImage
 */
export function latentPreview(latents: Float32Array, shape: readonly number[], index = 0, opts: { family?: keyof typeof LATENT_RGB_FACTORS } = {}): RGBImage {
  if (shape.length !== 4) throw new ReimagineError(`latentPreview expects [N, C, H, W] latents, got shape [${shape}]`);
  const [n, c, h, w] = shape;
  if (index < 0 || index >= n) throw new ReimagineError(`latentPreview index ${index} is outside the batch of ${n}`);
  if (latents.length < n * c * h * w) throw new ReimagineError(`latents hold ${latents.length} values, shape needs ${n * c * h * w}`);
  const plane = h * w;
  const base = index * c * plane;
  const rgb = new Float64Array(plane * 3); // [H*W, 3]
  if (c === 4) {
    const f = LATENT_RGB_FACTORS[opts.family ?? "sd1"];
    for (let p = 0; p < plane; p++) {
      for (let r = 0; r < 3; r++) {
        let v = 0;
        for (let l = 0; l < 4; l++) v += latents[base + l * plane + p] * f[l][r];
        rgb[p * 3 + r] = Math.min(1, Math.max(0, (v + 1) / 2));
      }
    }
  } else {
    for (let r = 0; r < 3; r++) {
      const chans = Array.from({ length: c }, (_, i) => i).filter((i) => i % 3 === r);
      if (chans.length === 0) chans.push(r % c);
      let lo = Infinity,
        hi = -Infinity;
      for (let p = 0; p < plane; p++) {
        let v = 0;
        for (const ch of chans) v += latents[base + ch * plane + p];
        v /= chans.length;
        rgb[p * 3 + r] = v;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const span = hi - lo || 1;
      for (let p = 0; p < plane; p++) rgb[p * 3 + r] = (rgb[p * 3 + r] - lo) / span;
    }
  }
  const data = new Uint8Array(plane * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.round(rgb[i] * 255);
  return { width: w, height: h, data };
}

/** Integer-factor nearest-neighbour upscale (for latent previews). */
export function upscaleNearest(img: RGBImage, factor: number): RGBImage {
  if (!Number.isInteger(factor) || factor < 1) throw new ReimagineError(`upscale factor must be a positive integer, got ${factor}`);
  const [w, h] = [img.width * factor, img.height * factor];
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = Math.floor(y / factor);
    for (let x = 0; x < w; x++) {
      const s = (sy * img.width + Math.floor(x / factor)) * 3;
      data.set(img.data.subarray(s, s + 3), (y * w + x) * 3);
    }
  }
  return { width: w, height: h, data };
}

// ---------- contact sheet layout ----------

export const SHEET_GAP = 8;
export const SHEET_LABEL_HEIGHT = 22;
export const SHEET_FONT_SIZE = 13;

export interface SheetLayout {
  width: number;
  height: number;
  cellWidth: number;
  cellHeight: number; // image area of one cell (label strip below it)
  cells: { left: number; top: number; width: number; height: number; labelX: number; labelY: number }[];
}

/**
 * Grid positions for a contact sheet: every image scaled to cellWidth (keeping aspect), centred in a
 * cellWidth x cellHeight box (cellHeight = tallest scaled image), label strip below, SHEET_GAP between.
 */
export function sheetLayout(sizes: { width: number; height: number }[], cellWidth: number, columns: number): SheetLayout {
  if (sizes.length === 0) throw new ReimagineError("contactSheet needs at least one image");
  if (!Number.isInteger(cellWidth) || cellWidth < 8) throw new ReimagineError(`cellWidth must be an integer >= 8, got ${cellWidth}`);
  if (!Number.isInteger(columns) || columns < 1) throw new ReimagineError(`columns must be a positive integer, got ${columns}`);
  const scaled = sizes.map((s) => ({ width: cellWidth, height: Math.max(1, Math.round((cellWidth * s.height) / s.width)) }));
  const cellHeight = Math.max(...scaled.map((s) => s.height));
  const cols = Math.min(columns, sizes.length);
  const rows = Math.ceil(sizes.length / cols);
  const pitchY = cellHeight + SHEET_LABEL_HEIGHT + SHEET_GAP;
  const cells = scaled.map((s, i) => {
    const x0 = SHEET_GAP + (i % cols) * (cellWidth + SHEET_GAP);
    const y0 = SHEET_GAP + Math.floor(i / cols) * pitchY;
    return {
      left: x0,
      top: y0 + Math.floor((cellHeight - s.height) / 2),
      width: s.width,
      height: s.height,
      labelX: x0 + cellWidth / 2,
      labelY: y0 + cellHeight + SHEET_LABEL_HEIGHT - 7,
    };
  });
  return { width: SHEET_GAP + cols * (cellWidth + SHEET_GAP), height: SHEET_GAP + rows * pitchY, cellWidth, cellHeight, cells };
}

const xmlEscape = (s: string) => s.replace(/[<>&"']/g, (ch) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[ch]!);

/** An SVG (sheet-sized, transparent) with every label centred under its cell; long labels are shortened. */
export function sheetLabelsSvg(layout: SheetLayout, labels: string[]): string {
  const maxChars = Math.max(4, Math.floor(layout.cellWidth / (SHEET_FONT_SIZE * 0.6)));
  const texts = layout.cells.map((c, i) => {
    const raw = labels[i] ?? "";
    const label = raw.length > maxChars ? `${raw.slice(0, maxChars - 1)}…` : raw;
    return `<text x="${c.labelX}" y="${c.labelY}" text-anchor="middle">${xmlEscape(label)}</text>`;
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}">` +
    `<g font-family="sans-serif" font-size="${SHEET_FONT_SIZE}" fill="#e8e8e8">${texts.join("")}</g></svg>`
  );
}
