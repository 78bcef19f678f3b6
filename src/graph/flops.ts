// FLOP counting and per-op timing from an ONNX Runtime JSON profile (SessionOptions.enableProfiling).
// The profile describes the *optimised* graph ORT actually ran (fused Gemm, NCHWc Conv, ...), with
// each kernel's input/output shapes, so counts follow what ran rather than what we emitted.
// Counting convention (as PyTorch/fvcore tools x2): 2 FLOPs per multiply-add in Conv, MatMul,
// Gemm and attention; elementwise, norm and layout ops count 0 FLOPs (their time is still shown).
import { readFileSync } from "node:fs";

/** One entry of ORT's Chrome-trace profile (only the fields read here). */
export interface ProfileEvent {
  cat: string;
  name: string;
  dur: number; // microseconds
  args?: {
    op_name?: string;
    input_type_shape?: Record<string, number[]>[];
    output_type_shape?: Record<string, number[]>[];
  };
}

export interface OpStats {
  opType: string;
  /** Kernel launches per run. */
  count: number;
  /** Kernel time per run, microseconds. */
  timeUs: number;
  /** FLOPs per run (0 for ops not counted). */
  flops: number;
}

export interface ProfileSummary {
  /** Number of `model_run` events in the profile; every per-run figure is divided by it. */
  runs: number;
  /** Mean `model_run` duration, microseconds (includes framework overhead between kernels). */
  runUs: number;
  /** Sum of kernel times per run, microseconds. */
  kernelUs: number;
  /** Conv/MatMul/Gemm/attention FLOPs per run. */
  flops: number;
  /** Per op type, most time first. */
  ops: OpStats[];
}

const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Shapes of a profile `*_type_shape` list: [{float: [1, 4]}] -> [[1, 4]]. */
function shapes(list: Record<string, number[]>[] | undefined): number[][] {
  return (list ?? []).map((t) => Object.values(t)[0] ?? []);
}

/**
 * FLOPs of one kernel from its op type and the input/output shapes ORT logged, or 0 for ops
 * that are not counted. Weights ORT pre-packed may be missing from `inputs`, so matrix
 * products are derived from the first input and the output only.
 *
 * @example
 *   kernelFlops("MatMul", [[2, 3, 4], [4, 5]], [[2, 3, 5]]); // 2 * (2*3*5) * 4 = 240
 */
export function kernelFlops(opType: string, inputs: readonly number[][], outputs: readonly number[][]): number {
  const x = inputs[0];
  const y = outputs[0];
  if (!x || !y) return 0;
  switch (opType) {
    case "Conv":
    case "FusedConv":
    case "NhwcFusedConv": {
      // every output position (per image) applies the whole weight once: 2 * N * Ho*Wo*... * numel(W)
      const w = inputs[1];
      if (!w || w.length < 3 || y.length < 3) return 0;
      const spatial = opType === "NhwcFusedConv" ? y.slice(1, -1) : y.slice(2, 2 + (w.length - 2));
      return 2 * y[0] * numel(spatial) * numel(w);
    }
    case "MatMul":
    case "FusedMatMul":
    case "Gemm": {
      // Y [..., M, N] = A [..., M, K] @ B; A may be transposed ([..., K, M]) in Gemm/FusedMatMul
      if (x.length === 1) return 2 * numel(y) * x[0];
      const m = y.length >= 2 ? y[y.length - 2] : 1;
      const k = x[x.length - 2] === m ? x[x.length - 1] : x[x.length - 2];
      return 2 * numel(y) * k;
    }
    case "MultiHeadAttention": {
      // q [B, Lq, Dqk], k [B, Lk, Dqk], v [B, Lk, Dv]: softmax(q k^T) v over all heads
      const [q, k, v] = inputs;
      if (!q || !k || !v || q.length !== 3 || k.length !== 3 || v.length !== 3) return 0;
      return 2 * q[0] * q[1] * k[1] * (q[2] + v[2]);
    }
    case "Attention": {
      // input [B, L, Din] @ packed qkv weight [Din, 3D], then attention over L x L
      const w = inputs[1];
      if (x.length !== 3 || !w || w.length !== 2) return 0;
      const [B, L, Din] = x;
      const D = w[1] / 3;
      return 2 * B * L * Din * w[1] + 4 * B * L * L * D;
    }
    default:
      return 0;
  }
}

/**
 * Totals a profile per op type. Node kernels are the `*_kernel_time` events; every figure is per
 * run (divided by the number of `model_run` events).
 *
 * @example
 *   const s = summarizeProfile(readProfile(path));
 *   console.log(s.flops / 1e9, "GFLOP per run");
 */
export function summarizeProfile(events: readonly ProfileEvent[]): ProfileSummary {
  const runEvents = events.filter((e) => e.cat === "Session" && e.name === "model_run");
  const runs = Math.max(1, runEvents.length);
  const byOp = new Map<string, OpStats>();
  for (const e of events) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || !e.args?.op_name) continue;
    const opType = e.args.op_name;
    const s = byOp.get(opType) ?? { opType, count: 0, timeUs: 0, flops: 0 };
    s.count++;
    s.timeUs += e.dur;
    s.flops += kernelFlops(opType, shapes(e.args.input_type_shape), shapes(e.args.output_type_shape));
    byOp.set(opType, s);
  }
  const ops = [...byOp.values()]
    .map((s) => ({ ...s, count: s.count / runs, timeUs: s.timeUs / runs, flops: s.flops / runs }))
    .sort((a, b) => b.timeUs - a.timeUs);
  return {
    runs: runEvents.length,
    runUs: runEvents.reduce((a, e) => a + e.dur, 0) / runs,
    kernelUs: ops.reduce((a, s) => a + s.timeUs, 0),
    flops: ops.reduce((a, s) => a + s.flops, 0),
    ops,
  };
}

/** Reads an ORT profile file (a JSON array of events). */
export function readProfile(path: string): ProfileEvent[] {
  const events: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!Array.isArray(events)) throw new Error(`${path} is not an ONNX Runtime profile (expected a JSON array of events)`);
  return events as ProfileEvent[];
}
