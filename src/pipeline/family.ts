// Model families (SD 1.x/2.x, SDXL) as the pipeline sees them: the components each needs, how it turns a
// prompt into the conditioning record (step 3 of the pipeline), its defaults and its tiny VAE. A family
// is chosen from model_index.json's `_class_name` (diffusers) or, for single files, from the weights.
import { ReimagineError } from "../errors.js";
import type { LoraSpec } from "../lora/spec.js";
import type { PromptSyntax } from "../prompt/encode.js";
import type { TensorData } from "../runtime.js";
import type { StableDiffusionModel } from "./components.js";
import { encodePromptSD } from "./family-sd.js";
import { encodePromptSDXL } from "./family-sdxl.js";

export type FamilyId = "sd" | "sdxl";

/** model_index.json settings of SDXL pipelines (diffusers' register_to_config values). */
export interface PipelineConfig {
  /** A missing negative prompt gives zero embeddings instead of the encoding of "" (SDXL base: true). */
  force_zeros_for_empty_prompt: boolean;
  /** time_ids carry the aesthetic score instead of the target size (SDXL refiner: true). */
  requires_aesthetics_score: boolean;
}

/** SDXL's micro-conditioning (diffusers `__call__` arguments); sizes are [height, width]. */
export interface MicroConditioning {
  originalSize?: [number, number];
  cropsCoordsTopLeft?: [number, number];
  targetSize?: [number, number];
  negativeOriginalSize?: [number, number];
  negativeCropsCoordsTopLeft?: [number, number];
  negativeTargetSize?: [number, number];
  /** Refiner only (requires_aesthetics_score): default 6.0 / 2.5. */
  aestheticScore?: number;
  negativeAestheticScore?: number;
}

/** What step 3 (encode prompt) needs to know. */
export interface PromptRequest extends MicroConditioning {
  prompt: string;
  negativePrompt?: string;
  /** SDXL's second prompt (text_encoder_2); default: `prompt`. */
  prompt2?: string;
  negativePrompt2?: string;
  /** 0 = the family's usual layer; k skips k more layers (diffusers clip_skip). */
  clipSkip: number;
  /** Classifier-free guidance: negative rows are added (first). */
  cfg: boolean;
  numImages: number;
  /** Output size in pixels (SDXL's default original/target size). */
  height: number;
  width: number;
  /** "a1111" (default): emphasis, BREAK, chunks, <lora:...> tags; "none": literal text (diffusers). */
  promptSyntax?: PromptSyntax;
  /** LoRAs (their text-encoder parts apply here) and the folders their names are found in. */
  loras?: LoraSpec[];
  loraDirs?: string[];
  /** Folders of textual-inversion embeddings (A1111 `embeddings/`), named in prompts by file name. */
  embeddingDirs?: string[];
}

/**
 * The conditioning record: every UNet input besides `sample` and `timestep`, for the whole UNet batch
 * (numImages rows, twice that with CFG: negative rows first, as diffusers concatenates).
 */
export interface Conditioning {
  batch: number;
  cfg: boolean;
  /** encoder_hidden_states [B, L, D]; SDXL adds text_embeds [B, P] and time_ids [B, n]. */
  unetInputs: Record<string, TensorData>;
  /** Infotext pairs of the encoding (A1111's "TI hashes"). */
  infotext?: Record<string, string>;
}

export interface PipelineDefaults {
  steps: number;
  guidanceScale: number;
  strength: number;
}

export interface ModelFamily {
  id: FamilyId;
  label: string;
  /** Components besides unet, vae and scheduler that a diffusers folder of this family has. */
  components: string[];
  /** AutoencoderTiny repo for fast previews (TAESD trained on this family's latent space). */
  tinyVaeRepo: string;
  /** Hub repos of the diffusers pipelines this family's `_class_name`s come from. */
  classNames: string[];
  encodePrompt(model: StableDiffusionModel, req: PromptRequest): Promise<Conditioning>;
  /** Sensible defaults by model name and scheduler (turbo models want 1-4 steps and no guidance). */
  defaults(name: string, schedulerConfig: Record<string, unknown>): PipelineDefaults;
}

