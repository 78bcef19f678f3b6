// `reimagine worker`: loads a model (--concurrency copies, each in its own child process) and runs the
// jobs of its model's queue on Redis until SIGTERM/SIGINT, which stops it gracefully: no new job, the
// running ones finish, exit 0; a second signal quits at once (the jobs go back to the queue). Logs: JSON
// lines (pino) on stdout.
import { availableParallelism, hostname } from "node:os";
import { ReimagineError } from "../index.js";
import { createLogger } from "../server/log.js";
import { checkRedis } from "../server/redis-connect.js";
import { startQueueWorker } from "../server/redis-worker.js";
import { createWorkerEngine } from "../server/worker-engine.js";
import { parseWorkerArgs, WORKER_HELP } from "./args-queue.js";

/**
 * Runs a queue worker until SIGINT/SIGTERM; returns the exit code.
 * @example process.exitCode = await workerMain(["--queue", "redis://127.0.0.1:6379", "--model", "stabilityai/sd-turbo"]);
 */
export async function workerMain(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseWorkerArgs(args);
  } catch (e) {
    process.stderr.write(`reimagine worker: ${(e as Error).message}\n\n${WORKER_HELP}`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(WORKER_HELP);
    return 0;
  }
  const id = flags.name ?? `${hostname()}-${process.pid}`;
  const log = createLogger({ role: "worker", worker: id }); // the id on every line, the loading ones too
  const engines: Awaited<ReturnType<typeof createWorkerEngine>>[] = [];
  try {
    await checkRedis(flags.queue); // a wrong --queue fails before the model loads
    const threads = flags.threads ?? Math.max(1, Math.floor(availableParallelism() / flags.concurrency));
    for (let i = 0; i < flags.concurrency; i++) {
      log.info({ model: flags.model ?? "the default model", copy: i + 1, of: flags.concurrency, threads }, "loading");
      const load = { threads, provider: flags.provider, quantize: flags.quantize, tinyVae: flags.tinyVae, previewVae: flags.previewVae };
      engines.push(await createWorkerEngine(flags.model, load, (status) => log.info({ status }, "loading")));
    }
    const worker = await startQueueWorker({ url: flags.queue, engines, id, lockMs: flags.lockMs, stalledCheckMs: flags.stalledCheckMs, log });
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = () => {
        if (stopping) {
          // the model processes end with this one; the jobs' locks expire and other workers take them over
          log.warn({ running: worker.busy }, "quitting at once: the running jobs go back to the queue when their locks expire");
          process.exit(130);
        }
        void worker
          .close()
          .then(() => Promise.all(engines.map((e) => e.close())))
          .then(() => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            resolve();
          });
        stopping = true;
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    return 0;
  } catch (e) {
    await Promise.all(engines.map((x) => x.close()));
    if (e instanceof ReimagineError) {
      log.error({ err: e.message }, "cannot start");
      process.stderr.write(`reimagine worker: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
