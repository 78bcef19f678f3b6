// The server's single job queue: the model stays loaded and jobs run one at a time in order.
// Bounded (submit throws QueueFullError with a Retry-After estimate), every job cancellable
// (queued: removed; running: its AbortSignal fires), and a failing job never stops the loop.
import { randomUUID } from "node:crypto";
import { ReimagineError, type RGBImage } from "../index.js";

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled";
export const FINISHED: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

export interface JobContext {
  signal: AbortSignal;
  /** Reports progress; `preview` renders the current latents lazily (only when someone asks). */
  progress(step: number, total: number, preview?: () => RGBImage): void;
}

export interface Job<R = unknown> {
  readonly id: string;
  readonly kind: string;
  status: JobStatus;
  readonly createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  step: number;
  total: number;
  /** Bumped on every progress report (SSE uses it to send previews every few steps). */
  preview?: () => RGBImage;
  result?: R;
  /** User-facing error (message only; stacks stay in the server log). */
  error?: { code: string; message: string };
  /** True when cancelled while running (interrupt): nothing is saved. */
  interrupted: boolean;
  /** Request settings, echoed by GET /v1/jobs/:id. */
  readonly meta: Record<string, unknown>;
  /** Resolves when the job is finished (never rejects). */
  readonly done: Promise<Job<R>>;
}

export type JobEvent = { type: "status"; job: Job } | { type: "progress"; job: Job };

export class QueueFullError extends ReimagineError {
  constructor(
    readonly size: number,
    readonly retryAfterS: number,
  ) {
    super(`the queue is full (${size} jobs waiting or running): retry after ${retryAfterS} s`, "queue_full");
  }
}

interface Entry {
  job: Job;
  work: (ctx: JobContext) => Promise<unknown>;
  controller: AbortController;
  resolve: (j: Job) => void;
  listeners: Set<(e: JobEvent) => void>;
}

export interface JobQueueOptions {
  /** Jobs waiting or running at once (default 8); more are refused. */
  maxSize?: number;
  /** Finished jobs kept for GET /v1/jobs/:id (oldest dropped first; default 50). */
  keepFinished?: number;
  /** Logs failures that are not user errors (default console.error). */
  log?: (message: string, err: unknown) => void;
}

/**
 * @example
 * const q = new JobQueue({ maxSize: 8 });
 * const job = q.submit("img2img", async ({ signal, progress }) => engine.run({ ...opts, signal }));
 * await job.done;
 */
export class JobQueue {
  readonly maxSize: number;
  private readonly keepFinished: number;
  private readonly log: (message: string, err: unknown) => void;
  private readonly pending: Entry[] = [];
  private current?: Entry;
  private readonly entries = new Map<string, Entry>();
  private readonly finished: string[] = [];
  private readonly durations: number[] = [];
  private loop?: Promise<void>;

  constructor(opts: JobQueueOptions = {}) {
    this.maxSize = opts.maxSize ?? 8;
    if (!Number.isInteger(this.maxSize) || this.maxSize < 1) throw new ReimagineError(`queue size must be a whole number >= 1 (got ${opts.maxSize})`);
    this.keepFinished = opts.keepFinished ?? 50;
    this.log = opts.log ?? ((m, e) => console.error(m, e));
  }

  /** Jobs waiting or running. */
  get size(): number {
    return this.pending.length + (this.current ? 1 : 0);
  }
  get running(): Job | undefined {
    return this.current?.job;
  }
  get queued(): Job[] {
    return this.pending.map((e) => e.job);
  }

  /** Adds a job; throws QueueFullError when maxSize jobs are already waiting or running. */
  submit<R>(kind: string, work: (ctx: JobContext) => Promise<R>, meta: Record<string, unknown> = {}): Job<R> {
    if (this.size >= this.maxSize) throw new QueueFullError(this.size, this.retryAfterS());
    let resolve!: (j: Job) => void;
    const done = new Promise<Job>((r) => (resolve = r));
    const job: Job = { id: randomUUID(), kind, status: "queued", createdAt: Date.now(), step: 0, total: 0, interrupted: false, meta, done };
    const entry: Entry = { job, work, controller: new AbortController(), resolve, listeners: new Set() };
    this.entries.set(job.id, entry);
    this.pending.push(entry);
    this.loop ??= Promise.resolve().then(() => this.drain()); // start after the caller has subscribed
    return job as Job<R>;
  }

