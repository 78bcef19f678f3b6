// What users expect of inpainting runs (sd-tiny 4-channel and sd-tiny-inpaint 9-channel models): unmasked pixels come
// back unchanged by default, the raw output without the overlay, invert, masks from the picture's alpha and from an
// inpaint sketch, A1111's fill modes, A1111 mask rules, and the bad inputs: an all-black mask, another size, a
// damaged file, a mask with latent input, an inpainting model without a mask.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { loadImage, type RGBImage } from "../image.js";
import { encodeMaskPng } from "../image-mask.js";
import { sharp } from "../image-read.js";
import type { PipelineExtension } from "../pipeline/extension.js";
import type { Img2ImgOptions, Img2ImgPipeline } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { TorchGenerator } from "../rng.js";
import { a1111PrepareMask } from "./a1111.js";
import { blurMask } from "./mask-source.js";
import type { GrayImage } from "./pil.js";

/** A 64x64 mask with the rectangle [x1, x2) x [y1, y2) white. */
function rectMask(x1: number, y1: number, x2: number, y2: number, w = 64, h = 64): GrayImage {
  const data = new Uint8Array(w * h);
  for (let y = y1; y < y2; y++) for (let x = x1; x < x2; x++) data[y * w + x] = 255;
  return { width: w, height: h, data };
}

/** Pixels where `changed` differs from `a` vs `b`, split by whether `inside` (0..255) is 0 there. */
function diffOutside(a: RGBImage, b: RGBImage, inside: GrayImage): { outside: number; inside: number } {
  let o = 0;
  let i = 0;
  for (let p = 0; p < a.width * a.height; p++) {
    const d = a.data[3 * p] !== b.data[3 * p] || a.data[3 * p + 1] !== b.data[3 * p + 1] || a.data[3 * p + 2] !== b.data[3 * p + 2];
    if (!d) continue;
    if (inside.data[p] === 0) o++;
    else i++;
  }
  return { outside: o, inside: i };
}

