// Opt-in int8 weight quantization (`--quantize int8`) of Linear layers and pointwise (1x1) convolutions:
// weights are quantized at graph-build time, symmetric per output channel; activations are quantized
// per call by ONNX Runtime's com.microsoft DynamicQuantizeMatMul (uint8 x int8 -> float32, bias fused;
// MLAS runs it with AVX-512 VNNI / AVX-VNNI where the CPU has them). 3x3 convolutions stay float32:
// ORT's only dynamic int8 conv, ConvInteger, runs uint8 x uint8 without VNNI (no faster than its NCHWc
// float32 conv here) and int8 weights take a reference path ~10x slower (docs/performance.md).
// Ref: onnxruntime quantization/quantize.py quantize_dynamic (per_channel, QInt8 weights).
import type { Graph, Value } from "./builder.js";

/**
 * Quantization modes the builders accept. "int8": the UNet's transformer-block Linear layers and the
 * text encoder's Linear layers. "int8-conv": the same plus the UNet's pointwise (1x1) convolutions
 * (a little faster again, and about 5x the int8 error on the tiny test model: docs/performance.md).
 */
export type QuantizeMode = "int8" | "int8-conv";
export const QUANTIZE_MODES: readonly QuantizeMode[] = ["int8", "int8-conv"];

/**
 * Graph-cache key part of a quantized graph: changes whenever the set of quantized layers does, so
 * graphs cached by an older policy are rebuilt (2: the text encoder is quantized too).
 */
export function quantizeCacheKey(mode: QuantizeMode): { quantize: QuantizeMode; layers: number } {
  return { quantize: mode, layers: 2 };
}

/** int8 weights plus one float32 scale per output channel: W[o][i] ~= q[i][o] * scale[o]. */
export interface QuantizedWeight {
  /** [inF, outF] row-major (already transposed for MatMul). */
  q: Int8Array;
  /** [outF] */
  scale: Float32Array;
}

/**
 * Symmetric per-output-channel int8 quantization of a torch Linear weight stored [outF, inF]:
 * scale[o] = max_i |W[o][i]| / 127, q = round(W / scale) in [-127, 127] (an all-zero row gets scale 1).
 *
 * @example
 *   const { q, scale } = quantizeLinearWeightInt8(weights.read("to_q.weight", [320, 320]), 320, 320);
 */
export function quantizeLinearWeightInt8(w: Float32Array, outF: number, inF: number): QuantizedWeight {
  if (w.length !== outF * inF) throw new Error(`quantizeLinearWeightInt8: ${w.length} values for [${outF}, ${inF}]`);
  const q = new Int8Array(inF * outF);
  const scale = new Float32Array(outF);
  for (let o = 0; o < outF; o++) {
    const row = o * inF;
    let max = 0;
    for (let i = 0; i < inF; i++) max = Math.max(max, Math.abs(w[row + i]));
    const s = max > 0 ? Math.fround(max / 127) : 1;
    scale[o] = s;
    for (let i = 0; i < inF; i++) {
      const v = Math.round(w[row + i] / s);
      q[i * outF + o] = Math.min(127, Math.max(-127, v));
    }
  }
  return { q, scale };
}

/** The float32 weight [inF, outF] a QuantizedWeight stands for (tests, error estimates). */
export function dequantizeLinearWeight({ q, scale }: QuantizedWeight, inF: number, outF: number): Float32Array {
  const out = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) for (let o = 0; o < outF; o++) out[i * outF + o] = Math.fround(q[i * outF + o] * scale[o]);
  return out;
}

/**
 * torch.nn.Linear with int8 weights: DynamicQuantizeMatMul(x, q, scale, -, bias). The weight is read
 * and quantized once (q and scale are written one after the other at save time). `stored` is the
 * weight's shape in the checkpoint when it is not [outF, inF] (a 1x1 conv's [outF, inF, 1, 1]).
 */
