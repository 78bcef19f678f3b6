// Opens a ControlNet: a diffusers folder (a pipeline's `controlnet/`, or a ControlNet repo such as
// lllyasviel/control_v11p_sd15_scribble), or one `.safetensors` file (A1111 / ComfyUI cldm keys, or diffusers keys)
// whose architecture is read off its shapes; tells its family so a ControlNet for another base model is refused.
// Ref: diffusers ControlNetModel.from_pretrained / from_single_file; sd-webui-controlnet's model loading.
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { ReimagineError } from "../errors.js";
import { type ControlNetConfig, resolveControlNetConfig } from "../models/controlnet.js";
import type { UNet2DConditionConfig } from "../models/unet.js";
import type { TensorFile } from "./checkpoint.js";
import { controlNetFileLayout, controlNetShapeConfig, LDM_CONTROLNET_PREFIX, ldmControlNetKeyMap, RenamedWeights } from "./controlnet-ldm.js";
import { openComponentWeights, readJson } from "./diffusers.js";
import { SafetensorsFile } from "./safetensors.js";
import type { WeightSource } from "./source.js";

/** The base-model family a ControlNet (or a UNet) belongs to, from its cross-attention width and embeddings. */
export type ControlNetFamily = "sd1" | "sd2" | "sdxl" | "unknown";

const FAMILY_LABEL: Record<ControlNetFamily, string> = { sd1: "SD 1.x", sd2: "SD 2.x", sdxl: "SDXL", unknown: "an unknown family" };

/**
 * SD 1.x reads 768-wide CLIP-L states, SD 2.x 1024-wide OpenCLIP-H, SDXL 2048-wide (both encoders) plus text_time.
 * @example familyOf({ cross_attention_dim: 768, addition_embed_type: null }); // "sd1"
 */
export function familyOf(c: { cross_attention_dim: number | number[]; addition_embed_type: string | null }): ControlNetFamily {
  const ctx = Array.isArray(c.cross_attention_dim) ? c.cross_attention_dim[0] : c.cross_attention_dim;
  if (ctx === 2048 && c.addition_embed_type === "text_time") return "sdxl";
  if (ctx === 768 && c.addition_embed_type === null) return "sd1";
  if (ctx === 1024 && c.addition_embed_type === null) return "sd2";
  return "unknown";
}

export interface ControlNetParts {
  /** For logs and the A1111 model list: the folder or file name without extension. */
  name: string;
  config: ControlNetConfig;
  weights: WeightSource;
  family: ControlNetFamily;
  /** One line: where it came from, its layout and family. */
  description: string;
  /** Closes open files; the weights cannot be read afterwards. */
  close(): void;
}

export interface OpenControlNetOptions {
  /** A config.json (parsed) for a single file whose architecture the shapes do not fully say (e.g. a tiny test model). */
  config?: Record<string, unknown>;
  /** Weight variant in a diffusers folder ("fp16"). */
  variant?: string;
}

const PICKLE = /\.(ckpt|pt|pth|bin|pkl)$/i;

/**
 * Opens a ControlNet from a diffusers folder (a ControlNet repo, or a pipeline folder with `controlnet/`) or a
 * `.safetensors` file (A1111/ComfyUI `control_model.*` keys, bare cldm keys, or diffusers keys). Pickle files
 * (.pth/.ckpt/...) are refused.
 *
 * @example
 *   const cn = openControlNet("models/control_v11p_sd15_scribble.safetensors");
 *   cn.family; // "sd1"
 *   buildControlNetModel(cn.weights, cn.config);
 */
