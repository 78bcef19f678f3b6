// Native API (/v1) against the fake engine, in-process via app.request.
import { describe, expect, it } from "vitest";
import { encodeImage, loadImage, readImageParameters } from "../image.js";
import { createApp } from "./app.js";
import { createFakeEngine } from "./fake-engine.js";

const inputPng = (w = 64, h = 48) => encodeImage({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(180) }, "png");

function setup(opts: Parameters<typeof createApp>[1] = {}, stepMs = 0) {
  const engine = createFakeEngine({ stepMs, crashMessage: "model exploded" });
  const { app, queue } = createApp(engine, { webRoot: "/nonexistent", ...opts });
  const json = (path: string, body: unknown, method = "POST") =>
    app.request(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { engine, app, queue, json };
}

/** Parses an SSE body into [event, data] pairs. */
async function readSSE(res: Response): Promise<[string, any][]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((b) => b.includes("data:"))
    .map((b) => {
      const event = /^event: ?(.*)$/m.exec(b)?.[1] ?? "message";
      const data = b
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      return [event, JSON.parse(data)];
    });
}

describe("native API", () => {
  it("POST /v1/img2img (JSON, base64) queues a job whose PNGs have the requested size and A1111 metadata", async () => {
    const { json, app, queue, engine } = setup();
    const res = await json("/v1/img2img", { image: (await inputPng()).toString("base64"), prompt: "a red fox", negativePrompt: "blurry", strength: 0.5, steps: 10, guidanceScale: 6, seed: 1234, sampler: "Euler a", width: 96, height: 64, numImages: 2 });
    expect(res.status).toBe(202);
    const job = (await res.json()) as any;
    expect(job.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(job.url).toBe(`/v1/jobs/${job.id}`);
    await queue.idle();
    const view = (await (await app.request(job.url)).json()) as any;
    expect(view.status).toBe("succeeded");
    expect(view.progress).toMatchObject({ step: 5, total: 5, fraction: 1 });
    expect(view.settings).toMatchObject({ prompt: "a red fox", strength: 0.5, steps: 10, seed: 1234, sampler: "euler-a" });
    expect(view.result.images).toHaveLength(2);
    expect(engine.runs[0]).toMatchObject({ strength: 0.5, steps: 10, guidanceScale: 6, seed: 1234, sampler: "euler-a", numImages: 2, width: 96, height: 64 });
    for (const [i, im] of view.result.images.entries()) {
      const png = await app.request(im.url);
      expect(png.headers.get("content-type")).toBe("image/png");
      const bytes = Buffer.from(await png.arrayBuffer());
      const decoded = await loadImage(bytes);
      expect([decoded.width, decoded.height]).toEqual([96, 64]);
      const params = await readImageParameters(bytes);
      expect(params).toBe(im.infotext);
      expect(params).toContain("a red fox\nNegative prompt: blurry\nSteps: 10, Sampler: Euler a, CFG scale: 6, Seed: 1234, Size: 96x64");
      expect(params).toContain(`Batch pos: ${i}`);
    }
  });

  it("accepts a multipart upload with string fields", async () => {
    const { app, queue, engine } = setup();
    const form = new FormData();
    form.set("image", new Blob([new Uint8Array(await inputPng(40, 32))], { type: "image/png" }), "in.png");
    form.set("prompt", "a boat");
    form.set("strength", "0.8");
    form.set("steps", "5");
    form.set("seed", "-1");
    const res = await app.request("/v1/img2img", { method: "POST", body: form });
    expect(res.status).toBe(202);
    await queue.idle();
    const run = engine.runs[0];
    expect(run).toMatchObject({ prompt: "a boat", strength: 0.8, steps: 5, sampler: "euler" });
    expect(typeof run.seed).toBe("number"); // -1 became a concrete random seed
    expect([run.image.width, run.image.height]).toEqual([40, 32]);
  });

  it("refuses bad values with 422 naming the field, before queueing", async () => {
    const { json, queue } = setup();
    const image = (await inputPng()).toString("base64");
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ prompt: "x" }, "image", /image is missing/],
      [{ image: "not base64!!", prompt: "x" }, "image", /not valid base64/],
      [{ image: Buffer.from("hello").toString("base64") }, "image", /not a supported image/],
      [{ image, strength: 1.5 }, "strength", /strength must be a number between 0 and 1 \(got 1.5\)/],
      [{ image, steps: 2.5 }, "steps", /whole number/],
      [{ image, steps: 2, strength: 0.3 }, "steps", /2 x 0\.3 leaves no denoising step: raise strength to at least 0\.5 or steps to at least 4/],
      [{ image, sampler: "Heun++" }, "sampler", /unknown sampler "Heun\+\+": use one of .*"Euler a"/],
      [{ image, width: 100, height: 64 }, "width", /multiple of 8/],
      [{ image, seed: "abc" }, "seed", /seed must be -1/],
      [{ image, resizeMode: "stretch" }, "resizeMode", /resizeMode must be one of/],
    ];
    for (const [body, field, msg] of cases) {
      const res = await json("/v1/img2img", body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(422);
      const err = ((await res.json()) as any).error;
      expect(err.message).toMatch(msg);
      if (field !== "image" || body.image) expect(err.field).toBe(field);
    }
    const notJson = await setup().app.request("/v1/img2img", { method: "POST", headers: { "content-type": "application/json" }, body: "{oops" });
    expect(notJson.status).toBe(422);
    expect(queue.size).toBe(0);
  });

  it("refuses images over the pixel limit with 413", async () => {
    const { json } = setup({ maxPixels: 32 * 32 });
    const res = await json("/v1/img2img", { image: (await inputPng(64, 64)).toString("base64") });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.message).toMatch(/over the limit/);
    const big = await json("/v1/img2img", { image: (await inputPng(16, 16)).toString("base64"), width: 64, height: 64 });
    expect(big.status).toBe(413);
  });

  it("streams progress (with previews every few steps) and a final done event over SSE", async () => {
    const { json, app } = setup({ previewEvery: 3 }, 5);
    const job = (await (await json("/v1/img2img", { image: (await inputPng()).toString("base64"), steps: 10, strength: 1 })).json()) as any;
    const events = await readSSE(await app.request(job.events));
    const names = events.map(([e]) => e);
    expect(names[0]).toBe("status");
    expect(names.at(-1)).toBe("done");
    const progress = events.filter(([e]) => e === "progress").map(([, d]) => d);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.map((p) => p.step)).toEqual([...progress.map((p) => p.step)].sort((a, b) => a - b));
    expect(progress.at(-1)).toMatchObject({ step: 10, total: 10, fraction: 1 });
    expect(progress.some((p) => typeof p.etaMs === "number")).toBe(true);
    const previews = progress.filter((p) => p.preview);
    expect(previews.length).toBeGreaterThanOrEqual(2);
    expect(previews.length).toBeLessThan(progress.length + 1);
    const preview = await loadImage(Buffer.from(previews[0].preview.split(",")[1], "base64"));
    expect([preview.width, preview.height]).toEqual([8, 6]); // latent resolution of 64x48
    expect(events.at(-1)![1].status).toBe("succeeded");
  });

  it("DELETE cancels a running job within about one step and keeps no result; 404/409 otherwise", async () => {
    const { json, app, queue } = setup({}, 20);
    const image = (await inputPng()).toString("base64");
    const a = (await (await json("/v1/img2img", { image, steps: 100, strength: 1 })).json()) as any;
    const b = (await (await json("/v1/img2img", { image, steps: 5, strength: 1 })).json()) as any;
    expect(b.status).toBe("queued");
    while ((queue.get(a.id)?.step ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
    const t0 = performance.now();
    const del = await app.request(`/v1/jobs/${a.id}`, { method: "DELETE" });
    expect(del.status).toBe(200);
    await queue.get(a.id)!.done;
    expect(performance.now() - t0).toBeLessThan(500);
    const view = (await (await app.request(`/v1/jobs/${a.id}`)).json()) as any;
    expect(view.status).toBe("cancelled");
    expect(view.result).toBeNull();
    expect((await app.request(`/v1/jobs/${a.id}/images/0`)).status).toBe(404);
    await queue.idle();
    expect(queue.get(b.id)?.status).toBe("succeeded");
    expect((await app.request(`/v1/jobs/${b.id}`, { method: "DELETE" })).status).toBe(409);
    expect((await app.request(`/v1/jobs/nope`, { method: "DELETE" })).status).toBe(404);
  });

  it("a crashing job fails with a generic message and the server keeps answering", async () => {
    const { json, app, queue } = setup();
    const image = (await inputPng()).toString("base64");
    const origError = console.error;
    const logged: unknown[] = [];
    console.error = (...a: unknown[]) => logged.push(a); // the server logs the crash; keep test output clean
    let bad: any, good: any;
    try {
      bad = await (await json("/v1/img2img", { image, prompt: "crash please", steps: 4 })).json();
      good = await (await json("/v1/img2img", { image, prompt: "fine", steps: 4 })).json();
      await queue.idle();
    } finally {
      console.error = origError;
    }
    expect(String(logged[0])).toContain("model exploded");
    const v = (await (await app.request(`/v1/jobs/${bad.id}`)).json()) as any;
    expect(v.status).toBe("failed");
    expect(v.error.code).toBe("internal_error");
    expect(JSON.stringify(v)).not.toContain("model exploded");
    expect(queue.get(good.id)?.status).toBe("succeeded");
    expect((await app.request("/v1/models")).status).toBe(200);
  });

  it("POST /v1/sweep runs one image per strength with one seed and returns a labelled grid first", async () => {
    const { json, app, queue, engine } = setup();
    const res = await json("/v1/sweep", { image: (await inputPng()).toString("base64"), prompt: "p", steps: 10, seed: 7, strengths: [0.3, 0.6, 0.9] });
    expect(res.status).toBe(202);
    const job = (await res.json()) as any;
    await queue.idle();
    expect(engine.runs.map((r) => [r.strength, r.seed])).toEqual([[0.3, 7], [0.6, 7], [0.9, 7]]);
    const view = (await (await app.request(job.url)).json()) as any;
    expect(view.kind).toBe("sweep");
    expect(view.progress.step).toBe(view.progress.total);
    expect(view.progress.total).toBe(3 + 6 + 9);
    const [sheet, ...cells] = view.result.images;
    expect(cells.map((c: any) => c.strength)).toEqual([0.3, 0.6, 0.9]);
    for (const c of cells) expect(c.ssim).toBeGreaterThan(-1);
    const grid = await loadImage(Buffer.from(await (await app.request(sheet.url)).arrayBuffer()));
    expect(grid.width).toBeGreaterThan(3 * 64); // four cells side by side
    expect(sheet.infotext).toContain("Strength sweep: 0.30 0.60 0.90");
    const bad = await json("/v1/sweep", { image: (await inputPng()).toString("base64"), strengths: [0.5, 2] });
    expect(bad.status).toBe(422);
  });

  it("GET /v1/models and /v1/samplers describe the loaded engine", async () => {
    const { app } = setup();
    const models = (await (await app.request("/v1/models")).json()) as any;
    expect(models).toEqual([expect.objectContaining({ name: "fake-model", hash: "0f0f0f0f0f", loaded: true, vaeScaleFactor: 8 })]);
    const samplers = (await (await app.request("/v1/samplers")).json()) as any[];
    expect(samplers.find((s) => s.default)?.name).toBe("euler");
    expect(samplers.map((s) => s.a1111Name)).toContain("DPM++ 2M Karras");
    expect((await app.request("/v1/nope")).status).toBe(404);
  });

  it("serves a helpful page at / when the UI is not built", async () => {
    const { app } = setup();
    const res = await app.request("/");
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("web UI is not built");
  });
});
