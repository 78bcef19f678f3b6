// ControlNets through the server: A1111 ControlNet-extension requests replayed as webuiapi (mix1009/sdwebuiapi
// ControlNetUnit.to_dict, alwayson_scripts["ControlNet"]) and other clients send them, the extension's routes
// (version, model_list, module_list, settings, detect), the native fields and preview, refusals naming the field; then
// the real sd-tiny-controlnet model behind the A1111 route, matching diffusers.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { releaseControlNets } from "../control/load.js";
import { resolveUnit, unitControlImage } from "../control/unit.js";
import { encodeImage, loadImage, readImageParameters, type RGBImage } from "../image.js";
import type { Img2ImgPipeline } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { createApp } from "./app.js";
import { engineFromPipeline } from "./engine.js";
import { createFakeEngine } from "./fake-engine.js";
import { MemoryJobs } from "./jobs-memory.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-srv-cn-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const cnDir = join(tmp, "controlnet");
mkdirSync(cnDir);
writeFileSync(join(cnDir, "control_v11p_sd15_scribble.safetensors"), ""); // listed by name; the fake engine never opens it

/** A 64x48 drawing: a dark diagonal bar on white. */
function drawing(w = 64, h = 48): RGBImage {
  const data = new Uint8Array(w * h * 3).fill(255);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (Math.abs(x - y) < 3) data.fill(0, 3 * (y * w + x), 3 * (y * w + x) + 3);
  return { width: w, height: h, data };
}
const b64 = async (img: RGBImage) => (await encodeImage(img, "png")).toString("base64");

function setup(apiKey?: string) {
  const engine = createFakeEngine();
  const { app } = createApp(engine, { webRoot: "/nonexistent", controlnetDir: cnDir, apiKey });
  const post = (path: string, body: unknown) =>
    app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { engine, app, post };
}

/** webuiapi.ControlNetUnit(...).to_dict() with its defaults (image raw base64, resize_mode "Resize and Fill", ...). */
async function webuiapiUnit(over: Record<string, unknown> = {}) {
  return {
    image: await b64(drawing()),
    mask: null,
    module: "none",
    model: "None",
    weight: 1.0,
    resize_mode: "Resize and Fill",
    low_vram: false,
    processor_res: 512,
    threshold_a: 64,
    threshold_b: 64,
    guidance_start: 0.0,
    guidance_end: 1.0,
    control_mode: "Balanced",
    pixel_perfect: false,
    hr_option: "Both",
    enabled: true,
    ...over,
  };
}

/** webuiapi.WebUIApi().img2img(images=[...], controlnet_units=[...]) payload (the fields that matter here). */
async function img2imgPayload(units: unknown[] | undefined, over: Record<string, unknown> = {}) {
  return {
    init_images: [`data:image/png;base64,${await b64(drawing())}`],
    prompt: "a knight",
    negative_prompt: "",
    denoising_strength: 1,
    steps: 4,
    cfg_scale: 7,
    width: 64,
    height: 48,
    seed: 3,
    sampler_name: "Euler a",
    alwayson_scripts: units === undefined ? {} : { ControlNet: { args: units } },
    ...over,
  };
}

