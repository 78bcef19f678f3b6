// Prometheus metrics of a job backend (prom-client, one registry per app): queue depth and workers per
// model and the queue bound (read from the backend at each scrape), jobs by outcome, job and step
// durations (counted as jobs finish). With the Redis queue every API process sees every job of the
// cluster, so each one's /metrics describes the whole cluster (scrape one, or aggregate with max()).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Jobs, QueueStats } from "./jobs.js";

/** Seconds: a step of a tiny model (ms) up to a large image on a CPU (tens of s). */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const JOB_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export interface AppMetrics {
  registry: Registry;
  /** Stops counting (the backend's finished-job listener). */
  dispose(): void;
}

/**
 * @example const { registry } = createMetrics(jobs); const text = await registry.metrics();
 */
export function createMetrics(jobs: Jobs): AppMetrics {
  const registry = new Registry();
  // one backend read per scrape, shared by the gauges below (prom-client collects them together)
  let scrape: { at: number; stats: Promise<QueueStats | undefined> } | undefined;
  const stats = () => {
    if (!scrape || Date.now() - scrape.at > 250) scrape = { at: Date.now(), stats: jobs.stats().catch(() => undefined) };
    return scrape.stats;
  };
  const perModel = (name: string, help: string, pick: (s: QueueStats) => Record<string, number>) =>
    new Gauge({
      name,
      help,
      labelNames: ["model"],
      registers: [registry],
      async collect() {
        const s = await stats();
        this.reset();
        for (const [model, n] of Object.entries(s ? pick(s) : {})) this.set({ model }, n);
      },
    });
  perModel("reimagine_queue_depth", "Jobs waiting to start, per model.", (s) => s.depth);
  perModel("reimagine_workers_alive", "Processes serving each model (embedded: the server itself).", (s) => s.workers);
  new Gauge({
    name: "reimagine_queue_size",
    help: "Jobs waiting or running plus reserved slots, across every model (refused with 429 at reimagine_queue_max).",
    registers: [registry],
    async collect() {
      this.set((await stats())?.size ?? 0);
    },
  });
  new Gauge({ name: "reimagine_queue_max", help: "The queue bound (--queue-size).", registers: [registry] }).set(jobs.maxSize);
  new Gauge({
    name: "reimagine_backend_up",
    help: "1 when the job backend (Redis for the queue mode) is reachable.",
    registers: [registry],
    collect() {
      this.set(jobs.health().ok ? 1 : 0);
    },
  });
  const finished = new Counter({ name: "reimagine_jobs_total", help: "Finished jobs by outcome.", labelNames: ["model", "outcome"], registers: [registry] });
  const jobSeconds = new Histogram({
    name: "reimagine_job_duration_seconds",
    help: "Running time of finished jobs (start to finish, queue wait excluded).",
    labelNames: ["model", "outcome"],
    buckets: JOB_BUCKETS,
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: "reimagine_step_duration_seconds",
    help: "Duration of each denoising step.",
    labelNames: ["model"],
    buckets: STEP_BUCKETS,
    registers: [registry],
  });
  const stop = jobs.onFinished(({ job, runMs, stepMs }) => {
    const labels = { model: job.model, outcome: job.status };
    finished.inc(labels);
    if (runMs !== undefined) jobSeconds.observe(labels, runMs / 1000);
    for (const ms of stepMs) stepSeconds.observe({ model: job.model }, ms / 1000);
  });
  return { registry, dispose: stop };
}
