// The Jobs conformance suite (src/server/jobs.case.ts) against the Redis queue: a real redis-server,
// RedisJobs (the API side) and a queue worker over the fake engine, in this process.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeEngine } from "../../src/server/fake-engine.js";
import { jobsConformance, request } from "../../src/server/jobs.case.js";
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

  it("keeps a finished job and its PNGs --result-ttl-s seconds, then they are gone", async () => {
    const engine = createFakeEngine();
    const worker = await startQueueWorker({ url: redis.url, engines: [engine], heartbeatMs: 200 });
    const jobs = await RedisJobs.connect({ url: redis.url, resultTtlS: 2 });
    try {
      const job = await jobs.submit({ kind: "img2img", model: engine.modelName, request: await request({ seed: 3 }) }, {});
      const done = (await jobs.wait(job.id))!;
      expect(done.status).toBe("succeeded");
      const png = await jobs.image(job.id, 0);
      expect(Buffer.isBuffer(png) && png.subarray(1, 4).toString()).toBe("PNG");
      await new Promise((r) => setTimeout(r, 3_000));
      expect(await jobs.get(job.id)).toBeUndefined();
      expect(await jobs.image(job.id, 0)).toBeUndefined();
      const admin = new Redis(redis.port, "127.0.0.1");
      const left = await admin.keys(`reimagine:cluster:job:${job.id}:*`);
      await admin.quit();
      expect(left).toEqual([]);
    } finally {
      await worker.close();
      await jobs.close();
      await jobs.dispose();
    }
  });
});
