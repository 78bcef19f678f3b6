// Tests of profile-based FLOP counting: literal kernel shapes, then a real ORT profile of a small
// graph (conv, strided conv, linear layers, attention, activation MatMul) against the FLOPs
// worked out by hand for the graph we emitted (ORT's fusions must not change the total).
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelSession } from "../runtime.js";
import { RandomWeights } from "../weights/random.js";
import { Graph } from "./builder.js";
import { kernelFlops, readProfile, summarizeProfile, type ProfileEvent } from "./flops.js";
import { attention, conv2d, linear } from "./layers.js";

describe("kernelFlops", () => {
  it("counts Conv as 2 * N * Ho * Wo * numel(W)", () => {
    expect(kernelFlops("Conv", [[2, 16, 32, 32], [32, 16, 3, 3], [32]], [[2, 32, 32, 32]])).toBe(2 * 2 * 32 * 32 * 32 * 16 * 9);
    // grouped (depthwise) conv: W [C, 1, k, k]
    expect(
      kernelFlops(
        "FusedConv",
        [
          [1, 8, 4, 4],
          [8, 1, 3, 3],
        ],
        [[1, 8, 2, 2]],
      ),
    ).toBe(2 * 4 * 8 * 9);
    expect(
      kernelFlops(
        "NhwcFusedConv",
        [
          [1, 4, 4, 8],
          [16, 8, 1, 1],
        ],
        [[1, 4, 4, 16]],
      ),
    ).toBe(2 * 16 * 16 * 8);
  });

  it("counts matrix products as 2 * numel(Y) * K, from A and Y alone", () => {
    expect(
      kernelFlops(
        "MatMul",
        [
          [2, 3, 4],
          [4, 5],
        ],
        [[2, 3, 5]],
      ),
    ).toBe(240);
    expect(kernelFlops("Gemm", [[256, 64], [64]], [[256, 128]])).toBe(2 * 256 * 128 * 64); // B pre-packed, absent
    expect(
      kernelFlops(
        "FusedMatMul",
        [
          [2, 7, 3],
          [2, 7, 5],
        ],
        [[2, 3, 5]],
      ),
    ).toBe(2 * 30 * 7); // transA
  });

  it("counts attention as QK^T plus AV", () => {
    expect(
      kernelFlops(
        "MultiHeadAttention",
        [
          [2, 10, 64],
          [2, 77, 64],
          [2, 77, 64],
        ],
        [[2, 10, 64]],
      ),
    ).toBe(4 * 2 * 10 * 77 * 64);
    expect(
      kernelFlops(
        "Attention",
        [
          [1, 6, 8],
          [8, 24],
        ],
        [[1, 6, 8]],
      ),
    ).toBe(2 * 6 * 8 * 24 + 4 * 6 * 6 * 8);
  });

  it("counts elementwise and layout ops as 0", () => {
    expect(
      kernelFlops(
        "Add",
        [
          [4, 4],
          [4, 4],
        ],
        [[4, 4]],
      ),
    ).toBe(0);
    expect(kernelFlops("ReorderInput", [[1, 8, 4, 4]], [[1, 8, 4, 4]])).toBe(0);
  });
});

describe("summarizeProfile", () => {
  it("groups kernels by op type, per run, most time first", () => {
    const node = (op: string, dur: number, ins: number[][], outs: number[][]): ProfileEvent => ({
      cat: "Node",
      name: `${op}_0_kernel_time`,
      dur,
      args: { op_name: op, input_type_shape: ins.map((s) => ({ float: s })), output_type_shape: outs.map((s) => ({ float: s })) },
    });
    const oneRun = [
      node(
        "MatMul",
        30,
        [
          [2, 3],
          [3, 4],
        ],
        [[2, 4]],
      ),
      node("Add", 50, [[2, 4], [4]], [[2, 4]]),
      { cat: "Node", name: "MatMul_0_fence_before", dur: 0, args: { op_name: "MatMul" } },
      { cat: "Session", name: "model_run", dur: 100 },
    ];
    const s = summarizeProfile([...oneRun, ...oneRun]);
    expect(s.runs).toBe(2);
    expect(s.runUs).toBe(100);
    expect(s.kernelUs).toBe(80);
    expect(s.flops).toBe(2 * 8 * 3);
    expect(s.ops.map((o) => [o.opType, o.count, o.timeUs])).toEqual([
      ["Add", 1, 50],
      ["MatMul", 1, 30],
    ]);
  });
});

describe("FLOPs of a real ONNX Runtime profile", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-flops-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("equals the FLOPs worked out for the emitted graph", async () => {
    const g = new Graph(new RandomWeights(3), "FlopsProbe");
    let x = g.input("x", "float32", [2, 16, 32, 32]);
    x = conv2d(g, "conv1", x, 16, 32, 3, { padding: 1 }); // [2, 32, 32, 32]
    x = conv2d(g, "conv2", x, 32, 64, 3, { padding: 1, stride: 2 }); // [2, 64, 16, 16]
    const seq = g.transpose(g.reshape(x, [0, 64, -1]), [0, 2, 1]); // [2, 256, 64]
    const q = linear(g, "q", seq, 64, 64); // [2, 256, 64]
    const k = linear(g, "k", seq, 64, 64, false);
    const v = linear(g, "v", seq, 64, 96);
    const a = attention(g, q, k, v, 4); // [2, 256, 96]
    const scores = g.matmul(a, g.transpose(a, [0, 2, 1])); // [2, 256, 256], both operands activations
    g.output(scores, "y");
    const path = g.save(join(dir, "model"));

    const session = await ModelSession.load(path, { threads: 1, profileFilePrefix: join(dir, "profile") });
    await session.run({ x: { data: new Float32Array(2 * 16 * 32 * 32).fill(0.5), dims: [2, 16, 32, 32] } });
    await session.release(); // ORT writes the profile when the session ends
    const file = readdirSync(dir).find((f) => f.startsWith("profile") && f.endsWith(".json"));
    expect(file).toBeDefined();
    const s = summarizeProfile(readProfile(join(dir, file!)));

    const expected =
      2 * 2 * 32 * 32 * (32 * 16 * 9) + // conv1
      2 * 2 * 16 * 16 * (64 * 32 * 9) + // conv2
      2 * 2 * 256 * 64 * (64 + 64 + 96) + // q, k, v projections
      2 * 2 * 256 * 256 * (64 + 96) + // attention: QK^T (64 wide) + AV (96 wide)
      2 * 2 * 256 * 256 * 96; // a @ a^T
    expect(s.runs).toBe(1);
    expect(s.flops).toBe(expected);
    expect(s.kernelUs).toBeGreaterThan(0);
    expect(s.kernelUs).toBeLessThanOrEqual(s.runUs);
  });
});
