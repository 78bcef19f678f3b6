// Building blocks shared by the UNet and the VAE, each built under its weight-key prefix.
// Ref: diffusers models/resnet.py (ResnetBlock2D), models/downsampling.py (Downsample2D),
// models/upsampling.py (Upsample2D), models/transformers/transformer_2d.py (Transformer2DModel,
// continuous input) and models/attention.py (BasicTransformerBlock, FeedForward with GEGLU).
import { ReimagineError } from "../errors.js";
import type { Graph, Value } from "../graph/builder.js";
import { activation, attention, conv2d, gelu, groupNorm, layerNorm, linear, upsampleNearest } from "../graph/layers.js";

// ---------------------------------------------------------------------------------------------
// Shape helpers
// ---------------------------------------------------------------------------------------------

/** `x.shape[start:end]` as a 1-D int64 tensor. */
export function shapeSlice(g: Graph, x: Value, start: number, end: number): Value {
  return g.op("Shape", [x], { start, end });
}

/**
 * diffusers `get_activation(name)`: swish/silu, mish, gelu (exact), relu. Anything else is refused.
 */
export function diffusersActivation(g: Graph, name: string, x: Value): Value {
  switch (name) {
    case "swish":
    case "silu":
    case "gelu":
    case "relu":
      return activation(g, name, x);
    case "mish":
      return g.mul(x, g.op("Tanh", [g.op("Softplus", [x])])); // x * tanh(softplus(x))
    default:
      throw new ReimagineError(`unknown activation '${name}' in config.json: diffusers accepts swish, silu, mish, gelu, relu; fix the config`, "bad_config");
  }
}

// ---------------------------------------------------------------------------------------------
// ResnetBlock2D
// ---------------------------------------------------------------------------------------------

export interface ResnetBlock2DOptions {
  /** GroupNorm groups of norm1 (diffusers `groups`). */
  groups: number;
  /** GroupNorm groups of norm2 (diffusers `groups_out`, default `groups`). */
  groupsOut?: number;
  eps: number;
  /** Width of the time embedding; omit for blocks without `time_emb_proj` (the VAE). */
  tembChannels?: number;
  /** The block's output is divided by this (diffusers `output_scale_factor`, default 1). */
  outputScaleFactor?: number;
  /** diffusers `non_linearity` (default "silu", which diffusers calls "swish"). */
  act?: string;
  /** diffusers `time_embedding_norm`: "default" adds temb, "scale_shift" modulates norm2. */
  timeEmbeddingNorm?: "default" | "scale_shift";
  /** diffusers `skip_time_act`: feed temb to time_emb_proj without the activation. */
  skipTimeAct?: boolean;
}

/**
 * diffusers ResnetBlock2D (pre-norm, no up/down): norm1 -> act -> conv1 (+ time_emb_proj(act(temb)))
 * -> norm2 -> act -> conv2, plus the input (through a 1x1 conv_shortcut when in != out), all divided
 * by `outputScaleFactor`.
 *
 * @example
 *   h = resnetBlock2D(g, "down_blocks.0.resnets.0", h, temb, 320, 320, { groups: 32, eps: 1e-5, tembChannels: 1280 });
 */
export function resnetBlock2D(
  g: Graph,
  prefix: string,
  x: Value, // [B, inC, H, W]
  temb: Value | undefined, // [B, tembChannels]
  inC: number,
  outC: number,
  opts: ResnetBlock2DOptions,
): Value {
  const { groups, eps, tembChannels, outputScaleFactor = 1, act = "silu", timeEmbeddingNorm = "default" } = opts;
  const groupsOut = opts.groupsOut ?? groups;
  if (tembChannels !== undefined && temb === undefined) {
    throw new Error(`resnetBlock2D ${prefix}: tembChannels given but no temb value`);
  }
  let h = groupNorm(g, `${prefix}.norm1`, x, inC, groups, eps);
  h = diffusersActivation(g, act, h);
  h = conv2d(g, `${prefix}.conv1`, h, inC, outC, 3, { padding: 1 }); // [B, outC, H, W]

  let t: Value | undefined;
  if (tembChannels !== undefined && temb !== undefined) {
    const projOut = timeEmbeddingNorm === "scale_shift" ? 2 * outC : outC;
    const ta = opts.skipTimeAct ? temb : diffusersActivation(g, act, temb);
    t = linear(g, `${prefix}.time_emb_proj`, ta, tembChannels, projOut); // [B, projOut]
    t = g.op("Unsqueeze", [t, g.ints([2, 3])]); // [B, projOut, 1, 1]
  }

  if (t && timeEmbeddingNorm === "scale_shift") {
    const [scale, shift] = g.opN("Split", [t, g.ints([outC, outC])], 2, { axis: 1 }); // 2 x [B, outC, 1, 1]
    h = groupNorm(g, `${prefix}.norm2`, h, outC, groupsOut, eps);
    h = g.add(g.mul(h, g.add(scale, g.scalar(1))), shift);
  } else {
    if (t) h = g.add(h, t); // [B, outC, H, W]
    h = groupNorm(g, `${prefix}.norm2`, h, outC, groupsOut, eps);
  }
  h = diffusersActivation(g, act, h);
  h = conv2d(g, `${prefix}.conv2`, h, outC, outC, 3, { padding: 1 }); // [B, outC, H, W]

  const shortcut = inC !== outC ? conv2d(g, `${prefix}.conv_shortcut`, x, inC, outC, 1) : x; // [B, outC, H, W]
  const out = g.add(shortcut, h);
  return outputScaleFactor === 1 ? out : g.op("Div", [out, g.scalar(outputScaleFactor)]);
}

