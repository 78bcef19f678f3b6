// Times a whole img2img run on the SD 1.5 architecture with random weights: 20 steps, strength 0.5,
// guidance 7.5 (10 UNet calls at batch 2 with the Euler sampler), through the library's pipeline.
// The tokenizer is a stand-in (every word maps to <|endoftext|>): token ids do not change timings.
import { CLIPTokenizer } from "../src/tokenizer/clip.js";
import { RandomWeights } from "../src/weights/random.js";
import { fmtMs, log, now, peakRssMB, timeRuns } from "./measure.js";
import { SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG, UNET_CONFIG, VAE_CONFIG } from "./sd15.js";
import type { ComponentResult, Skipped, Task } from "./types.js";

export const IMG2IMG = { steps: 20, strength: 0.5, guidanceScale: 7.5, sampler: "euler" } as const;

/** A tokenizer without a vocabulary (every word is unknown): enough to time the text encoder. */
export function standInTokenizer(): CLIPTokenizer {
  return new CLIPTokenizer({
    vocab: { "<|startoftext|>": 49406, "<|endoftext|>": 49407 },
    merges: [],
    addedTokens: [],
    bosToken: "<|startoftext|>",
    eosToken: "<|endoftext|>",
    padToken: "<|endoftext|>",
    unkToken: "<|endoftext|>",
    modelMaxLength: TEXT_ENCODER_CONFIG.max_position_embeddings,
  });
}

export async function measureImg2Img(task: Task): Promise<ComponentResult | Skipped> {
  let lib;
  try {
    const [components, pipeline] = await Promise.all([import("../src/pipeline/components.js"), import("../src/pipeline/img2img.js")]);
    lib = { ...components, ...pipeline };
  } catch (e) {
    return { what: "img2img", skipped: `src/pipeline/img2img.ts is not usable yet (${(e as Error).message.split("\n")[0]})` };
  }
  const weights = new RandomWeights(task.seed);
  const parts = {
    name: `SD 1.5 architecture, random weights (seed ${task.seed})`,
    configs: { unet: UNET_CONFIG, vae: VAE_CONFIG, text_encoder: TEXT_ENCODER_CONFIG, scheduler: SCHEDULER_CONFIG },
    weights: { unet: weights, vae: weights, text_encoder: weights },
    tokenizer: standInTokenizer(),
  };
  let building = false;
  const t = now();
  const model = await lib.StableDiffusionModel.load(parts, {
    threads: task.threads,
    cacheDir: task.cacheDir,
    onStatus: (m) => {
      if (m.startsWith("building")) building = true;
      log(`img2img: ${m}`);
    },
  });
  const loadMs = now() - t;
  log(`img2img: 4 sessions ready in ${fmtMs(loadMs)}`);

  const S = task.size;
  const image = { width: S, height: S, data: new Uint8Array(S * S * 3).map((_, i) => (i * 37) % 256) };
  let last: Awaited<ReturnType<InstanceType<typeof lib.Img2ImgPipeline>["run"]>> | undefined;
  const all: { totalMs: number; phases: Record<string, number> }[] = [];
  const times = await timeRuns(task.runs, async () => {
    // a new pipeline each run: its prompt-embedding cache would otherwise skip the text encoder
    last = await new lib.Img2ImgPipeline(model).run({ image, prompt: "a photo of a cat", negativePrompt: "", seed: 1, ...IMG2IMG });
    all.push({ totalMs: last.timings.totalMs, phases: { ...last.timings } });
  }, "img2img");
  await model.release();
  const timed = all.slice(1).sort((a, b) => a.totalMs - b.totalMs); // drop the warm-up
  return {
    what: "img2img",
    size: S,
    buildMs: null,
    loadColdMs: loadMs,
    loadWarmMs: null,
    ...times,
    flops: null, // filled in by the parent from the component rows
    peakRssMB: peakRssMB(),
    stepsRun: last?.stepsRun,
    phasesMs: timed[timed.length >> 1]?.phases,
    note: building ? "load time includes building graphs" : undefined,
  };
}
