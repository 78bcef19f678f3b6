// AutoencoderKL (the Stable Diffusion VAE) as two ONNX graphs: encoder -> posterior moments, decoder.
// Ref: diffusers models/autoencoders/autoencoder_kl.py (AutoencoderKL), vae.py (Encoder, Decoder,
// DiagonalGaussianDistribution), unets/unet_2d_blocks.py (DownEncoderBlock2D, UpDecoderBlock2D,
// UNetMidBlock2D), attention_processor.py (Attention with group_norm, AttnProcessor2_0).
import { ReimagineError } from "../errors.js";
import { Graph, type Value } from "../graph/builder.js";
import { attention, conv2d, groupNorm, linear, silu } from "../graph/layers.js";
import type { WeightSource } from "../weights/source.js";
import { downsample2D, resnetBlock2D, upsample2D } from "./blocks.js";

/** diffusers AutoencoderKL config (snake_case as in vae/config.json). */
export interface VaeConfig {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number;
  /** Latents are `scaling_factor * z` in the UNet's space (0.18215 SD1/2, 0.13025 SDXL). */
  scaling_factor: number;
  /** SD3/Flux-style shift (`(z - shift) * scale`); the SD/SDXL img2img pipelines ignore it. */
  shift_factor: number | null;
  /** Per-channel latent statistics (SDXL img2img uses them when both are set). */
  latents_mean: number[] | null;
  latents_std: number[] | null;
  force_upcast: boolean;
  use_quant_conv: boolean;
  use_post_quant_conv: boolean;
  mid_block_add_attention: boolean;
}

/** AutoencoderKL.__init__ defaults (used for keys a config.json leaves out, as diffusers does). */
const DEFAULTS: VaeConfig = {
  in_channels: 3,
  out_channels: 3,
  down_block_types: ["DownEncoderBlock2D"],
  up_block_types: ["UpDecoderBlock2D"],
  block_out_channels: [64],
  layers_per_block: 1,
  act_fn: "silu",
  latent_channels: 4,
  norm_num_groups: 32,
  sample_size: 32,
  scaling_factor: 0.18215,
  shift_factor: null,
  latents_mean: null,
  latents_std: null,
  force_upcast: true,
  use_quant_conv: true,
  use_post_quant_conv: true,
  mid_block_add_attention: true,
};

/** Encoder / Decoder use eps 1e-6 for every GroupNorm (resnets, attention, conv_norm_out). */
const EPS = 1e-6;

/**
 * Fills AutoencoderKL defaults and refuses configs this builder does not describe.
 *
 * @example
 *   const config = resolveVaeConfig(readJson("model/vae/config.json", "VAE config"));
 */
export function resolveVaeConfig(json: Record<string, unknown>): VaeConfig {
  const given = Object.fromEntries(Object.entries(json).filter(([, v]) => v !== undefined));
  const c = { ...DEFAULTS, ...(given as Partial<VaeConfig>) };
  const cls = json._class_name;
  const bad = (why: string) => new ReimagineError(`VAE config: ${why}`, "unsupported");
  if (cls !== undefined && cls !== "AutoencoderKL") {
    throw bad(
      `_class_name is '${String(cls)}', not AutoencoderKL` +
        (cls === "AutoencoderTiny" ? "; build it with buildTinyEncoder/buildTinyDecoder (models/taesd.ts)" : ""),
    );
  }
  const n = c.block_out_channels.length;
  if (n === 0) throw bad("block_out_channels is empty");
  if (c.down_block_types.length !== n || c.up_block_types.length !== n) {
    throw bad(
      `down_block_types (${c.down_block_types.length}) and up_block_types (${c.up_block_types.length}) must have ` +
        `one entry per block_out_channels (${n}); the config.json is inconsistent`,
    );
  }
  for (const t of c.down_block_types) {
    if (t !== "DownEncoderBlock2D") throw bad(`down block type '${t}' is not supported (only DownEncoderBlock2D)`);
  }
  for (const t of c.up_block_types) {
    if (t !== "UpDecoderBlock2D") throw bad(`up block type '${t}' is not supported (only UpDecoderBlock2D)`);
  }
  for (const ch of c.block_out_channels) {
    if (ch % c.norm_num_groups !== 0) {
      throw bad(`block_out_channels ${ch} is not divisible by norm_num_groups ${c.norm_num_groups}`);
    }
  }
  if (!(c.scaling_factor > 0)) throw bad(`scaling_factor must be a positive number, got ${c.scaling_factor}`);
  return c;
}

