// ModelSession: the saved optimised graph (ort-optimized/) is reused on the next load with identical
// outputs, is keyed by the weights file, holds no packed weights (prepacking or not); arena settings and
// a session dropped and re-created by the memory pool give identical outputs; physicalCores() is sane.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Graph } from "./graph/builder.js";
import { conv2d, groupNorm, linear, silu } from "./graph/layers.js";
import { ModelSession, physicalCores } from "./runtime.js";
import { RandomWeights } from "./weights/random.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-runtime-"));
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function model(): Graph {
  // conv + group norm (NCHWc layout transforms at level "all") and a Linear (prepacked MatMul)
  const g = new Graph(new RandomWeights(5), "t");
  const x = g.input("x", "float32", [1, 32, 8, 8]);
  let h = conv2d(g, "c1", x, 32, 64, 3, { padding: 1 });
  h = silu(g, groupNorm(g, "n", h, 64, 8, 1e-5));
  h = g.transpose(g.reshape(h, [1, 64, 64]), [0, 2, 1]); // [1, 64 positions, 64]
  g.output(linear(g, "l", h, 64, 64), "y");
  return g;
}

describe("ModelSession", () => {
  const feeds = { x: { data: Float32Array.from({ length: 32 * 64 }, (_, i) => Math.sin(i)), dims: [1, 32, 8, 8] } };
  const once = async (path: string, opts = {}) => {
    const s = await ModelSession.load(path, { threads: 1, ...opts });
    const y = (await s.run(feeds)).y.data as Float32Array;
    await s.release();
    return y;
  };

  it("saves ORT's optimised graph on the first load and reuses it with identical outputs", async () => {
    const path = model().save(join(dir, "m"));
    const plain = await once(path, { reuseOptimized: false });
    expect(existsSync(join(dir, "m", "ort-optimized"))).toBe(false);
    const first = await once(path);
    const copies = readdirSync(join(dir, "m", "ort-optimized"));
    expect(copies).toHaveLength(1);
    expect(existsSync(join(dir, "m", "ort-optimized", copies[0], "model.onnx"))).toBe(true);
    const second = await once(path);
    expect(readdirSync(join(dir, "m", "ort-optimized"))).toEqual(copies);
    expect(Array.from(first)).toEqual(Array.from(plain));
    expect(Array.from(second)).toEqual(Array.from(plain));
  });

  it("re-optimises when the weights file changes", async () => {
    const path = model().save(join(dir, "m2"));
    await once(path);
    const before = readdirSync(join(dir, "m2", "ort-optimized"));
    const later = new Date(Date.now() + 5000);
    utimesSync(join(dir, "m2", "weights.bin"), later, later);
    await once(path);
    const after = readdirSync(join(dir, "m2", "ort-optimized"));
    expect(after).toHaveLength(1); // the stale copy is dropped
    expect(after[0]).not.toBe(before[0]);
  });

  it("prepacking and not (the default) share one optimised copy without packed weights, with a plain load's outputs", async () => {
    const path = model().save(join(dir, "m3"));
    const plain = await once(path, { reuseOptimized: false, prepack: true });
    const unpacked = await once(path); // no prepacking is the default
    const first = await once(path, { prepack: true });
    const second = await once(path, { prepack: true });
    const copies = readdirSync(join(dir, "m3", "ort-optimized"));
    expect(copies).toHaveLength(1);
    // no MLAS packed blobs saved (ORT 1.30 crashes running some graphs loaded with them): the copy holds the weights once
    const saved = statSync(join(dir, "m3", "ort-optimized", copies[0], "weights.bin")).size;
    expect(saved).toBeLessThanOrEqual(statSync(join(dir, "m3", "weights.bin")).size);
    expect(Array.from(first)).toEqual(Array.from(plain));
    expect(Array.from(second)).toEqual(Array.from(plain));
    expect(maxDiff(unpacked, plain)).toBeLessThan(1e-5); // another summation order, same numbers
  });

  it("gives the same outputs with the arena off, and after the memory pool dropped the session", async () => {
    const path = model().save(join(dir, "m4"));
    const arena = await once(path);
    expect(Array.from(await once(path, { memArena: false }))).toEqual(Array.from(arena));
    const s = await ModelSession.load(path, { threads: 1 });
    await s.drop(); // what the lean policy does to an idle session
    expect(Array.from((await s.run(feeds)).y.data as Float32Array)).toEqual(Array.from(arena));
    expect(s.inputNames).toEqual(["x"]);
    await s.release();
  });

  it("refuses an unknown memory policy", async () => {
    const path = model().save(join(dir, "m5"));
    await expect(ModelSession.load(path, { memory: "huge" as never })).rejects.toThrow(/unknown memory policy 'huge': use one of lean, keep/);
  });

  it("counts physical cores within the logical CPUs", () => {
    expect(physicalCores()).toBeGreaterThanOrEqual(1);
    expect(physicalCores()).toBeLessThanOrEqual(availableParallelism());
  });
});
