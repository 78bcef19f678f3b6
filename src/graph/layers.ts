// Neural-network layers as graph fragments, each named by the weight-key prefix of its
// parameters (module path = weight key). Mirrors torch.nn / diffusers layer semantics.
// Notation: B batch, C channels, H/W spatial, L sequence length, D model width.
import { ReimagineError } from "../errors.js";
import { float, type Graph, type Value } from "./builder.js";

/** Transposes a row-major [rows, cols] matrix. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c];
  }
  return out;
}

/** torch.nn.Linear over the last axis: x @ W^T + b. W is stored [out, in]. */
export function linear(g: Graph, prefix: string, x: Value, inF: number, outF: number, bias = true): Value {
  const y = linearBase(g, prefix, x, inF, outF, bias);
  return g.sideBranch ? g.sideBranch({ kind: "linear", prefix, x, y, inF, outF }) : y;
}

function linearBase(g: Graph, prefix: string, x: Value, inF: number, outF: number, bias: boolean): Value {
  const hooked = g.linearHook?.(prefix, x, inF, outF, bias);
  if (hooked) return hooked;
  const w = g.param(`${prefix}.weight`, [outF, inF], {
    dims: [inF, outF],
    transform: (d) => transpose2d(d, outF, inF),
  });
  const y = g.matmul(x, w); // [..., outF]
  return bias ? g.add(y, g.param(`${prefix}.bias`, [outF])) : y;
}

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
}

/** torch.nn.Conv2d (square kernel, NCHW). */
export function conv2d(g: Graph, prefix: string, x: Value, inC: number, outC: number, k: number, opts: Conv2dOptions = {}): Value {
  const { stride = 1, padding = 0, bias = true } = opts;
  // the side branch (LoRA slots) adds to whatever the base produced, float or Graph.convHook's int8
  const y = g.convHook?.(prefix, x, inC, outC, k, { stride, padding, bias }) ?? conv2dBase(g, prefix, x, inC, outC, k, stride, padding, bias);
  return g.sideBranch ? g.sideBranch({ kind: "conv2d", prefix, x, y, inF: inC, outF: outC, kernel: k, stride, padding }) : y;
}

function conv2dBase(g: Graph, prefix: string, x: Value, inC: number, outC: number, k: number, stride: number, padding: number, bias: boolean): Value {
  const w = g.param(`${prefix}.weight`, [outC, inC, k, k]);
  const b = bias ? g.param(`${prefix}.bias`, [outC]) : undefined;
  return g.op("Conv", [x, w, b], {
    kernel_shape: [k, k],
    strides: [stride, stride],
    pads: [padding, padding, padding, padding],
  }); // [B, outC, H', W']
}

/**
 * torch.nn.GroupNorm on NCHW input: normalise each group over (C/G, H, W), then a
 * per-channel affine. Built as Reshape -> InstanceNormalization -> Reshape -> Mul/Add,
 * which ONNX Runtime runs with its optimised InstanceNorm kernel on every provider.
 */
export function groupNorm(g: Graph, prefix: string, x: Value, channels: number, groups: number, eps: number): Value {
  const ones = g.constant(new Float32Array(groups).fill(1), [groups]);
  const zeros = g.constant(new Float32Array(groups), [groups]);
  const grouped = g.reshape(x, [0, groups, -1]); // [B, G, C/G*H*W]
  const normed = g.op("InstanceNormalization", [grouped, ones, zeros], { epsilon: float(eps) });
  const back = g.op("Reshape", [normed, g.op("Shape", [x])]); // [B, C, H, W]
  const gamma = g.param(`${prefix}.weight`, [channels], { dims: [channels, 1, 1] });
  const beta = g.param(`${prefix}.bias`, [channels], { dims: [channels, 1, 1] });
  return g.add(g.mul(back, gamma), beta);
}

/** torch.nn.LayerNorm over the last axis. */
export function layerNorm(g: Graph, prefix: string, x: Value, dim: number, eps: number): Value {
  const gamma = g.param(`${prefix}.weight`, [dim]);
  const beta = g.param(`${prefix}.bias`, [dim]);
  return g.op("LayerNormalization", [x, gamma, beta], { axis: -1, epsilon: float(eps) });
}

/** SiLU / swish: x * sigmoid(x). */
export function silu(g: Graph, x: Value): Value {
  return g.mul(x, g.op("Sigmoid", [x]));
}

/** Exact (erf) GELU, as torch.nn.functional.gelu(approximate="none"). */
export function gelu(g: Graph, x: Value): Value {
  return g.op("Gelu", [x], {}, "com.microsoft");
}

/** GELU with the tanh approximation (gelu_pytorch_tanh / gelu_new). */
export function geluTanh(g: Graph, x: Value): Value {
  return g.op("FastGelu", [x], {}, "com.microsoft");
}

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(g: Graph, x: Value): Value {
  return g.op("QuickGelu", [x], { alpha: float(1.702) }, "com.microsoft");
}

/** Activation names activation() builds (transformers' ACT2FN / diffusers' get_activation keys). */
export const ACTIVATIONS = ["quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "silu", "swish", "relu"] as const;

/** Activation by transformers/diffusers name. */
export function activation(g: Graph, name: string, x: Value): Value {
  switch (name) {
    case "quick_gelu":
      return quickGelu(g, x);
    case "gelu":
      return gelu(g, x);
    case "gelu_new":
    case "gelu_pytorch_tanh":
      return geluTanh(g, x);
    case "silu":
    case "swish":
      return silu(g, x);
    case "relu":
      return g.op("Relu", [x]);
    default:
      throw new ReimagineError(
        `unsupported activation '${name}' in ${g.name} (config act_fn / hidden_act): Reimagine builds ${ACTIVATIONS.join(", ")}`,
        "bad_model",
      );
  }
}

/**
 * Scaled dot-product attention over [B, Lq, D] queries and [B, Lk, D] keys/values with
 * `heads` heads (com.microsoft MultiHeadAttention: fused, with a CPU kernel).
 * `causal` masks future positions (CLIP's text encoder). Scale is 1/sqrt(D/heads).
 */
export function attention(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: { causal?: boolean } = {}): Value {
  return g.op("MultiHeadAttention", [q, k, v], { num_heads: heads, unidirectional: opts.causal ? 1 : undefined }, "com.microsoft"); // [B, Lq, D]
}

/**
 * Nearest-neighbour upsampling, F.interpolate(mode="nearest"): by an integer `scale` (default 2), or to
 * the sizes in a [4] int64 tensor [B, C, H', W']. ONNX asymmetric + floor is torch's src = floor(dst * in / out).
 * @example h = upsampleNearest(g, h); // [B, C, 2H, 2W]
 */
export function upsampleNearest(g: Graph, x: Value, to: number | Value = 2): Value {
  const inputs = typeof to === "number" ? [x, undefined, g.constant([1, 1, to, to], [4])] : [x, undefined, undefined, to];
  return g.op("Resize", inputs, {
    mode: "nearest",
    coordinate_transformation_mode: "asymmetric",
    nearest_mode: "floor",
  }); // [B, C, H', W']
}
