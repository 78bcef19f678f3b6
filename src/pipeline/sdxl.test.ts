// SDXL parity against the sdxl-tiny diffusers references: both text encoders and the pooled embedding,
// encode_prompt (zero negatives, "" negatives, clip skip), add_time_ids, img2img get_timesteps with the
// denoising window, and every StableDiffusionXLImg2ImgPipeline case from the seed; the single-file
// checkpoint gives the same image as the folder.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { main } from "../cli/main.js";
import { loadImage, readImageParameters, tensorToFloatHWC } from "../image.js";
import { createScheduler, img2imgTimesteps } from "../schedulers/index.js";
import { addTimeIds } from "./family-sdxl.js";
import type { Img2ImgPipeline } from "./img2img.js";
import { loadPipeline, openModel } from "./load.js";
import { runWithRefiner } from "./refiner.js";
import { hiddenLayer, runTextEncoder } from "./text-encoding.js";

const SET = "sdxl-tiny";
const ref = (t: { tensor: string }) => referenceTensor(t, SET);

describeWithFixtures(
  "SDXL (sdxl-tiny) vs diffusers",
  () => {
    const cache = mkdtempSync(join(tmpdir(), "reimagine-sdxl-"));
    const R = loadReferenceJson(SET);
    const tol = R.tolerances;
    let pipe: Img2ImgPipeline;
    let fromFile: Img2ImgPipeline;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: cache, threads: 1 });
      fromFile = await loadPipeline(fixture(SET, "single-file", "sdxl-tiny.safetensors"), { cacheDir: cache, threads: 1, configFrom: fixture(SET, "model") });
    });
    afterAll(async () => {
      await pipe?.model.release();
      await fromFile?.model.release();
      rmSync(cache, { recursive: true, force: true });
    });

    it("loads as the SDXL family with the model_index.json settings", () => {
      expect(pipe.model.family).toBe("sdxl");
      expect(pipe.model.pipelineConfig).toEqual({ force_zeros_for_empty_prompt: true, requires_aesthetics_score: false });
      expect(fromFile.model.family).toBe("sdxl");
      expect(pipe.defaults).toEqual({ steps: 30, guidanceScale: 7, strength: 0.6 });
    });

    it("a folder whose model_index.json lists text_encoder_2 but lacks it: one line naming the component", async () => {
      const dir = join(cache, "no-te2");
      mkdirSync(dir);
      for (const f of readdirSync(fixture(SET, "model"))) if (f !== "text_encoder_2") symlinkSync(fixture(SET, "model", f), join(dir, f));
      await expect(openModel(dir)).rejects.toThrow(/has no 'text_encoder_2\/' component: a diffusers SDXL folder needs .*text_encoder_2/);
    });

    it("a model_index.json that lists no components (only _class_name): the folders present decide", async () => {
      const dir = join(cache, "bare-index");
      mkdirSync(dir);
      for (const f of readdirSync(fixture(SET, "model"))) if (f !== "model_index.json") symlinkSync(fixture(SET, "model", f), join(dir, f));
      writeFileSync(join(dir, "model_index.json"), JSON.stringify({ _class_name: "StableDiffusionXLPipeline" }));
      const parts = await openModel(dir);
      expect(parts.family).toBe("sdxl");
      expect(Object.keys(parts.configs).filter((c) => parts.configs[c as keyof typeof parts.configs])).toEqual(
        expect.arrayContaining(["text_encoder", "text_encoder_2"]),
      );
    });

    for (const c of R.text_encoders.cases) {
      it(`text encoders on ${c.id}: last, penultimate, hidden_states[-3] and text_embeds`, async () => {
        for (const name of ["text_encoder", "text_encoder_2"] as const) {
          const out = await runTextEncoder(pipe.model.components[name]!, c.prompt);
          const want = c[name];
          expect(maxAbsDiff(out.last_hidden_state.data as Float32Array, ref(want.last_hidden_state).data)).toBeLessThan(tol.text_encoder.atol);
          expect(maxAbsDiff(hiddenLayer(out.hidden_states, -2), ref(want.penultimate).data)).toBeLessThan(tol["text_encoder.hidden_states"].atol);
          expect(maxAbsDiff(hiddenLayer(out.hidden_states, -3), ref(want.hidden_states_minus3).data)).toBeLessThan(tol["text_encoder.hidden_states"].atol);
          if (want.text_embeds)
            expect(maxAbsDiff(out.text_embeds.data as Float32Array, ref(want.text_embeds).data)).toBeLessThan(tol["text_encoder.text_embeds"].atol);
        }
      });
    }

    for (const c of R.encode_prompt.cases) {
      it(`encode_prompt ${c.id}`, async () => {
        const k = c.kwargs;
        const cond = await pipe.encodePrompt({
          prompt: R.encode_prompt.prompt,
          negativePrompt: k.negative_prompt ?? undefined,
          clipSkip: k.clip_skip ?? 0,
          cfg: k.do_classifier_free_guidance,
          numImages: 1,
          height: 64,
          width: 64,
        });
        const ehs = cond.unetInputs.encoder_hidden_states.data as Float32Array;
        const pooled = cond.unetInputs.text_embeds.data as Float32Array;
        const pe = ref(c.prompt_embeds).data;
        const pp = ref(c.pooled_prompt_embeds).data;
        const atol = tol["pipeline.prompt_embeds"].atol;
        if (k.do_classifier_free_guidance) {
          expect(cond.batch).toBe(2);
          // CFG order: negative rows first
          expect(maxAbsDiff(ehs.subarray(0, pe.length), ref(c.negative_prompt_embeds).data)).toBeLessThan(atol);
          expect(maxAbsDiff(ehs.subarray(pe.length), pe)).toBeLessThan(atol);
          expect(maxAbsDiff(pooled.subarray(0, pp.length), ref(c.negative_pooled_prompt_embeds).data)).toBeLessThan(tol["pipeline.pooled_prompt_embeds"].atol);
          expect(maxAbsDiff(pooled.subarray(pp.length), pp)).toBeLessThan(tol["pipeline.pooled_prompt_embeds"].atol);
          expect(ehs.subarray(0, pe.length).every((v) => v === 0)).toBe(c.negative_is_all_zeros);
        } else {
          expect(cond.batch).toBe(1);
          expect(maxAbsDiff(ehs, pe)).toBeLessThan(atol);
          expect(maxAbsDiff(pooled, pp)).toBeLessThan(tol["pipeline.pooled_prompt_embeds"].atol);
        }
      });
    }

    it("the CLI writes case 0's image (within 1/255), from the folder and from the single file", async () => {
      const c = R.pipeline.cases[0];
      const inp = c.inputs;
      const args = [
        fixture(SET, "reference", inp.image),
        "-p",
        inp.prompt,
        "--steps",
        String(inp.num_inference_steps),
        "--strength",
        String(inp.strength),
        "-g",
        String(inp.guidance_scale),
        "--seed",
        String(inp.generator.seed),
        "-q",
      ];
      const io = { stdout: { write: () => true }, stderr: { write: () => true } } as never;
      const env = process.env.REIMAGINE_CACHE;
      process.env.REIMAGINE_CACHE = cache;
      try {
        expect(await main([...args, "--model", fixture(SET, "model"), "-o", join(cache, "cli-a.png")], io)).toBe(0);
        expect(
          await main(
            [...args, "--model", fixture(SET, "single-file", "sdxl-tiny.safetensors"), "--config-from", fixture(SET, "model"), "-o", join(cache, "cli-b.png")],
            io,
          ),
        ).toBe(0);
      } finally {
        if (env === undefined) delete process.env.REIMAGINE_CACHE;
        else process.env.REIMAGINE_CACHE = env;
      }
      const a = await loadImage(readFileSync(join(cache, "cli-a.png")));
      const b = await loadImage(readFileSync(join(cache, "cli-b.png")));
      expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);
      const want = ref(c.image).data; // [1, H, W, 3] in [0, 1]
      expect(
        maxAbsDiff(
          Array.from(a.data, (v) => v / 255),
          want,
        ),
      ).toBeLessThanOrEqual(1 / 255 + 1e-6);
    });

    it("add_time_ids as diffusers' _get_add_time_ids (base and refiner layouts)", () => {
      const pair = (x: unknown) => x as [number, number];
      for (const c of R.add_time_ids.model.cases) {
        const a = c.args;
        const m = {
          originalSize: pair(a.original_size),
          cropsCoordsTopLeft: pair(a.crops_coords_top_left),
          targetSize: pair(a.target_size),
          negativeOriginalSize: pair(a.negative_original_size),
          negativeCropsCoordsTopLeft: pair(a.negative_crops_coords_top_left),
          negativeTargetSize: pair(a.negative_target_size),
          aestheticScore: a.aesthetic_score,
          negativeAestheticScore: a.negative_aesthetic_score,
        };
        const got = addTimeIds(m, 0, 0, R.add_time_ids.model.requires_aesthetics_score);
        expect(got.ids).toEqual(c.add_time_ids[0]);
        expect(got.negIds).toEqual(c.add_neg_time_ids[0]);
      }
      // refiner layout: original, crops, aesthetic score (negative: its own crops and score)
      expect(addTimeIds({ negativeCropsCoordsTopLeft: [1, 2] }, 96, 64, true)).toEqual({ ids: [96, 64, 0, 0, 6], negIds: [96, 64, 1, 2, 2.5] });
    });

    const samplers: Record<string, string> = { euler: "euler", euler_ancestral: "euler-a", dpmpp_2m_karras: "dpmpp-2m-karras", ddim: "ddim" };
    it("img2img get_timesteps with strength and with denoising_start (exact)", () => {
      let n = 0;
      for (const e of R.schedulers.entries) {
        const name = samplers[e.name];
        if (!name) continue; // HeunDiscreteScheduler is not one of our samplers
        for (const c of e.cases) {
          const s = createScheduler(name, e.config);
          const got = img2imgTimesteps(s, c.num_inference_steps, c.strength, { denoisingStart: c.denoising_start ?? undefined });
          expect(got.timesteps.map(Number)).toEqual(c.timesteps.map(Number));
          expect(got.numInferenceSteps).toBe(c.returned_num_inference_steps);
          expect(got.beginIndex).toBe(c.begin_index);
          n++;
        }
      }
      expect(n).toBeGreaterThanOrEqual(24);
    });

    it("denoising_end keeps the timesteps at or above the cutoff; start >= end is refused", () => {
      const s = createScheduler("euler", R.schedulers.base_config);
      expect(img2imgTimesteps(s, 10, 1, { denoisingEnd: 0.8 }).timesteps.map(Number)).toEqual([901, 801, 701, 601, 501, 401, 301, 201]);
      expect(() => img2imgTimesteps(s, 10, 1, { denoisingStart: 0.8, denoisingEnd: 0.5 })).toThrow(/must be below denoising end/);
    });

    for (const c of R.pipeline.cases) {
      it(`pipeline ${c.id} from the seed`, async () => {
        const inp = c.inputs;
        const pair = (x: unknown) => (x ? (x as [number, number]) : undefined);
        const seen: number[] = [];
        const settings = {
          prompt: inp.prompt,
          negativePrompt: inp.negative_prompt,
          strength: inp.strength,
          steps: inp.num_inference_steps,
          guidanceScale: inp.guidance_scale,
          seed: inp.generator.seed,
          sampler: c.scheduler.source.startsWith("model default")
            ? undefined
            : samplers[c.scheduler.class === "EulerAncestralDiscreteScheduler" ? "euler_ancestral" : "euler"],
          originalSize: pair(inp.original_size),
          cropsCoordsTopLeft: pair(inp.crops_coords_top_left),
          targetSize: pair(inp.target_size),
          negativeOriginalSize: pair(inp.negative_original_size),
          negativeCropsCoordsTopLeft: pair(inp.negative_crops_coords_top_left),
          negativeTargetSize: pair(inp.negative_target_size),
        };
        const image = await loadImage(fixture(SET, "reference", inp.image));
        const result = await pipe.run({ ...settings, image, onProgress: (e) => seen.push(e.timestep) });
        expect(seen).toEqual(c.unet_call_timesteps.map(Number));
        expect(maxAbsDiff(result.latents!, ref(c.final_latents).data)).toBeLessThan(tol["pipeline.final_latents"].atol);
        const img = ref(c.image); // [1, H, W, 3] in [0, 1]
        const [, H, W] = img.shape;
        expect(maxAbsDiff(tensorToFloatHWC(result.decoded!, W, H, 0), img.data)).toBeLessThan(tol["pipeline.image"].atol);
        if (c.id === R.pipeline.cases[0].id) {
          // the single-file checkpoint (SGM key layout) gives the same image as the folder
          const same = await fromFile.run({ ...settings, image });
          expect(maxAbsDiff(same.decoded!, result.decoded!)).toBe(0);
        }
      });
    }
  },
  SET,
);

