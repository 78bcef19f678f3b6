// Inpainting on the other model kinds: a single-file 9-channel checkpoint (the sd-tiny-inpaint UNet under LDM key
// names) gives exactly the folder's result, whatever config came with it; SDXL runs the same steps, the 4-channel
// blend on sdxl-tiny and a 9-channel SDXL UNet (StableDiffusionXLInpaintPipeline's concat; random UNet weights).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff } from "../../test/fixtures.js";
import { loadImage, type RGBImage } from "../image.js";
import type { PipelineExtension } from "../pipeline/extension.js";
import { Img2ImgPipeline } from "../pipeline/img2img.js";
import { StableDiffusionModel } from "../pipeline/components.js";
import { loadPipeline, openModel } from "../pipeline/load.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../weights/safetensors.js";
import { RandomWeights } from "../weights/random.js";
import { blurMask } from "./mask-source.js";
import type { GrayImage } from "./pil.js";

const mask: GrayImage = { width: 64, height: 64, data: new Uint8Array(64 * 64) };
for (let y = 10; y < 40; y++) for (let x = 20; x < 50; x++) mask.data[y * 64 + x] = 255;

const unchangedOutside = (a: RGBImage, b: RGBImage, m: GrayImage) => {
  let changed = 0;
  for (let p = 0; p < a.width * a.height; p++) {
    if (m.data[p] === 0 && (a.data[3 * p] !== b.data[3 * p] || a.data[3 * p + 1] !== b.data[3 * p + 1] || a.data[3 * p + 2] !== b.data[3 * p + 2])) changed++;
  }
  return changed === 0;
};

describeWithFixtures(
  "single-file 9-channel checkpoint = the inpainting folder",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "reimagine-inpaint-sf-"));
    const folder = fixture("sd-tiny-inpaint", "model");
    const single = join(dir, "sd-tiny-inpainting.safetensors");
    const pipes: Img2ImgPipeline[] = [];
    beforeAll(() => {
      // sd-tiny's LDM file with its UNet tensors replaced by the inpainting UNet's (same architecture, conv_in [16, 9, 3, 3])
      const map = JSON.parse(readFileSync(fixture("sd-tiny", "single-file", "key_map.json"), "utf8")).keys as {
        ldm_key: string;
        component: string;
        diffusers_key: string;
      }[];
      const base = SafetensorsFile.open(fixture("sd-tiny", "single-file", "sd-tiny.safetensors"));
      const unet = SafetensorsFile.open(join(folder, "unet", "diffusion_pytorch_model.safetensors"));
      const out: Record<string, TensorToWrite> = {};
      for (const k of base.keys()) {
        const m = map.find((e) => e.ldm_key === k);
        const fromUnet = m?.component === "unet";
        const src = fromUnet ? unet : base;
        const key = fromUnet ? m!.diffusers_key : k;
        out[k] = { dtype: "F32", shape: [...src.info(key)!.shape], data: src.read(key) };
      }
      base.close();
      unet.close();
      expect(out["model.diffusion_model.input_blocks.0.0.weight"].shape).toEqual([16, 9, 3, 3]);
      writeSafetensors(single, out);
    });
    afterAll(async () => {
      for (const p of pipes) await p.model.release();
      rmSync(dir, { recursive: true, force: true });
    });

    it("loads with the folder's configs or a 4-channel folder's (in_channels from the weights) and gives the folder's pixels", async () => {
      const R = loadReferenceJson("sd-tiny-inpaint");
      const c = R.pipeline.cases.find((x: any) => x.id.includes("padcrop") && x.model === "model");
      const ref = await loadPipeline(folder, { cacheDir: dir, threads: 1 });
      const a = await loadPipeline(single, { cacheDir: dir, threads: 1, configFrom: folder });
      const b = await loadPipeline(single, { cacheDir: dir, threads: 1, configFrom: fixture("sd-tiny", "model") });
      pipes.push(ref, a, b);
      expect([a, b].map((p) => p.model.components.unet.config.in_channels)).toEqual([9, 9]);
      const opts = {
        image: await loadImage(fixture("sd-tiny-inpaint", "reference", "input.png")),
        prompt: R.pipeline.prompt,
        steps: 4,
        strength: 0.75,
        seed: 3,
        mask: { image: fixture("sd-tiny-inpaint", "reference", c.inputs.mask_image), area: "masked" as const, padding: 4 },
      };
      const want = await ref.run(opts);
      for (const p of [a, b]) {
        const got = await p.run(opts);
        expect(maxAbsDiff(got.latents!, want.latents!)).toBe(0);
        expect(Buffer.from(got.images[0].data).equals(Buffer.from(want.images[0].data))).toBe(true);
      }
    });
  },
  "sd-tiny-inpaint",
);

