// Opt-in int8 weight quantization (`--quantize int8`) of Linear layers and convolutions: weights are
// quantized at graph-build time, symmetric per output channel; activations are quantized per call
// (uint8, asymmetric, per tensor) and multiplied by ONNX Runtime's com.microsoft DynamicQuantizeMatMul /
// MatMulIntegerToFloat (uint8 x int8 -> float32, bias fused; MLAS runs them with AVX-512 VNNI / AVX-VNNI
// where the CPU has them). A k x k convolution is built as an im2col in uint8 (NHWC: k*k strided Slices
// of the padded input, concatenated over channels) and one such MatMul: ORT's own dynamic int8 conv,
// ConvInteger, has no VNNI kernel and is 4-8x slower than its float32 NCHWc conv here, while the im2col
// form is 2.4-4x faster than float32 at the SD UNet's 320-1280 channels (docs/performance.md).
// Ref: onnxruntime quantization/quantize.py quantize_dynamic (per_channel, QInt8 weights).
import type { Graph, Value } from "./builder.js";

/**
 * Quantization modes the builders accept. "int8": the UNet's transformer-block Linear layers and the
 * text encoder's Linear layers. "int8-conv": the same plus the UNet's convolutions but conv_in/conv_out
 * (the UNet call ~1.5x faster again at 512x512, and about 5x the int8 error on the tiny test model:
 * docs/performance.md).
 */
export type QuantizeMode = "int8" | "int8-conv";
export const QUANTIZE_MODES: readonly QuantizeMode[] = ["int8", "int8-conv"];

/**
 * Graph-cache key part of a quantized graph: changes whenever the set of quantized layers does, so
 * graphs cached by an older policy are rebuilt (2: the text encoder is quantized too; 3: "int8-conv" takes the
 * k x k convs, so only its graphs are rebuilt).
 */
export function quantizeCacheKey(mode: QuantizeMode): { quantize: QuantizeMode; layers: number } {
  return { quantize: mode, layers: mode === "int8-conv" ? 3 : 2 };
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
  const { q, scale, b } = int8Params(g, prefix, stored, inF, outF, bias, (w) => w);
  return g.op("DynamicQuantizeMatMul", [x, q, scale, undefined, b], {}, "com.microsoft"); // [..., outF]
}

/**
 * The parameters of an int8 layer: `${prefix}.weight` (stored as `stored`) turned into rows [outF, inF] by
 * `rows`, quantized once into q [inF, outF] int8 and scale [outF] (written one after the other at save
 * time), and the float bias.
 */
