// StableDiffusionControlNetImg2ImgPipeline parity: every sd-tiny-controlnet pipeline case (scales 1.0 / 0.6, a guidance
// window, guess mode, CFG off, sketch-to-image at strength 1.0; PNDM, DDIM and Euler a) from the seed through the one
// img2img loop with the ControlNet conditioning: the residuals the UNet receives at its first call, every step's
// latents, the final latents and the image. Then what has no diffusers reference: several ControlNets summed, the
// SDXL pipeline on the same code (random tiny SDXL ControlNet, conditioning the base of a refiner hand-over only), and the
// refusals.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { randomControlNet } from "../../test/random-controlnet.js";
import { loadImage, type RGBImage, tensorToFloatHWC } from "../image.js";
import { controlResidualNames } from "../models/unet.js";
import type { PipelineExtension } from "../pipeline/extension.js";
import type { Img2ImgOptions, Img2ImgPipeline } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { runWithRefiner } from "../pipeline/refiner.js";
import { readJson } from "../weights/diffusers.js";
import { releaseControlNets } from "./load.js";
import type { ControlNetUnit } from "./unit.js";

const SET = "sd-tiny-controlnet";
const ref = (t: { tensor: string }) => referenceTensor(t, SET);

/** Records every step's latents and the UNet feeds of the first call (a probe after the built-in conditionings). */
function probe() {
  const steps: Float32Array[] = [];
  let first: Record<string, Float32Array> = {};
  const x: PipelineExtension = {
    name: "probe",
    async beforeUnet(_run, step) {
      if (step.index === 0) first = Object.fromEntries(Object.entries(step.unetFeeds).map(([k, v]) => [k, v.data as Float32Array]));
    },
    async afterStep(run) {
      steps.push(run.latents.slice());
    },
  };
  return { x, steps, first: () => first };
}

