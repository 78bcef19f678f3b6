// VAE tiling: literal blends, tile geometry checked with a pointwise "VAE" (tiled == whole up to
// float rounding), and the sd-tiny AutoencoderKL tiled vs whole on an image several tiles wide.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, maxAbsDiff } from "../../test/fixtures.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig, type VaeConfig } from "../models/vae.js";
import { ModelSession } from "../runtime.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { blendH, blendV, sliceTile, type Tensor4, tiledDecode, tiledEncode, tilingWanted, vaeTilingFor } from "./vae-tiling.js";

const t4 = (data: number[], dims: Tensor4["dims"]): Tensor4 => ({ data: Float32Array.from(data), dims });

function smooth(dims: Tensor4["dims"]): Tensor4 {
  const [n, c, h, w] = dims;
  const data = new Float32Array(n * c * h * w);
  for (let i = 0; i < data.length; i++) {
    const x = i % w;
    const y = Math.floor(i / w) % h;
    const ch = Math.floor(i / (w * h));
    data[i] = Math.sin(0.3 * x + 0.7 * ch) * Math.cos(0.2 * y);
  }
  return { data, dims };
}

describe("blendV / blendH (diffusers blend_v, blend_h)", () => {
  it("fades the first rows of b in from the last rows of a, in place", () => {
    const a = t4([1, 1, 2, 2, 3, 3], [1, 1, 3, 2]);
    const b = t4([10, 10, 20, 20, 30, 30], [1, 1, 3, 2]);
    blendV(a, b, 2);
    // y=0: a[-2] * 1 + b[0] * 0 = 2; y=1: a[-1] * 0.5 + b[1] * 0.5 = 11.5; y=2 untouched
    expect(Array.from(b.data)).toEqual([2, 2, 11.5, 11.5, 30, 30]);
    expect(Array.from(a.data)).toEqual([1, 1, 2, 2, 3, 3]);
  });

  it("fades the first columns of b in from the last columns of a; the extent is capped by the sizes", () => {
    const a = t4([1, 2, 3, 4], [1, 1, 2, 2]);
    const b = t4([8, 8, 8, 8], [1, 1, 2, 2]);
    blendH(a, b, 5); // extent = min(2, 2, 5) = 2
    expect(Array.from(b.data)).toEqual([1, 5, 3, 6]); // x=0: a[0]; x=1: a[1]/2 + 8/2
  });

  it("slices tiles like Python, clipped at the edge", () => {
    const x = smooth([1, 2, 5, 7]);
    const t = sliceTile(x, 3, 4, 4);
    expect(t.dims).toEqual([1, 2, 2, 3]);
    expect(t.data[3 * 1 + 2]).toBe(x.data[(0 * 5 + 3 + 1) * 7 + 4 + 2]);
  });
});

describe("tile geometry (pointwise stand-in VAE)", () => {
  // A "decoder" that upsamples 2x (nearest) and scales: tiled and whole results differ only by blend rounding.
  const f = 2;
  const up = async (z: Tensor4): Promise<Tensor4> => {
    const [n, c, h, w] = z.dims;
    const out = new Float32Array(n * c * h * f * w * f);
    for (let p = 0; p < n * c; p++)
      for (let y = 0; y < h * f; y++)
        for (let x = 0; x < w * f; x++) out[(p * h * f + y) * w * f + x] = 3 * z.data[(p * h + Math.floor(y / f)) * w + Math.floor(x / f)];
    return { data: out, dims: [n, c, h * f, w * f] };
  };
  const down = async (x: Tensor4): Promise<Tensor4> => {
    const [n, c, h, w] = x.dims;
    const [oh, ow] = [Math.ceil(h / f), Math.ceil(w / f)];
    const out = new Float32Array(n * c * oh * ow);
    for (let p = 0; p < n * c; p++) for (let y = 0; y < oh; y++) for (let xx = 0; xx < ow; xx++) out[(p * oh + y) * ow + xx] = x.data[(p * h + y * f) * w + xx * f] / 3;
    return { data: out, dims: [n, c, oh, ow] };
  };
  const tiling = vaeTilingFor({ sample_size: 16, block_out_channels: [1, 1] }); // 16 px / 8 latent tiles

  it("reassembles a decode of odd size exactly where tiles agree", async () => {
    const z = smooth([2, 3, 23, 37]);
    const tiled = await tiledDecode(z, up, tiling);
    const whole = await up(z);
    expect(tiled.dims).toEqual(whole.dims);
    expect(maxAbsDiff(tiled.data, whole.data)).toBeLessThan(1e-5);
  });

  it("reassembles an encode", async () => {
    const x = smooth([1, 3, 50, 34]);
    const tiled = await tiledEncode(x, down, tiling);
    const whole = await down(x);
    expect(tiled.dims).toEqual(whole.dims);
    expect(maxAbsDiff(tiled.data, whole.data)).toBeLessThan(1e-5);
  });

  it("auto mode tiles above 1024x1024 pixels only", () => {
    expect(tilingWanted("auto", 1024, 1024)).toBe(false);
    expect(tilingWanted("auto", 1024, 1032)).toBe(true);
    expect(tilingWanted("on", 64, 64)).toBe(true);
    expect(tilingWanted("off", 4096, 4096)).toBe(false);
    expect(vaeTilingFor({ sample_size: [768, 768], block_out_channels: [128, 256, 512, 512] })).toEqual({ tileSampleSize: 768, tileLatentSize: 96, overlapFactor: 0.25 });
  });
});

