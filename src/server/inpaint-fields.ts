// The mask fields of both APIs, parsed into the run's MaskOptions (422 naming the field on bad input): A1111's
// `mask`, `mask_blur`, `mask_blur_x/y`, `inpainting_fill`, `inpaint_full_res`, `inpaint_full_res_padding`,
// `inpainting_mask_invert` with A1111's defaults and rules; the native API's `mask`, `maskBlur`, `inpaintArea`,
// `inpaintPadding`, `maskInvert`, `fill`, `overlay`. Ref: A1111 modules/api/models.py, processing.py.
import { A1111_INPAINT_DEFAULTS, type MaskOptions, parseInpaintingFill, type ReimagineError } from "../index.js";
import { decodeBase64Image, inspectUpload, type Limits } from "./http.js";
import { type Fields, optBoolean, optNumber, optString, ValidationError } from "./validate.js";

/**
 * Mask bytes checked from their header, as the input is: PNG, JPEG or WebP, within the pixel limit. The decode
 * happens in the model process when the job runs.
 */
export async function checkMaskUpload(bytes: Buffer, field: string, limits: Limits): Promise<Buffer> {
  await inspectUpload(bytes, field, limits); // the same checks as the picture's (format, header, pixel limit)
  return bytes;
}

/** A1111's int-or-bool fields (inpainting_mask_invert is 0/1; clients also send true/false). */
function flag(body: Fields, key: string, dflt: boolean): boolean {
  const v = body[key];
  if (v === undefined || v === null || v === "") return dflt;
  if (v === 0 || v === 1) return v === 1;
  const b = optBoolean(body, key);
  return b ?? dflt;
}

/**
 * The A1111 img2img mask (undefined without `mask`): A1111's defaults (mask_blur 4, inpainting_fill 0 = fill,
 * inpaint_full_res true with padding 0, as the API model declares them) and its rules (OpenCV blur, the mask
 * stretched to the picture, whole-picture overlay through the doubled mask). Fields a request sends with every call
 * (mask_blur, inpainting_fill, ...) mean nothing without a mask, as in A1111; fields we cannot honour are 422.
 * @example const mask = await a1111Mask(body, limits) // { image: <bytes>, rules: "a1111", blurX: 4, ... }
 */
export async function a1111Mask(body: Fields, limits: Limits): Promise<MaskOptions | undefined> {
  const override = typeof body.override_settings === "object" && body.override_settings !== null ? (body.override_settings as Fields) : {};
  const weight = optNumber(override, "inpainting_mask_weight", { min: 0, max: 1 });
  if (body.mask === undefined || body.mask === null || body.mask === "") return undefined;
  if (weight !== undefined && weight !== 1) {
    throw new ValidationError(
      "inpainting_mask_weight",
      "inpainting_mask_weight other than 1 (a partly masked conditioning image) is not supported: leave it at 1",
    );
  }
  if (body.latent_mask !== undefined && body.latent_mask !== null) {
    throw new ValidationError("latent_mask", "latent_mask (a separate mask for the latent blend) is not supported: send one mask in 'mask'");
  }
  if (body.mask_round === false) throw new ValidationError("mask_round", "mask_round false (soft alpha masks) is not supported: leave it true");
  const image = await checkMaskUpload(decodeBase64Image(body.mask, "mask"), "mask", limits);
  const blur = optNumber(body, "mask_blur", { min: 0, max: 64, int: true });
  const blurX = optNumber(body, "mask_blur_x", { min: 0, max: 64, int: true }) ?? A1111_INPAINT_DEFAULTS.mask_blur_x;
  const blurY = optNumber(body, "mask_blur_y", { min: 0, max: 64, int: true }) ?? A1111_INPAINT_DEFAULTS.mask_blur_y;
  const fillRaw = body.inpainting_fill ?? A1111_INPAINT_DEFAULTS.inpainting_fill;
  let fill: MaskOptions["fill"];
  try {
    fill = parseInpaintingFill(fillRaw as number | string);
  } catch (e) {
    throw new ValidationError("inpainting_fill", (e as ReimagineError).message);
  }
  return {
    image,
    rules: "a1111",
    // A1111: a `mask_blur` given sets both axes
    blurX: blur ?? blurX,
    blurY: blur ?? blurY,
    fill,
    area: flag(body, "inpaint_full_res", A1111_INPAINT_DEFAULTS.inpaint_full_res) ? "masked" : "whole",
    padding: optNumber(body, "inpaint_full_res_padding", { min: 0, max: 4096, int: true }) ?? A1111_INPAINT_DEFAULTS.inpaint_full_res_padding,
    invert: flag(body, "inpainting_mask_invert", false),
  };
}

