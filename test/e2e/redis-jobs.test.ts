// The Jobs conformance suite (src/server/jobs.case.ts) against the Redis queue: a real redis-server,
// RedisJobs (the API side) and a queue worker over the fake engine, in this process.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe } from "vitest";
import { jobsConformance } from "../../src/server/jobs.case.js";
import { RedisJobs } from "../../src/server/redis-jobs.js";
import { startQueueWorker } from "../../src/server/redis-worker.js";
import { haveRedis, type RedisServer, startRedis } from "../redis-server.js";

describe.skipIf(!haveRedis())("Redis queue", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.close();
  });

  jobsConformance("redis", async ({ engine, maxSize }) => {
    const admin = new Redis(redis.port, "127.0.0.1");
    await admin.flushall();
    await admin.quit();
    const worker = await startQueueWorker({ url: redis.url, engines: [engine], heartbeatMs: 200 });
    const jobs = await RedisJobs.connect({ url: redis.url, maxSize, previewEvery: 1 });
    return {
      jobs,
      engine,
      close: async () => {
        await worker.close();
        await jobs.close();
        await jobs.dispose();
      },
    };
  });
});
