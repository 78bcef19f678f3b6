// Where a mask comes from and the checks users expect before any model runs: a mask file (white = repaint; an RGBA
// file with transparency is read from its alpha, as A1111), the picture's own transparency (transparent = repaint,
// as OpenAI's images/edits), an OpenAI edits mask, an inpaint sketch; invert; a mask of another size; an all-black
// mask; the composite that brings the unmasked pixels back. Ref: A1111 create_binary_mask, OpenAI images/edits docs.
import { ReimagineError } from "../errors.js";
import { resizeImage } from "../image.js";
import type { DecodedPixels } from "../image-mask.js";
import type { RGBImage } from "../image-sheet.js";
import { createBinaryMask, inpaintSketch } from "./a1111.js";
import { applyOverlay, resizeGray } from "./mask-processor.js";
import { channel, gaussianBlur, invert, type GrayImage } from "./pil.js";

export type MaskSource =
  /** A mask image (CLI --mask, A1111 `mask`, native API): luma, white = repaint; RGBA with transparency: alpha, opaque = repaint. */
  | { kind: "file"; pixels: DecodedPixels }
  /** The input picture's transparency: transparent = repaint (partly transparent = partly). */
  | { kind: "alpha"; pixels: DecodedPixels }
  /** OpenAI images/edits `mask`: a PNG whose fully transparent pixels mark the area to edit. */
  | { kind: "openai"; pixels: DecodedPixels }
  /** A1111 inpaint sketch: strokes painted over the picture are the mask (and the new content). */
  | { kind: "sketch"; original: RGBImage; sketch: RGBImage; maskAlpha?: number; maskBlur?: number };

const hasAlpha = (p: DecodedPixels) => p.channels === 2 || p.channels === 4;

function transparencyMask(p: DecodedPixels, what: string): GrayImage {
  if (!hasAlpha(p)) {
    throw new ReimagineError(
      `${what} has no alpha channel, so no transparent area marks what to repaint; save it as a PNG with transparency or pass a black-and-white mask`,
    );
  }
  const alpha = channel(p, p.channels - 1);
  if (alpha.data.every((a) => a === 255)) {
    throw new ReimagineError(`${what} is fully opaque: erase the area to repaint (make it transparent) or pass a black-and-white mask`);
  }
  return invert(alpha);
}

/**
 * The mask (white = repaint) a source describes, at the source's size; `invert` swaps repaint and keep.
 * Sketches also return the picture to use (the strokes blended in, as A1111).
 * @example const { mask } = maskFromSource({ kind: "file", pixels: await decodePixels("mask.png") })
 */
export function maskFromSource(src: MaskSource, opts: { invert?: boolean } = {}): { mask: GrayImage; image?: RGBImage } {
  let mask: GrayImage;
  let image: RGBImage | undefined;
  switch (src.kind) {
    case "file":
      mask = createBinaryMask(src.pixels, true);
      break;
    case "alpha":
      mask = transparencyMask(src.pixels, "the picture");
      break;
    case "openai": {
      // OpenAI: "fully transparent areas (alpha zero) indicate where the image should be edited"
      const m = transparencyMask(src.pixels, "the mask");
      mask = { ...m, data: m.data.map((v) => (v === 255 ? 255 : 0)) };
      break;
    }
    case "sketch":
      ({ mask, image } = inpaintSketch(src.original, src.sketch, { maskAlpha: src.maskAlpha, maskBlur: src.maskBlur }));
      break;
  }
  return { mask: opts.invert ? invert(mask) : mask, image };
}

/**
 * A mask of another size than the picture. Same aspect ratio (within one mask pixel, e.g. drawn on a preview):
 * resized (Lanczos, as diffusers and A1111 resize masks) with a note. Another aspect ratio is refused by default,
 * because stretching it would move the marked area; `stretch: true` resizes anyway (A1111 compatibility, it stretches
 * every mask to the processing size).
 * @example const { mask, note } = await fitMask(mask, 1024, 768)
 */
export async function fitMask(mask: GrayImage, width: number, height: number, opts: { stretch?: boolean } = {}): Promise<{ mask: GrayImage; note?: string }> {
  if (mask.width === width && mask.height === height) return { mask };
  const sameAspect = Math.abs((mask.height * width) / mask.width - height) <= Math.max(1, width / mask.width);
  if (!sameAspect && !opts.stretch) {
    throw new ReimagineError(
      `the mask is ${mask.width}x${mask.height} but the picture is ${width}x${height} (another aspect ratio, so the marked area would move); make the mask the picture's size`,
      "mask_size",
    );
  }
  const note = `the mask is ${mask.width}x${mask.height}, the picture ${width}x${height}: the mask was resized to fit`;
  return { mask: await resizeGray(mask, width, height), note };
}

/** diffusers' mask_processor.blur(mask, blurFactor) = PIL GaussianBlur(blurFactor); 0 leaves the mask as it is. */
export function blurMask(mask: GrayImage, blurFactor: number): GrayImage {
  if (!(Number.isFinite(blurFactor) && blurFactor >= 0 && blurFactor <= 256)) {
    throw new ReimagineError(`mask blur must be a number of pixels 0..256, got ${blurFactor}`);
  }
  return blurFactor === 0 ? mask : gaussianBlur(mask, blurFactor);
}

/**
 * Why a mask repaints nothing, or undefined when it repaints something. The pipeline binarises at 50 % (x/255 >= 0.5),
 * so a mask with no pixel >= 128 repaints nothing: the caller returns the input unchanged and prints this reason.
 * Pass the mask before blurring as `unblurred` to tell "all black" from "strokes too thin for the blur".
 * @example const why = emptyMaskReason(finalMask, drawnMask); if (why) return { images: [input], note: why }
 */
export function emptyMaskReason(mask: GrayImage, unblurred?: GrayImage): string | undefined {
  if (mask.data.some((v) => v >= 128)) return undefined;
  if (mask.data.every((v) => v === 0) && (!unblurred || unblurred.data.every((v) => v === 0))) {
    return "the mask is all black: there is nothing to repaint, so the picture is returned unchanged";
  }
  if (unblurred?.data.some((v) => v >= 128)) {
    return "after the mask blur no pixel of the mask is at least 50% white, so nothing would be repainted: lower the mask blur or paint wider strokes";
  }
  return "no pixel of the mask is at least 50% white (mid-gray), so nothing is repainted: paint the area to repaint in white";
}

/**
 * "Pixels outside the mask come back unchanged": the generated picture composited over the original through the
 * mask (diffusers apply_overlay: original where the mask is 0, generated where 255, blended between). The original
 * and the mask are resized to the generated size first when they differ (then "unchanged" means resized).
 * @example const out = await overlayOriginal(result.images[0], input, blurredMask)
 */
export async function overlayOriginal(generated: RGBImage, original: RGBImage, mask: GrayImage): Promise<RGBImage> {
  const { width, height } = generated;
  const orig = original.width === width && original.height === height ? original : await resizeImage(original, width, height, "just-resize");
  const m = mask.width === width && mask.height === height ? mask : await resizeGray(mask, width, height);
  return applyOverlay(m, orig, generated);
}