function defaultsFor(family: FamilyId, name: string, schedulerConfig: Record<string, unknown>): PipelineDefaults {
  if (/turbo/i.test(name)) return { steps: 2, guidanceScale: 0, strength: 0.5 };
  if (/lightning|hyper/i.test(name)) return { steps: 4, guidanceScale: 0, strength: 0.5 };
  if (/lcm/i.test(name) || schedulerConfig._class_name === "LCMScheduler") return { steps: 8, guidanceScale: 1, strength: 0.5 };
  return family === "sdxl" ? { steps: 30, guidanceScale: 7, strength: 0.6 } : { steps: 30, guidanceScale: 7.5, strength: 0.6 };
}

export const FAMILIES: Record<FamilyId, ModelFamily> = {
  sd: {
    id: "sd",
    label: "Stable Diffusion 1.x/2.x",
    components: ["text_encoder", "tokenizer"],
    tinyVaeRepo: "madebyollin/taesd",
    classNames: [
      "StableDiffusionPipeline",
      "StableDiffusionImg2ImgPipeline",
      "StableDiffusionInpaintPipeline",
      "StableDiffusionControlNetPipeline",
      "StableDiffusionControlNetImg2ImgPipeline",
      "StableDiffusionControlNetInpaintPipeline",
    ],
    encodePrompt: encodePromptSD,
    defaults: (name, s) => defaultsFor("sd", name, s),
  },
  sdxl: {
    id: "sdxl",
    label: "SDXL",
    components: ["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"],
    tinyVaeRepo: "madebyollin/taesdxl",
    classNames: [
      "StableDiffusionXLPipeline",
      "StableDiffusionXLImg2ImgPipeline",
      "StableDiffusionXLInpaintPipeline",
      "StableDiffusionXLControlNetPipeline",
      "StableDiffusionXLControlNetImg2ImgPipeline",
    ],
    encodePrompt: encodePromptSDXL,
    defaults: (name, s) => defaultsFor("sdxl", name, s),
  },
};

/**
 * The family of a diffusers pipeline class; undefined when no `_class_name` is given.
 * @example familyForClassName("StableDiffusionXLPipeline") // "sdxl"
 */
export function familyForClassName(className: unknown, where: string): FamilyId | undefined {
  if (className === undefined || className === null) return undefined;
  for (const f of Object.values(FAMILIES)) if (f.classNames.includes(String(className))) return f.id;
  const known = Object.values(FAMILIES).flatMap((f) => f.classNames);
  throw new ReimagineError(
    `${where}: model_index.json names the pipeline '${String(className)}', which Reimagine does not run; supported: ${known.join(", ")}`,
    "unsupported_model",
  );
}

/** model_index.json's SDXL settings with diffusers' defaults for the family. */
export function pipelineConfigFrom(family: FamilyId, index: Record<string, unknown>): PipelineConfig {
  const flag = (k: string, dflt: boolean) => (typeof index[k] === "boolean" ? (index[k] as boolean) : dflt);
  return {
    force_zeros_for_empty_prompt: family === "sdxl" && flag("force_zeros_for_empty_prompt", true),
    requires_aesthetics_score: family === "sdxl" && flag("requires_aesthetics_score", false),
  };
}

/** Rows [numImages, ...] of `one` (one prompt's tensor), negative rows first when `neg` is given. */
export function batchRows(one: Float32Array, numImages: number, neg?: Float32Array): Float32Array {
  const n = one.length;
  const rows = neg ? 2 * numImages : numImages;
  const out = new Float32Array(rows * n);
  for (let i = 0; i < numImages; i++) {
    if (neg) out.set(neg, i * n);
    out.set(one, ((neg ? numImages : 0) + i) * n);
  }
  return out;
}

/** A small per-model cache of prompt encodings (the same prompt is encoded once per model). */
export class EmbeddingCache<T> {
  private readonly map = new Map<string, T>();
  constructor(private readonly limit = 32) {}
  async get(key: string, compute: () => Promise<T>): Promise<T> {
    const hit = this.map.get(key);
    if (hit !== undefined) return hit;
    const v = await compute();
    if (this.map.size >= this.limit) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, v);
    return v;
  }
}
