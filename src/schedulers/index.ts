// Scheduler registry: sampler names (ours, AUTOMATIC1111's, diffusers class names) -> schedulers
// built with diffusers `from_config` semantics, plus img2img timestep truncation.
// Ref: diffusers `SchedulerMixin.from_config`, `StableDiffusionImg2ImgPipeline.get_timesteps`.

import { ReimagineError } from "../errors.js";
import { DDIMScheduler } from "./ddim.js";
import { DDPMScheduler } from "./ddpm.js";
import { DPMSolverMultistepScheduler } from "./dpmpp-2m.js";
import { EulerAncestralDiscreteScheduler } from "./euler-ancestral.js";
import { EulerDiscreteScheduler } from "./euler.js";
import { LCMScheduler } from "./lcm.js";
import { LMSDiscreteScheduler } from "./lms.js";
import { PNDMScheduler } from "./pndm.js";
import { roundHalfEven } from "../numeric.js";
import type { Scheduler } from "./scheduler.js";
import { denoisingSteps, noDenoisingStepReason } from "./strength.js";

export type { Scheduler, SchedulerConfig, SchedulerOutput, StepOptions } from "./scheduler.js";
export { publicConfig, resolveConfig } from "./config.js";
export { denoisingSteps, noDenoisingStepReason, type StepsStrengthNames } from "./strength.js";
export {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
};

export type SamplerName = "ddim" | "pndm" | "euler" | "euler-a" | "dpmpp-2m" | "dpmpp-2m-karras" | "lms" | "lcm" | "ddpm";

/** The sampler name that means "the model's own scheduler" (scheduler_config.json as shipped). */
export const DEFAULT_SAMPLER = "default";

export interface SamplerInfo {
  /** Our name (`euler-a`), or DEFAULT_SAMPLER for the model's own scheduler. */
  name: SamplerName | typeof DEFAULT_SAMPLER;
  /** The AUTOMATIC1111 web UI's name for the same sampler. */
  a1111Name: string;
  /** diffusers scheduler class. */
  className: string;
}

type Factory = (source: Record<string, unknown>, overrides: Record<string, unknown>) => Scheduler;

const CLASSES: Record<string, Factory> = {
  DDIMScheduler: (s, o) => new DDIMScheduler(s, o),
  PNDMScheduler: (s, o) => new PNDMScheduler(s, o),
  EulerDiscreteScheduler: (s, o) => new EulerDiscreteScheduler(s, o),
  EulerAncestralDiscreteScheduler: (s, o) => new EulerAncestralDiscreteScheduler(s, o),
  DPMSolverMultistepScheduler: (s, o) => new DPMSolverMultistepScheduler(s, o),
  LMSDiscreteScheduler: (s, o) => new LMSDiscreteScheduler(s, o),
  LCMScheduler: (s, o) => new LCMScheduler(s, o),
  DDPMScheduler: (s, o) => new DDPMScheduler(s, o),
};

const SAMPLERS: (SamplerInfo & { overrides: Record<string, unknown> })[] = [
  { name: "ddim", a1111Name: "DDIM", className: "DDIMScheduler", overrides: {} },
  { name: "pndm", a1111Name: "PLMS", className: "PNDMScheduler", overrides: {} },
  { name: "euler", a1111Name: "Euler", className: "EulerDiscreteScheduler", overrides: {} },
  { name: "euler-a", a1111Name: "Euler a", className: "EulerAncestralDiscreteScheduler", overrides: {} },
  {
    name: "dpmpp-2m",
    a1111Name: "DPM++ 2M",
    className: "DPMSolverMultistepScheduler",
    overrides: { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: false },
  },
  {
    name: "dpmpp-2m-karras",
    a1111Name: "DPM++ 2M Karras",
    className: "DPMSolverMultistepScheduler",
    overrides: { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: true },
  },
  { name: "lms", a1111Name: "LMS", className: "LMSDiscreteScheduler", overrides: {} },
  { name: "lcm", a1111Name: "LCM", className: "LCMScheduler", overrides: {} },
  { name: "ddpm", a1111Name: "DDPM", className: "DDPMScheduler", overrides: {} },
];

/** Samplers for front ends (CLI help, web UI dropdown, A1111 /sdapi/v1/samplers). */
export function listSamplers(): SamplerInfo[] {
  return SAMPLERS.map(({ name, a1111Name, className }) => ({ name, a1111Name, className }));
}

function validNames(): string {
  const names = [...SAMPLERS.map((s) => s.name), ...SAMPLERS.map((s) => `"${s.a1111Name}"`), ...Object.keys(CLASSES)];
  return `${names.join(", ")}, or ${DEFAULT_SAMPLER} (the model's own scheduler)`;
}

