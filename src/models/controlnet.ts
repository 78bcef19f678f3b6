// ControlNetModel (SD 1.x / 2.x, SDXL's text_time) as an ONNX graph: the UNet's encoder (shared down and mid
// blocks from unet-blocks.ts) fed conv_in(sample) + ControlNetConditioningEmbedding(control image), with a 1x1
// "zero conv" per skip and one on the mid block. Ref: diffusers models/controlnets/controlnet.py
// (ControlNetModel, ControlNetConditioningEmbedding). Notation: B batch, C channels, H/W pixels, h/w latent.
import { ReimagineError } from "../errors.js";
import { Graph, type Value } from "../graph/builder.js";
import { conv2d, silu } from "../graph/layers.js";
import type { WeightSource } from "../weights/source.js";
import {
  controlResidualNames,
  type TextTimeInputs,
  type UNet2DConditionConfig,
  resolveUNetConfig,
  unetBlockContext,
  unetDownBlocks,
  unetMidBlock,
  unetTimeEmbedding,
} from "./unet.js";

/** The keys a ControlNet config shares with the UNet's (those diffusers' ControlNetModel.from_unet copies), with
 *  the same defaults in diffusers. */
export const CONTROLNET_UNET_KEYS = [
  "in_channels",
  "flip_sin_to_cos",
  "freq_shift",
  "down_block_types",
  "mid_block_type",
  "only_cross_attention",
  "block_out_channels",
  "layers_per_block",
  "downsample_padding",
  "mid_block_scale_factor",
  "act_fn",
  "norm_num_groups",
  "norm_eps",
  "cross_attention_dim",
  "transformer_layers_per_block",
  "encoder_hid_dim",
  "encoder_hid_dim_type",
  "attention_head_dim",
  "num_attention_heads",
  "use_linear_projection",
  "class_embed_type",
  "addition_embed_type",
  "addition_time_embed_dim",
  "num_class_embeds",
  "upcast_attention",
  "resnet_time_scale_shift",
  "projection_class_embeddings_input_dim",
  "addition_embed_type_num_heads",
] as const;
type UNetKeys = Exclude<(typeof CONTROLNET_UNET_KEYS)[number], "layers_per_block" | "cross_attention_dim" | "transformer_layers_per_block">;

/** controlnet/config.json, keys and defaults as diffusers' ControlNetModel.__init__. */
export interface ControlNetConfig extends Pick<UNet2DConditionConfig, UNetKeys> {
  conditioning_channels: number;
  /** One int here (the UNet also takes a list). */
  layers_per_block: number;
  cross_attention_dim: number;
  transformer_layers_per_block: number | number[];
  controlnet_conditioning_channel_order: string;
  conditioning_embedding_out_channels: number[];
  global_pool_conditions: boolean;
}

const unetDefaults = resolveUNetConfig({});
const DEFAULTS = {
  ...Object.fromEntries(CONTROLNET_UNET_KEYS.map((k) => [k, unetDefaults[k]])),
  conditioning_channels: 3,
  controlnet_conditioning_channel_order: "rgb",
  conditioning_embedding_out_channels: [16, 32, 96, 256],
  global_pool_conditions: false,
} as ControlNetConfig;

const bad = (msg: string) => new ReimagineError(`ControlNet config.json: ${msg}`, "bad_config");
const unsupported = (msg: string) => new ReimagineError(`ControlNet config.json: ${msg}`, "unsupported");
const isPosInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;

/**
 * Applies diffusers' defaults to a parsed controlnet/config.json (keys starting with "_" and unknown keys are
 * ignored, as diffusers does), checks what ControlNetModel.__init__ checks, and refuses what this engine
 * does not build (class / encoder_hid / "text" embeddings, only_cross_attention), naming the key.
 *
 * @example
 *   const cfg = resolveControlNetConfig(readJson("control_v11p_sd15_scribble/config.json", "ControlNet config"));
 */
