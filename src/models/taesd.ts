// AutoencoderTiny (TAESD, madebyollin) as two ONNX graphs, plus its uint8 latent (un)scaling.
// Ref: diffusers models/autoencoders/autoencoder_tiny.py (AutoencoderTiny: encode, decode, forward,
// scale_latents, unscale_latents), vae.py (EncoderTiny, DecoderTiny), unet_2d_blocks.py (AutoencoderTinyBlock).
// TAESD latents are already in the UNet's space: scaling_factor is 1.0 and there is no latent_dist.
import { ReimagineError } from "../errors.js";
import { Graph, type Value } from "../graph/builder.js";
import { activation, conv2d, upsampleNearest } from "../graph/layers.js";
import { roundHalfEven } from "../numeric.js";
import type { WeightSource } from "../weights/source.js";

/** diffusers AutoencoderTiny config (snake_case as in config.json). */
export interface TinyVaeConfig {
  in_channels: number;
  out_channels: number;
  encoder_block_out_channels: number[];
  decoder_block_out_channels: number[];
  act_fn: string;
  upsample_fn: string;
  latent_channels: number;
  upsampling_scaling_factor: number;
  num_encoder_blocks: number[];
  num_decoder_blocks: number[];
  /** Only scale_latents/unscale_latents (uint8 storage) use these; encode/decode do not. */
  latent_magnitude: number;
  latent_shift: number;
  force_upcast: boolean;
  /** 1.0 for TAESD/TAESDXL: pipelines still multiply by it after encode and divide before decode. */
  scaling_factor: number;
  shift_factor: number;
  /** = decoder_block_out_channels (registered by __init__); pipelines derive vae_scale_factor from it. */
  block_out_channels: number[];
}

/** AutoencoderTiny.__init__ defaults (full-size TAESD). */
const DEFAULTS: Omit<TinyVaeConfig, "block_out_channels"> = {
  in_channels: 3,
  out_channels: 3,
  encoder_block_out_channels: [64, 64, 64, 64],
  decoder_block_out_channels: [64, 64, 64, 64],
  act_fn: "relu",
  upsample_fn: "nearest",
  latent_channels: 4,
  upsampling_scaling_factor: 2,
  num_encoder_blocks: [1, 3, 3, 3],
  num_decoder_blocks: [3, 3, 3, 1],
  latent_magnitude: 3,
  latent_shift: 0.5,
  force_upcast: false,
  scaling_factor: 1.0,
  shift_factor: 0.0,
};

/**
 * Fills AutoencoderTiny defaults and refuses configs that diffusers itself could not run.
 *
 * @example
 *   const config = resolveTinyVaeConfig(readJson("taesd/config.json", "TAESD config"));
 */
export function resolveTinyVaeConfig(json: Record<string, unknown>): TinyVaeConfig {
  const given = Object.fromEntries(Object.entries(json).filter(([, v]) => v !== undefined && v !== null));
  const base = { ...DEFAULTS, ...(given as Partial<TinyVaeConfig>) };
  // __init__ registers block_out_channels = decoder_block_out_channels, overriding a stored value
  const c: TinyVaeConfig = { ...base, block_out_channels: [...base.decoder_block_out_channels] };
  const bad = (why: string) => new ReimagineError(`AutoencoderTiny config: ${why}`, "unsupported");
  const cls = json._class_name;
  if (cls !== undefined && cls !== "AutoencoderTiny") {
    throw bad(
      `_class_name is '${String(cls)}', not AutoencoderTiny${cls === "AutoencoderKL" ? "; build it with buildVaeEncoder/buildVaeDecoder (models/vae.ts)" : ""}`,
    );
  }
  for (const [half, chans, blocks] of [
    ["encoder", c.encoder_block_out_channels, c.num_encoder_blocks],
    ["decoder", c.decoder_block_out_channels, c.num_decoder_blocks],
  ] as const) {
    if (chans.length === 0 || chans.length !== blocks.length) {
      throw bad(`${half}_block_out_channels (${chans.length}) must have the same non-zero length as num_${half}_blocks (${blocks.length})`);
    }
    // The stage convs are C_i -> C_i, so a channel change between stages fails in diffusers too.
    if (chans.some((ch) => ch !== chans[0])) {
      throw bad(`${half}_block_out_channels [${chans}] must all be equal (EncoderTiny/DecoderTiny stage convs keep the width)`);
    }
  }
  if (c.upsample_fn !== "nearest") throw bad(`upsample_fn '${c.upsample_fn}' is not supported (only "nearest")`);
  if (!Number.isInteger(c.upsampling_scaling_factor) || c.upsampling_scaling_factor < 1) {
    throw bad(`upsampling_scaling_factor must be a positive integer, got ${c.upsampling_scaling_factor}`);
  }
  if (!(c.scaling_factor > 0)) throw bad(`scaling_factor must be a positive number, got ${c.scaling_factor}`);
  return c;
}

