// ControlNetModel graph: config resolution, the guess-mode scales, parity with diffusers on the sd-tiny-controlnet
// fixtures (direct forwards, the pipelines' first ControlNet calls, and the UNet fed our residuals), and full-size
// SD 1.5 / 2.x / XL configs building over random weights as the UNet's encoder plus the ControlNet-only layers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { ModelSession, type TensorData } from "../runtime.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { RandomWeights } from "../weights/random.js";
import { buildControlNetModel, controlNetOutputNames, controlNetScales, resolveControlNetConfig } from "./controlnet.js";
import { buildUNet2DConditionModel, controlResidualNames, resolveUNetConfig } from "./unet.js";

const SET = "sd-tiny-controlnet";
const dir = mkdtempSync(join(tmpdir(), "reimagine-controlnet-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("resolveControlNetConfig", () => {
  it("applies diffusers' ControlNetModel defaults (SD 1.5 layout, 16/32/96/256 hint channels)", () => {
    const c = resolveControlNetConfig({ cross_attention_dim: 768, _class_name: "ControlNetModel", unknown_key: 1 });
    expect(c.block_out_channels).toEqual([320, 640, 1280, 1280]);
    expect(c.conditioning_embedding_out_channels).toEqual([16, 32, 96, 256]);
    expect(c.controlnet_conditioning_channel_order).toBe("rgb");
    expect(controlNetOutputNames(c).down).toHaveLength(12);
  });

  it("refuses inconsistent or unsupported configs naming the key", () => {
    expect(() => resolveControlNetConfig({ block_out_channels: [32, 64] })).toThrow(/2 block_out_channels for 4 down_block_types/);
    expect(() => resolveControlNetConfig({ attention_head_dim: [5, 10] })).toThrow(/attention_head_dim has 2 entries/);
    expect(() => resolveControlNetConfig({ mid_block_type: null })).toThrow(/mid_block_type 'null' is unknown/);
    expect(() => resolveControlNetConfig({ controlnet_conditioning_channel_order: "rbg" })).toThrow(/"rgb" or "bgr"/);
    expect(() => resolveControlNetConfig({ conditioning_embedding_out_channels: [] })).toThrow(/conditioning_embedding_out_channels/);
    expect(() => resolveControlNetConfig({ class_embed_type: "timestep" })).toThrow(/class embeddings/);
    expect(() => resolveControlNetConfig({ addition_embed_type: "text" })).toThrow(/addition_embed_type 'text'/);
    expect(() => resolveControlNetConfig({ addition_embed_type: "text_time" })).toThrow(/needs addition_time_embed_dim/);
  });
});

describe("controlNetScales", () => {
  it("is conditioning_scale for every residual, or logspace(-1, 0, n + 1) * scale in guess mode", () => {
    expect([...controlNetScales(3, 0.6, false)]).toEqual(new Array(4).fill(Math.fround(0.6)));
    const g = controlNetScales(12, 0.5, true);
    expect(g).toHaveLength(13);
    expect(g[0]).toBeCloseTo(0.05, 7);
    expect(g[12]).toBeCloseTo(0.5, 7);
    expect(g[6]).toBeCloseTo(0.5 * 10 ** -0.5, 7);
    for (let i = 1; i < 13; i++) expect(g[i] / g[i - 1]).toBeCloseTo(10 ** (1 / 12), 5);
    expect([...controlNetScales(2, 0.7, true, true)]).toEqual(new Array(3).fill(Math.fround(0.7))); // global pool: no guess scaling
    expect(() => controlNetScales(2, Number.NaN, false)).toThrow(/finite/);
  });
});

