// Tiled VAE encode/decode for large images: overlapping tiles run one at a time, blended linearly
// over the overlap so seams do not show, exactly as diffusers AutoencoderKL.enable_tiling() computes it.
// Ref: diffusers models/autoencoders/autoencoder_kl.py (tiled_encode, tiled_decode, blend_v, blend_h).
// Notation: N batch, C channels, H/W spatial size; tensors are NCHW float32.
import { vaeScaleFactor } from "../models/vae.js";

/** A 4-D NCHW float32 tensor. */
export interface Tensor4 {
  data: Float32Array;
  dims: [number, number, number, number];
}

/** diffusers' tiling sizes: tile_sample_min_size, tile_latent_min_size, tile_overlap_factor. */
export interface VaeTiling {
  /** Pixel tile side (the VAE config's sample_size, 512 for SD 1.x). */
  tileSampleSize: number;
  /** Latent tile side: sample_size / vae scale factor (64 for SD 1.x). */
  tileLatentSize: number;
  /** Fraction of a tile that overlaps its neighbour (diffusers: 0.25). */
  overlapFactor: number;
}

/** "auto": tile when the image has more than AUTO_TILING_PIXELS pixels; "on": as diffusers' enable_tiling(). */
export type VaeTilingMode = "auto" | "on" | "off";
export const VAE_TILING_MODES: readonly VaeTilingMode[] = ["auto", "on", "off"];

/** Images above 1024x1024 pixels are tiled in "auto" mode (a 1024x1024 decode needs ~4 GB untiled). */
export const AUTO_TILING_PIXELS = 1024 * 1024;

/**
 * Tiling sizes from a vae/config.json, as AutoencoderKL.__init__ sets them.
 *
 * @example
 *   const t = vaeTilingFor({ sample_size: 512, block_out_channels: [128, 256, 512, 512] }); // 512 px / 64 latent tiles
 */
export function vaeTilingFor(config: { sample_size: number | number[]; block_out_channels: readonly number[] }): VaeTiling {
  const size = Array.isArray(config.sample_size) ? config.sample_size[0] : config.sample_size;
  return { tileSampleSize: size, tileLatentSize: Math.trunc(size / vaeScaleFactor(config)), overlapFactor: 0.25 };
}

/** Whether a run at `height` x `width` pixels tiles its VAE in `mode` (before diffusers' own size check). */
export function tilingWanted(mode: VaeTilingMode, height: number, width: number): boolean {
  if (mode === "on") return true;
  if (mode === "off") return false;
  return height * width > AUTO_TILING_PIXELS;
}

/** diffusers `blend_v`: the top rows of `b` fade in from the bottom rows of `a` (in place on b). */
export function blendV(a: Tensor4, b: Tensor4, blendExtent: number): void {
  const [n, c, ha, w] = a.dims;
  const hb = b.dims[2];
  if (b.dims[0] !== n || b.dims[1] !== c || b.dims[3] !== w) throw new Error(`blendV: tiles [${a.dims}] and [${b.dims}] differ in N, C or W`);
  const e = Math.min(ha, hb, blendExtent);
  for (let y = 0; y < e; y++) {
    const wa = Math.fround(1 - y / e); // torch: tensor * python float, in float32
    const wb = Math.fround(y / e);
    for (let p = 0; p < n * c; p++) {
      const ra = (p * ha + ha - e + y) * w;
      const rb = (p * hb + y) * w;
      for (let x = 0; x < w; x++) b.data[rb + x] = Math.fround(Math.fround(a.data[ra + x] * wa) + Math.fround(b.data[rb + x] * wb));
    }
  }
}

/** diffusers `blend_h`: the left columns of `b` fade in from the right columns of `a` (in place on b). */
export function blendH(a: Tensor4, b: Tensor4, blendExtent: number): void {
  const [n, c, h, wa_] = a.dims;
  const wb_ = b.dims[3];
  if (b.dims[0] !== n || b.dims[1] !== c || b.dims[2] !== h) throw new Error(`blendH: tiles [${a.dims}] and [${b.dims}] differ in N, C or H`);
  const e = Math.min(wa_, wb_, blendExtent);
  for (let x = 0; x < e; x++) {
    const wa = Math.fround(1 - x / e);
    const wb = Math.fround(x / e);
    for (let r = 0; r < n * c * h; r++) {
      const ia = r * wa_ + wa_ - e + x;
      const ib = r * wb_ + x;
      b.data[ib] = Math.fround(Math.fround(a.data[ia] * wa) + Math.fround(b.data[ib] * wb));
    }
  }
}

