// Decoding of inpainting masks and of pictures whose alpha channel matters (sharp lives only in src/image*.ts):
// bytes -> 8-bit pixels that keep the channels the file has (gray, gray + alpha, RGB, RGBA), so the mask rules
// in src/inpaint/mask-source.ts can tell luminance from transparency. Ref: PIL Image.open modes L / LA / RGB / RGBA.
import { DEFAULT_MAX_PIXELS } from "./image.js";
import { openImageInput, sharp } from "./image-read.js";
import type { GrayImage } from "./inpaint/pil.js";

/** 8-bit interleaved pixels with the file's channels: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (straight alpha). */
export interface DecodedPixels {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

/**
 * Decodes a PNG/JPEG/WebP/AVIF/TIFF/GIF (first frame) keeping gray and alpha channels; EXIF orientation applied,
 * palettes expanded, 16-bit samples scaled to 8 bits (PIL would clip them), CMYK converted to RGB.
 * `what` names the input in errors ("mask 'm.png'").
 * @example const m = await decodePixels("mask.png", "mask") // { channels: 1, ... } for a gray PNG
 */
export async function decodePixels(input: string | Buffer, what = "mask", maxPixels = DEFAULT_MAX_PIXELS): Promise<DecodedPixels> {
  const { bytes, meta, unreadable } = await openImageInput(input, what, maxPixels);
  const gray = meta.space === "b-w" || meta.space === "grey16";
  try {
    // sRGB output (sharp drops the alpha of "b-w" output); gray files are folded back to 1 or 2 channels below
    const { data, info } = await sharp(bytes, { failOn: "truncated", limitInputPixels: false, pages: 1, ignoreIcc: true })
      .autoOrient()
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    const rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
    if (info.channels !== 3 && info.channels !== 4) throw new Error(`decoded to ${info.channels} channels`);
    if (!gray) return { width: info.width, height: info.height, channels: info.channels, data: rgb };
    const alpha = info.channels === 4;
    const n = info.width * info.height;
    const out = new Uint8Array(n * (alpha ? 2 : 1));
    for (let p = 0; p < n; p++) {
      out[alpha ? 2 * p : p] = rgb[p * info.channels]; // R = G = B
      if (alpha) out[2 * p + 1] = rgb[p * 4 + 3];
    }
    return { width: info.width, height: info.height, channels: alpha ? 2 : 1, data: out };
  } catch (e) {
    throw unreadable(e);
  }
}

/**
 * Encodes a gray mask as an 8-bit grayscale PNG (white = repaint), e.g. to return the mask a request used.
 * @example await writeFile("mask.png", await encodeMaskPng(mask))
 */
export async function encodeMaskPng(mask: GrayImage): Promise<Buffer> {
  return sharp(Buffer.from(mask.data.buffer, mask.data.byteOffset, mask.data.byteLength), {
    raw: { width: mask.width, height: mask.height, channels: 1 },
  })
    .toColourspace("b-w")
    .png()
    .toBuffer();
}