const both = haveFixtures(SET) && haveFixtures("sd-tiny");
(both ? describe : describe.skip)("ControlNetModel vs diffusers (sd-tiny-controlnet)", () => {
  if (!both) return void it("needs the shared fixtures sd-tiny-controlnet and sd-tiny", () => undefined);
  const ref = loadReferenceJson(SET);
  const cnDir = fixture(SET, "model", "controlnet");
  // model/unet is a symlink to sd-tiny's unet in the generator's tree; the shared copy stores the link as a
  // text file holding its target, so the identical weights are read from sd-tiny itself
  const unetDir = fixture("sd-tiny", "model", "unet");
  const config = resolveControlNetConfig(readJson(join(cnDir, "config.json"), "ControlNet config"));
  const unetConfig = resolveUNetConfig(readJson(join(unetDir, "config.json"), "UNet config"));
  const names = controlNetOutputNames(config);
  const residualInputs = controlResidualNames(unetConfig);
  const tensor = (r: { tensor: string }): TensorData => {
    const t = referenceTensor(r, SET);
    return { data: t.data, dims: t.shape };
  };
  let controlnet: ModelSession;
  let unet: ModelSession;
  let plainUnet: ModelSession;

  beforeAll(async () => {
    controlnet = await ModelSession.load(buildControlNetModel(openComponentWeights(cnDir), config).save(join(dir, "cn")), { threads: 2 });
    unet = await ModelSession.load(
      buildUNet2DConditionModel(openComponentWeights(unetDir), unetConfig, { controlResiduals: true }).save(join(dir, "unet-res")),
      { threads: 2 },
    );
    plainUnet = await ModelSession.load(buildUNet2DConditionModel(openComponentWeights(unetDir), unetConfig).save(join(dir, "unet")), { threads: 2 });
  });
  afterAll(async () => {
    await controlnet?.release();
    await unet?.release();
    await plainUnet?.release();
  });

  it("has as many outputs as the UNet has residual inputs, in the fixture's count", () => {
    expect(names.down).toHaveLength(residualInputs.down.length);
    expect(names.down).toHaveLength(ref.controlnet.n_down_residuals);
  });

  /** Runs the ControlNet as diffusers' forward(sample, t, ehs, cond, conditioning_scale, guess_mode). */
  async function runControlNet(sample: TensorData, t: number, ehs: TensorData, cond: TensorData, scale: number, guess: boolean) {
    const batch = sample.dims[0];
    return controlnet.run({
      sample,
      timestep: { data: new Float32Array(batch).fill(t), dims: [batch] },
      encoder_hidden_states: ehs,
      controlnet_cond: cond,
      conditioning_scales: { data: controlNetScales(names.down.length, scale, guess), dims: [names.down.length + 1] },
    });
  }

  function expectResiduals(out: Record<string, TensorData>, down: { tensor: string }[], mid: { tensor: string }, atol: number) {
    down.forEach((r, i) => {
      const want = referenceTensor(r, SET);
      expect(out[names.down[i]].dims, names.down[i]).toEqual(want.shape);
      expect(maxAbsDiff(out[names.down[i]].data as Float32Array, want.data), names.down[i]).toBeLessThan(atol);
    });
    const want = referenceTensor(mid, SET);
    expect(out[names.mid].dims).toEqual(want.shape);
    expect(maxAbsDiff(out[names.mid].data as Float32Array, want.data)).toBeLessThan(atol);
  }

  const cases: any[] = ref.controlnet.cases;
  it("has the direct forward cases, one in guess mode", () => {
    expect(cases.length).toBeGreaterThanOrEqual(2);
    expect(cases.some((c) => c.guess_mode)).toBe(true);
  });

  for (const cs of cases) {
    it(`${cs.id}: down/mid residuals within tolerances.controlnet.atol, and the UNet fed them within tolerances.unet.atol`, async () => {
      const sample = tensor(cs.sample);
      const ehs = tensor(cs.encoder_hidden_states);
      const out = await runControlNet(sample, cs.timestep.value, ehs, tensor(cs.controlnet_cond), cs.conditioning_scale, cs.guess_mode);
      expectResiduals(out, cs.down_block_res_samples, cs.mid_block_res_sample, ref.tolerances.controlnet.atol);

      const batch = sample.dims[0];
      const feeds: Record<string, TensorData> = {
        sample,
        timestep: { data: new Float32Array(batch).fill(cs.timestep.value), dims: [batch] },
        encoder_hidden_states: ehs,
      };
      const plain = await plainUnet.run(feeds);
      expect(maxAbsDiff(plain.out_sample.data as Float32Array, referenceTensor(cs.unet_without_residuals_output, SET).data)).toBeLessThan(
        ref.tolerances.unet.atol,
      );
      residualInputs.down.forEach((n, i) => {
        feeds[n] = out[names.down[i]];
      });
      feeds[residualInputs.mid] = out[names.mid];
      const withRes = await unet.run(feeds);
      const want = referenceTensor(cs.unet_with_residuals_output, SET);
      expect(maxAbsDiff(withRes.out_sample.data as Float32Array, want.data)).toBeLessThan(ref.tolerances.unet.atol);
    });
  }

  for (const cs of ref.pipeline.cases as any[]) {
    it(`${cs.id}: the pipeline's first ControlNet call (scale ${cs.controlnet_call_conditioning_scale[0]}, guess ${cs.inputs.guess_mode})`, async () => {
      const call = cs.controlnet_first_call;
      const out = await runControlNet(
        tensor(call.sample),
        call.timestep,
        tensor(call.encoder_hidden_states),
        tensor(cs.control_image_as_passed_to_controlnet),
        call.conditioning_scale,
        cs.inputs.guess_mode,
      );
      expectResiduals(out, call.down_block_res_samples, call.mid_block_res_sample, ref.tolerances["pipeline.controlnet_residuals"].atol);
    });
  }

  it("scale 0 gives all-zero residuals (a step outside the guidance window)", async () => {
    const cs = cases[0];
    const out = await runControlNet(tensor(cs.sample), 500, tensor(cs.encoder_hidden_states), tensor(cs.controlnet_cond), 0, false);
    for (const n of [...names.down, names.mid])
      expect(
        (out[n].data as Float32Array).every((v) => v === 0),
        n,
      ).toBe(true);
  });

  it("refuses a config that does not match the weights, naming the key", () => {
    const json = readJson(join(cnDir, "config.json"), "ControlNet config");
    const build = (patch: Record<string, unknown>) => () => buildControlNetModel(openComponentWeights(cnDir), resolveControlNetConfig({ ...json, ...patch }));
    expect(build({ conditioning_embedding_out_channels: [8, 16, 32] })).toThrow(/'controlnet_cond_embedding\.blocks\.2\.weight' is missing/);
    expect(build({ layers_per_block: 1 })).toThrow(/'controlnet_down_blocks\.3\.weight'.*\[16,16,1,1\].*\[32,32,1,1\]/);
    expect(build({ cross_attention_dim: 24 })).toThrow(/attn2\.to_k\.weight/);
  });
});

