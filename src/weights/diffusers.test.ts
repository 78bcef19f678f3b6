// openComponentWeights (single file, variants, sharded indexes, refusals), MultiSource, readJson,
// RandomWeights, and the real sd-tiny fixture folders.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { MultiSource, openComponentWeights, readJson } from "./diffusers.js";
import { RandomWeights } from "./random.js";
import { SafetensorsFile, writeSafetensors } from "./safetensors.js";

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "reimagine-dw-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** A fresh component folder holding `files`: name -> tensors (value = one marker per tensor) or JSON/text. */
function component(files: Record<string, Record<string, number> | object | string>, name = "unet"): string {
  const dir = join(root, `c${n++}`, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) {
    if (file.endsWith(".safetensors")) {
      const tensors = Object.fromEntries(
        Object.entries(content as Record<string, number>).map(([k, v]) => [k, { dtype: "F32" as const, shape: [1], data: new Float32Array([v]) }]),
      );
      writeSafetensors(join(dir, file), tensors);
    } else writeFileSync(join(dir, file), typeof content === "string" ? content : JSON.stringify(content));
  }
  return dir;
}
const value = (w: ReturnType<typeof openComponentWeights>, key: string) => w.read(key, [1])[0];

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ReimagineError);
    return (e as Error).message;
  }
  throw new Error("not refused");
}

describe("openComponentWeights resolution", () => {
  it("opens diffusers and transformers single files", () => {
    const u = openComponentWeights(component({ "diffusion_pytorch_model.safetensors": { a: 1 }, "config.json": {} }));
    expect(u).toBeInstanceOf(SafetensorsFile);
    expect(u.description).toMatch(/unet[\\/]diffusion_pytorch_model\.safetensors$/);
    expect(value(u, "a")).toBe(1);
    const t = openComponentWeights(component({ "model.safetensors": { b: 2 } }, "text_encoder"));
    expect(value(t, "b")).toBe(2);
  });

  it("picks the requested variant, falls back to plain weights when it is absent", () => {
    const dir = component({ "diffusion_pytorch_model.safetensors": { a: 32 }, "diffusion_pytorch_model.fp16.safetensors": { a: 16 } });
    expect(value(openComponentWeights(dir, { variant: "fp16" }), "a")).toBe(16);
    expect(value(openComponentWeights(dir), "a")).toBe(32);
    expect(value(openComponentWeights(dir, { variant: "ema" }), "a")).toBe(32);
  });

  it("uses the only variant when none was requested; refuses an ambiguous or missing choice", () => {
    expect(value(openComponentWeights(component({ "diffusion_pytorch_model.fp16.safetensors": { a: 16 } })), "a")).toBe(16);
    const two = component({ "model.fp16.safetensors": { a: 16 }, "model.ema.safetensors": { a: 3 } });
    expect(refusal(() => openComponentWeights(two))).toMatch(/several weight variants \(ema, fp16\).*variant option/);
    expect(value(openComponentWeights(two, { variant: "ema" }), "a")).toBe(3);
    expect(refusal(() => openComponentWeights(two, { variant: "bf16" }))).toMatch(/no 'bf16' variant.*variants present: ema, fp16/);
  });

  it("opens a sharded index, one MultiSource over its shards", () => {
    const dir = component({
      "diffusion_pytorch_model-00001-of-00002.safetensors": { a: 1, b: 2 },
      "diffusion_pytorch_model-00002-of-00002.safetensors": { c: 3 },
      "diffusion_pytorch_model.safetensors.index.json": {
        metadata: { total_size: 12 },
        weight_map: {
          a: "diffusion_pytorch_model-00001-of-00002.safetensors",
          b: "diffusion_pytorch_model-00001-of-00002.safetensors",
          c: "diffusion_pytorch_model-00002-of-00002.safetensors",
        },
      },
    });
    const w = openComponentWeights(dir);
    expect(w).toBeInstanceOf(MultiSource);
    expect((w as MultiSource).sources.length).toBe(2);
    expect(w.keys().sort()).toEqual(["a", "b", "c"]);
    expect([value(w, "a"), value(w, "b"), value(w, "c")]).toEqual([1, 2, 3]);
    expect(w.info("c")).toEqual({ dtype: "F32", shape: [1] });
    expect(w.fingerprint()).toMatch(/^[0-9a-f]{64}$/);
    expect(refusal(() => w.read("zz", [1]))).toMatch(/no tensor named 'zz'/);
  });

  it("resolves variant indexes in the diffusers/transformers naming and the legacy one; shards are not variants", () => {
    const shard = "model.fp16-00001-of-00001.safetensors";
    const files = { [shard]: { a: 16 }, "model.safetensors": { a: 32 } };
    const modern = component({ ...files, "model.safetensors.index.fp16.json": { weight_map: { a: shard } } });
    expect(value(openComponentWeights(modern, { variant: "fp16" }), "a")).toBe(16);
    expect(value(openComponentWeights(modern), "a")).toBe(32);
    const legacy = component({ ...files, "model.fp16.safetensors.index.json": { weight_map: { a: shard } } });
    expect(value(openComponentWeights(legacy, { variant: "fp16" }), "a")).toBe(16);
    // Only a variant index and its shards: the variant is "fp16", not "fp16-00001-of-00001".
    const only = component({ [shard]: { a: 16 }, "model.safetensors.index.fp16.json": { weight_map: { a: shard } } });
    expect(value(openComponentWeights(only), "a")).toBe(16);
  });

  it("refuses inconsistent indexes", () => {
    const s1 = "diffusion_pytorch_model-00001-of-00002.safetensors";
    const s2 = "diffusion_pytorch_model-00002-of-00002.safetensors";
    const idx = "diffusion_pytorch_model.safetensors.index.json";
    expect(refusal(() => openComponentWeights(component({ [s1]: { a: 1 }, [s2]: { a: 2 }, [idx]: { weight_map: { a: s1, b: s2 } } })))).toMatch(
      /index puts tensor 'b' in .*00002-of-00002.safetensors, but that shard does not hold it/,
    );
    expect(refusal(() => openComponentWeights(component({ [s1]: { a: 1 }, [s2]: { a: 2, b: 3 }, [idx]: { weight_map: { a: s1, b: s2 } } })))).toMatch(
      /tensor 'a' is stored twice/,
    );
    expect(refusal(() => openComponentWeights(component({ [s1]: { a: 1 }, [idx]: { weight_map: { a: s1, b: s2 } } })))).toMatch(
      /shard .*00002-of-00002.safetensors is missing/,
    );
    expect(refusal(() => openComponentWeights(component({ [s1]: { a: 1 }, [idx]: { weight_map: { a: "../../secret.safetensors" } } })))).toMatch(
      /names an invalid shard "..\/..\/secret.safetensors"/,
    );
    expect(refusal(() => openComponentWeights(component({ [idx]: { metadata: {} } })))).toMatch(/no "weight_map" object/);
    expect(refusal(() => openComponentWeights(component({ [idx]: "{oops" })))).toMatch(/sharded weights index at .* is not valid JSON/);
  });

  it("refuses pickle-only, empty and missing folders with the component named", () => {
    expect(refusal(() => openComponentWeights(component({ "diffusion_pytorch_model.bin": "x", "config.json": {} })))).toMatch(
      /component 'unet': .* only has pickle weights \(diffusion_pytorch_model.bin\).*execute code.*safe_serialization=True/,
    );
    expect(refusal(() => openComponentWeights(component({}, "vae")))).toMatch(/component 'vae': folder .* is empty/);
    expect(refusal(() => openComponentWeights(join(root, "nowhere", "text_encoder")))).toMatch(/component 'text_encoder': folder .*nowhere.* does not exist/);
    expect(refusal(() => openComponentWeights(component({ "config.json": {} })))).toMatch(/no weights in .*found config.json/);
  });
});

