// UNet2DConditionModel (SD 1.x / 2.x, SDXL's text_time embedding, ControlNet residual inputs) as an ONNX graph.
// Ref: diffusers models/unets/unet_2d_condition.py (UNet2DConditionModel), unet_2d_blocks.py
// (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D) and
// models/embeddings.py (get_timestep_embedding, TimestepEmbedding). Notation: B batch, C channels, L tokens.
import { ReimagineError } from "../errors.js";
import { Graph, type Value } from "../graph/builder.js";
import { conv2d, groupNorm, linear } from "../graph/layers.js";
import { useLoraSlots } from "../graph/lora-slots.js";
import { type QuantizeMode, quantizeUNet } from "../graph/quantize.js";
import type { WeightSource } from "../weights/source.js";
import { diffusersActivation, shapeSlice } from "./blocks.js";
import {
  crossAttnDownBlock2D,
  crossAttnUpBlock2D,
  downBlock2D,
  type Skip,
  type UNetBlockContext,
  unetMidBlock2D,
  unetMidBlock2DCrossAttn,
  upBlock2D,
} from "./unet-blocks.js";

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
    throw unsupported(
      "num_attention_heads is set; diffusers itself refuses it (attention_head_dim holds the head count in UNet2DConditionModel configs); remove it and set attention_head_dim",
    );
  }
  if (c.time_embedding_type !== "positional") throw unsupported(`time_embedding_type '${c.time_embedding_type}' is not supported (only "positional")`);
  if (c.time_cond_proj_dim !== null)
    throw unsupported("time_cond_proj_dim is set (an LCM-distilled UNet with a guidance embedding); not supported yet, use a regular UNet (LCM-LoRA works)");
  if (c.class_embed_type !== null || c.num_class_embeds !== null)
    throw unsupported("class embeddings (class_embed_type / num_class_embeds) are not supported; this is not an SD 1.x/2.x UNet");
  if (c.encoder_hid_dim !== null || c.encoder_hid_dim_type !== null)
    throw unsupported("encoder_hid_dim / encoder_hid_dim_type are not supported; this is not an SD 1.x/2.x UNet");
  if (
    c.addition_embed_type === "text_time" &&
    (!Number.isSafeInteger(c.addition_time_embed_dim) || !Number.isSafeInteger(c.projection_class_embeddings_input_dim))
  ) {
    throw bad("addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim (SDXL: 256 and 2816)");
  }
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
  if (cross.some((d) => d !== cross[0]))
    throw unsupported(
      `per-block cross_attention_dim ${JSON.stringify(c.cross_attention_dim)} is not supported; every block must read the same encoder_hidden_states`,
    );
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

/** get_timestep_embedding: [B] (or [N]) float values -> [B, dim] sinusoids (cos first when flipped). */
function sinusoidalEmbedding(g: Graph, x: Value, dim: number, flipSinToCos: boolean, freqShift: number): Value {
  const half = Math.floor(dim / 2);
  const freqs = g.constant(timestepFrequencies(half, freqShift), [1, half]);
  const args = g.mul(g.op("Unsqueeze", [x, g.ints([1])]), freqs); // [B, half]
  const sin = g.op("Sin", [args]);
  const cos = g.op("Cos", [args]);
  let emb = g.concat(flipSinToCos ? [cos, sin] : [sin, cos], -1); // [B, 2*half]
  if (dim % 2 === 1) emb = g.op("Pad", [emb, g.ints([0, 0, 0, 1])]); // [B, dim]
  return emb;
}

/** diffusers TimestepEmbedding: linear_1 -> act -> linear_2 (prefix e.g. "time_embedding", "add_embedding"). */
function timestepEmbeddingMlp(g: Graph, prefix: string, x: Value, inDim: number, outDim: number, act: string): Value {
  let h = linear(g, `${prefix}.linear_1`, x, inDim, outDim); // [B, outDim]
  h = diffusersActivation(g, act, h);
  return linear(g, `${prefix}.linear_2`, h, outDim, outDim); // [B, outDim]
}