export function openControlNet(ref: string, opts: OpenControlNetOptions = {}): ControlNetParts {
  if (PICKLE.test(ref)) {
    throw new ReimagineError(
      `${ref}: pickle files (.pth/.ckpt/.pt/.bin) can execute arbitrary code when loaded, so ControlNets in them are refused. ` +
        `Download the .safetensors version (e.g. comfyanonymous/ControlNet-v1-1_fp16_safetensors or the diffusers repo), or convert it once in a sandbox: ` +
        `python -c "import torch, safetensors.torch as st; sd = torch.load('model.pth', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); ` +
        `st.save_file({k: v.clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}, 'model.safetensors')"`,
      "unsafe_format",
    );
  }
  if (!existsSync(ref)) {
    throw new ReimagineError(
      `ControlNet '${ref}' not found: give a ControlNet folder (config.json + diffusion_pytorch_model.safetensors), a .safetensors file or a Hugging Face repo id such as lllyasviel/control_v11p_sd15_scribble`,
      "not_found",
    );
  }
  if (statSync(ref).isDirectory()) return openControlNetFolder(ref, opts);
  if (!/\.safetensors$/i.test(ref))
    throw new ReimagineError(`ControlNet '${ref}': unknown file type; give a .safetensors file or a diffusers folder`, "invalid_input");
  const file = SafetensorsFile.open(ref);
  try {
    return controlNetFromFile(file, basename(ref).replace(/\.safetensors$/i, ""), opts, () => file.close());
  } catch (e) {
    file.close();
    throw e;
  }
}

function openControlNetFolder(dir: string, opts: OpenControlNetOptions): ControlNetParts {
  const own = existsSync(join(dir, "config.json"));
  const sub = join(dir, "controlnet");
  if (!own && !existsSync(join(sub, "config.json"))) {
    throw new ReimagineError(
      `${dir}: no ControlNet here: expected config.json + diffusion_pytorch_model.safetensors, or a pipeline folder with controlnet/`,
      "not_found",
    );
  }
  const cnDir = own ? dir : sub;
  const json = readJson(join(cnDir, "config.json"), "ControlNet config");
  if (typeof json._class_name === "string" && json._class_name !== "ControlNetModel") {
    throw new ReimagineError(`${cnDir}/config.json is a ${json._class_name}, not a ControlNetModel; point at a ControlNet folder`, "unsupported_model");
  }
  const config = resolveControlNetConfig(json);
  const weights = openComponentWeights(cnDir, { variant: opts.variant });
  const family = familyOf(config);
  const name = basename(dir.replace(/[\\/]+$/, ""));
  return {
    name,
    config,
    weights,
    family,
    description: `${cnDir}: diffusers ControlNet, ${FAMILY_LABEL[family]}`,
    close: () => (weights as { close?: () => void }).close?.(),
  };
}

/** The config shipped for a family (src/weights/configs/controlnet/<family>.json). */
export function shippedControlNetConfig(family: Exclude<ControlNetFamily, "unknown">): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`./configs/controlnet/${family}.json`, import.meta.url), "utf8")) as Record<string, unknown>;
}

/**
 * A ControlNet from an open tensor file (the part of openControlNet after the file is open; shape-only files work
 * for detection). The config: `opts.config`, else the family's shipped config with every key the shapes decide
 * taken from the file; a file named like a shuffle ControlNet gets global pooling, as sd-webui-controlnet does.
 */