describe.skipIf(!haveFixtures())("sd-tiny AutoencoderKL tiled vs whole", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-tiling-"));
  let enc: ModelSession;
  let dec: ModelSession;
  let config: VaeConfig;
  beforeAll(async () => {
    const vaeDir = fixture("sd-tiny", "model", "vae");
    config = resolveVaeConfig(readJson(join(vaeDir, "config.json"), "VAE config"));
    const w = openComponentWeights(vaeDir);
    enc = await ModelSession.load(buildVaeEncoder(w, config).save(join(dir, "enc")), { threads: 1 });
    dec = await ModelSession.load(buildVaeDecoder(w, config).save(join(dir, "dec")), { threads: 1 });
  });
  afterAll(async () => {
    await enc?.release();
    await dec?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("decodes a latent 3x2 tiles large into the untiled shape with bounded differences", async () => {
    const t = vaeTilingFor(config); // 64 px / 32 latent tiles
    const z = smooth([1, 4, 56, 80]); // 2 x 3 tiles at stride 24
    const run = async (tile: Tensor4): Promise<Tensor4> => {
      const out = (await dec.run({ latent: tile })).sample;
      return { data: out.data as Float32Array, dims: [...out.dims] as Tensor4["dims"] };
    };
    const whole = await run(z);
    const tiled = await tiledDecode(z, run, t);
    expect(tiled.dims).toEqual(whole.dims);
    const diff = maxAbsDiff(tiled.data, whole.data);
    let mean = 0;
    for (let i = 0; i < whole.data.length; i++) mean += Math.abs(tiled.data[i] - whole.data[i]);
    mean /= whole.data.length;
    console.log(`sd-tiny tiled decode vs whole: max ${diff.toExponential(2)}, mean ${mean.toExponential(2)}`);
    expect(diff).toBeGreaterThan(0); // really tiled (GroupNorm statistics are per tile)
    expect(mean).toBeLessThan(0.1);
  });

  it("encodes an image 3x2 tiles large into moments of the untiled shape", async () => {
    const t = vaeTilingFor(config);
    const x = smooth([1, 3, 112, 160]);
    const run = async (tile: Tensor4): Promise<Tensor4> => {
      const out = (await enc.run({ sample: tile })).mean;
      return { data: out.data as Float32Array, dims: [...out.dims] as Tensor4["dims"] };
    };
    const whole = await run(x);
    const tiled = await tiledEncode(x, run, t);
    expect(tiled.dims).toEqual(whole.dims);
    let mean = 0;
    for (let i = 0; i < whole.data.length; i++) mean += Math.abs(tiled.data[i] - whole.data[i]);
    mean /= whole.data.length;
    console.log(`sd-tiny tiled encode (mean) vs whole: max ${maxAbsDiff(tiled.data, whole.data).toExponential(2)}, mean ${mean.toExponential(2)}`);
    expect(mean).toBeLessThan(0.1);
  });
});