describe("full-size ControlNet configs build over random weights as the UNet's encoder (not run)", () => {
  const base = { block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2 };
  const xl = {
    block_out_channels: [320, 640, 1280],
    down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    attention_head_dim: [5, 10, 20],
    use_linear_projection: true,
    cross_attention_dim: 2048,
    transformer_layers_per_block: [1, 2, 10],
    addition_embed_type: "text_time",
    addition_time_embed_dim: 256,
    projection_class_embeddings_input_dim: 2816,
  };
  const encoderPrefix = /^(conv_in|time_embedding|add_embedding|down_blocks|mid_block)\./;
  const variants: [string, Record<string, unknown>, Record<string, unknown>][] = [
    [
      "SD 1.5 (lllyasviel control_v11p_sd15_*)",
      { ...base, cross_attention_dim: 768 },
      { up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"] },
    ],
    ["SD 2.1", { ...base, cross_attention_dim: 1024, attention_head_dim: [5, 10, 20, 20], use_linear_projection: true }, {}],
    ["SDXL", xl, { up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"] }],
  ];
  for (const [label, json, unetExtra] of variants) {
    it(`${label}: every encoder weight as in the UNet, plus the hint embedding and one zero conv per skip`, () => {
      const cfg = resolveControlNetConfig(json);
      const g = buildControlNetModel(new RandomWeights(5), cfg);
      const u = buildUNet2DConditionModel(new RandomWeights(5), resolveUNetConfig({ ...json, ...unetExtra }));
      const shapes = (ps: { name: string; dims: number[] }[]) => new Map(ps.map((p) => [p.name, p.dims.join("x")]));
      const cn = shapes(g.params);
      const enc = [...shapes(u.params)].filter(([k]) => encoderPrefix.test(k));
      for (const [k, s] of enc) expect(cn.get(k), k).toBe(s);
      const own = [...cn.keys()].filter((k) => !encoderPrefix.test(k));
      const nDown = controlNetOutputNames(cfg).down.length;
      expect(own.filter((k) => k.startsWith("controlnet_down_blocks."))).toHaveLength(2 * nDown);
      expect(own.filter((k) => k.startsWith("controlnet_cond_embedding."))).toHaveLength(2 * (2 + 2 * 3)); // conv_in, 6 blocks, conv_out
      expect(own.filter((k) => k.startsWith("controlnet_mid_block."))).toHaveLength(2);
      expect(cn.size).toBe(enc.length + own.length);
      expect(own).toHaveLength(2 * nDown + 16 + 2);
      expect(cn.get("controlnet_cond_embedding.conv_out.weight")).toBe("320x256x3x3");
    });
  }
});

describe("an SDXL-style ControlNet (text_time) runs", () => {
  it("takes text_embeds and time_ids, and they change the residuals (sdxl-tiny's layout, random weights)", async () => {
    const cfg = resolveControlNetConfig({
      block_out_channels: [16, 32],
      down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D"],
      attention_head_dim: [2, 4],
      norm_num_groups: 8,
      cross_attention_dim: 20,
      transformer_layers_per_block: 2,
      addition_embed_type: "text_time",
      addition_time_embed_dim: 8,
      projection_class_embeddings_input_dim: 58, // 10 pooled + 6 ids x 8
      conditioning_embedding_out_channels: [8, 16],
    });
    const g = buildControlNetModel(new RandomWeights(9), cfg);
    expect(g.inputs.map((i) => i.name)).toEqual([
      "sample",
      "timestep",
      "encoder_hidden_states",
      "controlnet_cond",
      "conditioning_scales",
      "text_embeds",
      "time_ids",
    ]);
    const s = await ModelSession.load(g.save(join(dir, "xl")), { threads: 1 });
    try {
      const names = controlNetOutputNames(cfg);
      const fill = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
      const feeds = (ids: number[]) => ({
        sample: { data: fill(4 * 8 * 8, (i) => Math.sin(i)), dims: [1, 4, 8, 8] },
        timestep: { data: Float32Array.of(400), dims: [1] },
        encoder_hidden_states: { data: fill(5 * 20, (i) => Math.cos(i)), dims: [1, 5, 20] },
        controlnet_cond: { data: fill(3 * 16 * 16, (i) => (i % 7) / 7), dims: [1, 3, 16, 16] },
        conditioning_scales: { data: controlNetScales(names.down.length, 1, false), dims: [names.down.length + 1] },
        text_embeds: { data: fill(10, (i) => i / 10), dims: [1, 10] },
        time_ids: { data: Float32Array.from(ids), dims: [1, 6] },
      });
      const a = await s.run(feeds([64, 64, 0, 0, 64, 64]));
      const b = await s.run(feeds([32, 48, 0, 0, 64, 64]));
      expect(names.down).toHaveLength(6);
      expect(a[names.down[5]].dims).toEqual([1, 32, 4, 4]);
      expect(a[names.mid].dims).toEqual([1, 32, 4, 4]);
      expect((a[names.mid].data as Float32Array).every(Number.isFinite)).toBe(true);
      expect(maxAbsDiff(a[names.mid].data as Float32Array, b[names.mid].data as Float32Array)).toBeGreaterThan(1e-4);
    } finally {
      await s.release();
    }
  });
});

describe("channel order and global pooling", () => {
  it("a bgr ControlNet reads the control image's channels reversed; global_pool_conditions averages each residual", async () => {
    const json = {
      block_out_channels: [8, 16],
      down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"],
      attention_head_dim: 2,
      norm_num_groups: 4,
      cross_attention_dim: 6,
      conditioning_embedding_out_channels: [4, 8],
    };
    const load = async (extra: Record<string, unknown>, name: string) => {
      const cfg = resolveControlNetConfig({ ...json, ...extra });
      return { cfg, s: await ModelSession.load(buildControlNetModel(new RandomWeights(4), cfg).save(join(dir, name)), { threads: 1 }) };
    };
    const rgb = await load({}, "rgb");
    const bgr = await load({ controlnet_conditioning_channel_order: "bgr" }, "bgr");
    const pool = await load({ global_pool_conditions: true }, "pool");
    try {
      const names = controlNetOutputNames(rgb.cfg);
      const plane = 16 * 16;
      const img = Float32Array.from({ length: 3 * plane }, (_, i) => ((i * 37) % 101) / 101);
      const reversed = new Float32Array(3 * plane);
      for (let c = 0; c < 3; c++) reversed.set(img.subarray(c * plane, (c + 1) * plane), (2 - c) * plane);
      const feeds = (cond: Float32Array) => ({
        sample: { data: Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i)), dims: [1, 4, 8, 8] },
        timestep: { data: Float32Array.of(10), dims: [1] },
        encoder_hidden_states: { data: Float32Array.from({ length: 3 * 6 }, (_, i) => Math.cos(i)), dims: [1, 3, 6] },
        controlnet_cond: { data: cond, dims: [1, 3, 16, 16] },
        conditioning_scales: { data: controlNetScales(names.down.length, 0.5, false), dims: [names.down.length + 1] },
      });
      const a = await rgb.s.run(feeds(reversed));
      const b = await bgr.s.run(feeds(img));
      for (const n of [...names.down, names.mid]) expect(maxAbsDiff(a[n].data as Float32Array, b[n].data as Float32Array), n).toBe(0);
      const p = await pool.s.run(feeds(reversed));
      for (const n of [...names.down, names.mid]) {
        const [B, C, h, w] = a[n].dims;
        expect(p[n].dims).toEqual([B, C, 1, 1]);
        const full = a[n].data as Float32Array;
        const means = Array.from({ length: C }, (_, c) => full.subarray(c * h * w, (c + 1) * h * w).reduce((x, y) => x + y, 0) / (h * w));
        expect(maxAbsDiff(p[n].data as Float32Array, means)).toBeLessThan(1e-5);
      }
    } finally {
      for (const x of [rgb, bgr, pool]) await x.s.release();
    }
  });
});