/** Pixel size of one latent cell, as pipelines compute it: 2 ** (len(block_out_channels) - 1). */
export function vaeScaleFactor(config: { block_out_channels: readonly number[] }): number {
  return 2 ** (config.block_out_channels.length - 1);
}

/** Keys of the decoder half (ignored by the encoder graph) and of the encoder half. */
const isDecoderKey = (k: string) => k.startsWith("decoder.") || k.startsWith("post_quant_conv.");
const isEncoderKey = (k: string) => k.startsWith("encoder.") || k.startsWith("quant_conv.");

/**
 * The encoder half of AutoencoderKL: `Encoder` + `quant_conv` + DiagonalGaussianDistribution.
 * Input `sample` float32 [B, in_channels, H, W] in [-1, 1]. Outputs, each [B, latent_channels, H/f, W/f]
 * (f = vaeScaleFactor): `mean`, `logvar` (clamped to [-30, 20]) and `std` = exp(0.5 * logvar).
 * The posterior sample is `mean + std * noise` (the pipeline draws the noise); decoder keys in
 * `weights` are ignored, any other unused key is an error.
 *
 * @example
 *   const g = buildVaeEncoder(openComponentWeights("model/vae"), config);
 *   g.save("cache/vae_encoder");
 */
export function buildVaeEncoder(weights: WeightSource, config: VaeConfig): Graph {
  const c = config;
  const g = new Graph(weights, "AutoencoderKL.encoder");
  const chans = c.block_out_channels;
  const L = c.latent_channels;
  let h: Value = g.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);

  // 1. Encoder: conv_in, down blocks (resnets then a stride-2 downsample, except the last), mid block
  h = conv2d(g, "encoder.conv_in", h, c.in_channels, chans[0], 3, { padding: 1 }); // [B, C0, H, W]
  let inC = chans[0];
  for (let i = 0; i < chans.length; i++) {
    const p = `encoder.down_blocks.${i}`;
    for (let j = 0; j < c.layers_per_block; j++) {
      h = resnetBlock2D(g, `${p}.resnets.${j}`, h, undefined, j === 0 ? inC : chans[i], chans[i], {
        groups: c.norm_num_groups,
        eps: EPS,
        act: c.act_fn,
      });
    }
    // Downsample2D(padding=0): pad (0,1,0,1), conv 3x3 stride 2
    if (i < chans.length - 1) h = downsample2D(g, `${p}.downsamplers.0`, h, chans[i], { useConv: true, padding: 0 }); // [B, Ci, H/2, W/2]
    inC = chans[i];
  }
  const top = chans[chans.length - 1];
  h = midBlock(g, "encoder.mid_block", h, top, c);

  // 2. conv_norm_out, SiLU (always SiLU, whatever act_fn), conv_out to 2 * latent_channels moments
  h = silu(g, groupNorm(g, "encoder.conv_norm_out", h, top, c.norm_num_groups, EPS));
  h = conv2d(g, "encoder.conv_out", h, top, 2 * L, 3, { padding: 1 }); // [B, 2L, h, w]
  if (c.use_quant_conv) h = conv2d(g, "quant_conv", h, 2 * L, 2 * L, 1); // [B, 2L, h, w]

  // 3. DiagonalGaussianDistribution: mean, logvar = chunk(moments, 2, dim=1)
  const [mean, rawLogvar] = g.opN("Split", [h, g.ints([L, L])], 2, { axis: 1 }); // 2 x [B, L, h, w]
  const logvar = g.op("Clip", [rawLogvar, g.scalar(-30), g.scalar(20)]);
  const std = g.op("Exp", [g.mul(logvar, g.scalar(0.5))]);
  g.output(mean, "mean");
  g.output(logvar, "logvar");
  g.output(std, "std");
  g.checkAllWeightsUsed(isDecoderKey);
  return g;
}

/**
 * The decoder half of AutoencoderKL: `post_quant_conv` + `Decoder`. Input `latent` float32
 * [B, latent_channels, h, w], UNSCALED (the pipeline passes `latents / scaling_factor`); output
 * `sample` [B, out_channels, h*f, w*f] in about [-1, 1] (not clamped). Encoder keys are ignored.
 *
 * @example
 *   const g = buildVaeDecoder(openComponentWeights("model/vae"), config);
 */
