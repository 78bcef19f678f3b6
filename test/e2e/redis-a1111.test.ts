// The A1111 replay suite (src/server/a1111.case.ts: webuiapi and SillyTavern request shapes) through the
// Redis queue: the app over RedisJobs, a queue worker over the fake engine, a real redis-server.
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe } from "vitest";
import { a1111Replay, poster } from "../../src/server/a1111.case.js";
import { createApp } from "../../src/server/app.js";
import { createFakeEngine } from "../../src/server/fake-engine.js";
import { RedisJobs } from "../../src/server/redis-jobs.js";
import { startQueueWorker } from "../../src/server/redis-worker.js";
import { haveRedis, type RedisServer, startRedis } from "../redis-server.js";

describe.skipIf(!haveRedis())("A1111 API over the Redis queue", () => {
  let redis: RedisServer;
  let cleanup: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    for (const c of cleanup.reverse()) await c();
    cleanup = [];
  });
  afterAll(async () => {
    await redis?.close();
  });

  a1111Replay("redis", async (stepMs = 0) => {
    const admin = new Redis(redis.port, "127.0.0.1");
    await admin.flushall();
    await admin.quit();
    const engine = createFakeEngine({ stepMs });
    const worker = await startQueueWorker({ url: redis.url, engines: [engine], heartbeatMs: 200 });
    const jobs = await RedisJobs.connect({ url: redis.url });
    cleanup.push(
      () => worker.close(),
      async () => {
        await jobs.close();
        await jobs.dispose();
      },
    );
    const { app } = createApp(jobs, { webRoot: "/nonexistent" });
    return { engine, app, jobs, post: poster(app) };
  });
});
