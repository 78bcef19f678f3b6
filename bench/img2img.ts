// Times a whole img2img run on the SD 1.5 architecture with random weights in one warm process: 20
// steps, strength 0.5, guidance 7.5 (10 UNet calls at batch 2 with the Euler sampler), through the
// library's pipeline, on the bench model's files (fake-model.ts). The first image of the process is
// reported apart from the later ones.
import { openDiffusersFolder, StableDiffusionModel } from "../src/pipeline/components.js";
import { Img2ImgPipeline } from "../src/pipeline/img2img.js";
import * as runtime from "../src/runtime.js";
import { benchWeights } from "./fake-model.js";
import { fmtMs, fmtUsage, log } from "./measure.js";
import type { ComponentResult, Task } from "./types.js";
import { measured, median, peakRssMB, type Usage } from "./usage.js";

export const IMG2IMG = { steps: 20, strength: 0.5, guidanceScale: 7.5, sampler: "euler" } as const;

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
  const parts = openDiffusersFolder(benchWeights(task.cacheDir, task.seed, log).folders.model);
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
  log(`img2img: 4 sessions ready in ${fmtMs(load.wallMs)}`);

  const image = testImage(task.size);
  const runs: { usage: Usage; phases: Record<string, number>; stepsRun: number }[] = [];
  for (let i = 0; i <= task.runs; i++) {
    // a new pipeline each run: its prompt-embedding cache would otherwise skip the text encoder
    const { value: r, usage } = await measured(() => new Img2ImgPipeline(model).run({ image, prompt: "a photo of a cat", negativePrompt: "", seed: 1, ...IMG2IMG }));
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
    stepsRun: first.stepsRun,
    phasesMs: { first: first.phases, steady: mid.phases },
    note: [building ? "load time includes building graphs" : "", memoryNote()].filter(Boolean).join("; ") || undefined,
  };
}
