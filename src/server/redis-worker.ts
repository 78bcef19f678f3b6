// A queue worker (`reimagine worker`): takes the jobs of its model's BullMQ queue, runs each with the
// same job work as the embedded server (generate.ts jobWork), stores progress, previews and result
// PNGs in Redis, and keeps a heartbeat record so API processes know the model is served.
// At-least-once execution, exactly-once results: a worker that dies loses its job lock, BullMQ's
// stalled-job check hands the job to another worker, which runs it again from the same seed; only the
// attempt that still holds the lock can complete it (its PNG list is named by attempt).
import { hostname } from "node:os";
import { type Job, UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { encodeImage, isAbortError, ReimagineError, type RGBImage } from "../index.js";
import type { Engine } from "./engine.js";
import { jobWork } from "./generate.js";
import { type JobSpec, resultInfo } from "./jobs.js";
import { type Logger, silentLogger } from "./log.js";
import { pack, unpack } from "./redis-codec.js";
import { type ClusterKeys, clusterKeys, connectRedis, PREFIX, parseQueueUrl, queueName, redisOptions } from "./redis-connect.js";
import type { Failure, JobData, JobProgress, JobReturn } from "./redis-protocol.js";
import { heartbeat, modelRecord, type WorkerRecord } from "./redis-registry.js";

export interface QueueWorkerOptions {
  /** redis://HOST:PORT[/DB] */
  url: string;
  /** Loaded models, all the same model: one job runs on each at a time (the worker's concurrency). */
  engines: Engine[];
  /** Worker id in logs and the registry (default host-pid). */
  id?: string;
  /** Job lock: a job whose worker stops renewing it for this long is given to another worker (default 10 s). */
  lockMs?: number;
  /** How often this worker looks for such stalled jobs (default 5 s). */
  stalledCheckMs?: number;
  /** Registry heartbeat (default 1 s; the record expires after 4 missed beats). */
  heartbeatMs?: number;
  log?: Logger;
}

export interface QueueWorker {
  readonly id: string;
  readonly model: string;
  /** Jobs running now. */
  readonly busy: number;
  /** Graceful stop: takes no new job, finishes the running ones, then disconnects. (To stop at once, end
   *  the process: its jobs go back to the queue when their locks expire.) */
  close(): Promise<void>;
}

const fail = (f: Failure) => new UnrecoverableError(JSON.stringify(f)); // failures are final: no BullMQ retry

/** Sends a running job's progress (coalesced: only the newest waits while one is being written), its
 *  preview every few steps, and checks the cancel flag after each step it reports. */
class ProgressSender {
  readonly stepMs: number[] = [];
  private last = 0;
  private lastPreview = 0;
  private pending?: { step: number; total: number; preview?: () => RGBImage };
  private busy?: Promise<void>;

  constructor(
    private readonly job: Job,
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    private readonly every: number,
    private readonly controller: AbortController,
    private readonly log: Logger,
  ) {}

  report(step: number, total: number, preview?: () => RGBImage): void {
    const now = performance.now();
    if (this.last) this.stepMs.push(now - this.last);
    this.last = now;
    this.pending = { step, total, preview: preview ?? this.pending?.preview };
    this.busy ??= this.pump();
  }

  async flush(): Promise<void> {
    while (this.busy) await this.busy;
  }

  private async pump(): Promise<void> {
    for (let p = this.pending; p; p = this.pending) {
      this.pending = undefined;
      try {
        if (p.preview && (p.step - this.lastPreview >= this.every || p.step === p.total)) {
          const png = await encodeImage(p.preview(), "png");
          await this.redis.set(this.keys.preview(this.job.id!), png, "EX", 600);
          this.lastPreview = p.step;
        }
        await this.job.updateProgress({ step: p.step, total: p.total, preview: this.lastPreview } satisfies JobProgress);
        if ((await this.redis.exists(this.keys.cancel(this.job.id!))) === 1) this.controller.abort();
      } catch (e) {
        this.log.debug({ err: (e as Error).message }, "progress not sent");
      }
    }
    this.busy = undefined;
  }
}

/**
 * Starts taking jobs for the engines' model.
 * @example
 * const engine = await createWorkerEngine("stabilityai/sd-turbo");
 * const worker = await startQueueWorker({ url: "redis://127.0.0.1:6379", engines: [engine] });
 * process.on("SIGTERM", () => void worker.close());
 */
export async function startQueueWorker(opts: QueueWorkerOptions): Promise<QueueWorker> {
  if (opts.engines.length < 1) throw new ReimagineError("a queue worker needs at least one loaded model");
  const address = parseQueueUrl(opts.url);
  const keys = clusterKeys();
  const model = opts.engines[0].modelName;
  const queue = queueName(model);
  const id = opts.id ?? `${hostname()}-${process.pid}`;
  const base = opts.log ?? silentLogger();
  const log = base.bindings().worker === id ? base : base.child({ worker: id }); // every line names the worker
  const redis = await connectRedis(address, "worker");
  const sub = redis.duplicate();
  sub.on("error", () => undefined);
  const free = [...opts.engines];
  const active = new Map<string, AbortController>();

  // a cancel reaches the job's worker at once; the flag checked after every step covers missed messages
  await sub.subscribe(keys.cancelChannel);
  sub.on("message", (_channel: string, jobId: string) => active.get(jobId)?.abort());

  const processor = async (job: Job, token?: string): Promise<JobReturn> => {
    const jobId = job.id!;
    const data = job.data as JobData;
    const jlog = log.child({ jobId, model });
    const t0 = Date.now();
    const runMs = () => Date.now() - t0;
    if ((await redis.exists(keys.cancel(jobId))) === 1) throw fail({ code: "cancelled", message: "cancelled before it started", interrupted: false });
    const blobs = data.blobs ? await redis.lrangeBuffer(keys.payload(jobId), 0, -1) : [];
    if (blobs.length !== data.blobs)
      throw fail({ code: "internal_error", message: "the job's input is gone from Redis (expired or deleted): submit it again" });
    const spec = unpack(data.spec, blobs) as JobSpec;
    const engine = free.pop()!; // BullMQ runs at most `concurrency` = engines.length jobs at once
    const controller = new AbortController();
    active.set(jobId, controller);
    const progress = new ProgressSender(job, redis, keys, data.previewEvery, controller, jlog);
    jlog.info({ kind: job.name, attempt: job.attemptsStarted }, "job started");
    try {
      const result = await jobWork(engine, spec)({ signal: controller.signal, progress: (s, t, p) => progress.report(s, t, p) });
      await progress.flush();
      if (controller.signal.aborted) throw Object.assign(new Error("cancelled"), { name: "AbortError" });
      // this attempt's PNGs under its own key: a late, stale attempt cannot overwrite the completed one's
      const key = keys.result(jobId, (token ?? "0").replace(/[^\w-]/g, "_"));
      const m = redis.multi().del(key);
      if (result.images.length) m.rpush(key, ...result.images.map((im) => im.png)).expire(key, data.resultTtlS);
      await m.exec();
      jlog.info({ runMs: runMs(), images: result.images.length, stepsRun: result.stepsRun }, "job succeeded");
      return { model, info: pack(resultInfo(result)).json, key, images: result.images.length, runMs: runMs(), stepMs: progress.stepMs, worker: id };
    } catch (e) {
      await progress.flush().catch(() => undefined);
      if (controller.signal.aborted || isAbortError(e)) {
        jlog.info({ runMs: runMs() }, "job cancelled");
        throw fail({ code: "cancelled", message: "cancelled while running; nothing was saved", runMs: runMs(), interrupted: true });
      }
      if (e instanceof ReimagineError) {
        jlog.warn({ code: e.code, err: e.message, runMs: runMs() }, "job failed");
        throw fail({ code: e.code, message: e.message, runMs: runMs() });
      }
      jlog.error({ err: e, runMs: runMs() }, "job failed: internal error");
      throw fail({ code: "internal_error", message: "internal error while generating; see the worker's log", runMs: runMs() });
    } finally {
      active.delete(jobId);
      free.push(engine);
    }
  };

  const worker = new Worker(queue, processor, {
    connection: redisOptions(address, "worker"),
    prefix: PREFIX,
    concurrency: opts.engines.length,
    name: id,
    lockDuration: opts.lockMs ?? 10_000,
    stalledInterval: opts.stalledCheckMs ?? 5_000,
    maxStalledCount: 1,
  });
  worker.on("error", (e) => log.warn({ err: e.message }, "queue error"));
  // bookkeeping once BullMQ has recorded the outcome: free the job's slot, let its input go, note the time
  const settle = (job: Job | undefined) => {
    if (!job?.id) return;
    const data = job.data as JobData;
    const runMs = job.finishedOn && job.processedOn ? job.finishedOn - job.processedOn : undefined;
    const m = redis
      .multi()
      .zrem(keys.slots, job.id)
      .del(keys.payload(job.id), keys.cancel(job.id), keys.preview(job.id))
      .expire(keys.jobQueue(job.id), data.resultTtlS);
    if (runMs !== undefined) m.lpush(keys.durations, runMs).ltrim(keys.durations, 0, 19);
    void m.exec().catch((e) => log.warn({ jobId: job.id, err: (e as Error).message }, "bookkeeping failed"));
  };
  worker.on("completed", settle);
  worker.on("failed", settle);

  const record: WorkerRecord = {
    id,
    host: hostname(),
    pid: process.pid,
    queue,
    concurrency: opts.engines.length,
    startedAt: Date.now(),
    model: modelRecord(opts.engines[0]),
  };
  const stopBeat = heartbeat(redis, keys, record, opts.heartbeatMs ?? 1_000, (e) => log.debug({ err: (e as Error).message }, "heartbeat not written"));
  await worker.waitUntilReady();
  log.info({ model, queue, concurrency: opts.engines.length }, "worker taking jobs");

  let closing: Promise<void> | undefined;
  return {
    id,
    model,
    get busy() {
      return active.size;
    },
    close: () => {
      closing ??= (async () => {
        await stopBeat(); // no longer offered to API processes
        log.info({ running: active.size }, "worker stopping: no new jobs, finishing the running ones");
        await worker.close();
        await sub.quit().catch(() => sub.disconnect());
        await redis.quit().catch(() => redis.disconnect());
        log.info("worker stopped");
      })();
      return closing;
    },
  };
}
