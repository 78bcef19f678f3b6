// LoRAs on the server: GET /sdapi/v1/loras in A1111's shape (name, alias, path below its folder, metadata) and
// GET /v1/loras; tags in `prompt` and the native `loras` field checked before queueing (422 naming the field, close
// matches, weights that are not numbers, paths refused); SillyTavern-style img2img and txt2img requests with emphasis
// and <lora:...> on the real sd-tiny model record the LoRA in `infotexts` and extra_generation_params;
// GET /sdapi/v1/embeddings lists the embedding folders (A1111 shape) and requests carry those folders to the engine.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { sillyTavernTxt2img } from "../../test/sillytavern.js";
import { encodeImage, loadPipeline } from "../index.js";
import type { Img2ImgPipeline } from "../pipeline/img2img.js";
import { writeSafetensors } from "../weights/safetensors.js";
import { createApp } from "./app.js";
import { engineFromPipeline } from "./engine.js";
import { createFakeEngine } from "./fake-engine.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-server-lora-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const dir = join(tmp, "loras");
mkdirSync(join(dir, "styles"), { recursive: true });
const lora = (path: string, meta?: Record<string, string>) =>
  writeSafetensors(
    path,
    {
      "lora_unet_a.lora_down.weight": { dtype: "F32", shape: [1, 2], data: Float32Array.of(1, 2) },
      "lora_unet_a.lora_up.weight": { dtype: "F32", shape: [2, 1], data: Float32Array.of(3, 4) },
    },
    meta,
  );
lora(join(dir, "watercolor.safetensors"));
lora(join(dir, "styles", "pixel-art_v2.safetensors"), { ss_output_name: "pixelart", ss_network_dim: "8" });

const png = async () => (await encodeImage({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(90) }, "png")).toString("base64");

function setup() {
  const engine = createFakeEngine();
  const { app } = createApp(engine, { webRoot: "/nonexistent", loraDirs: [dir] });
  const post = (path: string, body: unknown) =>
    app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { engine, app, post };
}

describe("LoRAs on the server (fake engine)", () => {
  it("GET /sdapi/v1/loras lists the folders' LoRAs as A1111 does; GET /v1/loras the names", async () => {
    const { app } = setup();
    const list = (await (await app.request("/sdapi/v1/loras")).json()) as any[];
    expect(list).toEqual([
      {
        name: "pixel-art_v2",
        alias: "pixelart",
        path: join("styles", "pixel-art_v2.safetensors"),
        metadata: { ss_output_name: "pixelart", ss_network_dim: "8" },
      },
      { name: "watercolor", alias: "watercolor", path: "watercolor.safetensors", metadata: {} },
    ]);
    expect(await (await app.request("/v1/loras")).json()).toEqual(list.map(({ name, alias, path }) => ({ name, alias, path })));
    expect((await app.request("/sdapi/v1/refresh-loras", { method: "POST" })).status).toBe(200);
    const none = createApp(createFakeEngine(), { webRoot: "/nonexistent" }).app;
    expect(await (await none.request("/sdapi/v1/loras")).json()).toEqual([]);
  });

  it("GET /sdapi/v1/embeddings lists the embedding folders in A1111's shape; runs carry the folders", async () => {
    const emb = join(tmp, "embeddings");
    mkdirSync(emb, { recursive: true });
    writeSafetensors(join(emb, "neonstyle.safetensors"), { emb_params: { dtype: "F32", shape: [2, 4], data: new Float32Array(8) } });
    writeSafetensors(join(emb, "broken.safetensors"), { emb_params: { dtype: "F32", shape: [1, 2], data: Float32Array.of(0, Number.NaN) } });
    const engine = createFakeEngine();
    const { app } = createApp(engine, { webRoot: "/nonexistent", loraDirs: [dir], embeddingDirs: [emb] });
    const common = { step: null, sd_checkpoint: null, sd_checkpoint_name: null };
    expect(await (await app.request("/sdapi/v1/embeddings")).json()).toEqual({
      loaded: { neonstyle: { ...common, shape: 4, vectors: 2 } },
      skipped: { broken: { ...common, shape: null, vectors: null } },
    });
    const body = { init_images: [await png()], prompt: "a (neonstyle:1.2) cat", steps: 4, width: 64, height: 64 };
    const res = await app.request("/sdapi/v1/img2img", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    expect(engine.runs[0]).toMatchObject({ prompt: body.prompt, loraDirs: [dir], embeddingDirs: [emb] });
    const none = createApp(createFakeEngine(), { webRoot: "/nonexistent" }).app;
    expect(await (await none.request("/sdapi/v1/embeddings")).json()).toEqual({ loaded: {}, skipped: {} });
  });

  it("A1111: tags reach the engine with the LoRA folders; unknown names and bad weights are 422 on `prompt`", async () => {
    const { post, engine } = setup();
    const body = { init_images: [await png()], prompt: "a (cat:1.2) <lora:pixelart:0.7>", steps: 4, width: 64, height: 64 };
    expect((await post("/sdapi/v1/img2img", body)).status).toBe(200);
    expect(engine.runs[0]).toMatchObject({ prompt: body.prompt, loraDirs: [dir] });
    const missing = await post("/sdapi/v1/img2img", { ...body, prompt: "a cat <lora:watercolour:1>" });
    expect(missing.status).toBe(422);
    const d = ((await missing.json()) as any).detail[0];
    expect(d.loc).toEqual(["body", "prompt"]);
    expect(d.msg).toMatch(/no LoRA named 'watercolour' .*did you mean 'watercolor'/);
    const bad = await post("/sdapi/v1/img2img", { ...body, prompt: "a cat <lora:watercolor:lots>" });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as any).detail[0].msg).toMatch(/weight 'lots' is not a number/);
    expect(engine.runs.length).toBe(1);
  });

  it("native: the `loras` field (JSON or a form's string) and promptSyntax; paths and unknown names are refused", async () => {
    const { app, engine } = setup();
    const submit = async (fields: Record<string, unknown>) => {
      const res = await app.request("/v1/img2img", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image: await png(), prompt: "a cat", steps: 4, ...fields }),
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const ok = await submit({ loras: [{ name: "watercolor", weight: 0.6 }, "pixelart:-0.5"], promptSyntax: "none" });
    expect(ok.status).toBe(202);
    expect(ok.body.settings).toMatchObject({
      loras: [
        { name: "watercolor", weight: 0.6 },
        { name: "pixelart", weight: -0.5 },
      ],
      promptSyntax: "none",
    });
    const form = new FormData();
    form.set("image", new Blob([Buffer.from(await png(), "base64")]), "in.png");
    form.set("prompt", "a cat");
    form.set("steps", "4");
    form.set("loras", JSON.stringify([{ name: "watercolor", teWeight: 1, unetWeight: 0.2 }]));
    expect((await app.request("/v1/img2img", { method: "POST", body: form })).status).toBe(202);
    for (const [fields, re] of [
      [{ loras: [{ path: "/etc/passwd" }] }, /by name .* not by path/],
      [{ loras: [{ name: "sketchy" }] }, /no LoRA named 'sketchy'/],
      [{ loras: [{ name: "watercolor", weight: "x" }] }, /loras\[0\]\.weight must be a number/],
      [{ promptSyntax: "compel" }, /promptSyntax must be one of a1111, none/],
    ] as const) {
      const r = await submit(fields);
      expect(r.status).toBe(422);
      expect(r.body.error.message).toMatch(re);
    }
    while (engine.runs.length < 2) await new Promise((r) => setTimeout(r, 5));
    expect(engine.runs[0]).toMatchObject({
      loras: [
        { name: "watercolor", weight: 0.6 },
        { name: "pixelart", weight: -0.5 },
      ],
      loraDirs: [dir],
      promptSyntax: "none",
    });
    expect(engine.runs[1]).toMatchObject({ loras: [{ name: "watercolor", teWeight: 1, unetWeight: 0.2 }] });
  });
});

