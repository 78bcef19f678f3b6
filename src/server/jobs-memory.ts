// The embedded job backend (the default of `reimagine serve`): one model loaded by this process, jobs
// run here one at a time in order by the in-process JobQueue (queue.ts). Behaviour is exactly the
// server's before the Jobs interface existed; the Redis backend is held to the same suite (jobs.case.ts).
import { encodeImage } from "../index.js";
import type { Engine } from "./engine.js";
import { type GenerationResult, jobWork, resultBytes } from "./generate.js";
import type { FinishedJob, JobEvent, Jobs, JobSnapshot, JobSpec, ModelInfo, QueueStats } from "./jobs.js";
import { resultInfo } from "./jobs.js";
import { FINISHED, type Job, JobQueue, type Reservation } from "./queue.js";

export interface MemoryJobsOptions {
  /** Jobs waiting or running at once (default 8). */
  maxSize?: number;
  /** Finished jobs kept for GET /v1/jobs/:id (default 50). */
  keepFinished?: number;
  /** Bytes of finished results kept (oldest dropped first). */
  maxResultBytes?: number;
}

/** A snapshot of a live JobQueue job. */
function snapshot(job: Job, model: string, position: number | undefined): JobSnapshot {
  const r = job.result as GenerationResult | undefined;
  return {
    id: job.id,
    kind: job.kind,
    model,
    status: job.status,
    createdAt: job.createdAt,
    startedAt: job.startedAt,
    finishedAt: job.finishedAt,
    step: job.step,
    total: job.total,
    position,
    attempts: job.startedAt ? 1 : 0,
    interrupted: job.interrupted,
    expired: job.expired ?? false,
    error: job.error,
    meta: job.meta,
    result: r ? resultInfo(r) : undefined,
  };
}

/**
 * @example
 * const jobs = new MemoryJobs(engine, { maxSize: 8 });
 * const job = await jobs.submit({ kind: "img2img", model: engine.modelName, request }, {});
 * const done = await jobs.wait(job.id);
 */
export class MemoryJobs implements Jobs {
  readonly name = "embedded";
  /** The in-process queue (tests and shutdown read it directly). */
  readonly queue: JobQueue;
  private readonly finishedListeners = new Set<(f: FinishedJob) => void>();

  constructor(
    private readonly engine: Engine,
    opts: MemoryJobsOptions = {},
  ) {
    this.queue = new JobQueue({ maxSize: opts.maxSize ?? 8, keepFinished: opts.keepFinished, resultBytes, maxResultBytes: opts.maxResultBytes });
  }

  get maxSize(): number {
    return this.queue.maxSize;
  }

  async models(): Promise<ModelInfo[]> {
    return [this.engine];
  }

  async reserve(): Promise<Reservation> {
    return this.queue.reserve();
  }

  async submit(spec: JobSpec, meta: Record<string, unknown>, slot?: Reservation): Promise<JobSnapshot> {
    const stepMs: number[] = [];
    let last = 0;
    const work = jobWork(this.engine, spec);
    const job = this.queue.submit(
      spec.kind,
      (ctx) =>
        work({
          signal: ctx.signal,
          progress: (step, total, preview) => {
            const now = performance.now();
            if (last) stepMs.push(now - last);
            last = now;
            ctx.progress(step, total, preview);
          },
        }),
      meta,
      slot,
    );
    void job.done.then((j) => {
      const runMs = j.startedAt && j.finishedAt ? j.finishedAt - j.startedAt : undefined;
      const f: FinishedJob = { job: this.snap(j), runMs, stepMs };
      for (const l of this.finishedListeners) l(f);
    });
    return this.snap(job);
  }

  async get(id: string): Promise<JobSnapshot | undefined> {
    const job = this.queue.get(id);
    return job && this.snap(job);
  }

  async image(id: string, n: number): Promise<Buffer | "expired" | undefined> {
    const job = this.queue.get(id);
    if (job?.expired) return "expired";
    return (job?.result as GenerationResult | undefined)?.images[n]?.png;
  }

  async images(id: string): Promise<Buffer[]> {
    return ((this.queue.get(id)?.result as GenerationResult | undefined)?.images ?? []).map((im) => im.png);
  }

  async preview(id: string): Promise<Buffer | undefined> {
    const preview = this.queue.get(id)?.preview;
    return preview ? encodeImage(preview(), "png") : undefined;
  }

  async cancel(id: string): Promise<"cancelled" | "not-found" | "finished"> {
    return this.queue.cancel(id);
  }

  async interrupt(): Promise<string[]> {
    const job = this.queue.interrupt();
    return job ? [job.id] : [];
  }

  async running(): Promise<JobSnapshot[]> {
    const job = this.queue.running;
    return job ? [this.snap(job)] : [];
  }

  async watch(id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    return this.queue.subscribe(id, (e) => listener({ type: e.type, job: this.snap(e.job) }));
  }

  async wait(id: string): Promise<JobSnapshot | undefined> {
    const job = this.queue.get(id);
    return job && this.snap(await job.done);
  }

  async stats(): Promise<QueueStats> {
    const q = this.queue;
    const name = this.engine.modelName;
    return {
      size: q.size,
      maxSize: q.maxSize,
      running: q.running ? [q.running.id] : [],
      queued: q.queued.map((j) => j.id),
      depth: { [name]: q.queued.length },
      workers: { [name]: 1 },
      retainedBytes: q.retainedBytes,
    };
  }

  async retryAfterS(): Promise<number> {
    return this.queue.retryAfterS();
  }

  onFinished(listener: (f: FinishedJob) => void): () => void {
    this.finishedListeners.add(listener);
    return () => this.finishedListeners.delete(listener);
  }

  health() {
    return { ok: true };
  }

  /** Refuses new jobs (503), cancels the queued ones, stops the running one at its next step. */
  async close(): Promise<void> {
    this.queue.close();
    await this.queue.idle();
  }

  async dispose(): Promise<void> {}

  private snap(job: Job): JobSnapshot {
    return snapshot(job, this.engine.modelName, FINISHED.includes(job.status) ? undefined : this.queue.position(job.id));
  }
}
