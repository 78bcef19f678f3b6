// Live workers of the Redis mode: each `reimagine worker` writes a record (its model's metadata,
// concurrency, host) that expires unless renewed every heartbeat; API processes read the live ones to
// list models (/v1/models, /sdapi/v1/sd-models), validate requests against a model's defaults and
// samplers without loading it, and count workers (/metrics).
import type { Redis } from "ioredis";
import type { SamplerInfo } from "./engine.js";
import type { ModelInfo } from "./jobs.js";
import type { ClusterKeys } from "./redis-connect.js";

export interface WorkerRecord {
  id: string;
  host: string;
  pid: number;
  queue: string;
  concurrency: number;
  startedAt: number;
  model: {
    modelName: string;
    modelHash: string;
    defaults: ModelInfo["defaults"];
    vaeScaleFactor: number;
    family?: string;
    nativeSize?: number;
    samplers: SamplerInfo[];
  };
}

/** The model record of a loaded Engine. */
export const modelRecord = (m: ModelInfo): WorkerRecord["model"] => ({
  modelName: m.modelName,
  modelHash: m.modelHash,
  defaults: m.defaults,
  vaeScaleFactor: m.vaeScaleFactor,
  family: m.family,
  nativeSize: m.nativeSize,
  samplers: m.samplers(),
});

/** A worker's model record as the routes use it. */
export const modelInfo = (r: WorkerRecord["model"]): ModelInfo => ({ ...r, samplers: () => r.samplers });

/**
 * Writes `record` now and every `everyMs` (it expires after 4 beats without renewal).
 * @returns stop(): removes the record at once
 */
export function heartbeat(redis: Redis, keys: ClusterKeys, record: WorkerRecord, everyMs: number, onError: (e: unknown) => void): () => Promise<void> {
  const beat = () =>
    redis
      .multi()
      .set(keys.worker(record.id), JSON.stringify(record), "PX", everyMs * 4)
      .zadd(keys.workers, String(Date.now()), record.id)
      .hset(keys.queues, record.queue, record.model.modelName)
      .exec()
      .catch(onError);
  void beat();
  const timer = setInterval(beat, everyMs);
  return async () => {
    clearInterval(timer);
    await redis.multi().del(keys.worker(record.id)).zrem(keys.workers, record.id).exec().catch(onError);
  };
}

/** Records of the workers alive now (expired ones are dropped from the index as a side effect). */
export async function liveWorkers(redis: Redis, keys: ClusterKeys): Promise<WorkerRecord[]> {
  const ids = await redis.zrange(keys.workers, "0", "-1");
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.worker(id)));
  const gone = ids.filter((_, i) => values[i] === null);
  if (gone.length) await redis.zrem(keys.workers, ...gone);
  return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerRecord);
}