/** txt2img has no picture to inpaint: a mask there is an error, never dropped. */
export function refuseMask(body: Fields, endpoint: string): void {
  if (body.mask !== undefined && body.mask !== null && body.mask !== "") {
    throw new ValidationError("mask", `${endpoint} takes no mask (there is no picture to inpaint): send the picture and the mask to /sdapi/v1/img2img`);
  }
}

/** First present key among aliases (camelCase, snake_case). */
const alias = (f: Fields, ...keys: string[]): string => keys.find((k) => f[k] !== undefined && f[k] !== null) ?? keys[0];

/**
 * The native API's mask: `mask` (a multipart file or base64; white = repaint), or `maskSource: "alpha"` (the picture's
 * transparent pixels), with `maskBlur`, `inpaintArea` (whole | masked), `inpaintPadding`, `maskInvert`, `fill`
 * (original | fill | latent-noise | latent-nothing) and `overlay` (default true). Settings without a mask are 422.
 */
export async function nativeMask(f: Fields, maskBytes: Buffer | undefined, imageBytes: Buffer, limits: Limits): Promise<MaskOptions | undefined> {
  const keys = {
    blur: alias(f, "maskBlur", "mask_blur"),
    area: alias(f, "inpaintArea", "inpaint_area"),
    padding: alias(f, "inpaintPadding", "inpaint_padding"),
    invert: alias(f, "maskInvert", "mask_invert"),
    fill: "fill",
    overlay: "overlay",
    source: alias(f, "maskSource", "mask_source"),
  };
  const source = optString(f, keys.source, { max: 20 });
  if (source !== undefined && source !== "alpha" && source !== "image")
    throw new ValidationError(keys.source, `${keys.source} must be "image" or "alpha" (got "${source}")`);
  const settings = Object.values(keys).filter((k) => f[k] !== undefined && f[k] !== null && f[k] !== "");
  if (!maskBytes && source !== "alpha") {
    if (settings.length) throw new ValidationError(settings[0], `${settings[0]} needs a mask: send 'mask' (white = repaint) or maskSource "alpha"`);
    return undefined;
  }
  if (maskBytes && source === "alpha") throw new ValidationError(keys.source, `give one mask source: the 'mask' image or maskSource "alpha", not both`);
  const area = optString(f, keys.area, { max: 20 });
  if (area !== undefined && area !== "whole" && area !== "masked")
    throw new ValidationError(keys.area, `${keys.area} must be "whole" or "masked" (got "${area}")`);
  let fill: MaskOptions["fill"];
  const fillText = optString(f, "fill", { max: 20 });
  if (fillText !== undefined) {
    try {
      fill = parseInpaintingFill(fillText.replace(/[-_]/g, " "));
    } catch {
      throw new ValidationError("fill", `fill must be original, fill, latent-noise or latent-nothing (got "${fillText}")`);
    }
  }
  const image = maskBytes ? await checkMaskUpload(maskBytes, "mask", limits) : imageBytes;
  return {
    image,
    ...(source === "alpha" ? { source: "alpha" as const } : {}),
    blur: optNumber(f, keys.blur, { min: 0, max: 64 }),
    area: area as MaskOptions["area"],
    padding: optNumber(f, keys.padding, { min: 0, max: 4096, int: true }),
    invert: optBoolean(f, keys.invert),
    fill,
    overlay: optBoolean(f, "overlay"),
  };
}