/** AutoencoderTinyBlock: ReLU(conv.4(act(conv.2(act(conv.0(x))))) + x); in == out, so skip is Identity. */
function tinyBlock(g: Graph, prefix: string, x: Value, C: number, act: string): Value {
  let h = activation(g, act, conv2d(g, `${prefix}.conv.0`, x, C, C, 3, { padding: 1 }));
  h = activation(g, act, conv2d(g, `${prefix}.conv.2`, h, C, C, 3, { padding: 1 }));
  h = conv2d(g, `${prefix}.conv.4`, h, C, C, 3, { padding: 1 }); // [B, C, H, W]
  return g.op("Relu", [g.add(h, x)]); // `fuse` is always ReLU, whatever act_fn says
}

/**
 * `AutoencoderTiny.encode(x).latents`. Input `sample` float32 [B, in_channels, H, W] in [-1, 1] (the
 * graph maps it to [0, 1] as EncoderTiny does); output `latent` [B, latent_channels, H/8, W/8] for
 * four stages (each stage after the first halves H and W, rounding up). There is no distribution:
 * the pipeline uses `latent * scaling_factor` directly and draws no posterior noise.
 *
 * @example
 *   const g = buildTinyEncoder(openComponentWeights("taesd"), config);
 */
export function buildTinyEncoder(weights: WeightSource, config: TinyVaeConfig): Graph {
  const c = config;
  const g = new Graph(weights, "AutoencoderTiny.encoder");
  const C = c.encoder_block_out_channels[0];
  const x = g.input("sample", "float32", ["batch", c.in_channels, "height", "width"]);
  // 1. [-1, 1] -> [0, 1]: x.add(1).div(2)
  let h = g.op("Div", [g.add(x, g.scalar(1)), g.scalar(2)]);
  // 2. encoder.layers: Conv(in -> C), then per stage [stride-2 Conv without bias] + blocks, Conv(C -> latent)
  let idx = 0;
  const key = () => `encoder.layers.${idx++}`;
  for (let i = 0; i < c.num_encoder_blocks.length; i++) {
    h =
      i === 0
        ? conv2d(g, key(), h, c.in_channels, C, 3, { padding: 1 }) // [B, C, H, W]
        : conv2d(g, key(), h, C, C, 3, { padding: 1, stride: 2, bias: false }); // [B, C, H/2, W/2]
    for (let j = 0; j < c.num_encoder_blocks[i]; j++) h = tinyBlock(g, key(), h, C, c.act_fn);
  }
  h = conv2d(g, key(), h, C, c.latent_channels, 3, { padding: 1 }); // [B, L, h, w]
  g.output(h, "latent");
  g.checkAllWeightsUsed((k) => k.startsWith("decoder."));
  return g;
}

/**
 * `AutoencoderTiny.decode(z).sample`. Input `latent` float32 [B, latent_channels, h, w] (the pipeline
 * passes `latents / scaling_factor`); output `sample` [B, out_channels, h*s^3, w*s^3] (s =
 * upsampling_scaling_factor) in about [-1, 1], NOT clamped (the image processor clamps x/2 + 0.5).
 * The input is soft-clamped with tanh(z / 3) * 3 (a fixed 3, not latent_magnitude).
 *
 * @example
 *   const g = buildTinyDecoder(openComponentWeights("taesd"), config);
 */