describeWithFixtures(
  "SDXL inpainting (sdxl-tiny): the same steps",
  () => {
    const dir = mkdtempSync(join(tmpdir(), "reimagine-inpaint-xl-"));
    let legacy: Img2ImgPipeline;
    let concat: Img2ImgPipeline;
    let photo: RGBImage;
    beforeAll(async () => {
      legacy = await loadPipeline(fixture("sdxl-tiny", "model"), { cacheDir: dir, threads: 1 });
      // StableDiffusionXLInpaintPipeline's model kind: the same SDXL UNet with in_channels 9 (random weights: no tiny reference)
      const parts = await openModel(fixture("sdxl-tiny", "model"));
      parts.configs.unet = { ...parts.configs.unet, in_channels: 9 };
      parts.weights.unet = new RandomWeights(9);
      concat = new Img2ImgPipeline(await StableDiffusionModel.load(parts, { cacheDir: dir, threads: 1 }));
      photo = await loadImage(fixture("sdxl-tiny", "reference", "input.png"));
    });
    afterAll(async () => {
      await legacy?.model.release();
      await concat?.model.release();
      rmSync(dir, { recursive: true, force: true });
    });

    it("4-channel SDXL: the latent blend; unmasked pixels unchanged", async () => {
      expect(legacy.model.family).toBe("sdxl");
      const out = await legacy.run({ image: photo, prompt: "a fox", steps: 3, strength: 0.8, seed: 1, mask: { image: mask } });
      expect([out.width, out.height]).toEqual([photo.width, photo.height]);
      expect(unchangedOutside(out.images[0], photo, blurMask(mask, 4))).toBe(true);
    });

    it("9-channel SDXL: cat([latents, mask, masked-image latents]) with SDXL's added conditioning; unmasked pixels unchanged", async () => {
      expect(concat.model.family).toBe("sdxl");
      let first: { dims: readonly number[]; data: Float32Array; keys: string[] } | undefined;
      const spy: PipelineExtension = {
        name: "spy",
        beforeUnet: async (_r, s) => {
          if (s.index === 0) first = { dims: s.unetFeeds.sample.dims, data: (s.unetFeeds.sample.data as Float32Array).slice(), keys: Object.keys(s.unetFeeds) };
        },
      };
      const out = await concat.run({
        image: photo,
        prompt: "a fox",
        steps: 3,
        strength: 1,
        guidanceScale: 5,
        seed: 1,
        mask: { image: mask, blur: 0 },
        extensions: [spy],
      });
      const [B, C, h, w] = first!.dims;
      expect([B, C]).toEqual([2, 9]);
      expect(first!.keys).toEqual(expect.arrayContaining(["text_embeds", "time_ids"]));
      // channel 4 is the mask at latent size (nearest), the same in both CFG halves
      const f = photo.width / w;
      for (const b of [0, 1]) {
        const plane = first!.data.subarray((b * 9 + 4) * h * w, (b * 9 + 5) * h * w);
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) expect(plane[y * w + x]).toBe(mask.data[y * f * 64 + x * f] ? 1 : 0);
      }
      expect(unchangedOutside(out.images[0], photo, mask)).toBe(true);
    });
  },
  "sdxl-tiny",
);
