// UNet2DConditionModel graph: parity with diffusers on the sd-tiny fixtures (reference.json `unet.cases`),
// strict weight/config checks, and full-size SD 1.5 / SD 2.x configs building over random weights.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { ModelSession } from "../runtime.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { RandomWeights } from "../weights/random.js";
import { buildUNet2DConditionModel, resolveUNetConfig, timestepFrequencies } from "./unet.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-unet-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("timestepFrequencies", () => {
  it("is exp(-ln(10000) i / (half - shift)) in float32", () => {
    const f = timestepFrequencies(4, 0);
    expect(f[0]).toBe(1);
    for (let i = 0; i < 4; i++) expect(f[i]).toBeCloseTo(Math.exp((-Math.log(10000) * i) / 4), 6);
    expect(timestepFrequencies(4, 1)[3]).toBeCloseTo(1e-4, 8); // shift 1: last = 1/max_period
  });
});

describe("resolveUNetConfig", () => {
  it("applies diffusers defaults and checks list lengths", () => {
    const c = resolveUNetConfig({ block_out_channels: [320, 640, 1280, 1280], _class_name: "UNet2DConditionModel" });
    expect(c.cross_attention_dim).toBe(1280);
    expect(c.resnet_time_scale_shift).toBe("default");
    expect(c.down_block_types).toHaveLength(4);
    expect(() => resolveUNetConfig({ block_out_channels: [32, 64] })).toThrow(/2 block_out_channels for 4 down blocks/);
    expect(() => resolveUNetConfig({ attention_head_dim: [5, 10] })).toThrow(/attention_head_dim has 2 entries/);
  });

  it("refuses unsupported features naming the key", () => {
    const w = new RandomWeights(0);
    const build = (extra: Record<string, unknown>) => () => buildUNet2DConditionModel(w, resolveUNetConfig(extra));
    expect(build({ addition_embed_type: "text_time" })).toThrow(/text_time needs addition_time_embed_dim/);
    expect(build({ addition_embed_type: "image" })).toThrow(/addition_embed_type 'image'/);
    expect(build({ class_embed_type: "timestep" })).toThrow(/class_embed_type/);
    expect(build({ only_cross_attention: true })).toThrow(/only_cross_attention/);
    expect(build({ down_block_types: ["SimpleCrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"] })).toThrow(/SimpleCrossAttnDownBlock2D/);
  });
});

