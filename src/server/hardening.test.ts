// The server as a hostile client meets it (fake engine): retained results bounded by bytes, a
// per-job compute budget, uploads checked by magic bytes and decoded inside the queue, SVG refused,
// deep JSON refused before anything runs, slow bodies timed out, image indexes validated, a Host
// allow-list, security headers, seeds above 2^53, fields validated before the job runs, 503 on stop;
// and (sd-tiny) a NaN-weight model's job fails instead of returning a black image.
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { describeWithFixtures } from "../../test/fixtures.js";
import { nanModel } from "../../test/nan-model.js";
import { encodeImage } from "../image.js";
import { loadPipeline } from "../pipeline/load.js";
import { createApp, defaultAllowedHosts, hostOf, type RunningServer, startServer } from "./app.js";
import { engineFromPipeline } from "./engine.js";
import { createFakeEngine } from "./fake-engine.js";
import { jsonTooDeep, sniffFormat } from "./http.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void; // a real collection, so memory figures are what is reachable

const png = (w = 64, h = 48) => encodeImage({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(150) }, "png");
const SVG = Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="60000" height="60000"><filter id="b"><feGaussianBlur stdDeviation="999"/></filter><rect width="100%" height="100%" filter="url(#b)"/></svg>',
);

function setup(opts: Parameters<typeof createApp>[1] = {}, engineOpts: Parameters<typeof createFakeEngine>[0] = {}) {
  const engine = createFakeEngine(engineOpts);
  const { app, queue } = createApp(engine, { webRoot: "/nonexistent", ...opts });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  return { engine, app, queue, post };
}

let servers: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

