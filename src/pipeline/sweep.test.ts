// strengthSweep: validation before any run, one seed for every strength, SSIM scores and the sheet;
// first against a stub pipeline (no fixtures), then against the sd-tiny model (runs must equal single runs).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { loadImage, type RGBImage } from "../image.js";
import type { Img2ImgOptions, Img2ImgPipeline } from "./img2img.js";
import { loadPipeline } from "./load.js";
import { strengthSweep, sweepLabel, sweepPoints, validateStrengths } from "./sweep.js";

/** A gradient test picture. */
function picture(w = 48, h = 40): RGBImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([(x * 5) & 255, (y * 6) & 255, ((x + y) * 3) & 255], (y * w + x) * 3);
  return { width: w, height: h, data };
}

/** Stub: output = input blended towards grey by `strength`; records every call. */
function stubPipe(calls: Img2ImgOptions[]): Img2ImgPipeline {
  return {
    defaults: { steps: 10, guidanceScale: 7.5, strength: 0.6 },
    async run(opts: Img2ImgOptions) {
      calls.push(opts);
      const img = opts.image as RGBImage;
      const s = opts.strength ?? 0;
      const data = img.data.map((v) => Math.round(v * (1 - s) + 128 * s));
      return { images: [{ width: img.width, height: img.height, data }], seed: opts.seed!, width: img.width, height: img.height, stepsRun: 1, timings: {} };
    },
  } as unknown as Img2ImgPipeline;
}

describe("strengthSweep (stub pipeline)", () => {
  it("runs each strength once with one shared seed and scores structure", async () => {
    const calls: Img2ImgOptions[] = [];
    const input = picture();
    const seen: number[] = [];
    const out = await strengthSweep(stubPipe(calls), { image: input, prompt: "p", steps: 10 }, [0, 0.5, 1], { onImage: (r) => void seen.push(r.strength) });
    expect(calls.map((c) => c.strength)).toEqual([0, 0.5, 1]);
    expect(seen).toEqual([0, 0.5, 1]);
    const seeds = new Set(calls.map((c) => c.seed));
    expect(seeds.size).toBe(1); // a random seed is drawn once, not per run
    expect(out.seed).toBe(calls[0].seed);
    expect(calls.every((c) => c.image === input && c.numImages === 1)).toBe(true);
    // scikit-image's structural_similarity of these very images (test/goldens/ssim_skimage.py)
    expect(out.results[0].ssim).toBe(1); // strength 0 = the input
    expect(out.results[1].ssim).toBeCloseTo(0.8846348295629529, 12);
    expect(out.results[2].ssim).toBeCloseTo(0.5499876909732175, 12); // flat grey keeps no structure
    expect(out.sheet.width).toBeGreaterThan(input.width * 3); // input + 3 cells in one row
    expect(out.sheet.data.length).toBe(out.sheet.width * out.sheet.height * 3);
  });

  it("sweeps the ControlNet scale too: strengths x scales, every unit's scale set per cell, labelled", async () => {
    const calls: Img2ImgOptions[] = [];
    const controlnets = [
      { model: "a", scale: 1 },
      { model: "b", scale: 0.2 },
    ];
    const out = await strengthSweep(stubPipe(calls), { image: picture(), prompt: "p", seed: 3, controlnets }, sweepPoints([0.5, 1], [0.4, 0.7]));
    expect(calls.map((c) => [c.strength, c.controlnets!.map((u) => u.scale)])).toEqual([
      [0.5, [0.4, 0.4]],
      [0.5, [0.7, 0.7]],
      [1, [0.4, 0.4]],
      [1, [0.7, 0.7]],
    ]);
    expect(sweepLabel(out.results[1])).toMatch(/^strength 0\.50 · control 0\.70 · SSIM \d\.\d\d$/);
    expect(sweepLabel({ ...out.results[1], controlScale: undefined })).toMatch(/^strength 0\.50 · SSIM/);
    await expect(strengthSweep(stubPipe([]), { image: picture(), prompt: "p" }, sweepPoints([1], [0.5]))).rejects.toThrow(/needs a ControlNet/);
    await expect(strengthSweep(stubPipe([]), { image: picture(), prompt: "p", controlnets }, sweepPoints([1], [0.5, 0.5]))).rejects.toThrow(/same cell twice/);
  });

  it("keeps a given seed", async () => {
    const calls: Img2ImgOptions[] = [];
    const out = await strengthSweep(stubPipe(calls), { image: picture(), prompt: "p", seed: 1234 }, [0.5, 0.7]);
    expect(calls.map((c) => c.seed)).toEqual([1234, 1234]);
    expect(out.seed).toBe(1234);
  });

  it.each([
    [[], /at least one strength/],
    [[0.2, 1.5], /between 0 and 1/],
    [[-0.1], /between 0 and 1/],
    [[0.4, 0.4], /listed twice/],
    [[0.05, 0.5], /no denoising step: raise strength to at least 0\.1 or steps to at least 20/],
  ])("refuses %j before running anything", async (strengths, msg) => {
    const calls: Img2ImgOptions[] = [];
    const err = await strengthSweep(stubPipe(calls), { image: picture(), prompt: "p", steps: 10 }, strengths).catch((e) => e);
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err.message).toMatch(msg);
    expect(calls).toHaveLength(0);
  });

  it("refuses several images per strength", async () => {
    await expect(strengthSweep(stubPipe([]), { image: picture(), prompt: "p", numImages: 2 }, [0.5])).rejects.toThrow(/one image per strength/);
  });

  it("labels cells with strength and SSIM", () => {
    expect(sweepLabel({ strength: 0.4, ssim: 0.8349, image: picture() })).toBe("strength 0.40 · SSIM 0.83");
    expect(() => validateStrengths([0.2], 4)).toThrow(/4 x 0.2/);
  });
});

describe.skipIf(!haveFixtures())("strengthSweep (sd-tiny)", () => {
  const cache = mkdtempSync(join(tmpdir(), "reimagine-sweep-"));
  let pipe: Img2ImgPipeline;
  let input: RGBImage;
  beforeAll(async () => {
    pipe = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
    input = await loadImage(fixture("sd-tiny", "reference", "input.png"));
  });
  afterAll(async () => {
    await pipe?.model.release();
    rmSync(cache, { recursive: true, force: true });
  });

  it("equals single runs with the same seed, strength 0 is the input", async () => {
    const opts = { image: input, prompt: "a cyberpunk version of this photo", steps: 4, guidanceScale: 1, seed: 11 };
    const sw = await strengthSweep(pipe, opts, [0, 0.5, 1]);
    expect(sw.results[0].image.data).toEqual(input.data);
    expect(sw.results[0].ssim).toBeCloseTo(1, 10);
    for (const r of sw.results.slice(1)) {
      const single = await pipe.run({ ...opts, strength: r.strength });
      expect(Buffer.from(r.image.data).equals(Buffer.from(single.images[0].data))).toBe(true);
      expect(r.ssim).toBeLessThan(1);
    }
    expect(Buffer.from(sw.results[1].image.data).equals(Buffer.from(sw.results[2].image.data))).toBe(false);
    expect(sw.sheet.height).toBeGreaterThan(0);
  });
});
