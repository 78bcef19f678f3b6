// An Engine whose model lives in a worker thread (engine-worker.ts), so the HTTP server's event
// loop stays free while onnxruntime computes. Progress and previews stream back per step; abort
// is honoured between steps; if the worker dies, the running job fails and the next run restarts it.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { type LoadPipelineOptions, ReimagineError, type RGBImage, throwIfAborted } from "../index.js";
import type { Engine, EngineDefaults, EngineResult, EngineRunOptions, SamplerInfo } from "./engine.js";

export interface WorkerInit {
  modelRef?: string;
  /** Plain (cloneable) load options: no callbacks. */
  loadOptions: Omit<LoadPipelineOptions, "onStatus" | "hub"> & { hub?: Omit<NonNullable<LoadPipelineOptions["hub"]>, "onProgress"> };
}

type WireError = { name: string; message: string; code?: string; stack?: string };
export type ToWorker = { type: "run"; id: number; opts: Omit<EngineRunOptions, "onProgress" | "signal"> } | { type: "abort"; id: number };
export type FromWorker =
  | { type: "status"; message: string }
  | { type: "ready"; modelName: string; modelHash: string; defaults: EngineDefaults; vaeScaleFactor: number; samplers: SamplerInfo[] }
  | ({ type: "failed" } & WireError)
  | { type: "progress"; id: number; step: number; total: number; elapsedMs: number; preview?: RGBImage }
  | { type: "result"; id: number; result: EngineResult }
  | ({ type: "error"; id: number } & WireError);

interface Pending {
  opts: EngineRunOptions;
  resolve: (r: EngineResult) => void;
  reject: (e: Error) => void;
}

/** The worker entry beside this file; from TypeScript sources (tsx, vitest) the worker loads tsx too. */
function spawn(init: WorkerInit): Worker {
  const here = import.meta.url;
  if (here.endsWith(".ts")) {
    // running from sources: register tsx's loader inside the worker, then import the TypeScript entry
    const entry = JSON.stringify(new URL("./engine-worker.ts", here).href);
    const tsxRoot = dirname(createRequire(here).resolve("tsx/package.json"));
    const tsx = JSON.stringify(pathToFileURL(join(tsxRoot, "dist", "esm", "api", "index.mjs")).href); // tsx's ESM register()
    const boot = `import(${tsx}).then((m) => { m.register(); return import(${entry}); });`;
    return new Worker(boot, { eval: true, workerData: init });
  }
  return new Worker(new URL("./engine-worker.js", here), { workerData: init });
}

function toError(w: WireError): Error {
  if (w.code) return new ReimagineError(w.message, w.code);
  const e = new Error(w.message);
  e.name = w.name;
  if (w.stack) e.stack = w.stack;
  return e;
}

/**
 * Loads a model in a worker thread and returns it as an Engine.
 * @example const engine = await createWorkerEngine("stabilityai/sd-turbo", { threads: 4 }, (m) => console.error(m));
 */
export async function createWorkerEngine(modelRef: string | undefined, loadOptions: WorkerInit["loadOptions"] = {}, onStatus?: (message: string) => void): Promise<Engine & { close(): Promise<void> }> {
  const init: WorkerInit = { modelRef, loadOptions };
  let worker: Worker | undefined;
  let ready: Promise<Extract<FromWorker, { type: "ready" }>> | undefined;
  const pending = new Map<number, Pending>();
  let nextId = 1;

  const start = () => {
    const w = spawn(init);
    worker = w;
    ready = new Promise((resolve, reject) => {
      w.on("message", (m: FromWorker) => {
        if (m.type === "status") onStatus?.(m.message);
        else if (m.type === "ready") resolve(m);
        else if (m.type === "failed") reject(toError(m));
        else if (m.type === "progress") {
          const p = pending.get(m.id);
          const preview = m.preview;
          p?.opts.onProgress?.({ step: m.step, total: m.total, elapsedMs: m.elapsedMs, preview: preview ? () => preview : undefined });
        } else if (m.type === "result") {
          pending.get(m.id)?.resolve(m.result);
          pending.delete(m.id);
        } else if (m.type === "error") {
          pending.get(m.id)?.reject(toError(m));
          pending.delete(m.id);
        }
      });
      w.on("error", (e) => {
        reject(e);
        console.error("engine worker crashed:", e);
      });
      w.on("exit", (code) => {
        if (worker === w) worker = undefined; // the next run starts a fresh worker
        reject(new Error(`engine worker exited (code ${code}) while loading`));
        for (const [id, p] of pending) {
          p.reject(new Error(`engine worker exited (code ${code}) during a run`));
          pending.delete(id);
        }
      });
    });
    ready.catch(() => undefined);
    return ready;
  };

  const info = await start();
  return {
    modelName: info.modelName,
    modelHash: info.modelHash,
    defaults: info.defaults,
    vaeScaleFactor: info.vaeScaleFactor,
    samplers: () => info.samplers,
    async run(opts: EngineRunOptions): Promise<EngineResult> {
      if (!worker) await start();
      await ready;
      const w = worker!;
      throwIfAborted(opts.signal);
      const id = nextId++;
      const { onProgress: _p, signal, ...plain } = opts;
      // copy the input: the caller may reuse it (sweeps) and transfer would detach it
      const image = { width: plain.image.width, height: plain.image.height, data: plain.image.data.slice() };
      return new Promise<EngineResult>((resolve, reject) => {
        const onAbort = () => w.postMessage({ type: "abort", id } satisfies ToWorker);
        signal?.addEventListener("abort", onAbort, { once: true });
        const done = () => signal?.removeEventListener("abort", onAbort);
        pending.set(id, {
          opts,
          resolve: (r) => {
            done();
            resolve(r);
          },
          reject: (e) => {
            done();
            reject(e);
          },
        });
        w.postMessage({ type: "run", id, opts: { ...plain, image } } satisfies ToWorker, [image.data.buffer]);
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      await w?.terminate();
    },
  };
}
