// The loaded parts of a Stable Diffusion model, keyed by their model_index.json names (unet, vae,
// text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler), from a diffusers folder or
// pre-opened weight sources. Graphs are built once per (config, weights, build options) and cached on
// disk; sessions stay loaded. UNet variants (ControlNet residual inputs, ...) load on first use.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import type { Graph } from "../graph/builder.js";
import { cachedGraph, cacheRoot } from "../graph/cache.js";
import { type QuantizeMode, quantizeCacheKey } from "../graph/quantize.js";
import { buildCLIPTextModel, type CLIPTextBuildOptions, type CLIPTextConfig, resolveCLIPTextConfig } from "../models/clip-text.js";
import { buildTinyDecoder, buildTinyEncoder, resolveTinyVaeConfig, type TinyVaeConfig } from "../models/taesd.js";
import { buildUNet2DConditionModel, resolveUNetConfig, type UNet2DConditionConfig, type UNetBuildOptions } from "../models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, type VaeConfig, vaeScaleFactor } from "../models/vae.js";
import { ModelSession, type RuntimeOptions } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import type { HubOptions } from "../weights/hub.js";
import type { WeightSource } from "../weights/source.js";
import { familyForClassName, type FamilyId, FAMILIES, type PipelineConfig, pipelineConfigFrom } from "./family.js";

/** Raw (unresolved) config.json contents of each component, by model_index.json name. */
export interface ComponentConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  scheduler: Record<string, unknown>;
  text_encoder?: Record<string, unknown>;
  text_encoder_2?: Record<string, unknown>;
}

/** Where a model's parts come from before graphs are built; fields are model_index.json names. */
export interface ModelParts {
  /** Shown in metadata and errors (repo id, folder or file). */
  name: string;
  /** Model family (default "sd": SD 1.x / 2.x). */
  family?: FamilyId;
  /** model_index.json's pipeline settings (force_zeros_for_empty_prompt, requires_aesthetics_score). */
  pipelineConfig?: PipelineConfig;
  configs: ComponentConfigs;
  weights: { unet: WeightSource; vae: WeightSource; text_encoder?: WeightSource; text_encoder_2?: WeightSource };
  tokenizer?: CLIPTokenizer;
  tokenizer_2?: CLIPTokenizer;
  /** Optional AutoencoderTiny (TAESD): fast encode/decode, or live previews only (LoadOptions.tinyVaeUse). */
  tinyVae?: TinyVaeParts;
}

/** An AutoencoderTiny folder's config.json and weights (e.g. madebyollin/taesd). */
export interface TinyVaeParts {
  name: string;
  config: Record<string, unknown>;
  weights: WeightSource;
}

/** Opens an AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors). */
export function openTinyVaeFolder(dir: string, opts: { name?: string } = {}): TinyVaeParts {
  if (!existsSync(join(dir, "config.json"))) {
    throw new ReimagineError(
      `tiny VAE folder ${dir} has no config.json: give a diffusers AutoencoderTiny folder or repo id such as madebyollin/taesd`,
      "bad_model",
    );
  }
  return { name: opts.name ?? dir, config: readJson(join(dir, "config.json"), "tiny VAE config"), weights: openComponentWeights(dir) };
}

/** The loaded AutoencoderTiny and what the pipeline uses it for. */
export interface TinyVae {
  name: string;
  config: TinyVaeConfig;
  encoder: ModelSession;
  decoder: ModelSession;
  /** "all": encode and decode with it (fast, approximate); "preview": progress previews only. */
  use: "all" | "preview";
}

export interface LoadOptions extends RuntimeOptions {
  /** Graph cache root (default: cacheRoot()). */
  cacheDir?: string;
  /** Weight variant to prefer in a diffusers folder, e.g. "fp16". */
  variant?: string;
  /** Called as each part is built/loaded (front ends show it). */
  onStatus?: (message: string) => void;
  /** "int8": UNet transformer and text encoder Linear layers as int8 ("int8-conv": and the UNet's convolutions, the fastest); faster on CPU, approximate; default exact fp32. */
  quantize?: QuantizeMode;
  /** What a tiny VAE in ModelParts is used for (default "all"). */
  tinyVaeUse?: "all" | "preview";
  /** Hub settings for side models a run downloads (a ControlNet given as a repo id). */
  hub?: HubOptions;
}

