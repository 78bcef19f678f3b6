// UNet2DConditionModel with SDXL's text_time addition embedding and with ControlNet residual inputs:
// parity with diffusers on the sdxl-tiny fixtures (reference.json `unet.cases`), and the SDXL base /
// refiner configs building over random weights with the weight keys of the real checkpoints.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { ModelSession } from "../runtime.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { RandomWeights } from "../weights/random.js";
import { buildUNet2DConditionModel, controlResidualNames, resolveUNetConfig } from "./unet.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-unet-xl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!haveFixtures("sdxl-tiny"))("UNet2DConditionModel text_time vs diffusers (sdxl-tiny)", () => {
  const ref = haveFixtures("sdxl-tiny") ? loadReferenceJson("sdxl-tiny") : undefined;
  const unetDir = fixture("sdxl-tiny", "model", "unet");
  const config = () => resolveUNetConfig(readJson(join(unetDir, "config.json"), "UNet config"));
  let session: ModelSession;
  let withResiduals: ModelSession;

  beforeAll(async () => {
    session = await ModelSession.load(buildUNet2DConditionModel(openComponentWeights(unetDir), config()).save(join(dir, "xl")), { threads: 2 });
    withResiduals = await ModelSession.load(
      buildUNet2DConditionModel(openComponentWeights(unetDir), config(), { controlResiduals: true }).save(join(dir, "xl-res")),
      { threads: 2 },
    );
  });
  afterAll(async () => {
    await session?.release();
    await withResiduals?.release();
  });

  const cases: any[] = ref?.unet.cases ?? [];
  it("has reference cases", () => expect(cases.length).toBeGreaterThanOrEqual(2));

  const feedsOf = (cs: any) => {
    const sample = referenceTensor(cs.sample, "sdxl-tiny");
    const batch = sample.shape[0];
    const tv = cs.timestep.value;
    const ehs = referenceTensor(cs.encoder_hidden_states, "sdxl-tiny");
    const te = referenceTensor(cs.text_embeds, "sdxl-tiny");
    const ids = referenceTensor(cs.time_ids_tensor, "sdxl-tiny");
    return {
      sample: { data: sample.data, dims: sample.shape },
      timestep: { data: Float32Array.from(Array.isArray(tv) ? tv : Array.from({ length: batch }, () => tv)), dims: [batch] },
      encoder_hidden_states: { data: ehs.data, dims: ehs.shape },
      text_embeds: { data: te.data, dims: te.shape },
      time_ids: { data: ids.data, dims: ids.shape },
    };
  };

  for (const cs of cases) {
    it(`matches case ${cs.id} within tolerances.unet.atol`, async () => {
      const out = await session.run(feedsOf(cs));
      const want = referenceTensor(cs.output, "sdxl-tiny");
      expect(out.out_sample.dims).toEqual(want.shape);
      expect(maxAbsDiff(out.out_sample.data as Float32Array, want.data)).toBeLessThan(ref.tolerances.unet.atol);
    });
  }

  it("with zero ControlNet residuals equals the plain UNet; a residual changes the output", async () => {
    const cs = cases[0];
    const feeds: Record<string, { data: Float32Array; dims: number[] }> = feedsOf(cs);
    const plain = (await session.run(feeds)).out_sample.data as Float32Array;
    // residual shapes: the skips of a [B, 4, 16, 16] input: 16x16 (conv_in + 2 resnets + downsample at 8x8), 8x8 ...
    const c = config();
    const names = controlResidualNames(c);
    const B = feeds.sample.dims[0];
    const shapes: number[][] = [
      [B, 16, 16, 16],
      [B, 16, 16, 16],
      [B, 16, 16, 16],
      [B, 16, 8, 8],
      [B, 32, 8, 8],
      [B, 32, 8, 8],
    ];
    expect(names.down).toHaveLength(shapes.length);
    names.down.forEach((n, i) => {
      feeds[n] = { data: new Float32Array(shapes[i].reduce((a, b) => a * b)), dims: shapes[i] };
    });
    feeds[names.mid] = { data: new Float32Array(B * 32 * 64), dims: [B, 32, 8, 8] };
    const zero = (await withResiduals.run(feeds)).out_sample.data as Float32Array;
    expect(maxAbsDiff(zero, plain)).toBe(0);
    feeds[names.mid].data.fill(0.5);
    const moved = (await withResiduals.run(feeds)).out_sample.data as Float32Array;
    expect(maxAbsDiff(moved, plain)).toBeGreaterThan(1e-3);
  });
});

describe("SDXL full-size configs build over random weights (not run)", () => {
  const xl = {
    block_out_channels: [320, 640, 1280],
    down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    attention_head_dim: [5, 10, 20],
    use_linear_projection: true,
    addition_embed_type: "text_time",
    addition_time_embed_dim: 256,
    sample_size: 128,
  };
  it("SDXL base: 1680 tensors (the diffusers unet of stable-diffusion-xl-base-1.0), 140 attentions", () => {
    const g = buildUNet2DConditionModel(
      new RandomWeights(3),
      resolveUNetConfig({ ...xl, cross_attention_dim: 2048, transformer_layers_per_block: [1, 2, 10], projection_class_embeddings_input_dim: 2816 }),
    );
    expect(g.params.length).toBe(1680);
    expect(g.params.find((p) => p.name === "add_embedding.linear_1.weight")?.dims).toEqual([2816, 1280]);
    expect(g.inputs.map((i) => i.name)).toEqual(["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]);
    expect(g.nodes.filter((n) => n.opType === "MultiHeadAttention")).toHaveLength(140); // 70 transformer blocks x 2
  });
  it("SDXL refiner (4 levels, 384 wide, 5 time ids + 1280 pooled)", () => {
    const g = buildUNet2DConditionModel(
      new RandomWeights(4),
      resolveUNetConfig({
        ...xl,
        block_out_channels: [384, 768, 1536, 1536],
        down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        attention_head_dim: [6, 12, 24, 24],
        cross_attention_dim: 1280,
        transformer_layers_per_block: 4,
        projection_class_embeddings_input_dim: 2560,
      }),
    );
    expect(g.params.find((p) => p.name === "add_embedding.linear_1.weight")?.dims).toEqual([2560, 1536]);
  });
});
