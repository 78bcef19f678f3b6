// A pipeline that runs in a child process (child.ts), used by the CLI and the server so the calling
// process never sits inside ONNX Runtime: it stays responsive, and it can stop a run at any moment
// (kill()) without the Napi::Error abort that ending a thread inside session.run causes.
// Run options are structured-cloned (any option the pipeline gains passes through unchanged);
// onProgress is proxied with its previews; an AbortSignal stops the run within one step.
import { type ChildProcess, fork } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { serialize } from "node:v8";
import { abortError, ReimagineError } from "../errors.js";
import type { RGBImage } from "../image.js";
import type { Img2ImgOptions, Img2ImgResult, ProgressEvent } from "../pipeline/img2img.js";
import { createScheduler, schedulerForModel } from "../schedulers/index.js";
import type { Scheduler } from "../schedulers/scheduler.js";
import type { HubProgressEvent } from "../weights/hub.js";
import { type FromChild, fromWire, type PipelineInfo, type PreviewMode, type ToChild, type WireProgress, type WorkerLoadOptions } from "./protocol.js";

export type { PipelineInfo, PreviewMode, WorkerLoadOptions } from "./protocol.js";

export interface StartWorkerOptions {
  /** Loading messages ("building unet graph ...", "loading vae-decoder"). */
  onStatus?: (message: string) => void;
  /** Hub download progress (one event per chunk, as downloadDiffusersModel's onProgress). */
  onDownload?: (e: HubProgressEvent) => void;
  /** Aborting while the model loads ends the child at once; the promise rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface WorkerRunOptions {
  /** "latent" (default): the cheap latent preview each step; "decoded": also preview-VAE decodes when
   *  one is loaded, as often as they stay cheap next to a step; "none": no preview images. */
  previews?: PreviewMode;
}

/** A progress event from the child: the pipeline's, plus the preview VAE's image of this step when
 *  the run asked for decoded previews and one was made. */
export type WorkerProgressEvent = ProgressEvent & { decoded?: RGBImage };

/** Img2ImgOptions whose onProgress also sees the decoded preview. */
export type WorkerRunInput = Omit<Img2ImgOptions, "onProgress"> & { onProgress?: (e: WorkerProgressEvent) => void };

interface Pending {
  onProgress?: (e: WorkerProgressEvent) => void;
  resolve: (r: Img2ImgResult) => void;
  reject: (e: Error) => void;
}

/** The child entry beside this file; from TypeScript sources (tsx, vitest) the child loads tsx too. */
function childEntry(): { file: string; execArgv: string[] } {
  const here = import.meta.url;
  if (here.endsWith(".ts")) {
    const tsx = pathToFileURL(createRequire(here).resolve("tsx")).href; // registers tsx's ESM and CJS hooks
    return { file: fileURLToPath(new URL("./child.ts", here)), execArgv: ["--import", tsx] };
  }
  return { file: fileURLToPath(new URL("./child.js", here)), execArgv: [] };
}

/**
 * The environment of a process that runs models: glibc.malloc.hugetlb=1 puts large allocations (ONNX
 * Runtime's arenas) in transparent huge pages, so a first run faults in 2 MiB pages instead of 4 KiB ones
 * (docs/performance.md). glibc reads it at process start; other C libraries ignore it. A value the caller
 * set is kept. The benchmark's measuring children get the same.
 */
export function inferenceEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ?? "glibc.malloc.hugetlb=1" };
}

/** A model loaded in a child process; the same surface front ends use of an Img2ImgPipeline. */
export class PipelineWorker implements PipelineInfo {
  readonly modelName: string;
  readonly modelHash: string;
  readonly modelRef: string;
  readonly defaults: PipelineInfo["defaults"];
  readonly model: PipelineInfo["model"];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited: string | undefined;
  private killed = false;

  private constructor(
    private readonly child: ChildProcess,
    info: PipelineInfo,
  ) {
    ({ modelName: this.modelName, modelHash: this.modelHash, modelRef: this.modelRef, defaults: this.defaults, model: this.model } = info);
    child.on("message", (m: FromChild) => this.onMessage(m));
    child.on("exit", (code, signal) => {
      // a SIGKILL nobody here sent is most often the kernel's out-of-memory killer
      this.exited = signal ? `killed by ${signal}${signal === "SIGKILL" && !this.killed ? ": out of memory?" : ""}` : `exit code ${code}`;
      for (const p of this.pending.values()) p.reject(this.killed ? abortError() : new Error(`the model process ended during a run (${this.exited})`));
      this.pending.clear();
    });
    this.idle();
  }

