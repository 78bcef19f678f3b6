// The run option of inpainting (`Img2ImgOptions.mask`): plain data only, because runs are structured-cloned into
// the inference child process. Defaults are A1111's UI defaults (mask blur 4, whole picture, padding 32, original
// content, overlay on); `{ blur: 0, overlay: false }` gives diffusers' StableDiffusionInpaintPipeline output exactly.
import { ReimagineError } from "../errors.js";
import type { RGBImage } from "../image-sheet.js";
import type { DecodedPixels } from "../image-mask.js";
import { INPAINTING_FILL, type InpaintingFill } from "./a1111.js";
import type { GrayImage } from "./pil.js";

/** A mask or sketch picture: decoded pixels (gray, RGB or RGBA by channel count), a file path or encoded bytes. */
export type MaskPicture = DecodedPixels | GrayImage | RGBImage | string | Buffer | Uint8Array;

export type InpaintArea = "whole" | "masked";

/**
 * What to repaint and how. Exactly one mask source: `image` (white = repaint; an RGBA file with transparency is read
 * from its alpha, opaque = repaint), `source: "alpha"` (the input picture's transparency: transparent = repaint),
 * `source: "openai"` with `image` (OpenAI images/edits: the mask's fully transparent pixels are edited) or `sketch`
 * (A1111 inpaint sketch: the input picture with strokes painted over it; the strokes are the mask and the new content).
 * @example await pipe.run({ image: "photo.png", prompt: "a red hat", strength: 0.75, mask: { image: "hat-mask.png", blur: 4 } })
 */
export interface MaskOptions {
  image?: MaskPicture;
  /** How to read the mask: "image" (default), "alpha" (the transparency of the run's picture, or of `image` when it
   *  holds the picture's pixels), "openai" (`image`'s fully transparent pixels). */
  source?: "image" | "alpha" | "openai";
  sketch?: MaskPicture;
  /** A1111 inpaint sketch "Mask transparency" (percent): dims the sketch mask. Default 0. */
  sketchMaskAlpha?: number;
  /** Repaint what is NOT masked (A1111 "Inpaint not masked"). */
  invert?: boolean;
  /** Mask rules: "diffusers" (default): `blur` = mask_processor.blur (PIL GaussianBlur); "a1111": A1111 img2img's
   *  (OpenCV blur of blurX / blurY, alpha masks rounded at 128, whole-picture overlay through the doubled mask). */
  rules?: "diffusers" | "a1111";
  /** Mask blur in pixels (Gaussian standard deviation). Default 4. "a1111" rules: sets blurX and blurY. */
  blur?: number;
  blurX?: number;
  blurY?: number;
  /** "masked" = diffusers padding_mask_crop / A1111 "Only masked": the mask's region (plus `padding`) is processed at
   *  the output size and pasted back. Default "whole". */
  area?: InpaintArea;
  /** Pixels around the mask's region with area "masked". Default 32. */
  padding?: number;
  /** A1111 "Masked content" (inpainting_fill): what the masked area starts from when strength < 1. Default "original". */
  fill?: InpaintingFill;
  /** Composite the result over the input through the (blurred) mask, so unmasked pixels come back unchanged.
   *  Default true; false gives the pipeline's raw output (with area "masked": the processed crop). */
  overlay?: boolean;
}

/** The defaults every front end shows (A1111's img2img UI). */
export const MASK_DEFAULTS = {
  blur: 4,
  area: "whole" as InpaintArea,
  padding: 32,
  fill: "original" as InpaintingFill,
  overlay: true,
  rules: "diffusers" as const,
};

/** MaskOptions with every default applied and every field checked. */
export interface ResolvedMaskOptions {
  rules: "diffusers" | "a1111";
  blurX: number;
  blurY: number;
  invert: boolean;
  area: InpaintArea;
  padding: number;
  fill: InpaintingFill;
  overlay: boolean;
}

const wholeNumber = (v: unknown, name: string, max: number): number => {
  if (!(typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max)) {
    throw new ReimagineError(`${name} must be a whole number of pixels 0..${max}, got ${JSON.stringify(v)}`, "invalid_mask");
  }
  return v;
};

/** The fill mode named by A1111 (0..3 or "latent noise") or by our CLI ("latent-noise"). */
export function parseFill(v: string | number): InpaintingFill {
  const name = typeof v === "string" ? v.trim().toLowerCase().replace(/[-_]/g, " ") : v;
  if (typeof name === "string" && /^\d$/.test(name)) return parseFill(Number(name));
  if (typeof name === "number" && Number.isInteger(name) && name >= 0 && name < INPAINTING_FILL.length) return INPAINTING_FILL[name];
  const hit = INPAINTING_FILL.find((f) => f === name);
  if (!hit)
    throw new ReimagineError(`fill must be original, fill, latent-noise or latent-nothing (A1111 1, 0, 2, 3), got ${JSON.stringify(v)}`, "invalid_mask");
  return hit;
}

/** Applies the defaults and checks every field (one-line errors naming the field). */
export function resolveMaskOptions(m: MaskOptions): ResolvedMaskOptions {
  const rules = m.rules ?? MASK_DEFAULTS.rules;
  if (rules !== "diffusers" && rules !== "a1111")
    throw new ReimagineError(`mask rules must be "diffusers" or "a1111", got ${JSON.stringify(rules)}`, "invalid_mask");
  const blur = m.blur ?? MASK_DEFAULTS.blur;
  if (!(typeof blur === "number" && Number.isFinite(blur) && blur >= 0 && blur <= 64))
    throw new ReimagineError(`mask blur must be a number of pixels 0..64, got ${JSON.stringify(blur)}`, "invalid_mask");
  const area = m.area ?? MASK_DEFAULTS.area;
  if (area !== "whole" && area !== "masked") throw new ReimagineError(`inpaint area must be "whole" or "masked", got ${JSON.stringify(area)}`, "invalid_mask");
  const sources = [m.image !== undefined && m.source !== "alpha", m.source === "alpha", m.sketch !== undefined].filter(Boolean).length;
  if (sources !== 1) {
    throw new ReimagineError(
      sources === 0
        ? 'a mask needs a source: a mask image, the picture\'s transparency (source "alpha") or a sketch'
        : "give one mask source: a mask image, the picture's transparency or a sketch, not several",
      "invalid_mask",
    );
  }
  if (m.source === "openai" && m.image === undefined) throw new ReimagineError('mask source "openai" needs the mask image', "invalid_mask");
  const res: ResolvedMaskOptions = {
    rules,
    blurX: rules === "a1111" ? wholeNumber(m.blurX ?? blur, "mask blur x", 64) : blur,
    blurY: rules === "a1111" ? wholeNumber(m.blurY ?? blur, "mask blur y", 64) : blur,
    invert: m.invert ?? false,
    area,
    padding: wholeNumber(m.padding ?? MASK_DEFAULTS.padding, "inpaint padding", 4096),
    fill: parseFill(m.fill ?? MASK_DEFAULTS.fill),
    overlay: m.overlay ?? MASK_DEFAULTS.overlay,
  };
  if (rules === "diffusers" && (m.blurX !== undefined || m.blurY !== undefined)) {
    throw new ReimagineError('separate x/y mask blur is A1111\'s: use rules "a1111", or one blur', "invalid_mask");
  }
  return res;
}
