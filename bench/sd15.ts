// The Stable Diffusion 1.5 architecture the benchmark builds: config.json values of the public
// runwayml/stable-diffusion-v1-5 repository (unet/, vae/, text_encoder/, scheduler/), written out
// here so the bench needs no download, plus the input tensors each component is timed with.
import type { Graph } from "../src/graph/builder.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../src/models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, vaeScaleFactor } from "../src/models/vae.js";
import type { TensorData } from "../src/runtime.js";
import type { WeightSource } from "../src/weights/source.js";

/** runwayml/stable-diffusion-v1-5 unet/config.json */
export const UNET_CONFIG = {
  _class_name: "UNet2DConditionModel",
  _diffusers_version: "0.6.0",
  act_fn: "silu",
  attention_head_dim: 8,
  block_out_channels: [320, 640, 1280, 1280],
  center_input_sample: false,
  cross_attention_dim: 768,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  downsample_padding: 1,
  flip_sin_to_cos: true,
  freq_shift: 0,
  in_channels: 4,
  layers_per_block: 2,
  mid_block_scale_factor: 1,
  norm_eps: 1e-5,
  norm_num_groups: 32,
  out_channels: 4,
  sample_size: 64,
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
};

/** runwayml/stable-diffusion-v1-5 vae/config.json */
export const VAE_CONFIG = {
  _class_name: "AutoencoderKL",
  _diffusers_version: "0.6.0",
  act_fn: "silu",
  block_out_channels: [128, 256, 512, 512],
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  in_channels: 3,
  latent_channels: 4,
  layers_per_block: 2,
  norm_num_groups: 32,
  out_channels: 3,
  sample_size: 512,
  up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
};

/** runwayml/stable-diffusion-v1-5 text_encoder/config.json (CLIP ViT-L/14 text tower) */
export const TEXT_ENCODER_CONFIG = {
  _name_or_path: "openai/clip-vit-large-patch14",
  architectures: ["CLIPTextModel"],
  attention_dropout: 0.0,
  bos_token_id: 0,
  dropout: 0.0,
  eos_token_id: 2,
  hidden_act: "quick_gelu",
  hidden_size: 768,
  initializer_factor: 1.0,
  initializer_range: 0.02,
  intermediate_size: 3072,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 77,
  model_type: "clip_text_model",
  num_attention_heads: 12,
  num_hidden_layers: 12,
  pad_token_id: 1,
  projection_dim: 768,
  torch_dtype: "float32",
  transformers_version: "4.22.0.dev0",
  vocab_size: 49408,
};

/** runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json */
export const SCHEDULER_CONFIG = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.6.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

/** The single-graph components the bench times (img2img is the whole pipeline, see img2img.ts). */
export const GRAPH_COMPONENTS = ["text-encoder", "vae-encode", "unet-b1", "unet-b2", "vae-decode"] as const;
export type GraphComponent = (typeof GRAPH_COMPONENTS)[number];

export interface BenchGraph {
  /** Graph cache kind, the same as StableDiffusionModel.load uses, so the pipeline shares the cache. */
  kind: string;
  config: unknown;
  build: () => Graph;
  /** Inputs for one forward at image size `size` x `size`. */
  feeds: () => Record<string, TensorData>;
}

/** Deterministic values in [-scale, scale] (the numbers do not matter for timing, only that they are finite). */
function filled(n: number, scale = 1): Float32Array {
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
  const unet = resolveUNetConfig(UNET_CONFIG);
  const vae = resolveVaeConfig(VAE_CONFIG);
  const te = resolveCLIPTextConfig(TEXT_ENCODER_CONFIG);
  const f = vaeScaleFactor(vae);
  const lat = size / f; // latent side: 64 for 512
  const L = te.max_position_embeddings;
  const C = vae.latent_channels;
  switch (name) {
    case "text-encoder":
      return {
        kind: "text-encoder",
        config: te,
        build: () => buildCLIPTextModel(weights, te),
        // bos, a few tokens, eos, then padding with eos (SD 1.5's tokenizer pads with <|endoftext|>)
        feeds: () => {
          const ids = new BigInt64Array(L).fill(49407n);
          ids.set([49406n, 320n, 1125n, 539n, 320n, 2368n, 49407n]);
          return { input_ids: { data: ids, dims: [1, L] } };
        },
      };
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
      const D = te.hidden_size;
      return {
        kind: "unet",
        config: unet,
        build: () => buildUNet2DConditionModel(weights, unet),
        feeds: () => ({
          sample: { data: filled(B * unet.in_channels * lat * lat), dims: [B, unet.in_channels, lat, lat] },
          timestep: { data: new Float32Array(B).fill(500), dims: [B] },
          encoder_hidden_states: { data: filled(B * L * D), dims: [B, L, D] },
        }),
      };
    }
  }
}