describe("MultiSource and readJson", () => {
  it("MultiSource is the union of its sources; fingerprints follow their content", () => {
    const a = new RandomWeights(1),
      b = new RandomWeights(2);
    a.read("x", [2]);
    b.read("y", [3]);
    const m = new MultiSource([a, b], "pair");
    expect(m.keys()).toEqual(["x", "y"]);
    expect(m.info("y")).toEqual({ dtype: "F32", shape: [3] });
    expect(Array.from(m.read("y", [3]))).toEqual(Array.from(b.read("y", [3])));
    expect(m.fingerprint()).not.toBe(new MultiSource([a, new RandomWeights(3)], "pair").fingerprint());
    a.read("y", [1]);
    expect(refusal(() => new MultiSource([a, b], "pair"))).toMatch(/pair: tensor 'y' is stored twice/);
  });

  it("readJson parses objects and explains missing or corrupt files", () => {
    const dir = component({ "config.json": { in_channels: 4 }, "bad.json": "{in_channels: 4}", "list.json": "[1]" });
    expect(readJson(join(dir, "config.json"), "UNet config")).toEqual({ in_channels: 4 });
    expect(refusal(() => readJson(join(dir, "nope.json"), "UNet config"))).toMatch(/UNet config not found: .*nope.json/);
    expect(refusal(() => readJson(join(dir, "bad.json"), "UNet config"))).toMatch(/UNet config at .*bad.json is not valid JSON/);
    expect(refusal(() => readJson(join(dir, "list.json"), "UNet config"))).toMatch(/is not a JSON object/);
  });
});

