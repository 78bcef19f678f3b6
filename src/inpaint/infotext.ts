// The mask settings of a run in A1111's infotext ("Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32,
// Masked content: fill, Mask mode: Inpaint not masked") and back, so PNG Info shows them and `--from` re-runs them.
// The mask picture itself is not stored (A1111 does not either). Ref: A1111 processing.py / infotext_utils.py.
import { INPAINTING_FILL } from "./a1111.js";
import { MASK_DEFAULTS, type MaskOptions, parseFill } from "./options.js";

/**
 * Infotext pairs of a run's mask (none without one). Defaults are written out, as A1111 does, so a reader sees them.
 * @example maskInfotext({ image: "m.png", area: "masked" }) // { "Mask blur": "4", "Inpaint area": "Only masked", "Masked area padding": "32" }
 */
export function maskInfotext(m: MaskOptions | undefined): Record<string, string> {
  if (!m) return {};
  const out: Record<string, string> = {};
  const blur = m.blur ?? MASK_DEFAULTS.blur;
  const [bx, by] = [m.blurX ?? blur, m.blurY ?? blur];
  if (bx === by) out["Mask blur"] = String(bx);
  else [out["Mask blur x"], out["Mask blur y"]] = [String(bx), String(by)];
  if ((m.area ?? MASK_DEFAULTS.area) === "masked") {
    out["Inpaint area"] = "Only masked";
    out["Masked area padding"] = String(m.padding ?? MASK_DEFAULTS.padding);
  }
  const fill = m.fill ?? MASK_DEFAULTS.fill;
  if (fill !== "original") out["Masked content"] = fill;
  if (m.invert) out["Mask mode"] = "Inpaint not masked";
  if (m.sketch !== undefined) out["Inpaint sketch"] = "True";
  if (m.overlay === false) out["Mask overlay"] = "False";
  return out;
}

/**
 * The mask settings an infotext records (its pairs, from parseInfotext), or undefined when it has none. A1111's own
 * files (with "Mask blur" and "Denoising strength" but no mask picture) are read the same way.
 * @example maskSettingsFromInfotext(parseInfotext(text).pairs) // { blur: 4, area: "masked", padding: 32 }
 */
export function maskSettingsFromInfotext(pairs: Map<string, string>): Omit<MaskOptions, "image" | "sketch" | "source"> | undefined {
  const keys = ["Mask blur", "Mask blur x", "Inpaint area", "Masked area padding", "Masked content", "Mask mode", "Mask overlay"];
  if (!keys.some((k) => pairs.has(k))) return undefined;
  const num = (k: string) => {
    const v = Number(pairs.get(k));
    return pairs.has(k) && Number.isFinite(v) ? v : undefined;
  };
  const out: Omit<MaskOptions, "image" | "sketch" | "source"> = {};
  const blur = num("Mask blur");
  if (blur !== undefined) out.blur = blur;
  const [bx, by] = [num("Mask blur x"), num("Mask blur y")];
  if (bx !== undefined && by !== undefined) [out.rules, out.blurX, out.blurY] = ["a1111", bx, by];
  out.area = pairs.get("Inpaint area") === "Only masked" ? "masked" : "whole";
  const pad = num("Masked area padding");
  if (pad !== undefined) out.padding = pad;
  const content = pairs.get("Masked content")?.toLowerCase();
  if (content && (INPAINTING_FILL as readonly string[]).includes(content)) out.fill = parseFill(content);
  if (pairs.get("Mask mode") === "Inpaint not masked") out.invert = true;
  if (pairs.get("Mask overlay") === "False") out.overlay = false;
  return out;
}
