// Structured logs of the queue mode (pino): one JSON object per line on stdout, every line about a job
// carrying its `jobId` (and `model`), every line naming the process's `role` ("api" or "worker") and
// worker id. The embedded server keeps its plain console lines.
import { pino } from "pino";

export type Logger = pino.Logger;

/**
 * @example const log = createLogger({ role: "worker", worker: "w1" }); log.child({ jobId }).info("job started");
 */
export function createLogger(bindings: Record<string, unknown>, level = process.env.REIMAGINE_LOG_LEVEL ?? "info"): Logger {
  // synchronous writes: lines are few (per job, not per step) and nothing is lost when the process exits
  return pino({ level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}

/** A logger that writes nothing (tests, library use). */
export const silentLogger = (): Logger => pino({ level: "silent" });
