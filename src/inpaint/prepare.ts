// Everything inpainting decides from the picture and the mask before a model runs: decode the mask source, fit it
// to the picture, invert and blur it (diffusers' mask_processor.blur or A1111's OpenCV blur), the "only masked"
// crop region, the mask at the processing size, the overlay mask, and whether anything is repainted at all.
// Ref: diffusers StableDiffusionInpaintPipeline.__call__ 4.-5. (padding_mask_crop), A1111 StableDiffusionProcessingImg2Img.init.
import { ReimagineError } from "../errors.js";
import { loadImage, type ResizeMode, resizeImage } from "../image.js";
import { type DecodedPixels, decodePixels } from "../image-mask.js";
import type { RGBImage } from "../image-sheet.js";
import { a1111PrepareMask } from "./a1111.js";
import { applyOverlay, getCropRegion, resizeGray } from "./mask-processor.js";
import { blurMask, emptyMaskReason, fitMask, maskFromSource } from "./mask-source.js";
import type { MaskOptions, MaskPicture, ResolvedMaskOptions } from "./options.js";
import { type Box, crop, type GrayImage, invert } from "./pil.js";

/** A mask picture as pixels with its channels (files and bytes decoded; `what` names it in errors). */
export async function decodeMaskPicture(p: MaskPicture, what: string): Promise<DecodedPixels> {
  if (typeof p === "string" || Buffer.isBuffer(p)) return decodePixels(p, what);
  if (p instanceof Uint8Array) return decodePixels(Buffer.from(p.buffer, p.byteOffset, p.byteLength), what); // bytes that crossed a structured clone
  if ("channels" in p) return p;
  const n = p.width * p.height;
  const channels = p.data.length / n;
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    throw new ReimagineError(`${what}: ${p.data.length} bytes for ${p.width}x${p.height} pixels is not gray, RGB or RGBA`, "invalid_image");
  }
  return { width: p.width, height: p.height, channels, data: p.data };
}

/** The mask source of a run, decoded before anything loads (bad files fail early). */
export type DecodedMaskSource =
  | { kind: "file" | "openai"; pixels: DecodedPixels }
  | { kind: "alpha"; pixels: DecodedPixels }
  | { kind: "sketch"; sketch: RGBImage }
  | { kind: "everything" };

/** Decodes the source named by MaskOptions; `input` is the run's picture (its alpha for source "alpha", unless the
 *  mask's `image` holds the picture's decoded pixels). */
export async function decodeMaskSource(m: MaskOptions, input: RGBImage | string | Buffer): Promise<DecodedMaskSource> {
  if (m.source === "alpha") {
    if (m.image !== undefined) return { kind: "alpha", pixels: await decodeMaskPicture(m.image, "picture") }; // the picture, decoded with its alpha
    if (typeof input !== "string" && !Buffer.isBuffer(input)) {
      throw new ReimagineError(
        "the picture was given as decoded RGB pixels, which have no alpha channel: pass its file or bytes to use its transparency as the mask",
        "invalid_mask",
      );
    }
    return { kind: "alpha", pixels: await decodePixels(input, "picture") };
  }
  if (m.sketch !== undefined) {
    if (typeof m.sketch === "string" || Buffer.isBuffer(m.sketch)) return { kind: "sketch", sketch: await loadImage(m.sketch) };
    return { kind: "sketch", sketch: flattenOnWhite(await decodeMaskPicture(m.sketch, "sketch")) };
  }
  return { kind: m.source === "openai" ? "openai" : "file", pixels: await decodeMaskPicture(m.image!, "mask") };
}

/** Decoded pixels as RGB: gray expanded, alpha composited onto white (as loadImage flattens a sketch's transparency). */
function flattenOnWhite(p: DecodedPixels): RGBImage {
  const n = p.width * p.height;
  const out = new Uint8Array(3 * n);
  const c = p.channels;
  for (let i = 0; i < n; i++) {
    const a = c === 2 || c === 4 ? p.data[i * c + c - 1] : 255;
    for (let k = 0; k < 3; k++) {
      const v = p.data[i * c + (c >= 3 ? k : 0)];
      out[3 * i + k] = Math.round((v * a + 255 * (255 - a)) / 255);
    }
  }
  return { width: p.width, height: p.height, data: out };
}