/** The extra UNet inputs of SDXL's `addition_embed_type: "text_time"` (diffusers `added_cond_kwargs`). */
export interface TextTimeInputs {
  textEmbeds: Value; // [B, pooled projection dim]
  timeIds: Value; // [B, 6] (base) or [B, 5] (refiner)
}

/**
 * Timesteps + TimestepEmbedding (+ SDXL's text_time addition embedding): [B] float timesteps -> [B, T].
 * Ref: UNet2DConditionModel.get_time_embed / get_aug_embed.
 */
export function unetTimeEmbedding(g: Graph, c: UNet2DConditionConfig, timestep: Value, textTime?: TextTimeInputs): { emb: Value; dim: number } {
  const channels = c.block_out_channels[0];
  const timeEmbedDim = c.time_embedding_dim ?? channels * 4;
  const tEmb = sinusoidalEmbedding(g, timestep, channels, c.flip_sin_to_cos, c.freq_shift); // [B, C0]
  let emb = timestepEmbeddingMlp(g, "time_embedding", tEmb, channels, timeEmbedDim, c.act_fn); // [B, T]
  if (c.timestep_post_act !== null) emb = diffusersActivation(g, c.timestep_post_act, emb);

  if (c.addition_embed_type === "text_time") {
    if (!textTime) throw new Error("unetTimeEmbedding: addition_embed_type text_time needs text_embeds and time_ids inputs");
    // add_time_proj(time_ids.flatten()) reshaped to [B, n_ids * addition_time_embed_dim]
    const d = c.addition_time_embed_dim!;
    const flat = g.reshape(textTime.timeIds, [-1]); // [B * n_ids]
    const timeEmbeds = g.op("Reshape", [
      sinusoidalEmbedding(g, flat, d, c.flip_sin_to_cos, c.freq_shift),
      g.concat([shapeSlice(g, textTime.textEmbeds, 0, 1), g.ints([-1])], 0),
    ]); // [B, n_ids * d]
    const addEmbeds = g.concat([textTime.textEmbeds, timeEmbeds], -1); // [B, projection_class_embeddings_input_dim]
    const inDim = c.projection_class_embeddings_input_dim!;
    emb = g.add(emb, timestepEmbeddingMlp(g, "add_embedding", addEmbeds, inDim, timeEmbedDim, c.act_fn)); // [B, T]
  } else if (c.addition_embed_type !== null) {
    throw unsupported(`addition_embed_type '${c.addition_embed_type}' is not supported (only SDXL's "text_time")`);
  }

  if (c.time_embedding_act_fn !== null) emb = diffusersActivation(g, c.time_embedding_act_fn, emb);
  return { emb, dim: timeEmbedDim };
}

export interface UNetBuildOptions {
  /** int8 DynamicQuantizeMatMul for the transformer blocks' Linear layers ("int8-conv": and every conv but conv_in/conv_out); faster, approximate. */
  quantize?: QuantizeMode;
  /** Adds ControlNet residual inputs (`down_block_additional_residual_{i}` per skip, `mid_block_additional_residual`),
   *  added to the skips and the mid block's output as diffusers does. */
  controlResiduals?: boolean;
  /** LoRA slot inputs on every Linear/Conv2d (src/graph/lora-slots.ts): LoRAs switch per run through the feeds. */
  loraSlots?: boolean;
}

const stripRes = (t: string) => (t.startsWith("UNetRes") ? t.slice(7) : t);

/** Per-block lists of a UNet config (heads, layers, transformer layers), as diffusers expands them. */
export function unetBlockLists(c: UNet2DConditionConfig) {
  const n = c.down_block_types.length;
  return {
    n,
    heads: perBlock(c.attention_head_dim, n), // num_attention_heads or attention_head_dim
    layers: perBlock(c.layers_per_block, n),
    tlpb: perBlock<number | number[]>(c.transformer_layers_per_block, n),
    crossDim: perBlock(c.cross_attention_dim, n)[0],
  };
}