export function quantizedLinear(g: Graph, prefix: string, x: Value, inF: number, outF: number, bias = true, stored: number[] = [outF, inF]): Value {
  const key = `${prefix}.weight`;
  let memo: QuantizedWeight | undefined;
  const quantized = (w: Float32Array) => (memo ??= quantizeLinearWeightInt8(w, outF, inF));
  const dep = [{ key, shape: stored }];
  const q = g.typedParam(`${key}.int8`, dep, [inF, outF], "int8", ([w]) => quantized(w).q);
  const scale = g.typedParam(`${key}.scale`, dep, [outF], "float32", ([w]) => {
    const s = quantized(w).scale;
    memo = undefined; // both halves are written: let the int8 copy go
    return s;
  });
  const b = bias ? g.param(`${prefix}.bias`, [outF]) : undefined;
  return g.op("DynamicQuantizeMatMul", [x, q, scale, undefined, b], {}, "com.microsoft"); // [..., outF]
}

/**
 * torch.nn.Conv2d with a 1x1 kernel (stride 1, no padding) and int8 weights: the same per-pixel Linear
 * over channels, run as DynamicQuantizeMatMul between two transposes (NCHW -> NHWC -> NCHW).
 */
export function quantizedPointwiseConv(g: Graph, prefix: string, x: Value, inC: number, outC: number, bias = true): Value {
  const nhwc = g.transpose(x, [0, 2, 3, 1]); // [B, H, W, inC]
  const y = quantizedLinear(g, prefix, nhwc, inC, outC, bias, [outC, inC, 1, 1]); // [B, H, W, outC]
  return g.transpose(y, [0, 3, 1, 2]); // [B, outC, H, W]
}

/** Which Linear layers of a model to quantize, by weight-key prefix and size. */
export type LinearSelector = (prefix: string, inF: number, outF: number) => boolean;

/**
 * UNet policy: the Linear layers inside transformer blocks (attention projections, GEGLU feed-forward,
 * SD 2.x proj_in/proj_out), which carry ~all Linear FLOPs; the time-embedding Linears run on one row
 * per image, so quantizing them would cost accuracy and save nothing.
 */
export const unetInt8Layers: LinearSelector = (prefix) => prefix.includes(".attentions.");

/**
 * Text encoder policy (CLIPTextModel): every Linear of the encoder layers (q/k/v/out projections, MLP);
 * the embeddings and final layer norm stay float32.
 */
export const textEncoderInt8Layers: LinearSelector = (prefix) => prefix.includes(".encoder.layers.");

/**
 * Makes `g` build the selected Linear layers as int8 (sets Graph.linearHook).
 *
 * @example
 *   const g = new Graph(weights, "UNet2DConditionModel");
 *   useInt8Linear(g, unetInt8Layers);
 */
export function useInt8Linear(g: Graph, select: LinearSelector): void {
  g.linearHook = (prefix, x, inF, outF, bias) => (select(prefix, inF, outF) ? quantizedLinear(g, prefix, x, inF, outF, bias) : undefined);
}

/**
 * Makes `g` build every pointwise (1x1, stride 1, unpadded) convolution as int8 (sets Graph.convHook):
 * in the SD UNet, the transformer blocks' proj_in/proj_out (SD 1.x) and the resnets' conv_shortcut.
 */
export function useInt8PointwiseConv(g: Graph): void {
  g.convHook = (prefix, x, inC, outC, k, { stride, padding, bias }) =>
    k === 1 && stride === 1 && padding === 0 ? quantizedPointwiseConv(g, prefix, x, inC, outC, bias) : undefined;
}

/**
 * Sets up `g` (a UNet) for `mode`: transformer-block Linear layers, and for "int8-conv" the pointwise convs.
 *
 * @example
 *   const g = new Graph(weights, "UNet2DConditionModel");
 *   quantizeUNet(g, "int8");
 */
export function quantizeUNet(g: Graph, mode: QuantizeMode): void {
  useInt8Linear(g, unetInt8Layers);
  if (mode === "int8-conv") useInt8PointwiseConv(g);
}

/** Sets up `g` (a CLIP text encoder) for `mode`: the encoder layers' Linear layers (both modes). */
export function quantizeTextEncoder(g: Graph, _mode: QuantizeMode): void {
  useInt8Linear(g, textEncoderInt8Layers);
}
