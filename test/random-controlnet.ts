// Writes a ControlNet folder (config.json + diffusion_pytorch_model.safetensors) with seeded random weights for a UNet
// config, as diffusers' ControlNetModel.from_unet lays it out: for tests that need a ControlNet the fixtures do not
// ship (SDXL, another family) and for front-end tests that only need a loadable one.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildControlNetModel, resolveControlNetConfig } from "../src/models/controlnet.js";
import { RandomWeights } from "../src/weights/random.js";
import { type TensorToWrite, writeSafetensors } from "../src/weights/safetensors.js";

const UNET_KEYS = [
  "in_channels",
  "flip_sin_to_cos",
  "freq_shift",
  "down_block_types",
  "mid_block_type",
  "block_out_channels",
  "layers_per_block",
  "downsample_padding",
  "mid_block_scale_factor",
  "act_fn",
  "norm_num_groups",
  "norm_eps",
  "cross_attention_dim",
  "transformer_layers_per_block",
  "attention_head_dim",
  "num_attention_heads",
  "use_linear_projection",
  "addition_embed_type",
  "addition_time_embed_dim",
  "upcast_attention",
  "resnet_time_scale_shift",
  "projection_class_embeddings_input_dim",
];

/**
 * A random ControlNet for `unetConfig` (a parsed unet/config.json) in `dir`; `hint` are the hint encoder's channels
 * (one stride-2 conv between each: their count - 1 = log2 of the VAE factor). Returns `dir`.
 * @example randomControlNet(join(tmp, "cn-xl"), readJson("sdxl-tiny/model/unet/config.json"), 7)
 */
export function randomControlNet(dir: string, unetConfig: Record<string, unknown>, seed: number, hint = [8, 16], extra: Record<string, unknown> = {}): string {
  const json: Record<string, unknown> = { _class_name: "ControlNetModel", conditioning_embedding_out_channels: hint, ...extra };
  for (const k of UNET_KEYS) if (unetConfig[k] !== undefined) json[k] = unetConfig[k];
  const weights = new RandomWeights(seed);
  const graph = buildControlNetModel(weights, resolveControlNetConfig(json));
  for (const param of graph.params) param.compute(); // reading invents (and records) every tensor the graph binds
  const tensors: Record<string, TensorToWrite> = {};
  for (const key of weights.keys()) {
    const shape = [...weights.info(key)!.shape];
    tensors[key] = { dtype: "F32", shape, data: weights.read(key, shape) };
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(json, null, 1));
  writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors);
  return dir;
}
