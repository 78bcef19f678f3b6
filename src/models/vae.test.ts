// Parity: AutoencoderKL encoder moments and decoder vs the diffusers reference (sd-tiny fixture),
// plus config resolution, strict weight binding (halves, mismatches) and legacy attention key names.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import type { Graph } from "../graph/builder.js";
import { ModelSession, type TensorData } from "../runtime.js";
import { openComponentWeights } from "../weights/diffusers.js";
import { RandomWeights } from "../weights/random.js";
import type { TensorInfo, WeightSource } from "../weights/source.js";
import { buildAutoencoderKL, buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, vaeScaleFactor, type VaeConfig } from "./vae.js";

/** A view of another source with keys renamed (new -> old), extra keys added and tensors replaced. */
class EditedWeights implements WeightSource {
  readonly description = "edited weights";
  constructor(
    private readonly base: WeightSource,
    private readonly renamed: Record<string, string> = {},
    private readonly extra: Record<string, number[]> = {},
    private readonly replaced: Record<string, Float32Array> = {},
  ) {}
  private hidden = () => new Set(Object.values(this.renamed));
  keys(): string[] {
    const hidden = this.hidden();
    return [...this.base.keys().filter((k) => !hidden.has(k)), ...Object.keys(this.renamed), ...Object.keys(this.extra)];
  }
  info(key: string): TensorInfo | undefined {
    if (this.extra[key]) return { dtype: "F32", shape: this.extra[key] };
    if (this.hidden().has(key)) return undefined;
    return this.base.info(this.renamed[key] ?? key);
  }
  read(key: string, shape: readonly number[]): Float32Array {
    if (this.replaced[key]) return this.replaced[key];
    return this.base.read(this.renamed[key] ?? key, shape);
  }
  fingerprint(): string {
    return `edited:${this.base.fingerprint()}`;
  }
}

