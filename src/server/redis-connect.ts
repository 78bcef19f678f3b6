// Where the Redis queue lives and how its parts are named: `--queue redis://[user:pass@]HOST:PORT[/DB]`
// (rediss:// for TLS) parsed into ioredis options, one BullMQ queue per model, and the keys this project
// adds beside BullMQ's (worker registry, queue bound, payloads, results, previews, cancel flags).
import { createHash } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { ReimagineError } from "../index.js";

export interface QueueAddress {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls: boolean;
  /** The URL without its password (logs, messages). */
  shown: string;
}

/**
 * Parses `--queue`.
 * @example parseQueueUrl("redis://127.0.0.1:6379/2") // { host: "127.0.0.1", port: 6379, db: 2, tls: false, ... }
 */
export function parseQueueUrl(url: string): QueueAddress {
  const bad = (why: string) => new ReimagineError(`--queue '${url}' ${why}: give redis://HOST:PORT[/DB], e.g. redis://127.0.0.1:6379/0`, "usage");
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw bad("is not a URL");
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw bad(`has the scheme '${u.protocol.replace(/:$/, "")}'; only redis and rediss are supported`);
  if (!u.hostname) throw bad("names no host");
  const path = u.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,2}$/.test(path)) throw bad(`has the path '/${path}'; only a database number (/0 to /15) may follow the port`);
  if (u.search || u.hash) throw bad("has a query or fragment");
  const port = u.port ? Number(u.port) : 6379;
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    host,
    port,
    db: path === "" ? 0 : Number(path),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === "rediss:",
    shown: `${u.protocol}//${u.username ? `${u.username}:***@` : u.password ? ":***@" : ""}${shownHost}:${port}/${path === "" ? 0 : Number(path)}`,
  };
}

/**
 * ioredis options. "command": a request-serving connection that fails at once while Redis is away (the
 * API answers 503 instead of hanging); "worker": waits and retries until Redis is back (BullMQ workers
 * and event readers need that: maxRetriesPerRequest null).
 */
export function redisOptions(a: QueueAddress, role: "command" | "worker"): Omit<RedisOptions, "retryStrategy"> & { retryStrategy: (times: number) => number } {
  return {
    host: a.host,
    port: a.port,
    db: a.db,
    username: a.username,
    password: a.password,
    tls: a.tls ? {} : undefined,
    connectTimeout: 5_000,
    // reconnect forever, at most a second apart, so service resumes by itself when Redis returns
    retryStrategy: (times) => Math.min(times * 100, 1_000),
    ...(role === "command" ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 } : { maxRetriesPerRequest: null }),
  };
}

/**
 * A connection that is up (or a one-line error after `timeoutMs`): processes start only against a
 * reachable Redis, and later outages are waited out.
 */
export async function connectRedis(a: QueueAddress, role: "command" | "worker", timeoutMs = 10_000): Promise<Redis> {
  const redis = new Redis({ ...redisOptions(a, role), lazyConnect: true });
  redis.on("error", () => undefined); // reported through health() / logs by the owner
  const timer = setTimeout(() => redis.disconnect(), timeoutMs);
  try {
    await redis.connect();
    return redis;
  } catch (e) {
    redis.disconnect();
    throw new ReimagineError(`cannot reach Redis at ${a.shown}: ${(e as Error).message} (is redis-server running? check --queue)`, "unavailable");
  } finally {
    clearTimeout(timer);
  }
}

/** Connects and disconnects: a one-line error when Redis cannot be reached (a CLI checks before loading a model). */
export async function checkRedis(url: string): Promise<void> {
  const redis = await connectRedis(parseQueueUrl(url), "command");
  await redis.quit().catch(() => redis.disconnect());
}

/** BullMQ key prefix; this project's own keys live under `${PREFIX}:cluster:`. */
export const PREFIX = "reimagine";

/**
 * The BullMQ queue of a model: readable and unique (BullMQ names cannot hold ':').
 * @example queueName("stabilityai/sd-turbo") // "model-stabilityai-sd-turbo-5c1b2a9e"
 */
export function queueName(model: string): string {
  const slug = model
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 48);
  return `model-${slug}-${createHash("sha1").update(model).digest("hex").slice(0, 8)}`;
}

/** Keys beside BullMQ's (all under one prefix: a Redis database can hold several clusters by DB number). */
export const clusterKeys = (p = PREFIX) => {
  const c = `${p}:cluster`;
  return {
    /** ZSET of queue slots: reservations (score = lease end, ms) and queued/running jobs (score +inf). */
    slots: `${c}:slots`,
    /** ZSET of worker ids (score = last heartbeat); each has a `worker` key that expires. */
    workers: `${c}:workers`,
    worker: (id: string) => `${c}:worker:${id}`,
    /** HASH of every model queue ever used: queue name -> model name. */
    queues: `${c}:queues`,
    /** job id -> its queue name. */
    jobQueue: (id: string) => `${c}:job:${id}:queue`,
    /** LIST of a job's input blobs. */
    payload: (id: string) => `${c}:job:${id}:payload`,
    /** LIST of a finished job's PNGs, per attempt (the completed attempt's key is in its return value). */
    result: (id: string, attempt: string) => `${c}:job:${id}:result:${attempt}`,
    /** The running job's latest preview PNG. */
    preview: (id: string) => `${c}:job:${id}:preview`,
    /** Set when a running job must stop; its worker checks it between steps. */
    cancel: (id: string) => `${c}:job:${id}:cancel`,
    /** A job cancelled while waiting (removed from BullMQ): its final snapshot, JSON. */
    cancelled: (id: string) => `${c}:job:${id}:cancelled`,
    /** LIST of recent job durations (ms), newest first: the Retry-After estimate. */
    durations: `${c}:durations`,
    /** Pub/sub channel: ids of jobs to cancel (workers stop them at once; the key above covers misses). */
    cancelChannel: `${c}:cancel`,
  };
};

export type ClusterKeys = ReturnType<typeof clusterKeys>;
