// UNet2DConditionModel (SD 1.x / 2.x; SDXL's text_time embedding has a marked place) as an ONNX graph.
// Ref: diffusers models/unets/unet_2d_condition.py (UNet2DConditionModel), unet_2d_blocks.py
// (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D) and
// models/embeddings.py (get_timestep_embedding, TimestepEmbedding). Notation: B batch, C channels, L tokens.
import { ReimagineError } from "../errors.js";
import { Graph, type Value } from "../graph/builder.js";
import { conv2d, groupNorm, linear } from "../graph/layers.js";
import { type QuantizeMode, quantizeUNet } from "../graph/quantize.js";
import type { WeightSource } from "../weights/source.js";
import { diffusersActivation, downsample2D, resnetBlock2D, transformer2DModel, upsample2D } from "./blocks.js";

/** unet/config.json, keys and defaults as diffusers' UNet2DConditionModel.__init__. */
export interface UNet2DConditionConfig {
  sample_size: number | number[] | null;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: string[];
  mid_block_type: string | null;
  up_block_types: string[];
  only_cross_attention: boolean | boolean[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: string;
  norm_num_groups: number | null;
  norm_eps: number;
  cross_attention_dim: number | number[];
  /** Per down block: an int, or (SDXL-style) a per-layer list. */
  transformer_layers_per_block: number | (number | number[])[];
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  encoder_hid_dim: number | null;
  encoder_hid_dim_type: string | null;
  /** In SD configs this is really the number of heads (diffusers: `num_attention_heads or attention_head_dim`). */
  attention_head_dim: number | number[];
  num_attention_heads: number | number[] | null;
  dual_cross_attention: boolean;
  use_linear_projection: boolean;
  class_embed_type: string | null;
  addition_embed_type: string | null;
  addition_time_embed_dim: number | null;
  num_class_embeds: number | null;
  upcast_attention: boolean;
  resnet_time_scale_shift: string;
  resnet_skip_time_act: boolean;
  resnet_out_scale_factor: number;
  time_embedding_type: string;
  time_embedding_dim: number | null;
  time_embedding_act_fn: string | null;
  timestep_post_act: string | null;
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  projection_class_embeddings_input_dim: number | null;
  attention_type: string;
  class_embeddings_concat: boolean;
  mid_block_only_cross_attention: boolean | null;
  cross_attention_norm: string | null;
  addition_embed_type_num_heads: number;
}

const DEFAULTS: UNet2DConditionConfig = {
  sample_size: null,
  in_channels: 4,
  out_channels: 4,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  mid_block_type: "UNetMidBlock2DCrossAttn",
  up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  only_cross_attention: false,
  block_out_channels: [320, 640, 1280, 1280],
  layers_per_block: 2,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  dropout: 0,
  act_fn: "silu",
  norm_num_groups: 32,
  norm_eps: 1e-5,
  cross_attention_dim: 1280,
  transformer_layers_per_block: 1,
  reverse_transformer_layers_per_block: null,
  encoder_hid_dim: null,
  encoder_hid_dim_type: null,
  attention_head_dim: 8,
  num_attention_heads: null,
  dual_cross_attention: false,
  use_linear_projection: false,
  class_embed_type: null,
  addition_embed_type: null,
  addition_time_embed_dim: null,
  num_class_embeds: null,
  upcast_attention: false,
  resnet_time_scale_shift: "default",
  resnet_skip_time_act: false,
  resnet_out_scale_factor: 1,
  time_embedding_type: "positional",
  time_embedding_dim: null,
  time_embedding_act_fn: null,
  timestep_post_act: null,
  time_cond_proj_dim: null,
  conv_in_kernel: 3,
  conv_out_kernel: 3,
  projection_class_embeddings_input_dim: null,
  attention_type: "default",
  class_embeddings_concat: false,
  mid_block_only_cross_attention: null,
  cross_attention_norm: null,
  addition_embed_type_num_heads: 64,
};

const bad = (msg: string) => new ReimagineError(`UNet config.json: ${msg}`, "bad_config");
const unsupported = (msg: string) => new ReimagineError(`UNet config.json: ${msg}`, "unsupported");

/**
 * Applies diffusers' defaults to a parsed unet/config.json (keys starting with "_" and unknown keys
 * are ignored, as diffusers does) and checks what diffusers' `_check_config` checks.
 *
 * @example
 *   const cfg = resolveUNetConfig(readJson("sd15/unet/config.json", "UNet config"));
 */
export function resolveUNetConfig(json: Record<string, unknown>): UNet2DConditionConfig {
  const cfg = { ...DEFAULTS } as Record<string, unknown>;
  for (const [k, v] of Object.entries(json)) {
    if (k in DEFAULTS) cfg[k] = v;
  }
  const c = cfg as unknown as UNet2DConditionConfig;
  const n = c.down_block_types?.length;
  const isInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
  if (!Array.isArray(c.down_block_types) || !Array.isArray(c.up_block_types) || !Array.isArray(c.block_out_channels)) {
    throw bad("down_block_types, up_block_types and block_out_channels must be lists");
  }
  if (c.up_block_types.length !== n) throw bad(`${n} down_block_types but ${c.up_block_types.length} up_block_types; they must match`);
  if (c.block_out_channels.length !== n) throw bad(`${c.block_out_channels.length} block_out_channels for ${n} down blocks; they must match`);
  if (!c.block_out_channels.every(isInt)) throw bad(`block_out_channels must be positive integers, got ${JSON.stringify(c.block_out_channels)}`);
  for (const key of ["only_cross_attention", "attention_head_dim", "cross_attention_dim", "layers_per_block", "num_attention_heads"] as const) {
    const v = c[key];
    if (Array.isArray(v) && v.length !== n) throw bad(`${key} has ${v.length} entries for ${n} down blocks; they must match`);
  }
  for (const key of ["in_channels", "out_channels", "conv_in_kernel", "conv_out_kernel"] as const) {
    if (!isInt(c[key])) throw bad(`${key} must be a positive integer, got ${JSON.stringify(c[key])}`);
  }
  if (Array.isArray(c.transformer_layers_per_block) && c.reverse_transformer_layers_per_block === null) {
    if (c.transformer_layers_per_block.some(Array.isArray)) {
      throw bad("transformer_layers_per_block has per-layer lists, so reverse_transformer_layers_per_block is required (asymmetrical UNet)");
    }
  }
  return c;
}

/** Refuses config features this engine does not build yet, naming the key. */
function checkSupported(c: UNet2DConditionConfig): void {
  if (c.num_attention_heads !== null) {
    throw unsupported("num_attention_heads is set; diffusers itself refuses it (attention_head_dim holds the head count in UNet2DConditionModel configs); remove it and set attention_head_dim");
  }
  if (c.time_embedding_type !== "positional") throw unsupported(`time_embedding_type '${c.time_embedding_type}' is not supported (only "positional")`);
  if (c.time_cond_proj_dim !== null) throw unsupported("time_cond_proj_dim is set (an LCM-distilled UNet with a guidance embedding); not supported yet, use a regular UNet (LCM-LoRA works)");
  if (c.class_embed_type !== null || c.num_class_embeds !== null) throw unsupported("class embeddings (class_embed_type / num_class_embeds) are not supported; this is not an SD 1.x/2.x UNet");
  if (c.encoder_hid_dim !== null || c.encoder_hid_dim_type !== null) throw unsupported("encoder_hid_dim / encoder_hid_dim_type are not supported; this is not an SD 1.x/2.x UNet");
  if (c.dual_cross_attention) throw unsupported("dual_cross_attention is not supported");
  const onlyCross = Array.isArray(c.only_cross_attention) ? c.only_cross_attention : [c.only_cross_attention];
  if (onlyCross.some(Boolean) || c.mid_block_only_cross_attention) throw unsupported("only_cross_attention is not supported");
  if (c.attention_type !== "default") throw unsupported(`attention_type '${c.attention_type}' is not supported (only "default"; GLIGEN is not)`);
  if (c.cross_attention_norm !== null) throw unsupported(`cross_attention_norm '${c.cross_attention_norm}' is not supported`);
  if (c.resnet_time_scale_shift !== "default" && c.resnet_time_scale_shift !== "scale_shift") {
    throw unsupported(`resnet_time_scale_shift '${c.resnet_time_scale_shift}' is not supported (use "default" or "scale_shift")`);
  }
  if (c.norm_num_groups === null) throw unsupported("norm_num_groups null is not supported");
  const cross = perBlock(c.cross_attention_dim, c.down_block_types.length);
  if (cross.some((d) => d !== cross[0])) throw unsupported(`per-block cross_attention_dim ${JSON.stringify(c.cross_attention_dim)} is not supported; every block must read the same encoder_hidden_states`);
}

const perBlock = <T>(v: T | T[], n: number): T[] => (Array.isArray(v) ? [...v] : Array.from({ length: n }, () => v));

/** One value per layer of a block: an int repeats, a list is taken as is. */
const perLayer = (v: number | number[], layers: number, where: string): number[] => {
  const out = Array.isArray(v) ? v : Array.from({ length: layers }, () => v);
  if (out.length !== layers) throw bad(`${where}: ${out.length} transformer layer counts for ${layers} layers`);
  return out;
};

/**
 * float32 frequency table of diffusers `get_timestep_embedding` (max_period 10000), rounded at
 * each op exactly as torch computes it in float32: exp((-ln(10000) * i) / (half - shift)).
 */
export function timestepFrequencies(half: number, freqShift: number): Float32Array {
  const f = Math.fround;
  const negLog = f(-Math.log(10000));
  const denom = f(half - freqShift);
  return Float32Array.from({ length: half }, (_, i) => f(Math.exp(f(f(negLog * i) / denom))));
}

/** Timesteps + TimestepEmbedding: [B] float timesteps -> [B, time_embed_dim]. */
function timeEmbedding(g: Graph, c: UNet2DConditionConfig, timestep: Value): { emb: Value; dim: number } {
  const channels = c.block_out_channels[0];
  const timeEmbedDim = c.time_embedding_dim ?? channels * 4;
  const half = Math.floor(channels / 2);
  const freqs = g.constant(timestepFrequencies(half, c.freq_shift), [1, half]);
  const args = g.mul(g.op("Unsqueeze", [timestep, g.ints([1])]), freqs); // [B, half]
  const sin = g.op("Sin", [args]);
  const cos = g.op("Cos", [args]);
  let tEmb = g.concat(c.flip_sin_to_cos ? [cos, sin] : [sin, cos], -1); // [B, 2*half]
  if (channels % 2 === 1) tEmb = g.op("Pad", [tEmb, g.ints([0, 0, 0, 1])]); // [B, channels]

  let emb = linear(g, "time_embedding.linear_1", tEmb, channels, timeEmbedDim); // [B, T]
  emb = diffusersActivation(g, c.act_fn, emb);
  emb = linear(g, "time_embedding.linear_2", emb, timeEmbedDim, timeEmbedDim); // [B, T]
  if (c.timestep_post_act !== null) emb = diffusersActivation(g, c.timestep_post_act, emb);

  // Class / addition embeddings are added here (diffusers get_class_embed / get_aug_embed).
  // SDXL's addition_embed_type "text_time" belongs here: add_embedding(concat(text_embeds,
  // add_time_proj(time_ids))) added to emb, with text_embeds / time_ids as extra graph inputs.
  if (c.addition_embed_type !== null) {
    throw unsupported(`addition_embed_type '${c.addition_embed_type}' is not supported yet (SDXL "text_time" is planned); use an SD 1.x/2.x UNet`);
  }

  if (c.time_embedding_act_fn !== null) emb = diffusersActivation(g, c.time_embedding_act_fn, emb);
  return { emb, dim: timeEmbedDim };
}

/** Per-block settings shared by the resnets and transformers of one UNet block. */
interface BlockContext {
  temb: Value; // [B, T]
  ehs: Value; // [B, L, crossDim]
  tembChannels: number;
  groups: number;
  eps: number;
  act: string;
  timeEmbeddingNorm: "default" | "scale_shift";
  crossDim: number;
  useLinearProjection: boolean;
}

function resnet(g: Graph, k: BlockContext, prefix: string, x: Value, inC: number, outC: number, outputScaleFactor = 1): Value {
  return resnetBlock2D(g, prefix, x, k.temb, inC, outC, {
    groups: k.groups,
    eps: k.eps,
    tembChannels: k.tembChannels,
    act: k.act,
    timeEmbeddingNorm: k.timeEmbeddingNorm,
    outputScaleFactor,
  });
}

function transformer(g: Graph, k: BlockContext, prefix: string, x: Value, channels: number, heads: number, layers: number): Value {
  return transformer2DModel(g, prefix, x, k.ehs, {
    inChannels: channels,
    heads,
    headDim: Math.floor(channels / heads), // diffusers: out_channels // num_attention_heads
    numLayers: layers,
    crossAttentionDim: k.crossDim,
    groups: k.groups,
    useLinearProjection: k.useLinearProjection,
  });
}

export interface UNetBuildOptions {
  /** int8 DynamicQuantizeMatMul for the transformer blocks' Linear layers ("int8-conv": and 1x1 convs); faster, approximate. */
  quantize?: QuantizeMode;
}

const stripRes = (t: string) => (t.startsWith("UNetRes") ? t.slice(7) : t);

/**
 * Builds diffusers' UNet2DConditionModel.
 * Inputs: `sample` [B, in_channels, H, W] (any H, W; sizes that are not a multiple of 2^downsamplers
 * take diffusers' `upsample_size` path), `timestep` [B] float32 (one per batch item; fractional allowed),
 * `encoder_hidden_states` [B, L, cross_attention_dim]. Output: `out_sample` [B, out_channels, H, W].
 *
 * @example
 *   const g = buildUNet2DConditionModel(openComponentWeights("sd15/unet"), resolveUNetConfig(json));
 *   g.save("cache/unet");
 */
export function buildUNet2DConditionModel(weights: WeightSource, config: UNet2DConditionConfig, opts: UNetBuildOptions = {}): Graph {
  const c = config;
  checkSupported(c);
  const nBlocks = c.down_block_types.length;
  const boc = c.block_out_channels;
  const heads = perBlock(c.attention_head_dim, nBlocks); // num_attention_heads or attention_head_dim
  const layers = perBlock(c.layers_per_block, nBlocks);
  const tlpb = perBlock<number | number[]>(c.transformer_layers_per_block, nBlocks);
  const crossDim = perBlock(c.cross_attention_dim, nBlocks)[0];

  const g = new Graph(weights, "UNet2DConditionModel");
  if (opts.quantize) quantizeUNet(g, opts.quantize); // opt-in: not diffusers-exact
  const sample = g.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["batch"]);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", "sequence", crossDim]);

