// WorkerEngine with the tiny fixture model: the server thread stays responsive during model
// calls, progress/previews cross the thread, abort lands within one step, user errors keep their type.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { createWorkerEngine } from "./worker-engine.js";

describe.skipIf(!haveFixtures("sd-tiny"))("createWorkerEngine (sd-tiny)", () => {
  let engine: Awaited<ReturnType<typeof createWorkerEngine>>;
  const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(200) };
  const base = { image, prompt: "a cat", guidanceScale: 7.5, seed: 1, sampler: "euler", width: 64, height: 64 };

  beforeAll(async () => {
    engine = await createWorkerEngine(fixture("sd-tiny", "model"), { threads: 1 });
  });
  afterAll(async () => engine?.close());

  it("describes the model and runs without blocking the calling thread", async () => {
    expect(engine.vaeScaleFactor).toBe(2);
    expect(engine.samplers().map((s) => s.name)).toContain("euler");
    let last = performance.now();
    let maxLag = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 10);
      last = now;
    }, 10);
    const steps: number[] = [];
    let preview: { width: number } | undefined;
    const t0 = performance.now();
    const r = await engine
      .run({
        ...base,
        strength: 1,
        steps: 6,
        onProgress: (e) => {
          steps.push(e.step);
          preview = e.preview?.();
        },
      })
      .finally(() => clearInterval(timer));
    expect([r.width, r.height, r.images[0].data.length]).toEqual([64, 64, 64 * 64 * 3]);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6]);
    expect(preview?.width).toBe(32); // latent resolution
    // in-process, each model call would block this thread for about a step: the lag would reach the step time
    // (a busy machine stretches both, so the bound follows the measured step time)
    const stepMs = (performance.now() - t0) / 6;
    expect(maxLag).toBeLessThan(Math.max(150, 0.5 * stepMs));
  });

  it("aborts within one step with an AbortError", async () => {
    const ctrl = new AbortController();
    let t0 = 0;
    let stepMs = 0;
    const run = engine.run({
      ...base,
      strength: 1,
      steps: 100,
      signal: ctrl.signal,
      onProgress: (e) => {
        if (e.step === 3) {
          stepMs = e.elapsedMs / 3;
          t0 = performance.now();
          ctrl.abort();
        }
      },
    });
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(performance.now() - t0).toBeLessThan(2 * stepMs + 300);
  });

  it("keeps user errors as ReimagineError with their message", async () => {
    const err = await engine.run({ ...base, strength: 2, steps: 10 }).catch((e) => e);
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err.message).toMatch(/strength must be between 0 and 1/);
  });
});