describeWithFixtures(
  "A1111 API with LoRA on sd-tiny",
  () => {
    let pipe: Img2ImgPipeline;
    beforeAll(async () => {
      pipe = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: join(tmp, "graphs"), threads: 1 });
    });
    afterAll(() => pipe?.model.release());

    it("a SillyTavern-style img2img with emphasis and <lora:...> succeeds and records the LoRA in infotexts", async () => {
      const { app } = createApp(engineFromPipeline(pipe), { webRoot: "/nonexistent", loraDirs: [fixture("sd-tiny-lora", "lora")] });
      const prompt = "(masterpiece:1.2), a [blurry] cyberpunk city, <lora:sd-tiny-lora:0.8>";
      const body = {
        init_images: [await png()],
        prompt,
        negative_prompt: "lowres, (bad anatomy:1.3)",
        sampler_name: "Euler a",
        scheduler: "automatic",
        steps: 4,
        cfg_scale: 6,
        width: 64,
        height: 64,
        denoising_strength: 0.5,
        seed: 7,
        override_settings: { CLIP_stop_at_last_layers: 1 },
        override_settings_restore_afterwards: true,
        send_images: true,
      };
      const res = await app.request("/sdapi/v1/img2img", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      const info = JSON.parse(((await res.json()) as any).info);
      expect(info.infotexts[0].split("\n")[0]).toBe(prompt);
      expect(info.infotexts[0]).toMatch(/, Lora hashes: "sd-tiny-lora: [0-9a-f]{12}"/);
      expect(info.extra_generation_params["Lora hashes"]).toMatch(/^sd-tiny-lora: [0-9a-f]{12}$/);
    });

    it("SillyTavern's txt2img body (url/auth fields, hires off) with emphasis and <lora:...> records the LoRA too", async () => {
      const { app } = createApp(engineFromPipeline(pipe), { webRoot: "/nonexistent", loraDirs: [fixture("sd-tiny-lora", "lora")] });
      const prompt = "1girl, (masterpiece:1.2), ((detailed)), [sketch], <lora:sd-tiny-lora:0.7:0.5>";
      const body = sillyTavernTxt2img({
        prompt,
        negative_prompt: "lowres, (worst quality:1.4)",
        steps: 4,
        width: 64,
        height: 64,
        seed: 11,
        override_settings: { CLIP_stop_at_last_layers: 2 },
      });
      const res = await app.request("/sdapi/v1/txt2img", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status).toBe(200);
      const data = (await res.json()) as any;
      expect(data.images).toHaveLength(1);
      const info = JSON.parse(data.info);
      expect(info.infotexts[0].split("\n")[0]).toBe(prompt);
      expect(info.infotexts[0]).toMatch(/Clip skip: 2/);
      expect(info.infotexts[0]).toMatch(/, Lora hashes: "sd-tiny-lora: [0-9a-f]{12}"/);
    });
  },
  "sd-tiny-lora",
);
