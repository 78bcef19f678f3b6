// The Redis job backend of `reimagine serve --queue redis://...`: API processes hold no job state; jobs
// live in BullMQ (one queue per model, so a worker takes only jobs for the model it serves) and are run
// by `reimagine worker` processes (redis-worker.ts). Status and progress come from BullMQ's event
// stream (QueueEvents), previews and results from Redis keys; the bound is a shared slot set
// (redis-slots.ts); cancel sets a flag that the job's worker checks between steps (and is told at once
// over pub/sub). Redis unreachable: health() says why and the app answers 503 until it returns.
import { randomUUID } from "node:crypto";
import { type Job, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { FinishedJob, JobEvent, Jobs, JobSnapshot, JobSpec, ModelInfo, QueueStats, ResultInfo } from "./jobs.js";
import { UnavailableError } from "./jobs.js";
import { type Logger, silentLogger } from "./log.js";
import { FINISHED, type JobStatus, QueueFullError, type Reservation, ShuttingDownError } from "./queue.js";
import { pack, unpack } from "./redis-codec.js";
import { type ClusterKeys, clusterKeys, connectRedis, PREFIX, parseQueueUrl, type QueueAddress, queueName, redisOptions } from "./redis-connect.js";
import { cancelledSnapshot, type JobData, type JobProgress, type JobReturn, parseFailure } from "./redis-protocol.js";
import { liveWorkers, modelInfo, type WorkerRecord } from "./redis-registry.js";
import { Slots } from "./redis-slots.js";

export interface RedisJobsOptions {
  /** redis://HOST:PORT[/DB] */
  url: string;
  /** Jobs waiting or running at once across the cluster (default 8). */
  maxSize?: number;
  /** Results and job records are kept this long after a job ends (default 3600 s). */
  resultTtlS?: number;
  /** Workers store a preview every this many steps (default 1). */
  previewEvery?: number;
  /** The model of requests that name none (default: the first served, by name). */
  defaultModel?: string;
  /** Longest a request may hold a reserved slot before its job is queued (default 120 s). */
  reserveLeaseMs?: number;
  log?: Logger;
}

/** A jobs waiting for a worker (BullMQ states). */
const WAITING = new Set(["waiting", "wait", "prioritized", "delayed", "paused"]);
/** The longest a job's input waits in Redis for a worker (7 days); after it ends, resultTtlS. */
const PAYLOAD_TTL_MS = 7 * 24 * 3600 * 1000;

class Slot implements Reservation {
  consumed = false;
  constructor(
    readonly id: string,
    private readonly free: (id: string) => Promise<void>,
  ) {}
  release(): void {
    if (this.consumed) return;
    this.consumed = true;
    void this.free(this.id).catch(() => undefined);
  }
}

interface Watch {
  queue?: string;
  listeners: Set<(e: JobEvent) => void>;
  /** Events are emitted in order, one after the other. */
  chain: Promise<void>;
  last?: JobSnapshot;
}

/**
 * @example
 * const jobs = await RedisJobs.connect({ url: "redis://127.0.0.1:6379/0", maxSize: 32 });
 * const srv = await startServer({ jobs, port: 7860 });
 */
export class RedisJobs implements Jobs {
  readonly name: string;
  readonly maxSize: number;
  private readonly keys: ClusterKeys;
  private readonly slots: Slots;
  private readonly log: Logger;
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();
  private readonly watched = new Map<string, Watch>();
  private readonly owned = new Set<string>();
  private readonly finishedListeners = new Set<(f: FinishedJob) => void>();
  private readonly refresh: NodeJS.Timeout;
  private lastError?: string;
  private closed = false;
  private modelsCache?: { at: number; workers: Promise<WorkerRecord[]> };

  /** Connects (a one-line error when Redis cannot be reached) and starts following the cluster's queues. */
  static async connect(opts: RedisJobsOptions): Promise<RedisJobs> {
    const address = parseQueueUrl(opts.url);
    return new RedisJobs(address, await connectRedis(address, "command"), opts);
  }

  private constructor(
    private readonly address: QueueAddress,
    private readonly redis: Redis,
    private readonly opts: RedisJobsOptions,
  ) {
    this.name = address.shown;
    this.maxSize = opts.maxSize ?? 8;
    this.keys = clusterKeys();
    this.slots = new Slots(redis, this.keys.slots);
    this.log = opts.log ?? silentLogger();
    let down = false;
    redis.on("error", (e: Error) => {
      this.lastError = e.message;
      if (!down) this.log.warn({ err: e.message }, "queue backend unavailable");
      down = true;
    });
    redis.on("ready", () => {
      if (down) this.log.info("queue backend available again");
      down = false;
      this.lastError = undefined;
    });
    // follow every model queue's events (new models appear when their first worker starts)
    const follow = () =>
      void this.knownQueues().then(
        (qs) => {
          for (const q of Object.keys(qs)) this.follow(q);
        },
        () => undefined,
      );
    follow();
    this.refresh = setInterval(follow, 2_000);
  }

  health() {
    if (this.redis.status === "ready") return { ok: true };
    const why = this.lastError ?? `connection ${this.redis.status}`;
    return { ok: false, reason: `the job queue (Redis at ${this.address.shown}) is unavailable: ${why}; retrying every second` };
  }

  async models(): Promise<ModelInfo[]> {
    const byName = new Map<string, ModelInfo>();
    for (const w of await this.workers()) if (!byName.has(w.model.modelName)) byName.set(w.model.modelName, modelInfo(w.model));
    const preferred = this.opts.defaultModel;
    return [...byName.values()].sort((a, b) => Number(b.modelName === preferred) - Number(a.modelName === preferred) || a.modelName.localeCompare(b.modelName));
  }

  async reserve(): Promise<Reservation> {
    if (this.closed) throw new ShuttingDownError();
    const id = randomUUID();
    const lease = this.opts.reserveLeaseMs ?? 120_000;
    let ok = await this.guard(this.slots.reserve(id, this.maxSize, lease));
    if (!ok && (await this.reconcile())) ok = await this.guard(this.slots.reserve(id, this.maxSize, lease));
    if (!ok) throw new QueueFullError(await this.guard(this.slots.size()), await this.retryAfterS());
    return new Slot(id, (x) => this.slots.release(x));
  }

  async submit(spec: JobSpec, meta: Record<string, unknown>, slot?: Reservation): Promise<JobSnapshot> {
    const held = slot instanceof Slot && !slot.consumed ? slot : ((await this.reserve()) as Slot);
    held.consumed = true; // the job owns the slot now (freed when it finishes)
    const id = held.id;
    const k = this.keys;
    const q = queueName(spec.model);
    const { json, blobs } = pack(spec);
    const ttl = this.opts.resultTtlS ?? 3600;
    const data: JobData = { v: 1, model: spec.model, spec: json, blobs: blobs.length, meta, previewEvery: this.opts.previewEvery ?? 1, resultTtlS: ttl };
    try {
      const m = this.redis.multi().zadd(k.slots, "+inf", id).set(k.jobQueue(id), q).hset(k.queues, q, spec.model);
      if (blobs.length) m.rpush(k.payload(id), ...blobs).pexpire(k.payload(id), PAYLOAD_TTL_MS);
      await this.guard(m.exec());
      await this.guard(this.queue(q).add(spec.kind, data, { jobId: id, attempts: 1, removeOnComplete: { age: ttl }, removeOnFail: { age: ttl } }));
    } catch (e) {
      await this.redis
        .multi()
        .zrem(k.slots, id)
        .del(k.payload(id), k.jobQueue(id))
        .exec()
        .catch(() => undefined);
      throw e;
    }
    this.follow(q);
    this.log.info({ jobId: id, model: spec.model, kind: spec.kind }, "job queued");
    return (await this.get(id))!;
  }

  async get(id: string): Promise<JobSnapshot | undefined> {
    const q = await this.guard(this.redis.get(this.keys.jobQueue(id)));
    const job = q ? await this.guard(this.queue(q).getJob(id)) : undefined;
    return job ? this.snapshotOf(q!, job) : this.tombstone(id);
  }

  async image(id: string, n: number): Promise<Buffer | "expired" | undefined> {
    const ret = await this.returned(id);
    if (!ret) return undefined;
    const png = await this.guard(this.redis.lindexBuffer(ret.key, n));
    if (png) return png;
    return n < ret.images && !(await this.redis.exists(ret.key)) ? "expired" : undefined;
  }

  async images(id: string): Promise<Buffer[]> {
    const ret = await this.returned(id);
    return ret ? this.guard(this.redis.lrangeBuffer(ret.key, 0, -1)) : [];
  }

  async preview(id: string): Promise<Buffer | undefined> {
    return (await this.guard(this.redis.getBuffer(this.keys.preview(id)))) ?? undefined;
  }

  async cancel(id: string): Promise<"cancelled" | "not-found" | "finished"> {
    const k = this.keys;
    const q = await this.guard(this.redis.get(k.jobQueue(id)));
    const job = q ? await this.guard(this.queue(q).getJob(id)) : undefined;
    if (!q || !job) return (await this.tombstone(id)) ? "finished" : "not-found";
    const state = await this.guard(job.getState());
    if (state === "completed" || state === "failed" || state === "unknown") return "finished";
    if (WAITING.has(state)) {
      // the final snapshot first (watchers read it when BullMQ reports the removal), then the removal
      const ttl = (job.data as JobData).resultTtlS;
      const final = cancelledSnapshot(await this.snapshotOf(q, job, state));
      await this.guard(this.redis.set(k.cancelled(id), JSON.stringify(pack(final).json), "EX", ttl));
      try {
        await job.remove();
        await this.redis.multi().zrem(k.slots, id).del(k.payload(id)).expire(k.jobQueue(id), ttl).exec();
        this.log.info({ jobId: id, model: final.model }, "job cancelled while waiting");
        return "cancelled";
      } catch {
        await this.redis.del(k.cancelled(id)); // a worker took it meanwhile: stop it there
      }
    }
    await this.guard(
      this.redis
        .multi()
        .set(k.cancel(id), "1", "EX", 24 * 3600)
        .publish(k.cancelChannel, id)
        .exec(),
    );
    this.log.info({ jobId: id }, "job cancel requested");
    return "cancelled";
  }

  async interrupt(): Promise<string[]> {
    const ids = (await this.running()).map((j) => j.id);
    await Promise.all(ids.map((id) => this.cancel(id)));
    return ids;
  }

  async running(): Promise<JobSnapshot[]> {
    const out: JobSnapshot[] = [];
    for (const q of Object.keys(await this.knownQueues())) {
      for (const job of await this.guard(this.queue(q).getJobs(["active"]))) if (job?.id) out.push(await this.snapshotOf(q, job, "active"));
    }
    return out.sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0));
  }

  async watch(id: string, listener: (e: JobEvent) => void): Promise<() => void> {
    let w = this.watched.get(id);
    if (!w) {
      w = { listeners: new Set(), chain: Promise.resolve() };
      this.watched.set(id, w);
    }
    w.listeners.add(listener);
    w.queue ??= (await this.guard(this.redis.get(this.keys.jobQueue(id)))) ?? undefined;
    if (w.queue) await this.follow(w.queue).waitUntilReady();
    const watch = w;
    return () => {
      watch.listeners.delete(listener);
      if (watch.listeners.size === 0 && this.watched.get(id) === watch) this.watched.delete(id);
    };
  }

  async wait(id: string, opts: { owned?: boolean } = {}): Promise<JobSnapshot | undefined> {
    if (opts.owned) this.owned.add(id);
    try {
      return await new Promise<JobSnapshot | undefined>((resolve) => {
        let settled = false;
        let unwatch = () => {};
        const finish = (s: JobSnapshot | undefined) => {
          if (settled) return;
          settled = true;
          clearInterval(poll);
          unwatch();
          resolve(s);
        };
        // events give the answer at once; the poll covers events missed while Redis was away
        const check = () =>
          this.get(id).then(
            (s) => (!s || FINISHED.includes(s.status)) && finish(s),
            () => undefined,
          );
        const poll = setInterval(check, 1_000);
        this.watch(id, (e) => FINISHED.includes(e.job.status) && finish(e.job)).then(
          (u) => {
            if (settled) u();
            else unwatch = u;
            void check();
          },
          () => void check(),
        );
      });
    } finally {
      this.owned.delete(id);
    }
  }

  async stats(): Promise<QueueStats> {
    const queues = await this.knownQueues();
    const stats: QueueStats = { size: await this.guard(this.slots.size()), maxSize: this.maxSize, running: [], queued: [], depth: {}, workers: {} };
    for (const [q, model] of Object.entries(queues)) {
      const [running, queued] = await this.guard(
        Promise.all([this.queue(q).getRanges(["active"]), this.queue(q).getRanges(["prioritized", "wait"], 0, -1, true)]),
      );
      stats.running.push(...running);
      stats.queued.push(...queued);
      stats.depth[model] = queued.length;
    }
    for (const w of await this.workers()) stats.workers[w.model.modelName] = (stats.workers[w.model.modelName] ?? 0) + 1;
    return stats;
  }

  async retryAfterS(): Promise<number> {
    const recent = (await this.redis.lrange(this.keys.durations, 0, 19).catch(() => [])).map(Number);
    const mean = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : 1000;
    const lanes = (await this.workers().catch(() => [])).reduce((n, w) => n + w.concurrency, 0);
    const size = await this.slots.size().catch(() => this.maxSize);
    return Math.max(1, Math.ceil((mean * Math.max(1, size)) / Math.max(1, lanes) / 1000));
  }

  onFinished(listener: (f: FinishedJob) => void): () => void {
    this.finishedListeners.add(listener);
    return () => this.finishedListeners.delete(listener);
  }

  /** Refuses new jobs; the jobs of requests waiting here (A1111) are cancelled, the others stay queued. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.owned].map((id) => this.cancel(id).catch(() => undefined)));
    for (let t = 0; this.owned.size > 0 && t < 100; t++) await new Promise((r) => setTimeout(r, 50));
  }

  async dispose(): Promise<void> {
    clearInterval(this.refresh);
    await Promise.all([...this.events.values()].map((e) => e.close().catch(() => undefined)));
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  // ---------- internals ----------

  /** Redis errors while it is away become 503s with the reason; others pass through. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (e) {
      if (this.redis.status !== "ready" || /Stream isn't writeable|Connection is closed|ECONNREFUSED|ECONNRESET|MaxRetriesPerRequest/i.test(String(e))) {
        throw new UnavailableError(this.health().reason ?? `the job queue is unavailable: ${(e as Error).message}`);
      }
      throw e;
    }
  }

  private workers(): Promise<WorkerRecord[]> {
    if (!this.modelsCache || Date.now() - this.modelsCache.at > 1000) {
      const workers = this.guard(liveWorkers(this.redis, this.keys));
      this.modelsCache = { at: Date.now(), workers };
      workers.catch(() => (this.modelsCache = undefined));
    }
    return this.modelsCache.workers;
  }

  /** Model queues ever used: queue name -> model name. */
  private knownQueues(): Promise<Record<string, string>> {
    return this.guard(this.redis.hgetall(this.keys.queues));
  }

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.redis, prefix: PREFIX });
      q.on("error", (e) => this.log.debug({ err: e.message, queue: name }, "queue error"));
      this.queues.set(name, q);
    }
    return q;
  }

  /** Reads a queue's event stream (once per queue and process). */
  private follow(q: string): QueueEvents {
    let ev = this.events.get(q);
    if (ev) return ev;
    ev = new QueueEvents(q, { connection: redisOptions(this.address, "worker"), prefix: PREFIX });
    ev.on("error", (e) => this.log.debug({ err: (e as Error).message, queue: q }, "queue events error"));
    ev.on("progress", ({ jobId, data }) => this.onProgress(jobId, data as JobProgress));
    for (const type of ["active", "waiting", "completed", "failed", "removed"] as const) {
      ev.on(type, (args: { jobId: string; prev?: string }) => {
        this.onChange(q, args.jobId);
        if (type === "completed" || type === "failed" || (type === "removed" && WAITING.has(args.prev ?? ""))) void this.reportFinished(args.jobId);
      });
    }
    this.events.set(q, ev);
    return ev;
  }

  private emit(w: Watch, make: () => Promise<JobEvent | undefined>): void {
    w.chain = w.chain.then(async () => {
      if (w.last && FINISHED.includes(w.last.status)) return; // nothing follows the end
      const e = await make().catch(() => undefined);
      if (!e) return;
      w.last = e.job;
      for (const l of w.listeners) l(e);
    });
  }

  /** A job of queue `q` changed state: its watchers, and the watchers of jobs waiting behind it (positions moved). */
  private onChange(q: string, jobId: string): void {
    for (const [id, w] of this.watched) {
      if (w.queue !== q || (id !== jobId && w.last && w.last.status !== "queued")) continue;
      this.emit(w, async () => {
        const job = await this.get(id);
        return job && { type: "status", job };
      });
    }
  }

  private onProgress(jobId: string, p: JobProgress): void {
    const w = this.watched.get(jobId);
    if (!w || typeof p !== "object") return;
    this.emit(w, async () => {
      const base = w.last ?? (await this.get(jobId));
      return base && { type: "progress", job: { ...base, status: "running" as JobStatus, position: undefined, step: p.step, total: p.total } };
    });
  }

  private async reportFinished(id: string): Promise<void> {
    if (this.finishedListeners.size === 0) return;
    const job = await this.get(id).catch(() => undefined);
    if (!job) return;
    const ret = await this.returned(id).catch(() => undefined);
    const failure = job.status !== "succeeded" ? await this.failure(id) : undefined;
    const f: FinishedJob = { job, runMs: ret?.runMs ?? failure?.runMs, stepMs: ret?.stepMs ?? [] };
    for (const l of this.finishedListeners) l(f);
  }

  private async failure(id: string) {
    const q = await this.redis.get(this.keys.jobQueue(id)).catch(() => null);
    const job = q
      ? await this.queue(q)
          .getJob(id)
          .catch(() => undefined)
      : undefined;
    return job?.failedReason ? parseFailure(job.failedReason) : undefined;
  }

  /** Frees job slots whose jobs have ended without freeing them (e.g. a worker killed just then). */
  private lastReconcile = 0;
  private async reconcile(): Promise<boolean> {
    if (Date.now() - this.lastReconcile < 1000) return false;
    this.lastReconcile = Date.now();
    let freed = false;
    for (const id of await this.guard(this.slots.jobs())) {
      const q = await this.redis.get(this.keys.jobQueue(id));
      const state = q ? await this.queue(q).getJobState(id) : "unknown";
      if (state === "completed" || state === "failed" || state === "unknown") {
        await this.slots.release(id);
        freed = true;
      }
    }
    return freed;
  }

  private async returned(id: string): Promise<JobReturn | undefined> {
    const q = await this.guard(this.redis.get(this.keys.jobQueue(id)));
    const job = q ? await this.guard(this.queue(q).getJob(id)) : undefined;
    return (job?.returnvalue as JobReturn | null) ?? undefined;
  }

  private async tombstone(id: string): Promise<JobSnapshot | undefined> {
    const json = await this.guard(this.redis.get(this.keys.cancelled(id)));
    return json ? (unpack(JSON.parse(json), []) as JobSnapshot) : undefined;
  }

  private async snapshotOf(q: string, read: Job, known?: string): Promise<JobSnapshot> {
    const id = read.id!;
    const state = known ?? (await this.guard(read.getState()));
    // `read` can predate the state: a job read while running that finished before getState() has no outcome
    // (no failedReason: a cancel would show as an internal error). Read it again once it has finished.
    const stale = (state === "completed" || state === "failed") && read.finishedOn === undefined;
    const job = (stale && (await this.guard(this.queue(q).getJob(id)))) || read;
    const data = job.data as JobData;
    const ret = (job.returnvalue as JobReturn | null) ?? undefined;
    const progress = (typeof job.progress === "object" ? job.progress : undefined) as JobProgress | undefined;
    let status: JobStatus = state === "active" ? "running" : state === "completed" ? "succeeded" : state === "failed" ? "failed" : "queued";
    let error: JobSnapshot["error"];
    let interrupted = false;
    if (status === "failed") {
      const f = parseFailure(job.failedReason);
      if (f.code === "cancelled") {
        status = "cancelled";
        interrupted = f.interrupted ?? false;
      } else error = { code: f.code, message: f.message };
    }
    if (status === "running") interrupted = (await this.redis.exists(this.keys.cancel(id))) === 1;
    const expired = status === "succeeded" && ret !== undefined && (await this.redis.exists(ret.key)) === 0;
    return {
      id,
      kind: job.name,
      model: data.model,
      status,
      createdAt: job.timestamp,
      startedAt: job.processedOn,
      finishedAt: FINISHED.includes(status) ? job.finishedOn : undefined,
      step: progress?.step ?? 0,
      total: progress?.total ?? 0,
      position: status === "queued" ? await this.position(q, id) : undefined,
      attempts: job.attemptsStarted ?? 0,
      worker: job.processedBy,
      interrupted,
      expired,
      error,
      meta: data.meta,
      result: status === "succeeded" && ret && !expired ? (unpack(ret.info, []) as ResultInfo) : undefined,
    };
  }

  /** Jobs ahead of a waiting one in its model's queue (running ones included), as the embedded queue counts. */
  private async position(q: string, id: string): Promise<number | undefined> {
    const [waiting, active] = await this.guard(Promise.all([this.queue(q).getRanges(["prioritized", "wait"], 0, -1, true), this.queue(q).getActiveCount()]));
    const i = waiting.indexOf(id);
    return i < 0 ? undefined : active + i;
  }
}