export function buildVaeDecoder(weights: WeightSource, config: VaeConfig): Graph {
  const c = config;
  const g = new Graph(weights, "AutoencoderKL.decoder");
  const chans = c.block_out_channels;
  const L = c.latent_channels;
  const top = chans[chans.length - 1];
  let h: Value = g.input("latent", "float32", ["batch", L, "latent_height", "latent_width"]);

  // 1. post_quant_conv, conv_in, mid block
  if (c.use_post_quant_conv) h = conv2d(g, "post_quant_conv", h, L, L, 1); // [B, L, h, w]
  h = conv2d(g, "decoder.conv_in", h, L, top, 3, { padding: 1 }); // [B, C_top, h, w]
  h = midBlock(g, "decoder.mid_block", h, top, c);

  // 2. up blocks over reversed channels: layers_per_block + 1 resnets, then nearest 2x + conv (not last)
  const rev = [...chans].reverse();
  let prevC = rev[0];
  for (let i = 0; i < rev.length; i++) {
    const p = `decoder.up_blocks.${i}`;
    for (let j = 0; j < c.layers_per_block + 1; j++) {
      h = resnetBlock2D(g, `${p}.resnets.${j}`, h, undefined, j === 0 ? prevC : rev[i], rev[i], {
        groups: c.norm_num_groups,
        eps: EPS,
        act: c.act_fn,
      });
    }
    if (i < rev.length - 1) h = upsample2D(g, `${p}.upsamplers.0`, h, rev[i]); // [B, Ci, 2h, 2w]
    prevC = rev[i];
  }

  // 3. conv_norm_out, SiLU, conv_out
  h = silu(g, groupNorm(g, "decoder.conv_norm_out", h, chans[0], c.norm_num_groups, EPS));
  h = conv2d(g, "decoder.conv_out", h, chans[0], c.out_channels, 3, { padding: 1 }); // [B, 3, H, W]
  g.output(h, "sample");
  g.checkAllWeightsUsed(isEncoderKey);
  return g;
}

/**
 * Both halves from one AutoencoderKL weight source (a vae/ folder holds encoder and decoder).
 *
 * @example
 *   const { encoder, decoder } = buildAutoencoderKL(openComponentWeights("model/vae"), config);
 */
export function buildAutoencoderKL(weights: WeightSource, config: VaeConfig): { encoder: Graph; decoder: Graph } {
  return { encoder: buildVaeEncoder(weights, config), decoder: buildVaeDecoder(weights, config) };
}

/** UNetMidBlock2D (temb None, one layer): resnet, [attention], resnet; all at `C` channels. */
function midBlock(g: Graph, prefix: string, x: Value, C: number, c: VaeConfig): Value {
  const opts = { groups: c.norm_num_groups, eps: EPS, act: c.act_fn };
  let h = resnetBlock2D(g, `${prefix}.resnets.0`, x, undefined, C, C, opts);
  if (c.mid_block_add_attention) h = spatialSelfAttention(g, `${prefix}.attentions.0`, h, C, c.norm_num_groups);
  return resnetBlock2D(g, `${prefix}.resnets.1`, h, undefined, C, C, opts);
}

/**
 * diffusers `Attention` as the VAE mid block builds it: group_norm, ONE head of width C over the H*W
 * positions, to_out.0, residual_connection, rescale_output_factor 1 (no division emitted).
 * Checkpoints saved before diffusers 0.14 name the projections query/key/value/proj_attn; diffusers
 * renames them on load, so both spellings are accepted here.
 */
function spatialSelfAttention(g: Graph, prefix: string, x: Value, C: number, groups: number): Value {
  const legacy = !g.weights.synthetic && g.has(`${prefix}.query.weight`);
  const name = (modern: string, old: string) => `${prefix}.${legacy ? old : modern}`;
  const n = groupNorm(g, `${prefix}.group_norm`, x, C, groups, EPS); // [B, C, H, W]
  const seq = g.transpose(g.reshape(n, [0, C, -1]), [0, 2, 1]); // [B, H*W, C]
  const q = linear(g, name("to_q", "query"), seq, C, C); // [B, H*W, C]
  const k = linear(g, name("to_k", "key"), seq, C, C);
  const v = linear(g, name("to_v", "value"), seq, C, C);
  const a = attention(g, q, k, v, 1); // [B, H*W, C]
  const o = linear(g, name("to_out.0", "proj_attn"), a, C, C); // [B, H*W, C]
  const back = g.op("Reshape", [g.transpose(o, [0, 2, 1]), g.op("Shape", [x])]); // [B, C, H, W]
  return g.add(back, x);
}
