// Writes a ControlNet folder (config.json + diffusion_pytorch_model.safetensors) with seeded random weights for a UNet
// config, as diffusers' ControlNetModel.from_unet lays it out: for tests that need a ControlNet the fixtures do not
// ship (SDXL, another family) and for front-end tests that only need a loadable one.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildControlNetModel, resolveControlNetConfig, CONTROLNET_UNET_KEYS } from "../src/models/controlnet.js";
import { RandomWeights } from "../src/weights/random.js";
import { type TensorToWrite, writeSafetensors } from "../src/weights/safetensors.js";

/**
 * A random ControlNet for `unetConfig` (a parsed unet/config.json) in `dir`; `hint` are the hint encoder's channels
 * (one stride-2 conv between each: their count - 1 = log2 of the VAE factor). Returns `dir`.
 * @example randomControlNet(join(tmp, "cn-xl"), readJson("sdxl-tiny/model/unet/config.json"), 7)
 */
export function randomControlNet(dir: string, unetConfig: Record<string, unknown>, seed: number, hint = [8, 16], extra: Record<string, unknown> = {}): string {
  const json: Record<string, unknown> = { _class_name: "ControlNetModel", conditioning_embedding_out_channels: hint, ...extra };
  for (const k of CONTROLNET_UNET_KEYS) if (unetConfig[k] !== undefined) json[k] = unetConfig[k]; // what ControlNetModel.from_unet copies
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
