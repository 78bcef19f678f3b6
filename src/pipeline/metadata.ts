// The A1111 `parameters` metadata of a run's images, shared by the library, the CLI and batch:
// the settings a run used (its options, else the pipeline's defaults), seed, size, model name and
// hash, and marks for the approximate modes. Ref: A1111 modules/processing.py create_infotext.
import { controlNetInfotext } from "../control/a1111.js";
import type { ControlNetUnit } from "../control/unit.js";
import { encodeImage, type ImageFormat } from "../image.js";
import { maskInfotext } from "../inpaint/infotext.js";
import type { MaskOptions } from "../inpaint/options.js";
import { a1111SamplerName, createScheduler, schedulerForModel } from "../schedulers/index.js";
import { type LoraSpec, promptWithLoraTags } from "../lora/spec.js";
import { formatInfotext } from "./infotext.js";

/** What the metadata needs of a pipeline (an Img2ImgPipeline or a PipelineWorker). */
export interface PipelineSummary {
  readonly modelName: string;
  readonly modelHash: string;
  readonly defaults: { steps: number; guidanceScale: number; strength: number };
  readonly model: { schedulerConfig: Record<string, unknown>; quantize?: string; tinyVae?: { use: "all" | "preview" } };
}

/** The options of a run that the metadata records (a subset of Img2ImgOptions). */
export interface RunSettings {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  guidanceScale?: number;
  strength?: number;
  sampler?: string;
  clipSkip?: number;
  /** Inpainting: its settings are recorded (A1111's "Mask blur", "Inpaint area", ...). */
  mask?: MaskOptions;
  /** LoRAs given as options: recorded as `<lora:...>` tags after the prompt (A1111 and --from apply them again). */
  loras?: LoraSpec[];
  /** Recorded as the A1111 ControlNet extension's `ControlNet N` pairs. */
  controlnets?: readonly ControlNetUnit[];
  /** diffusers guidance_rescale; recorded as the sd-webui-cfg-rescale extension's "CFG Rescale phi". */
  guidanceRescale?: number;
  /** SDXL refiner hand-over; recorded as A1111's "Refiner" / "Refiner switch at". */
  refiner?: { model: string; switchAt: number };
}

/**
 * A1111 display name of a sampler (ours, A1111's or a diffusers class name; none or "default": the
 * model's own scheduler), read from the scheduler it builds (schedulers/index.ts names them all).
 * @example samplerDisplayName(pipe, "dpmpp-2m-karras") // "DPM++ 2M Karras"
 */
export function samplerDisplayName(pipe: PipelineSummary, sampler?: string): string {
  const cfg = pipe.model.schedulerConfig;
  return a1111SamplerName(sampler ? createScheduler(sampler, cfg) : schedulerForModel(cfg));
}

/** Infotext pairs that mark results of the opt-in approximate modes (not diffusers-exact). */
export function approximationNotes(pipe: PipelineSummary): Record<string, string> {
  const notes: Record<string, string> = {};
  if (pipe.model.quantize) notes.Quantization = pipe.model.quantize;
  if (pipe.model.tinyVae?.use === "all") notes.VAE = "TAESD";
  return notes;
}

/** The pipeline's defaults filled into a run's settings: what the run actually used. */
export function resolvedSettings(pipe: PipelineSummary, s: RunSettings): Required<Pick<RunSettings, "steps" | "guidanceScale" | "strength">> & RunSettings {
  return {
    ...s,
    steps: s.steps ?? pipe.defaults.steps,
    guidanceScale: s.guidanceScale ?? pipe.defaults.guidanceScale,
    strength: s.strength ?? pipe.defaults.strength,
  };
}

/**
 * The A1111 `parameters` text of one image a run made.
 * @example runInfotext(pipe, { prompt: "a castle", strength: 0.7 }, { seed: 42, width: 512, height: 512 })
 */
export function runInfotext(
  pipe: PipelineSummary,
  settings: RunSettings,
  image: { seed: number | bigint; width: number; height: number },
  extra?: Record<string, string>,
): string {
  const s = resolvedSettings(pipe, settings);
  return formatInfotext({
    prompt: promptWithLoraTags(s.prompt, s.loras),
    negativePrompt: s.negativePrompt,
    steps: s.steps,
    sampler: samplerDisplayName(pipe, s.sampler),
    cfgScale: s.guidanceScale,
    seed: image.seed,
    width: image.width,
    height: image.height,
    model: pipe.modelName,
    modelHash: pipe.modelHash,
    denoisingStrength: s.strength,
    clipSkip: s.clipSkip,
    extra: { ...approximationNotes(pipe), ...settingNotes(s), ...controlNetInfotext(s.controlnets, image), ...maskInfotext(s.mask), ...extra },
  });
}

/** Infotext pairs of the settings beyond A1111's core line. */
function settingNotes(s: RunSettings): Record<string, string> {
  const notes: Record<string, string> = {};
  if (s.guidanceRescale) notes["CFG Rescale phi"] = String(s.guidanceRescale);
  return { ...notes, ...refinerNotes(s.refiner) };
}

/** A1111's infotext pairs of a refiner hand-over ("Refiner", "Refiner switch at"); none without one. */
export function refinerNotes(refiner: RunSettings["refiner"]): Record<string, string> {
  return refiner ? { Refiner: refiner.model, "Refiner switch at": String(refiner.switchAt) } : {};
}

/**
 * Encodes image `index` of a run's result as PNG (or JPEG/WebP) carrying the run's A1111 metadata,
 * exactly as the CLI writes it (`reimagine info` and A1111's PNG Info read it back).
 * @example
 * const opts = { image: "sketch.png", prompt: "a castle on a hill", strength: 0.8, seed: 42 };
 * const result = await pipe.run(opts);
 * await writeFileAtomic("castle.png", await encodeResult(pipe, opts, result));
 */
export async function encodeResult(
  pipe: PipelineSummary,
  settings: RunSettings,
  result: { images: { width: number; height: number; data: Uint8Array }[]; seed: number | bigint; extraGenerationParams?: Record<string, string> },
  opts: { index?: number; format?: ImageFormat; quality?: number; extra?: Record<string, string> } = {},
): Promise<Buffer> {
  const i = opts.index ?? 0;
  const img = result.images[i];
  if (!img) throw new RangeError(`the result has ${result.images.length} image(s); there is no image ${i}`);
  const n = result.images.length;
  const batch = n > 1 ? { "Batch size": String(n), "Batch pos": String(i) } : undefined;
  const parameters = runInfotext(
    pipe,
    settings,
    { seed: result.seed, width: img.width, height: img.height },
    { ...result.extraGenerationParams, ...batch, ...opts.extra },
  );
  return encodeImage(img, opts.format ?? "png", { parameters, quality: opts.quality });
}