// ---------------------------------------------------------------------------------------------
// Downsample2D / Upsample2D
// ---------------------------------------------------------------------------------------------

export interface Downsample2DOptions {
  /** Strided 3x3 conv (weights `<prefix>.conv`) instead of 2x2 average pooling. */
  useConv: boolean;
  /** Conv padding; 0 means diffusers' asymmetric pad (0, 1, 0, 1) before the conv (the VAE). */
  padding: number;
  outChannels?: number;
}

/**
 * diffusers Downsample2D: halves H and W (ceil for odd sizes with padding 1).
 *
 * @example
 *   h = downsample2D(g, "down_blocks.0.downsamplers.0", h, 320, { useConv: true, padding: 1 });
 */
export function downsample2D(g: Graph, prefix: string, x: Value, channels: number, opts: Downsample2DOptions): Value {
  const outC = opts.outChannels ?? channels;
  if (!opts.useConv) {
    if (outC !== channels) throw new Error(`downsample2D ${prefix}: pooling cannot change channels ${channels} -> ${outC}`);
    return g.op("AveragePool", [x], { kernel_shape: [2, 2], strides: [2, 2] }); // [B, C, H/2, W/2]
  }
  let h = x;
  if (opts.padding === 0) {
    // F.pad(x, (0, 1, 0, 1)): one zero column on the right, one zero row at the bottom.
    h = g.op("Pad", [x, g.ints([0, 0, 0, 0, 0, 0, 1, 1])], { mode: "constant" }); // [B, C, H+1, W+1]
  }
  return conv2d(g, `${prefix}.conv`, h, channels, outC, 3, { stride: 2, padding: opts.padding }); // [B, outC, H/2, W/2]
}

export interface Upsample2DOptions {
  outChannels?: number;
  /** Upsample to this tensor's H, W (diffusers `output_size`, used by the UNet when the input
   *  size is not a multiple of 2^downsamplers) instead of exactly 2x. */
  sizeLike?: Value;
}

/**
 * diffusers Upsample2D with use_conv=True: nearest-neighbour upsampling then a 3x3 conv.
 *
 * @example
 *   h = upsample2D(g, "up_blocks.0.upsamplers.0", h, 1280);
 */
export function upsample2D(g: Graph, prefix: string, x: Value, channels: number, opts: Upsample2DOptions = {}): Value {
  const outC = opts.outChannels ?? channels;
  // F.interpolate(size=(H', W')) when the skip's size is given, else scale_factor=2
  const to = opts.sizeLike ? g.concat([shapeSlice(g, x, 0, 2), shapeSlice(g, opts.sizeLike, 2, 4)], 0) : 2; // [4] = [B, C, H', W']
  const h = upsampleNearest(g, x, to); // [B, C, H', W']
  return conv2d(g, `${prefix}.conv`, h, channels, outC, 3, { padding: 1 }); // [B, outC, H', W']
}

// ---------------------------------------------------------------------------------------------
// Transformer2DModel (continuous input) + BasicTransformerBlock
// ---------------------------------------------------------------------------------------------

export interface Transformer2DOptions {
  /** Channels of the NCHW input and output (diffusers `in_channels`). */
  inChannels: number;
  /** diffusers `num_attention_heads`. */
  heads: number;
  /** diffusers `attention_head_dim` (per-head width); inner_dim = heads * headDim. */
  headDim: number;
  /** Number of BasicTransformerBlocks (diffusers `num_layers`). */
  numLayers: number;
  /** Width of encoder_hidden_states (attn2's key/value input). */
  crossAttentionDim: number;
  /** GroupNorm groups of the input norm (diffusers `norm_num_groups`; eps is fixed at 1e-6). */
  groups: number;
  /** proj_in/proj_out as Linear on [B, HW, C] (SD 2.x) instead of 1x1 convs (SD 1.x). */
  useLinearProjection: boolean;
}

/**
 * diffusers Transformer2DModel over a continuous NCHW input: GroupNorm(eps 1e-6) -> proj_in ->
 * BasicTransformerBlocks over [B, HW, inner] -> proj_out -> + residual.
 *
 * @example
 *   h = transformer2DModel(g, "down_blocks.0.attentions.0", h, ehs,
 *     { inChannels: 320, heads: 8, headDim: 40, numLayers: 1, crossAttentionDim: 768, groups: 32, useLinearProjection: false });
 */