/** What the inpainting steps need, decided before the model runs. */
export interface PreparedMask {
  /** The picture to inpaint at its own size (the input, or the sketch composited over it). */
  picture: RGBImage;
  /** The mask at the processing size (cropped to the region with "only masked"), 0..255, not binarised. */
  processMask: GrayImage;
  /** The mask the overlay composites with: at the picture's size with a crop region, else at the processing size. */
  overlayMask: GrayImage;
  /** "Only masked": the picture's region that is processed and pasted back. */
  cropRegion?: Box;
  /** How the picture is resized to the processing size. */
  resizeMode: ResizeMode;
  notes: string[];
  /** Set when nothing would be repainted: the reason (the caller returns the input unchanged). */
  unchanged?: string;
}

const white = (w: number, h: number): GrayImage => ({ width: w, height: h, data: new Uint8Array(w * h).fill(255) });

/**
 * Decides the mask for a picture `original` processed at width x height.
 * @example const p = await prepareMask(src, photo, 512, 512, resolveMaskOptions({ image: "m.png" }))
 */
export async function prepareMask(
  src: DecodedMaskSource,
  original: RGBImage,
  width: number,
  height: number,
  o: ResolvedMaskOptions & { resizeMode?: ResizeMode; sketchMaskAlpha?: number },
): Promise<PreparedMask> {
  const notes: string[] = [];
  let picture = original;
  let drawn: GrayImage;
  switch (src.kind) {
    case "everything":
      drawn = white(original.width, original.height);
      break;
    case "sketch": {
      const s = maskFromSource({ kind: "sketch", original, sketch: src.sketch, maskAlpha: o.sketchMaskAlpha, maskBlur: o.blurX });
      drawn = s.mask;
      picture = s.image!;
      break;
    }
    default:
      drawn = maskFromSource({ kind: src.kind, pixels: src.pixels }).mask;
  }
  if (drawn.width !== original.width || drawn.height !== original.height) {
    if (src.kind === "openai") {
      throw new ReimagineError(
        `the mask is ${drawn.width}x${drawn.height} but the image is ${original.width}x${original.height}; OpenAI's images/edits needs a mask of the image's size`,
        "mask_size",
      );
    }
    const fit = await fitMask(drawn, original.width, original.height, { stretch: o.rules === "a1111" });
    drawn = fit.mask;
    if (fit.note) notes.push(fit.note);
  }
  const resizeMode = o.resizeMode ?? "just-resize";
  const inverted = o.invert ? invert(drawn) : drawn;
  if (o.rules === "a1111") {
    const a = await a1111PrepareMask({ ...inverted, channels: 1 }, width, height, {
      maskBlurX: o.blurX,
      maskBlurY: o.blurY,
      fullRes: o.area === "masked",
      fullResPadding: o.padding,
      resizeMode,
    });
    if (a.note) notes.push(a.note);
    const unchanged = emptyMaskReason(a.mask, inverted);
    return {
      picture,
      processMask: a.mask,
      overlayMask: a.maskForOverlay,
      cropRegion: a.cropRegion,
      resizeMode: a.cropRegion ? "resize-and-fill" : resizeMode,
      notes,
      unchanged,
    };
  }
  const blurred = blurMask(inverted, o.blurX);
  const unchanged = emptyMaskReason(blurred, inverted);
  if (unchanged) return { picture, processMask: blurred, overlayMask: blurred, resizeMode, notes, unchanged };
  // diffusers: crops_coords = get_crop_region(mask_image, width, height, padding_mask_crop) on the mask as passed
  const cropRegion = o.area === "masked" ? getCropRegion(blurred, width, height, o.padding) : undefined;
  const processMask = cropRegion
    ? await resizeGray(crop(blurred, cropRegion), width, height, "resize-and-fill")
    : await resizeGray(blurred, width, height, resizeMode);
  const overlayMask = cropRegion ? blurred : processMask;
  return { picture, processMask, overlayMask, cropRegion, resizeMode: cropRegion ? "resize-and-fill" : resizeMode, notes };
}

/** The picture at the processing size, as the pipeline encodes it (the region's crop with "only masked"). */
export async function processingPicture(p: PreparedMask, width: number, height: number): Promise<RGBImage> {
  return resizeImage(p.cropRegion ? crop(p.picture, p.cropRegion) : p.picture, width, height, p.resizeMode);
}

/**
 * The result as users expect it: "only masked" pastes the generated crop back into the picture through the mask
 * (diffusers apply_overlay, which A1111's paste-back equals); the whole picture composites the generated picture over
 * the picture at the processing size through the overlay mask, so unmasked pixels come back unchanged.
 */
export async function overlayResult(p: PreparedMask, generated: RGBImage): Promise<RGBImage> {
  if (p.cropRegion) return applyOverlay(p.overlayMask, p.picture, generated, p.cropRegion);
  return applyOverlay(p.overlayMask, await processingPicture(p, generated.width, generated.height), generated);
}