/** `x[:, :, y0:y0+size, x0:x0+size]` (clipped at the edges, as Python slicing). */
export function sliceTile(x: Tensor4, y0: number, x0: number, size: number): Tensor4 {
  const [n, c, H, W] = x.dims;
  const h = Math.min(size, H - y0);
  const w = Math.min(size, W - x0);
  const out = new Float32Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    for (let y = 0; y < h; y++) {
      const src = (p * H + y0 + y) * W + x0;
      out.set(x.data.subarray(src, src + w), (p * h + y) * w);
    }
  }
  return { data: out, dims: [n, c, h, w] };
}

/**
 * The tiling loop shared by tiled_encode and tiled_decode: tiles of `inSize` every
 * inSize * (1 - overlap) along H and W, each mapped by `run` to a tile of about `outSize`, blended with
 * the tile above and the tile to the left (in place, in diffusers' order), cropped to
 * outSize - blendExtent and concatenated.
 */
async function tiled(x: Tensor4, run: (tile: Tensor4) => Promise<Tensor4>, inSize: number, outSize: number, overlapFactor: number): Promise<Tensor4> {
  const stride = Math.trunc(inSize * (1 - overlapFactor));
  const blendExtent = Math.trunc(outSize * overlapFactor);
  const rowLimit = outSize - blendExtent;
  if (stride < 1 || rowLimit < 1) throw new Error(`VAE tiling: tile size ${inSize} -> ${outSize} is too small to tile`);
  const [, , H, W] = x.dims;
  const rows: Tensor4[][] = [];
  for (let i = 0; i < H; i += stride) {
    const row: Tensor4[] = [];
    for (let j = 0; j < W; j += stride) row.push(await run(sliceTile(x, i, j, inSize)));
    rows.push(row);
  }
  for (let i = 0; i < rows.length; i++) {
    for (let j = 0; j < rows[i].length; j++) {
      if (i > 0) blendV(rows[i - 1][j], rows[i][j], blendExtent);
      if (j > 0) blendH(rows[i][j - 1], rows[i][j], blendExtent);
    }
  }
  // torch.cat of tile[:, :, :rowLimit, :rowLimit] along W per row, then along H
  const [n, c] = rows[0][0].dims;
  const heights = rows.map((r) => Math.min(rowLimit, r[0].dims[2]));
  const widths = rows[0].map((t) => Math.min(rowLimit, t.dims[3]));
  const outH = heights.reduce((a, b) => a + b, 0);
  const outW = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(n * c * outH * outW);
  let y0 = 0;
  for (let i = 0; i < rows.length; i++) {
    let x0 = 0;
    for (let j = 0; j < rows[i].length; j++) {
      const t = rows[i][j];
      const [, tc, th, tw] = t.dims;
      if (tc !== c || th < heights[i] || tw < widths[j]) throw new Error(`VAE tiling: tile (${i}, ${j}) has shape [${t.dims}], which does not line up`);
      for (let p = 0; p < n * c; p++) {
        for (let y = 0; y < heights[i]; y++) {
          const src = (p * th + y) * tw;
          out.set(t.data.subarray(src, src + widths[j]), (p * outH + y0 + y) * outW + x0);
        }
      }
      x0 += widths[j];
    }
    y0 += heights[i];
  }
  return { data: out, dims: [n, c, outH, outW] };
}

/**
 * diffusers `tiled_encode`: `encode` maps a pixel tile [N, 3, h, w] to its moments [N, 2L, h/f, w/f]
 * (mean and logvar channels, before DiagonalGaussianDistribution); returns the blended moments.
 * diffusers takes this path when H or W exceeds tileSampleSize (see encodeTiles).
 *
 * @example
 *   const moments = await tiledEncode(pixels, (t) => runEncoder(t), vaeTilingFor(vaeConfig));
 */
export function tiledEncode(x: Tensor4, encode: (tile: Tensor4) => Promise<Tensor4>, t: VaeTiling): Promise<Tensor4> {
  return tiled(x, encode, t.tileSampleSize, t.tileLatentSize, t.overlapFactor);
}

/**
 * diffusers `tiled_decode`: `decode` maps a latent tile [N, L, h, w] (unscaled) to pixels [N, 3, h*f, w*f].
 *
 * @example
 *   const image = await tiledDecode(latents, (t) => runDecoder(t), vaeTilingFor(vaeConfig));
 */
export function tiledDecode(z: Tensor4, decode: (tile: Tensor4) => Promise<Tensor4>, t: VaeTiling): Promise<Tensor4> {
  return tiled(z, decode, t.tileLatentSize, t.tileSampleSize, t.overlapFactor);
}

/** diffusers' own condition for the tiled encoder once tiling is enabled. */
export const encodeTiles = (t: VaeTiling, height: number, width: number): boolean => height > t.tileSampleSize || width > t.tileSampleSize;
/** diffusers' own condition for the tiled decoder once tiling is enabled (latent sizes). */
export const decodeTiles = (t: VaeTiling, h: number, w: number): boolean => h > t.tileLatentSize || w > t.tileLatentSize;
