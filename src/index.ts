// Public API of Reimagine: the img2img pipeline, model loading, schedulers and image helpers.
// Front ends (src/cli, src/server, web) use only what is exported here (a lint rule enforces it,
// see biome.json): when a front end needs something new, export it here rather than reach past.
/**
 * @example
 * import { loadPipeline } from "reimagine";
 * const pipe = await loadPipeline("stabilityai/sd-turbo");
 * const { images, seed } = await pipe.run({ image: "photo.png", prompt: "a watercolor painting", strength: 0.5 });
 */
export { Img2ImgPipeline, type Img2ImgOptions, type Img2ImgResult, type ProgressEvent } from "./pipeline/img2img.js";
export { DEFAULT_MODEL, defaultsFor, loadPipeline, openModel, type LoadPipelineOptions } from "./pipeline/load.js";
export { StableDiffusionModel, openDiffusersFolder, type ModelParts } from "./pipeline/components.js";
export { strengthSweep, sweepLabel, sweepPoints, validateStrengths, type StrengthSweepResult, type SweepPoint } from "./pipeline/sweep.js";
export {
  A1111_MODULES,
  CONTROL_MODES,
  controlNetDisplayName,
  controlNetInfotext,
  controlNetsFromInfotext,
  controlNetSummary,
  guessModeFromA1111,
  preprocessorFromA1111,
  resizeModeFromA1111,
} from "./control/a1111.js";
export { defaultControlNetDir, listControlNets, resolveControlNetRef, type ControlNetEntry } from "./control/catalog.js";
export { parsePreprocessor, PREPROCESSORS, type PreprocessOptions, type PreprocessorName } from "./control/preprocess.js";
export { resolveUnit, unitControlImage, withControlScale, type ControlNetUnit, type ResolvedUnit } from "./control/unit.js";
export { formatInfotext, parseInfotext, type GenerationSettings } from "./pipeline/infotext.js";
export { encodeResult, refinerNotes, runInfotext, samplerDisplayName, type PipelineSummary, type RunSettings } from "./pipeline/metadata.js";
export { previewVaeFor, tinyVaeRepoFor, TINY_VAE_REPOS } from "./pipeline/preview-vae.js";
export { findModel, rememberModel, type FoundModel, type KnownModel } from "./pipeline/model-index.js";
export {
  PipelineWorker,
  type PipelineInfo,
  type PreviewMode,
  type WorkerLoadOptions,
  type WorkerProgressEvent,
  type WorkerRunInput,
  type WorkerRunOptions,
} from "./worker/pipeline-worker.js";
export { VAE_TILING_MODES, type VaeTilingMode } from "./pipeline/vae-tiling.js";
export {
  a1111SamplerName,
  checkSamplerName,
  createScheduler,
  DEFAULT_SAMPLER,
  denoisingSteps,
  findSampler,
  img2imgTimesteps,
  listSamplers,
  modelSampler,
  noDenoisingStepReason,
  schedulerForModel,
  type SamplerInfo,
  type StepsStrengthNames,
} from "./schedulers/index.js";
export type { Scheduler } from "./schedulers/scheduler.js";
export { CLIPTokenizer } from "./tokenizer/clip.js";
export { TorchGenerator, normalizeSeed, randomSeed } from "./rng.js";
export {
  checkBackground,
  contactSheet,
  DEFAULT_MAX_PIXELS,
  defaultSize,
  encodeImage,
  formatFromPath,
  imageHeader,
  imageToTensor,
  INPUT_FORMATS,
  loadImage,
  readImageParameters,
  resizeImage,
  ssim,
  ssimResized,
  tensorToImage,
  writeFileAtomic,
  type ImageFormat,
  type ResizeMode,
  type RGBImage,
} from "./image.js";
export { downloadDiffusersModel, hubCacheDir, type HubOptions, parseRepoRef } from "./weights/hub.js";
export { findLora, listLoras, loraShortHash, type LoraEntry } from "./lora/catalog.js";
export { isLcmLoraName, loraDirsFor, loraRunDefaults, promptWithLoraTags, type LoraSpec } from "./lora/spec.js";
export { extractLoraTags, type LoraTag } from "./prompt/extra-networks.js";
export { parsePromptAttention } from "./prompt/attention.js";
export { PROMPT_SYNTAXES, type PromptSyntax } from "./prompt/encode.js";
export { embeddingDirsFor, embeddingFiles, runEmbeddings } from "./prompt/embedding-dirs.js";
export { readTextualInversion } from "./prompt/embeddings.js";
export type { PredictionType } from "./weights/checkpoint.js";
export { QUANTIZE_MODES, type QuantizeMode } from "./graph/quantize.js";
export { availableProviders, PROVIDERS, type Provider, type RuntimeOptions } from "./runtime.js";
export { abortError, isAbortError, ReimagineError, throwIfAborted } from "./errors.js";
export {
  a1111PrepareMask,
  A1111_INPAINT_DEFAULTS,
  inpaintSketch,
  MASK_DEFAULTS,
  maskFromSource,
  maskInfotext,
  maskSettingsFromInfotext,
  parseFill,
  parseInpaintingFill,
  resolveMaskOptions,
  type GrayImage,
  type InpaintArea,
  type InpaintingFill,
  type MaskOptions,
  type MaskPicture,
} from "./inpaint/index.js";
export { decodePixels, encodeMaskPng, type DecodedPixels } from "./image-mask.js";
