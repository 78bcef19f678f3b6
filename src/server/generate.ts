// The work a queued job does, shared by the native and the A1111 API: decode the upload (here, inside
// the queue, so uploads are decoded one at a time), run the engine (n_iter batches, or one run per
// strength for a sweep), report progress, and encode PNGs carrying the same A1111 `parameters`
// infotext as the CLI writes. Sweep = same seed, several strengths, one grid.
import {
  contactSheet,
  type ControlNetUnit,
  controlNetInfotext,
  denoisingSteps,
  encodeImage,
  formatInfotext,
  type GenerationSettings,
  type MaskOptions,
  maskInfotext,
  promptWithLoraTags,
  refinerNotes,
  type RGBImage,
  type ResizeMode,
  ssimResized,
} from "../index.js";
import { controlMaps, loadUnits, type RequestUnit } from "./controlnet-fields.js";
import type { Engine, EngineResult, SamplerInfo } from "./engine.js";
import type { LoraRequestFields } from "./lora-fields.js";
import type { Upload } from "./http.js";
import type { JobSpec } from "./jobs.js";
import type { JobContext } from "./queue.js";
import type { RequestRefiner } from "./refiners.js";

export interface GenerationRequest {
  /** The input, checked from its header; decoded when the job starts. */
  input: Upload;
  prompt: string;
  /** Absent: the library's default (SDXL's zero negative embeddings, diffusers' negative_prompt=None); A1111 requests send "". */
  negativePrompt?: string;
  strength: number;
  steps: number;
  guidanceScale: number;
  /** Resolved seed (random seeds are drawn before queueing so they can be reported). */
  seed: number | bigint;
  sampler: SamplerInfo;
  /** 0 = last CLIP layer (our convention; A1111's "Clip skip" is this + 1). */
  clipSkip: number;
  /** Images per run (one batch, one generator). */
  batchSize: number;
  /** Runs; run k uses seed + k * batchSize, as A1111 numbers its seeds. */
  nIter: number;
  width?: number;
  height?: number;
  resizeMode: ResizeMode;
  /** ControlNet units (controlnet-fields.ts). */
  controlnets?: RequestUnit[];
  /** Inpainting: what to repaint (inpaint-fields.ts parses it for each API). */
  mask?: MaskOptions;
  /** SDXL base -> refiner hand-over (src/server/refiners.ts). */
  refiner?: RequestRefiner;
  /** LoRAs (native field; tags stay in the prompt), the server's LoRA folders, prompt syntax. */
  lora?: LoraRequestFields;
}

export interface GeneratedImage {
  /** PNG with the A1111 `parameters` text chunk. */
  png: Buffer;
  seed: number | bigint;
  infotext: string;
  width: number;
  height: number;
  /** Sweep cells: the strength and SSIM(input, output). */
  strength?: number;
  ssim?: number;
}

export interface GenerationResult {
  kind: "img2img" | "sweep";
  images: GeneratedImage[];
  seed: number | bigint;
  width: number;
  height: number;
  stepsRun: number;
  totalMs: number;
  /** Notes of the runs (e.g. a mask that repaints nothing: the input came back unchanged). */
  notes?: string[];
  /** Infotext pairs of the runs (e.g. "Lora hashes"; A1111's extra_generation_params). */
  extraGenerationParams?: Record<string, string>;
  /** PNGs of the preprocessed control images the units asked to see (A1111's "detected maps"). */
  controlMaps?: Buffer[];
}

const addSeed = (seed: number | bigint, k: number): number | bigint => (typeof seed === "bigint" ? seed + BigInt(k) : seed + k);

/** Infotext settings of one output, from the request and what the engine reported. */
function settingsFor(
  engine: Engine,
  req: GenerationRequest,
  r: EngineResult,
  seed: number | bigint,
  strength: number,
  extra: Record<string, string>,
): GenerationSettings {
  return {
    prompt: promptWithLoraTags(req.prompt, req.lora?.loras),
    negativePrompt: req.negativePrompt || undefined,
    steps: req.steps,
    sampler: req.sampler.a1111Name,
    cfgScale: req.guidanceScale,
    seed,
    width: r.width,
    height: r.height,
    model: engine.modelName,
    modelHash: engine.modelHash || undefined,
    denoisingStrength: strength,
    clipSkip: req.clipSkip,
    extra: {
      ...refinerNotes(req.refiner && { model: req.refiner.name, switchAt: req.refiner.switchAt }),
      ...maskInfotext(req.mask),
      ...r.extraGenerationParams,
      ...extra,
    },
  };
}

/** Bytes a finished job holds (its PNGs), for the queue's retained-results budget. */
export const resultBytes = (r: unknown): number => ((r as GenerationResult | undefined)?.images ?? []).reduce((n, im) => n + im.png.length, 0);

/** Output size a request will produce: width/height, else the input's size rounded down to the VAE factor. */
export function outputSize(req: Pick<GenerationRequest, "input" | "width" | "height">, factor: number): { width: number; height: number } {
  const w = req.width ?? req.input.width;
  const h = req.height ?? req.input.height;
  return { width: w - (w % factor), height: h - (h % factor) };
}

