// Resolves a model reference (diffusers folder, single-file .safetensors, or Hugging Face
// repo id) into loaded components and an Img2ImgPipeline, with defaults that suit the model.
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { ReimagineError } from "../errors.js";
import type { RuntimeOptions } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openSingleFile, type PredictionType, tokenizerRepoFor } from "../weights/checkpoint.js";
import { readJson } from "../weights/diffusers.js";
import type { QuantizeMode } from "../graph/quantize.js";
import { downloadComponentRepo, downloadDiffusersModel, type HubOptions, looksLikeRepoId } from "../weights/hub.js";
import { type ModelParts, openDiffusersFolder, openTinyVaeFolder, StableDiffusionModel, type TinyVaeParts } from "./components.js";
import { Img2ImgPipeline } from "./img2img.js";

/** The model used when none is named: fast (1-4 steps), no guidance needed. */
export const DEFAULT_MODEL = "stabilityai/sd-turbo";

export interface PipelineDefaults {
  steps: number;
  guidanceScale: number;
  strength: number;
}

export interface LoadPipelineOptions extends RuntimeOptions {
  /** Graph cache root (default ~/.cache/reimagine). */
  cacheDir?: string;
  /** Hub download options (revision, token, cache, offline, progress). */
  hub?: HubOptions;
  /** For single-file checkpoints: a diffusers folder whose configs and tokenizer to use
   *  (needed for architectures Reimagine does not know). */
  configFrom?: string;
  /** Overrides the scheduler's prediction_type (v-prediction cannot be seen in weights). */
  predictionType?: PredictionType;
  /** Weight variant to prefer in a diffusers folder ("fp16"). */
  variant?: string;
  onStatus?: (message: string) => void;
  /** "int8": UNet transformer and text encoder Linear layers as int8 ("int8-conv": and the UNet's 1x1 convs); faster on CPU, approximate. Default: exact fp32. */
  quantize?: QuantizeMode;
  /** AutoencoderTiny (TAESD) folder or repo id (e.g. "madebyollin/taesd"): fast approximate encode + decode
   *  and decoded live previews (see tinyVaeUse). */
  tinyVae?: string;
  /** "all" (default): the tiny VAE encodes and decodes; "preview": only progress previews use it. */
  tinyVaeUse?: "all" | "preview";
}

/** Sensible defaults by model: turbo models want 1-4 steps and no guidance. */
export function defaultsFor(name: string, schedulerConfig: Record<string, unknown>): PipelineDefaults {
  if (/turbo/i.test(name)) return { steps: 2, guidanceScale: 0, strength: 0.5 };
  if (/lcm/i.test(name) || schedulerConfig._class_name === "LCMScheduler") return { steps: 8, guidanceScale: 1, strength: 0.5 };
  return { steps: 30, guidanceScale: 7.5, strength: 0.6 };
}

function configsFromFolder(dir: string) {
  const j = (p: string, what: string) => readJson(join(dir, p), what);
  return {
    unet: j("unet/config.json", "UNet config"),
    vae: j("vae/config.json", "VAE config"),
    text_encoder: j("text_encoder/config.json", "text encoder config"),
    scheduler: j("scheduler/scheduler_config.json", "scheduler config"),
  };
}

/** Opens the parts of any supported model reference (downloading from the hub if needed). */
export async function openModel(ref: string, opts: LoadPipelineOptions = {}): Promise<ModelParts> {
  const lower = ref.toLowerCase();
  if (existsSync(ref) && statSync(ref).isDirectory()) {
    return openDiffusersFolder(ref, { variant: opts.variant, name: basename(ref.replace(/\/+$/, "")) });
  }
  if (/\.(ckpt|pt|pth|bin|pkl|safetensors)$/.test(lower)) {
    if (!existsSync(ref)) throw new ReimagineError(`model file not found: ${ref}`, "not_found");
    const configs = opts.configFrom ? configsFromFolder(opts.configFrom) : undefined;
    const sf = openSingleFile(ref, { configs, predictionType: opts.predictionType });
    if (!sf.configs) {
      throw new ReimagineError(`${ref}: no shipped configs for this architecture (${sf.family}); pass --config-from <diffusers folder>`, "bad_model");
    }
    let tokenizer: CLIPTokenizer;
    if (opts.configFrom) {
      tokenizer = CLIPTokenizer.fromDir(join(opts.configFrom, "tokenizer"));
    } else {
      // the CLIP vocabulary is third-party data we do not ship: take it from the hub cache
      const t = tokenizerRepoFor(sf.family);
      const dir = await downloadDiffusersModel(t.repo, { ...opts.hub, tokenizerOnly: true });
      tokenizer = CLIPTokenizer.fromDir(join(dir, t.subfolder));
    }
    return {
      name: basename(ref).replace(/\.safetensors$/i, ""),
      configs: sf.configs as ModelParts["configs"],
      weights: { unet: sf.unet, vae: sf.vae, text_encoder: sf.textEncoder },
      tokenizer,
    };
  }
  if (looksLikeRepoId(ref)) {
    const dir = await downloadDiffusersModel(ref, opts.hub);
    return openDiffusersFolder(dir, { variant: opts.variant ?? "fp16", name: ref });
  }
  throw new ReimagineError(
    `model '${ref}' not found: give a diffusers folder, a .safetensors checkpoint or a Hugging Face repo id like ${DEFAULT_MODEL}`,
    "not_found",
  );
}

/**
 * Opens an AutoencoderTiny from a folder or a hub repo id (downloaded into the HF cache).
 * @example const taesd = await openTinyVae("madebyollin/taesd");
 */
export async function openTinyVae(ref: string, opts: LoadPipelineOptions = {}): Promise<TinyVaeParts> {
  if (existsSync(ref) && statSync(ref).isDirectory()) return openTinyVaeFolder(ref, { name: basename(ref.replace(/\/+$/, "")) });
  if (looksLikeRepoId(ref)) {
    const { variant: _ignored, tokenizerOnly: _no, ...hub } = opts.hub ?? {};
    return openTinyVaeFolder(await downloadComponentRepo(ref, hub), { name: ref });
  }
  throw new ReimagineError(`tiny VAE '${ref}' not found: give an AutoencoderTiny folder or a repo id like madebyollin/taesd`, "not_found");
}

/**
 * Loads a model and returns a ready pipeline.
 * @example
 * const pipe = await loadPipeline("stabilityai/sd-turbo");
 * const { images } = await pipe.run({ image: "sketch.png", prompt: "a castle on a hill", strength: 0.7 });
 */
export async function loadPipeline(ref: string = DEFAULT_MODEL, opts: LoadPipelineOptions = {}): Promise<Img2ImgPipeline> {
  const parts = await openModel(ref, opts);
  if (opts.tinyVae) parts.tinyVae = await openTinyVae(opts.tinyVae, opts);
  const model = await StableDiffusionModel.load(parts, opts);
  return new Img2ImgPipeline(model, defaultsFor(ref, parts.configs.scheduler));
}
