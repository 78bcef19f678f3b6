// Latent-space inpainting pieces: literal-array checks, then the sd-tiny-inpaint fixture: draw order, start latents,
// the 9-channel first UNet input, the first full step (scheduler step + legacy blend) and every legacy re-noising.
import { describe, expect, it } from "vitest";
import { describeWithFixtures, loadReferenceJson, maxAbsDiff, referenceSampler, referenceTensor } from "../../test/fixtures.js";
import { createScheduler, img2imgTimesteps, schedulerForModel } from "../schedulers/index.js";
import type { Scheduler } from "../schedulers/scheduler.js";
import { repeatBatch } from "./mask-processor.js";
import { blendLatents, checkInpaintUnetChannels, drawOrder, initialLatents, inpaintModelInput, legacyInpaintBlend, type LatentShape } from "./latents.js";

describe("latent inpainting pieces", () => {
  it("9-channel input interleaves [latents(C), mask(1), masked latents(C)] per batch item", () => {
    const lat = Float32Array.from([1, 2, 3, 4]); // [2, 2, 1, 1]
    const mask = Float32Array.from([9, 8]); // [2, 1, 1, 1]
    const masked = Float32Array.from([5, 6, 7, 0]);
    expect(Array.from(inpaintModelInput(lat, mask, masked, [2, 2, 1, 1]))).toEqual([1, 2, 9, 5, 6, 3, 4, 8, 7, 0]);
    expect(() => inpaintModelInput(lat, Float32Array.from([1]), masked, [2, 2, 1, 1])).toThrow(/mask holds 1 values/);
  });
  it("blend keeps the original where m = 0 and the denoised latents where m = 1, per image", () => {
    const shape: LatentShape = [2, 2, 1, 2];
    const lat = Float32Array.from([1, 1, 1, 1, 2, 2, 2, 2]);
    const orig = Float32Array.from([7, 7, 7, 7, 8, 8, 8, 8]);
    const mask = Float32Array.from([1, 0, 0, 1]); // image 0: left pixel repainted; image 1: right
    expect(Array.from(blendLatents(lat, orig, mask, shape))).toEqual([1, 7, 1, 7, 8, 2, 8, 2]);
  });
  it("draw order: the picture is encoded only for 4-channel UNets or strength < 1; the masked picture always", () => {
    expect(drawOrder(9, 1, 3, false)).toEqual(["prepare_latents_noise", "vae_posterior_sample_masked_image"]);
    expect(drawOrder(9, 0.5, 3, false)[0]).toBe("vae_posterior_sample_image");
    expect(drawOrder(4, 1, 2, true)).toEqual([
      "vae_posterior_sample_image",
      "prepare_latents_noise",
      "vae_posterior_sample_masked_image",
      "scheduler_step_noise",
      "scheduler_step_noise",
    ]);
  });
  it("accepts 4- and 9-channel UNets and names the problem for others", () => {
    expect(checkInpaintUnetChannels(4, 4)).toBe("blend");
    expect(checkInpaintUnetChannels(9, 4)).toBe("concat");
    expect(() => checkInpaintUnetChannels(8, 4)).toThrow(/8 input channels/);
  });
});

/** noise_pred = uncond + g * (text - uncond) in float32 (the pipeline's guidance). */
function guide(pred: Float32Array, g: number): Float32Array {
  const half = pred.length / 2;
  const g32 = Math.fround(g);
  return Float32Array.from({ length: half }, (_, i) => Math.fround(pred[i] + Math.fround(g32 * Math.fround(pred[half + i] - pred[i]))));
}