export function resolveControlNetConfig(json: Record<string, unknown>): ControlNetConfig {
  const cfg = { ...DEFAULTS } as Record<string, unknown>;
  for (const [k, v] of Object.entries(json)) if (k in DEFAULTS && v !== undefined) cfg[k] = v;
  const c = cfg as unknown as ControlNetConfig;
  if (!Array.isArray(c.down_block_types) || !Array.isArray(c.block_out_channels)) throw bad("down_block_types and block_out_channels must be lists");
  const n = c.down_block_types.length;
  if (n === 0) throw bad("down_block_types is empty");
  if (c.block_out_channels.length !== n) throw bad(`${c.block_out_channels.length} block_out_channels for ${n} down_block_types; they must match`);
  if (!c.block_out_channels.every(isPosInt)) throw bad(`block_out_channels must be positive integers, got ${JSON.stringify(c.block_out_channels)}`);
  for (const key of ["only_cross_attention", "attention_head_dim", "num_attention_heads", "transformer_layers_per_block"] as const) {
    const v = c[key];
    if (Array.isArray(v) && v.length !== n) throw bad(`${key} has ${v.length} entries for ${n} down blocks; they must match`);
  }
  for (const key of ["in_channels", "conditioning_channels", "layers_per_block", "cross_attention_dim"] as const) {
    if (!isPosInt(c[key])) throw bad(`${key} must be a positive integer, got ${JSON.stringify(c[key])}`);
  }
  const emb = c.conditioning_embedding_out_channels;
  if (!Array.isArray(emb) || emb.length === 0 || !emb.every(isPosInt)) {
    throw bad(`conditioning_embedding_out_channels must be a non-empty list of positive integers, got ${JSON.stringify(emb)}`);
  }
  if (c.controlnet_conditioning_channel_order !== "rgb" && c.controlnet_conditioning_channel_order !== "bgr") {
    throw bad(`controlnet_conditioning_channel_order '${c.controlnet_conditioning_channel_order}' is unknown (use "rgb" or "bgr")`);
  }
  if (c.mid_block_type !== "UNetMidBlock2DCrossAttn" && c.mid_block_type !== "UNetMidBlock2D") {
    throw bad(`mid_block_type '${c.mid_block_type}' is unknown (diffusers' ControlNetModel takes UNetMidBlock2DCrossAttn or UNetMidBlock2D)`);
  }
  if (c.class_embed_type !== null || c.num_class_embeds !== null)
    throw unsupported("class embeddings (class_embed_type / num_class_embeds) are not supported; this is not an SD 1.x/2.x/XL ControlNet");
  if (c.encoder_hid_dim !== null || c.encoder_hid_dim_type !== null)
    throw unsupported("encoder_hid_dim / encoder_hid_dim_type are not supported; this is not an SD 1.x/2.x/XL ControlNet");
  if (c.addition_embed_type !== null && c.addition_embed_type !== "text_time") {
    throw unsupported(`addition_embed_type '${c.addition_embed_type}' is not supported (only SDXL's "text_time")`);
  }
  if (c.addition_embed_type === "text_time" && (!isPosInt(c.addition_time_embed_dim) || !isPosInt(c.projection_class_embeddings_input_dim))) {
    throw bad("addition_embed_type text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim (SDXL: 256 and 2816)");
  }
  const onlyCross = Array.isArray(c.only_cross_attention) ? c.only_cross_attention : [c.only_cross_attention];
  if (onlyCross.some(Boolean)) throw unsupported("only_cross_attention is not supported");
  if (c.norm_num_groups === null) throw unsupported("norm_num_groups null is not supported");
  return c;
}

/**
 * The UNet config whose encoder this ControlNet is (the keys diffusers' `ControlNetModel.from_unet` copies),
 * so the UNet's block builders can be reused. Up blocks are never built; resolveUNetConfig wants one per level.
 */
