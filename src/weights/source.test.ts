// WeightSource conformance: ONE suite run against every implementation (a safetensors file, shards
// joined by MultiSource, a sharded diffusers component folder, LDM single-file keys read as diffusers
// keys, in-memory tensors; seeded random weights against the synthetic contract). It checks what the
// graph builder and the graph cache rely on: key sets, shapes that agree with the data, exact values,
// fresh arrays, refusals that name the key, and a fingerprint that changes with the content.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { convertLdmCheckpoint } from "./checkpoint.js";
import { MultiSource, openComponentWeights } from "./diffusers.js";
import { MemoryWeights } from "./memory.js";
import { RandomWeights } from "./random.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "./safetensors.js";
import type { WeightSource } from "./source.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-sources-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(tmp, `case-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** The content every case stores: diffusers UNet keys; values are exact in float16 (conv_out is stored as F16). */
type Content = Record<string, { shape: number[]; data: number[] }>;
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const ramp = (shape: number[], k: number) => ({ shape, data: Array.from({ length: numel(shape) }, (_, i) => ((i * 7 + k) % 13) / 4 - 1.5) });
const BASE: Content = { "conv_in.weight": ramp([2, 4, 3, 3], 1), "conv_in.bias": ramp([2], 2), "conv_out.weight": ramp([4, 2, 3, 3], 3) };
/** The same keys with one value changed, and the same values without one key. */
const CHANGED: Content = { ...BASE, "conv_in.bias": { shape: [2], data: [BASE["conv_in.bias"].data[0], 0.25] } };
const FEWER: Content = { "conv_in.weight": BASE["conv_in.weight"], "conv_out.weight": BASE["conv_out.weight"] };

const toWrite = (c: Content, rename: (k: string) => string = (k) => k): Record<string, TensorToWrite> =>
  Object.fromEntries(
    Object.entries(c).map(([k, t]) => [rename(k), { dtype: k === "conv_out.weight" ? "F16" : "F32", shape: t.shape, data: Float32Array.from(t.data) }]),
  );

interface SourceCase {
  name: string;
  /** A source holding `content` under its diffusers keys (files written fresh each call). */
  open(content: Content): WeightSource;
}

const LDM: Record<string, string> = {
  "conv_in.weight": "model.diffusion_model.input_blocks.0.0.weight",
  "conv_in.bias": "model.diffusion_model.input_blocks.0.0.bias",
  "conv_out.weight": "model.diffusion_model.out.2.weight",
};

