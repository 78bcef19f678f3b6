// Messages between a PipelineWorker (pipeline-worker.ts, the calling process) and its child
// (child.ts, which loads the model and runs it). Everything here is structured-cloned over Node's
// IPC channel ("advanced" serialization: typed arrays, Buffers, bigint and Errors survive).
import { ReimagineError } from "../errors.js";
import type { RGBImage } from "../image.js";
import type { Img2ImgOptions, Img2ImgResult } from "../pipeline/img2img.js";
import type { LoadPipelineOptions } from "../pipeline/load.js";
import type { HubProgressEvent } from "../weights/hub.js";

/** What the calling side knows of a model loaded in a worker (enough for metadata, defaults, samplers). */
export interface PipelineInfo {
  modelName: string;
  /** A1111 "Model hash" (whatever the pipeline reports). */
  modelHash: string;
  /** The reference it was loaded from: a hub repo id, or an absolute folder / file path. */
  modelRef: string;
  defaults: { steps: number; guidanceScale: number; strength: number };
  model: {
    vaeScaleFactor: number;
    schedulerConfig: Record<string, unknown>;
    /** Model family ("sd", "sdxl"): picks the preview VAE. */
    family: string;
    /** The resolution the UNet was trained at (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL). */
    nativeSize: number;
    quantize?: string;
    tinyVae?: { name: string; use: "all" | "preview" };
  };
}

/** Load options without callbacks (those are proxied as messages). */
export type WorkerLoadOptions = Omit<LoadPipelineOptions, "onStatus" | "hub"> & {
  hub?: Omit<NonNullable<LoadPipelineOptions["hub"]>, "onProgress" | "signal" | "fetch">;
};

/** How progress previews are made in the worker: "decoded" uses the preview VAE when one is loaded. */
export type PreviewMode = "none" | "latent" | "decoded";

/** Run options as they cross the channel: everything but the callbacks. */
export type WireRunOptions = Omit<Img2ImgOptions, "onProgress" | "signal">;

export type ToChild =
  | { type: "load"; modelRef?: string; options: WorkerLoadOptions }
  | { type: "run"; id: number; opts: WireRunOptions; progress: boolean; previews: PreviewMode }
  | { type: "abort"; id: number }
  | { type: "close" };

export interface WireProgress {
  step: number;
  total: number;
  timestep: number;
  elapsedMs: number;
  preview?: RGBImage;
  decoded?: RGBImage;
}

export type FromChild =
  | { type: "status"; message: string }
  | { type: "download"; event: HubProgressEvent }
  | { type: "ready"; info: PipelineInfo }
  | { type: "failed"; error: WireError }
  | { type: "progress"; id: number; event: WireProgress }
  | { type: "result"; id: number; result: Img2ImgResult }
  | { type: "error"; id: number; error: WireError };

export interface WireError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

export function toWire(e: unknown): WireError {
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, message: err.message, code: e instanceof ReimagineError ? e.code : undefined, stack: err.stack };
}

/** Rebuilds the error on the calling side: ReimagineErrors keep their class and code, AbortErrors their name. */
export function fromWire(w: WireError): Error {
  const e = w.code !== undefined ? new ReimagineError(w.message, w.code) : new Error(w.message);
  if (w.code === undefined) e.name = w.name;
  if (w.stack) e.stack = w.stack;
  return e;
}
