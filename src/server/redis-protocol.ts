// What API processes and workers exchange through BullMQ: a job's data (its JobSpec packed as JSON with
// the image bytes in a separate Redis list), the return value of a completed job (result metadata; the
// PNGs in a list named by the attempt that completed), progress, and failure reasons as JSON.
import type { JobSnapshot } from "./jobs.js";

export interface JobData {
  v: 1;
  model: string;
  /** The JobSpec, packed (redis-codec.ts); its blobs are the job's payload list. */
  spec: unknown;
  blobs: number;
  meta: Record<string, unknown>;
  /** Store a preview every this many steps. */
  previewEvery: number;
  /** Results (and the job record) are kept this long after the job ends. */
  resultTtlS: number;
}

export interface JobReturn {
  model: string;
  /** ResultInfo, packed (bigint seeds tagged; no blobs). */
  info: unknown;
  /** List of the PNGs written by the attempt that completed. */
  key: string;
  images: number;
  runMs: number;
  stepMs: number[];
  worker: string;
}

export interface JobProgress {
  step: number;
  total: number;
  /** The step whose preview is stored (0: none yet). */
  preview: number;
}

/** A failed job's reason, as BullMQ stores it (a string). */
export interface Failure {
  code: string;
  message: string;
  runMs?: number;
  /** Stopped while running (as opposed to before it started). */
  interrupted?: boolean;
}

/** BullMQ's own reason for a job whose workers died `maxStalledCount` + 1 times. */
const STALLED = /stalled more than allowable limit/i;

/** Reads a failure reason written by a worker, or BullMQ's own (stalled jobs). */
export function parseFailure(reason: string | undefined): Failure {
  try {
    const f = JSON.parse(reason ?? "") as Failure;
    if (typeof f.code === "string" && typeof f.message === "string") return f;
  } catch {
    /* not ours */
  }
  if (STALLED.test(reason ?? "")) {
    return { code: "worker_lost", message: "the workers running this job stopped (killed, crashed or out of memory) more than once: it is not tried again" };
  }
  return { code: "internal_error", message: "internal error while running the job; see the worker's log" };
}

/** The final snapshot of a job cancelled while waiting (it is removed from BullMQ). */
export const cancelledSnapshot = (s: JobSnapshot): JobSnapshot => ({ ...s, status: "cancelled", position: undefined, finishedAt: Date.now() });