function int8Params(g: Graph, prefix: string, stored: number[], inF: number, outF: number, bias: boolean, rows: (w: Float32Array) => Float32Array) {
  const key = `${prefix}.weight`;
  let memo: QuantizedWeight | undefined;
  const quantized = (w: Float32Array) => (memo ??= quantizeLinearWeightInt8(rows(w), outF, inF));
  const dep = [{ key, shape: stored }];
  const q = g.typedParam(`${key}.int8`, dep, [inF, outF], "int8", ([w]) => quantized(w).q);
  const scale = g.typedParam(`${key}.scale`, dep, [outF], "float32", ([w]) => {
    const s = quantized(w).scale;
    memo = undefined; // both halves are written: let the int8 copy go
    return s;
  });
  return { q, scale, b: bias ? g.param(`${prefix}.bias`, [outF]) : undefined };
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

/**
 * torch.nn.Conv2d (square k x k kernel, symmetric zero padding) with int8 weights, as uint8 im2col + one
 * int8 MatMul: DynamicQuantizeLinear(x) -> NHWC -> Pad with the zero point (the quantized 0.0) -> k*k Slices
 * (stride as their step, ends counted from the far edge so any H, W works) -> Concat [B, H', W', k*k*inC] ->
 * MatMulIntegerToFloat with the weight as [(ky, kx, c), outC] -> NCHW.
 */
export function quantizedConv(g: Graph, prefix: string, x: Value, inC: number, outC: number, k: number, stride: number, padding: number, bias = true): Value {
  // [outC, inC, k, k] -> rows [outC, (ky, kx, c)], the im2col's column order
  const { q, scale, b } = int8Params(g, prefix, [outC, inC, k, k], k * k * inC, outC, bias, (w) => convWeightRows(w, outC, inC, k));
  const [xq, xScale, xZero] = g.opN("DynamicQuantizeLinear", [x], 3);
  let nhwc = g.transpose(xq, [0, 2, 3, 1]); // [B, H, W, inC] uint8
  if (padding > 0) nhwc = g.op("Pad", [nhwc, g.ints([0, padding, padding, 0, 0, padding, padding, 0]), xZero]);
  const taps: Value[] = [];
  const end = (i: number) => (i === k - 1 ? Number.MAX_SAFE_INTEGER : i - (k - 1)); // the last output's tap, from the end
  const axes = g.ints([1, 2]);
  const steps = g.ints([stride, stride]);
  for (let ky = 0; ky < k; ky++) {
    for (let kx = 0; kx < k; kx++) taps.push(g.op("Slice", [nhwc, g.ints([ky, kx]), g.ints([end(ky), end(kx)]), axes, steps])); // [B, H', W', inC]
  }
  const cols = taps.length === 1 ? taps[0] : g.concat(taps, 3); // [B, H', W', k*k*inC]
  const y = g.op("MatMulIntegerToFloat", [cols, q, xScale, scale, xZero, undefined, b], {}, "com.microsoft"); // [B, H', W', outC]
  return g.transpose(y, [0, 3, 1, 2]); // [B, outC, H', W']
}

/** A conv weight [outC, inC, k, k] as rows [outC, k*k*inC] ordered (ky, kx, c). */
export function convWeightRows(w: Float32Array, outC: number, inC: number, k: number): Float32Array {
  const rows = new Float32Array(w.length);
  for (let o = 0; o < outC; o++)
    for (let c = 0; c < inC; c++)
      for (let ky = 0; ky < k; ky++) for (let kx = 0; kx < k; kx++) rows[o * k * k * inC + (ky * k + kx) * inC + c] = w[((o * inC + c) * k + ky) * k + kx];
  return rows;
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

/** Which convolutions of a model to quantize, by weight-key prefix, channels and kernel size. */
export type ConvSelector = (prefix: string, inC: number, outC: number, k: number, stride: number) => boolean;

/** Every pointwise (1x1, stride 1) convolution: in the SD UNet, SD 1.x's proj_in/proj_out and the resnets' conv_shortcut. */
export const pointwiseConvs: ConvSelector = (_prefix, _inC, _outC, k, stride) => k === 1 && stride === 1;

/**
 * UNet policy for k x k convolutions (k > 1): every one but conv_in and conv_out, whose 4 latent channels
 * make a MatMul too thin to gain and sit where an error reaches the output unfiltered. All the others
 * (resnets, down/upsamplers) have 320-1280 channels in SD 1.x/2.x and SDXL, where the im2col form is 2.4-4x
 * faster than float32 here.
 */
export const unetInt8Convs: ConvSelector = (prefix, _inC, _outC, k) => k > 1 && prefix !== "conv_in" && prefix !== "conv_out";

/**
 * Makes `g` build the selected convolutions as int8 (sets Graph.convHook): pointwise ones as a per-pixel
 * Linear (quantizedPointwiseConv), k x k ones as im2col + int8 MatMul (quantizedConv).
 *
 * @example
 *   useInt8Conv(g, unetInt8Convs);
 */
export function useInt8Conv(g: Graph, select: ConvSelector): void {
  g.convHook = (prefix, x, inC, outC, k, { stride, padding, bias }) => {
    if (!select(prefix, inC, outC, k, stride)) return undefined;
    if (k === 1 && stride === 1 && padding === 0) return quantizedPointwiseConv(g, prefix, x, inC, outC, bias);
    return quantizedConv(g, prefix, x, inC, outC, k, stride, padding, bias);
  };
}

/** The pointwise convolutions as int8 (useInt8Conv with pointwiseConvs). */
export function useInt8PointwiseConv(g: Graph): void {
  useInt8Conv(g, pointwiseConvs);
}

/** The "int8-conv" UNet policy: every convolution but conv_in and conv_out (pointwise and k x k). */
export const unetInt8ConvMode: ConvSelector = (...a) => pointwiseConvs(...a) || unetInt8Convs(...a);

/**
 * Sets up `g` (a UNet) for `mode`: transformer-block Linear layers, and for "int8-conv" every convolution
 * but conv_in and conv_out too (unetInt8ConvMode).
 *
 * @example
 *   const g = new Graph(weights, "UNet2DConditionModel");
 *   quantizeUNet(g, "int8-conv");
 */
export function quantizeUNet(g: Graph, mode: QuantizeMode): void {
  useInt8Linear(g, unetInt8Layers);
  if (mode === "int8-conv") useInt8Conv(g, unetInt8ConvMode);
}

/** Sets up `g` (a CLIP text encoder) for `mode`: the encoder layers' Linear layers (both modes). */
export function quantizeTextEncoder(g: Graph, _mode: QuantizeMode): void {
  useInt8Linear(g, textEncoderInt8Layers);
}
