// Single-file ControlNets as A1111 / ComfyUI ship them: the original (cldm) key layout (`control_model.input_blocks`,
// `middle_block`, `input_hint_block`, `zero_convs`, `middle_block_out`) renamed to diffusers' ControlNetModel keys on
// read, and the architecture read off the tensor shapes. Ref: diffusers loaders/single_file_utils.py
// (convert_controlnet_checkpoint, create_controlnet_diffusers_config_from_ldm); lllyasviel/ControlNet cldm/cldm.py.
import { createHash } from "node:crypto";
import { ReimagineError } from "../errors.js";
import { ldmUnetKeyToDiffusers, type TensorFile } from "./checkpoint.js";
import type { TensorInfo, WeightSource } from "./source.js";

/** The cldm prefix; some files (thibaud's SD 2.1 ControlNets) store the same keys without it. */
export const LDM_CONTROLNET_PREFIX = "control_model.";
const CONVERTER_VERSION = "1";

/** Which key layout a single-file ControlNet uses, from its key names. */
export type ControlNetFileLayout = "ldm" | "ldm-bare" | "diffusers";

/** The layout of a ControlNet `.safetensors`, or undefined when it holds no ControlNet (a UNet, a T2I-Adapter ...). */
export function controlNetFileLayout(keys: string[]): ControlNetFileLayout | undefined {
  const has = (k: string) => keys.includes(k);
  if (has(`${LDM_CONTROLNET_PREFIX}input_hint_block.0.weight`)) return "ldm";
  if (has("input_hint_block.0.weight") && has("time_embed.0.weight")) return "ldm-bare";
  if (has("controlnet_cond_embedding.conv_in.weight")) return "diffusers";
  return undefined;
}

/** input_hint_block.{2j}: conv j of the hint encoder (the odd indices are SiLUs); the last conv is conv_out. */
function hintConv(j: number, last: number): string {
  return j === 0 ? "controlnet_cond_embedding.conv_in" : j === last ? "controlnet_cond_embedding.conv_out" : `controlnet_cond_embedding.blocks.${j - 1}`;
}

/**
 * diffusers ControlNetModel keys -> cldm keys of a single-file ControlNet (`prefix` + input_blocks / middle_block /
 * input_hint_block / zero_convs / middle_block_out / time_embed / label_emb). Throws naming the tensors the
 * converter does not understand.
 */
export function ldmControlNetKeyMap(keys: string[], prefix: string, description: string): Map<string, string> {
  const own = keys.filter((k) => k.startsWith(prefix));
  const ints = (re: RegExp) =>
    own
      .map((k) => re.exec(k.slice(prefix.length)))
      .filter((m) => m !== null)
      .map((m) => +m![1]);
  // layers_per_block: the first downsampler sits at input_blocks.(lpb + 1); with none, every input block is one level
  const ops = ints(/^input_blocks\.(\d+)\.0\.op\.weight$/);
  const lpb = ops.length > 0 ? Math.min(...ops) - 1 : new Set(ints(/^input_blocks\.([1-9]\d*)\./)).size;
  const lastHint = Math.max(-1, ...ints(/^input_hint_block\.(\d+)\.weight$/)) / 2;
  const map = new Map<string, string>();
  const unknown: string[] = [];
  for (const key of own) {
    const rest = key.slice(prefix.length);
    const hint = /^input_hint_block\.(\d+)\.(weight|bias)$/.exec(rest);
    const zero = /^zero_convs\.(\d+)\.0\.(weight|bias)$/.exec(rest);
    const mid = /^middle_block_out\.0\.(weight|bias)$/.exec(rest);
    let name: string | undefined;
    if (hint && +hint[1] % 2 === 0) name = `${hintConv(+hint[1] / 2, lastHint)}.${hint[2]}`;
    else if (zero) name = `controlnet_down_blocks.${zero[1]}.${zero[2]}`;
    else if (mid) name = `controlnet_mid_block.${mid[1]}`;
    else name = ldmUnetKeyToDiffusers(rest, lpb, "add_embedding");
    if (name === undefined) {
      unknown.push(key);
      continue;
    }
    const prev = map.get(name);
    if (prev)
      throw new ReimagineError(
        `${description}: tensors '${prev}' and '${key}' both convert to '${name}'; the file mixes key layouts, re-save it from a clean source`,
        "corrupt_weights",
      );
    map.set(name, key);
  }
  if (unknown.length > 0) {
    throw new ReimagineError(
      `${description}: ${unknown.length} tensor(s) are not understood as a ControlNet (e.g. ${unknown
        .slice(0, 3)
        .map((k) => `'${k}'`)
        .join(", ")}); ` + `this is not a plain SD 1.x/2.x/XL ControlNet (control-LoRA, T2I-Adapter or another architecture?)`,
      "unsupported_model",
    );
  }
  return map;
}