const vaeDir = fixture("sd-tiny", "model", "vae");
const tmp = mkdtempSync(join(tmpdir(), "reimagine-vae-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
async function load(g: Graph): Promise<ModelSession> {
  return ModelSession.load(g.save(join(tmp, `g${n++}`)), { threads: 1 });
}
const f32 = (t: TensorData) => t.data as Float32Array;

describe("resolveVaeConfig", () => {
  it("applies AutoencoderKL defaults and reads scaling_factor from the config", () => {
    const c = resolveVaeConfig({
      block_out_channels: [128, 256, 512, 512],
      down_block_types: Array(4).fill("DownEncoderBlock2D"),
      up_block_types: Array(4).fill("UpDecoderBlock2D"),
    });
    expect(c.scaling_factor).toBe(0.18215); // diffusers' default when config.json omits it (SD 1.x)
    expect(c.shift_factor).toBeNull();
    expect(c.use_quant_conv && c.use_post_quant_conv && c.mid_block_add_attention).toBe(true);
    expect(c.norm_num_groups).toBe(32);
    expect(vaeScaleFactor(c)).toBe(8);
    const sdxl = resolveVaeConfig({ ...c, scaling_factor: 0.13025, shift_factor: 0.0609 });
    expect(sdxl.scaling_factor).toBe(0.13025);
    expect(sdxl.shift_factor).toBe(0.0609);
  });

  it("refuses configs it cannot build, saying why", () => {
    expect(() => resolveVaeConfig({ _class_name: "AutoencoderTiny" })).toThrow(/AutoencoderTiny.*buildTinyEncoder/);
    expect(() => resolveVaeConfig({ block_out_channels: [64, 64] })).toThrow(/one entry per block_out_channels/);
    expect(() => resolveVaeConfig({ down_block_types: ["AttnDownEncoderBlock2D"] })).toThrow(/AttnDownEncoderBlock2D.*not supported/);
    expect(() => resolveVaeConfig({ block_out_channels: [48], norm_num_groups: 32 })).toThrow(/48 is not divisible by norm_num_groups 32/);
  });

  it("builds an SD 1.x-sized VAE graph from random weights (structure only)", () => {
    const sd1 = resolveVaeConfig(JSON.parse(readFileSync(new URL("../weights/configs/sd1/vae.json", import.meta.url), "utf8")));
    const { encoder, decoder } = buildAutoencoderKL(new RandomWeights(1), sd1);
    expect(encoder.outputs.map((o) => o.name)).toEqual(["mean", "logvar", "std"]);
    expect(decoder.outputs.map((o) => o.name)).toEqual(["sample"]);
    expect(encoder.params.length).toBeGreaterThan(50);
  });
});

describe.skipIf(!haveFixtures())("AutoencoderKL parity (sd-tiny)", () => {
  let ref: any;
  let config: VaeConfig;
  let weights: WeightSource;
  let encoder: ModelSession;
  let decoder: ModelSession;
  beforeAll(async () => {
    ref = loadReferenceJson();
    config = resolveVaeConfig(JSON.parse(readFileSync(join(vaeDir, "config.json"), "utf8")));
    weights = openComponentWeights(vaeDir);
    // one source holding both halves: each graph ignores the other half's keys
    const { encoder: e, decoder: d } = buildAutoencoderKL(weights, config);
    encoder = await load(e);
    decoder = await load(d);
  });
  afterAll(async () => {
    await encoder?.release();
    await decoder?.release();
  });

  it("exposes scaling_factor and the scale factor from config.json", () => {
    expect(config.scaling_factor).toBe(ref.vae.scaling_factor);
    expect(vaeScaleFactor(config)).toBe(ref.vae.vae_scale_factor);
  });

  it("encoder reproduces mean, logvar (clamped) and std", async () => {
    const atol = ref.tolerances["vae.encoder_moments"].atol;
    const e = ref.vae.encoder;
    const x = referenceTensor(e.input);
    const out = await encoder.run({ sample: { data: x.data, dims: x.shape } });
    for (const name of ["mean", "logvar", "std"]) {
      const want = referenceTensor(e[name]);
      expect(out[name].dims).toEqual(want.shape);
      expect(maxAbsDiff(f32(out[name]), want.data), name).toBeLessThan(atol);
    }
    // DiagonalGaussianDistribution.sample: mean + std * randn (noise dumped from the generator)
    const s = e.sample_with_generator;
    const noise = referenceTensor(s.noise).data;
    const mean = f32(out.mean);
    const std = f32(out.std);
    const sample = mean.map((m, i) => Math.fround(m + Math.fround(std[i] * noise[i])));
    expect(maxAbsDiff(sample, referenceTensor(s.sample).data)).toBeLessThan(atol);
  });

  it("decoder reproduces every reference case (non-square latents)", async () => {
    const atol = ref.tolerances["vae.decoder"].atol;
    expect(ref.vae.decoder.length).toBeGreaterThan(0);
    for (const c of ref.vae.decoder) {
      const z = referenceTensor(c.latent);
      const out = await decoder.run({ latent: { data: z.data, dims: z.shape } });
      const want = referenceTensor(c.output);
      expect(out.sample.dims).toEqual(want.shape);
      expect(maxAbsDiff(f32(out.sample), want.data), c.id).toBeLessThan(atol);
    }
  });

  it("clamps logvar to [-30, 20] (quant_conv bias pushed far out of range)", async () => {
    const bias = weights.read("quant_conv.bias", [8]).slice();
    bias.set([100, 100, -100, -100], 4); // logvar channels 0,1 -> +inf side, 2,3 -> -inf side
    const g = buildVaeEncoder(new EditedWeights(weights, {}, {}, { "quant_conv.bias": bias }), config);
    const s = await load(g);
    const x = referenceTensor(ref.vae.encoder.input);
    const out = await s.run({ sample: { data: x.data, dims: x.shape } });
    await s.release();
    const plane = out.logvar.dims[2] * out.logvar.dims[3];
    const lv = f32(out.logvar);
    const sd = f32(out.std);
    for (let ch = 0; ch < 4; ch++) {
      const want = ch < 2 ? 20 : -30;
      for (let i = ch * plane; i < (ch + 1) * plane; i++) {
        expect(lv[i]).toBe(want);
        expect(sd[i]).toBeCloseTo(Math.fround(Math.exp(want / 2)), ch < 2 ? 0 : 12);
      }
    }
    // mean is untouched by the logvar bias
    expect(maxAbsDiff(f32(out.mean), referenceTensor(ref.vae.encoder.mean).data)).toBeLessThan(ref.tolerances["vae.encoder_moments"].atol);
  });

  it("encoder takes non-square and odd-sized images (Downsample2D pads right/bottom)", async () => {
    for (const [H, W] of [
      [40, 24],
      [33, 18],
    ]) {
      const x = new Float32Array(2 * 3 * H * W).map((_, i) => Math.sin(i * 0.37));
      const out = await encoder.run({ sample: { data: x, dims: [2, 3, H, W] } });
      // F.pad(0,1,0,1) then a 3x3 stride-2 conv: floor((H + 1 - 3) / 2) + 1
      const down = (s: number) => Math.floor((s - 2) / 2) + 1;
      expect(out.mean.dims).toEqual([2, config.latent_channels, down(H), down(W)]);
      expect(f32(out.std).every((v) => v > 0 && Number.isFinite(v))).toBe(true);
    }
  });

  it("refuses unused keys of its own half and config/weight mismatches, naming the key", () => {
    const extra = new EditedWeights(weights, {}, { "encoder.extra.weight": [4], "decoder.extra.bias": [4] });
    expect(() => buildVaeEncoder(extra, config)).toThrow(/unused weights.*encoder\.extra\.weight/);
    expect(() => buildVaeDecoder(extra, config)).toThrow(/unused weights.*decoder\.extra\.bias/);
    expect(() => buildVaeEncoder(weights, { ...config, latent_channels: 8 })).toThrow(/'encoder\.conv_out\.weight'.*shape \[8,32,3,3\].*\[16,32,3,3\]/);
    expect(() => buildVaeDecoder(weights, { ...config, block_out_channels: [16, 64] })).toThrow(/'decoder\.conv_in\.weight'/);
    expect(() => buildVaeEncoder(weights, { ...config, use_quant_conv: false })).toThrow(/unused weights.*quant_conv/);
  });

  it("accepts pre-0.14 attention key names (query/key/value/proj_attn)", async () => {
    const renamed: Record<string, string> = {};
    for (const [old, modern] of [
      ["query", "to_q"],
      ["key", "to_k"],
      ["value", "to_v"],
      ["proj_attn", "to_out.0"],
    ]) {
      for (const p of ["weight", "bias"]) renamed[`decoder.mid_block.attentions.0.${old}.${p}`] = `decoder.mid_block.attentions.0.${modern}.${p}`;
    }
    const legacy = await load(buildVaeDecoder(new EditedWeights(weights, renamed), config));
    const c = ref.vae.decoder[0];
    const z = referenceTensor(c.latent);
    const out = await legacy.run({ latent: { data: z.data, dims: z.shape } });
    await legacy.release();
    expect(maxAbsDiff(f32(out.sample), referenceTensor(c.output).data)).toBeLessThan(ref.tolerances["vae.decoder"].atol);
  });
});
