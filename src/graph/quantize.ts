// Opt-in int8 weight quantization of Linear layers (`--quantize int8`): weights are quantized at
// graph-build time, symmetric per output channel; activations are quantized per call by ONNX
// Runtime's com.microsoft DynamicQuantizeMatMul (uint8 x int8 -> float32, bias fused).
// Ref: onnxruntime quantization/quantize.py quantize_dynamic (per_channel, QInt8 weights).
import type { Graph, Value } from "./builder.js";

/** Quantization modes the builders accept (only "int8" so far). */
export type QuantizeMode = "int8";
export const QUANTIZE_MODES: readonly QuantizeMode[] = ["int8"];

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
 * and quantized once (q and scale are written one after the other at save time).
 */
export function quantizedLinear(g: Graph, prefix: string, x: Value, inF: number, outF: number, bias = true): Value {
  const key = `${prefix}.weight`;
  let memo: QuantizedWeight | undefined;
  const quantized = (w: Float32Array) => (memo ??= quantizeLinearWeightInt8(w, outF, inF));
  const dep = [{ key, shape: [outF, inF] }];
  const q = g.typedParam(`${key}.int8`, dep, [inF, outF], "int8", ([w]) => quantized(w).q);
  const scale = g.typedParam(`${key}.scale`, dep, [outF], "float32", ([w]) => {
    const s = quantized(w).scale;
    memo = undefined; // both halves are written: let the int8 copy go
    return s;
  });
  const b = bias ? g.param(`${prefix}.bias`, [outF]) : undefined;
  return g.op("DynamicQuantizeMatMul", [x, q, scale, undefined, b], {}, "com.microsoft"); // [..., outF]
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
 * Makes `g` build the selected Linear layers as int8 (sets Graph.linearHook).
 *
 * @example
 *   const g = new Graph(weights, "UNet2DConditionModel");
 *   useInt8Linear(g, unetInt8Layers);
 */
export function useInt8Linear(g: Graph, select: LinearSelector): void {
  g.linearHook = (prefix, x, inF, outF, bias) => (select(prefix, inF, outF) ? quantizedLinear(g, prefix, x, inF, outF, bias) : undefined);
}