describe.skipIf(!haveFixtures())("UNet2DConditionModel vs diffusers (sd-tiny)", () => {
  const ref = haveFixtures() ? loadReferenceJson("sd-tiny") : undefined;
  const unetDir = fixture("sd-tiny", "model", "unet");
  let session: ModelSession;

  beforeAll(async () => {
    const g = buildUNet2DConditionModel(openComponentWeights(unetDir), resolveUNetConfig(readJson(join(unetDir, "config.json"), "UNet config")));
    session = await ModelSession.load(g.save(join(dir, "tiny")), { threads: 2 });
  });
  afterAll(async () => {
    await session?.release();
  });

  const cases: any[] = ref?.unet.cases ?? [];
  it("has the three reference cases", () => expect(cases.length).toBe(3));

  for (const cs of cases) {
    it(`matches case ${cs.id} within tolerances.unet.atol`, async () => {
      const sample = referenceTensor(cs.sample);
      const ehs = referenceTensor(cs.encoder_hidden_states);
      const batch = sample.shape[0];
      // timestep is stored inline: a scalar (broadcast to [B], as diffusers' expand) or one per sample
      const tv = cs.timestep.value;
      const t = Float32Array.from(Array.isArray(tv) ? tv : Array.from({ length: batch }, () => tv));
      expect(t.length).toBe(batch);
      const out = await session.run({
        sample: { data: sample.data, dims: sample.shape },
        timestep: { data: t, dims: [batch] },
        encoder_hidden_states: { data: ehs.data, dims: ehs.shape },
      });
      const want = referenceTensor(cs.output);
      expect(out.out_sample.dims).toEqual(want.shape);
      const diff = maxAbsDiff(out.out_sample.data as Float32Array, want.data);
      expect(diff).toBeLessThan(ref.tolerances.unet.atol);
    });
  }

  it("runs sizes that are not a multiple of 2^downsamplers (diffusers' upsample_size path)", async () => {
    const [b, h, w, L] = [1, 7, 5, 3];
    const out = await session.run({
      sample: { data: new Float32Array(b * 4 * h * w).fill(0.5), dims: [b, 4, h, w] },
      timestep: { data: Float32Array.from([10]), dims: [b] },
      encoder_hidden_states: { data: new Float32Array(b * L * 16).fill(0.1), dims: [b, L, 16] },
    });
    expect(out.out_sample.dims).toEqual([b, 4, h, w]);
    expect((out.out_sample.data as Float32Array).every(Number.isFinite)).toBe(true);
  });

  it("refuses a config that does not match the weights, naming the key", () => {
    const json = readJson(join(unetDir, "config.json"), "UNet config");
    const build = (patch: Record<string, unknown>) => () => buildUNet2DConditionModel(openComponentWeights(unetDir), resolveUNetConfig({ ...json, ...patch }));
    expect(build({ cross_attention_dim: 24 })).toThrow(/'down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight'.*\[16,16\].*\[16,24\]/);
    expect(build({ layers_per_block: 1 })).toThrow(/'up_blocks\.0\.resnets\.1\.norm1\.weight'.*shape \[64\]/);
    expect(build({ mid_block_type: "UNetMidBlock2D" })).toThrow(/unused weights.*mid_block\.attentions\.0/);
    expect(build({ use_linear_projection: true })).toThrow(/proj_in\.weight/);
  });
});

describe("full-size configs build over random weights (not run)", () => {
  const base = {
    block_out_channels: [320, 640, 1280, 1280],
    layers_per_block: 2,
    sample_size: 64,
    in_channels: 4,
    out_channels: 4,
  };
  it("SD 1.5", () => {
    const weights = new RandomWeights(1);
    const g = buildUNet2DConditionModel(weights, resolveUNetConfig({ ...base, attention_head_dim: 8, cross_attention_dim: 768 }));
    expect(weights.keys()).toEqual([]); // building lays out nodes only: no weight is read before save (build time: bench/graph-build.ts)
    expect(g.params.find((p) => p.name === "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")?.dims).toEqual([768, 320]);
    expect(g.params.find((p) => p.name === "down_blocks.0.attentions.0.proj_in.weight")?.dims).toEqual([320, 320, 1, 1]);
    expect(g.params.length).toBe(686); // SD 1.5 unet/diffusion_pytorch_model.safetensors holds 686 tensors
    const mha = g.nodes.filter((n) => n.opType === "MultiHeadAttention");
    expect(mha).toHaveLength(32); // 16 transformers x (attn1 + attn2)
    expect(mha.every((n) => n.attrs.num_heads === 8)).toBe(true);
  });

  it("SD 2.x (per-block heads, linear projections, 1024-wide context)", () => {
    const weights = new RandomWeights(2);
    const g = buildUNet2DConditionModel(
      weights,
      resolveUNetConfig({ ...base, attention_head_dim: [5, 10, 20, 20], use_linear_projection: true, cross_attention_dim: 1024 }),
    );
    expect(weights.keys()).toEqual([]);
    expect(g.params.find((p) => p.name === "mid_block.attentions.0.proj_in.weight")?.dims).toEqual([1280, 1280]);
    expect(g.params.find((p) => p.name === "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight")?.dims).toEqual([1024, 320]);
    const heads = g.nodes.filter((n) => n.opType === "MultiHeadAttention").map((n) => n.attrs.num_heads);
    expect(new Set(heads)).toEqual(new Set([5, 10, 20]));
    expect(g.params.length).toBe(686);
  });
});
