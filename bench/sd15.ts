// The architectures the benchmark builds: Stable Diffusion 1.5 from the shipped SD 1.x configs (the public
// runwayml/stable-diffusion-v1-5 repository's config.json files, src/weights/configs/sd1) and SDXL from the
// shipped SDXL base configs (src/weights/configs/sdxl), so the bench needs no download, plus the input
// tensors each component is timed with.
import type { Graph } from "../src/graph/builder.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../src/models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, vaeScaleFactor } from "../src/models/vae.js";
import type { TensorData } from "../src/runtime.js";
import { shippedConfigs } from "../src/weights/checkpoint.js";
import type { WeightSource } from "../src/weights/source.js";

/** The SD 1.x configs Reimagine ships for single-file checkpoints (src/weights/configs/sd1: the
 *  runwayml/stable-diffusion-v1-5 repo's unet/, vae/, text_encoder/ and scheduler/ files). */
const SD1 = shippedConfigs("sd1") as Record<"unet" | "vae" | "text_encoder" | "scheduler", Record<string, unknown>>;
export const UNET_CONFIG = SD1.unet;
export const VAE_CONFIG = SD1.vae;
export const TEXT_ENCODER_CONFIG = SD1.text_encoder as Record<string, unknown> & { max_position_embeddings: number };
export const SCHEDULER_CONFIG = SD1.scheduler;

/** The SDXL base configs Reimagine ships for single-file checkpoints (stabilityai/stable-diffusion-xl-base-1.0). */
export const SDXL = shippedConfigs("sdxl") as Record<"unet" | "vae" | "text_encoder" | "text_encoder_2" | "scheduler" | "model_index", Record<string, unknown>>;

export type Arch = "sd15" | "sdxl";
export const ARCHS: readonly Arch[] = ["sd15", "sdxl"];
export const ARCH_NAMES: Record<Arch, string> = {
  sd15: "SD 1.5 architecture (runwayml/stable-diffusion-v1-5 configs)",
  sdxl: "SDXL base architecture (stabilityai/stable-diffusion-xl-base-1.0 configs)",
};

/** The single-graph components the bench times (img2img is the whole pipeline, see img2img.ts). */
export const GRAPH_COMPONENTS = ["text-encoder", "text-encoder-2", "vae-encode", "unet-b1", "unet-b2", "vae-decode"] as const;
export type GraphComponent = (typeof GRAPH_COMPONENTS)[number];

/** The components an architecture has (SD 1.5 has one text encoder). */
export const archComponents = (arch: Arch): readonly GraphComponent[] =>
  arch === "sdxl" ? GRAPH_COMPONENTS : GRAPH_COMPONENTS.filter((c) => c !== "text-encoder-2");

/** The image side a component is timed at: SDXL's batch-1 UNet runs at half the bench size (512 for 1024). */
export const componentSize = (arch: Arch, name: string, size: number): number => (arch === "sdxl" && name === "unet-b1" ? size / 2 : size);

export interface BenchGraph {
  /** Graph cache kind, the same as StableDiffusionModel.load uses, so the pipeline shares the cache. */
  kind: string;
  config: unknown;
  build: () => Graph;
  /** Inputs for one forward at image size `size` x `size`. */
  feeds: () => Record<string, TensorData>;
}

/** Deterministic values in [-scale, scale] (the numbers do not matter for timing, only that they are finite). */
export function filled(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}

/** Graph, cache key and inputs of one component of SD 1.5 at `size` x `size` pixels. */
export function sd15Graph(name: GraphComponent, size: number, weights: WeightSource): BenchGraph {
  return benchGraph("sd15", name, size, weights);
}

/** Graph, cache key and inputs of one component of `arch` at `size` x `size` pixels (the kinds and resolved
 *  configs StableDiffusionModel.load keys its graphs with, so the pipeline shares the cache). */
export function benchGraph(arch: Arch, name: GraphComponent, size: number, weights: WeightSource): BenchGraph {
  const cfg = arch === "sdxl" ? SDXL : SD1;
  const unet = resolveUNetConfig(cfg.unet);
  const vae = resolveVaeConfig(cfg.vae);
  const te = resolveCLIPTextConfig(cfg.text_encoder);
  const f = vaeScaleFactor(vae);
  const lat = size / f; // latent side: 64 for 512
  const L = te.max_position_embeddings;
  const C = vae.latent_channels;
  switch (name) {
    case "text-encoder":
    case "text-encoder-2": {
      if (name === "text-encoder-2" && arch !== "sdxl") throw new Error("text-encoder-2 is an SDXL component");
      const config = name === "text-encoder" ? te : resolveCLIPTextConfig(SDXL.text_encoder_2);
      return {
        kind: name,
        config,
        build: () => buildCLIPTextModel(weights, config),
        // bos, a few tokens, eos, then padding with eos (SD 1.5's tokenizer pads with <|endoftext|>)
        feeds: () => {
          const ids = new BigInt64Array(L).fill(49407n);
          ids.set([49406n, 320n, 1125n, 539n, 320n, 2368n, 49407n]);
          return { input_ids: { data: ids, dims: [1, L] } };
        },
      };
    }
    case "vae-encode":
      return {
        kind: "vae-encoder",
        config: vae,
        build: () => buildVaeEncoder(weights, vae),
        feeds: () => ({ sample: { data: filled(3 * size * size), dims: [1, 3, size, size] } }),
      };
    case "vae-decode":
      return {
        kind: "vae-decoder",
        config: vae,
        build: () => buildVaeDecoder(weights, vae),
        feeds: () => ({ latent: { data: filled(C * lat * lat, 5), dims: [1, C, lat, lat] } }),
      };
    case "unet-b1":
    case "unet-b2": {
      const B = name === "unet-b1" ? 1 : 2;
      const D = unet.cross_attention_dim as number; // 768 (SD 1.5), 2048 (SDXL: both encoders' states)
      return {
        kind: "unet",
        config: unet,
        build: () => buildUNet2DConditionModel(weights, unet),
        feeds: () => ({
          sample: { data: filled(B * unet.in_channels * lat * lat), dims: [B, unet.in_channels, lat, lat] },
          timestep: { data: new Float32Array(B).fill(500), dims: [B] },
          encoder_hidden_states: { data: filled(B * L * D), dims: [B, L, D] },
          // SDXL's added conditioning: the pooled text embedding and the six size/crop time ids
          ...(unet.addition_embed_type === "text_time"
            ? {
                text_embeds: { data: filled(B * 1280), dims: [B, 1280] },
                time_ids: { data: new Float32Array(B * 6).map((_, i) => [size, size, 0, 0, size, size][i % 6]), dims: [B, 6] },
              }
            : {}),
        }),
      };
    }
  }
}
