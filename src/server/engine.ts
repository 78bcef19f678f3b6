// The one thing the server needs from the library: a loaded model that runs img2img.
// `Engine` is an interface so API tests run against a fast fake (fake-engine.ts) and the real
// server wraps an Img2ImgPipeline (engineFromPipeline). Nothing here imports onnxruntime or sharp.
import {
  type ControlNetUnit,
  listSamplers,
  type LoraSpec,
  type MaskOptions,
  modelSampler,
  type PromptSyntax,
  type ResizeMode,
  type RGBImage,
} from "../index.js";
import type { RefinerChoice } from "./refiners.js";

export interface SamplerInfo {
  /** Our name (`euler-a`). */
  name: string;
  /** AUTOMATIC1111's display name (`Euler a`). */
  a1111Name: string;
  /** diffusers scheduler class (`EulerAncestralDiscreteScheduler`). */
  className: string;
}

export interface EngineDefaults {
  steps: number;
  guidanceScale: number;
  strength: number;
  /** Sampler `name` used when a request names none: one of samplers(). For a real model this is
   *  DEFAULT_SAMPLER ("default"), the model's own scheduler, as on every other front end. */
  sampler: string;
}

export interface EngineProgress {
  /** 1-based step just finished, out of `total`. */
  step: number;
  total: number;
  elapsedMs: number;
  /** Cheap latent preview of the first image (latent resolution). */
  preview?: () => RGBImage;
}

export interface EngineRunOptions {
  image: RGBImage;
  prompt: string;
  negativePrompt?: string;
  strength: number;
  steps: number;
  guidanceScale: number;
  /** A concrete seed: the server picks random seeds itself so it can report them before the run. */
  seed: number | bigint;
  /** Sampler `name` (already checked against samplers()). */
  sampler: string;
  clipSkip?: number;
  numImages?: number;
  width?: number;
  height?: number;
  resizeMode?: ResizeMode;
  /** Inpainting (Img2ImgOptions.mask): plain data, the mask picture as encoded bytes or pixels. */
  mask?: MaskOptions;
  /** LoRAs by name (found in loraDirs) besides the prompt's <lora:...> tags; "none" turns prompt syntax off. */
  loras?: LoraSpec[];
  loraDirs?: string[];
  /** Folders of the textual-inversion embeddings prompts may name. */
  embeddingDirs?: string[];
  promptSyntax?: PromptSyntax;
  /** ControlNets (model = a path from the server's ControlNet folder, images decoded). */
  controlnets?: ControlNetUnit[];
  onProgress?: (e: EngineProgress) => void;
  /** Aborting rejects with an Error named "AbortError" within one step. */
  signal?: AbortSignal;
  /** SDXL: hand over to this refiner (a reference from Engine.refiners) at `switchAt`. */
  refiner?: { model: string; switchAt: number };
}

export interface EngineResult {
  images: RGBImage[];
  seed: number | bigint;
  width: number;
  height: number;
  stepsRun: number;
  timings: { totalMs: number };
  /** How the run was done, when the caller should know (e.g. "the mask was resized to fit"). */
  notes?: string[];
  /** Infotext pairs of the run (e.g. "Lora hashes"). */
  extraGenerationParams?: Record<string, string>;
}

export interface Engine {
  readonly modelName: string;
  /** Short hash shown as A1111's "Model hash" (may be empty). */
  readonly modelHash: string;
  readonly defaults: EngineDefaults;
  /** Output sizes must be multiples of this (the VAE's downsampling factor). */
  readonly vaeScaleFactor: number;
  /** Model family ("sd", "sdxl") when known. */
  readonly family?: string;
  /** The resolution the model was trained at (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL) when known: UIs start there. */
  readonly nativeSize?: number;
  /** SDXL refiners requests may name (reimagine serve --refiner); none by default. */
  readonly refiners?: readonly RefinerChoice[];
  samplers(): SamplerInfo[];
  run(opts: EngineRunOptions): Promise<EngineResult>;
}

/** The parts of Img2ImgPipeline the adapter uses (structural, so the server does not pin its class). */
export interface PipelineLike {
  readonly modelName: string;
  readonly modelHash: string;
  readonly defaults: { steps: number; guidanceScale: number; strength: number };
  readonly model: { vaeScaleFactor: number; schedulerConfig: Record<string, unknown>; family?: string; nativeSize?: number };
  run(opts: EngineRunOptions): Promise<EngineResult>;
}

/**
 * Wraps a loaded pipeline as the server's Engine. Its samplers are the model's own scheduler first
 * (name "default", labelled with what it runs, e.g. "DPM++ 2M SDE Karras"), then the registry; the
 * default is the model's own, so a request without a sampler runs exactly what the CLI and the library
 * run without one.
 * @example const engine = engineFromPipeline(await loadPipeline("stabilityai/sd-turbo"));
 */
export function engineFromPipeline(pipe: PipelineLike, opts: { refiners?: readonly RefinerChoice[] } = {}): Engine {
  const own = modelSampler(pipe.model.schedulerConfig);
  const samplers: SamplerInfo[] = [own, ...listSamplers()];
  return {
    get modelName() {
      return pipe.modelName;
    },
    get modelHash() {
      return pipe.modelHash;
    },
    defaults: { steps: pipe.defaults.steps, guidanceScale: pipe.defaults.guidanceScale, strength: pipe.defaults.strength, sampler: own.name },
    vaeScaleFactor: pipe.model.vaeScaleFactor,
    family: pipe.model.family,
    nativeSize: pipe.model.nativeSize,
    refiners: opts.refiners,
    samplers: () => samplers,
    run: (opts) => pipe.run(opts),
  };
}
