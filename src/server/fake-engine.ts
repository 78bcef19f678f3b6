// A fast stand-in Engine for API tests and UI work without a model: it checks inputs like
// Img2ImgPipeline, "denoises" for floor(steps x strength) steps of `stepMs` each (honouring the
// AbortSignal between steps) and returns deterministic pictures of the requested size.
import { denoisingSteps, noDenoisingStepReason, ReimagineError, type RGBImage, throwIfAborted } from "../index.js";
import type { Engine, EngineResult, EngineRunOptions, SamplerInfo } from "./engine.js";

export const FAKE_SAMPLERS: SamplerInfo[] = [
  { name: "euler", a1111Name: "Euler", className: "EulerDiscreteScheduler" },
  { name: "euler-a", a1111Name: "Euler a", className: "EulerAncestralDiscreteScheduler" },
  { name: "dpmpp-2m", a1111Name: "DPM++ 2M", className: "DPMSolverMultistepScheduler" },
  { name: "dpmpp-2m-karras", a1111Name: "DPM++ 2M Karras", className: "DPMSolverMultistepScheduler" },
  { name: "ddim", a1111Name: "DDIM", className: "DDIMScheduler" },
];

export interface FakeEngineOptions {
  /** Time per denoising step (default 0: yields to the event loop only). */
  stepMs?: number;
  vaeScaleFactor?: number;
  /** Throw this (a crash inside the model) on every run whose prompt contains "crash". */
  crashMessage?: string;
  /** Seeded noise instead of gradients: outputs whose PNGs do not compress (memory tests). */
  noise?: boolean;
  /** Reported native size and family (an SDXL-like engine: 1024, "sdxl"). */
  nativeSize?: number;
  family?: string;
}

/** Counts runs (tests read it). */
export interface FakeEngine extends Engine {
  runs: EngineRunOptions[];
}

/**
 * @example const engine = createFakeEngine({ stepMs: 5 }); const app = createApp(engine, { maxPixels: 1e6 });
 */
export function createFakeEngine(opts: FakeEngineOptions = {}): FakeEngine {
  const f = opts.vaeScaleFactor ?? 8;
  const runs: EngineRunOptions[] = [];
  return {
    modelName: "fake-model",
    modelHash: "0f0f0f0f0f",
    defaults: { steps: 20, guidanceScale: 7, strength: 0.75, sampler: "euler" },
    vaeScaleFactor: f,
    nativeSize: opts.nativeSize,
    family: opts.family,
    runs,
    samplers: () => FAKE_SAMPLERS,
    async run(o: EngineRunOptions): Promise<EngineResult> {
      runs.push(o);
      const t0 = performance.now();
      if (!(o.strength >= 0 && o.strength <= 1)) throw new ReimagineError(`strength must be between 0 and 1 (got ${o.strength})`);
      if (!FAKE_SAMPLERS.some((s) => s.name === o.sampler)) throw new ReimagineError(`unknown sampler '${o.sampler}'`);
      if (opts.crashMessage && o.prompt.includes("crash")) throw new Error(opts.crashMessage);
      const width = o.width ?? o.image.width - (o.image.width % f);
      const height = o.height ?? o.image.height - (o.image.height % f);
      if (width % f || height % f || width < f || height < f) {
        throw new ReimagineError(`width and height must be positive multiples of ${f} (got ${width}x${height})`);
      }
      const noStep = noDenoisingStepReason(o.steps, o.strength);
      if (noStep) throw new ReimagineError(noStep);
      const total = denoisingSteps(o.steps, o.strength);
      for (let s = 1; s <= total; s++) {
        throwIfAborted(o.signal);
        await sleep(opts.stepMs ?? 0);
        throwIfAborted(o.signal);
        o.onProgress?.({ step: s, total, elapsedMs: performance.now() - t0, preview: () => pattern(width / f, height / f, Number(o.seed), s) });
      }
      throwIfAborted(o.signal);
      const n = o.numImages ?? 1;
      const images = Array.from({ length: n }, (_, i) => (opts.noise ? noisy : pattern)(width, height, Number(o.seed) + i, total));
      return { images, seed: o.seed, width, height, stepsRun: total, timings: { totalMs: performance.now() - t0 } };
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));

/** Seeded uniform noise (xorshift32): incompressible pixels. */
function noisy(width: number, height: number, seed: number, step: number): RGBImage {
  const data = new Uint8Array(width * height * 3);
  let x = (seed * 2654435761 + step + 1) >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  return { width, height, data };
}

/** A seeded colour gradient (different seeds give different pictures). */
function pattern(width: number, height: number, seed: number, step: number): RGBImage {
  const data = new Uint8Array(width * height * 3);
  const [r0, g0, b0] = [(seed * 37) % 256, (seed * 91 + step) % 256, (seed * 53) % 256];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      data[p] = (r0 + x) % 256;
      data[p + 1] = (g0 + y) % 256;
      data[p + 2] = (b0 + x + y) % 256;
    }
  }
  return { width, height, data };
}
