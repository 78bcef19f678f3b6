// The server over real HTTP (fake engine): 30 concurrent requests vs a queue of 8, interrupt
// latency, API key, body/host/origin guards, and a clear error for a busy port.
import { afterEach, describe, expect, it } from "vitest";
import { encodeImage } from "../image.js";
import { createApp, type RunningServer, startServer } from "./app.js";
import { createFakeEngine } from "./fake-engine.js";

let servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function start(opts: Partial<Parameters<typeof startServer>[0]> = {}, stepMs = 0) {
  const srv = await startServer({ engine: createFakeEngine({ stepMs }), port: 0, webRoot: "/nonexistent", ...opts });
  servers.push(srv);
  return srv;
}

const b64 = async (w = 64, h = 64) => (await encodeImage({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(120) }, "png")).toString("base64");

describe("server over HTTP", () => {
  it("30 concurrent requests against a queue of 8: only successes and 429s, every accepted job finishes, the server answers afterwards", async () => {
    const srv = await start({ queueSize: 8 }, 10);
    const image = await b64();
    const post = (path: string, body: unknown) =>
      fetch(`${srv.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    // half through the blocking A1111 route, half through the native job route
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        i % 2
          ? post("sdapi/v1/img2img", { init_images: [image], steps: 10, denoising_strength: 1, width: 64, height: 64 })
          : post("v1/img2img", { image, steps: 10, strength: 1 }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.every((s) => s === 200 || s === 202 || s === 429)).toBe(true);
    const rejected = responses.filter((r) => r.status === 429);
    expect(rejected.length).toBeGreaterThan(0);
    expect(30 - rejected.length).toBeGreaterThanOrEqual(8);
    for (const r of rejected) {
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(JSON.stringify(await r.json())).toMatch(/queue is full/);
    }
    for (const r of responses.filter((x) => x.status === 200)) expect(((await r.json()) as any).images).toHaveLength(1);
    const jobs = await Promise.all(responses.filter((r) => r.status === 202).map((r) => r.json() as Promise<any>));
    await srv.queue.idle();
    for (const j of jobs) {
      const view = (await (await fetch(`${srv.url}v1/jobs/${j.id}`)).json()) as any;
      expect(view.status).toBe("succeeded");
    }
    const again = await post("v1/img2img", { image, steps: 4 });
    expect(again.status).toBe(202);
    expect((await fetch(`${srv.url}sdapi/v1/progress`)).status).toBe(200);
  });

  it("POST /sdapi/v1/interrupt ends a running job within about one step", async () => {
    const stepMs = 50;
    const srv = await start({}, stepMs);
    const pending = fetch(`${srv.url}sdapi/v1/img2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ init_images: [await b64()], steps: 150, denoising_strength: 1, width: 64, height: 64 }),
    });
    while ((srv.queue.running?.step ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
    const t0 = performance.now();
    await fetch(`${srv.url}sdapi/v1/interrupt`, { method: "POST" });
    const res = await pending;
    const latency = performance.now() - t0;
    expect(res.status).toBe(409);
    expect(latency).toBeLessThan(stepMs + 400);
    expect(srv.queue.size).toBe(0);
  });

  it("a client that disconnects from a blocking A1111 request cancels its job", async () => {
    const srv = await start({}, 20);
    const ctrl = new AbortController();
    const pending = fetch(`${srv.url}sdapi/v1/img2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ init_images: [await b64()], steps: 150, denoising_strength: 1, width: 64, height: 64 }),
      signal: ctrl.signal,
    }).catch(() => "aborted");
    while ((srv.queue.running?.step ?? 0) < 1) await new Promise((r) => setTimeout(r, 5));
    const job = srv.queue.running!;
    ctrl.abort();
    expect(await pending).toBe("aborted");
    await job.done;
    expect(job.status).toBe("cancelled");
  });

  it("with --api-key every API route needs the key (Bearer, or Basic with the key as password); the UI page does not", async () => {
    const srv = await start({ apiKey: "s3cret" });
    const get = (path: string, authorization?: string) => fetch(`${srv.url}${path}`, { headers: authorization ? { authorization } : {} });
    const none = await get("v1/models");
    expect(none.status).toBe(401);
    expect(((await none.json()) as any).error.message).toMatch(/Authorization: Bearer/);
    expect((await get("v1/models", "Bearer wrong")).status).toBe(401);
    expect((await get("sdapi/v1/options")).status).toBe(401);
    expect((await get("v1/models", "Bearer s3cret")).status).toBe(200);
    expect((await get("sdapi/v1/sd-models", `Basic ${Buffer.from("anyone:s3cret").toString("base64")}`)).status).toBe(200);
    expect((await get("v1/jobs/x/events")).status).toBe(401);
    expect((await get("")).status).toBe(200);
  });

  it("refuses bodies over the size limit with 413", async () => {
    const srv = await start({ maxBodyBytes: 10_000 });
    const res = await fetch(`${srv.url}v1/img2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image: "A".repeat(20_000) }),
    });
    expect(res.status).toBe(413);
  });

  it("refuses cross-site POSTs and, on loopback, foreign Host names (DNS rebinding)", async () => {
    const { app } = createApp(createFakeEngine(), { loopbackOnly: true, webRoot: "/nonexistent" });
    const evilHost = await app.request("http://evil.example/v1/models", { headers: { host: "evil.example" } });
    expect(evilHost.status).toBe(403);
    const ok = await app.request("http://127.0.0.1:7860/v1/models", { headers: { host: "127.0.0.1:7860" } });
    expect(ok.status).toBe(200);
    const crossSite = await app.request("http://127.0.0.1:7860/sdapi/v1/interrupt", {
      method: "POST",
      headers: { host: "127.0.0.1:7860", origin: "http://evil.example" },
    });
    expect(crossSite.status).toBe(403);
    const sameSite = await app.request("http://127.0.0.1:7860/sdapi/v1/interrupt", {
      method: "POST",
      headers: { host: "127.0.0.1:7860", origin: "http://127.0.0.1:7860" },
    });
    expect(sameSite.status).toBe(200);
  });

  it("binds 127.0.0.1 by default and names the fix when the port is taken", async () => {
    const a = await start();
    expect(a.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect((a.server.address() as { address: string }).address).toBe("127.0.0.1");
    await expect(startServer({ engine: createFakeEngine(), port: a.port })).rejects.toThrow(/port \d+ is in use: pass --port/);
  });
});