describeWithFixtures(
  "ControlNet img2img vs diffusers (sd-tiny-controlnet)",
  () => {
    const cache = mkdtempSync(join(tmpdir(), "reimagine-cn-pipe-"));
    const R = loadReferenceJson(SET);
    const tol = R.tolerances;
    const cnDir = fixture(SET, "model", "controlnet");
    let pipe: Img2ImgPipeline;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: cache, threads: 1 });
    });
    afterAll(async () => {
      if (pipe) await releaseControlNets(pipe.model);
      await pipe?.model.release();
      rmSync(cache, { recursive: true, force: true });
    });

    const image = (name: string) => loadImage(fixture(SET, "reference", name));
    /** The case's run: its control image given, except in sketch-to-image, where it defaults to the input picture. */
    async function caseOptions(c: any): Promise<Img2ImgOptions> {
      const inp = c.inputs;
      const sketch = inp.image === inp.control_image;
      const unit: ControlNetUnit = {
        model: cnDir,
        image: sketch ? undefined : await image(inp.control_image),
        scale: inp.controlnet_conditioning_scale,
        start: inp.control_guidance_start,
        end: inp.control_guidance_end,
        guessMode: inp.guess_mode,
      };
      return { ...referenceRunSettings(c), image: await image(inp.image), controlnets: [unit] };
    }

    it("has the six pipeline cases: scales 1.0 and 0.6, a window, guess mode, CFG off, sketch-to-image; three samplers", () => {
      const cases = R.pipeline.cases as any[];
      expect(cases).toHaveLength(6);
      expect(new Set(cases.map((c) => c.scheduler.class))).toEqual(new Set(["PNDMScheduler", "DDIMScheduler", "EulerAncestralDiscreteScheduler"]));
      expect(cases.some((c) => c.inputs.strength === 1 && c.inputs.image === c.inputs.control_image)).toBe(true);
    });

    for (const c of R.pipeline.cases as any[]) {
      it(`${c.id} from the seed: first-call residuals, every step, final latents, image`, async () => {
        const p = probe();
        const seen: number[] = [];
        const opts = await caseOptions(c);
        const result = await pipe.run({ ...opts, extensions: [p.x], onProgress: (e) => seen.push(e.timestep) });
        expect(seen).toEqual(c.unet_call_timesteps.map(Number));

        // the residuals as the UNet received them (incl. guess mode's zero rows and CFG duplication)
        const names = controlResidualNames(pipe.model.components.unet.config);
        const call = c.unet_first_call;
        const atolR = tol["pipeline.controlnet_residuals"].atol;
        call.down_block_additional_residuals.forEach((r: { tensor: string }, i: number) => {
          expect(maxAbsDiff(p.first()[names.down[i]], ref(r).data), names.down[i]).toBeLessThan(atolR);
        });
        expect(maxAbsDiff(p.first()[names.mid], ref(call.mid_block_additional_residual).data)).toBeLessThan(atolR);
        expect(maxAbsDiff(p.first().sample, ref(call.latent_model_input).data)).toBeLessThan(tol.unet.atol);

        expect(p.steps).toHaveLength(c.step_latents.length);
        c.step_latents.forEach((s: { tensor: string }, i: number) => {
          expect(maxAbsDiff(p.steps[i], ref(s).data), `step ${i}`).toBeLessThan(tol["pipeline.step_latents"].atol);
        });
        expect(maxAbsDiff(result.latents!, ref(c.final_latents).data)).toBeLessThan(tol["pipeline.final_latents"].atol);
        const img = ref(c.image); // [1, H, W, 3] in [0, 1]
        const [, H, W] = img.shape;
        expect(maxAbsDiff(tensorToFloatHWC(result.decoded!, W, H, 0), img.data)).toBeLessThan(tol["pipeline.image"].atol);
      });
    }

    it("the ControlNet matters: scale 0 moves the final latents by the reference's effect_of_controlnet", async () => {
      const c = R.pipeline.cases[0];
      const opts = await caseOptions(c);
      const off = await pipe.run({ ...opts, controlnets: [{ ...opts.controlnets![0], scale: 0 }] });
      const want = ref(c.final_latents).data;
      const rms = (a: Float32Array, b?: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - (b ? b[i] : 0)) ** 2, 0) / a.length);
      expect(rms(want, off.latents!) / rms(off.latents!)).toBeCloseTo(c.effect_of_controlnet.final_latents_rms_relative_change_vs_scale0, 3);
      // and scale 0 is the plain img2img run: zero residuals change nothing
      const plain = await pipe.run({ ...opts, controlnets: undefined });
      expect(maxAbsDiff(off.latents!, plain.latents!)).toBeLessThan(1e-6);
    });

    it("several ControlNets: residuals summed in order (0.4 + 0.6 on one picture = 1.0), each with its own window", async () => {
      const c = R.pipeline.cases[0];
      const opts = await caseOptions(c);
      const u = opts.controlnets![0];
      const two = await pipe.run({
        ...opts,
        controlnets: [
          { ...u, scale: 0.4 },
          { ...u, scale: 0.6 },
        ],
      });
      expect(maxAbsDiff(two.latents!, ref(c.final_latents).data)).toBeLessThan(tol["pipeline.final_latents"].atol);
      // a second unit active only in the first half adds to the first unit there and nothing after
      const p = probe();
      const halves = await pipe.run({
        ...opts,
        controlnets: [
          { ...u, scale: 0.5 },
          { ...u, scale: 0.5, end: 0.5 },
        ],
        extensions: [p.x],
      });
      expect(maxAbsDiff(p.steps[0], ref(c.step_latents[0]).data)).toBeLessThan(tol["pipeline.step_latents"].atol); // step 0: 0.5 + 0.5
      expect(maxAbsDiff(halves.latents!, ref(c.final_latents).data)).toBeGreaterThan(1e-3); // later: 0.5 only
      const alone = await pipe.run({ ...opts, controlnets: [{ ...u, scale: 0.5 }] });
      expect(maxAbsDiff(halves.latents!, alone.latents!)).toBeGreaterThan(1e-3);
    });

    it("a ControlNet of another family: one line naming both, before any work", async () => {
      const xl = randomControlNet(join(cache, "xl-controlnet"), readJson(fixture("sdxl-tiny", "model", "unet", "config.json"), "UNet config"), 3);
      const opts = await caseOptions(R.pipeline.cases[0]);
      const err = await pipe.run({ ...opts, controlnets: [{ model: xl }] }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^ControlNet 'xl-controlnet' is for .* but the model 'model' is .*; use a ControlNet made for/);
      expect((err as Error).message).not.toContain("\n");
    });

    it("refuses bad units naming the field: unknown preprocessor, start >= end, a .pth file, a missing model", async () => {
      const opts = await caseOptions(R.pipeline.cases[0]);
      const u = opts.controlnets![0];
      const run = (x: Partial<ControlNetUnit>) => pipe.run({ ...opts, controlnets: [{ ...u, ...x }] });
      await expect(run({ preprocessor: "depth_midas" })).rejects.toThrow(
        /^controlnets\[0\]\.preprocessor: unknown preprocessor 'depth_midas': use one of none, invert, scribble, canny$/,
      );
      await expect(run({ start: 0.6, end: 0.4 })).rejects.toThrow(/controlnets\[0\]\.start \(0\.6\) must be below end \(0\.4\)/);
      await expect(run({ scale: -1 })).rejects.toThrow(/controlnets\[0\]\.scale must be a number >= 0/);
      await expect(run({ model: join(cache, "control_sd15_scribble.pth") })).rejects.toThrow(/pickle files .* are refused/);
      await expect(run({ model: join(cache, "nope") })).rejects.toThrow(/ControlNet '.*nope' not found/);
    });

    it("a control image of another size is fitted by the unit's resize mode (here 2x larger, just-resize)", async () => {
      const c = R.pipeline.cases[0];
      const opts = await caseOptions(c);
      const ctl = await image(c.inputs.control_image);
      const big = { width: 128, height: 128, data: new Uint8Array(128 * 128 * 3) };
      for (let y = 0; y < 128; y++)
        for (let x = 0; x < 128; x++) big.data.set(ctl.data.subarray(((y >> 1) * 64 + (x >> 1)) * 3, ((y >> 1) * 64 + (x >> 1)) * 3 + 3), (y * 128 + x) * 3);
      const r = await pipe.run({ ...opts, controlnets: [{ ...opts.controlnets![0], image: big }] });
      // Lanczos down to 64x64 is close to the original control image, not equal: close to the reference run
      const d = maxAbsDiff(r.latents!, ref(c.final_latents).data);
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThan(0.5);
    });
  },
  SET,
);