describe("server memory", () => {
  it("finished results are kept within --keep-results-mb (oldest dropped, 410 Gone), however many large outputs are asked for", async () => {
    const cap = 8 << 20;
    const { post, app, queue } = setup({ maxResultBytes: cap, maxPixels: 4 << 20 }, { noise: true });
    const image = (await png(64, 64)).toString("base64");
    gc();
    const before = process.memoryUsage().arrayBuffers;
    const ids: string[] = [];
    let largest = 0;
    for (let i = 0; i < 24; i++) {
      const res = await post("/v1/img2img", { image, width: 1024, height: 1024, steps: 2, strength: 1, seed: i }); // ~3 MiB of noise PNG each
      expect(res.status).toBe(202);
      const job = (await res.json()) as any;
      ids.push(job.id);
      await queue.idle();
      largest = Math.max(
        largest,
        ((queue.get(job.id)!.result as any)?.images ?? []).reduce((n: number, im: any) => n + im.png.length, 0),
      );
    }
    expect(largest).toBeGreaterThan(2 << 20); // the outputs really are large
    let reachable = 0;
    for (const id of ids) reachable += ((queue.get(id)?.result as any)?.images ?? []).reduce((n: number, im: any) => n + im.png.length, 0);
    expect(reachable).toBeLessThanOrEqual(cap + largest); // 24 x 3 MiB were produced
    expect(queue.retainedBytes).toBe(reachable);
    gc();
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(cap + largest + (16 << 20));
    // the newest is still there, the oldest answers 410 naming the flag
    expect((await app.request(`/v1/jobs/${ids.at(-1)}/images/0`)).status).toBe(200);
    const gone = await app.request(`/v1/jobs/${ids[0]}/images/0`);
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as any).error.message).toMatch(/--keep-results-mb/);
    expect(((await (await app.request(`/v1/jobs/${ids[0]}`)).json()) as any).expired).toBe(true);
  });

  it("a job over the compute budget (pixels x images x steps) is a 422 naming the limit and the flag, before queueing", async () => {
    const { post, queue, engine } = setup({ maxJobPixelSteps: 64 * 64 * 4 * 10, maxPixels: 1 << 20 });
    const image = (await png(64, 64)).toString("base64");
    const native = await post("/v1/img2img", { image, numImages: 8, steps: 20, strength: 1 });
    expect(native.status).toBe(422);
    const err = ((await native.json()) as any).error;
    expect(err).toMatchObject({ code: "job_too_large", field: "numImages" });
    expect(err.message).toMatch(/64x64 x 8 image\(s\) x 20 steps = 1M pixel-steps, over the server's limit of 0M \(reimagine serve --max-job-mpx-steps 0\)/);
    const sweep = await post("/v1/sweep", { image, steps: 40, strengths: "0.5,1" });
    expect(sweep.status).toBe(422);
    const a1111 = await post("/sdapi/v1/img2img", { init_images: [image], width: 64, height: 64, batch_size: 8, n_iter: 2, steps: 30, denoising_strength: 1 });
    expect(a1111.status).toBe(422);
    expect(((await a1111.json()) as any).detail[0].msg).toMatch(/--max-job-mpx-steps/);
    expect((await post("/v1/img2img", { image, numImages: 1, steps: 10, strength: 1 })).status).toBe(202); // within budget
    await queue.idle();
    expect(engine.runs).toHaveLength(1);
  });

  it("a full queue answers 429 before reading the body, so at most queue-size bodies are ever held", async () => {
    const srv = await startServer({ engine: createFakeEngine({ stepMs: 20 }), port: 0, webRoot: "/nonexistent", queueSize: 1 });
    servers.push(srv);
    const image = (await png()).toString("base64");
    const busy = fetch(`${srv.url}v1/img2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image, steps: 50, strength: 1 }),
    });
    expect((await busy).status).toBe(202);
    const t0 = performance.now();
    const line = await new Promise<string>((resolve) => {
      const s = connect(srv.port, "127.0.0.1", () =>
        s.write("POST /sdapi/v1/img2img HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{"),
      ); // the 50 MB never come
      s.on("data", (d) => {
        resolve(String(d).split("\r\n")[0]);
        s.destroy();
      });
    });
    expect(line).toMatch(/^HTTP\/1\.1 429/);
    expect(performance.now() - t0).toBeLessThan(1000);
    srv.queue.close();
  });

  it("uploads are decoded inside the queue: a PNG whose header is fine but whose data is damaged is accepted, then its job fails", async () => {
    const { post, queue, engine } = setup();
    const good = await png(64, 64);
    const damaged = good.subarray(0, good.length - 30); // IHDR intact, image data cut short
    const res = await post("/v1/img2img", { image: damaged.toString("base64"), steps: 4, strength: 1 });
    expect(res.status).toBe(202); // nothing was decoded before queueing
    const { id } = (await res.json()) as any;
    await queue.idle();
    const job = queue.get(id)!;
    expect(job.status).toBe("failed");
    expect(job.error?.message).toMatch(/^image: Cannot read image data: not a supported image or the file is damaged/);
    expect(engine.runs).toHaveLength(0);
  });
});

describe("server input handling", () => {
  it("refuses SVG (and anything not PNG/JPEG/WebP) by its bytes with 415, before any decoder runs", async () => {
    const { post, queue } = setup();
    const t0 = performance.now();
    const native = await post("/v1/img2img", { image: SVG.toString("base64"), prompt: "x" });
    expect(native.status).toBe(415);
    expect(((await native.json()) as any).error.message).toBe("image is an SVG: this server accepts PNG, JPEG and WebP images only");
    const a1111 = await post("/sdapi/v1/img2img", { init_images: [`data:image/svg+xml;base64,${SVG.toString("base64")}`] });
    expect(a1111.status).toBe(422); // A1111 clients get FastAPI's validation shape
    expect(((await a1111.json()) as any).detail[0].msg).toMatch(/an SVG/);
    expect(performance.now() - t0).toBeLessThan(5000); // librsvg would need 10+ s for this file
    expect(queue.size).toBe(0);
    expect(sniffFormat(await png())).toBe("png");
    expect(sniffFormat(await encodeImage({ width: 2, height: 2, data: new Uint8Array(12) }, "webp"))).toBe("webp");
    expect(sniffFormat(SVG)).toBeUndefined();
  });

  it("deeply nested JSON in an ignored field is refused before parsing or queueing", async () => {
    const { post, engine, queue } = setup();
    const image = (await png()).toString("base64");
    const deep = `{"init_images": ["${image}"], "alwayson_scripts": ${"[".repeat(200_000)}${"]".repeat(200_000)}}`;
    const res = await post("/sdapi/v1/img2img", deep);
    expect(res.status).toBe(422);
    expect(((await res.json()) as any).detail[0].msg).toMatch(/nests arrays\/objects deeper than 32 levels/);
    const native = await post("/v1/img2img", `{"image": "${image}", "x": ${'{"a":'.repeat(100)}1${"}".repeat(100)}}`);
    expect(native.status).toBe(422);
    await queue.idle();
    expect(engine.runs).toHaveLength(0);
    expect(jsonTooDeep('{"a": "[[[[[[[[[[[[", "b": [[1]]}', 3)).toBe(false); // brackets inside strings do not count
    expect(jsonTooDeep('{"a": "\\"[[[[", "b": [[[1]]]}', 3)).toBe(true);
  });

  it("validates the image index: non-numeric -> 422, never 500", async () => {
    const { post, app, queue } = setup();
    const { id } = (await (await post("/v1/img2img", { image: (await png()).toString("base64"), steps: 2, strength: 1 })).json()) as any;
    await queue.idle();
    for (const n of ["abc", "0%0a", "1e0", "-1", "0x0", "%20"]) {
      const res = await app.request(`/v1/jobs/${id}/images/${n}`);
      expect(res.status, n).toBe(422);
    }
    expect((await app.request(`/v1/jobs/${id}/images/0`)).status).toBe(200);
    expect((await app.request(`/v1/jobs/${id}/images/5`)).status).toBe(404);
  });

  it("an A1111 seed above 2^53 sent as a JSON number gets a message the client can act on; as a string it works", async () => {
    const { post, queue } = setup();
    const image = (await png()).toString("base64");
    const res = await post("/sdapi/v1/img2img", `{"init_images": ["${image}"], "steps": 2, "seed": 18446744073709551615}`);
    expect(res.status).toBe(422);
    expect(((await res.json()) as any).detail[0].msg).toMatch(/seed 18446744073709552000 is above 2\^53.*send the seed as a string/);
    const ok = await post("/sdapi/v1/img2img", { init_images: [image], steps: 2, seed: "18446744073709551615" });
    expect(ok.status).toBe(200);
    expect(JSON.parse(((await ok.json()) as any).info).seed).toBe("18446744073709551615");
    await queue.idle();
  });

  it("an invalid field is refused before the job runs, not after", async () => {
    const { post, engine } = setup();
    const res = await post("/sdapi/v1/img2img", { init_images: [(await png()).toString("base64")], steps: 2, send_images: "maybe" });
    expect(res.status).toBe(422);
    expect(((await res.json()) as any).detail[0].loc).toEqual(["body", "send_images"]);
    expect(engine.runs).toHaveLength(0);
  });

  it("answers only allowed Host names (loopback always), and every response carries X-Frame-Options and a CSP", async () => {
    const { app } = setup({ allowedHosts: ["192.168.1.5", "studio.lan"] });
    const get = (host: string) => app.request("/v1/queue", { headers: { host } });
    for (const ok of ["localhost:7860", "127.0.0.1", "[::1]:7860", "192.168.1.5:7860", "Studio.LAN"]) expect((await get(ok)).status, ok).toBe(200);
    for (const bad of ["evil.example", "evil.example:7860", "192.168.1.6", "studio.lan.evil.example"]) {
      const res = await get(bad);
      expect(res.status, bad).toBe(403);
      expect(((await res.json()) as any).error.message).toMatch(/--allowed-hosts/);
    }
    const page = await app.request("/", { headers: { host: "localhost" } });
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    expect(page.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    expect(page.headers.get("content-security-policy")).toMatch(/script-src 'self'/);
    expect(defaultAllowedHosts("127.0.0.1")).toEqual([]);
    expect(defaultAllowedHosts("192.168.1.5")).toEqual(["192.168.1.5"]);
    expect(defaultAllowedHosts("0.0.0.0")).toContain("127.0.0.1");
    expect(hostOf("[fe80::1]:80")).toBe("fe80::1");
  });

  it("a server bound to a LAN address does not answer arbitrary Host names by default", async () => {
    const srv = await startServer({ engine: createFakeEngine(), host: "127.0.0.2", port: 0, webRoot: "/nonexistent" });
    servers.push(srv);
    const status = (host: string) =>
      new Promise<string>((resolve) => {
        const s = connect(srv.port, "127.0.0.2", () => s.write(`GET /v1/queue HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
        let data = "";
        s.on("data", (d) => (data += d));
        s.on("close", () => resolve(data.split("\r\n")[0]));
      });
    expect(await status("127.0.0.2:1234")).toMatch(/ 200 /);
    expect(await status("attacker.example")).toMatch(/ 403 /);
  });

  it("times out a request body that never finishes (408) instead of holding the connection forever", async () => {
    const srv = await startServer({ engine: createFakeEngine(), port: 0, webRoot: "/nonexistent", requestTimeoutS: 1 });
    servers.push(srv);
    const t0 = performance.now();
    const first = await new Promise<string>((resolve) => {
      const s = connect(srv.port, "127.0.0.1", () => {
        s.write('POST /v1/img2img HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"image": "');
        const drip = setInterval(() => s.write("A"), 100); // a slowloris: a byte every 100 ms
        s.on("data", (d) => resolve(String(d).split("\r\n")[0]));
        s.on("close", () => {
          clearInterval(drip);
          resolve("closed");
        });
      });
    });
    expect(first).toMatch(/^HTTP\/1\.1 408/);
    expect(performance.now() - t0).toBeLessThan(4000);
  });

  it("a stopping server refuses new jobs with 503 and answers requests waiting on the cancelled job", async () => {
    const srv = await startServer({ engine: createFakeEngine({ stepMs: 20 }), port: 0, webRoot: "/nonexistent" });
    servers.push(srv);
    const image = (await png()).toString("base64");
    const post = (path: string, body: unknown) =>
      fetch(`${srv.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const waiting = post("sdapi/v1/img2img", { init_images: [image], steps: 100, denoising_strength: 1 });
    while (!srv.queue.running || srv.queue.running.step < 2) await new Promise((r) => setTimeout(r, 10));
    srv.queue.close();
    expect(() => srv.queue.reserve()).toThrow(/shutting down/);
    const res = await waiting;
    expect(res.status).toBe(409); // interrupted, nothing saved
    await srv.close();
  });
});

describeWithFixtures("a model with NaN weights behind the server (sd-tiny)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-nan-server-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("the job fails naming the UNet (native: failed job, no image; A1111: 422, not 200 with a black image)", async () => {
    const pipe = await loadPipeline(nanModel(join(dir, "model"), "unet", "conv_out.bias"), { cacheDir: join(dir, "cache"), threads: 1 });
    try {
      const { app, queue } = createApp(engineFromPipeline(pipe), { webRoot: "/nonexistent" });
      const post = (path: string, body: unknown) =>
        app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      const image = (await png(32, 32)).toString("base64");
      const native = await post("/v1/img2img", { image, prompt: "a cat", steps: 4, strength: 0.5 });
      expect(native.status).toBe(202);
      const { id } = (await native.json()) as any;
      await queue.idle();
      const job = (await (await app.request(`/v1/jobs/${id}`)).json()) as any;
      expect(job.status).toBe("failed");
      expect(job.error).toMatchObject({ code: "non_finite", message: expect.stringMatching(/^the UNet produced \d+ of \d+ values that are NaN or infinite/) });
      expect((await app.request(`/v1/jobs/${id}/images/0`)).status).toBe(404);
      const a1111 = await post("/sdapi/v1/img2img", { init_images: [image], prompt: "a cat", steps: 4, width: 32, height: 32 });
      expect(a1111.status).toBe(422);
      expect(((await a1111.json()) as any).detail).toMatch(/the UNet produced .* NaN or infinite/);
    } finally {
      await pipe.model.release();
    }
  });
});
