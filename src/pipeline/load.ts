// Resolves a model reference (diffusers folder, single-file .safetensors, or Hugging Face
// repo id) into loaded components and an Img2ImgPipeline, with defaults that suit the model.
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { ReimagineError } from "../errors.js";
import type { RuntimeOptions } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openSingleFile, type PredictionType, type SingleFileConfigs, tokenizerRepoFor } from "../weights/checkpoint.js";
import { readJson } from "../weights/diffusers.js";
import type { QuantizeMode } from "../graph/quantize.js";
import { downloadComponentRepo, downloadDiffusersModel, type HubOptions, looksLikeRepoId } from "../weights/hub.js";
import { type ModelParts, openDiffusersFolder, openTinyVaeFolder, StableDiffusionModel, type TinyVaeParts } from "./components.js";
import { FAMILIES, type FamilyId, type PipelineDefaults, pipelineConfigFrom } from "./family.js";
import { Img2ImgPipeline } from "./img2img.js";
import { previewVaeFor } from "./preview-vae.js";

/** The model used when none is named: fast (1-4 steps), no guidance needed. */
export const DEFAULT_MODEL = "stabilityai/sd-turbo";

export type { PipelineDefaults };

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
  /** "int8": UNet transformer and text encoder Linear layers as int8 ("int8-conv": and the UNet's convolutions, the fastest); faster on CPU, approximate. Default: exact fp32. */
  quantize?: QuantizeMode;
  /** AutoencoderTiny (TAESD) folder or repo id (e.g. "madebyollin/taesd"): fast approximate encode + decode
   *  and decoded live previews (see tinyVaeUse). */
  tinyVae?: string;
  /** "all" (default): the tiny VAE encodes and decodes; "preview": only progress previews use it. */
  tinyVaeUse?: "all" | "preview";
  /** Without tinyVae: a tiny VAE for decoded live previews only. "auto" takes the model family's TAESD
   *  when the Hugging Face cache has it (no download); a repo id or folder loads that one. */
  previewVae?: "auto" | string;
}

/** Sensible defaults by model: turbo models want 1-4 steps and no guidance. */
export function defaultsFor(name: string, schedulerConfig: Record<string, unknown>, family: FamilyId = "sd"): PipelineDefaults {
  return FAMILIES[family].defaults(name, schedulerConfig);
}

/** The configs of a diffusers folder, for a single-file checkpoint (--config-from). */
function configsFromFolder(dir: string): SingleFileConfigs {
  const j = (p: string, what: string) => readJson(join(dir, p), what);
  const opt = (p: string, what: string) => (existsSync(join(dir, p)) ? j(p, what) : undefined);
  return {
    unet: j("unet/config.json", "UNet config"),
    vae: j("vae/config.json", "VAE config"),
    text_encoder: opt("text_encoder/config.json", "text encoder config"),
    text_encoder_2: opt("text_encoder_2/config.json", "text_encoder_2 config"),
    scheduler: j("scheduler/scheduler_config.json", "scheduler config"),
    model_index: opt("model_index.json", "model_index.json"),
  };
}

/** Opens a single-file LDM checkpoint as ModelParts (tokenizers from --config-from, else the hub cache). */
async function openCheckpoint(ref: string, opts: LoadPipelineOptions): Promise<ModelParts> {
  const configs = opts.configFrom ? configsFromFolder(opts.configFrom) : undefined;
  const sf = openSingleFile(ref, { configs, predictionType: opts.predictionType });
  const c = sf.configs;
  if (!c) throw new ReimagineError(`${ref}: no shipped configs for this architecture (${sf.family}); pass --config-from <diffusers folder>`, "bad_model");
  const family: FamilyId = sf.family === "sdxl" || sf.family === "sdxl-refiner" || c.text_encoder_2 ? "sdxl" : "sd";
  // the CLIP vocabulary is third-party data we do not ship: take it from --config-from, else the hub cache
  let dir: string;
  let sub: { subfolder?: string; subfolder2?: string };
  if (opts.configFrom) {
    dir = opts.configFrom;
    sub = { subfolder: c.text_encoder ? "tokenizer" : undefined, subfolder2: c.text_encoder_2 ? "tokenizer_2" : undefined };
  } else {
    const t = tokenizerRepoFor(sf.family);
    dir = await downloadDiffusersModel(t.repo, { ...opts.hub, tokenizerOnly: true });
    sub = t;
  }
  const tok = (s: string | undefined) => (s === undefined ? undefined : CLIPTokenizer.fromDir(join(dir, s)));
  const name = basename(ref).replace(/\.safetensors$/i, "");
  if (!opts.configFrom && fewStepName(name)) {
    // distilled few-step checkpoints (Turbo, Lightning, Hyper) are sampled with trailing timesteps
    // (diffusers' model cards: EulerDiscreteScheduler.from_config(..., timestep_spacing="trailing"))
    c.scheduler = { ...c.scheduler, timestep_spacing: "trailing" };
  }
  return {
    name,
    family,
    pipelineConfig: pipelineConfigFrom(family, (c.model_index ?? {}) as Record<string, unknown>),
    configs: c as ModelParts["configs"],
    weights: { unet: sf.unet, vae: sf.vae, text_encoder: sf.textEncoder, text_encoder_2: sf.textEncoder2 },
    tokenizer: tok(sub.subfolder),
    tokenizer_2: tok(sub.subfolder2),
  };
}

/** Names of distilled few-step models (SD/SDXL Turbo, SDXL-Lightning, Hyper-SD). */
export const fewStepName = (name: string): boolean => /turbo|lightning|hyper/i.test(name);

/** Opens the parts of any supported model reference (downloading from the hub if needed). */
export async function openModel(ref: string, opts: LoadPipelineOptions = {}): Promise<ModelParts> {
  const lower = ref.toLowerCase();
  if (existsSync(ref) && statSync(ref).isDirectory()) {
    return openDiffusersFolder(ref, { variant: opts.variant, name: basename(ref.replace(/\/+$/, "")) });
  }
  if (/\.(ckpt|pt|pth|bin|pkl|safetensors)$/.test(lower)) {
    if (!existsSync(ref)) throw new ReimagineError(`model file not found: ${ref}`, "not_found");
    return openCheckpoint(ref, opts);
  }
  if (looksLikeRepoId(ref)) {
    const dir = await downloadDiffusersModel(ref, opts.hub);
    return openDiffusersFolder(dir, { variant: opts.variant ?? "fp16", name: ref });
  }
  if (existsSync(ref)) {
    throw new ReimagineError(
      `'${ref}' is not a model: give a diffusers folder, a .safetensors checkpoint or a Hugging Face repo id like ${DEFAULT_MODEL}`,
      "bad_model",
    );
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
  else if (opts.previewVae) {
    const ref = await previewVaeFor(parts.family ?? "sd", opts.previewVae, opts.hub);
    if (ref) [parts.tinyVae, opts] = [await openTinyVae(ref, opts), { ...opts, tinyVaeUse: "preview" }];
  }
  const model = await StableDiffusionModel.load(parts, opts);
  const pipe = new Img2ImgPipeline(model, defaultsFor(ref, parts.configs.scheduler, model.family));
  pipe.useRefinerLoader((refiner) => loadPipeline(refiner, { ...opts, tinyVae: undefined }));
  return pipe;
}
