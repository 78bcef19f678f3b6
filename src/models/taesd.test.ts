// Parity: AutoencoderTiny (TAESD) encoder/decoder, uint8 latent (un)scaling and the graph-level parts of
// the img2img-with-TAESD reference (init latents, final decode) vs diffusers (taesd-tiny fixture).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import type { Graph } from "../graph/builder.js";
import { ModelSession, type TensorData } from "../runtime.js";
import { MultiSource } from "../weights/diffusers.js";
import { MemoryWeights } from "../weights/memory.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { WeightSource } from "../weights/source.js";
import {
  buildAutoencoderTiny,
  buildTinyDecoder,
  buildTinyEncoder,
  quantizeTinyLatents,
  resolveTinyVaeConfig,
  scaleTinyLatents,
  unquantizeTinyLatents,
  type TinyVaeConfig,
} from "./taesd.js";
import { vaeScaleFactor } from "./vae.js";

const NAME = "taesd-tiny";
const modelDir = fixture(NAME, "model");
const tmp = mkdtempSync(join(tmpdir(), "reimagine-taesd-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const load = (g: Graph) => ModelSession.load(g.save(join(tmp, `g${n++}`)), { threads: 1 });
const f32 = (t: TensorData) => t.data as Float32Array;
const ref32 = (r: { tensor: string }) => referenceTensor(r, NAME);

describe("resolveTinyVaeConfig", () => {
  it("applies AutoencoderTiny defaults; block_out_channels mirrors the decoder's", () => {
    const c = resolveTinyVaeConfig({ decoder_block_out_channels: [32, 32, 32], num_decoder_blocks: [1, 1, 1], block_out_channels: [1] });
    expect(c.scaling_factor).toBe(1);
    expect(c.latent_magnitude).toBe(3);
    expect(c.latent_shift).toBe(0.5);
    expect(c.num_encoder_blocks).toEqual([1, 3, 3, 3]);
    expect(c.block_out_channels).toEqual([32, 32, 32]);
    expect(vaeScaleFactor(c)).toBe(4);
  });

  it("refuses configs diffusers could not run, saying why", () => {
    expect(() => resolveTinyVaeConfig({ _class_name: "AutoencoderKL" })).toThrow(/AutoencoderKL.*buildVaeEncoder/);
    expect(() => resolveTinyVaeConfig({ encoder_block_out_channels: [16, 32, 32, 32] })).toThrow(/must all be equal/);
    expect(() => resolveTinyVaeConfig({ num_decoder_blocks: [1, 1] })).toThrow(/same non-zero length/);
    expect(() => resolveTinyVaeConfig({ upsample_fn: "bicubic" })).toThrow(/upsample_fn 'bicubic'/);
  });

  it("uint8 latents: clamp, round half to even (torch.round), and back", () => {
    const conv = { latent_magnitude: 3, latent_shift: 0.5 };
    // these float32 latents land exactly on 126.5, 64.5 and 200.5 after scale_latents * 255
    const x = Float32Array.from([-0.02352932095527649, -1.4823527336120605, 1.7176469564437866, -100, 100, 0]);
    expect(Array.from(quantizeTinyLatents(x, conv))).toEqual([126, 64, 200, 0, 255, 128]);
    expect(Array.from(unquantizeTinyLatents(Uint8Array.from([0, 255]), conv))).toEqual([-3, 3]);
  });

  it("AutoencoderTinyBlock: ReLU(conv(x) + x) with act_fn between the convs", async () => {
    // 1 channel, all convs = identity kernel * w + b: conv.0 doubles, conv.2 adds -10, conv.4 negates.
    const k = (w: number) => ({ shape: [1, 1, 3, 3], data: [0, 0, 0, 0, w, 0, 0, 0, 0] });
    const b = (v: number) => ({ shape: [1], data: [v] });
    const w = new MemoryWeights({
      "encoder.layers.0.weight": k(1),
      "encoder.layers.0.bias": b(0),
      "encoder.layers.1.conv.0.weight": k(2),
      "encoder.layers.1.conv.0.bias": b(0),
      "encoder.layers.1.conv.2.weight": k(1),
      "encoder.layers.1.conv.2.bias": b(-10),
      "encoder.layers.1.conv.4.weight": k(-1),
      "encoder.layers.1.conv.4.bias": b(0),
      "encoder.layers.2.weight": k(1),
      "encoder.layers.2.bias": b(0),
    });
    const cfg = resolveTinyVaeConfig({ in_channels: 1, latent_channels: 1, encoder_block_out_channels: [1], num_encoder_blocks: [1] });
    const s = await load(buildTinyEncoder(w, cfg));
    const x = Float32Array.from([-1, 1, 15, 39]); // (x+1)/2 = 0, 1, 8, 20
    const out = f32((await s.run({ sample: { data: x, dims: [1, 1, 2, 2] } })).latent);
    await s.release();
    // h = u; block: relu(-(relu(relu(2u) - 10)) + u)
    const want = [0, 1, 8, 20].map((u) => Math.max(0, -Math.max(0, Math.max(0, 2 * u) - 10) + u));
    expect(Array.from(out)).toEqual(want); // [0, 1, 2, 0]
  });
});

describe.skipIf(!haveFixtures(NAME))("AutoencoderTiny parity (taesd-tiny)", () => {
  let ref: any;
  let config: TinyVaeConfig;
  let weights: WeightSource;
  let encoder: ModelSession;
  let decoder: ModelSession;
  let refTensors: SafetensorsFile;
  const decode = async (z: Float32Array, dims: number[]) => (await decoder.run({ latent: { data: z, dims } })).sample;

  beforeAll(async () => {
    ref = loadReferenceJson(NAME);
    config = resolveTinyVaeConfig(JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")));
    weights = SafetensorsFile.open(join(modelDir, "diffusion_pytorch_model.safetensors"));
    refTensors = SafetensorsFile.open(fixture(NAME, "reference", "tensors.safetensors"));
    const { encoder: e, decoder: d } = buildAutoencoderTiny(weights, config);
    encoder = await load(e);
    decoder = await load(d);
  });
  afterAll(async () => {
    await encoder?.release();
    await decoder?.release();
    refTensors?.close();
  });

  it("exposes the reference's scaling conventions from config.json", () => {
    const s = ref.scaling;
    expect(config.scaling_factor).toBe(s.scaling_factor);
    expect(config.shift_factor).toBe(s.shift_factor);
    expect(config.latent_magnitude).toBe(s.latent_magnitude);
    expect(config.latent_shift).toBe(s.latent_shift);
    expect(config.block_out_channels).toEqual(s.block_out_channels_registered);
    expect(vaeScaleFactor(config)).toBe(s.vae_scale_factor);
  });

  it("encode(x).latents, with x in [-1, 1]", async () => {
    const e = ref.encoder;
    const x = ref32(e.input);
    const out = (await encoder.run({ sample: { data: x.data, dims: x.shape } })).latent;
    const want = ref32(e.latents);
    expect(out.dims).toEqual(want.shape);
    expect(maxAbsDiff(f32(out), want.data)).toBeLessThan(ref.tolerances["taesd.encoder"].atol);
    // our latents quantise to the reference bytes within the stated 1 LSB
    const wantBytes = refTensors.read(e.scaled_latents_uint8.tensor, e.scaled_latents_uint8.shape);
    expect(maxAbsDiff(quantizeTinyLatents(f32(out), config), wantBytes)).toBeLessThanOrEqual(1);
  });

  it("scale_latents, uint8 quantisation, unscale_latents and forward() round trip", async () => {
    const e = ref.encoder;
    const atol = ref.tolerances["taesd.encoder"].atol;
    const latents = ref32(e.latents);
    expect(maxAbsDiff(scaleTinyLatents(latents.data, config), ref32(e.scale_latents).data)).toBeLessThan(atol);
    const wantBytes = refTensors.read(e.scaled_latents_uint8.tensor, e.scaled_latents_uint8.shape); // int64 -> exact floats
    const bytes = quantizeTinyLatents(latents.data, config);
    expect(maxAbsDiff(bytes, wantBytes)).toBe(0); // same float32 input and arithmetic: exact
    const unscaled = unquantizeTinyLatents(Uint8Array.from(wantBytes), config);
    expect(maxAbsDiff(unscaled, ref32(e.unscaled_from_uint8).data)).toBeLessThan(1e-6);
    // forward(x) = decode(unscale(quantize(encode(x)))): decode the reference bytes' latents
    const out = await decode(unscaled, e.unscaled_from_uint8.shape);
    const want = ref32(e.forward_output);
    expect(out.dims).toEqual(want.shape);
    expect(maxAbsDiff(f32(out), want.data)).toBeLessThan(ref.tolerances["taesd.decoder"].atol);
  });

  it("decode(z).sample for every reference case (tanh clamp, non-square)", async () => {
    const atol = ref.tolerances["taesd.decoder"].atol;
    expect(ref.decoder.length).toBe(2);
    for (const c of ref.decoder) {
      const z = ref32(c.latent);
      const out = await decode(z.data, z.shape);
      const want = ref32(c.output);
      expect(out.dims, c.id).toEqual(want.shape);
      expect(maxAbsDiff(f32(out), want.data), c.id).toBeLessThan(atol);
    }
  });

  it("img2img with TAESD: init_latents = latents * scaling_factor; image = clamp(decode(final / scaling_factor) / 2 + 0.5) NHWC", async () => {
    const f = Math.fround;
    for (const c of ref.pipeline.cases) {
      // 1. init latents: no latent_dist, no posterior draw
      expect(c.random_draws[0].role).toBe("prepare_latents_noise");
      const x = ref32(c.preprocessed_image);
      const latent = f32((await encoder.run({ sample: { data: x.data, dims: x.shape } })).latent);
      const init = latent.map((v) => f(v * config.scaling_factor));
      expect(maxAbsDiff(init, ref32(c.init_latents).data), c.id).toBeLessThan(ref.tolerances["pipeline.init_latents"].atol);
      // 2. decode the reference's final latents and post-process as VaeImageProcessor (output_type "np")
      const fin = ref32(c.final_latents);
      const out = await decode(
        fin.data.map((v) => f(v / config.scaling_factor)),
        fin.shape,
      );
      const [B, C, H, W] = out.dims;
      const s = f32(out);
      const img = new Float32Array(B * H * W * C);
      for (let b = 0; b < B; b++)
        for (let ch = 0; ch < C; ch++)
          for (let i = 0; i < H * W; i++) {
            const v = f(f(s[(b * C + ch) * H * W + i] / 2) + 0.5);
            img[(b * H * W + i) * C + ch] = Math.min(1, Math.max(0, v));
          }
      const want = ref32(c.image);
      expect([B, H, W, C]).toEqual(want.shape);
      expect(maxAbsDiff(img, want.data), c.id).toBeLessThan(ref.tolerances["pipeline.image"].atol);
    }
  });

  it("encoder takes non-square and odd sizes (stride-2 convs round up)", async () => {
    for (const [H, W] of [
      [48, 80],
      [37, 20],
    ]) {
      const x = new Float32Array(3 * H * W).map((_, i) => Math.cos(i * 0.11));
      const out = (await encoder.run({ sample: { data: x, dims: [1, 3, H, W] } })).latent;
      const down = (s: number) => Math.ceil(Math.ceil(Math.ceil(s / 2) / 2) / 2);
      expect(out.dims).toEqual([1, config.latent_channels, down(H), down(W)]);
    }
  });

  it("refuses config/weight mismatches and unused keys of its own half, naming the key", () => {
    expect(() => buildTinyEncoder(weights, { ...config, latent_channels: 8 })).toThrow(/'encoder\.layers\.11\.weight'.*\[4,16,3,3\].*\[8,16,3,3\]/);
    expect(() => buildTinyEncoder(weights, { ...config, num_encoder_blocks: [1, 2, 2, 1] })).toThrow(/'encoder\.layers\.10\.weight' is missing/);
    expect(() => buildTinyDecoder(weights, { ...config, num_decoder_blocks: [2, 2, 2, 2] })).toThrow(/'decoder\.layers\.15\.conv\.0\.weight' is missing/);
    expect(() => buildTinyDecoder(weights, { ...config, num_decoder_blocks: [2, 2, 1, 1] })).toThrow(/'decoder\.layers\.12\.weight' is missing/);
    const extra = new MultiSource(
      [weights, new MemoryWeights({ "encoder.layers.99.weight": { shape: [1], data: [0] }, "decoder.extra.bias": { shape: [1], data: [0] } })],
      "taesd + extra",
    );
    expect(() => buildTinyEncoder(extra, config)).toThrow(/unused weights.*encoder\.layers\.99\.weight/);
    expect(() => buildTinyDecoder(extra, config)).toThrow(/unused weights.*decoder\.extra\.bias/);
  });
});