export function buildTinyDecoder(weights: WeightSource, config: TinyVaeConfig): Graph {
  const c = config;
  const g = new Graph(weights, "AutoencoderTiny.decoder");
  const C = c.decoder_block_out_channels[0];
  const z = g.input("latent", "float32", ["batch", c.latent_channels, "latent_height", "latent_width"]);
  // 1. clamp: tanh(z / 3) * 3
  let h = g.mul(g.op("Tanh", [g.op("Div", [z, g.scalar(3)])]), g.scalar(3));
  // 2. decoder.layers: Conv(latent -> C), act, then per stage blocks, [Upsample], Conv (bias only in the last)
  let idx = 0;
  const key = () => `decoder.layers.${idx++}`;
  h = activation(g, c.act_fn, conv2d(g, key(), h, c.latent_channels, C, 3, { padding: 1 }));
  idx++; // layers.1 is the activation (no parameters)
  const s = c.upsampling_scaling_factor;
  const stages = c.num_decoder_blocks.length;
  for (let i = 0; i < stages; i++) {
    const last = i === stages - 1;
    for (let j = 0; j < c.num_decoder_blocks[i]; j++) h = tinyBlock(g, key(), h, C, c.act_fn);
    if (!last) {
      idx++; // nn.Upsample(scale_factor=s, mode="nearest") has no parameters
      h = upsampleNearest(g, h, s); // [B, C, s*H, s*W]
    }
    h = conv2d(g, key(), h, C, last ? c.out_channels : C, 3, { padding: 1, bias: last });
  }
  // 3. [0, 1] -> [-1, 1]: x.mul(2).sub(1)
  h = g.op("Sub", [g.mul(h, g.scalar(2)), g.scalar(1)]); // [B, out_channels, H, W]
  g.output(h, "sample");
  g.checkAllWeightsUsed((k) => k.startsWith("encoder."));
  return g;
}

/**
 * Both halves from one AutoencoderTiny weight source.
 *
 * @example
 *   const { encoder, decoder } = buildAutoencoderTiny(openComponentWeights("taesd"), config);
 */
export function buildAutoencoderTiny(weights: WeightSource, config: TinyVaeConfig): { encoder: Graph; decoder: Graph } {
  return { encoder: buildTinyEncoder(weights, config), decoder: buildTinyDecoder(weights, config) };
}

/**
 * `scale_latents` then uint8 quantisation, as AutoencoderTiny.forward stores latents in an image:
 * round(clamp(x / (2 * latent_magnitude) + latent_shift, 0, 1) * 255), in float32 arithmetic.
 * The img2img pipelines never call this (only forward()/previews do).
 *
 * @example
 *   const bytes = quantizeTinyLatents(latent, config); // Uint8Array, same length
 */
export function quantizeTinyLatents(latent: Float32Array, config: Pick<TinyVaeConfig, "latent_magnitude" | "latent_shift">): Uint8Array {
  const f = Math.fround;
  const div = f(2 * config.latent_magnitude);
  const shift = f(config.latent_shift);
  return Uint8Array.from(latent, (x) => {
    const scaled = Math.min(1, Math.max(0, f(f(x / div) + shift)));
    return roundHalfEven(f(scaled * 255));
  });
}

/** `scale_latents` alone: clamp(x / (2 * latent_magnitude) + latent_shift, 0, 1) (float32). */
export function scaleTinyLatents(latent: Float32Array, config: Pick<TinyVaeConfig, "latent_magnitude" | "latent_shift">): Float32Array {
  const f = Math.fround;
  const div = f(2 * config.latent_magnitude);
  const shift = f(config.latent_shift);
  return latent.map((x) => Math.min(1, Math.max(0, f(f(x / div) + shift))));
}

/**
 * `unscale_latents(bytes / 255)`: (x - latent_shift) * 2 * latent_magnitude, in float32 arithmetic.
 *
 * @example
 *   const latent = unquantizeTinyLatents(bytes, config); // feed to the decoder graph
 */
export function unquantizeTinyLatents(bytes: Uint8Array, config: Pick<TinyVaeConfig, "latent_magnitude" | "latent_shift">): Float32Array {
  const f = Math.fround;
  const mul = f(2 * config.latent_magnitude);
  const shift = f(config.latent_shift);
  return Float32Array.from(bytes, (b) => f(f(f(b / 255) - shift) * mul));
}
