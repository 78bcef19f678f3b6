// The inpainting options of `reimagine <input>` and `reimagine batch`: --mask, --mask-blur, --inpaint-area,
// --inpaint-padding, --mask-invert, --fill, --no-overlay, --mask-from-alpha, --sketch; their parsing (one-line
// errors naming the flag) and help lines. The run option they become is built in mask.ts.
import { type InpaintArea, type InpaintingFill, MASK_DEFAULTS, parseFill, ReimagineError } from "../index.js";

/** Inpainting flags as given (undefined = not given, so --from settings can fill them). */
export interface MaskFlags {
  /** --mask FILE: white = repaint (an RGBA file with transparency: opaque = repaint). */
  file?: string;
  /** --mask-from-alpha: the input's transparent pixels are repainted. */
  fromAlpha?: boolean;
  /** --sketch FILE: the input with strokes painted over it (A1111 inpaint sketch). */
  sketch?: string;
  blur?: number;
  area?: InpaintArea;
  padding?: number;
  invert?: boolean;
  fill?: InpaintingFill;
  /** false with --no-overlay. */
  overlay?: boolean;
}

export const MASK_OPTIONS = {
  mask: { type: "string" },
  "mask-from-alpha": { type: "boolean" },
  sketch: { type: "string" },
  "mask-blur": { type: "string" },
  "inpaint-area": { type: "string" },
  "inpaint-padding": { type: "string" },
  "mask-invert": { type: "boolean" },
  fill: { type: "string" },
  "no-overlay": { type: "boolean" },
} as const;

type MaskValues = { [K in keyof typeof MASK_OPTIONS]?: (typeof MASK_OPTIONS)[K]["type"] extends "string" ? string : boolean };

function pixels(flag: string, v: string | undefined, max: number, integer: boolean): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(x) || x < 0 || x > max || (integer && !Number.isInteger(x))) {
    throw new ReimagineError(`--${flag} expects ${integer ? "a whole number" : "a number"} of pixels from 0 to ${max} (got '${v}')`, "usage");
  }
  return x;
}

/** The inpainting flags of parsed values; undefined when none is given. */
export function parseMaskFlags(v: MaskValues): MaskFlags | undefined {
  const given = Object.keys(MASK_OPTIONS).some((k) => v[k as keyof MaskValues] !== undefined);
  if (!given) return undefined;
  const area = v["inpaint-area"]?.trim().toLowerCase();
  if (area !== undefined && area !== "whole" && area !== "masked")
    throw new ReimagineError(`--inpaint-area must be whole or masked (got '${v["inpaint-area"]}')`, "usage");
  let fill: InpaintingFill | undefined;
  if (v.fill !== undefined) {
    try {
      fill = parseFill(v.fill);
    } catch {
      throw new ReimagineError(`--fill must be one of original, fill, latent-noise, latent-nothing (got '${v.fill}')`, "usage");
    }
  }
  const sources = [v.mask !== undefined, v["mask-from-alpha"] === true, v.sketch !== undefined].filter(Boolean).length;
  if (sources > 1) throw new ReimagineError("give one mask source: --mask FILE, --mask-from-alpha or --sketch FILE", "usage");
  return {
    file: v.mask,
    fromAlpha: v["mask-from-alpha"],
    sketch: v.sketch,
    blur: pixels("mask-blur", v["mask-blur"], 64, false),
    area: area as InpaintArea | undefined,
    padding: pixels("inpaint-padding", v["inpaint-padding"], 4096, true),
    invert: v["mask-invert"],
    fill,
    overlay: v["no-overlay"] ? false : undefined,
  };
}

export const MASK_HELP = `Inpainting (repaint only part of the picture):
      --mask FILE               white = repaint, black = keep (an RGBA mask with transparency: opaque = repaint)
      --mask-from-alpha         repaint the input's transparent pixels
      --sketch FILE             inpaint sketch: the input with colour strokes painted over it (the strokes are repainted)
      --mask-invert             repaint what is NOT masked
      --mask-blur N             soften the mask edge by N pixels (default ${MASK_DEFAULTS.blur}; 0 = hard edge)
      --inpaint-area A          whole (default) | masked: process only the mask's region, at full size, and paste it back
      --inpaint-padding N       pixels around the region with --inpaint-area masked (default ${MASK_DEFAULTS.padding})
      --fill MODE               what the masked area starts from: original (default) | fill | latent-noise | latent-nothing
      --no-overlay              keep the raw output (by default pixels outside the mask come back unchanged)
  Inpainting models (9-channel UNet, e.g. sd-v1-5-inpainting) work best at --strength 1; any model works with a mask.`;