/** The shared settings of every block, from the config and the time embedding. */
export function unetBlockContext(c: UNet2DConditionConfig, temb: Value, tembChannels: number, ehs: Value): UNetBlockContext {
  return {
    temb,
    ehs,
    tembChannels,
    groups: c.norm_num_groups!,
    eps: c.norm_eps,
    act: c.act_fn,
    timeEmbeddingNorm: c.resnet_time_scale_shift as "default" | "scale_shift",
    crossDim: unetBlockLists(c).crossDim,
    useLinearProjection: c.use_linear_projection,
  };
}

/** The down blocks (after conv_in): returns h and every skip, conv_in's output first. */
export function unetDownBlocks(g: Graph, c: UNet2DConditionConfig, k: UNetBlockContext, x: Value): { h: Value; skips: Skip[] } {
  const { n, heads, layers, tlpb } = unetBlockLists(c);
  const boc = c.block_out_channels;
  const skips: Skip[] = [{ v: x, channels: boc[0] }];
  let h = x;
  for (let i = 0; i < n; i++) {
    const type = stripRes(c.down_block_types[i]);
    const p = `down_blocks.${i}`;
    const o = {
      inC: i === 0 ? boc[0] : boc[i - 1],
      outC: boc[i],
      layers: layers[i],
      addDownsample: i < n - 1,
      downsamplePadding: c.downsample_padding,
      heads: heads[i],
      transformerLayers: perLayer(tlpb[i], layers[i], p),
    };
    let out: { h: Value; skips: Skip[] };
    if (type === "CrossAttnDownBlock2D") out = crossAttnDownBlock2D(g, k, p, h, o);
    else if (type === "DownBlock2D") out = downBlock2D(g, k, p, h, o);
    else throw unsupported(`down block type '${c.down_block_types[i]}' is not supported (CrossAttnDownBlock2D, DownBlock2D)`);
    h = out.h;
    skips.push(...out.skips);
  }
  return { h, skips };
}

/** The mid block (or none): [B, midC, h, w] -> same. */
export function unetMidBlock(g: Graph, c: UNet2DConditionConfig, k: UNetBlockContext, x: Value): Value {
  const { n, heads, tlpb } = unetBlockLists(c);
  const channels = c.block_out_channels[n - 1];
  const midType = c.mid_block_type === null ? null : stripRes(c.mid_block_type);
  if (midType === "UNetMidBlock2DCrossAttn") {
    const last = tlpb[n - 1]; // diffusers: transformer_layers_per_block[-1], then [i] for its one layer
    const transformerLayers = Array.isArray(last) ? last[0] : last;
    return unetMidBlock2DCrossAttn(g, k, "mid_block", x, { channels, heads: heads[n - 1], transformerLayers, scaleFactor: c.mid_block_scale_factor });
  }
  if (midType === "UNetMidBlock2D") return unetMidBlock2D(g, k, "mid_block", x, { channels, scaleFactor: c.mid_block_scale_factor });
  if (midType !== null) throw unsupported(`mid_block_type '${c.mid_block_type}' is not supported (UNetMidBlock2DCrossAttn, UNetMidBlock2D or null)`);
  return x;
}

/** Names of the ControlNet residual inputs of a UNet built with `controlResiduals`, one per skip. */
export function controlResidualNames(c: UNet2DConditionConfig): { down: string[]; mid: string } {
  const { n, layers } = unetBlockLists(c);
  const count = 1 + layers.reduce((a, b) => a + b, 0) + (n - 1);
  return { down: Array.from({ length: count }, (_, i) => `down_block_additional_residual_${i}`), mid: "mid_block_additional_residual" };
}

/**
 * Builds diffusers' UNet2DConditionModel.
 * Inputs: `sample` [B, in_channels, H, W] (any H, W; sizes that are not a multiple of 2^downsamplers
 * take diffusers' `upsample_size` path), `timestep` [B] float32 (one per batch item; fractional allowed),
 * `encoder_hidden_states` [B, L, cross_attention_dim]; SDXL (`addition_embed_type: "text_time"`) adds
 * `text_embeds` [B, P] and `time_ids` [B, n]; `controlResiduals` adds the ControlNet residuals
 * (controlResidualNames). Output: `out_sample` [B, out_channels, H, W].
 *
 * @example
 *   const g = buildUNet2DConditionModel(openComponentWeights("sd15/unet"), resolveUNetConfig(json));
 *   g.save("cache/unet");
 */