describeWithFixtures(
  "inpainting behaviour (sd-tiny, sd-tiny-inpaint)",
  () => {
    const cache = mkdtempSync(join(tmpdir(), "reimagine-inpaint-b-"));
    let base: Img2ImgPipeline;
    let inpaint: Img2ImgPipeline;
    let photo: RGBImage;
    const run = (pipe: Img2ImgPipeline, o: Partial<Img2ImgOptions>) =>
      pipe.run({ image: photo, prompt: "a fox", steps: 4, strength: 0.75, guidanceScale: 1, seed: 5, ...o });
    const mask = rectMask(16, 12, 40, 36);
    beforeAll(async () => {
      base = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
      inpaint = await loadPipeline(fixture("sd-tiny-inpaint", "model"), { cacheDir: cache, threads: 1 });
      photo = await loadImage(fixture("sd-tiny", "reference", "input.png"));
    });
    afterAll(async () => {
      await base?.model.release();
      await inpaint?.model.release();
      rmSync(cache, { recursive: true, force: true });
    });

    it("by default the unmasked pixels come back unchanged (overlay through the blurred mask); --no-overlay is the raw output", async () => {
      for (const pipe of [base, inpaint]) {
        const out = await run(pipe, { mask: { image: mask } });
        const soft = blurMask(mask, 4); // the default blur: pixels it leaves at 0 are outside
        const d = diffOutside(out.images[0], photo, soft);
        expect(d.outside).toBe(0);
        expect(d.inside).toBeGreaterThan(300);
        const raw = await run(pipe, { mask: { image: mask, overlay: false } });
        expect(diffOutside(raw.images[0], photo, soft).outside).toBeGreaterThan(100); // the VAE round trip changes everything
      }
    });

    it("invert repaints the other side; a mask file (PNG bytes or path) reads white = repaint", async () => {
      const png = await encodeMaskPng(mask);
      const out = await run(inpaint, { mask: { image: png, invert: true, blur: 0 } });
      const d = diffOutside(out.images[0], photo, { ...mask, data: mask.data.map((v) => 255 - v) });
      expect(d.outside).toBe(0);
      expect(d.inside).toBeGreaterThan(1000);
      const file = join(cache, "mask.png");
      await sharp(png).toFile(file);
      const again = await run(inpaint, { mask: { image: file, invert: true, blur: 0 } });
      expect(Buffer.from(again.images[0].data).equals(Buffer.from(out.images[0].data))).toBe(true);
    });

    it("the picture's transparency is the mask (transparent = repaint)", async () => {
      const rgba = new Uint8Array(64 * 64 * 4);
      for (let p = 0; p < 64 * 64; p++) {
        rgba.set(photo.data.subarray(3 * p, 3 * p + 3), 4 * p);
        rgba[4 * p + 3] = mask.data[p] ? 0 : 255;
      }
      const png = await sharp(Buffer.from(rgba), { raw: { width: 64, height: 64, channels: 4 } })
        .png()
        .toBuffer();
      const fromAlpha = await run(inpaint, { image: png, mask: { source: "alpha", blur: 0 } });
      expect(diffOutside(fromAlpha.images[0], photo, mask).outside).toBe(0);
      await expect(run(inpaint, { mask: { source: "alpha" } })).rejects.toThrow(/no alpha channel/);
    });

    it("inpaint sketch: strokes over the photo are the mask and the new content", async () => {
      const sketch = { ...photo, data: photo.data.slice() };
      for (let y = 20; y < 30; y++) for (let x = 20; x < 44; x++) sketch.data.set([250, 10, 20], 3 * (y * 64 + x));
      const out = await run(base, { mask: { sketch, blur: 2 }, strength: 0.5 });
      const strokes = rectMask(20, 20, 44, 30);
      const d = diffOutside(out.images[0], photo, blurMask(blurMask(strokes, 2), 2));
      expect(d.outside).toBe(0);
      expect(d.inside).toBeGreaterThan(200);
    });

    it("A1111 fill modes: latent nothing / latent noise set the start latents inside the mask; fill repaints from blurred surroundings", async () => {
      let start: Float32Array | undefined;
      let noise: Float32Array | undefined;
      const spy: PipelineExtension = {
        name: "spy",
        beforeUnet: async (r, s) => {
          if (s.index === 0) [start, noise] = [s.latentModelInput.slice(), r.addedNoise!.slice()];
        },
      };
      const sched = base.scheduler();
      let firstT = -1;
      const tspy: PipelineExtension = {
        name: "t",
        beforeUnet: async (_r, s) => {
          if (s.index === 0) firstT = s.t;
        },
      };
      const out = await run(base, { mask: { image: mask, blur: 0, fill: "latent nothing" }, extensions: [spy, tspy] });
      expect(firstT).toBeGreaterThan(0);
      // latent pixel (3, 3) is inside the mask (pixels 16..40 -> latents 8..20 at f = 2): add_noise(0, noise)
      const h = 32;
      const i = 10 * h + 12;
      const zeroNoised = sched.addNoise(new Float32Array(noise!.length), noise!, firstT);
      expect(start![i]).toBeCloseTo(zeroNoised[i], 6);
      expect(start![0]).not.toBeCloseTo(zeroNoised[0], 3); // outside: the picture's latents, noised
      await run(base, { mask: { image: mask, blur: 0, fill: "latent noise" }, extensions: [spy] });
      const fresh = new TorchGenerator(5).randn([1, 4, 32, 32]);
      expect(start![i]).toBeCloseTo(sched.addNoise(fresh, noise!, firstT)[i], 5);
      const filled = await run(base, { mask: { image: mask, blur: 0, fill: "fill" } });
      expect(diffOutside(filled.images[0], photo, mask).outside).toBe(0);
      expect(Buffer.from(filled.images[0].data).equals(Buffer.from(out.images[0].data))).toBe(false);
    });

    it("A1111 rules: OpenCV blur x/y and the whole-picture overlay through the doubled mask", async () => {
      const out = await run(base, { mask: { image: mask, rules: "a1111", blurX: 4, blurY: 2 } });
      const a = await a1111PrepareMask({ ...mask, channels: 1 }, 64, 64, { maskBlurX: 4, maskBlurY: 2, fullRes: false });
      expect(diffOutside(out.images[0], photo, a.maskForOverlay).outside).toBe(0);
      const only = await run(base, { mask: { image: mask, rules: "a1111", area: "masked", padding: 8 } });
      const b = await a1111PrepareMask({ ...mask, channels: 1 }, 64, 64, { fullRes: true, fullResPadding: 8 });
      expect(diffOutside(only.images[0], photo, b.maskForOverlay).outside).toBe(0);
      await expect(run(base, { mask: { image: mask, blurX: 3 } })).rejects.toThrow(/rules "a1111"/);
    });

    it("an all-black mask repaints nothing: the input comes back with the reason, no model run", async () => {
      let calls = 0;
      const spy: PipelineExtension = { name: "spy", beforeUnet: async () => void calls++ };
      const out = await run(inpaint, { mask: { image: rectMask(0, 0, 0, 0) }, extensions: [spy] });
      expect(calls).toBe(0);
      expect(out.stepsRun).toBe(0);
      expect(Buffer.from(out.images[0].data).equals(Buffer.from(photo.data))).toBe(true);
      expect(out.notes?.join(" ")).toMatch(/all black: there is nothing to repaint/);
      const thin = rectMask(30, 30, 31, 31); // one pixel: blurred below 50 %
      expect((await run(inpaint, { mask: { image: thin, blur: 8 } })).notes?.join(" ")).toMatch(/lower the mask blur/);
    });

    it("a mask of another size: same aspect ratio is resized with a note, another aspect ratio is refused", async () => {
      const half = rectMask(8, 6, 20, 18, 32, 32);
      const out = await run(base, { mask: { image: half } });
      expect(out.notes?.join(" ")).toMatch(/mask is 32x32, the picture 64x64: the mask was resized/);
      const wide = rectMask(8, 6, 20, 18, 64, 32);
      const err = await run(base, { mask: { image: wide } }).catch((e) => e);
      expect(err).toBeInstanceOf(ReimagineError);
      expect(err.code).toBe("mask_size");
      const stretched = await run(base, { mask: { image: wide, rules: "a1111" } }); // A1111 stretches
      expect(stretched.notes?.join(" ")).toMatch(/resized to fit/);
    });

    it("a damaged or non-image mask is a one-line error naming the mask; other bad options name the field", async () => {
      const err = await run(base, { mask: { image: Buffer.from("not an image at all") } }).catch((e) => e);
      expect(err).toBeInstanceOf(ReimagineError);
      expect(err.message).toMatch(/mask/);
      expect(err.message).not.toContain("\n");
      await expect(run(base, { mask: { image: mask, fill: "sparkles" as never } })).rejects.toThrow(/fill must be/);
      await expect(run(base, { mask: { image: mask, area: "edges" as never } })).rejects.toThrow(/inpaint area/);
      await expect(run(base, { mask: { image: mask, blur: -1 } })).rejects.toThrow(/mask blur/);
      await expect(run(base, { mask: {} })).rejects.toThrow(/a mask needs a source/);
      await expect(run(base, { mask: { image: mask }, image: { latents: new Float32Array(4 * 32 * 32), dims: [1, 4, 32, 32] } })).rejects.toThrow(
        /not latents/,
      );
      await expect(run(base, { mask: { image: mask }, refiner: { model: "a-refiner", switchAt: 0.8 } })).rejects.toThrow(/inpainting with a refiner/);
    });

    it("VAE encodes per run: the 4-channel blend encodes the picture only (the masked picture's draw is consumed, not encoded); 9 channels at strength 1 the masked picture only", async () => {
      const encodes = async (pipe: Img2ImgPipeline, o: Partial<Img2ImgOptions>) => {
        const enc = pipe.model.components.vae.encoder;
        const own = enc.run;
        let n = 0;
        enc.run = (feeds) => {
          n++;
          return own.call(enc, feeds);
        };
        try {
          await run(pipe, o);
        } finally {
          delete (enc as Partial<typeof enc>).run; // back to the prototype's
        }
        return n;
      };
      expect(await encodes(base, { mask: { image: mask } })).toBe(1);
      expect(await encodes(inpaint, { mask: { image: mask }, strength: 1 })).toBe(1);
      expect(await encodes(inpaint, { mask: { image: mask }, strength: 0.6 })).toBe(2);
    });

    it("an inpainting model without a mask repaints the whole picture (as A1111), with a note", async () => {
      const out = await run(inpaint, {});
      expect(out.stepsRun).toBeGreaterThan(0);
      expect(diffOutside(out.images[0], photo, rectMask(0, 0, 0, 0)).outside).toBeGreaterThan(3000);
      expect(out.notes?.join(" ")).toMatch(/without a mask: the whole picture is repainted/);
    });

    it("several images per prompt and CFG: each image keeps the unmasked pixels", async () => {
      const out = await run(inpaint, { mask: { image: mask }, numImages: 2, guidanceScale: 5 });
      expect(out.images.length).toBe(2);
      for (const img of out.images) expect(diffOutside(img, photo, blurMask(mask, 4)).outside).toBe(0);
      expect(Buffer.from(out.images[0].data).equals(Buffer.from(out.images[1].data))).toBe(false);
    });
  },
  "sd-tiny-inpaint",
);