export function controlNetEncoderConfig(c: ControlNetConfig): UNet2DConditionConfig {
  return resolveUNetConfig({
    in_channels: c.in_channels,
    flip_sin_to_cos: c.flip_sin_to_cos,
    freq_shift: c.freq_shift,
    down_block_types: c.down_block_types,
    up_block_types: c.down_block_types.map(() => "UpBlock2D"),
    mid_block_type: c.mid_block_type,
    block_out_channels: c.block_out_channels,
    layers_per_block: c.layers_per_block,
    downsample_padding: c.downsample_padding,
    mid_block_scale_factor: c.mid_block_scale_factor,
    act_fn: c.act_fn,
    norm_num_groups: c.norm_num_groups,
    norm_eps: c.norm_eps,
    cross_attention_dim: c.cross_attention_dim,
    transformer_layers_per_block: c.transformer_layers_per_block,
    attention_head_dim: c.num_attention_heads ?? c.attention_head_dim, // num_attention_heads or attention_head_dim
    use_linear_projection: c.use_linear_projection,
    addition_embed_type: c.addition_embed_type,
    addition_time_embed_dim: c.addition_time_embed_dim,
    projection_class_embeddings_input_dim: c.projection_class_embeddings_input_dim,
    upcast_attention: c.upcast_attention,
    resnet_time_scale_shift: c.resnet_time_scale_shift,
  });
}

/** Output names of the ControlNet graph: one down residual per UNet skip (conv_in's first), then the mid one. */
export function controlNetOutputNames(c: ControlNetConfig): { down: string[]; mid: string } {
  const count = controlResidualNames(controlNetEncoderConfig(c)).down.length;
  return { down: Array.from({ length: count }, (_, i) => `down_block_res_sample_${i}`), mid: "mid_block_res_sample" };
}

/**
 * The per-residual multipliers the graph's `conditioning_scales` input takes ([down..., mid], float32), as
 * ControlNetModel.forward step 6: every residual * conditioning_scale; in guess mode residual i *
 * logspace(-1, 0, nDown + 1)[i] * conditioning_scale (0.1 for conv_in's skip rising to 1.0 for the mid block).
 * A global-pool ControlNet (shuffle) ignores guess mode, as diffusers does.
 *
 * @example
 *   controlNetScales(12, 0.8, false); // 13 x 0.8
 *   controlNetScales(12, 1.0, true);  // [0.1, 0.121, ..., 1.0]
 */
export function controlNetScales(nDown: number, conditioningScale: number, guessMode: boolean, globalPool = false): Float32Array {
  if (!Number.isFinite(conditioningScale)) throw new ReimagineError(`ControlNet conditioning scale must be a finite number, got ${conditioningScale}`);
  const f = Math.fround;
  if (!guessMode || globalPool) return new Float32Array(nDown + 1).fill(conditioningScale);
  // torch.logspace(-1, 0, n + 1) in float32, then * conditioning_scale in float32
  return Float32Array.from({ length: nDown + 1 }, (_, i) => f(f(10 ** (-1 + i / nDown)) * f(conditioningScale)));
}

/** diffusers ControlNetConditioningEmbedding: conv_in -> silu -> [conv -> silu -> conv(stride 2) -> silu]* -> conv_out. */
function controlNetConditioningEmbedding(g: Graph, prefix: string, x: Value, inC: number, channels: number[], outC: number): Value {
  let h = silu(g, conv2d(g, `${prefix}.conv_in`, x, inC, channels[0], 3, { padding: 1 })); // [B, c0, H, W]
  for (let i = 0; i < channels.length - 1; i++) {
    h = silu(g, conv2d(g, `${prefix}.blocks.${2 * i}`, h, channels[i], channels[i], 3, { padding: 1 }));
    h = silu(g, conv2d(g, `${prefix}.blocks.${2 * i + 1}`, h, channels[i], channels[i + 1], 3, { padding: 1, stride: 2 })); // [B, c_i+1, H/2^(i+1), W/2^(i+1)]
  }
  return conv2d(g, `${prefix}.conv_out`, h, channels[channels.length - 1], outC, 3, { padding: 1 }); // [B, outC, h, w]
}