/** Runs the engine once with progress mapped into [offset, offset + its total) of `grandTotal()`. */
async function runOnce(
  engine: Engine,
  image: RGBImage,
  req: GenerationRequest,
  ctx: JobContext,
  o: {
    seed: number | bigint;
    strength: number;
    numImages: number;
    offset: () => number;
    grandTotal: (runTotal: number) => number;
    controlnets?: ControlNetUnit[];
  },
): Promise<EngineResult> {
  return engine.run({
    image,
    prompt: req.prompt,
    negativePrompt: req.negativePrompt,
    strength: o.strength,
    steps: req.steps,
    guidanceScale: req.guidanceScale,
    seed: o.seed,
    sampler: req.sampler.name,
    clipSkip: req.clipSkip,
    numImages: o.numImages,
    width: req.width,
    height: req.height,
    resizeMode: req.resizeMode,
    controlnets: o.controlnets,
    mask: req.mask,
    refiner: req.refiner && { model: req.refiner.model, switchAt: req.refiner.switchAt },
    ...req.lora,
    signal: ctx.signal,
    onProgress: (e) => ctx.progress(o.offset() + e.step, o.grandTotal(e.total), e.preview),
  });
}

/** Job work for img2img: nIter runs of batchSize images. */
export function img2imgWork(engine: Engine, req: GenerationRequest): (ctx: JobContext) => Promise<GenerationResult> {
  return async (ctx) => {
    const t0 = performance.now();
    const image = await req.input.load();
    const controlnets = await loadUnits(req.controlnets);
    const images: GeneratedImage[] = [];
    const notes: string[] = [];
    let last: EngineResult | undefined;
    let stepsRun = 0;
    for (let k = 0; k < req.nIter; k++) {
      const seed = addSeed(req.seed, k * req.batchSize);
      const r = await runOnce(engine, image, req, ctx, {
        seed,
        strength: req.strength,
        numImages: req.batchSize,
        offset: () => stepsRun,
        grandTotal: (t) => t * req.nIter,
        controlnets,
      });
      stepsRun += r.stepsRun;
      last = r;
      notes.push(...(r.notes ?? []));
      for (let i = 0; i < r.images.length; i++) {
        const extra: Record<string, string> = {
          ...(req.batchSize > 1 ? { "Batch size": String(req.batchSize), "Batch pos": String(i) } : {}),
          ...controlNetInfotext(controlnets, r),
        };
        const infotext = formatInfotext(settingsFor(engine, req, r, seed, req.strength, extra));
        const png = await encodeImage(r.images[i], "png", { parameters: infotext });
        images.push({ png, seed, infotext, width: r.width, height: r.height });
      }
    }
    const extraGenerationParams = last!.extraGenerationParams;
    const maps = await controlMaps(req, controlnets, image, last!);
    return {
      kind: "img2img",
      images,
      seed: req.seed,
      width: last!.width,
      height: last!.height,
      stepsRun,
      totalMs: performance.now() - t0,
      extraGenerationParams,
      controlMaps: maps,
      ...(notes.length ? { notes: [...new Set(notes)] } : {}),
    };
  };
}

/**
 * Job work for a strength sweep: one run per strength with the same seed, then a contact sheet
 * (input first, each cell labelled with its strength and SSIM to the input). images[0] is the sheet.
 */
export function sweepWork(engine: Engine, req: GenerationRequest, strengths: number[]): (ctx: JobContext) => Promise<GenerationResult> {
  return async (ctx) => {
    const t0 = performance.now();
    const image = await req.input.load();
    const controlnets = await loadUnits(req.controlnets);
    const cells: GeneratedImage[] = [];
    const outputs: RGBImage[] = [];
    const actual: number[] = [];
    let last: EngineResult | undefined;
    for (let k = 0; k < strengths.length; k++) {
      const strength = strengths[k];
      const done = actual.reduce((a, b) => a + b, 0);
      const rest = strengths.slice(k + 1).reduce((a, s) => a + denoisingSteps(req.steps, s), 0);
      const r = await runOnce(engine, image, req, ctx, {
        seed: req.seed,
        strength,
        numImages: 1,
        offset: () => done,
        grandTotal: (t) => done + t + rest,
        controlnets,
      });
      actual.push(r.stepsRun);
      last = r;
      const ssim = await ssimResized(image, r.images[0]);
      const infotext = formatInfotext(settingsFor(engine, req, r, req.seed, strength, controlNetInfotext(controlnets, r)));
      const png = await encodeImage(r.images[0], "png", { parameters: infotext });
      cells.push({ png, seed: req.seed, infotext, width: r.width, height: r.height, strength, ssim });
      outputs.push(r.images[0]);
    }
    const sheet = await contactSheet([
      { image, label: "input" },
      ...cells.map((c, i) => ({ image: outputs[i], label: `strength ${c.strength!.toFixed(2)} · SSIM ${c.ssim!.toFixed(2)}` })),
    ]);
    const sheetText = formatInfotext(
      settingsFor(engine, req, last!, req.seed, strengths[0], {
        "Strength sweep": strengths.map((s) => s.toFixed(2)).join(" "),
        ...controlNetInfotext(controlnets, last!),
      }),
    );
    const sheetPng = await encodeImage(sheet, "png", { parameters: sheetText });
    const images = [{ png: sheetPng, seed: req.seed, infotext: sheetText, width: sheet.width, height: sheet.height }, ...cells];
    const stepsRun = actual.reduce((a, b) => a + b, 0);
    return { kind: "sweep", images, seed: req.seed, width: last!.width, height: last!.height, stepsRun, totalMs: performance.now() - t0 };
  };
}

/**
 * The work of a job described as data: the same for the embedded queue and for a queue worker.
 * @example const result = await jobWork(engine, { kind: "img2img", model: engine.modelName, request })(ctx);
 */
export function jobWork(engine: Engine, spec: JobSpec): (ctx: JobContext) => Promise<GenerationResult> {
  return spec.kind === "sweep" ? sweepWork(engine, { ...spec.request, batchSize: 1 }, spec.strengths ?? []) : img2imgWork(engine, spec.request);
}
