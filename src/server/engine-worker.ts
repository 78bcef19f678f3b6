// Worker-thread side of WorkerEngine: loads the pipeline and runs jobs off the server's main
// thread (onnxruntime-node's session.run blocks its thread for a whole model call, so in-process
// runs would freeze HTTP, SSE and /progress for every denoising step). Messages: see worker-engine.ts.
import { parentPort, workerData } from "node:worker_threads";
import { ReimagineError } from "../index.js";
import { engineFromPipeline, type Engine, type EngineRunOptions } from "./engine.js";
import type { FromWorker, ToWorker, WorkerInit } from "./worker-engine.js";

const port = parentPort!;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const runs = new Map<number, AbortController>();

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  let engine: Engine;
  try {
    const { loadPipeline } = await import("../index.js");
    engine = engineFromPipeline(await loadPipeline(init.modelRef, { ...init.loadOptions, onStatus: (message: string) => post({ type: "status", message }) }));
  } catch (e) {
    post({ type: "failed", ...errorOf(e) });
    return;
  }
  post({ type: "ready", modelName: engine.modelName, modelHash: engine.modelHash, defaults: engine.defaults, vaeScaleFactor: engine.vaeScaleFactor, samplers: engine.samplers() });

  port.on("message", (m: ToWorker) => {
    if (m.type === "abort") runs.get(m.id)?.abort();
    else if (m.type === "run") void run(engine, m.id, m.opts);
  });
}

async function run(engine: Engine, id: number, opts: Omit<EngineRunOptions, "onProgress" | "signal">): Promise<void> {
  const controller = new AbortController();
  runs.set(id, controller);
  try {
    const r = await engine.run({
      ...opts,
      signal: controller.signal,
      onProgress: (e) => {
        const preview = e.preview?.(); // cheap (latent resolution); made here because closures cannot cross threads
        post({ type: "progress", id, step: e.step, total: e.total, elapsedMs: e.elapsedMs, preview }, preview ? [preview.data.buffer as ArrayBuffer] : []);
      },
    });
    const images = r.images.map((im) => ({ width: im.width, height: im.height, data: im.data }));
    post(
      { type: "result", id, result: { images, seed: r.seed, width: r.width, height: r.height, stepsRun: r.stepsRun, timings: { totalMs: r.timings.totalMs } } },
      images.map((im) => im.data.buffer as ArrayBuffer),
    );
  } catch (e) {
    post({ type: "error", id, ...errorOf(e) });
  } finally {
    runs.delete(id);
  }
}

function errorOf(e: unknown): { name: string; message: string; code?: string; stack?: string } {
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, message: err.message, code: e instanceof ReimagineError ? e.code : undefined, stack: err.stack };
}

void main();