export function transformer2DModel(
  g: Graph,
  prefix: string,
  x: Value, // [B, C, H, W]
  encoderHiddenStates: Value, // [B, L, crossAttentionDim]
  opts: Transformer2DOptions,
): Value {
  const { inChannels: c, heads, headDim, numLayers, crossAttentionDim, groups, useLinearProjection } = opts;
  const inner = heads * headDim;
  const hw = shapeSlice(g, x, 2, 4); // [2] = [H, W]

  let h = groupNorm(g, `${prefix}.norm`, x, c, groups, 1e-6); // [B, C, H, W]
  if (useLinearProjection) {
    h = g.reshape(g.transpose(h, [0, 2, 3, 1]), [0, -1, c]); // [B, HW, C]
    h = linear(g, `${prefix}.proj_in`, h, c, inner); // [B, HW, inner]
  } else {
    h = conv2d(g, `${prefix}.proj_in`, h, c, inner, 1); // [B, inner, H, W]
    h = g.reshape(g.transpose(h, [0, 2, 3, 1]), [0, -1, inner]); // [B, HW, inner]
  }

  for (let i = 0; i < numLayers; i++) {
    h = basicTransformerBlock(g, `${prefix}.transformer_blocks.${i}`, h, encoderHiddenStates, inner, heads, crossAttentionDim);
  }

  const nhwc = (v: Value, ch: number) => g.op("Reshape", [v, g.concat([g.ints([0]), hw, g.ints([ch])], 0)]); // [B, H, W, ch]
  if (useLinearProjection) {
    h = linear(g, `${prefix}.proj_out`, h, inner, c); // [B, HW, C]
    h = g.transpose(nhwc(h, c), [0, 3, 1, 2]); // [B, C, H, W]
  } else {
    h = g.transpose(nhwc(h, inner), [0, 3, 1, 2]); // [B, inner, H, W]
    h = conv2d(g, `${prefix}.proj_out`, h, inner, c, 1); // [B, C, H, W]
  }
  return g.add(h, x);
}

/**
 * diffusers BasicTransformerBlock (norm_type "layer_norm", eps 1e-5, attention_bias False):
 * x += attn1(norm1(x)); x += attn2(norm2(x), ehs); x += ff(norm3(x)).
 */
export function basicTransformerBlock(
  g: Graph,
  prefix: string,
  x: Value, // [B, L, D]
  encoderHiddenStates: Value, // [B, Lk, crossAttentionDim]
  dim: number,
  heads: number,
  crossAttentionDim: number,
): Value {
  let n = layerNorm(g, `${prefix}.norm1`, x, dim, 1e-5);
  let h = g.add(attentionBlock(g, `${prefix}.attn1`, n, n, dim, dim, heads), x); // [B, L, D]
  n = layerNorm(g, `${prefix}.norm2`, h, dim, 1e-5);
  h = g.add(attentionBlock(g, `${prefix}.attn2`, n, encoderHiddenStates, dim, crossAttentionDim, heads), h); // [B, L, D]
  n = layerNorm(g, `${prefix}.norm3`, h, dim, 1e-5);
  return g.add(feedForwardGeglu(g, `${prefix}.ff`, n, dim, 4 * dim), h); // [B, L, D]
}

/**
 * diffusers Attention (AttnProcessor2_0): to_q/to_k/to_v (biases only when `qkvBias`, diffusers
 * `bias`; False in transformer blocks), softmax(q k^T / sqrt(d)) v per head, then to_out.0 (Linear
 * with bias). `upcast_attention` / `upcast_softmax` are no-ops in float32.
 */
export function attentionBlock(
  g: Graph,
  prefix: string,
  x: Value, // [B, Lq, queryDim]
  context: Value, // [B, Lk, contextDim]
  queryDim: number,
  contextDim: number,
  heads: number,
  qkvBias = false,
): Value {
  if (queryDim % heads !== 0) {
    throw new ReimagineError(`${prefix}: width ${queryDim} is not divisible by ${heads} heads; check attention_head_dim in config.json`, "bad_config");
  }
  const q = linear(g, `${prefix}.to_q`, x, queryDim, queryDim, qkvBias); // [B, Lq, D]
  const k = linear(g, `${prefix}.to_k`, context, contextDim, queryDim, qkvBias); // [B, Lk, D]
  const v = linear(g, `${prefix}.to_v`, context, contextDim, queryDim, qkvBias); // [B, Lk, D]
  const a = attention(g, q, k, v, heads); // [B, Lq, D]
  return linear(g, `${prefix}.to_out.0`, a, queryDim, queryDim); // [B, Lq, D]
}

/** diffusers FeedForward(activation_fn="geglu"): net.0 = GEGLU proj (dim -> 2*inner), net.2 = Linear(inner -> dim). */
export function feedForwardGeglu(g: Graph, prefix: string, x: Value, dim: number, inner: number): Value {
  const p = linear(g, `${prefix}.net.0.proj`, x, dim, 2 * inner); // [B, L, 2*inner]
  const [hidden, gate] = g.opN("Split", [p, g.ints([inner, inner])], 2, { axis: -1 }); // 2 x [B, L, inner]
  const h = g.mul(hidden, gelu(g, gate)); // [B, L, inner]
  return linear(g, `${prefix}.net.2`, h, inner, dim); // [B, L, dim]
}
