// PipelineWorker with the tiny fixture model in a child process: results equal the in-process
// pipeline's, the caller's thread stays free, progress and previews (latent and TAESD-decoded)
// cross over, abort lands within one step, kill() ends a run at once, errors keep their type.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { loadPipeline } from "../pipeline/load.js";
import { PipelineWorker } from "./pipeline-worker.js";

describeWithFixtures("PipelineWorker (sd-tiny)", () => {
  const cacheDir = mkdtempSync(join(tmpdir(), "reimagine-worker-"));
  let worker: PipelineWorker;
  const image = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).map((_, i) => (i * 37) % 251) };
  const base = { image, prompt: "a cat", guidanceScale: 7.5, seed: 3, steps: 8, strength: 0.5, sampler: "euler" };

  beforeAll(async () => {
    const status: string[] = [];
    worker = await PipelineWorker.start(
      fixture("sd-tiny", "model"),
      { threads: 1, cacheDir, previewVae: fixture("taesd-tiny", "model") },
      { onStatus: (m) => status.push(m) },
    );
    expect(status.some((m) => /unet/.test(m))).toBe(true);
  });
  afterAll(async () => {
    await worker?.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it("describes the model (defaults, VAE factor, family, preview VAE) and remembers it by hash", () => {
    expect(worker.modelName).toBe("model");
    expect(worker.modelHash).toMatch(/^[0-9a-f]{10}$/);
    expect(worker.modelRef).toBe(fixture("sd-tiny", "model"));
    expect(worker.model).toMatchObject({ vaeScaleFactor: 2, family: "sd", tinyVae: { use: "preview" } });
    expect(worker.scheduler().constructor.name).toBe("PNDMScheduler");
    const list = JSON.parse(readFileSync(join(cacheDir, "models.json"), "utf8"));
    expect(list[0]).toMatchObject({ name: "model", hash: worker.modelHash, ref: fixture("sd-tiny", "model") });
  });

  it("gives the in-process pipeline's image, without blocking the calling thread", async () => {
    let last = performance.now();
    let maxLag = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 10);
      last = now;
    }, 10);
    const steps: number[] = [];
    const r = await worker.run({ ...base, onProgress: (e) => steps.push(e.step) }).finally(() => clearInterval(timer));
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(maxLag).toBeLessThan(150);
    const pipe = await loadPipeline(fixture("sd-tiny", "model"), { threads: 1, cacheDir });
    try {
      const local = await pipe.run(base);
      expect(r.images[0].data).toEqual(local.images[0].data);
      expect(r.seed).toBe(local.seed);
      expect(r.latents).toEqual(local.latents);
    } finally {
      await pipe.model.release();
    }
  });

  it("takes paths and encoded bytes as the image, as the pipeline does", async () => {
    const path = fixture("sd-tiny", "reference", "input.png");
    const a = await worker.run({ ...base, image: path });
    const b = await worker.run({ ...base, image: readFileSync(path) });
    expect(a.images[0].data).toEqual(b.images[0].data);
  });

  it("sends latent previews each step, and TAESD-decoded ones when asked", async () => {
    const latent: number[] = [];
    const decoded: number[] = [];
    await worker.run(
      {
        ...base,
        steps: 12,
        onProgress: (e) => {
          latent.push(e.preview().width);
          void e.previewDecoded().then((im) => decoded.push(im.width));
        },
      },
      { previews: "decoded" },
    );
    expect(latent).toEqual(Array(6).fill(32)); // latent resolution: 64 / 2
    expect(decoded[0]).toBe(32 * 8); // taesd-tiny upsamples 8x: decoded at least on the first step
  });

  it("aborts within one step with an AbortError, and the worker runs again afterwards", async () => {
    const ctrl = new AbortController();
    let t0 = 0;
    let stepMs = 0;
    const run = worker.run({
      ...base,
      strength: 1,
      steps: 200,
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
    expect(performance.now() - t0).toBeLessThan(2 * stepMs + 500);
    expect((await worker.run(base)).images).toHaveLength(1);
  });

  it("keeps user errors as ReimagineError and refuses options that cannot cross", async () => {
    const err = await worker.run({ ...base, strength: 2 }).catch((e) => e);
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err.message).toMatch(/strength must be between 0 and 1/);
    await expect(worker.run({ ...base, background: (() => "white") as unknown as string })).rejects.toThrow(
      /run option 'background' cannot be copied to the model process/,
    );
    await expect(worker.run({ ...base, extensions: [{ name: "x", afterStep: async () => undefined }] })).rejects.toThrow(
      /run option 'extensions' cannot be copied/,
    );
  });

  it("kill() ends a running call at once (AbortError) and the worker reports it is gone", async () => {
    const w = await PipelineWorker.start(fixture("sd-tiny", "model"), { threads: 1, cacheDir });
    let t0 = 0;
    const run = w.run({
      ...base,
      strength: 1,
      steps: 500,
      onProgress: (e) => {
        if (e.step !== 2) return;
        t0 = performance.now();
        w.kill();
      },
    });
    await expect(run).rejects.toMatchObject({ name: "AbortError" });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(w.alive).toBe(false);
    await expect(w.run(base)).rejects.toMatchObject({ code: "worker_exited" });
  });

  it("a model that cannot load rejects start() with the loader's one-line error", async () => {
    const err = await PipelineWorker.start(join(cacheDir, "missing.safetensors"), { cacheDir }).catch((e) => e);
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err.message).toMatch(/model file not found/);
  });
});
