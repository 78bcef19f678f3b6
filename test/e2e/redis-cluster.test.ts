// The queue mode as it is deployed: a real redis-server, one `reimagine serve --queue` process and two
// `reimagine worker` processes on the tiny fixture model. Images must equal the embedded mode's (the same
// model in this process behind the embedded queue); a worker killed mid-job, a worker stopped with
// SIGTERM, an API process killed mid-queue and a Redis outage must lose no job and run none twice to
// completion.
import { readFileSync } from "node:fs";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/server/app.js";
import { createWorkerEngine } from "../../src/server/worker-engine.js";
import { fixture, haveFixtures } from "../fixtures.js";
import { jobIdsLogged, type Proc, startApi, startWorker } from "../redis-cluster.js";
import { haveRedis, type RedisServer, startRedis } from "../redis-server.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!haveRedis() || !haveFixtures("sd-tiny"))("queue mode: 1 API process + 2 worker processes on Redis", () => {
  const model = fixture("sd-tiny", "model");
  const image = readFileSync(fixture("sd-tiny", "reference", "input.png")).toString("base64");
  let redis: RedisServer;
  let api: Proc & { url: string };
  const workers: Record<string, Proc> = {};
  let embedded: { app: Hono; close: () => Promise<void> };
  const procs: Proc[] = [];

  const worker = async (name: string) => {
    const w = await startWorker(redis.url, model, name);
    procs.push(w);
    workers[name] = w;
    return w;
  };
  const newApi = async () => {
    api = await startApi(redis.url, ["--queue-size", "64", "--result-ttl-s", "600"]);
    procs.push(api);
  };
  const http = (path: string, init?: RequestInit) => fetch(new URL(path, api.url), init);
  const postJson = (path: string, body: unknown) => http(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const nativeJob = (seed: number, steps = 6) => ({ image, prompt: "a red fox", seed, steps, strength: 1, width: 64, height: 64 });
  const a1111Job = (seed: number) => ({ init_images: [image], prompt: "a red fox", seed, steps: 4, denoising_strength: 0.5, width: 64, height: 64 });

  /** The same request through the embedded queue (this process, the same model): its PNG bytes. */
  const embeddedPng = async (path: "/v1/img2img" | "/sdapi/v1/img2img", body: unknown): Promise<Buffer> => {
    const res = await embedded.app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const j = (await res.json()) as any;
    if (path === "/sdapi/v1/img2img") return Buffer.from(j.images[0], "base64");
    for (;;) {
      const v = (await (await embedded.app.request(`/v1/jobs/${j.id}`)).json()) as any;
      if (v.status === "succeeded") return Buffer.from(await (await embedded.app.request(`/v1/jobs/${j.id}/images/0`)).arrayBuffer());
      if (v.status !== "queued" && v.status !== "running") throw new Error(`embedded job ${v.status}`);
      await sleep(50);
    }
  };
  const submit = async (body: unknown): Promise<string> => {
    const res = await postJson("/v1/img2img", body);
    expect(res.status).toBe(202);
    return ((await res.json()) as any).id;
  };
  const view = async (id: string) => (await (await http(`/v1/jobs/${id}`)).json()) as any;
  /** Waits until every job has finished; returns their views. */
  const settle = async (ids: string[], timeoutMs = 180_000) => {
    const t0 = Date.now();
    for (;;) {
      const views = await Promise.all(ids.map(view));
      if (views.every((v) => !["queued", "running"].includes(v.status))) return views;
      if (Date.now() - t0 > timeoutMs) throw new Error(`jobs unfinished: ${JSON.stringify(views.map((v) => [v.status, v.worker]))}`);
      await sleep(250);
    }
  };
  /** A job of `ids` running (on worker `name` when given) with at least `step` steps done. */
  const runningOn = async (ids: string[], name: string | undefined, step = 1) => {
    for (;;) {
      for (const id of ids) {
        const v = await view(id);
        if (v.status === "running" && (name === undefined || v.worker === name) && v.progress.step >= step) return v;
      }
      await sleep(50);
    }
  };
  const waitForModel = async () => {
    for (;;) {
      const res = await http("/v1/models").catch(() => undefined);
      if (res?.status === 200 && ((await res.json()) as any[]).length > 0) return;
      await sleep(200);
    }
  };

  beforeAll(async () => {
    redis = await startRedis();
    const engine = await createWorkerEngine(model, { threads: 1, prepack: true });
    const { app, queue } = createApp(engine, { webRoot: "/nonexistent", queueSize: 64 });
    embedded = {
      app,
      close: async () => {
        queue.close();
        await engine.close();
      },
    };
    await Promise.all([newApi(), worker("w1"), worker("w2")]);
    await waitForModel();
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop("SIGKILL")));
    await embedded?.close();
    await redis?.close();
  });

  it("20 A1111 requests from 4 concurrent clients: all answered, images identical to the embedded mode's, both workers used", async () => {
    const seeds = Array.from({ length: 20 }, (_, i) => 1000 + i);
    const clients = [0, 1, 2, 3].map(async (c) => {
      const out: [number, string][] = [];
      for (const seed of seeds.filter((_, i) => i % 4 === c)) {
        const res = await postJson("/sdapi/v1/img2img", a1111Job(seed));
        expect(res.status).toBe(200);
        out.push([seed, ((await res.json()) as any).images[0]]);
      }
      return out;
    });
    const got = (await Promise.all(clients)).flat();
    expect(got).toHaveLength(20);
    for (const [seed, b64] of got) expect(Buffer.from(b64, "base64").equals(await embeddedPng("/sdapi/v1/img2img", a1111Job(seed))), `seed ${seed}`).toBe(true);
    const ran = [jobIdsLogged(workers.w1, "job succeeded").length, jobIdsLogged(workers.w2, "job succeeded").length];
    expect(ran[0] + ran[1]).toBe(20);
    expect(Math.min(...ran)).toBeGreaterThan(0);
    // the API process's metrics: jobs by outcome, live workers, Redis up; /healthz
    const text = await (await http("/metrics")).text();
    const metric = (sample: string) =>
      Number(
        text
          .split("\n")
          .find((l) => l.startsWith(`${sample} `))
          ?.slice(sample.length + 1),
      );
    expect(metric('reimagine_jobs_total{model="model",outcome="succeeded"}')).toBe(20);
    expect(metric('reimagine_workers_alive{model="model"}')).toBe(2);
    expect(metric('reimagine_queue_depth{model="model"}')).toBe(0);
    expect(metric("reimagine_backend_up")).toBe(1);
    expect(metric('reimagine_job_duration_seconds_count{model="model",outcome="succeeded"}')).toBe(20);
    expect((await http("/healthz")).status).toBe(200);
    // JSON log lines: every job line names its job and worker (once)
    const lines = workers.w1
      .output()
      .split("\n")
      .filter((l) => l.includes('"msg":"job '));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(JSON.parse(l)).toMatchObject({ role: "worker", worker: "w1", jobId: expect.any(String) });
      expect(l.match(/"worker":/g)).toHaveLength(1);
    }
  });

  it("SIGKILL of a worker mid-job: its job is taken over by the other worker; 20 results, each completed exactly once; same image", async () => {
    const before = new Set([...jobIdsLogged(workers.w1, "job succeeded"), ...jobIdsLogged(workers.w2, "job succeeded")]);
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => submit(nativeJob(2000 + i))));
    const victim = await runningOn(ids, "w1", 2);
    expect(await workers.w1.stop("SIGKILL")).toEqual([null, "SIGKILL"]);
    const views = await settle(ids);
    expect(views.map((v) => v.status)).toEqual(ids.map(() => "succeeded"));
    const moved = views.find((v) => v.id === victim.id);
    expect(moved).toMatchObject({ attempts: 2, worker: "w2" });
    // exactly once: one "job succeeded" per job across both workers' logs
    const done = [...jobIdsLogged(workers.w1, "job succeeded"), ...jobIdsLogged(workers.w2, "job succeeded")].filter((id) => !before.has(id));
    expect(done.sort()).toEqual([...ids].sort());
    const png = Buffer.from(await (await http(`/v1/jobs/${victim.id}/images/0`)).arrayBuffer());
    expect(png.equals(await embeddedPng("/v1/img2img", nativeJob(2000 + ids.indexOf(victim.id))))).toBe(true);
    await worker("w3");
  });

  it("SIGTERM drains a worker: its running job completes there, it takes no new one, exits 0", async () => {
    const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => submit(nativeJob(3000 + i, 10))));
    const running = await runningOn(ids, "w2", 1);
    const w2 = workers.w2;
    expect(await w2.stop("SIGTERM")).toEqual([0, null]);
    const views = await settle(ids);
    expect(views.map((v) => v.status)).toEqual(ids.map(() => "succeeded"));
    expect(views.find((v) => v.id === running.id)).toMatchObject({ attempts: 1, worker: "w2" });
    const lines = w2.logs().map((l) => l.msg);
    const stopAt = lines.indexOf("worker stopping: no new jobs, finishing the running ones");
    expect(stopAt).toBeGreaterThan(-1);
    expect(lines.slice(stopAt)).not.toContain("job started");
    expect(jobIdsLogged(w2, "job succeeded")).toContain(running.id);
    await worker("w4");
  });

  it("cancel (DELETE /v1/jobs/:id) and A1111 interrupt reach the worker and stop the job within about one step", async () => {
    for (const stop of [(id: string) => http(`/v1/jobs/${id}`, { method: "DELETE" }), () => postJson("/sdapi/v1/interrupt", {})]) {
      const id = await submit(nativeJob(4000, 150));
      const v = await runningOn([id], undefined, 2);
      expect((await stop(id)).status).toBe(200);
      const [final] = await settle([id], 30_000);
      expect(final.status).toBe("cancelled");
      expect(final.progress.step).toBeLessThanOrEqual(v.progress.step + 3); // progress reports lag a step behind
      expect(final.progress.step).toBeLessThan(150);
    }
  });

  it("a job with an undecodable image fails alone with its error visible; the worker goes on with the next job", async () => {
    const png = readFileSync(fixture("sd-tiny", "reference", "input.png"));
    const truncated = png.subarray(0, Math.floor(png.length / 2)).toString("base64"); // the header passes the API's check
    const bad = await submit({ ...nativeJob(7000), image: truncated });
    const good = await submit(nativeJob(7001));
    const [b, g] = await settle([bad, good], 60_000);
    expect(b.status).toBe("failed");
    expect(b.error.code).not.toBe("internal_error");
    expect(b.error.message).toMatch(/image/i);
    expect(b.error.message).not.toContain("\n");
    expect(g.status).toBe("succeeded");
  });

  it("an API process killed mid-queue loses nothing: a new one serves every job to the end", async () => {
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => submit(nativeJob(5000 + i))));
    expect(await api.stop("SIGKILL")).toEqual([null, "SIGKILL"]);
    await newApi();
    const views = await settle(ids);
    expect(views.map((v) => v.status)).toEqual(ids.map(() => "succeeded"));
    for (const id of ids) {
      const res = await http(`/v1/jobs/${id}/images/0`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("image/png");
    }
  });

  it("Redis stopped: 503 with a one-line reason meanwhile; restarted: service resumes without restarting anything", async () => {
    await redis.stop();
    let ready = await http("/readyz");
    for (let t = 0; ready.status === 200 && t < 50; t++) {
      await sleep(100); // the API process notices the closed connection within moments
      ready = await http("/readyz");
    }
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as any).reason).toMatch(/^the job queue \(Redis at redis:\/\/127\.0\.0\.1:\d+\/0\) is unavailable: [^\n]+$/);
    const refused = await postJson("/v1/img2img", nativeJob(6000));
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as any).error.message).not.toContain("\n");
    await redis.start();
    for (let t = 0; (await http("/readyz")).status !== 200; t++) {
      expect(t).toBeLessThan(300);
      await sleep(100);
    }
    const [done] = await settle([await submit(nativeJob(6001))], 60_000);
    expect(done.status).toBe("succeeded");
  });
});
