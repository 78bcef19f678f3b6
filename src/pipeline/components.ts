// The loaded parts of a Stable Diffusion model: tokenizer, text encoder, UNet, VAE halves
// and the scheduler config, from a diffusers folder (or pre-opened weight sources).
// Graphs are built once per (config, weights) and cached on disk; sessions stay loaded.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import { cachedGraph, cacheRoot } from "../graph/cache.js";
import type { Graph } from "../graph/builder.js";
import { type QuantizeMode, quantizeCacheKey } from "../graph/quantize.js";
import { buildCLIPTextModel, type CLIPTextConfig, resolveCLIPTextConfig } from "../models/clip-text.js";
import { buildTinyDecoder, buildTinyEncoder, resolveTinyVaeConfig, type TinyVaeConfig } from "../models/taesd.js";
import { buildUNet2DConditionModel, resolveUNetConfig, type UNet2DConditionConfig } from "../models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, type VaeConfig, vaeScaleFactor } from "../models/vae.js";
import { ModelSession, type RuntimeOptions } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import type { WeightSource } from "../weights/source.js";

/** Raw (unresolved) config.json contents of each component. */
export interface ComponentConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  text_encoder: Record<string, unknown>;
  scheduler: Record<string, unknown>;
}

/** Where a model's parts come from before graphs are built. */
export interface ModelParts {
  /** Shown in metadata and errors (repo id, folder or file). */
  name: string;
  configs: ComponentConfigs;
  weights: { unet: WeightSource; vae: WeightSource; text_encoder: WeightSource };
  tokenizer: CLIPTokenizer;
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
    throw new ReimagineError(`tiny VAE folder ${dir} has no config.json: give a diffusers AutoencoderTiny folder or repo id such as madebyollin/taesd`, "bad_model");
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
  /** "int8": UNet transformer and text encoder Linear layers as int8 ("int8-conv": and the UNet's 1x1 convs); faster on CPU, approximate; default exact fp32. */
  quantize?: QuantizeMode;
  /** What a tiny VAE in ModelParts is used for (default "all"). */
  tinyVaeUse?: "all" | "preview";
}

const REQUIRED = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] as const;

/** Opens the parts of a diffusers-layout folder (model_index.json + component folders). */
export function openDiffusersFolder(dir: string, opts: { variant?: string; name?: string } = {}): ModelParts {
  if (!existsSync(dir)) throw new ReimagineError(`model folder not found: ${dir}`, "not_found");
  for (const part of REQUIRED) {
    if (!existsSync(join(dir, part))) {
      throw new ReimagineError(
        `model folder ${dir} has no '${part}/' component: a diffusers Stable Diffusion folder needs ` +
          `${REQUIRED.join(", ")} (download the complete repository, or pass a single-file .safetensors)`,
        "bad_model",
      );
    }
  }
  const configs: ComponentConfigs = {
    unet: readJson(join(dir, "unet", "config.json"), "UNet config"),
    vae: readJson(join(dir, "vae", "config.json"), "VAE config"),
    text_encoder: readJson(join(dir, "text_encoder", "config.json"), "text encoder config"),
    scheduler: readJson(join(dir, "scheduler", "scheduler_config.json"), "scheduler config"),
  };
  return {
    name: opts.name ?? dir,
    configs,
    weights: {
      unet: openComponentWeights(join(dir, "unet"), { variant: opts.variant }),
      vae: openComponentWeights(join(dir, "vae"), { variant: opts.variant }),
      text_encoder: openComponentWeights(join(dir, "text_encoder"), { variant: opts.variant }),
    },
    tokenizer: CLIPTokenizer.fromDir(join(dir, "tokenizer")),
  };
}

/** Loaded, ready-to-run sessions of one model. */
export class StableDiffusionModel {
  private constructor(
    readonly name: string,
    readonly tokenizer: CLIPTokenizer,
    readonly textEncoder: ModelSession,
    readonly unet: ModelSession,
    readonly vaeEncoder: ModelSession,
    readonly vaeDecoder: ModelSession,
    readonly unetConfig: UNet2DConditionConfig,
    readonly vaeConfig: VaeConfig,
    readonly textEncoderConfig: CLIPTextConfig,
    readonly schedulerConfig: Record<string, unknown>,
    /** Short content hash of the UNet weights (A1111's "Model hash" field). */
    readonly hash: string,
    /** AutoencoderTiny, when one was loaded (LoadPipelineOptions.tinyVae). */
    readonly tinyVae?: TinyVae,
    /** Set when the UNet was built quantized (not diffusers-exact). */
    readonly quantize?: QuantizeMode,
  ) {}

  /** Pixel-to-latent downscale (8 for SD): of the VAE that encodes and decodes. */
  get vaeScaleFactor(): number {
    return vaeScaleFactor(this.tinyVae?.use === "all" ? this.tinyVae.config : this.vaeConfig);
  }

  static async load(parts: ModelParts, opts: LoadOptions = {}): Promise<StableDiffusionModel> {
    const root = opts.cacheDir ?? cacheRoot();
    const unetConfig = resolveUNetConfig(parts.configs.unet);
    const vaeConfig = resolveVaeConfig(parts.configs.vae);
    const teConfig = resolveCLIPTextConfig(parts.configs.text_encoder);
    const session = async (kind: string, config: unknown, weights: WeightSource, build: () => Graph, extra?: unknown) => {
      const { path, built } = cachedGraph({ kind, config, weights, extra }, () => {
        opts.onStatus?.(`building ${kind} graph from ${weights.description}`);
        return build();
      }, root);
      if (!built) opts.onStatus?.(`loading ${kind}`);
      return ModelSession.load(path, opts);
    };
    const quantize = opts.quantize;
    const qkey = quantize ? quantizeCacheKey(quantize) : undefined; // fp32 keeps its original cache key
    const textEncoder = await session("text-encoder", teConfig, parts.weights.text_encoder, () =>
      buildCLIPTextModel(parts.weights.text_encoder, teConfig, { quantize }), qkey,
    );
    const unet = await session(
      "unet",
      unetConfig,
      parts.weights.unet,
      () => buildUNet2DConditionModel(parts.weights.unet, unetConfig, { quantize }),
      qkey,
    );
    const vaeEncoder = await session("vae-encoder", vaeConfig, parts.weights.vae, () =>
      buildVaeEncoder(parts.weights.vae, vaeConfig),
    );
    const vaeDecoder = await session("vae-decoder", vaeConfig, parts.weights.vae, () =>
      buildVaeDecoder(parts.weights.vae, vaeConfig),
    );
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
    return new StableDiffusionModel(
      parts.name,
      parts.tokenizer,
      textEncoder,
      unet,
      vaeEncoder,
      vaeDecoder,
      unetConfig,
      vaeConfig,
      teConfig,
      parts.configs.scheduler,
      parts.weights.unet.fingerprint().slice(0, 10),
      tinyVae,
      quantize,
    );
  }

  async release(): Promise<void> {
    const tiny = this.tinyVae ? [this.tinyVae.encoder, this.tinyVae.decoder] : [];
    await Promise.all([this.textEncoder, this.unet, this.vaeEncoder, this.vaeDecoder, ...tiny].map((s) => s.release()));
  }
}
