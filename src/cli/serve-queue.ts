// `reimagine serve --queue redis://...`: the HTTP front end (web UI, native API, A1111 subset) over the
// Redis job queue, loading no model: `reimagine worker` processes run the jobs. Logs are JSON lines
// (pino). SIGTERM/SIGINT: no new requests, the jobs of A1111 requests waiting here are cancelled (no one
// else can take their result), queued native jobs stay in the queue for the other API processes.
import type { StartServerOptions } from "../server/app.js";
import { startServer } from "../server/app.js";
import { createLogger } from "../server/log.js";
import { RedisJobs } from "../server/redis-jobs.js";
import type { ServeQueue } from "./args-queue.js";

export interface ServeQueueOptions extends ServeQueue, Omit<StartServerOptions, "engine" | "jobs"> {
  /** Default model of requests that name none. */
  model?: string;
}

/**
 * Serves until SIGINT/SIGTERM; returns the exit code (errors are thrown as ReimagineErrors).
 * @example await serveQueue({ url: "redis://127.0.0.1:6379", port: 7860, queueSize: 32 });
 */
export async function serveQueue(opts: ServeQueueOptions): Promise<number> {
  const log = createLogger({ role: "api" });
  const { url, resultTtlS, model, ...server } = opts;
  const jobs = await RedisJobs.connect({
    url,
    maxSize: server.queueSize,
    resultTtlS,
    previewEvery: server.previewEvery ?? 1,
    defaultModel: model,
    reserveLeaseMs: ((server.requestTimeoutS ?? 60) + 30) * 1000, // a request has its body in by then
    log,
  });
  let srv;
  try {
    srv = await startServer({ ...server, jobs });
  } catch (e) {
    await jobs.dispose();
    throw e;
  }
  const workers = (await jobs.models().catch(() => [])).map((m) => m.modelName);
  log.info({ url: srv.url, queue: jobs.name, models: workers }, `Reimagine API at ${srv.url} over the queue ${jobs.name}`);
  if (workers.length === 0) log.warn("no worker is serving a model yet: start one with reimagine worker --queue URL --model M");
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) {
        log.warn("quitting at once");
        process.exit(130);
      }
      stopping = true;
      log.info("stopping: no new requests; queued jobs stay in the queue");
      void srv.close().then(() => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        log.info("stopped");
        resolve();
      });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  return 0;
}