describeWithFixtures(
  "SDXL base -> refiner hand-over (sdxl-tiny as both)",
  () => {
    const cache = mkdtempSync(join(tmpdir(), "reimagine-refiner-"));
    let pipe: Img2ImgPipeline;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: cache, threads: 1 });
    });
    afterAll(async () => {
      await pipe?.model.release();
      rmSync(cache, { recursive: true, force: true });
    });
    const settings = { prompt: "a cyberpunk version of this photo", strength: 0.9, steps: 10, guidanceScale: 5, seed: 3, numImages: 2 };

    it("Euler split at 0.5 equals one uninterrupted run bit for bit (latents handed over, no new noise)", async () => {
      const image = await loadImage(fixture(SET, "reference", "input.png"));
      const whole = await pipe.run({ ...settings, image });
      const steps: string[] = [];
      const split = await runWithRefiner(pipe, pipe, { ...settings, image, onProgress: (e) => steps.push(`${e.step}/${e.total}`) }, 0.5);
      expect(split.stepsRun).toBe(whole.stepsRun);
      expect(steps.at(-1)).toBe(`${whole.stepsRun}/${whole.stepsRun}`);
      expect(steps.every((s) => s.endsWith(`/${whole.stepsRun}`))).toBe(true); // the whole run's total from the first step
      expect(maxAbsDiff(split.latents!, whole.latents!)).toBe(0);
      expect(maxAbsDiff(split.decoded!, whole.decoded!)).toBe(0);
    });

    it("the refiner run option loads the refiner with the pipeline's own load options and equals runWithRefiner", async () => {
      const image = await loadImage(fixture(SET, "reference", "input.png"));
      const direct = await runWithRefiner(pipe, pipe, { ...settings, image }, 0.5);
      const viaOption = await pipe.run({ ...settings, image, refiner: { model: fixture(SET, "model"), switchAt: 0.5 } });
      expect(maxAbsDiff(viaOption.decoded!, direct.decoded!)).toBe(0);
      await pipe.release(); // releases the refiner it loaded too
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: cache, threads: 1 });
    });

    it("CLI --refiner: same pixels as the library, recorded in the metadata, re-applied by --from", async () => {
      const input = fixture(SET, "reference", "input.png");
      const image = await loadImage(input);
      const lib = await pipe.run({ ...settings, numImages: 1, image, sampler: "euler", refiner: { model: fixture(SET, "model"), switchAt: 0.5 } });
      const args = [
        input,
        "-m",
        fixture(SET, "model"),
        "-p",
        settings.prompt,
        "--strength",
        "0.9",
        "--steps",
        "10",
        "-g",
        "5",
        "--seed",
        "3",
        "--sampler",
        "euler",
        "-q",
      ];
      const io = { stdout: { write: () => true }, stderr: { write: () => true } } as never;
      const env = process.env.REIMAGINE_CACHE;
      process.env.REIMAGINE_CACHE = cache;
      try {
        expect(await main([...args, "--refiner", fixture(SET, "model"), "--refiner-switch", "0.5", "-o", join(cache, "ref.png")], io)).toBe(0);
        const text = (await readImageParameters(join(cache, "ref.png")))!;
        expect(text).toMatch(/Refiner: .*sdxl-tiny\/model, Refiner switch at: 0.5/);
        expect(await main([input, "--from", join(cache, "ref.png"), "-m", fixture(SET, "model"), "-q", "-o", join(cache, "ref2.png")], io)).toBe(0);
      } finally {
        if (env === undefined) delete process.env.REIMAGINE_CACHE;
        else process.env.REIMAGINE_CACHE = env;
      }
      const a = await loadImage(readFileSync(join(cache, "ref.png")));
      const b = await loadImage(readFileSync(join(cache, "ref2.png")));
      expect(Buffer.from(a.data).equals(Buffer.from(lib.images[0].data))).toBe(true);
      expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);
    });

    it("refuses a switch outside (0, 1) and an SD model as refiner", async () => {
      const image = await loadImage(fixture(SET, "reference", "input.png"));
      await expect(runWithRefiner(pipe, pipe, { ...settings, image }, 1)).rejects.toThrow(/refiner switch must be between 0 and 1/);
      const sd = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
      try {
        await expect(runWithRefiner(pipe, sd, { ...settings, image }, 0.5)).rejects.toThrow(/needs two SDXL models/);
      } finally {
        await sd.model.release();
      }
    });
  },
  SET,
);
