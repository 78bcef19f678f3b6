// Inpainting building blocks: mask sources and checks, diffusers' mask preprocessing and paste-back, the latent
// pieces of the inpaint denoise loop, AUTOMATIC1111's mask handling. The pipeline step that uses them is built
// on the pipeline contract (see docs/inpainting-design.md). Ref: diffusers StableDiffusionInpaintPipeline.
export { blurMask, emptyMaskReason, fitMask, maskFromSource, overlayOriginal, type MaskSource } from "./mask-source.js";
export {
  applyOverlay,
  getCropRegion,
  maskImage,
  maskToLatents,
  preprocessImage,
  preprocessInpaint,
  preprocessMask,
  repeatBatch,
  resizeGray,
  type InpaintPreprocessed,
  type InpaintPreprocessOptions,
} from "./mask-processor.js";
export {
  blendLatents,
  checkInpaintUnetChannels,
  drawOrder,
  initialLatents,
  inpaintModelInput,
  legacyInpaintBlend,
  type DrawRole,
  type LatentShape,
} from "./latents.js";
export {
  A1111_INPAINT_DEFAULTS,
  INPAINTING_FILL,
  a1111Fill,
  a1111MaskBlur,
  a1111PrepareMask,
  createBinaryMask,
  inpaintSketch,
  latentNoiseFill,
  latentNothingFill,
  parseInpaintingFill,
  type A1111InpaintOptions,
  type A1111Mask,
  type InpaintingFill,
} from "./a1111.js";
export type { Box, GrayImage, RGBAImage } from "./pil.js";
export { MASK_DEFAULTS, parseFill, resolveMaskOptions, type InpaintArea, type MaskOptions, type MaskPicture, type ResolvedMaskOptions } from "./options.js";
export { maskInfotext, maskSettingsFromInfotext } from "./infotext.js";
export { decodeMaskPicture, decodeMaskSource, prepareMask, type PreparedMask } from "./prepare.js";
export { inpaintExtension } from "./extension.js";