/**
 * Opens the parts of a diffusers-layout folder (model_index.json + component folders); the family
 * (SD 1.x/2.x or SDXL) comes from model_index.json's `_class_name`, else from the folders present.
 */
export function openDiffusersFolder(dir: string, opts: { variant?: string; name?: string } = {}): ModelParts {
  if (!existsSync(dir)) throw new ReimagineError(`model folder not found: ${dir}`, "not_found");
  const index = existsSync(join(dir, "model_index.json")) ? readJson(join(dir, "model_index.json"), "model_index.json") : {};
  const family = familyForClassName(index._class_name, dir) ?? (existsSync(join(dir, "text_encoder_2")) ? "sdxl" : "sd");
  // SDXL refiners have only text_encoder_2 / tokenizer_2: model_index.json says which components exist
  // when it lists any (a hand-written one with only `_class_name` leaves it to the folders present)
  const lists = ["unet", "vae", ...FAMILIES[family].components].some((c) => c in index);
  const listed = (c: string) => (lists ? Array.isArray(index[c]) && index[c][0] !== null : existsSync(join(dir, c)));
  const required = FAMILIES[family].components.filter(listed);
  const missing = ["unet", "vae", "scheduler", ...required].filter((c) => !existsSync(join(dir, c)));
  const textEncoders = ["text_encoder", "text_encoder_2"].filter((c) => listed(c) && existsSync(join(dir, c)));
  if (missing.length > 0 || textEncoders.length === 0) {
    const need = ["unet", "vae", "scheduler", ...FAMILIES[family].components].join(", ");
    throw new ReimagineError(
      `model folder ${dir} has no '${missing[0] ?? "text_encoder"}/' component: a diffusers ${FAMILIES[family].label} folder needs ${need} ` +
        `(download the complete repository, or pass a single-file .safetensors)`,
      "bad_model",
    );
  }
  const json = (c: string, file: string, what: string) => readJson(join(dir, c, file), what);
  const weights = (c: string) => openComponentWeights(join(dir, c), { variant: opts.variant });
  const has = (c: string) => listed(c) && existsSync(join(dir, c));
  return {
    name: opts.name ?? dir,
    family,
    pipelineConfig: pipelineConfigFrom(family, index),
    configs: {
      unet: json("unet", "config.json", "UNet config"),
      vae: json("vae", "config.json", "VAE config"),
      scheduler: json("scheduler", "scheduler_config.json", "scheduler config"),
      text_encoder: has("text_encoder") ? json("text_encoder", "config.json", "text encoder config") : undefined,
      text_encoder_2: has("text_encoder_2") ? json("text_encoder_2", "config.json", "text_encoder_2 config") : undefined,
    },
    weights: {
      unet: weights("unet"),
      vae: weights("vae"),
      text_encoder: has("text_encoder") ? weights("text_encoder") : undefined,
      text_encoder_2: has("text_encoder_2") ? weights("text_encoder_2") : undefined,
    },
    tokenizer: has("tokenizer") ? CLIPTokenizer.fromDir(join(dir, "tokenizer")) : undefined,
    tokenizer_2: has("tokenizer_2") ? CLIPTokenizer.fromDir(join(dir, "tokenizer_2")) : undefined,
  };
}

/** A loaded text encoder and its tokenizer. */
export interface LoadedTextEncoder {
  config: CLIPTextConfig;
  /** The loaded graph: the plain one, or the variant of StableDiffusionModel.useTextEncoderVariant (its inputs tell). */
  session: ModelSession;
  tokenizer: CLIPTokenizer;
  weights: WeightSource;
}

/** Loaded components, keyed by model_index.json names. */
export interface Components {
  unet: { config: UNet2DConditionConfig };
  vae: { config: VaeConfig; encoder: ModelSession; decoder: ModelSession };
  scheduler: Record<string, unknown>;
  text_encoder?: LoadedTextEncoder;
  text_encoder_2?: LoadedTextEncoder;
}

type SessionFactory = (kind: string, config: unknown, weights: WeightSource, build: () => Graph, extra?: unknown) => Promise<ModelSession>;

