// AUTOMATIC1111 routes, replaying requests shaped exactly as the webuiapi Python client
// (mix1009/sdwebuiapi webuiapi.py img2img()) and SillyTavern (src/endpoints/stable-diffusion.js) send them.
// One suite for every job backend: a1111.test.ts runs it on the embedded queue, test/e2e/redis-a1111.test.ts
// on the Redis queue with a worker (both over the fake engine).
import type { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { sillyTavernTxt2img as sillyTavernBody } from "../../test/sillytavern.js";
import { encodeImage, loadImage, readImageParameters } from "../index.js";
import type { FakeEngine } from "./fake-engine.js";
import type { Jobs } from "./jobs.js";

export interface A1111Setup {
  engine: FakeEngine;
  app: Hono;
  jobs: Jobs;
  post: (path: string, body: unknown, headers?: Record<string, string>) => Response | Promise<Response>;
}

/** Builds an app whose jobs run on a fake engine with `stepMs` per step (cleanup is the caller's). */
export type MakeA1111 = (stepMs?: number) => Promise<A1111Setup>;

const png = (w: number, h: number) => encodeImage({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(90) }, "png");

/** A JSON POST through the app. */
export const poster =
  (app: Hono) =>
  (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

/** webuiapi.WebUIApi().img2img(images=[img], prompt=..., width=..., height=...) payload, every default included. */
export async function webuiapiPayload(over: Record<string, unknown> = {}) {
  return {
    init_images: [`data:image/png;base64,${(await png(80, 60)).toString("base64")}`],
    resize_mode: 0,
    denoising_strength: 0.75,
    mask_blur: 4,
    inpainting_fill: 0,
    inpaint_full_res: true,
    inpaint_full_res_padding: 0,
    inpainting_mask_invert: 0,
    initial_noise_multiplier: 1,
    prompt: "a cute cat, watercolor",
    styles: [],
    seed: -1,
    subseed: -1,
    subseed_strength: 0,
    seed_resize_from_h: 0,
    seed_resize_from_w: 0,
    batch_size: 1,
    n_iter: 1,
    steps: 20,
    cfg_scale: 7.0,
    image_cfg_scale: 1.5,
    width: 512,
    height: 512,
    restore_faces: false,
    tiling: false,
    do_not_save_samples: false,
    do_not_save_grid: false,
    negative_prompt: "",
    eta: 1.0,
    s_churn: 0,
    s_tmax: 0,
    s_tmin: 0,
    s_noise: 1,
    override_settings: {},
    override_settings_restore_afterwards: true,
    sampler_name: "Euler a",
    sampler_index: "Euler a",
    include_init_images: false,
    script_name: null,
    script_args: [],
    send_images: true,
    save_images: false,
    alwayson_scripts: {},
    ...over,
  };
}

/** The txt2img body SillyTavern forwards (its url/auth fields included), as this suite replays it. */
export const sillyTavernTxt2img = (over: Record<string, unknown> = {}) =>
  sillyTavernBody({
    prompt: "portrait of a knight",
    negative_prompt: "lowres",
    width: 128,
    height: 96,
    seed: 99,
    override_settings: { CLIP_stop_at_last_layers: 2, sd_vae: undefined },
    do_not_save_grid: false,
    do_not_save_samples: false,
    ...over,
  });

/**
 * Registers the replay suite.
 * @example a1111Replay("embedded", async (stepMs) => { const engine = createFakeEngine({ stepMs }); const { app, jobs } = createApp(engine); return { engine, app, jobs, post: poster(app) }; });
 */
export function a1111Replay(name: string, setup: MakeA1111): void {
  describe(`A1111 replay (${name})`, () => {
    describe("A1111 API: webuiapi client replay", () => {
      it("img2img with every field webuiapi sends: images decode at the requested size, info is a JSON string", async () => {
        const { post, engine } = await setup();
        const res = await post("/sdapi/v1/img2img", await webuiapiPayload({ seed: 42, width: 256, height: 192 }));
        expect(res.status).toBe(200);
        const body = (await res.json()) as any;
        expect(Object.keys(body).sort()).toEqual(["images", "info", "parameters"]);
        expect(body.images).toHaveLength(1);
        const bytes = Buffer.from(body.images[0], "base64");
        const img = await loadImage(bytes);
        expect([img.width, img.height]).toEqual([256, 192]);
        expect(typeof body.info).toBe("string");
        const info = JSON.parse(body.info);
        expect(info).toMatchObject({
          seed: 42,
          all_seeds: [42],
          width: 256,
          height: 192,
          sampler_name: "Euler a",
          steps: 20,
          cfg_scale: 7,
          denoising_strength: 0.75,
          batch_size: 1,
          sd_model_name: "fake-model",
        });
        expect(info.infotexts).toHaveLength(1);
        expect(await readImageParameters(bytes)).toBe(info.infotexts[0]);
        expect(info.infotexts[0]).toContain("Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 256x192");
        expect(body.parameters.init_images).toBeNull(); // include_init_images false, as A1111
        expect(body.parameters.prompt).toBe("a cute cat, watercolor");
        expect(engine.runs[0]).toMatchObject({
          strength: 0.75,
          steps: 20,
          guidanceScale: 7,
          sampler: "euler-a",
          seed: 42,
          width: 256,
          height: 192,
          resizeMode: "just-resize",
        });
      });

      it("takes raw base64 (no data: prefix), random seeds, resize modes and batch_size x n_iter", async () => {
        const { post, engine } = await setup();
        const res = await post(
          "/sdapi/v1/img2img",
          await webuiapiPayload({ init_images: [(await png(64, 64)).toString("base64")], batch_size: 2, n_iter: 2, resize_mode: 1, width: 64, height: 64 }),
        );
        expect(res.status).toBe(200);
        const body = (await res.json()) as any;
        expect(body.images).toHaveLength(4);
        const info = JSON.parse(body.info);
        expect(Number.isInteger(info.seed)).toBe(true);
        expect(info.seed).toBeGreaterThanOrEqual(0);
        // two runs of a batch of 2: run k is seeded seed + k * batch_size, as A1111 numbers them
        expect(info.all_seeds).toEqual([info.seed, info.seed, info.seed + 2, info.seed + 2]);
        expect(engine.runs.map((r) => [r.seed, r.numImages, r.resizeMode])).toEqual([
          [info.seed, 2, "crop-and-resize"],
          [info.seed + 2, 2, "crop-and-resize"],
        ]);
        for (const b64 of body.images) expect((await loadImage(Buffer.from(b64, "base64"))).width).toBe(64);
      });

      it("a missing init image gets A1111's 404 'Init image not found'", async () => {
        const { post } = await setup();
        for (const over of [{ init_images: undefined }, { init_images: null }, { init_images: [] }]) {
          const res = await post("/sdapi/v1/img2img", { ...(await webuiapiPayload()), ...over });
          expect(res.status).toBe(404);
          expect(await res.json()).toEqual({ error: "HTTPException", detail: "Init image not found", body: "", errors: "" });
        }
      });

      it("invalid values get 422 in FastAPI's shape with a message", async () => {
        const { post } = await setup();
        const cases: [Record<string, unknown>, string, RegExp][] = [
          [{ denoising_strength: 1.5 }, "denoising_strength", /between 0 and 1/],
          [{ steps: "many" }, "steps", /whole number/],
          [{ sampler_name: "Nonexistent", sampler_index: "Nonexistent" }, "sampler_name", /unknown sampler/],
          [{ resize_mode: 7 }, "resize_mode", /between 0 and 3/],
          [{ batch_size: 8, n_iter: 4 }, "n_iter", /at most 16/],
          [{ init_images: ["data:image/png;base64,AAAA"] }, "init_images", /not a PNG, JPEG or WebP file: this server accepts PNG, JPEG and WebP images only/],
        ];
        for (const [over, field, msg] of cases) {
          const res = await post("/sdapi/v1/img2img", await webuiapiPayload(over));
          expect(res.status, field).toBe(422);
          const body = (await res.json()) as any;
          expect(body.detail[0].loc).toEqual(["body", field]);
          expect(body.detail[0].msg).toMatch(msg);
        }
      });

      it("the listing endpoints webuiapi uses answer in A1111's shapes", async () => {
        const { app } = await setup();
        const samplers = (await (await app.request("/sdapi/v1/samplers")).json()) as any[];
        expect(samplers[0]).toEqual({ name: "Euler", aliases: ["euler"], options: {} });
        const models = (await (await app.request("/sdapi/v1/sd-models")).json()) as any[];
        expect(models).toEqual([
          { title: "fake-model [0f0f0f0f0f]", model_name: "fake-model", hash: "0f0f0f0f0f", sha256: null, filename: "fake-model", config: null },
        ]);
        expect(await (await app.request("/sdapi/v1/scripts")).json()).toEqual({ txt2img: [], img2img: [] });
        expect((await app.request("/sdapi/v1/unknown-thing")).status).toBe(404);
      });
    });

    describe("A1111 API: SillyTavern replay", () => {
      const auth = { Authorization: `Basic ${Buffer.from("user:pass").toString("base64")}` };

      it("ping, model, sampler, scheduler, upscaler and VAE lists", async () => {
        const { app } = await setup();
        const get = async (p: string) => {
          const r = await app.request(p, { headers: auth });
          expect(r.status, p).toBe(200);
          return r.json() as Promise<any>;
        };
        expect((await get("/sdapi/v1/options")).sd_model_checkpoint).toBe("fake-model [0f0f0f0f0f]");
        expect((await get("/sdapi/v1/samplers")).map((x: any) => x.name)).toContain("DPM++ 2M Karras");
        expect((await get("/sdapi/v1/sd-models")).map((x: any) => ({ value: x.title, text: x.title }))).toEqual([
          { value: "fake-model [0f0f0f0f0f]", text: "fake-model [0f0f0f0f0f]" },
        ]);
        expect((await get("/sdapi/v1/schedulers")).map((x: any) => x.name)).toEqual(["automatic", "karras"]);
        expect((await get("/sdapi/v1/upscalers")).map((x: any) => x.name)).toEqual(["None"]);
        expect(await get("/sdapi/v1/latent-upscale-modes")).toEqual([]);
        expect(await get("/sdapi/v1/sd-vae")).toEqual([]);
      });

      it("set-model: POST options with the listed title, then poll progress until idle", async () => {
        const { post, app } = await setup();
        const ok = await post("/sdapi/v1/options", { sd_model_checkpoint: "fake-model [0f0f0f0f0f]" }, auth);
        expect(ok.status).toBe(200);
        const progress = (await (await app.request("/sdapi/v1/progress", { headers: auth })).json()) as any;
        expect(progress.progress).toBe(0.0);
        expect(progress.state.job_count).toBe(0);
        const other = await post("/sdapi/v1/options", { sd_model_checkpoint: "sdxl.safetensors" }, auth);
        expect(other.status).toBe(422);
        expect(JSON.stringify(await other.json())).toMatch(/not loaded/);
      });

      it("generate: the txt2img body SillyTavern forwards (with its url/auth fields) returns images[0]", async () => {
        const { post, engine } = await setup();
        const body = sillyTavernTxt2img();
        const res = await post("/sdapi/v1/txt2img", body, auth);
        expect(res.status).toBe(200);
        const data = (await res.json()) as any;
        const img = await loadImage(Buffer.from(data.images[0], "base64"));
        expect([img.width, img.height]).toEqual([128, 96]);
        expect(engine.runs[0]).toMatchObject({
          prompt: "portrait of a knight",
          strength: 1,
          steps: 12,
          guidanceScale: 6,
          sampler: "dpmpp-2m-karras",
          seed: 99,
          clipSkip: 1,
        });
        expect(JSON.parse(data.info).clip_skip).toBe(2);
      });
    });

    describe("A1111 API: progress and interrupt", () => {
      it("progress reports the running job with a preview; interrupt stops it promptly and saves nothing", async () => {
        const { post, app, jobs } = await setup(20);
        const pending = post("/sdapi/v1/img2img", await webuiapiPayload({ steps: 100, denoising_strength: 1, width: 64, height: 64 }));
        while (((await jobs.running())[0]?.step ?? 0) < 2) await new Promise((r) => setTimeout(r, 5));
        const p = (await (await app.request("/sdapi/v1/progress?skip_current_image=false")).json()) as any;
        expect(p.progress).toBeGreaterThan(0);
        expect(p.progress).toBeLessThan(1);
        expect(p.eta_relative).toBeGreaterThan(0);
        expect(p.state).toMatchObject({ job_count: 1, interrupted: false, sampling_steps: 100 });
        expect(p.state.sampling_step).toBeGreaterThanOrEqual(2);
        const preview = await loadImage(Buffer.from(p.current_image, "base64"));
        expect(preview.width).toBe(8);
        const skipped = (await (await app.request("/sdapi/v1/progress?skip_current_image=true")).json()) as any;
        expect(skipped.current_image).toBeNull();

        const t0 = performance.now();
        const stop = await app.request("/sdapi/v1/interrupt", { method: "POST" });
        expect(stop.status).toBe(200);
        expect(await stop.json()).toEqual({});
        const res = await pending;
        const elapsed = performance.now() - t0;
        expect(elapsed).toBeLessThan(500); // within about one 20 ms step, plus slack for slow CI
        expect(res.status).toBe(409);
        expect(((await res.json()) as any).detail).toMatch(/interrupted/);
        for (let t = 0; (await jobs.stats()).size > 0 && t < 200; t++) await new Promise((r) => setTimeout(r, 10)); // the slot frees as the job ends
        expect((await jobs.stats()).size).toBe(0);
        const after = await post("/sdapi/v1/img2img", await webuiapiPayload({ steps: 4, width: 64, height: 64 }));
        expect(after.status).toBe(200);
      });
    });
  });
}