/** A ControlNet file's tensors under diffusers names; data is read (and converted to float32) on demand. */
export class RenamedWeights implements WeightSource {
  readonly description: string;
  constructor(
    private readonly file: TensorFile,
    private readonly map: Map<string, string>,
    what: string,
  ) {
    this.description = `${file.description} [${what}]`;
  }
  keys(): string[] {
    return [...this.map.keys()];
  }
  info(key: string): TensorInfo | undefined {
    const src = this.map.get(key);
    return src === undefined ? undefined : this.file.info(src);
  }
  read(key: string): Float32Array {
    const src = this.map.get(key);
    if (src === undefined)
      throw new ReimagineError(`${this.description}: no tensor '${key}'; the file does not hold this ControlNet weight (wrong config?)`, "weights");
    return this.file.read(src);
  }
  fingerprint(): string {
    return createHash("sha256").update(`${this.file.fingerprint()}:controlnet-ldm:${CONVERTER_VERSION}`).digest("hex");
  }
}

/** The config keys a ControlNet's weights decide, read off the diffusers-named tensor shapes. */
export interface ControlNetShapeConfig {
  in_channels: number;
  conditioning_channels: number;
  conditioning_embedding_out_channels: number[];
  block_out_channels: number[];
  layers_per_block: number;
  down_block_types: string[];
  mid_block_type: string;
  cross_attention_dim: number;
  use_linear_projection: boolean;
  transformer_layers_per_block: number | number[];
  addition_embed_type: "text_time" | null;
  projection_class_embeddings_input_dim: number | null;
}

/**
 * Architecture from shapes only (a WeightSource with diffusers names: a converted cldm file, a diffusers-keyed
 * single file or a folder). Throws when a tensor every ControlNet has is missing.
 *
 * @example
 *   controlNetShapeConfig(weights).cross_attention_dim; // 768 for an SD 1.5 ControlNet
 */
export function controlNetShapeConfig(w: Pick<WeightSource, "keys" | "info" | "description">): ControlNetShapeConfig {
  const keys = w.keys();
  const shape = (key: string) => {
    const s = w.info(key)?.shape;
    if (!s) throw new ReimagineError(`${w.description}: no tensor '${key}'; the file is not a complete ControlNet`, "unsupported_model");
    return s;
  };
  const count = (re: RegExp) => new Set(keys.map((k) => re.exec(k)?.[1]).filter((x) => x !== undefined)).size;
  const levels = count(/^down_blocks\.(\d+)\./);
  const hintBlocks = count(/^controlnet_cond_embedding\.blocks\.(\d+)\.weight$/);
  const attn = (p: string) => keys.some((k) => k.startsWith(`${p}.attentions.0.`));
  const depth = (p: string) => count(new RegExp(`^${p.replace(/\./g, "\\.")}\\.attentions\\.0\\.transformer_blocks\\.(\\d+)\\.`));
  const toK = keys.find((k) => k.endsWith(".attn2.to_k.weight"));
  const projIn = keys.find((k) => k.endsWith(".proj_in.weight"));
  const levelsWithAttn = Array.from({ length: levels }, (_, i) => attn(`down_blocks.${i}`));
  const tlpb = levelsWithAttn.map((a, i) => (a ? depth(`down_blocks.${i}`) : 1));
  const add = w.info("add_embedding.linear_1.weight");
  return {
    in_channels: shape("conv_in.weight")[1],
    conditioning_channels: shape("controlnet_cond_embedding.conv_in.weight")[1],
    conditioning_embedding_out_channels: [
      shape("controlnet_cond_embedding.conv_in.weight")[0],
      ...Array.from({ length: hintBlocks / 2 }, (_, j) => shape(`controlnet_cond_embedding.blocks.${2 * j + 1}.weight`)[0]),
    ],
    block_out_channels: Array.from({ length: levels }, (_, i) => shape(`down_blocks.${i}.resnets.0.conv1.weight`)[0]),
    layers_per_block: count(/^down_blocks\.0\.resnets\.(\d+)\./),
    down_block_types: levelsWithAttn.map((a) => (a ? "CrossAttnDownBlock2D" : "DownBlock2D")),
    mid_block_type: attn("mid_block") ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D",
    cross_attention_dim: toK ? shape(toK)[1] : 0,
    use_linear_projection: projIn ? shape(projIn).length === 2 : false,
    // diffusers' mid block takes transformer_layers_per_block[-1]: keep the list when the last level says so
    transformer_layers_per_block: tlpb.every((d) => d === tlpb[0]) ? tlpb[0] : tlpb,
    addition_embed_type: add ? "text_time" : null,
    projection_class_embeddings_input_dim: add ? add.shape[1] : null,
  };
}