  get(id: string): Job | undefined {
    return this.entries.get(id)?.job;
  }

  /** 0 = running next; undefined when not waiting. */
  position(id: string): number | undefined {
    const i = this.pending.findIndex((e) => e.job.id === id);
    return i < 0 ? undefined : i + (this.current ? 1 : 0);
  }

  /** Cancels a queued job (removed) or a running one (aborted within one step). */
  cancel(id: string): "cancelled" | "not-found" | "finished" {
    const entry = this.entries.get(id);
    if (!entry) return "not-found";
    if (FINISHED.includes(entry.job.status)) return "finished";
    if (entry.job.status === "queued") {
      this.pending.splice(this.pending.indexOf(entry), 1);
      this.finish(entry, "cancelled");
      for (const e of this.pending) this.emit(e, { type: "status", job: e.job }); // positions moved
    } else {
      entry.job.interrupted = true;
      entry.controller.abort();
    }
    return "cancelled";
  }

  /** Stops the running job (A1111 interrupt); returns it, or undefined when idle. */
  interrupt(): Job | undefined {
    const job = this.current?.job;
    if (job) this.cancel(job.id);
    return job;
  }

  /** Listens to one job's status and progress; returns the unsubscribe function. */
  subscribe(id: string, listener: (e: JobEvent) => void): () => void {
    const entry = this.entries.get(id);
    if (!entry) return () => {};
    entry.listeners.add(listener);
    return () => entry.listeners.delete(listener);
  }

  /** Seconds a client should wait before retrying: mean job time x jobs ahead (at least 1). */
  retryAfterS(): number {
    const mean = this.durations.length ? this.durations.reduce((a, b) => a + b, 0) / this.durations.length : 1000;
    return Math.max(1, Math.ceil((mean * Math.max(1, this.size)) / 1000));
  }

  /** Resolves once nothing is waiting or running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Cancels everything (server shutdown). */
  close(): void {
    for (const e of [...this.pending]) this.cancel(e.job.id);
    if (this.current) this.cancel(this.current.job.id);
  }

  private async drain(): Promise<void> {
    try {
      for (let entry = this.pending.shift(); entry; entry = this.pending.shift()) {
        this.current = entry;
        const status = await this.runOne(entry);
        this.current = undefined; // before `done` resolves, so waiters see the queue without this job
        this.finish(entry, status);
      }
    } finally {
      this.current = undefined;
      this.loop = undefined;
    }
  }

  /** Runs one job's work and returns how it ended (the caller finishes it). */
  private async runOne(entry: Entry): Promise<JobStatus> {
    const { job, controller } = entry;
    job.status = "running";
    job.startedAt = Date.now();
    this.emit(entry, { type: "status", job });
    for (const e of this.pending) this.emit(e, { type: "status", job: e.job });
    const ctx: JobContext = {
      signal: controller.signal,
      progress: (step, total, preview) => {
        job.step = step;
        job.total = total;
        if (preview) job.preview = preview;
        this.emit(entry, { type: "progress", job });
      },
    };
    try {
      const result = await entry.work(ctx);
      if (controller.signal.aborted) return "cancelled"; // interrupted but the work ignored it: save nothing
      job.result = result;
      this.durations.push(Date.now() - job.startedAt);
      if (this.durations.length > 20) this.durations.shift();
      return "succeeded";
    } catch (e) {
      if (controller.signal.aborted) return "cancelled";
      if (e instanceof ReimagineError) job.error = { code: e.code, message: e.message };
      else {
        this.log(`job ${job.id} (${job.kind}) failed:`, e);
        job.error = { code: "internal_error", message: "internal error while generating; see the server log" };
      }
      return "failed";
    }
  }

  private finish(entry: Entry, status: JobStatus): void {
    const { job } = entry;
    job.status = status;
    job.finishedAt = Date.now();
    job.preview = undefined;
    this.emit(entry, { type: "status", job });
    entry.listeners.clear();
    entry.resolve(job);
    this.finished.push(job.id);
    while (this.finished.length > this.keepFinished) this.entries.delete(this.finished.shift()!);
  }

  private emit(entry: Entry, e: JobEvent): void {
    for (const l of entry.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log("job listener failed:", err);
      }
    }
  }
}