  const { emb, dim: tembChannels } = timeEmbedding(g, c, timestep);
  const k: BlockContext = {
    temb: emb,
    ehs,
    tembChannels,
    groups: c.norm_num_groups!,
    eps: c.norm_eps,
    act: c.act_fn,
    timeEmbeddingNorm: c.resnet_time_scale_shift as "default" | "scale_shift",
    crossDim,
    useLinearProjection: c.use_linear_projection,
  };

  // 1. input
  let h = sample;
  if (c.center_input_sample) h = g.op("Sub", [g.mul(h, g.scalar(2)), g.scalar(1)]); // 2x - 1
  h = conv2d(g, "conv_in", h, c.in_channels, boc[0], c.conv_in_kernel, { padding: (c.conv_in_kernel - 1) >> 1 }); // [B, C0, H, W]

  // 2. down: every resnet/transformer output and every downsampler output is kept for the skips
  const skips: { v: Value; channels: number }[] = [{ v: h, channels: boc[0] }];
  let outC = boc[0];
  for (let i = 0; i < nBlocks; i++) {
    const type = stripRes(c.down_block_types[i]);
    const inC = outC;
    outC = boc[i];
    const p = `down_blocks.${i}`;
    if (type !== "CrossAttnDownBlock2D" && type !== "DownBlock2D") {
      throw unsupported(`down block type '${c.down_block_types[i]}' is not supported (CrossAttnDownBlock2D, DownBlock2D)`);
    }
    const tl = perLayer(tlpb[i], layers[i], `${p}`);
    for (let j = 0; j < layers[i]; j++) {
      h = resnet(g, k, `${p}.resnets.${j}`, h, j === 0 ? inC : outC, outC); // [B, outC, h, w]
      if (type === "CrossAttnDownBlock2D") h = transformer(g, k, `${p}.attentions.${j}`, h, outC, heads[i], tl[j]);
      skips.push({ v: h, channels: outC });
    }
    if (i < nBlocks - 1) {
      h = downsample2D(g, `${p}.downsamplers.0`, h, outC, { useConv: true, padding: c.downsample_padding }); // [B, outC, h/2, w/2]
      skips.push({ v: h, channels: outC });
    }
  }