/**
 * The entry of `samplers` that `name` names: its `name` or its A1111 name, any case, spaces trimmed.
 * The one sampler-name lookup: the registry, the CLI and the server's request validation all use it.
 * @example findSampler("dpm++ 2m karras", listSamplers())?.name // "dpmpp-2m-karras"
 */
export function findSampler<T extends { name: string; a1111Name: string }>(name: string, samplers: readonly T[]): T | undefined {
  const key = name.trim().toLowerCase();
  return samplers.find((s) => s.name.toLowerCase() === key || s.a1111Name.toLowerCase() === key);
}

/** What a sampler name means: the model's own scheduler, a registry entry, or a diffusers class with the model's config. */
type SamplerSpec = { own: true } | { own: false; className: string; overrides: Record<string, unknown> };

/**
 * Resolves a sampler name (DEFAULT_SAMPLER, ours, A1111's or a diffusers class name, any case);
 * throws ReimagineError "unknown sampler" listing the valid names.
 * @example checkSamplerName("Euler a") // ok; checkSamplerName("heun++") throws
 */
export function checkSamplerName(name: string): SamplerSpec {
  const key = name.trim().toLowerCase();
  if (key === DEFAULT_SAMPLER) return { own: true };
  const sampler = findSampler(key, SAMPLERS);
  if (sampler) return { own: false, className: sampler.className, overrides: sampler.overrides };
  const cls = Object.keys(CLASSES).find((c) => c.toLowerCase() === key);
  if (cls) return { own: false, className: cls, overrides: {} };
  throw new ReimagineError(`unknown sampler '${name}'; use one of: ${validNames()}`, "unknown_sampler");
}

/**
 * Build a sampler from the model's scheduler config, like `Class.from_config(model_config, **overrides)`:
 * class defaults, then every key of the model config the class accepts. DEFAULT_SAMPLER is the model's own.
 * @example createScheduler("dpmpp-2m-karras", JSON.parse(readFileSync("scheduler/scheduler_config.json", "utf8")))
 */
export function createScheduler(name: SamplerName | string, modelSchedulerConfig: Record<string, unknown>): Scheduler {
  const spec = checkSamplerName(name);
  return spec.own ? schedulerForModel(modelSchedulerConfig) : CLASSES[spec.className](modelSchedulerConfig, spec.overrides);
}

/**
 * AUTOMATIC1111's display name of what a scheduler runs, read from its resolved config (so it is right
 * for the model's own scheduler too): `DPM++ 2M SDE Karras`, `Euler a`, `PLMS`, ...
 * @example a1111SamplerName(createScheduler("dpmpp-2m-karras", config)) // "DPM++ 2M Karras"
 */
export function a1111SamplerName(scheduler: Pick<Scheduler, "name" | "config">): string {
  const c = scheduler.config as Record<string, unknown>;
  const karras = c.use_karras_sigmas === true ? " Karras" : "";
  if (scheduler.name === "DPMSolverMultistepScheduler") {
    const algorithm = String(c.algorithm_type);
    const sde = algorithm.startsWith("sde-") ? " SDE" : "";
    return `${algorithm.endsWith("++") ? "DPM++" : "DPM"} ${c.solver_order}M${sde}${karras}`;
  }
  const entry = SAMPLERS.find((s) => s.className === scheduler.name);
  return entry ? `${entry.a1111Name}${karras}` : scheduler.name;
}

/**
 * The sampler entry for a model's own scheduler (name DEFAULT_SAMPLER), as front ends list it.
 * @example modelSampler({ _class_name: "PNDMScheduler", skip_prk_steps: true }) // { name: "default", a1111Name: "PLMS", ... }
 */
export function modelSampler(modelSchedulerConfig: Record<string, unknown>): SamplerInfo {
  const own = schedulerForModel(modelSchedulerConfig);
  return { name: DEFAULT_SAMPLER, a1111Name: a1111SamplerName(own), className: own.name };
}

/**
 * The model's own scheduler, from `_class_name` in its scheduler_config.json.
 * @example schedulerForModel({ _class_name: "PNDMScheduler", skip_prk_steps: true, ... })
 */
export function schedulerForModel(modelSchedulerConfig: Record<string, unknown>): Scheduler {
  const cls = modelSchedulerConfig._class_name;
  if (typeof cls !== "string" || !(cls in CLASSES)) {
    throw new ReimagineError(
      `the model's scheduler class ${JSON.stringify(cls)} is not supported; pick a sampler instead (${SAMPLERS.map((s) => s.name).join(", ")})`,
      "unknown_sampler",
    );
  }
  return CLASSES[cls](modelSchedulerConfig, {});
}

