// Opening an image input before decoding, shared by image.ts (RGB pictures) and image-mask.ts (masks, alpha kept):
// a path or bytes, the header probed, the format (no SVG) and the pixel limit checked before any decode, one-line
// errors naming the input.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type SharpFn from "sharp";
import type { Metadata } from "sharp";
import { ReimagineError } from "./errors.js";

// sharp (libvips) loads on first use: its native load costs about a second, which importing the
// library (the CLI's --version, --help and info) should not pay. image.ts uses this one too.
let sharpModule: typeof SharpFn | undefined;
export const sharp = ((...args: Parameters<typeof SharpFn>) => {
  sharpModule ??= createRequire(import.meta.url)("sharp") as typeof SharpFn;
  return sharpModule(...args);
}) as typeof SharpFn;

/** The first line of an error's message. */
export const oneLine = (e: unknown) =>
  String((e as Error)?.message ?? e)
    .split("\n")[0]
    .trim();

/** Formats an input may have (sharp's names; AVIF is "heif"). SVG is refused: rasterising untrusted
 *  vector files costs unbounded CPU, and a sketch exported as PNG works the same. */
export const INPUT_FORMATS: readonly string[] = ["png", "jpeg", "webp", "heif", "tiff", "gif"];

export interface OpenedImage {
  bytes: Buffer;
  meta: Metadata;
  /** The "not a supported image or damaged" error for a decode of these bytes that fails. */
  unreadable: (e: unknown) => ReimagineError;
}

/**
 * Reads a path (or takes bytes), probes the header, refuses more than `maxPixels` pixels. `noun` names the input in
 * errors: "image 'in.png'", "mask data".
 * @example const { bytes, meta } = await openImageInput("mask.png", "mask", 64_000_000)
 */
export async function openImageInput(input: string | Buffer, noun: string, maxPixels: number): Promise<OpenedImage> {
  const what = typeof input === "string" ? `${noun} '${input}'` : `${noun} data`;
  let bytes: Buffer;
  if (typeof input === "string") {
    try {
      bytes = await readFile(input);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "file not found; check the path" : code === "EISDIR" ? "it is a folder; pass an image file" : `${(e as Error).message}`;
      throw new ReimagineError(`Cannot read ${what}: ${why}`, "not_found", { cause: e });
    }
  } else bytes = input;
  const unreadable = (e: unknown) =>
    new ReimagineError(
      `Cannot read ${what}: not a supported image or the file is damaged (${oneLine(e)}); use a PNG, JPEG, WebP, AVIF, TIFF or GIF file`,
      "invalid_image",
      { cause: e },
    );
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw unreadable(e);
  }
  if (!INPUT_FORMATS.includes(meta.format ?? "")) {
    const name = meta.format === "svg" ? "SVG (a vector format)" : `the ${meta.format} format`;
    throw new ReimagineError(`Cannot read ${what}: ${name} is not supported; convert it to PNG, JPEG or WebP first`, "unsupported_format");
  }
  const [w, h] = [meta.width ?? 0, meta.height ?? 0];
  if (w * h > maxPixels) {
    throw new ReimagineError(
      `Cannot read ${what}: ${w}x${h} is ${((w * h) / 1e6).toFixed(1)} megapixels, over the limit of ${(maxPixels / 1e6).toFixed(1)}; downscale it first or raise maxPixels`,
      "image_too_large",
    );
  }
  return { bytes, meta, unreadable };
}
