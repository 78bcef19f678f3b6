// The child process of a PipelineWorker: loads one model and runs img2img jobs sent over IPC.
// onnxruntime-node's session.run blocks its thread for a whole model call and a thread cannot be
// stopped inside it (terminating one aborts the whole process with a Napi::Error), so the model
// lives in a process the caller can end at any moment. Messages: protocol.ts.
import { isAbsolute, resolve } from "node:path";
import { existsSync } from "node:fs";
import type { RGBImage } from "../image.js";
import type { Img2ImgPipeline, ProgressEvent } from "../pipeline/img2img.js";
import { rememberModel } from "../pipeline/model-index.js";
import { previewBudget } from "./preview-budget.js";
import { type FromChild, type PipelineInfo, type PreviewMode, type ToChild, toWire, type WireRunOptions } from "./protocol.js";

const send = (m: FromChild) => process.send?.(m);
const runs = new Map<number, AbortController>();
let pipe: Img2ImgPipeline | undefined;

// A terminal's Ctrl+C reaches every process of the foreground group: the parent decides what it means.
process.on("SIGINT", () => undefined);
// The parent is gone (exited or killed): nothing is waiting for results.
process.on("disconnect", () => process.exit(0));

process.on("message", (m: ToChild) => {
  if (m.type === "load") void load(m.modelRef, m.options);
  else if (m.type === "run") void run(m.id, m.opts, m.progress, m.previews);
  else if (m.type === "abort") runs.get(m.id)?.abort();
  else if (m.type === "close") void close();
});

async function load(modelRef: string | undefined, options: Extract<ToChild, { type: "load" }>["options"]): Promise<void> {
  try {
    const { DEFAULT_MODEL, loadPipeline } = await import("../pipeline/load.js");
    const ref = modelRef ?? DEFAULT_MODEL;
    pipe = await loadPipeline(ref, {
      ...options,
      onStatus: (message) => send({ type: "status", message }),
      hub: { ...options.hub, onProgress: (event) => send({ type: "download", event }) },
    });
    const info = describe(pipe, existsSync(ref) && !isAbsolute(ref) ? resolve(ref) : ref);
    rememberModel({ name: info.modelName, hash: info.modelHash, ref: info.modelRef }, options.cacheDir);
    send({ type: "ready", info });
  } catch (e) {
    send({ type: "failed", error: toWire(e) });
  }
}

function describe(p: Img2ImgPipeline, modelRef: string): PipelineInfo {
  const m = p.model;
  return {
    modelName: p.modelName,
    modelHash: p.modelHash,
    modelRef,
    defaults: { ...p.defaults },
    model: {
      vaeScaleFactor: m.vaeScaleFactor,
      schedulerConfig: m.schedulerConfig,
      family: m.family,
      nativeSize: m.nativeSize,
      quantize: m.quantize,
      tinyVae: m.tinyVae ? { name: m.tinyVae.name, use: m.tinyVae.use } : undefined,
    },
  };
}

async function run(id: number, wire: WireRunOptions, progress: boolean, previews: PreviewMode): Promise<void> {
  const controller = new AbortController();
  runs.set(id, controller);
  let chain: Promise<void> = Promise.resolve(); // progress messages leave in step order
  try {
    if (!pipe) throw new Error("no model loaded");
    const budget = previewBudget();
    const decode = previews === "decoded" && pipe.model.tinyVae !== undefined;
    // Buffers arrive as Uint8Array when they were plain views; the pipeline tells paths, bytes and pixels apart
    const image = wire.image instanceof Uint8Array && !Buffer.isBuffer(wire.image) ? Buffer.from(wire.image) : wire.image;
    const onProgress = (e: ProgressEvent) => {
      const base = { step: e.step, total: e.total, timestep: e.timestep, elapsedMs: e.elapsedMs };
      const preview: RGBImage | undefined = previews === "none" ? undefined : e.preview();
      const decoded = decode && e.step < e.total && budget.due() ? timed(e.previewDecoded(), budget.spent) : undefined;
      chain = chain.then(async () => void send({ type: "progress", id, event: { ...base, preview, decoded: await decoded } }));
    };
    const result = await pipe.run({ ...wire, image, signal: controller.signal, onProgress: progress ? onProgress : undefined });
    await chain;
    send({ type: "result", id, result });
  } catch (e) {
    await chain.catch(() => undefined);
    send({ type: "error", id, error: toWire(e) });
  } finally {
    runs.delete(id);
  }
}

async function timed<T>(p: Promise<T>, done: (ms: number) => void): Promise<T> {
  const t = performance.now();
  const v = await p;
  done(performance.now() - t);
  return v;
}

async function close(): Promise<void> {
  for (const c of runs.values()) c.abort();
  await pipe?.release().catch(() => undefined);
  process.exit(0);
}