/** Loaded, ready-to-run sessions of one model. */
export class StableDiffusionModel {
  /** UNet sessions by build-option key; one is kept loaded at a time (see unetSession). */
  private unetLoaded?: { key: string; session: ModelSession };
  /** Build options of the loaded text-encoder graphs ("{}" = plain). */
  private textEncoderKey = "{}";

  private constructor(
    readonly name: string,
    readonly family: FamilyId,
    readonly pipelineConfig: PipelineConfig,
    readonly components: Components,
    readonly unetWeights: WeightSource,
    private readonly session: SessionFactory,
    /** Short content hash of the UNet weights (A1111's "Model hash" field). */
    readonly hash: string,
    /** AutoencoderTiny, when one was loaded (LoadPipelineOptions.tinyVae). */
    readonly tinyVae?: TinyVae,
    /** Set when the UNet was built quantized (not diffusers-exact). */
    readonly quantize?: QuantizeMode,
    /** Hub settings the model was loaded with, for side models a run downloads (ControlNet repo ids). */
    readonly hub?: HubOptions,
  ) {}

  /** The model's own scheduler_config.json. */
  get schedulerConfig(): Record<string, unknown> {
    return this.components.scheduler;
  }

  /** Pixel-to-latent downscale (8 for SD): of the VAE that encodes and decodes. */
  get vaeScaleFactor(): number {
    return vaeScaleFactor(this.tinyVae?.use === "all" ? this.tinyVae.config : this.components.vae.config);
  }

  /** The resolution the UNet was trained at (unet sample_size x VAE factor): 512 SD 1.x, 768 SD 2.x-v, 1024 SDXL. */
  get nativeSize(): number {
    const s = this.components.unet.config.sample_size;
    const side = Array.isArray(s) ? s[0] : s;
    return (side ?? 64) * vaeScaleFactor(this.components.vae.config);
  }