export function buildUNet2DConditionModel(weights: WeightSource, config: UNet2DConditionConfig, opts: UNetBuildOptions = {}): Graph {
  const c = config;
  checkSupported(c);
  const { n: nBlocks, heads, layers, tlpb, crossDim } = unetBlockLists(c);
  const boc = c.block_out_channels;

  const g = new Graph(weights, "UNet2DConditionModel");
  if (opts.quantize) quantizeUNet(g, opts.quantize); // opt-in: not diffusers-exact
  if (opts.loraSlots) useLoraSlots(g);
  const sample = g.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["batch"]);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", "sequence", crossDim]);
  let textTime: TextTimeInputs | undefined;
  if (c.addition_embed_type === "text_time") {
    textTime = { textEmbeds: g.input("text_embeds", "float32", ["batch", "pooled"]), timeIds: g.input("time_ids", "float32", ["batch", "ids"]) };
  }

  const { emb, dim: tembChannels } = unetTimeEmbedding(g, c, timestep, textTime);
  const k = unetBlockContext(c, emb, tembChannels, ehs);

  // 1. input
  let h = sample;
  if (c.center_input_sample) h = g.op("Sub", [g.mul(h, g.scalar(2)), g.scalar(1)]); // 2x - 1
  h = conv2d(g, "conv_in", h, c.in_channels, boc[0], c.conv_in_kernel, { padding: (c.conv_in_kernel - 1) >> 1 }); // [B, C0, H, W]

  // 2. down: every resnet/transformer output and every downsampler output is kept for the skips
  const down = unetDownBlocks(g, c, k, h);
  h = down.h;
  const skips = down.skips;
  const residuals = opts.controlResiduals ? controlResidualNames(c) : undefined;
  if (residuals) {
    // ControlNet: down_block_res_samples[i] += down_block_additional_residuals[i]
    if (residuals.down.length !== skips.length) throw new Error(`controlResidualNames gives ${residuals.down.length} names for ${skips.length} skips`);
    skips.forEach((s, i) => {
      const r = g.input(residuals.down[i], "float32", ["batch", s.channels, `h${i}`, `w${i}`]);
      s.v = g.add(s.v, r); // [B, C_i, h_i, w_i]
    });
  }

  // 3. mid
  h = unetMidBlock(g, c, k, h);
  if (residuals) h = g.add(h, g.input(residuals.mid, "float32", ["batch", boc[nBlocks - 1], "hm", "wm"])); // [B, midC, h, w]

  // 4. up: each block consumes layers+1 skips, newest first
  const rBoc = [...boc].reverse();
  const rHeads = [...heads].reverse();
  const rLayers = [...layers].reverse();
  const rTlpb = c.reverse_transformer_layers_per_block ?? [...tlpb].reverse();
  let outC = rBoc[0];
  for (let i = 0; i < nBlocks; i++) {
    const type = stripRes(c.up_block_types[i]);
    const p = `up_blocks.${i}`;
    const prevC = outC;
    outC = rBoc[i];
    const n = rLayers[i] + 1;
    const o = {
      prevC,
      outC,
      inC: rBoc[Math.min(i + 1, nBlocks - 1)],
      layers: n,
      addUpsample: i < nBlocks - 1,
      heads: rHeads[i],
      transformerLayers: perLayer(rTlpb[i], n, p),
    };
    if (type === "CrossAttnUpBlock2D") h = crossAttnUpBlock2D(g, k, p, h, skips, o);
    else if (type === "UpBlock2D") h = upBlock2D(g, k, p, h, skips, o);
    else throw unsupported(`up block type '${c.up_block_types[i]}' is not supported (CrossAttnUpBlock2D, UpBlock2D)`);
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
