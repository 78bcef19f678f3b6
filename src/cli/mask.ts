// The inpainting run option from CLI flags: the mask file decoded before the model loads (a bad mask is reported
// first), `name.mask.png` beside `name.png` in batch folders, and the mask settings an earlier output's metadata
// gives to `--from`.
import { existsSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { decodePixels, type MaskOptions, maskSettingsFromInfotext, ReimagineError } from "../index.js";
import type { MaskFlags } from "./args-mask.js";

/** Batch: `photo.mask.png` (any input extension) is the mask of `photo.png`, never an input itself. */
export const isMaskFile = (name: string): boolean => /\.mask\.[^.]+$/i.test(name);

/** The mask file of a batch input, when one lies beside it. */
export function batchMaskFile(inDir: string, name: string): string | undefined {
  const stem = basename(name, extname(name));
  for (const ext of [".png", ".webp", ".jpg", ".jpeg", ".PNG"]) {
    const p = join(inDir, `${stem}.mask${ext}`);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * The run's `mask` option, or undefined for plain img2img. `maskFile` overrides --mask (a batch sidecar). Files are
 * decoded here, so a missing or damaged mask fails before the model loads, and plain pixels cross to the worker.
 * @example await maskRunOption(flags.mask, "photo.png") // { image: { width, height, channels, data }, blur: 4, ... }
 */
export async function maskRunOption(
  flags: MaskFlags | undefined,
  inputPath: string,
  opts: { maskFile?: string; maxPixels?: number; batch?: boolean } = {},
): Promise<MaskOptions | undefined> {
  const { maskFile, maxPixels } = opts;
  const file = maskFile ?? flags?.file;
  if (!flags && !file) return undefined;
  const f = flags ?? {};
  if (!file && !f.fromAlpha && !f.sketch) {
    if (opts.batch) return undefined; // batch: mask settings apply to the images that have a name.mask.png
    throw new ReimagineError(
      "mask settings were given (--mask-blur, --inpaint-area, --fill, ...) but no mask: add --mask FILE, --mask-from-alpha or --sketch FILE",
      "usage",
    );
  }
  const settings = { blur: f.blur, area: f.area, padding: f.padding, invert: f.invert, fill: f.fill, overlay: f.overlay };
  if (f.sketch && !maskFile) return { ...settings, sketch: await decodePixels(f.sketch, `sketch '${f.sketch}'`, maxPixels) };
  if (f.fromAlpha && !maskFile) return { ...settings, source: "alpha", image: await decodePixels(inputPath, `input '${inputPath}'`, maxPixels) };
  return { ...settings, image: await decodePixels(file!, `mask '${file}'`, maxPixels) };
}

/**
 * --from: the mask settings stored in the earlier output fill the flags not given. The mask picture is not stored, so
 * a note says to give --mask again when the flags have no mask source.
 */
export function maskFlagsFrom(flags: MaskFlags | undefined, pairs: Map<string, string>): { mask?: MaskFlags; note?: string } {
  const stored = maskSettingsFromInfotext(pairs);
  if (!stored) return { mask: flags };
  const merged: MaskFlags = {
    ...flags,
    blur: flags?.blur ?? stored.blur ?? stored.blurX,
    area: flags?.area ?? stored.area,
    padding: flags?.padding ?? stored.padding,
    invert: flags?.invert ?? stored.invert,
    fill: flags?.fill ?? stored.fill,
    overlay: flags?.overlay ?? stored.overlay,
  };
  const hasSource = flags?.file !== undefined || flags?.fromAlpha || flags?.sketch !== undefined;
  return hasSource
    ? { mask: merged }
    : {
        mask: flags,
        note: "--from: that image was inpainted; its mask is not stored in the metadata, so pass --mask FILE to inpaint again (without it the whole picture is repainted)",
      };
}
