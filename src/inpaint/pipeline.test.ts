// End-to-end inpainting parity from the seed: every StableDiffusionInpaintPipeline case of the sd-tiny-inpaint
// reference (9-channel and legacy 4-channel UNets, hard and blurred masks, padding_mask_crop with the pasted-back
// picture, CFG on/off, PNDM / DDIM / Euler a) run through Img2ImgPipeline with `mask`, checked at the first UNet
// input, after every step, at the final latents, the decoded image and the returned picture.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { loadImage, tensorToFloatHWC } from "../image.js";
import type { PipelineExtension } from "../pipeline/extension.js";
import type { Img2ImgPipeline } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";

const SET = "sd-tiny-inpaint";

describeWithFixtures(
  "inpainting pipeline vs diffusers (sd-tiny-inpaint), from the seed",
  () => {
    const R = loadReferenceJson(SET);
    const tol = R.tolerances;
    const t = (r: { tensor: string }) => referenceTensor(r, SET).data;
    const cache = mkdtempSync(join(tmpdir(), "reimagine-inpaint-"));
    const pipes: Record<string, Img2ImgPipeline> = {};
    beforeAll(async () => {
      pipes.model = await loadPipeline(fixture(SET, "model"), { cacheDir: cache, threads: 1 });
      pipes.base = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
    });
    afterAll(async () => {
      for (const p of Object.values(pipes)) await p.model.release();
      rmSync(cache, { recursive: true, force: true });
    });

    it("covers 9-channel and legacy cases, both mask kinds, padding_mask_crop, CFG off, three samplers", () => {
      const ids: string[] = R.pipeline.cases.map((c: any) => c.id);
      expect(ids.length).toBe(8);
      expect(ids.filter((i) => i.startsWith("legacy4")).length).toBe(3);
      expect(ids.some((i) => i.includes("padcrop")) && ids.some((i) => i.includes("blurred")) && ids.some((i) => i.includes("euler_a"))).toBe(true);
    });

    for (const c of R.pipeline.cases) {
      it(`${c.id}`, async () => {
        const inp = c.inputs;
        const pipe = pipes[c.model];
        expect(pipe.model.components.unet.config.in_channels).toBe(c.unet_in_channels);
        const crop = inp.padding_mask_crop !== null;
        let firstInput: Float32Array | undefined;
        const steps: Float32Array[] = [];
        const spy: PipelineExtension = {
          name: "spy",
          beforeUnet: async (_run, step) => {
            if (step.index === 0) firstInput = (step.unetFeeds.sample.data as Float32Array).slice();
          },
          afterStep: async (run) => {
            steps.push(run.latents.slice());
          },
        };
        const result = await pipe.run({
          ...referenceRunSettings(c),
          image: await loadImage(fixture(SET, "reference", inp.image)),
          width: inp.width,
          height: inp.height,
          // diffusers exactly: the mask as given (already blurred for the blurred cases), no overlay without a crop
          mask: {
            image: fixture(SET, "reference", inp.mask_image),
            blur: 0,
            overlay: crop,
            ...(crop ? { area: "masked", padding: inp.padding_mask_crop } : {}),
          },
          extensions: [spy],
        });
        // the 9-channel UNet input at the first call (legacy: the scaled 4-channel input)
        if (c.unet_in_channels === 9) {
          expect(maxAbsDiff(firstInput!, t(c.unet_first_call.latent_model_input))).toBeLessThan(tol["pipeline.noised_latents"].atol);
        }
        expect(steps.length).toBe(c.step_latents.length);
        for (let i = 0; i < steps.length; i++) {
          expect(maxAbsDiff(steps[i], t(c.step_latents[i])), `step ${i}`).toBeLessThan(tol["pipeline.step_latents"].atol);
        }
        expect(maxAbsDiff(result.latents!, t(c.final_latents))).toBeLessThan(tol["pipeline.final_latents"].atol);
        const img = referenceTensor(c.image, SET); // [1, H, W, 3] in [0, 1]
        const [, H, W] = img.shape;
        expect(maxAbsDiff(tensorToFloatHWC(result.decoded!, W, H, 0), img.data)).toBeLessThan(tol["pipeline.image"].atol);
        if (crop) {
          // what the pipeline returns: the generated crop pasted back into input.png through the mask
          const final = t(c.overlay.final_image_uint8);
          const out = result.images[0];
          expect([out.width, out.height]).toEqual([64, 64]);
          expect(maxAbsDiff(out.data, final)).toBeLessThanOrEqual(tol["pipeline.image_uint8"].atol);
        }
      });
    }
  },
  SET,
);