describe("A1111 ControlNet extension API (fake engine)", () => {
  it("lists models, modules and settings as the extension does", async () => {
    const { app } = setup();
    expect(await (await app.request("/controlnet/version")).json()).toEqual({ version: 3 });
    expect(await (await app.request("/controlnet/model_list")).json()).toEqual({ model_list: ["control_v11p_sd15_scribble"] });
    const modules = (await (await app.request("/controlnet/module_list")).json()) as any;
    expect(modules.module_list).toEqual(["none", "invert", "scribble", "canny"]);
    expect(modules.module_detail.canny.sliders.map((s: any) => [s.name, s.value])).toEqual([
      ["Low Threshold", 100],
      ["High Threshold", 200],
    ]);
    expect(await (await app.request("/controlnet/settings")).json()).toEqual({ control_net_unit_count: 4 });
  });

  it("replays webuiapi's img2img with a canny unit: the run gets the unit, the response appends the detected map", async () => {
    const { post, engine } = setup();
    const unit = await webuiapiUnit({
      module: "canny",
      model: "control_v11p_sd15_scribble [d4ba51ff]",
      weight: 0.7,
      guidance_end: 0.8,
      threshold_a: 50,
      threshold_b: 150,
    });
    const res = await post("/sdapi/v1/img2img", await img2imgPayload([unit]));
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.images).toHaveLength(2); // the result, then the unit's detected map
    const run = engine.runs[0];
    expect(run.controlnets).toHaveLength(1);
    const cn = run.controlnets![0];
    expect(cn).toMatchObject({
      model: join(cnDir, "control_v11p_sd15_scribble.safetensors"),
      preprocessor: "canny",
      scale: 0.7,
      end: 0.8,
      guessMode: false,
      resizeMode: "resize-and-fill",
    });
    expect(cn.preprocessorOptions).toEqual({ lowThreshold: 50, highThreshold: 150 });
    expect((cn.image as RGBImage).width).toBe(64);
    // the detected map is what the ControlNet read: the canny map of the drawing at the output size
    const map = await loadImage(Buffer.from(body.images[1], "base64"));
    const want = await unitControlImage(resolveUnit(cn, 0), { width: 64, height: 48 });
    expect(Buffer.from(map.data).equals(Buffer.from(want.data))).toBe(true);
    const info = JSON.parse(body.info);
    expect(info.infotexts[0]).toContain(
      'ControlNet 0: "Module: canny, Model: control_v11p_sd15_scribble, Weight: 0.7, Resize Mode: Resize and Fill, Processor Res: 48, Threshold A: 50, Threshold B: 150, Guidance Start: 0.0, Guidance End: 0.8, Pixel Perfect: True, Control Mode: Balanced"',
    );
    expect(await readImageParameters(Buffer.from(body.images[0], "base64"))).toBe(info.infotexts[0]);
  });

  it("a unit without an image conditions on the init image; enabled false, model None and empty args are no ControlNet", async () => {
    const { post, engine } = setup();
    const unit = await webuiapiUnit({
      image: "",
      model: "control_v11p_sd15_scribble",
      module: "invert (from white bg & black line)",
      control_mode: 2,
      save_detected_map: false,
    });
    const res = await post("/sdapi/v1/img2img", await img2imgPayload([unit, await webuiapiUnit({ enabled: false, model: "x" }), await webuiapiUnit()]));
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).images).toHaveLength(1); // save_detected_map false
    expect(engine.runs[0].controlnets).toEqual([
      expect.objectContaining({ image: undefined, preprocessor: "invert", guessMode: true, resizeMode: "resize-and-fill" }),
    ]);
    // webuiapi sends {"args": []} whenever the extension is installed
    expect((await post("/sdapi/v1/img2img", await img2imgPayload([]))).status).toBe(200);
    expect(engine.runs[1].controlnets).toBeUndefined();
    // legacy fields of older clients: input_image, guidance (= end), guessmode, lowvram
    const legacy = {
      input_image: await b64(drawing()),
      module: "scribble",
      model: "control_v11p_sd15_scribble",
      guidance: 0.5,
      guessmode: true,
      lowvram: true,
    };
    expect((await post("/sdapi/v1/img2img", await img2imgPayload([legacy]))).status).toBe(200);
    expect(engine.runs[2].controlnets![0]).toMatchObject({ preprocessor: "scribble", end: 0.5, guessMode: true, resizeMode: "crop-and-resize" });
  });

  it("refuses what it cannot honour with FastAPI's 422 naming the field", async () => {
    const { post } = setup();
    const refuse = async (over: Record<string, unknown>, field: string, msg: RegExp) => {
      const res = await post("/sdapi/v1/img2img", await img2imgPayload([await webuiapiUnit({ model: "control_v11p_sd15_scribble", ...over })]));
      expect(res.status, field).toBe(422);
      const body = (await res.json()) as any;
      expect(body.detail[0].loc).toEqual(["body", `alwayson_scripts.ControlNet.args[0].${field}`]);
      expect(body.detail[0].msg).toMatch(msg);
    };
    await refuse({ module: "depth_midas" }, "module", /'depth_midas' is not available here: use one of none, invert, scribble, canny/);
    await refuse({ control_mode: "My prompt is more important" }, "control_mode", /is not supported: use 0 "Balanced" or 2/);
    await refuse({ model: "control_v11f1p_sd15_depth" }, "model", /'control_v11f1p_sd15_depth' is not one this server offers: control_v11p_sd15_scribble/);
    await refuse({ model: "/etc/passwd" }, "model", /not one this server offers/);
    await refuse({ mask: await b64(drawing()) }, "mask", /not supported by this server/);
    await refuse({ weight: 3 }, "weight", /between 0 and 2/);
    await refuse({ guidance_start: 0.9, guidance_end: 0.1 }, "guidance_start", /guidance_start \(0\.9\) must be below the end \(0\.1\)/);
    await refuse({ some_new_field: 1 }, "some_new_field", /not a ControlNet unit field this server knows/);
    await refuse({ resize_mode: "Stretch" }, "resize_mode", /must be 0-2 or/);
    const txt = await post("/sdapi/v1/txt2img", {
      prompt: "x",
      width: 64,
      height: 64,
      alwayson_scripts: { controlnet: { args: [{ model: "control_v11p_sd15_scribble" }] } },
    });
    expect(txt.status).toBe(422);
    expect(((await txt.json()) as any).detail[0].msg).toMatch(/txt2img has no init image/);
  });

  it("detect runs a module on each image (webuiapi's controlnet_images and the extension's controlnet_input_images)", async () => {
    const { post } = setup();
    for (const field of ["controlnet_images", "controlnet_input_images"]) {
      const res = await post("/controlnet/detect", {
        controlnet_module: "scribble",
        [field]: [await b64(drawing())],
        controlnet_processor_res: 512,
        controlnet_threshold_a: 64,
        controlnet_threshold_b: 64,
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as any;
      expect(body.info).toBe("Success");
      const map = await loadImage(Buffer.from(body.images[0], "base64"));
      const want = await unitControlImage(resolveUnit({ model: "-", preprocessor: "scribble" }, 0), { input: drawing(), width: 64, height: 48 });
      expect(Buffer.from(map.data).equals(Buffer.from(want.data))).toBe(true);
    }
    const bad = await post("/controlnet/detect", { controlnet_module: "openpose", controlnet_input_images: [await b64(drawing())] });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as any).detail[0].msg).toMatch(/Module not available/);
  });

  it("an API key guards the ControlNet routes too", async () => {
    const { app } = setup("k3y");
    expect((await app.request("/controlnet/model_list")).status).toBe(401);
    expect((await app.request("/controlnet/model_list", { headers: { Authorization: "Bearer k3y" } })).status).toBe(200);
  });
});

