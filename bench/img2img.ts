// Times a whole img2img run on the SD 1.5 architecture with random weights in one warm process: 20
// steps, strength 0.5, guidance 7.5 (10 UNet calls at batch 2 with the Euler sampler), through the
// library's pipeline, on the bench model's files (fake-model.ts). The first image of the process is
// reported apart from the later ones.
import { type ModelParts, openDiffusersFolder, StableDiffusionModel } from "../src/pipeline/components.js";
import { pipelineConfigFrom } from "../src/pipeline/family.js";
import { Img2ImgPipeline } from "../src/pipeline/img2img.js";
import * as runtime from "../src/runtime.js";
import { CLIPTokenizer } from "../src/tokenizer/clip.js";
import { RandomWeights } from "../src/weights/random.js";
import { benchWeights } from "./fake-model.js";
import { fmtMs, fmtUsage, log } from "./measure.js";
import { type Arch, SDXL } from "./sd15.js";
import type { ComponentResult, Task } from "./types.js";
import { measured, median, peakRssMB, type Usage } from "./usage.js";

export const IMG2IMG = { steps: 20, strength: 0.5, guidanceScale: 7.5, sampler: "euler" } as const;
/** SDXL at 1024x1024: 8 steps x 0.5 (4 UNet calls at batch 2) keep the run a few minutes on 2 cores; its
 *  peak RSS, the figure the SDXL row is for, does not depend on the step count. */
export const IMG2IMG_SDXL = { steps: 8, strength: 0.5, guidanceScale: 7, sampler: "euler" } as const;
export const img2imgSettings = (arch: Arch) => (arch === "sdxl" ? IMG2IMG_SDXL : IMG2IMG);

/** A tokenizer with only the special tokens (every word is unknown): token ids do not change timings. */
function standInTokenizer(padToken: string): CLIPTokenizer {
  const vocab = { "!": 0, "<|startoftext|>": 49406, "<|endoftext|>": 49407 };
  return new CLIPTokenizer({
    vocab,
    merges: [],
    addedTokens: [],
    bosToken: "<|startoftext|>",
    eosToken: "<|endoftext|>",
    padToken,
    unkToken: "<|endoftext|>",
    modelMaxLength: 77,
  });
}

/** SDXL base on seeded random weights, in memory (the graphs the component rows cached). */
function sdxlParts(seed: number): ModelParts {
  const w = new RandomWeights(seed);
  return {
    name: `SDXL base architecture, random weights (seed ${seed})`,
    family: "sdxl",
    pipelineConfig: pipelineConfigFrom("sdxl", SDXL.model_index),
    configs: { unet: SDXL.unet, vae: SDXL.vae, text_encoder: SDXL.text_encoder, text_encoder_2: SDXL.text_encoder_2, scheduler: SDXL.scheduler },
    weights: { unet: w, vae: w, text_encoder: w, text_encoder_2: w },
    tokenizer: standInTokenizer("<|endoftext|>"),
    tokenizer_2: standInTokenizer("!"), // SDXL's second tokenizer pads with "!"
  };
}

/** A deterministic RGB test picture, `size` x `size`. */
export function testImage(size: number) {
  return { width: size, height: size, data: new Uint8Array(size * size * 3).map((_, i) => (i * 37) % 256) };
}

/** Sessions the lean memory policy dropped and re-created (absent in trees without it). */
function memoryNote(): string {
  const stats = (runtime as { memoryStats?: () => { drops: number; recreated: number } }).memoryStats?.();
  return stats ? `memory policy: ${stats.drops} sessions dropped, ${stats.recreated} re-created` : "";
}

export async function measureImg2Img(task: Task): Promise<ComponentResult> {
  const arch = task.arch ?? "sd15";
  const parts = arch === "sdxl" ? sdxlParts(task.seed) : openDiffusersFolder(benchWeights(task.cacheDir, task.seed, log).folders.model);
  let building = false;
  const { value: model, usage: load } = await measured(() =>
    StableDiffusionModel.load(parts, {
      threads: task.threads,
      cacheDir: task.cacheDir,
      onStatus: (m) => {
        if (m.startsWith("building")) building = true;
        log(`img2img: ${m}`);
      },
    }),
  );
  log(`img2img: sessions ready in ${fmtMs(load.wallMs)}`);
  // the float32 weights the RSS bound is stated against (each session's graph files)
  const c = model.components;
  const sessions = [c.text_encoder?.session, c.text_encoder_2?.session, c.vae.encoder, c.vae.decoder, await model.unetSession()];
  const weightsMB = sessions.reduce((a, s) => a + (s?.weightBytes ?? 0), 0) / 2 ** 20;
  log(`img2img: float32 weights ${weightsMB.toFixed(0)} MiB`);

  const image = testImage(task.size);
  const runs: { usage: Usage; phases: Record<string, number>; stepsRun: number }[] = [];
  for (let i = 0; i <= task.runs; i++) {
    // a new pipeline each run: its prompt-embedding cache would otherwise skip the text encoder
    const { value: r, usage } = await measured(() =>
      new Img2ImgPipeline(model).run({
        image,
        prompt: "a photo of a cat",
        negativePrompt: arch === "sdxl" ? "blurry" : "",
        seed: 1,
        ...img2imgSettings(arch),
        width: task.size,
        height: task.size,
      }),
    );
    runs.push({ usage, phases: { ...r.timings }, stepsRun: r.stepsRun });
    log(`img2img: ${i === 0 ? "first image" : `image ${i + 1}`} ${fmtUsage(usage)}`);
  }
  await model.release();
  const [first, ...rest] = runs;
  const ms = rest.map((r) => r.usage.wallMs);
  const mid = [...rest].sort((a, b) => a.usage.wallMs - b.usage.wallMs)[rest.length >> 1];
  return {
    what: "img2img",
    size: task.size,
    load,
    first: first.usage,
    steady: rest.map((r) => r.usage),
    medianMs: median(ms),
    minMs: Math.min(...ms),
    flops: null, // filled in by the parent from the component rows
    peakRssMB: peakRssMB(),
    weightsMB,
    stepsRun: first.stepsRun,
    phasesMs: { first: first.phases, steady: mid.phases },
    note: [building ? "load time includes building graphs" : "", memoryNote()].filter(Boolean).join("; ") || undefined,
  };
}