  // 3. mid
  const midC = boc[nBlocks - 1];
  const midType = c.mid_block_type === null ? null : stripRes(c.mid_block_type);
  if (midType === "UNetMidBlock2DCrossAttn") {
    const last = tlpb[nBlocks - 1]; // diffusers: transformer_layers_per_block[-1], then [i] for its one layer
    const tl = Array.isArray(last) ? last[0] : last;
    h = resnet(g, k, "mid_block.resnets.0", h, midC, midC, c.mid_block_scale_factor);
    h = transformer(g, k, "mid_block.attentions.0", h, midC, heads[nBlocks - 1], tl);
    h = resnet(g, k, "mid_block.resnets.1", h, midC, midC, c.mid_block_scale_factor); // [B, midC, h, w]
  } else if (midType === "UNetMidBlock2D") {
    h = resnet(g, k, "mid_block.resnets.0", h, midC, midC, c.mid_block_scale_factor); // num_layers=0, no attention
  } else if (midType !== null) {
    throw unsupported(`mid_block_type '${c.mid_block_type}' is not supported (UNetMidBlock2DCrossAttn, UNetMidBlock2D or null)`);
  }

  // 4. up: each block consumes layers+1 skips, newest first
  const rBoc = [...boc].reverse();
  const rHeads = [...heads].reverse();
  const rLayers = [...layers].reverse();
  const rTlpb = c.reverse_transformer_layers_per_block ?? [...tlpb].reverse();
  outC = rBoc[0];
  for (let i = 0; i < nBlocks; i++) {
    const type = stripRes(c.up_block_types[i]);
    const p = `up_blocks.${i}`;
    if (type !== "CrossAttnUpBlock2D" && type !== "UpBlock2D") {
      throw unsupported(`up block type '${c.up_block_types[i]}' is not supported (CrossAttnUpBlock2D, UpBlock2D)`);
    }
    const prevC = outC;
    outC = rBoc[i];
    const inC = rBoc[Math.min(i + 1, nBlocks - 1)];
    const n = rLayers[i] + 1;
    const tl = perLayer(rTlpb[i], n, p);
    for (let j = 0; j < n; j++) {
      const skip = skips.pop();
      const skipC = j === n - 1 ? inC : outC;
      if (!skip || skip.channels !== skipC) {
        throw bad(`${p}: skip connection ${j} has ${skip?.channels} channels, expected ${skipC}; block_out_channels / layers_per_block are inconsistent`);
      }
      const hc = j === 0 ? prevC : outC;
      h = g.concat([h, skip.v], 1); // [B, hc + skipC, h, w]
      h = resnet(g, k, `${p}.resnets.${j}`, h, hc + skipC, outC); // [B, outC, h, w]
      if (type === "CrossAttnUpBlock2D") h = transformer(g, k, `${p}.attentions.${j}`, h, outC, rHeads[i], tl[j]);
    }
    if (i < nBlocks - 1) {
      // diffusers passes upsample_size = next skip's H, W (only differs from 2x for odd sizes)
      h = upsample2D(g, `${p}.upsamplers.0`, h, outC, { sizeLike: skips[skips.length - 1].v }); // [B, outC, 2h, 2w]
    }
  }
  if (skips.length !== 0) throw bad(`${skips.length} skip connections left unused; layers_per_block is inconsistent`);

  // 5. out
  h = groupNorm(g, "conv_norm_out", h, boc[0], c.norm_num_groups!, c.norm_eps);
  h = diffusersActivation(g, c.act_fn, h);
  h = conv2d(g, "conv_out", h, boc[0], c.out_channels, c.conv_out_kernel, { padding: (c.conv_out_kernel - 1) >> 1 }); // [B, out, H, W]
  g.output(h, "out_sample", "float32", ["batch", c.out_channels, "height", "width"]);
  g.checkAllWeightsUsed();
  return g;
}