describeWithFixtures(
  "inpaint latents vs diffusers (sd-tiny-inpaint)",
  () => {
    const ref = loadReferenceJson("sd-tiny-inpaint");
    const tol = ref.tolerances;
    const t = (r: { tensor: string }) => referenceTensor(r, "sd-tiny-inpaint").data;
    const schedulerFor = (c: any): Scheduler => {
      const name = referenceSampler(c);
      return name ? createScheduler(name, c.scheduler.config) : schedulerForModel(c.scheduler.config);
    };
    const draw = (c: any, role: string, step?: number) => {
      const d = c.random_draws.find((x: any) => x.role === role && (step === undefined || x.step === step));
      return d ? t(d.value) : undefined;
    };

    for (const c of ref.pipeline.cases) {
      const inp = c.inputs;
      const cfg: boolean = c.do_classifier_free_guidance;
      const stochastic = c.scheduler.class === "EulerAncestralDiscreteScheduler";

      it(`${c.id}: draw order, timesteps, start latents, first UNet input and first step`, () => {
        const roles = drawOrder(c.unet_in_channels, inp.strength, c.timesteps.length, stochastic);
        expect(roles).toEqual(c.random_draws.map((d: any) => d.role));

        const scheduler = schedulerFor(c);
        const { timesteps, latentTimestep } = img2imgTimesteps(scheduler, inp.num_inference_steps, inp.strength);
        expect(timesteps).toEqual(c.timesteps);
        expect(c.is_strength_max).toBe(inp.strength === 1);

        // prepare_latents
        const noise = draw(c, "prepare_latents_noise")!;
        const imageLatents = c.image_latents ? t(c.image_latents) : undefined;
        const start = initialLatents(scheduler, { strength: inp.strength, noise, imageLatents, latentTimestep });
        expect(maxAbsDiff(start, t(c.initial_latents))).toBeLessThanOrEqual(tol["pipeline.init_latents"].atol);

        // first UNet input from the fixture's own start latents
        const latents = t(c.initial_latents);
        const [, C, h, w] = c.initial_latents.shape as number[];
        const B = cfg ? 2 : 1;
        const modelIn = cfg ? repeatBatch(latents, 2) : latents;
        const scaled = scheduler.scaleModelInput(modelIn, timesteps[0]);
        const want = t(c.unet_first_call.latent_model_input);
        const got: Float32Array =
          c.unet_in_channels === 9
            ? inpaintModelInput(scaled, repeatBatch(t(c.mask_latents), B), repeatBatch(t(c.masked_image_latents), B), [B, C, h, w])
            : scaled;
        expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-6);

        // first step: guidance, scheduler step (with the dumped step noise), then the legacy blend
        const out = t(c.unet_first_call.noise_pred_before_guidance);
        const pred = cfg ? guide(out, inp.guidance_scale) : out;
        const shape: LatentShape = [1, C, h, w];
        let next = scheduler.step(pred, timesteps[0], latents, { noise: draw(c, "scheduler_step_noise", 0), eta: inp.eta }).prevSample;
        if (c.unet_in_channels === 4) {
          next = legacyInpaintBlend(scheduler, { latents: next, imageLatents: imageLatents!, noise, mask: t(c.mask_latents), shape, timesteps, i: 0 });
        }
        expect(maxAbsDiff(next, t(c.step_latents[0]))).toBeLessThanOrEqual(tol["pipeline.step_latents"].atol);
      });

      if (c.legacy_blend) {
        it(`${c.id}: after every step the unmasked latents are the original re-noised to the next timestep with the same noise`, () => {
          const scheduler = schedulerFor(c);
          const { timesteps } = img2imgTimesteps(scheduler, inp.num_inference_steps, inp.strength);
          const noise = draw(c, "prepare_latents_noise")!;
          const imageLatents = t(c.image_latents);
          const mask = t(c.mask_latents);
          const shape = c.initial_latents.shape as [number, number, number, number];
          const calls = c.legacy_blend.add_noise_calls;
          const offset = inp.strength === 1 ? 0 : 1; // with strength < 1 the first add_noise built the start latents
          const zeros = new Float32Array(noise.length);
          let unmasked = 0;
          for (let i = 0; i < timesteps.length; i++) {
            scheduler.step(zeros, timesteps[i], zeros, { noise: zeros }); // advance the step index as the real step would
            const stepLatents = t(c.step_latents[i]);
            const blended = legacyInpaintBlend(scheduler, { latents: stepLatents, imageLatents, noise, mask, shape, timesteps, i });
            expect(maxAbsDiff(blended, stepLatents), `step ${i}`).toBeLessThanOrEqual(tol["schedulers.add_noise"].atol);
            const proper = i === timesteps.length - 1 ? imageLatents : t(calls[i + offset].result);
            if (i < timesteps.length - 1) expect(calls[i + offset].timesteps).toEqual([timesteps[i + 1]]);
            const plane = mask.length;
            let worst = 0;
            for (let k = 0; k < stepLatents.length; k++) {
              if (mask[k % plane] !== 0) continue;
              unmasked++;
              worst = Math.max(worst, Math.abs(blended[k] - proper[k]));
            }
            expect(worst, `step ${i}`).toBeLessThanOrEqual(tol["schedulers.add_noise"].atol);
          }
          expect(unmasked).toBeGreaterThan(0);
        });
      }
    }
  },
  "sd-tiny-inpaint",
);