describeWithFixtures(
  "SDXL ControlNet img2img on the same code (sdxl-tiny, random ControlNet)",
  () => {
    const cache = mkdtempSync(join(tmpdir(), "reimagine-cn-xl-"));
    const R = loadReferenceJson("sdxl-tiny");
    let pipe: Img2ImgPipeline;
    let cn: string;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture("sdxl-tiny", "model"), { cacheDir: cache, threads: 1 });
      cn = randomControlNet(join(cache, "cn-xl"), readJson(fixture("sdxl-tiny", "model", "unet", "config.json"), "UNet config"), 11);
    });
    afterAll(async () => {
      if (pipe) await releaseControlNets(pipe.model);
      await pipe?.model.release();
      rmSync(cache, { recursive: true, force: true });
    });
    const base = async (): Promise<Img2ImgOptions> => ({
      image: await loadImage(fixture("sdxl-tiny", "reference", "input.png")),
      prompt: "a cyberpunk version of this photo",
      strength: 0.6,
      steps: 10,
      guidanceScale: 5,
      seed: 42,
      sampler: "euler",
    });

    it("scale 0 equals plain SDXL img2img (which matches diffusers); scale 1 changes it", async () => {
      const opts = await base();
      const plain = await pipe.run(opts);
      const zero = await pipe.run({ ...opts, controlnets: [{ model: cn, scale: 0 }] });
      expect(maxAbsDiff(zero.latents!, plain.latents!)).toBeLessThan(1e-6);
      const on = await pipe.run({ ...opts, controlnets: [{ model: cn, preprocessor: "canny" }] });
      expect(maxAbsDiff(on.latents!, plain.latents!)).toBeGreaterThan(1e-3);
      expect(on.latents!.every(Number.isFinite)).toBe(true);
      expect(R.pipeline.cases.length).toBeGreaterThan(0);
    });

    it("with a refiner the ControlNet conditions the base only: the refiner's part equals a run without it", async () => {
      const plain = await base();
      const opts: Img2ImgOptions = { ...plain, controlnets: [{ model: cn, preprocessor: "canny", image: plain.image as RGBImage }] };
      const both = await runWithRefiner(pipe, pipe, opts, 0.5); // sdxl-tiny as base and refiner
      const first = await pipe.run({ ...opts, denoisingEnd: 0.5, outputType: "latent" });
      const handOver = { ...plain, image: { latents: first.latents!, dims: first.latentDims! }, denoisingStart: 0.5 };
      const refined = await pipe.run(handOver);
      expect(maxAbsDiff(both.latents!, refined.latents!)).toBeLessThan(1e-6);
      const refinedWithCn = await pipe.run({ ...handOver, controlnets: opts.controlnets }); // what it would be if the refiner took it
      expect(maxAbsDiff(both.latents!, refinedWithCn.latents!)).toBeGreaterThan(1e-3);
    });

    it("guess mode with CFG: the unconditional rows get zero residuals, the conditional ones do not (2 images)", async () => {
      const p = probe();
      await pipe.run({ ...(await base()), numImages: 2, controlnets: [{ model: cn, guessMode: true }], extensions: [p.x] });
      const names = controlResidualNames(pipe.model.components.unet.config);
      for (const n of [...names.down, names.mid]) {
        const r = p.first()[n];
        const half = r.length / 2;
        expect(
          r.subarray(0, half).every((v) => v === 0),
          n,
        ).toBe(true);
        expect(
          r.subarray(half).some((v) => v !== 0),
          n,
        ).toBe(true);
      }
    });
  },
  "sdxl-tiny",
);
