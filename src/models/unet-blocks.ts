// The UNet's down, mid and up blocks, each a named function built under its weight-key prefix and
// returning (or consuming) its skip connections, so UNet2DConditionModel and ControlNetModel share them.
// Ref: diffusers models/unets/unet_2d_blocks.py (CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn,
// UNetMidBlock2D, CrossAttnUpBlock2D, UpBlock2D). Notation: B batch, C channels, h/w latent size, L tokens.
import { ReimagineError } from "../errors.js";
import type { Graph, Value } from "../graph/builder.js";
import { downsample2D, resnetBlock2D, transformer2DModel, upsample2D } from "./blocks.js";

/** Settings every resnet and transformer of one UNet shares. */
export interface UNetBlockContext {
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

/** One skip connection: a down block's output kept for the matching up block. */
export interface Skip {
  v: Value; // [B, channels, h, w]
  channels: number;
}

function resnet(g: Graph, k: UNetBlockContext, prefix: string, x: Value, inC: number, outC: number, outputScaleFactor = 1): Value {
  return resnetBlock2D(g, prefix, x, k.temb, inC, outC, {
    groups: k.groups,
    eps: k.eps,
    tembChannels: k.tembChannels,
    act: k.act,
    timeEmbeddingNorm: k.timeEmbeddingNorm,
    outputScaleFactor,
  });
}

function transformer(g: Graph, k: UNetBlockContext, prefix: string, x: Value, channels: number, heads: number, layers: number): Value {
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

export interface DownBlockOptions {
  inC: number;
  outC: number;
  /** Resnets in the block (diffusers `num_layers`). */
  layers: number;
  /** Add the strided-conv Downsample2D (every block but the last). */
  addDownsample: boolean;
  downsamplePadding: number;
  /** Attention heads and transformer layers per resnet (cross-attention blocks only). */
  heads?: number;
  transformerLayers?: number[];
}

/**
 * diffusers CrossAttnDownBlock2D (resnet + Transformer2DModel per layer, then Downsample2D); every
 * layer's output and the downsampler's output are skips.
 */
export function crossAttnDownBlock2D(g: Graph, k: UNetBlockContext, prefix: string, x: Value, o: DownBlockOptions): { h: Value; skips: Skip[] } {
  return downBlock(g, k, prefix, x, o, true);
}

/** diffusers DownBlock2D: resnets only, then Downsample2D; outputs are skips. */
export function downBlock2D(g: Graph, k: UNetBlockContext, prefix: string, x: Value, o: DownBlockOptions): { h: Value; skips: Skip[] } {
  return downBlock(g, k, prefix, x, o, false);
}

function downBlock(g: Graph, k: UNetBlockContext, prefix: string, x: Value, o: DownBlockOptions, cross: boolean): { h: Value; skips: Skip[] } {
  const skips: Skip[] = [];
  let h = x;
  for (let j = 0; j < o.layers; j++) {
    h = resnet(g, k, `${prefix}.resnets.${j}`, h, j === 0 ? o.inC : o.outC, o.outC); // [B, outC, h, w]
    if (cross) h = transformer(g, k, `${prefix}.attentions.${j}`, h, o.outC, o.heads!, o.transformerLayers![j]);
    skips.push({ v: h, channels: o.outC });
  }
  if (o.addDownsample) {
    h = downsample2D(g, `${prefix}.downsamplers.0`, h, o.outC, { useConv: true, padding: o.downsamplePadding }); // [B, outC, h/2, w/2]
    skips.push({ v: h, channels: o.outC });
  }
  return { h, skips };
}

/** diffusers UNetMidBlock2DCrossAttn (one attention layer): resnet -> Transformer2DModel -> resnet. */
export function unetMidBlock2DCrossAttn(
  g: Graph,
  k: UNetBlockContext,
  prefix: string,
  x: Value, // [B, C, h, w]
  o: { channels: number; heads: number; transformerLayers: number; scaleFactor: number },
): Value {
  let h = resnet(g, k, `${prefix}.resnets.0`, x, o.channels, o.channels, o.scaleFactor);
  h = transformer(g, k, `${prefix}.attentions.0`, h, o.channels, o.heads, o.transformerLayers);
  return resnet(g, k, `${prefix}.resnets.1`, h, o.channels, o.channels, o.scaleFactor); // [B, C, h, w]
}

/** diffusers UNetMidBlock2D as the UNet builds it (num_layers 0 when it has no attention): one resnet. */
export function unetMidBlock2D(g: Graph, k: UNetBlockContext, prefix: string, x: Value, o: { channels: number; scaleFactor: number }): Value {
  return resnet(g, k, `${prefix}.resnets.0`, x, o.channels, o.channels, o.scaleFactor);
}

export interface UpBlockOptions {
  /** Channels of the incoming h (the previous up block's output). */
  prevC: number;
  outC: number;
  /** Channels of the skips of the matching down block's input side (diffusers `in_channels`). */
  inC: number;
  /** Resnets in the block: the down block's layers + 1. */
  layers: number;
  /** Add Upsample2D (every block but the last). */
  addUpsample: boolean;
  heads?: number;
  transformerLayers?: number[];
}

/**
 * diffusers CrossAttnUpBlock2D: per layer, concat the newest skip, resnet, Transformer2DModel; then
 * Upsample2D to the next skip's size. Pops its skips from `skips` (newest first).
 */
export function crossAttnUpBlock2D(g: Graph, k: UNetBlockContext, prefix: string, x: Value, skips: Skip[], o: UpBlockOptions): Value {
  return upBlock(g, k, prefix, x, skips, o, true);
}

/** diffusers UpBlock2D: per layer, concat the newest skip and a resnet; then Upsample2D. */
export function upBlock2D(g: Graph, k: UNetBlockContext, prefix: string, x: Value, skips: Skip[], o: UpBlockOptions): Value {
  return upBlock(g, k, prefix, x, skips, o, false);
}

function upBlock(g: Graph, k: UNetBlockContext, prefix: string, x: Value, skips: Skip[], o: UpBlockOptions, cross: boolean): Value {
  let h = x;
  for (let j = 0; j < o.layers; j++) {
    const skip = skips.pop();
    const skipC = j === o.layers - 1 ? o.inC : o.outC;
    if (!skip || skip.channels !== skipC) {
      throw new ReimagineError(
        `UNet config.json: ${prefix}: skip connection ${j} has ${skip?.channels} channels, expected ${skipC}; block_out_channels / layers_per_block are inconsistent`,
        "bad_config",
      );
    }
    const hc = j === 0 ? o.prevC : o.outC;
    h = g.concat([h, skip.v], 1); // [B, hc + skipC, h, w]
    h = resnet(g, k, `${prefix}.resnets.${j}`, h, hc + skipC, o.outC); // [B, outC, h, w]
    if (cross) h = transformer(g, k, `${prefix}.attentions.${j}`, h, o.outC, o.heads!, o.transformerLayers![j]);
  }
  if (o.addUpsample) {
    // diffusers passes upsample_size = the next skip's H, W (only differs from 2x for odd sizes)
    h = upsample2D(g, `${prefix}.upsamplers.0`, h, o.outC, { sizeLike: skips[skips.length - 1].v }); // [B, outC, 2h, 2w]
  }
  return h;
}
