// The server's job backend: everything the HTTP routes (native, A1111, operations) need from "a queue
// that runs generation jobs". One interface, two implementations checked by one conformance suite
// (jobs.case.ts): MemoryJobs (jobs-memory.ts: one model loaded by this process, jobs run here in order)
// and RedisJobs (redis-jobs.ts: BullMQ on Redis, jobs run by `reimagine worker` processes).
// Ref: hono's Router interface with interchangeable routers and one shared test suite.
import { ReimagineError } from "../index.js";
import type { Engine } from "./engine.js";
import type { GeneratedImage, GenerationRequest, GenerationResult } from "./generate.js";
import type { JobStatus, Reservation } from "./queue.js";
import { ValidationError } from "./validate.js";

export type JobKind = "img2img" | "txt2img" | "sweep";

/** What a job runs, as plain data (uploads carry their bytes), so it can cross to another process. */
export interface JobSpec {
  kind: JobKind;
  /** `modelName` of the model that must run it. */
  model: string;
  request: GenerationRequest;
  /** Strengths of a sweep (kind "sweep"). */
  strengths?: number[];
}

/** A model as the routes see it: an Engine without `run` (metadata, defaults, samplers). */
export type ModelInfo = Omit<Engine, "run">;

/** A finished job's result without the image bytes (those come from Jobs.image / Jobs.images); the
 *  ControlNet detected maps, few and small, travel in it as base64 PNGs (a Redis result is JSON). */
export type ResultInfo = Omit<GenerationResult, "images" | "controlMaps"> & { images: Omit<GeneratedImage, "png">[]; controlMaps?: string[] };

/** A job as seen at one moment (a copy: it does not change afterwards). */
export interface JobSnapshot {
  id: string;
  kind: string;
  model: string;
  status: JobStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  step: number;
  total: number;
  /** Jobs ahead of this one (running ones included) while it waits; undefined otherwise. */
  position?: number;
  /** Times the job was started: more than 1 when its worker died and another one took it over. */
  attempts: number;
  /** The queue worker that took it last (queue mode). */
  worker?: string;
  /** Cancelled while running: nothing is saved. */
  interrupted: boolean;
  /** The result's images were dropped (retention limit). */
  expired: boolean;
  /** User-facing error (message only; stacks stay in the log of the process that ran it). */
  error?: { code: string; message: string };
  /** Request settings, echoed by GET /v1/jobs/:id. */
  meta: Record<string, unknown>;
  result?: ResultInfo;
}

export type JobEvent = { type: "status" | "progress"; job: JobSnapshot };

/** Reported once per finished job (metrics). */
export interface FinishedJob {
  job: JobSnapshot;
  /** Running time (start to finish) when the job started. */
  runMs?: number;
  /** Duration of each denoising step it ran. */
  stepMs: number[];
}

export interface QueueStats {
  /** Jobs waiting or running, plus reserved slots. */
  size: number;
  maxSize: number;
  running: string[];
  /** Waiting job ids, oldest first. */
  queued: string[];
  /** Jobs waiting, per model. */
  depth: Record<string, number>;
  /** Processes running jobs, per model (embedded: 1). */
  workers: Record<string, number>;
  /** Bytes of finished results kept (embedded mode's budget), when known. */
  retainedBytes?: number;
}

export interface BackendHealth {
  ok: boolean;
  /** One line: why jobs cannot be taken now. */
  reason?: string;
}

export interface Jobs {
  /** "embedded" or the queue's address (for logs and /readyz). */
  readonly name: string;
  /** Jobs waiting or running at once, across every model; more are refused (429 + Retry-After). */
  readonly maxSize: number;
  /** Models that can run jobs now, the default first. */
  models(): Promise<ModelInfo[]>;
  /** Holds a slot before a request body is read; throws QueueFullError / ShuttingDownError. */
  reserve(): Promise<Reservation>;
  /** Queues a job (into `slot` when given). */
  submit(spec: JobSpec, meta: Record<string, unknown>, slot?: Reservation): Promise<JobSnapshot>;
  get(id: string): Promise<JobSnapshot | undefined>;
  /** PNG n of a succeeded job; "expired" when dropped by retention; undefined when none. */
  image(id: string, n: number): Promise<Buffer | "expired" | undefined>;
  /** Every PNG of a succeeded job (empty when none are kept). */
  images(id: string): Promise<Buffer[]>;
  /** The running job's latest preview as PNG. */
  preview(id: string): Promise<Buffer | undefined>;
  /** Queued: removed; running: stopped within one denoising step (nothing saved). */
  cancel(id: string): Promise<"cancelled" | "not-found" | "finished">;
  /** Stops every running job (A1111 interrupt); returns their ids. */
  interrupt(): Promise<string[]>;
  /** Running jobs, oldest start first. */
  running(): Promise<JobSnapshot[]>;
  /** Status and progress events of one job until it finishes; returns the unsubscribe function. */
  watch(id: string, listener: (e: JobEvent) => void): Promise<() => void>;
  /** Resolves when the job has finished (undefined: unknown or gone). `owned`: the caller's request is
   *  the only one that can take the result, so closing this backend cancels the job. */
  wait(id: string, opts?: { owned?: boolean }): Promise<JobSnapshot | undefined>;
  stats(): Promise<QueueStats>;
  /** Seconds a refused client should wait. */
  retryAfterS(): Promise<number>;
  onFinished(listener: (f: FinishedJob) => void): () => void;
  /** Synchronous: can jobs be taken right now (e.g. Redis reachable)? */
  health(): BackendHealth;
  /** Stops taking jobs; resolves once the jobs this process must end have ended. */
  close(): Promise<void>;
  /** Releases connections and timers (after close and after the last response). */
  dispose(): Promise<void>;
}

/** The backend cannot take jobs now (HTTP 503; e.g. Redis unreachable, no worker for a model). */
export class UnavailableError extends ReimagineError {
  constructor(
    message: string,
    readonly retryAfterS = 1,
  ) {
    super(message, "unavailable");
  }
}

/** A1111's title of a model: "name [hash]". */
export const modelTitle = (m: ModelInfo) => `${m.modelName}${m.modelHash ? ` [${m.modelHash}]` : ""}`;

/**
 * The model a request names (its name, A1111 title or hash), or the default (the first) when it names
 * none: 422 naming the field when no live model matches, 503 when there is no model at all.
 * @example const engine = await pickModel(jobs, optString(fields, "model"), "model");
 */
export async function pickModel(jobs: Jobs, ref: string | undefined, field = "model"): Promise<ModelInfo> {
  const models = await jobs.models();
  if (models.length === 0) {
    throw new UnavailableError("no worker is serving a model right now: start one (reimagine worker --queue URL --model M) or retry shortly", 5);
  }
  if (ref === undefined || ref === "") return models[0];
  const found = models.find((m) => ref === m.modelName || ref === modelTitle(m) || (m.modelHash !== "" && ref === m.modelHash));
  if (found) return found;
  throw new ValidationError(
    field,
    `model '${ref}' is not loaded here: available ${models.length > 1 ? "are" : "is"} ${models.map((m) => `'${modelTitle(m)}'`).join(", ")}`,
  );
}

/** Copies a result without its PNG bytes. */
export function resultInfo(r: GenerationResult): ResultInfo {
  const { controlMaps, ...rest } = r;
  return {
    ...rest,
    images: r.images.map(({ png: _png, ...im }) => im),
    ...(controlMaps?.length ? { controlMaps: controlMaps.map((m) => m.toString("base64")) } : {}),
  };
}
