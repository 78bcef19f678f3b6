// SDXL refiners over HTTP: only the refiners `serve --refiner` allows can be named; A1111's refiner_checkpoint /
// refiner_switch_at and the native refiner / refinerSwitchAt give the library's pixels (sdxl-tiny as base and
// refiner, through the model process as `reimagine serve` runs it), recorded in the infotext.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { loadImage, loadPipeline } from "../index.js";
import { createApp } from "./app.js";
import { refinerChoices } from "./refiners.js";
import { createWorkerEngine } from "./worker-engine.js";

const SET = "sdxl-tiny";

describeWithFixtures(
  "SDXL refiner over HTTP (sdxl-tiny as base and refiner)",
  () => {
    const refiner = fixture(SET, "model"); // named "model" (its folder's base name)
    let engine: Awaited<ReturnType<typeof createWorkerEngine>>;
    let app: ReturnType<typeof createApp>["app"];
    const inputPng = readFileSync(fixture(SET, "reference", "input.png"));
    beforeAll(async () => {
      engine = await createWorkerEngine(fixture(SET, "model"), { threads: 1 }, undefined, { refiners: [refiner] });
      ({ app } = createApp(engine));
    });
    afterAll(async () => {
      await engine?.close();
    });
    const post = (path: string, body: unknown) =>
      app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const a1111 = (extra: Record<string, unknown>) =>
      post("/sdapi/v1/img2img", {
        init_images: [inputPng.toString("base64")],
        prompt: "a cyberpunk version of this photo",
        steps: 10,
        cfg_scale: 5,
        denoising_strength: 0.9,
        seed: 3,
        sampler_name: "Euler",
        width: 64, // the input's size (A1111 defaults to 512)
        height: 64,
        ...extra,
      });

    it("names the allowed refiners (sd-models, /v1/models)", async () => {
      expect(refinerChoices([refiner, "stabilityai/stable-diffusion-xl-refiner-1.0", "/m/sd_xl_refiner_1.0.safetensors"]).map((r) => r.name)).toEqual([
        "model",
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        "sd_xl_refiner_1.0",
      ]);
      const models = (await (await app.request("/sdapi/v1/sd-models")).json()) as { title: string; filename: string }[];
      expect(models.map((m) => m.title)).toContain("model");
      const native = (await (await app.request("/v1/models")).json()) as { refiners: string[]; family: string; nativeSize: number }[];
      expect(native[0]).toMatchObject({ refiners: ["model"], family: "sdxl", nativeSize: 64 }); // sample_size 32 x VAE factor 2
    });

    it("A1111 refiner_checkpoint (a title with its hash) / refiner_switch_at: the library's pixels, in the infotext", async () => {
      const image = await loadImage(inputPng);
      const pipe = await loadPipeline(fixture(SET, "model"), { threads: 1 });
      let lib;
      try {
        lib = await pipe.run({
          image,
          prompt: "a cyberpunk version of this photo",
          negativePrompt: "",
          steps: 10,
          guidanceScale: 5,
          strength: 0.9,
          seed: 3,
          sampler: "euler",
          refiner: { model: refiner, switchAt: 0.5 },
        });
      } finally {
        await pipe.release();
      }
      const res = await a1111({ refiner_checkpoint: "model [0123456789]", refiner_switch_at: 0.5 });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { images: string[]; info: string };
      const png = Buffer.from(body.images[0], "base64");
      const ours = await loadImage(png);
      expect(Buffer.from(ours.data).equals(Buffer.from(lib.images[0].data))).toBe(true);
      expect(JSON.parse(body.info).infotexts[0]).toMatch(/Refiner: model, Refiner switch at: 0.5/);
      // without a refiner the picture differs (the hand-over really happened)
      const plain = (await (await a1111({ refiner_checkpoint: "None" })).json()) as { images: string[] };
      expect(plain.images[0]).not.toBe(body.images[0]);
    });

    it("native refiner + refinerSwitchAt run the same hand-over", async () => {
      const form = new FormData();
      form.set("image", new File([new Uint8Array(inputPng)], "input.png", { type: "image/png" }));
      for (const [k, v] of Object.entries({
        prompt: "a cyberpunk version of this photo",
        negativePrompt: "",
        steps: "10",
        guidanceScale: "5",
        strength: "0.9",
        seed: "3",
        sampler: "euler",
        refiner: "model",
        refinerSwitchAt: "0.5",
      })) {
        form.set(k, v);
      }
      const res = await app.request("/v1/img2img", { method: "POST", body: form });
      expect(res.status).toBe(202);
      let job = (await res.json()) as { id: string; status: string; settings: { refiner: unknown }; result?: { images: { url: string }[] } };
      expect(job.settings.refiner).toEqual({ name: "model", switchAt: 0.5 });
      while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
        await new Promise((r) => setTimeout(r, 50));
        job = (await (await app.request(`/v1/jobs/${job.id}`)).json()) as typeof job;
      }
      expect(job.status).toBe("succeeded");
      const png = Buffer.from(await (await app.request(job.result!.images[0].url)).arrayBuffer());
      const viaA1111 = (await (await a1111({ refiner_checkpoint: "model", refiner_switch_at: 0.5 })).json()) as { images: string[] };
      expect((await loadImage(png)).data).toEqual((await loadImage(Buffer.from(viaA1111.images[0], "base64"))).data);
    });

    it("refuses a refiner the server does not offer and a switch outside (0, 1), naming the field", async () => {
      const unknown = await a1111({ refiner_checkpoint: "/etc/passwd" });
      expect(unknown.status).toBe(422);
      expect(JSON.stringify(await unknown.json())).toMatch(/refiner_checkpoint.*unknown refiner '\/etc\/passwd': this server offers 'model'/);
      const bad = await a1111({ refiner_checkpoint: "model", refiner_switch_at: 1 });
      expect(bad.status).toBe(422);
      expect(JSON.stringify(await bad.json())).toMatch(/refiner_switch_at must be between 0 and 1, exclusive/);
    });
  },
  SET,
);