describe("RandomWeights", () => {
  it("is deterministic in (seed, key) and differs across seeds and keys", () => {
    const w = new RandomWeights(42);
    const x = w.read("down_blocks.0.resnets.0.conv1.weight", [8, 4, 3, 3]);
    expect(Array.from(new RandomWeights(42).read("down_blocks.0.resnets.0.conv1.weight", [8, 4, 3, 3]))).toEqual(Array.from(x));
    expect(new RandomWeights(43).read("down_blocks.0.resnets.0.conv1.weight", [8, 4, 3, 3])[0]).not.toBe(x[0]);
    expect(w.read("down_blocks.0.resnets.0.conv2.weight", [8, 4, 3, 3])[0]).not.toBe(x[0]);
    expect(w.synthetic).toBe(true);
    expect(w.fingerprint()).toBe("random-42");
  });

  it("norm weights are ones, biases small, other weights within ±1/sqrt(fan_in) and spread over it", () => {
    const w = new RandomWeights(7);
    expect(Array.from(w.read("norm1.weight", [4]))).toEqual([1, 1, 1, 1]);
    expect(Array.from(w.read("text_model.final_layer_norm.weight", [3]))).toEqual([1, 1, 1]);
    const bias = w.read("conv_in.bias", [1000]);
    expect(Math.max(...bias.map(Math.abs))).toBeLessThanOrEqual(0.01);
    expect(Math.max(...bias.map(Math.abs))).toBeGreaterThan(0.009);
    const k = w.read("conv_in.weight", [320, 4, 3, 3]); // fan_in 36
    const bound = 1 / 6;
    let max = 0,
      mean = 0;
    for (const v of k) {
      max = Math.max(max, Math.abs(v));
      mean += v / k.length;
    }
    expect(max).toBeLessThanOrEqual(bound);
    expect(max).toBeGreaterThan(0.99 * bound);
    expect(Math.abs(mean)).toBeLessThan(0.03 * bound); // ~5 standard errors
    expect(w.keys()).toEqual(["norm1.weight", "text_model.final_layer_norm.weight", "conv_in.bias", "conv_in.weight"]);
    expect(w.info("conv_in.weight")).toEqual({ dtype: "F32", shape: [320, 4, 3, 3] });
    expect(w.info("never.read")).toBeUndefined();
  });
});

describe.skipIf(!haveFixtures("sd-tiny"))("sd-tiny fixture folders", () => {
  it("unet: keys and shapes follow config.json", () => {
    const dir = fixture("sd-tiny", "model", "unet");
    const cfg = readJson<Record<string, any>>(join(dir, "config.json"), "UNet config");
    const w = openComponentWeights(dir);
    const c0 = cfg.block_out_channels[0];
    expect(w.info("conv_in.weight")).toEqual({ dtype: "F32", shape: [c0, cfg.in_channels, cfg.conv_in_kernel, cfg.conv_in_kernel] });
    expect(w.info("conv_out.weight")?.shape).toEqual([cfg.out_channels, c0, cfg.conv_out_kernel, cfg.conv_out_kernel]);
    expect(w.info("time_embedding.linear_1.weight")?.shape).toEqual([4 * c0, c0]);
    expect(w.info("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")?.shape).toEqual([c0, cfg.cross_attention_dim]);
    expect(w.keys().length).toBeGreaterThan(100);
    const raw = (w as SafetensorsFile).readRaw("conv_in.bias");
    const bias = w.read("conv_in.bias", [c0]);
    expect(Array.from(bias)).toEqual(Array.from({ length: c0 }, (_, i) => raw.readFloatLE(4 * i)));
    expect(bias.some((v) => v !== 0)).toBe(true);
  });

  it("text_encoder (transformers naming) and vae open too", () => {
    const te = fixture("sd-tiny", "model", "text_encoder");
    const cfg = readJson(join(te, "config.json"), "text encoder config");
    expect(openComponentWeights(te).info("text_model.embeddings.token_embedding.weight")?.shape).toEqual([cfg.vocab_size, cfg.hidden_size]);
    const vae = fixture("sd-tiny", "model", "vae");
    const vcfg = readJson<Record<string, any>>(join(vae, "config.json"), "VAE config");
    expect(openComponentWeights(vae).info("encoder.conv_in.weight")?.shape).toEqual([vcfg.block_out_channels[0], vcfg.in_channels, 3, 3]);
  });

  it("a sharded fp16 re-export of the unet reads back the same tensors (rounded to float16)", () => {
    const src = openComponentWeights(fixture("sd-tiny", "model", "unet")) as SafetensorsFile;
    const keys = src.keys();
    const half = Math.ceil(keys.length / 2);
    const dir = join(root, "resharded", "unet");
    mkdirSync(dir, { recursive: true });
    const weightMap: Record<string, string> = {};
    [keys.slice(0, half), keys.slice(half)].forEach((part, i) => {
      const shard = `diffusion_pytorch_model.fp16-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(join(dir, shard), Object.fromEntries(part.map((k) => [k, { dtype: "F16" as const, shape: src.info(k)!.shape, data: src.read(k) }])));
      for (const k of part) weightMap[k] = shard;
    });
    writeFileSync(join(dir, "diffusion_pytorch_model.safetensors.index.fp16.json"), JSON.stringify({ weight_map: weightMap }));
    const w = openComponentWeights(dir, { variant: "fp16" });
    expect(w.keys().sort()).toEqual([...keys].sort());
    const bad: string[] = [];
    for (const k of keys) {
      expect(w.info(k)).toEqual({ dtype: "F16", shape: src.info(k)!.shape });
      const a = src.read(k),
        b = w.read(k, []);
      // float16 rounding: half an ulp (2^-11 relative), or half the subnormal step 2^-24
      for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - b[i]) <= Math.abs(a[i]) * 2 ** -11 + 2 ** -25)) bad.push(`${k}[${i}]`);
    }
    expect(bad).toEqual([]);
  });
});
