// Literal-array op tests: each layer against a hand-computed result.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ModelSession } from "../runtime.js";
import { MemoryWeights } from "../weights/memory.js";
import { Graph } from "./builder.js";
import { ReimagineError } from "../errors.js";
import { ACTIVATIONS, activation, attention, conv2d, groupNorm, layerNorm, linear, upsampleNearest } from "./layers.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-layers-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

async function runGraph(g: Graph, feeds: Record<string, { data: Float32Array; dims: number[] }>) {
  const path = g.save(join(dir, `g${n++}`));
  const s = await ModelSession.load(path, { threads: 1 });
  const out = await s.run(feeds);
  await s.release();
  return out.y;
}

describe("layers", () => {
  it("linear computes x W^T + b with W stored [out, in]", async () => {
    const w = new MemoryWeights({ "l.weight": { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }, "l.bias": { shape: [2], data: [10, 20] } });
    const g = new Graph(w, "t");
    const x = g.input("x", "float32", [1, 3]);
    g.output(linear(g, "l", x, 3, 2), "y");
    g.checkAllWeightsUsed();
    const y = await runGraph(g, { x: { data: Float32Array.from([1, 0, -1]), dims: [1, 3] } });
    expect(Array.from(y.data as Float32Array)).toEqual([1 - 3 + 10, 4 - 6 + 20]);
  });

  it("strict binding names a missing key, a wrong shape and unused keys", () => {
    const w = new MemoryWeights({ "l.weight": { shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }, "extra.bias": { shape: [1], data: [0] } });
    const g = new Graph(w, "t");
    const x = g.input("x", "float32", [1, 3]);
    expect(() => linear(g, "l", x, 3, 2)).toThrow(/'l.bias' is missing/);
    expect(() => linear(g, "l", x, 4, 2, false)).toThrow(/'l.weight'.*shape \[2,3\].*\[2,4\]/);
    linear(g, "l", x, 3, 2, false);
    expect(() => g.checkAllWeightsUsed()).toThrow(/unused weights.*extra.bias/);
  });

  it("groupNorm normalises per group with a per-channel affine", async () => {
    // 4 channels, 2 groups, 1x2 spatial.
    const w = new MemoryWeights({ "gn.weight": { shape: [4], data: [1, 2, 1, 1] }, "gn.bias": { shape: [4], data: [0, 0, 0, 5] } });
    const g = new Graph(w, "t");
    const x = g.input("x", "float32", [1, 4, 1, 2]);
    g.output(groupNorm(g, "gn", x, 4, 2, 0), "y");
    const data = Float32Array.from([1, 3, 5, 7, 0, 0, 2, 2]);
    const y = Array.from((await runGraph(g, { x: { data, dims: [1, 4, 1, 2] } })).data as Float32Array);
    // group 0 = [1,3,5,7]: mean 4, var 5
    const s = Math.sqrt(5);
    const want = [-3 / s, -1 / s, (1 / s) * 2, (3 / s) * 2, -1, -1, 1 + 5, 1 + 5];
    y.forEach((v, i) => {
      expect(v).toBeCloseTo(want[i], 5);
    });
  });

  it("conv2d (padding) then nearest 2x upsampling", async () => {
    const w = new MemoryWeights({
      "c.weight": { shape: [1, 1, 3, 3], data: [0, 0, 0, 0, 2, 0, 0, 0, 0] },
      "c.bias": { shape: [1], data: [1] },
    });
    const g = new Graph(w, "t");
    const x = g.input("x", "float32", [1, 1, 2, 2]);
    g.output(upsampleNearest(g, conv2d(g, "c", x, 1, 1, 3, { padding: 1 })), "y"); // 2x + 1, [1,1,4,4]
    const y = await runGraph(g, { x: { data: Float32Array.from([1, 2, 3, 4]), dims: [1, 1, 2, 2] } });
    expect(y.dims).toEqual([1, 1, 4, 4]);
    expect(Array.from(y.data as Float32Array)).toEqual([3, 3, 5, 5, 3, 3, 5, 5, 7, 7, 9, 9, 7, 7, 9, 9]);
  });

  it("nearest upsampling to a given size floors the source index (F.interpolate(size=...) on odd sizes)", async () => {
    const g = new Graph(new MemoryWeights({}), "t");
    const x = g.input("x", "float32", [1, 1, 2, 3]);
    g.output(upsampleNearest(g, x, g.ints([1, 1, 3, 5])), "y"); // [1, 1, 3, 5]
    const y = await runGraph(g, { x: { data: Float32Array.from([1, 2, 3, 4, 5, 6]), dims: [1, 1, 2, 3] } });
    expect(y.dims).toEqual([1, 1, 3, 5]);
    // rows: floor(r * 2/3) = 0, 0, 1; columns: floor(c * 3/5) = 0, 0, 1, 1, 2 (torch gives the same)
    expect(Array.from(y.data as Float32Array)).toEqual([1, 1, 2, 2, 3, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6]);
  });

  it("refuses an activation it cannot build with a one-line error naming the supported ones", () => {
    const g = new Graph(new MemoryWeights({}), "unet");
    const x = g.input("x", "float32", [1, 2]);
    for (const name of ACTIVATIONS) expect(() => activation(g, name, x)).not.toThrow();
    const err = (() => {
      try {
        activation(g, "mish", x);
      } catch (e) {
        return e as ReimagineError;
      }
    })();
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err?.code).toBe("bad_model");
    expect(err?.message).toBe(
      "unsupported activation 'mish' in unet (config act_fn / hidden_act): Reimagine builds quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, silu, swish, relu",
    );
  });

  it("layerNorm over the last axis", async () => {
    const w = new MemoryWeights({ "ln.weight": { shape: [2], data: [1, 2] }, "ln.bias": { shape: [2], data: [0, 1] } });
    const g = new Graph(w, "t");
    const x = g.input("x", "float32", [1, 2]);
    g.output(layerNorm(g, "ln", x, 2, 0), "y");
    const y = await runGraph(g, { x: { data: Float32Array.from([1, 3]), dims: [1, 2] } });
    expect(Array.from(y.data as Float32Array)).toEqual([-1, 3]);
  });

  it("attention = softmax(q k^T / sqrt(d)) v, with a causal variant", async () => {
    for (const causal of [false, true]) {
      const g = new Graph(new MemoryWeights(), "t");
      const q = g.input("q", "float32", [1, 2, 2]);
      const kv = g.input("kv", "float32", [1, 2, 2]);
      g.output(attention(g, q, kv, kv, 1, { causal }), "y");
      const qd = [1, 0, 0, 1];
      const kd = [1, 0, 0, 2];
      const y = Array.from(
        (await runGraph(g, { q: { data: Float32Array.from(qd), dims: [1, 2, 2] }, kv: { data: Float32Array.from(kd), dims: [1, 2, 2] } })).data as Float32Array,
      );
      const want: number[] = [];
      for (let i = 0; i < 2; i++) {
        const s = [0, 1].map((j) => (qd[i * 2] * kd[j * 2] + qd[i * 2 + 1] * kd[j * 2 + 1]) / Math.SQRT2);
        const e = s.map((v, j) => (causal && j > i ? 0 : Math.exp(v)));
        const z = e[0] + e[1];
        for (let c = 0; c < 2; c++) want.push((e[0] * kd[c] + e[1] * kd[2 + c]) / z);
      }
      y.forEach((v, i) => {
        expect(v).toBeCloseTo(want[i], 5);
      });
    }
  });
});