/**
 * Builds diffusers' ControlNetModel.
 * Inputs: `sample` [B, in_channels, h, w], `timestep` [B] float32, `encoder_hidden_states` [B, L, cross_attention_dim],
 * `controlnet_cond` [B, conditioning_channels, H, W] (the control image in [0, 1] at pixel size, H = h * 2^(len(
 * conditioning_embedding_out_channels) - 1)), `conditioning_scales` [nDown + 1] (controlNetScales: carries
 * conditioning_scale and guess mode, so one graph serves every step and window); SDXL adds `text_embeds`, `time_ids`.
 * Outputs (controlNetOutputNames): `down_block_res_sample_{i}` [B, C_i, h_i, w_i] and `mid_block_res_sample`,
 * already scaled, to feed a UNet built with `controlResiduals`.
 *
 * @example
 *   const cfg = resolveControlNetConfig(readJson("controlnet/config.json", "ControlNet config"));
 *   buildControlNetModel(openComponentWeights("controlnet"), cfg).save("cache/controlnet");
 */
export function buildControlNetModel(weights: WeightSource, config: ControlNetConfig): Graph {
  const c = config;
  const u = controlNetEncoderConfig(c);
  const boc = c.block_out_channels;
  const names = controlNetOutputNames(c);
  const nScales = names.down.length + 1;

  const g = new Graph(weights, "ControlNetModel");
  const sample = g.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);
  const timestep = g.input("timestep", "float32", ["batch"]);
  const ehs = g.input("encoder_hidden_states", "float32", ["batch", "sequence", c.cross_attention_dim]);
  let cond = g.input("controlnet_cond", "float32", ["batch", c.conditioning_channels, "image_height", "image_width"]);
  const scales = g.input("conditioning_scales", "float32", [nScales]);
  let textTime: TextTimeInputs | undefined;
  if (c.addition_embed_type === "text_time") {
    textTime = { textEmbeds: g.input("text_embeds", "float32", ["batch", "pooled"]), timeIds: g.input("time_ids", "float32", ["batch", "ids"]) };
  }

  // 0. channel order: a "bgr" ControlNet gets the control image's channels reversed
  if (c.controlnet_conditioning_channel_order === "bgr") {
    const rev = Array.from({ length: c.conditioning_channels }, (_, i) => c.conditioning_channels - 1 - i);
    cond = g.op("Gather", [cond, g.ints(rev)], { axis: 1 }); // [B, cc, H, W]
  }

  // 1. time (+ SDXL's text_time addition embedding)
  const { emb, dim: tembChannels } = unetTimeEmbedding(g, u, timestep, textTime);
  const k = unetBlockContext(u, emb, tembChannels, ehs);

  // 2. pre-process: conv_in(sample) + controlnet_cond_embedding(controlnet_cond)
  let h = conv2d(g, "conv_in", sample, c.in_channels, boc[0], 3, { padding: 1 }); // [B, C0, h, w]
  const condEmb = controlNetConditioningEmbedding(g, "controlnet_cond_embedding", cond, c.conditioning_channels, c.conditioning_embedding_out_channels, boc[0]);
  h = g.add(h, condEmb); // [B, C0, h, w]

  // 3. down, 4. mid: the UNet's own blocks
  const down = unetDownBlocks(g, u, k, h);
  const mid = unetMidBlock(g, u, k, down.h); // [B, C_last, h_m, w_m]
  if (down.skips.length !== names.down.length) throw new Error(`ControlNet: ${down.skips.length} skips for ${names.down.length} output names`);

  // 5. zero convs, 6. scaling (and the shuffle ControlNet's global pooling)
  const scaled = (v: Value, i: number, name: string, channels: number) => {
    let r = g.mul(v, g.op("Gather", [scales, g.ints([i])], { axis: 0 })); // [B, C, h, w] * [1]
    if (c.global_pool_conditions) r = g.op("ReduceMean", [r], { axes: [2, 3], keepdims: 1 }); // [B, C, 1, 1]
    g.output(r, name, "float32", ["batch", channels, `h${i}`, `w${i}`]);
  };
  for (const [i, s] of down.skips.entries()) scaled(conv2d(g, `controlnet_down_blocks.${i}`, s.v, s.channels, s.channels, 1), i, names.down[i], s.channels);
  const midC = boc[boc.length - 1];
  scaled(conv2d(g, "controlnet_mid_block", mid, midC, midC, 1), nScales - 1, names.mid, midC);
  g.checkAllWeightsUsed();
  return g;
}