describe("native API ControlNet fields (fake engine)", () => {
  it("a form with flat fields (controlnet, controlImage file, controlScale, preprocessor) and a JSON controlnets list", async () => {
    const { app, engine } = setup();
    const form = new FormData();
    form.set("image", new Blob([new Uint8Array(await encodeImage(drawing(), "png"))], { type: "image/png" }), "sketch.png");
    for (const [k, v] of Object.entries({
      prompt: "a knight",
      strength: "1",
      steps: "4",
      controlnet: "control_v11p_sd15_scribble",
      controlScale: "0.6",
      preprocessor: "scribble",
      controlEnd: "0.7",
    }))
      form.set(k, v);
    const res = await app.request("/v1/img2img", { method: "POST", body: form });
    expect(res.status).toBe(202);
    const job = (await res.json()) as any;
    expect(job.settings.controlnets).toEqual([
      { model: "control_v11p_sd15_scribble", preprocessor: "scribble", scale: 0.6, start: 0, end: 0.7, guessMode: false, image: "input" },
    ]);
    await expect.poll(async () => ((await (await app.request(`/v1/jobs/${job.id}`)).json()) as any).status).toBe("succeeded");
    const done = (await (await app.request(`/v1/jobs/${job.id}`)).json()) as any;
    expect(done.result.images[0].infotext).toContain('ControlNet 0: "Module: scribble, Model: control_v11p_sd15_scribble, Weight: 0.6,');
    expect(engine.runs[0].controlnets![0]).toMatchObject({ preprocessor: "scribble", scale: 0.6, end: 0.7, image: undefined });

    const json = await app.request("/v1/img2img", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        image: await b64(drawing()),
        prompt: "x",
        steps: 4,
        strength: 1,
        controlnets: [{ model: "control_v11p_sd15_scribble", image: await b64(drawing(32, 32)), preprocessor: "canny", lowThreshold: 10, guessMode: true }],
      }),
    });
    expect(json.status).toBe(202);
  });

  it("refuses bad units naming controlnets[i].field", async () => {
    const { app } = setup();
    const send = async (controlnets: unknown) => {
      const res = await app.request("/v1/img2img", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image: await b64(drawing()), prompt: "x", controlnets }),
      });
      expect(res.status).toBe(422);
      return ((await res.json()) as any).error;
    };
    expect(await send([{ model: "nope" }])).toMatchObject({ field: "controlnets[0].model" });
    expect((await send([{ model: "control_v11p_sd15_scribble", preprocessor: "hed" }])).message).toMatch(
      /controlnets\[0\]\.preprocessor must be one of none, invert, scribble, canny/,
    );
    expect(await send([{ model: "control_v11p_sd15_scribble", start: 0.5, end: 0.5 }])).toMatchObject({ field: "controlnets[0].start" });
    expect(await send(Array(5).fill({ model: "control_v11p_sd15_scribble" }))).toMatchObject({ field: "controlnets" });
    expect(await send([{ model: "control_v11p_sd15_scribble", image: "not base64!" }])).toMatchObject({ field: "controlnets[0].image" });
  });

  it("over a job backend (queue mode) a ControlNet is a 422 naming the field, not a silent drop", async () => {
    // createApp over a Jobs backend is the queue mode: ControlNet files are paths only this process knows
    const engine = createFakeEngine();
    const jobs = new MemoryJobs(engine, { maxSize: 8 });
    const { app } = createApp(jobs, { webRoot: "/nonexistent", controlnetDir: cnDir });
    const post = (path: string, body: unknown) =>
      app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const native = await post("/v1/img2img", { image: await b64(drawing()), prompt: "x", controlnets: [{ model: "control_v11p_sd15_scribble" }] });
    expect(native.status).toBe(422);
    const err = ((await native.json()) as any).error;
    expect(err.field).toBe("controlnets[0].model");
    expect(err.message).toMatch(/not available in queue mode/);
    const a1111 = await post("/sdapi/v1/img2img", await img2imgPayload([await webuiapiUnit({ model: "control_v11p_sd15_scribble" })]));
    expect(a1111.status).toBe(422);
    const body = (await a1111.json()) as any;
    expect(body.detail[0].loc).toEqual(["body", "alwayson_scripts.ControlNet.args[0].model"]);
    expect(body.detail[0].msg).toMatch(/not available in queue mode/);
    expect(await (await app.request("/controlnet/model_list")).json()).toEqual({ model_list: [] });
    // without a ControlNet the same request runs
    expect((await post("/v1/img2img", { image: await b64(drawing()), prompt: "x", steps: 2 })).status).toBe(202);
    expect(engine.runs.every((r) => !r.controlnets)).toBe(true);
    await jobs.close();
    await jobs.dispose();
  });

  it("lists ControlNets and preprocessors, and previews a preprocessed control image", async () => {
    const { app } = setup();
    const list = (await (await app.request("/v1/controlnets")).json()) as any;
    expect(list.models).toEqual([{ name: "control_v11p_sd15_scribble" }]);
    expect(list.preprocessors.map((p: any) => p.name)).toEqual(["none", "invert", "scribble", "canny"]);
    const form = new FormData();
    form.set("image", new Blob([new Uint8Array(await encodeImage(drawing(), "png"))], { type: "image/png" }), "sketch.png");
    form.set("preprocessor", "scribble");
    form.set("width", "32");
    form.set("height", "32");
    const res = await app.request("/v1/controlnet/preview", { method: "POST", body: form });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("image/png");
    const map = await loadImage(Buffer.from(await res.arrayBuffer()));
    const want = await unitControlImage(resolveUnit({ model: "-", preprocessor: "scribble" }, 0), { input: drawing(), width: 32, height: 32 });
    expect(Buffer.from(map.data).equals(Buffer.from(want.data))).toBe(true);
    const bad = await app.request("/v1/controlnet/preview", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image: await b64(drawing()), preprocessor: "depth" }),
    });
    expect(bad.status).toBe(422);
  });
});