const CASES: SourceCase[] = [
  {
    name: "SafetensorsFile",
    open: (c) => {
      const path = join(fresh(), "w.safetensors");
      writeSafetensors(path, toWrite(c));
      return SafetensorsFile.open(path);
    },
  },
  {
    name: "MultiSource over two shard files",
    open: (c) => {
      const dir = fresh();
      const [first, ...rest] = Object.keys(c);
      writeSafetensors(join(dir, "a.safetensors"), toWrite({ [first]: c[first] }));
      writeSafetensors(join(dir, "b.safetensors"), toWrite(Object.fromEntries(rest.map((k) => [k, c[k]]))));
      return new MultiSource([SafetensorsFile.open(join(dir, "a.safetensors")), SafetensorsFile.open(join(dir, "b.safetensors"))], `${dir}/`);
    },
  },
  {
    name: "sharded diffusers component folder (openComponentWeights)",
    open: (c) => {
      const dir = join(fresh(), "unet");
      mkdirSync(dir);
      const keys = Object.keys(c);
      const shard = (i: number) => `diffusion_pytorch_model-0000${i}-of-00002.safetensors`;
      const weightMap: Record<string, string> = {};
      keys.forEach((k, i) => {
        weightMap[k] = shard(i === 0 ? 1 : 2);
      });
      writeSafetensors(join(dir, shard(1)), toWrite({ [keys[0]]: c[keys[0]] }));
      writeSafetensors(join(dir, shard(2)), toWrite(Object.fromEntries(keys.slice(1).map((k) => [k, c[k]]))));
      writeFileSync(join(dir, "diffusion_pytorch_model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
      return openComponentWeights(dir);
    },
  },
  {
    name: "LDM single-file checkpoint read under diffusers keys",
    open: (c) => {
      const path = join(fresh(), "model.safetensors");
      // a whole checkpoint holds all three models; the VAE and text encoder tensors are not under test
      const others = {
        "first_stage_model.encoder.conv_in.weight": ramp([2, 3, 1, 1], 4),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": ramp([5, 2], 5),
      };
      writeSafetensors(path, { ...toWrite(c, (k) => LDM[k]), ...toWrite(others) });
      return convertLdmCheckpoint(SafetensorsFile.open(path), "sd1").unet!;
    },
  },
  { name: "MemoryWeights", open: (c) => new MemoryWeights(c) },
];

for (const c of CASES) {
  describe(`WeightSource conformance: ${c.name}`, () => {
    it("offers exactly the stored keys, each with a shape that agrees with its data and the stored values", () => {
      const s = c.open(BASE);
      expect(s.synthetic ?? false).toBe(false);
      expect(s.description).toMatch(/\S/);
      expect([...s.keys()].sort()).toEqual(Object.keys(BASE).sort());
      for (const [k, t] of Object.entries(BASE)) {
        const info = s.info(k);
        expect(info?.shape, k).toEqual(t.shape);
        expect(["F32", "F16", "BF16"]).toContain(info?.dtype);
        const data = s.read(k, t.shape);
        expect(data).toBeInstanceOf(Float32Array);
        expect(data.length, k).toBe(numel(info!.shape));
        expect(Array.from(data), k).toEqual(t.data);
        const raw = (s as { readRaw?: (key: string) => Buffer }).readRaw?.(k);
        if (raw) expect(raw.length, k).toBe(numel(info!.shape) * (info!.dtype === "F32" ? 4 : 2)); // bytes = numel x dtype size
      }
    });

    it("returns a fresh array on every read", () => {
      const s = c.open(BASE);
      s.read("conv_in.bias", [2]).fill(99);
      expect(Array.from(s.read("conv_in.bias", [2]))).toEqual(BASE["conv_in.bias"].data);
    });

    it("has no unknown key and refuses to read one, naming it", () => {
      const s = c.open(BASE);
      expect(s.info("down_blocks.0.nope.weight")).toBeUndefined();
      expect(() => s.read("down_blocks.0.nope.weight", [1])).toThrow(/down_blocks\.0\.nope\.weight/);
    });

    it("keeps its fingerprint for the same content and changes it when the key set changes", () => {
      const fp = c.open(BASE).fingerprint();
      expect(fp).toMatch(/\S/);
      expect(c.open(BASE).fingerprint()).toBe(fp);
      expect(c.open(FEWER).fingerprint()).not.toBe(fp);
    });

    it("changes its fingerprint when one value changes (same keys, shapes and size)", () => {
      expect(c.open(CHANGED).fingerprint()).not.toBe(c.open(BASE).fingerprint());
    });
  });
}

describe("WeightSource conformance: RandomWeights (synthetic contract)", () => {
  it("invents any tensor on demand: deterministic, right length, then listed with its shape", () => {
    const s = new RandomWeights(7);
    expect(s.synthetic).toBe(true);
    expect(s.keys()).toEqual([]);
    const a = s.read("conv_in.weight", [2, 4, 3, 3]);
    expect(a.length).toBe(72);
    expect(Array.from(new RandomWeights(7).read("conv_in.weight", [2, 4, 3, 3]))).toEqual(Array.from(a));
    expect(s.keys()).toEqual(["conv_in.weight"]);
    expect(s.info("conv_in.weight")).toEqual({ dtype: "F32", shape: [2, 4, 3, 3] });
    expect(() => s.read("x", [-1])).toThrow(ReimagineError);
  });

  it("keeps its fingerprint for a seed and changes it with the seed (its content)", () => {
    expect(new RandomWeights(7).fingerprint()).toBe(new RandomWeights(7).fingerprint());
    expect(new RandomWeights(8).fingerprint()).not.toBe(new RandomWeights(7).fingerprint());
    expect(Array.from(new RandomWeights(8).read("w", [4]))).not.toEqual(Array.from(new RandomWeights(7).read("w", [4])));
  });
});
