// Engine conformance: ONE suite run against every implementation of the server's Engine interface
// (the fake, the in-process engine over Img2ImgPipeline, and the worker-thread engine), as hono runs
// one router suite against every router. The API tests run on the fake; this suite is what lets them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { denoisingSteps, isAbortError, loadPipeline, ReimagineError, type RGBImage } from "../index.js";
import { type Engine, type EngineProgress, type EngineRunOptions, engineFromPipeline } from "./engine.js";
import { createFakeEngine } from "./fake-engine.js";
import { createWorkerEngine } from "./worker-engine.js";

interface EngineCase {
  name: string;
  /** Starts the engine (once per suite) and returns it with its teardown. */
  start(): Promise<{ engine: Engine; close(): Promise<void> }>;
  /** Needs the sd-tiny fixture model. */
  needsModel?: boolean;
  /** Runs in another thread: an abort lands when the message reaches it, a few steps later at most. */
  crossThread?: boolean;
}

const input: RGBImage = { width: 40, height: 24, data: Uint8Array.from({ length: 40 * 24 * 3 }, (_, i) => (i * 37) % 251) };
const same = (a: RGBImage, b: RGBImage) => a.width === b.width && a.height === b.height && Buffer.from(a.data).equals(Buffer.from(b.data));

function engineConformance(c: EngineCase): void {
  (c.needsModel ? describeWithFixtures : describe)(`Engine conformance: ${c.name}`, () => {
    let engine: Engine;
    let close: () => Promise<void> = async () => {};
    beforeAll(async () => {
      ({ engine, close } = await c.start());
    });
    afterAll(() => close());
    const opts = (o: Partial<EngineRunOptions> = {}): EngineRunOptions => ({
      image: input,
      prompt: "a lighthouse at dusk",
      strength: 0.5,
      steps: 4,
      guidanceScale: 7.5,
      seed: 3,
      sampler: engine.defaults.sampler,
      width: 4 * engine.vaeScaleFactor,
      height: 2 * engine.vaeScaleFactor,
      ...o,
    });

    it("describes its model, defaults and samplers consistently", () => {
      expect(engine.modelName).toMatch(/\S/);
      expect(typeof engine.modelHash).toBe("string");
      expect(Number.isInteger(engine.vaeScaleFactor) && engine.vaeScaleFactor >= 1).toBe(true);
      const d = engine.defaults;
      expect(Number.isInteger(d.steps) && d.steps >= 1).toBe(true);
      expect(Number.isFinite(d.guidanceScale)).toBe(true);
      expect(d.strength >= 0 && d.strength <= 1).toBe(true);
      const names = engine.samplers().map((s) => s.name);
      expect(new Set(names).size).toBe(names.length);
      expect(names).toContain(d.sampler);
      for (const s of engine.samplers()) expect([s.a1111Name, s.className].every((x) => typeof x === "string" && x.length > 0)).toBe(true);
    });

    it("returns numImages images of the requested size, reporting every denoising step", async () => {
      const progress: EngineProgress[] = [];
      const r = await engine.run(opts({ numImages: 2, onProgress: (e) => progress.push(e) }));
      const [w, h] = [4 * engine.vaeScaleFactor, 2 * engine.vaeScaleFactor];
      expect([r.width, r.height, r.seed]).toEqual([w, h, 3]);
      // get_timesteps keeps denoisingSteps() of the schedule; PLMS (PNDM) runs one timestep twice
      expect(r.stepsRun).toBeGreaterThanOrEqual(denoisingSteps(4, 0.5));
      expect(r.stepsRun).toBeLessThanOrEqual(denoisingSteps(4, 0.5) + 1);
      expect(r.images.map((im) => [im.width, im.height, im.data.length])).toEqual([
        [w, h, w * h * 3],
        [w, h, w * h * 3],
      ]);
      expect(r.timings.totalMs).toBeGreaterThanOrEqual(0);
      expect(progress.map((e) => [e.step, e.total])).toEqual(Array.from({ length: r.stepsRun }, (_, i) => [i + 1, r.stepsRun]));
      expect(progress[1].elapsedMs).toBeGreaterThanOrEqual(progress[0].elapsedMs);
      for (const e of progress) {
        const p = e.preview?.();
        if (p) expect(p.data.length).toBe(p.width * p.height * 3);
      }
    });

    it("is a function of the seed", async () => {
      const a = (await engine.run(opts())).images[0];
      const b = (await engine.run(opts())).images[0];
      const c2 = (await engine.run(opts({ seed: 4 }))).images[0];
      expect(same(a, b)).toBe(true);
      expect(same(a, c2)).toBe(false);
    });

    it("runs every sampler it lists", async () => {
      for (const s of engine.samplers()) {
        const r = await engine.run(opts({ sampler: s.name, strength: 1, steps: 2, guidanceScale: 1 }));
        expect(r.stepsRun, s.name).toBeGreaterThanOrEqual(2);
      }
    });

    it("refuses bad input with a ReimagineError and keeps working", async () => {
      const noStep = await engine.run(opts({ steps: 2, strength: 0.3 })).catch((e) => e);
      expect(noStep).toBeInstanceOf(ReimagineError);
      expect(noStep.message).toMatch(/leaves no denoising step/);
      const badSampler = await engine.run(opts({ sampler: "heun++" })).catch((e) => e);
      expect(badSampler).toBeInstanceOf(ReimagineError);
      expect(badSampler.message).toMatch(/unknown sampler/);
      expect((await engine.run(opts())).stepsRun).toBeGreaterThanOrEqual(2);
    });

    it("stops early when aborted, rejecting with an AbortError", async () => {
      const ac = new AbortController();
      const steps: number[] = [];
      const err = await engine
        .run(
          opts({
            strength: 1,
            steps: 300,
            signal: ac.signal,
            onProgress: (e) => {
              steps.push(e.step);
              ac.abort();
            },
          }),
        )
        .catch((e) => e);
      expect(isAbortError(err)).toBe(true);
      // in-process engines stop at the next step; the worker stops once the abort message reaches its thread
      expect(steps.length).toBeLessThanOrEqual(c.crossThread ? 299 : 1);
      const pre = new AbortController();
      pre.abort();
      expect(isAbortError(await engine.run(opts({ signal: pre.signal })).catch((e) => e))).toBe(true);
    });
  });
}

engineConformance({ name: "fake engine", start: async () => ({ engine: createFakeEngine(), close: async () => undefined }) });

engineConformance({
  name: "in-process engine (Img2ImgPipeline, sd-tiny)",
  needsModel: true,
  start: async () => {
    const pipe = await loadPipeline(fixture("sd-tiny", "model"), { threads: 1 });
    return { engine: engineFromPipeline(pipe), close: () => pipe.model.release() };
  },
});

engineConformance({
  name: "worker engine (sd-tiny)",
  needsModel: true,
  crossThread: true,
  start: async () => {
    const engine = await createWorkerEngine(fixture("sd-tiny", "model"), { threads: 1 });
    return { engine, close: () => engine.close() };
  },
});
