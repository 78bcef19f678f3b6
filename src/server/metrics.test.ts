// Operations routes of the embedded server: /healthz, /readyz and /metrics (Prometheus text) after jobs
// of every outcome. The queue mode's are checked against real processes in test/e2e/redis-cluster.test.ts.
import { describe, expect, it } from "vitest";
import { encodeImage } from "../image.js";
import { createApp } from "./app.js";
import { createFakeEngine } from "./fake-engine.js";

/** The value of one sample line (`name{labels} value`) of a Prometheus text exposition. */
function metric(text: string, sample: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

describe("operations routes (embedded)", () => {
  it("healthz and readyz answer 200; metrics count jobs by outcome, their steps, the queue and the worker", async () => {
    const engine = createFakeEngine({ crashMessage: "model exploded" });
    const { app, queue } = createApp(engine, { webRoot: "/nonexistent", queueSize: 5 });
    try {
      expect((await app.request("/healthz")).status).toBe(200);
      const ready = await app.request("/readyz");
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: "ready", queue: "embedded", models: ["fake-model"] });
      const image = (await encodeImage({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3).fill(9) }, "png")).toString("base64");
      const post = (prompt: string) =>
        app.request("/v1/img2img", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ image, prompt, steps: 4, strength: 1, width: 32, height: 32 }),
        });
      const ids = [];
      for (const prompt of ["a", "b", "crash"]) ids.push(((await (await post(prompt)).json()) as { id: string }).id);
      for (const id of ids) {
        while (["queued", "running"].includes(((await (await app.request(`/v1/jobs/${id}`)).json()) as { status: string }).status)) {
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const res = await app.request("/metrics");
      expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      expect(metric(text, 'reimagine_jobs_total{model="fake-model",outcome="succeeded"}')).toBe(2);
      expect(metric(text, 'reimagine_jobs_total{model="fake-model",outcome="failed"}')).toBe(1);
      // steps timed report to report: 4 steps give 3 durations per job (the first also holds the encoding)
      expect(metric(text, 'reimagine_step_duration_seconds_count{model="fake-model"}')).toBeGreaterThanOrEqual(6);
      expect(metric(text, 'reimagine_job_duration_seconds_count{model="fake-model",outcome="succeeded"}')).toBe(2);
      expect(metric(text, 'reimagine_queue_depth{model="fake-model"}')).toBe(0);
      expect(metric(text, 'reimagine_workers_alive{model="fake-model"}')).toBe(1);
      expect(metric(text, "reimagine_queue_max")).toBe(5);
      expect(metric(text, "reimagine_backend_up")).toBe(1);
    } finally {
      queue.close();
    }
  });
});