describeWithFixtures(
  "A1111 ControlNet request on the real model (sd-tiny-controlnet) matches diffusers",
  () => {
    const SET = "sd-tiny-controlnet";
    const R = loadReferenceJson(SET);
    let pipe: Img2ImgPipeline;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: join(tmp, "graphs"), threads: 1 });
    });
    afterAll(async () => {
      if (pipe) await releaseControlNets(pipe.model);
      await pipe?.model.release();
    });

    it("case 0 as an A1111 client sends it (ControlNet found by name in --controlnet-dir): PNG within 1/255", async () => {
      const c = R.pipeline.cases[0];
      const i = c.inputs;
      const { app } = createApp(engineFromPipeline(pipe), { webRoot: "/nonexistent", controlnetDir: fixture(SET, "model") });
      const png = (name: string) => readFileSync(fixture(SET, "reference", name)).toString("base64");
      const res = await app.request("/sdapi/v1/img2img", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          init_images: [png(i.image)],
          prompt: i.prompt,
          negative_prompt: i.negative_prompt,
          denoising_strength: i.strength,
          steps: i.num_inference_steps,
          cfg_scale: i.guidance_scale,
          seed: i.generator.seed,
          width: 64,
          height: 64,
          alwayson_scripts: {
            controlnet: {
              args: [
                {
                  image: png(i.control_image),
                  module: "none",
                  model: "controlnet",
                  weight: 1,
                  resize_mode: "Just Resize",
                  control_mode: "Balanced",
                  pixel_perfect: true,
                  enabled: true,
                },
              ],
            },
          },
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as any;
      const img = await loadImage(Buffer.from(body.images[0], "base64"));
      expect(
        maxAbsDiff(
          Array.from(img.data, (v) => v / 255),
          referenceTensor(c.image, SET).data,
        ),
      ).toBeLessThanOrEqual(1 / 255 + 1e-6);
      const map = await loadImage(Buffer.from(body.images[1], "base64")); // module none: the control image itself
      expect(Buffer.from(map.data).equals(Buffer.from((await loadImage(fixture(SET, "reference", i.control_image))).data))).toBe(true);
    });
  },
  "sd-tiny-controlnet",
);