  /**
   * Starts a child process and loads a model in it (hub repo id, diffusers folder or .safetensors).
   * @example
   * const pipe = await PipelineWorker.start("stabilityai/sd-turbo", { threads: 4 });
   * const { images } = await pipe.run({ image: "sketch.png", prompt: "a castle", strength: 0.7, signal });
   * await pipe.close();
   */
  static async start(modelRef?: string, load: WorkerLoadOptions = {}, opts: StartWorkerOptions = {}): Promise<PipelineWorker> {
    opts.signal?.throwIfAborted();
    const { file, execArgv } = childEntry();
    // the child's stdout goes to our stderr: stdout belongs to the caller (--json)
    const child = fork(file, [], { execArgv, env: inferenceEnv(), serialization: "advanced", stdio: ["ignore", 2, 2, "ipc"] });
    const kill = () => child.kill("SIGKILL");
    opts.signal?.addEventListener("abort", kill, { once: true });
    try {
      const info = await new Promise<PipelineInfo>((resolve, reject) => {
        child.on("message", (m: FromChild) => {
          if (m.type === "status") opts.onStatus?.(m.message);
          else if (m.type === "download") opts.onDownload?.(m.event);
          else if (m.type === "ready") resolve(m.info);
          else if (m.type === "failed") reject(fromWire(m.error));
        });
        child.on("error", reject);
        child.on("exit", (code, signal) => {
          if (opts.signal?.aborted) reject(abortError("loading cancelled"));
          else reject(new Error(`the model process ended while loading (${signal ? `killed by ${signal}` : `exit code ${code}`})`));
        });
        child.send({ type: "load", modelRef, options: load } satisfies ToChild);
      });
      child.removeAllListeners("message").removeAllListeners("exit").removeAllListeners("error");
      return new PipelineWorker(child, info);
    } catch (e) {
      kill();
      throw e;
    } finally {
      opts.signal?.removeEventListener("abort", kill);
    }
  }

  /** False once the child has exited (killed, crashed or closed). */
  get alive(): boolean {
    return this.exited === undefined;
  }

  /** The scheduler a run would use (computed here from the model's scheduler config). */
  scheduler(sampler?: string): Scheduler {
    return sampler ? createScheduler(sampler, this.model.schedulerConfig) : schedulerForModel(this.model.schedulerConfig);
  }

  /**
   * Runs img2img in the child. Options are structured-cloned, so they must be data (the only
   * function allowed is onProgress); `signal` stops the run within one step.
   * @example const r = await pipe.run({ image: "in.png", prompt: "oil painting", strength: 0.6, onProgress: (e) => console.log(e.step) });
   */
  run(opts: WorkerRunInput, how: WorkerRunOptions = {}): Promise<Img2ImgResult> {
    const { onProgress, signal, ...wire } = opts;
    if (this.exited) return Promise.reject(new ReimagineError(`the model process is not running (${this.exited}): load the model again`, "worker_exited"));
    if (signal?.aborted) return Promise.reject(abortError());
    for (const [k, v] of Object.entries(wire)) {
      try {
        serialize(v); // what the IPC channel does; functions and class instances with methods cannot cross
      } catch {
        return Promise.reject(
          new TypeError(
            `run option '${k}' cannot be copied to the model process (it holds functions): only onProgress and signal are proxied; run such options in-process with Img2ImgPipeline`,
          ),
        );
      }
    }
    const id = this.nextId++;
    return new Promise<Img2ImgResult>((resolve, reject) => {
      const onAbort = () => this.send({ type: "abort", id });
      signal?.addEventListener("abort", onAbort, { once: true });
      const settle = () => {
        signal?.removeEventListener("abort", onAbort);
        this.pending.delete(id);
        this.idle();
      };
      this.pending.set(id, {
        onProgress,
        resolve: (r) => {
          settle();
          resolve(r);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      });
      this.busy();
      this.send({ type: "run", id, opts: wire, progress: onProgress !== undefined, previews: how.previews ?? "latent" });
    });
  }

  /** Ends the child at once (SIGKILL): running calls reject with an AbortError. Safe at any moment. */
  kill(): void {
    if (this.exited) return;
    this.killed = true;
    this.child.kill("SIGKILL");
  }

  /** Lets the child release the model and exit; kills it if it has not exited after `timeoutMs`. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.send({ type: "close" });
    const timer = setTimeout(() => this.kill(), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  private send(m: ToChild): void {
    if (!this.exited && this.child.connected) this.child.send(m);
  }

  // While nothing is pending the child does not keep the caller's process alive.
  private busy(): void {
    this.child.ref();
    (this.child.channel as { ref?: () => void } | undefined)?.ref?.();
  }
  private idle(): void {
    if (this.pending.size) return;
    this.child.unref();
    (this.child.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  private onMessage(m: FromChild): void {
    if (m.type === "progress") this.pending.get(m.id)?.onProgress?.(progressEvent(m.event));
    else if (m.type === "result") this.pending.get(m.id)?.resolve(m.result);
    else if (m.type === "error") this.pending.get(m.id)?.reject(fromWire(m.error));
  }
}

/** The pipeline's ProgressEvent from a message: preview() is the latent preview, previewDecoded() the
 *  preview VAE's image when the child made one for this step (else the latent preview). */
function progressEvent(w: WireProgress): WorkerProgressEvent {
  const latent = () => {
    if (!w.preview) throw new ReimagineError("this run was started with previews: 'none'", "usage");
    return w.preview;
  };
  return {
    step: w.step,
    total: w.total,
    timestep: w.timestep,
    elapsedMs: w.elapsedMs,
    preview: latent,
    previewDecoded: async () => w.decoded ?? latent(),
    decoded: w.decoded,
  };
}
