// ControlNet as a conditioning of the one img2img loop: StableDiffusionControlNetImg2ImgPipeline and the SDXL one are
// the img2img pipeline plus this step implementation (before each UNet call, run every ControlNet and feed the summed
// residuals) and a UNet built with residual inputs. Ref: diffusers pipelines/controlnet/pipeline_controlnet_img2img.py
// and pipeline_controlnet_sd_xl_img2img.py __call__ (5. prepare_control_image, 7.1 controlnet_keep, 8. the ControlNet
// call before the UNet, guess mode), models/controlnets/multicontrolnet.py (residuals summed in order).
// Notation: N images, B UNet batch (2N with CFG), h/w latent size.
import { ReimagineError } from "../errors.js";
import type { RGBImage } from "../image.js";
import { controlNetScales } from "../models/controlnet.js";
import { controlResidualNames } from "../models/unet.js";
import type { PipelineExtension, RunState, StepState } from "../pipeline/extension.js";
import type { ExtensionFactory } from "../pipeline/img2img.js";
import type { TensorData } from "../runtime.js";
import { controlNetKey, type LoadedControlNet, loadControlNet, releaseControlNets } from "./load.js";
import { controlCond, controlNetKeep, type ResolvedUnit, resolveUnit, unitControlImage } from "./unit.js";

interface ActiveUnit {
  unit: ResolvedUnit;
  net: LoadedControlNet;
  /** guess_mode = guess_mode or global_pool_conditions. */
  guess: boolean;
  /** controlnet_cond for the full UNet batch and for guess mode's conditional rows (set at the first step). */
  cond?: { full: TensorData; positive: TensorData };
}

/**
 * The built-in ControlNet conditioning: undefined when the run has no `controlnets`. Loads (or reuses) each ControlNet
 * in the model process, refusing one of another family before any work.
 */
export const controlNetExtension: ExtensionFactory = async (pipe, opts) => {
  if (!opts.controlnets || opts.controlnets.length === 0) return undefined;
  if (!Array.isArray(opts.controlnets)) throw new ReimagineError("controlnets must be a list of ControlNet units", "invalid_input");
  const units = opts.controlnets.map(resolveUnit);
  const model = pipe.model;
  await releaseControlNets(model, new Set(units.map((u) => controlNetKey(u.model)))); // hold only what this run uses
  const active: ActiveUnit[] = [];
  for (const unit of units) {
    const net = await loadControlNet(model, unit.model);
    active.push({ unit, net, guess: unit.guessMode || net.config.global_pool_conditions });
  }
  const residualInputs = controlResidualNames(model.components.unet.config);
  const resizeMode = opts.resizeMode;

  const prepare = async (run: RunState) => {
    const [N, , h, w] = run.shape;
    const f = model.vaeScaleFactor;
    for (const a of active) {
      // 5. prepare_control_image: resized to the output size, preprocessed, x / 255; repeated per image (and for CFG)
      const img: RGBImage = await unitControlImage(a.unit, { input: run.image, width: w * f, height: h * f, inputResizeMode: resizeMode });
      a.cond = { full: controlCond(img, run.conditioning.batch), positive: controlCond(img, N) };
    }
  };

  const beforeUnet = async (run: RunState, step: StepState) => {
    if (step.index === 0) await prepare(run);
    const [N] = run.shape;
    const B = run.conditioning.batch;
    const cfg = B === 2 * N;
    const cond = run.conditioning.unetInputs;
    let down: Float32Array[] | undefined;
    let mid: Float32Array | undefined;
    let dims: readonly (readonly number[])[] = [];
    for (const a of active) {
      const { unit, net } = a;
      const nDown = net.outputs.down.length;
      // 7.1 controlnet_keep over the timesteps left after strength truncation, times the conditioning scale
      const keep = controlNetKeep(step.index, run.timesteps.length, unit.start, unit.end);
      const scales = controlNetScales(nDown, unit.scale * keep, a.guess, net.config.global_pool_conditions);
      // guess mode with CFG: the ControlNet sees only the conditional rows (the latents at batch N, positive embeddings)
      const positiveOnly = a.guess && cfg;
      const feeds: Record<string, TensorData> = {
        sample: positiveOnly ? { data: run.scheduler.scaleModelInput(run.latents, step.t), dims: run.shape } : step.unetFeeds.sample,
        timestep: positiveOnly ? { data: new Float32Array(N).fill(step.t), dims: [N] } : step.unetFeeds.timestep,
        controlnet_cond: positiveOnly ? a.cond!.positive : a.cond!.full,
        conditioning_scales: { data: scales, dims: [nDown + 1] },
      };
      for (const name of ["encoder_hidden_states", "text_embeds", "time_ids"]) {
        if (cond[name]) feeds[name] = positiveOnly ? secondHalf(cond[name]) : cond[name];
      }
      const out = await net.session.run(feeds);
      const names = [...net.outputs.down, net.outputs.mid];
      // guess mode + CFG: cat([zeros, r]) so the unconditional rows get no residual
      const rs = names.map((n) => (positiveOnly ? zerosThen(out[n].data as Float32Array) : (out[n].data as Float32Array)));
      if (!down) {
        down = rs.slice(0, nDown);
        mid = rs[nDown];
        dims = names.map((n) => [B, ...out[n].dims.slice(1)]);
      } else {
        // MultiControlNetModel: residuals summed in order, in float32
        for (let i = 0; i < nDown; i++) addInto(down[i], rs[i]);
        addInto(mid!, rs[nDown]);
      }
    }
    down!.forEach((r, i) => {
      step.unetFeeds[residualInputs.down[i]] = { data: r, dims: dims[i] };
    });
    step.unetFeeds[residualInputs.mid] = { data: mid!, dims: dims[dims.length - 1] };
  };

  const x: PipelineExtension = { name: "controlnet", unetOptions: { controlResiduals: true }, beforeUnet };
  return x;
};

/** Rows B/2.. of a [B, ...] tensor (prompt_embeds.chunk(2)[1]: the positive rows). */
function secondHalf(t: TensorData): TensorData {
  const half = t.data.length / 2;
  return { data: (t.data as Float32Array).slice(half), dims: [t.dims[0] / 2, ...t.dims.slice(1)] };
}

/** torch.cat([zeros_like(r), r]) along the batch. */
function zerosThen(r: Float32Array): Float32Array {
  const out = new Float32Array(2 * r.length);
  out.set(r, r.length);
  return out;
}

function addInto(acc: Float32Array, r: Float32Array): void {
  if (acc.length !== r.length) throw new Error(`ControlNet residuals of different sizes (${acc.length} vs ${r.length})`);
  for (let i = 0; i < acc.length; i++) acc[i] = Math.fround(acc[i] + r[i]);
}
