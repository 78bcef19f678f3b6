// Graph cache invalidation without a version bump: the key includes Graph.structureHash(), which
// follows every change to the emitted graph (nodes, attributes, constants, parameter shapes and
// derivations) and ignores the weights' values; cachedGraph rebuilds exactly when the key changes.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildVaeDecoder, resolveVaeConfig } from "../models/vae.js";
import { MemoryWeights } from "../weights/memory.js";
import { RandomWeights } from "../weights/random.js";
import { float, Graph } from "./builder.js";
import { cachedGraph, graphHash } from "./cache.js";
import { linear } from "./layers.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-cache-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const weights = (scale = 1) =>
  new MemoryWeights({ "l.weight": { shape: [2, 2], data: [1, 2, 3, 4].map((v) => v * scale) }, "l.bias": { shape: [2], data: [0, 1] } });

/** A small graph; each option is one kind of change a code edit could make. */
function build(w = weights(), o: { alpha?: number; extraNode?: boolean; transposed?: boolean; constant?: number } = {}) {
  const g = new Graph(w, "t");
  const x = g.input("x", "float32", [1, 2]);
  let y = o.transposed
    ? g.matmul(x, g.param("l.weight", [2, 2], { transform: (d) => Float32Array.from([d[0], d[2], d[1], d[3]]) }))
    : linear(g, "l", x, 2, 2, false);
  y = g.op("LeakyRelu", [y], { alpha: float(o.alpha ?? 0.1) });
  y = g.add(y, g.scalar(o.constant ?? 1));
  if (o.extraNode) y = g.op("Neg", [y]);
  g.output(y, "y");
  return g;
}

describe("Graph.structureHash", () => {
  it("is the same for the same code, whatever the weights' values", () => {
    expect(build().structureHash()).toBe(build().structureHash());
    expect(build(weights(2)).structureHash()).toBe(build().structureHash());
  });

  it("changes with any change to the emitted graph", () => {
    const base = build().structureHash();
    const changed = [
      build(weights(), { alpha: 0.2 }), // an attribute
      build(weights(), { extraNode: true }), // a node
      build(weights(), { constant: 2 }), // a constant
      build(weights(), { transposed: true }), // a parameter derived another way (same name and shape)
    ].map((g) => g.structureHash());
    for (const h of changed) expect(h).not.toBe(base);
    expect(new Set(changed).size).toBe(changed.length);
  });

  it("follows a config change through a real model builder, not its weights", () => {
    const cfg = resolveVaeConfig({
      block_out_channels: [8, 16],
      down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"],
      up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D"],
      latent_channels: 4,
      norm_num_groups: 4,
      layers_per_block: 1,
    });
    const a = buildVaeDecoder(new RandomWeights(1), cfg).structureHash();
    expect(buildVaeDecoder(new RandomWeights(2), cfg).structureHash()).toBe(a);
    expect(buildVaeDecoder(new RandomWeights(1), { ...cfg, layers_per_block: 2 }).structureHash()).not.toBe(a);
  });
});

describe("cachedGraph", () => {
  const key = (w = weights()) => ({ kind: "t", config: { n: 1 }, weights: w });
  const entries = (root: string) => readdirSync(join(root, "graphs")).sort();

  it("builds once, then finds the graph; a code change gets its own entry with no version bump", () => {
    const root = join(dir, "a");
    let saves = 0;
    const first = cachedGraph(
      key(),
      () => build(),
      root,
      () => saves++,
    );
    expect(first.built).toBe(true);
    const again = cachedGraph(
      key(),
      () => build(),
      root,
      () => saves++,
    );
    expect(again).toEqual({ path: first.path, built: false });
    expect(saves).toBe(1);
    // the "builder code" changed: a new key, so a rebuild, and the old entry is left alone
    const edited = cachedGraph(
      key(),
      () => build(weights(), { alpha: 0.3 }),
      root,
      () => saves++,
    );
    expect(edited.built).toBe(true);
    expect(edited.path).not.toBe(first.path);
    expect(saves).toBe(2);
    expect(entries(root)).toHaveLength(2);
    expect(first.path).toContain(`t-${graphHash(key(), build().structureHash())}`);
  });

  it("keys on the weights' content too (new weights, new entry)", () => {
    const root = join(dir, "b");
    const a = cachedGraph(key(weights(1)), () => build(weights(1)), root);
    const b = cachedGraph(key(weights(3)), () => build(weights(3)), root);
    expect(a.built && b.built).toBe(true);
    expect(a.path).not.toBe(b.path);
  });
});