export interface Img2ImgTimesteps {
  /** Timesteps to denoise through (scheduler.timesteps[tStart·order:]). */
  timesteps: number[];
  /** min(int(steps·strength), steps): how many of the schedule's steps are run. */
  initTimestep: number;
  tStart: number;
  /** Index passed to setBeginIndex, or null where the scheduler has none (DDIM, PNDM, DDPM). */
  beginIndex: number | null;
  /** steps - tStart, as the pipeline reports it. */
  numInferenceSteps: number;
  /** The timestep the init latents are noised to (timesteps[0]). */
  latentTimestep: number;
}

/** SDXL's hand-over between a base and a refiner (fractions of the training schedule, 0 < d < 1). */
export interface DenoisingWindow {
  /** Start here instead of at `strength` (the input is already noisy latents): diffusers `denoising_start`. */
  denoisingStart?: number;
  /** Stop here and return noisy latents: diffusers `denoising_end`. */
  denoisingEnd?: number;
}

/** diffusers `denoising_value_valid`: a float strictly between 0 and 1 (anything else is ignored). */
const inWindow = (d: number | undefined): d is number => typeof d === "number" && d > 0 && d < 1;

/**
 * diffusers img2img `get_timesteps`: set the schedule for `numInferenceSteps`, keep its last
 * `int(steps·strength)` steps, and point the scheduler's begin index at the first kept one. With SDXL's
 * `denoisingStart` strength is ignored and the steps below the cutoff run; `denoisingEnd` stops early.
 * @example const { timesteps, latentTimestep } = img2imgTimesteps(scheduler, 20, 0.75) // 15 steps
 */
export function img2imgTimesteps(scheduler: Scheduler, numInferenceSteps: number, strength: number, window: DenoisingWindow = {}): Img2ImgTimesteps {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1) {
    throw new ReimagineError(`steps must be a positive integer, got ${numInferenceSteps}`);
  }
  if (!(strength >= 0 && strength <= 1)) {
    throw new ReimagineError(`strength must be in [0, 1], got ${strength}`);
  }
  const { denoisingStart, denoisingEnd } = window;
  if (inWindow(denoisingStart) && inWindow(denoisingEnd) && denoisingStart >= denoisingEnd) {
    throw new ReimagineError(`denoising start ${denoisingStart} must be below denoising end ${denoisingEnd}`);
  }
  const T = Number(scheduler.config.num_train_timesteps ?? 1000);
  let out: Img2ImgTimesteps;
  if (inWindow(denoisingStart)) {
    scheduler.setTimesteps(numInferenceSteps);
    const all = scheduler.timesteps;
    const cutoff = roundHalfEven(T - denoisingStart * T); // int(round(T - d*T))
    let k = all.filter((t) => t < cutoff).length;
    if (scheduler.order === 2 && k % 2 === 0) k += 1;
    if (k < 1) throw new ReimagineError(`denoising start ${denoisingStart} leaves no step of ${numInferenceSteps}: lower it or use more steps`);
    const tStart = all.length - k;
    const beginIndex = scheduler.supportsBeginIndex ? tStart : null;
    if (beginIndex !== null) scheduler.setBeginIndex(beginIndex); // not multiplied by order, as diffusers
    const timesteps = all.slice(tStart);
    out = { timesteps, initTimestep: k, tStart, beginIndex, numInferenceSteps: k, latentTimestep: timesteps[0] };
  } else {
    const initTimestep = denoisingSteps(numInferenceSteps, strength);
    if (initTimestep < 1) throw noStepError(numInferenceSteps, strength);
    scheduler.setTimesteps(numInferenceSteps);
    const tStart = Math.max(numInferenceSteps - initTimestep, 0);
    const timesteps = scheduler.timesteps.slice(tStart * scheduler.order);
    let beginIndex: number | null = null;
    if (scheduler.supportsBeginIndex) {
      beginIndex = tStart * scheduler.order;
      scheduler.setBeginIndex(beginIndex);
    }
    out = { timesteps, initTimestep, tStart, beginIndex, numInferenceSteps: numInferenceSteps - tStart, latentTimestep: timesteps[0] };
  }
  if (inWindow(denoisingEnd)) {
    const cutoff = roundHalfEven(T - denoisingEnd * T);
    const keep = out.timesteps.filter((t) => t >= cutoff).length;
    if (keep < 1) throw new ReimagineError(`denoising end ${denoisingEnd} leaves no step: raise it, or raise strength`);
    out = { ...out, timesteps: out.timesteps.slice(0, keep), numInferenceSteps: keep };
  }
  return out;
}

/** The one-line error for steps x strength < 1 (no denoising step), naming both fixes (see strength.ts). */
export function noStepError(steps: number, strength: number): ReimagineError {
  return new ReimagineError(
    noDenoisingStepReason(steps, strength) ?? `strength 0 runs no denoising step (img2img returns the input unchanged): use a strength above 0`,
  );
}