export function controlNetFromFile(file: TensorFile, name: string, opts: OpenControlNetOptions = {}, close: () => void = () => undefined): ControlNetParts {
  const keys = file.keys();
  const layout = controlNetFileLayout(keys);
  if (!layout) {
    const hint = keys.some((k) => k.startsWith("model.diffusion_model."))
      ? " (it looks like a Stable Diffusion checkpoint: pass it as the model)"
      : keys.some((k) => k.startsWith("adapter."))
        ? " (it looks like a T2I-Adapter, which is not supported)"
        : "";
    throw new ReimagineError(
      `${file.description}: not a ControlNet: no control_model.input_hint_block / controlnet_cond_embedding tensors${hint}`,
      "unsupported_model",
    );
  }
  const map =
    layout === "diffusers" ? new Map(keys.map((k) => [k, k])) : ldmControlNetKeyMap(keys, layout === "ldm" ? LDM_CONTROLNET_PREFIX : "", file.description);
  const weights = new RenamedWeights(file, map, layout === "diffusers" ? "diffusers ControlNet keys" : "cldm ControlNet keys as diffusers");
  const shapes = controlNetShapeConfig(weights);
  const detected = familyOf(shapes);
  let json: Record<string, unknown>;
  let how: string;
  if (opts.config) {
    json = opts.config;
    how = "explicit config";
  } else {
    if (detected === "unknown") {
      throw new ReimagineError(
        `${file.description}: a ControlNet with cross-attention width ${shapes.cross_attention_dim}${shapes.addition_embed_type ? " and text_time" : ""} matches no known family (SD 1.x 768, SD 2.x 1024, SDXL 2048); ` +
          `put its config.json beside it in a folder (config.json + diffusion_pytorch_model.safetensors) and load the folder`,
        "unsupported_model",
      );
    }
    const base = shippedControlNetConfig(detected);
    // heads are not in the weights: 8 per block for SD 1.x, 64-wide heads for SD 2.x / XL (as their configs say)
    const heads = detected === "sd1" ? base.attention_head_dim : shapes.block_out_channels.map((c) => c / 64);
    json = { ...base, ...shapes, attention_head_dim: heads, global_pool_conditions: /shuffle/i.test(name) };
    how = `architecture from tensor shapes`;
  }
  const config = resolveControlNetConfig(json);
  const family = familyOf(config);
  return { name, config, weights, family, description: `${file.description}: ${layout} ControlNet, ${FAMILY_LABEL[family]} (${how})`, close };
}

/**
 * Refuses a ControlNet that cannot condition this UNet (another family, or another encoder layout), in one line
 * naming both. `modelName` is the base model as the user named it.
 *
 * @example
 *   checkControlNetFits(cn, unetConfig, "stabilityai/sd-turbo");
 *   // ReimagineError: ControlNet 'control_v11p_sd15_scribble' is for SD 1.x (cross_attention_dim 768) but the model 'stabilityai/sd-turbo' is SD 2.x (1024); ...
 */
export function checkControlNetFits(cn: Pick<ControlNetParts, "name" | "config">, unet: UNet2DConditionConfig, modelName: string): void {
  const a = cn.config;
  const cnFamily = familyOf(a);
  const uFamily = familyOf(unet);
  const uCtx = Array.isArray(unet.cross_attention_dim) ? unet.cross_attention_dim[0] : unet.cross_attention_dim;
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);
  const uLayers = Array.isArray(unet.layers_per_block) ? unet.layers_per_block : unet.block_out_channels.map(() => unet.layers_per_block as number);
  const fits =
    a.cross_attention_dim === uCtx &&
    a.addition_embed_type === unet.addition_embed_type &&
    same(a.block_out_channels, unet.block_out_channels) &&
    uLayers.every((l) => l === a.layers_per_block) &&
    a.in_channels === unet.in_channels;
  if (fits) return;
  const what = (f: ControlNetFamily, ctx: number) => `${FAMILY_LABEL[f]} (cross_attention_dim ${ctx})`;
  if (cnFamily !== uFamily || a.cross_attention_dim !== uCtx) {
    throw new ReimagineError(
      `ControlNet '${cn.name}' is for ${what(cnFamily, a.cross_attention_dim)} but the model '${modelName}' is ${what(uFamily, uCtx)}; use a ControlNet made for ${FAMILY_LABEL[uFamily]}`,
      "controlnet_mismatch",
    );
  }
  throw new ReimagineError(
    `ControlNet '${cn.name}' does not match the model '${modelName}' (both ${FAMILY_LABEL[uFamily]}, but blocks ${JSON.stringify(a.block_out_channels)} x ${a.layers_per_block} vs ${JSON.stringify(unet.block_out_channels)} x ${JSON.stringify(unet.layers_per_block)}, in_channels ${a.in_channels} vs ${unet.in_channels}); use a ControlNet trained for this model's architecture`,
    "controlnet_mismatch",
  );
}