  /**
   * The UNet session for `opts` (build options are part of the graph cache key). The plain UNet is
   * loaded with the model; another variant replaces it on first use, so one UNet's weights are mapped at a time.
   */
  async unetSession(opts: Omit<UNetBuildOptions, "quantize"> = {}): Promise<ModelSession> {
    const build: UNetBuildOptions = { ...opts, quantize: this.quantize };
    const extra = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined && v !== false));
    if (this.quantize) Object.assign(extra, quantizeCacheKey(this.quantize));
    const key = JSON.stringify(extra);
    if (this.unetLoaded?.key === key) return this.unetLoaded.session;
    await this.unetLoaded?.session.release();
    this.unetLoaded = undefined;
    const config = this.components.unet.config;
    // fp32 without options keeps its original cache key (no extra)
    const session = await this.session(
      "unet",
      config,
      this.unetWeights,
      () => buildUNet2DConditionModel(this.unetWeights, config, build),
      Object.keys(extra).length ? extra : undefined,
    );
    this.unetLoaded = { key, session };
    return session;
  }

  /** Input names of the UNet graph loaded now (the variant the last unetSession call returned). */
  get unetInputNames(): readonly string[] {
    return this.unetLoaded?.session.inputNames ?? [];
  }

  /**
   * Replaces the text encoders' graphs by the variant built with `opts` (e.g. LoRA slot inputs), releasing the
   * loaded ones so one copy of each encoder's weights is mapped; a no-op when that variant is loaded. Build options
   * are part of the graph cache key, like the UNet's.
   */
  async useTextEncoderVariant(opts: Omit<CLIPTextBuildOptions, "quantize">): Promise<void> {
    const extra = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined && v !== false));
    const key = JSON.stringify(extra);
    if (key === this.textEncoderKey) return;
    // the model's int8 mode stays (LoRA slots add to the int8 layers); fp32 without options keeps its original key
    if (this.quantize) Object.assign(extra, quantizeCacheKey(this.quantize));
    const build: CLIPTextBuildOptions = { ...opts, quantize: this.quantize };
    for (const name of ["text_encoder", "text_encoder_2"] as const) {
      const te = this.components[name];
      if (!te) continue;
      await te.session.release();
      const kind = name === "text_encoder" ? "text-encoder" : "text-encoder-2";
      te.session = await this.session(
        kind,
        te.config,
        te.weights,
        () => buildCLIPTextModel(te.weights, te.config, build),
        Object.keys(extra).length ? extra : undefined,
      );
    }
    this.textEncoderKey = key;
  }

  /**
   * A side model's session (a ControlNet a run needs), built or loaded through this model's graph cache and
   * runtime options; `kind` names it in the cache. The caller releases it.
   */
  sideSession(kind: string, config: unknown, weights: WeightSource, build: () => Graph): Promise<ModelSession> {
    return this.session(kind, config, weights, build);
  }

  static async load(parts: ModelParts, opts: LoadOptions = {}): Promise<StableDiffusionModel> {
    const root = opts.cacheDir ?? cacheRoot();
    const family = parts.family ?? "sd";
    const session: SessionFactory = async (kind, config, weights, build, extra) => {
      const { path, built } = cachedGraph({ kind, config, weights, extra }, build, root, () =>
        opts.onStatus?.(`building ${kind} graph from ${weights.description}`),
      );
      if (!built) opts.onStatus?.(`loading ${kind}`);
      return ModelSession.load(path, opts);
    };
    const textEncoder = async (name: "text_encoder" | "text_encoder_2", tokenizerName: "tokenizer" | "tokenizer_2"): Promise<LoadedTextEncoder | undefined> => {
      const weights = parts.weights[name];
      const json = parts.configs[name];
      if (!weights || !json) return undefined;
      const tokenizer = parts[tokenizerName];
      if (!tokenizer)
        throw new ReimagineError(`${parts.name}: ${name} has no ${tokenizerName}; the model folder is incomplete (it needs ${tokenizerName}/)`, "bad_model");
      const config = resolveCLIPTextConfig(json);
      const kind = name === "text_encoder" ? "text-encoder" : "text-encoder-2";
      const build = () => buildCLIPTextModel(weights, config, { quantize: opts.quantize });
      // fp32 keeps its original cache key (no extra)
      const extra = opts.quantize ? quantizeCacheKey(opts.quantize) : undefined;
      return { config, tokenizer, weights, session: await session(kind, config, weights, build, extra) };
    };
    const vaeConfig = resolveVaeConfig(parts.configs.vae);
    const components: Components = {
      unet: { config: resolveUNetConfig(parts.configs.unet) },
      text_encoder: await textEncoder("text_encoder", "tokenizer"),
      text_encoder_2: await textEncoder("text_encoder_2", "tokenizer_2"),
      vae: {
        config: vaeConfig,
        encoder: await session("vae-encoder", vaeConfig, parts.weights.vae, () => buildVaeEncoder(parts.weights.vae, vaeConfig)),
        decoder: await session("vae-decoder", vaeConfig, parts.weights.vae, () => buildVaeDecoder(parts.weights.vae, vaeConfig)),
      },
      scheduler: parts.configs.scheduler,
    };
    let tinyVae: TinyVae | undefined;
    if (parts.tinyVae) {
      const tv = parts.tinyVae;
      const config = resolveTinyVaeConfig(tv.config);
      tinyVae = {
        name: tv.name,
        config,
        encoder: await session("taesd-encoder", config, tv.weights, () => buildTinyEncoder(tv.weights, config)),
        decoder: await session("taesd-decoder", config, tv.weights, () => buildTinyDecoder(tv.weights, config)),
        use: opts.tinyVaeUse ?? "all",
      };
    }
    const model = new StableDiffusionModel(
      parts.name,
      family,
      parts.pipelineConfig ?? pipelineConfigFrom(family, {}),
      components,
      parts.weights.unet,
      session,
      parts.weights.unet.fingerprint().slice(0, 10),
      tinyVae,
      opts.quantize,
      opts.hub,
    );
    await model.unetSession(); // build (or load) the plain UNet now, so the first run does not
    return model;
  }

  async release(): Promise<void> {
    const c = this.components;
    const tiny = this.tinyVae ? [this.tinyVae.encoder, this.tinyVae.decoder] : [];
    const te = [c.text_encoder?.session, c.text_encoder_2?.session].filter((s) => s !== undefined);
    await Promise.all([...te, c.vae.encoder, c.vae.decoder, ...tiny, ...(this.unetLoaded ? [this.unetLoaded.session] : [])].map((s) => s.release()));
    this.unetLoaded = undefined;
  }
}
