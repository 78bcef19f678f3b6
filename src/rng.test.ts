// TorchGenerator vs torch: literal values, bit-exact draws from the diffusers reference fixtures
// (rng section and every pipeline run's random_draws), and the seed rules.
import { describe, expect, it } from "vitest";
import { ReimagineError } from "./errors.js";
import { TorchGenerator, normalizeSeed, randomSeed } from "./rng.js";
import { haveFixtures, loadReferenceJson, referenceTensor } from "../test/fixtures.js";

/** Number of elements whose float32 bit patterns differ (0 = bit-exact). */
function bitMismatches(got: Float32Array, want: Float32Array): number {
  expect(got.length).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe("TorchGenerator (literal torch values)", () => {
  it("scalar path (numel < 16): torch.manual_seed(0); torch.randn(3)", () => {
    const x = new TorchGenerator(0).randn([3]);
    expect(Array.from(x)).toEqual([expect.closeTo(1.541, 4), expect.closeTo(-0.2934, 4), expect.closeTo(-2.1788, 4)]);
  });

  it("vector path (numel >= 16): torch.manual_seed(0); torch.randn(4, 4)[0]", () => {
    const x = new TorchGenerator(0).randn([4, 4]);
    expect(Array.from(x.subarray(0, 4))).toEqual([
      expect.closeTo(-1.1258, 4),
      expect.closeTo(-1.1524, 4),
      expect.closeTo(-0.2506, 4),
      expect.closeTo(-0.4339, 4),
    ]);
  });
});

describe("TorchGenerator (state and seeds)", () => {
  it("carries the scalar Box-Muller cache between calls", () => {
    const g = new TorchGenerator(3);
    const split = [...g.randn([3]), ...g.randn([1])];
    expect(split).toEqual(Array.from(new TorchGenerator(3).randn([4])));
  });

  it("vector draws consume 16 uniforms per block, so two [16] draws equal one [32]", () => {
    const g = new TorchGenerator(11);
    const split = [...g.randn([16]), ...g.randn([16])];
    expect(split).toEqual(Array.from(new TorchGenerator(11).randn([32])));
  });

  it("a ragged size redraws the last 16 values: torch.manual_seed(42); torch.randn(17), bit for bit", () => {
    // float32 values dumped from torch 2.x (the sd-tiny fixture's rng case, seed 42, shape [17]), shortest repr
    const torch = [
      1.9269153, -0.15959747, -0.49739754, 0.43958926, -0.75813115, 1.0783176, 0.80080056, 1.6806206, 0.3558599, 1.2964228, 0.6104665, 1.3347378, -0.23162432,
      0.04175949, -0.2515753, 0.8598585, -0.30972677,
    ].map(Math.fround);
    const a = new TorchGenerator(42).randn([17]);
    expect(Array.from(a)).toEqual(torch);
    // normal_fill: block [0, 16) from the first 16 of 17 uniforms, then [1, 17) redrawn from 16 new ones,
    // so only value 0 survives from randn(16)'s block
    const b = new TorchGenerator(42).randn([16]);
    expect(a[0]).toBe(b[0]);
    for (let i = 1; i < 16; i++) expect(a[i], `value ${i}`).not.toBe(b[i]);
  });

  it("uses the low 32 bits of a uint64 seed, like mt19937(seed)", () => {
    const big = new TorchGenerator((1n << 32n) + 5n);
    expect(big.seed).toBe((1n << 32n) + 5n);
    expect(Array.from(big.randn([20]))).toEqual(Array.from(new TorchGenerator(5).randn([20])));
    expect(Array.from(new TorchGenerator(5n).randn([3]))).toEqual(Array.from(new TorchGenerator(5).randn([3])));
  });

  it("different seeds give different noise; shapes give the right sizes", () => {
    expect(new TorchGenerator(1).randn([1, 4, 8, 8])).not.toEqual(new TorchGenerator(2).randn([1, 4, 8, 8]));
    expect(new TorchGenerator(1).randn([]).length).toBe(1);
    expect(new TorchGenerator(1).randn([2, 0, 3]).length).toBe(0);
    expect(() => new TorchGenerator(1).randn([2, -1])).toThrow(ReimagineError);
  });

  it("normalizeSeed: -1/undefined/null pick a random 32-bit seed, bad seeds are refused", () => {
    for (const s of [-1, undefined, null, -1n] as const) {
      const v = normalizeSeed(s);
      expect(Number.isInteger(v)).toBe(true);
      expect(v as number).toBeGreaterThanOrEqual(0);
      expect(v as number).toBeLessThan(2 ** 32);
    }
    const r = randomSeed();
    expect(Number.isInteger(r) && r >= 0 && r < 2 ** 32).toBe(true);
    expect(normalizeSeed(42)).toBe(42);
    expect(normalizeSeed(0)).toBe(0);
    expect(normalizeSeed((1n << 64n) - 1n)).toBe((1n << 64n) - 1n);
    for (const bad of [-2, 1.5, Number.NaN, Infinity, 2 ** 60, -5n, 1n << 64n]) {
      expect(() => normalizeSeed(bad)).toThrow(ReimagineError);
    }
    expect(() => new TorchGenerator(-3)).toThrow(/non-negative integer/);
  });
});

for (const name of ["sd-tiny", "sdxl-tiny", "taesd-tiny"]) {
  describe.skipIf(!haveFixtures(name))(`TorchGenerator vs torch (${name} reference, exact)`, () => {
    const ref = haveFixtures(name) ? loadReferenceJson(name) : {};

    for (const c of ref.rng?.cases ?? []) {
      it(`rng seed ${c.seed}, shapes ${JSON.stringify(c.shapes)}`, () => {
        const g = new TorchGenerator(c.seed);
        c.draws.forEach((d: { tensor: string; shape: number[] }, i: number) => {
          expect(d.shape).toEqual(c.shapes[i]);
          const want = referenceTensor(d, name);
          expect(bitMismatches(g.randn(c.shapes[i]), want.data)).toBe(0);
        });
      });
    }

    const pipelineCases = Array.isArray(ref.pipeline) ? ref.pipeline : (ref.pipeline?.cases ?? []);
    for (const c of pipelineCases) {
      it(`pipeline ${c.id}: every random draw (seed ${c.inputs.generator.seed})`, () => {
        expect(c.inputs.generator.device).toBe("cpu");
        const g = new TorchGenerator(c.inputs.generator.seed);
        expect(c.random_draws.length).toBeGreaterThan(0);
        for (const d of c.random_draws) {
          const want = referenceTensor(d.value, name);
          expect(want.shape).toEqual(d.shape);
          expect(bitMismatches(g.randn(d.shape), want.data), `draw ${d.index} (${d.role})`).toBe(0);
        }
      });
    }
  });
}
