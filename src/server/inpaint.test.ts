// Inpainting over HTTP on a real model (sd-tiny in-process): A1111 img2img requests shaped as webuiapi's
// img2img(..., mask_image=...) and A1111's own UI send them (unmasked pixels equal the input), the native API's
// mask, the OpenAI-compatible images/edits multipart request as the OpenAI SDK sends it, and every refusal
// (a 422 naming the field; a mask to an engine that cannot inpaint is an error, never a whole-picture repaint).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { encodeImage, loadImage, type RGBImage } from "../image.js";
import { encodeMaskPng } from "../image-mask.js";
import { sharp } from "../image-read.js";
import { a1111PrepareMask } from "../inpaint/a1111.js";
import { blurMask } from "../inpaint/mask-source.js";
import type { GrayImage } from "../inpaint/pil.js";
import type { Img2ImgPipeline } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { webuiapiPayload } from "./a1111.case.js";
import { createApp } from "./app.js";
import { engineFromPipeline } from "./engine.js";
import { createFakeEngine } from "./fake-engine.js";

const W = 64;
const rect = (x1: number, y1: number, x2: number, y2: number, w = W, h = W): GrayImage => {
  const data = new Uint8Array(w * h);
  for (let y = y1; y < y2; y++) for (let x = x1; x < x2; x++) data[y * w + x] = 255;
  return { width: w, height: h, data };
};
const b64 = (b: Buffer) => `data:image/png;base64,${b.toString("base64")}`;
/** RGBA PNG: `rgb` pixels, alpha 255 except where `clear` is set (0). */
async function rgbaPng(rgb: RGBImage, alphaOf: (p: number) => number): Promise<Buffer> {
  const px = new Uint8Array(rgb.width * rgb.height * 4);
  for (let p = 0; p < rgb.width * rgb.height; p++) {
    px.set(rgb.data.subarray(3 * p, 3 * p + 3), 4 * p);
    px[4 * p + 3] = alphaOf(p);
  }
  return sharp(Buffer.from(px), { raw: { width: rgb.width, height: rgb.height, channels: 4 } })
    .png()
    .toBuffer();
}
/** Pixels that differ where `keep` is 0, and where it is not. */
function diff(a: RGBImage, b: RGBImage, keep: GrayImage): { outside: number; inside: number } {
  const r = { outside: 0, inside: 0 };
  for (let p = 0; p < a.width * a.height; p++) {
    if (a.data[3 * p] === b.data[3 * p] && a.data[3 * p + 1] === b.data[3 * p + 1] && a.data[3 * p + 2] === b.data[3 * p + 2]) continue;
    if (keep.data[p] === 0) r.outside++;
    else r.inside++;
  }
  return r;
}

/** webuiapi.WebUIApi().img2img(images=[img], mask_image=mask, ...) payload: the shared webuiapi defaults plus the
 *  fields a newer webuiapi also sends (s_min_uncond, refiner_*, an empty ControlNet unit list). */
function inpaintPayload(image: Buffer, mask: Buffer, over: Record<string, unknown> = {}) {
  return webuiapiPayload({
    init_images: [b64(image)],
    prompt: "a fox",
    seed: 7,
    steps: 4,
    width: W,
    height: W,
    s_min_uncond: 0,
    refiner_checkpoint: null,
    refiner_switch_at: null,
    alwayson_scripts: { ControlNet: { args: [] } },
    mask: b64(mask),
    ...over,
  });
}

describe("a mask never becomes a silent whole-picture repaint", () => {
  it("an engine that cannot inpaint answers 422 for A1111, native and OpenAI requests with a mask", async () => {
    const { app } = createApp(createFakeEngine(), { webRoot: "/nonexistent" });
    const img = await encodeImage({ width: W, height: W, data: new Uint8Array(W * W * 3).fill(90) }, "png");
    const mask = await encodeMaskPng(rect(10, 10, 30, 30));
    const a = await app.request("/sdapi/v1/img2img", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(await inpaintPayload(img, mask)),
    });
    expect(a.status).toBe(422);
    expect(JSON.stringify(await a.json())).toMatch(/cannot inpaint/);
    const t = await app.request("/sdapi/v1/txt2img", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", mask: b64(mask) }),
    });
    expect(t.status).toBe(422);
    expect(((await t.json()) as any).detail[0].loc).toEqual(["body", "mask"]);
  });
});

describeWithFixtures("inpainting over HTTP (sd-tiny)", () => {
  const cache = mkdtempSync(join(tmpdir(), "reimagine-srv-inpaint-"));
  let pipe: Img2ImgPipeline;
  let app: ReturnType<typeof createApp>["app"];
  let queue: NonNullable<ReturnType<typeof createApp>["queue"]>;
  let photo: RGBImage;
  let photoPng: Buffer;
  const mask = rect(20, 14, 44, 40);
  beforeAll(async () => {
    pipe = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
    ({ app, queue } = createApp(engineFromPipeline(pipe), { webRoot: "/nonexistent" }));
    photoPng = await encodeImage(await loadImage(fixture("sd-tiny", "reference", "input.png")), "png");
    photo = await loadImage(photoPng);
  });
  afterAll(async () => {
    await pipe?.model.release();
    rmSync(cache, { recursive: true, force: true });
  });
  const postJson = (path: string, body: unknown) =>
    app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const a1111 = async (body: unknown) => {
    const res = await postJson("/sdapi/v1/img2img", body);
    const json = (await res.json()) as any;
    return { status: res.status, json, image: res.status === 200 ? await loadImage(Buffer.from(json.images[0], "base64")) : undefined };
  };

  it("webuiapi img2img(..., mask_image=...): A1111 defaults (only masked, fill, blur 4); unmasked pixels equal the input", async () => {
    const r = await a1111(await inpaintPayload(photoPng, await encodeMaskPng(mask)));
    expect(r.status).toBe(200);
    expect([r.image!.width, r.image!.height]).toEqual([W, W]);
    const overlay = (await a1111PrepareMask({ ...mask, channels: 1 }, W, W, { fullRes: true, fullResPadding: 0 })).maskForOverlay;
    const d = diff(r.image!, photo, overlay);
    expect(d.outside).toBe(0);
    expect(d.inside).toBeGreaterThan(200);
    const info = JSON.parse(r.json.info);
    expect(info.extra_generation_params).toEqual({ "Mask blur": "4", "Inpaint area": "Only masked", "Masked area padding": "0", "Masked content": "fill" });
    expect(info.infotexts[0]).toMatch(/Mask blur: 4, Inpaint area: Only masked/);
    expect(r.json.parameters.mask).toBeNull();
  });

  it("A1111's UI payload (RGBA brush mask, mask_blur_x/y, only masked with padding 32, original content) keeps unmasked pixels", async () => {
    const strokes = await rgbaPng({ width: W, height: W, data: new Uint8Array(W * W * 3).fill(255) }, (p) => (mask.data[p] ? 255 : 0));
    const r = await a1111(
      await inpaintPayload(photoPng, strokes, {
        mask_blur: undefined,
        mask_blur_x: 4,
        mask_blur_y: 2,
        inpainting_fill: 1,
        inpaint_full_res_padding: 32,
        mask_round: true,
      }),
    );
    expect(r.status).toBe(200);
    const overlay = (await a1111PrepareMask({ ...mask, channels: 1 }, W, W, { maskBlurX: 4, maskBlurY: 2, fullRes: true, fullResPadding: 32 })).maskForOverlay;
    expect(diff(r.image!, photo, overlay).outside).toBe(0);
    expect(JSON.parse(r.json.info).extra_generation_params).toMatchObject({ "Mask blur x": "4", "Mask blur y": "2" });
  });

  it("whole picture + inpainting_mask_invert: the outside is repainted, the mask kept (A1111's doubled overlay mask)", async () => {
    const r = await a1111(
      await inpaintPayload(photoPng, await encodeMaskPng(mask), { inpaint_full_res: false, inpainting_mask_invert: 1, inpainting_fill: 1 }),
    );
    expect(r.status).toBe(200);
    const inv = { ...mask, data: mask.data.map((v) => 255 - v) };
    const overlay = (await a1111PrepareMask({ ...inv, channels: 1 }, W, W, { fullRes: false })).maskForOverlay;
    const d = diff(r.image!, photo, overlay);
    expect(d.outside).toBe(0);
    expect(d.inside).toBeGreaterThan(1000);
    expect(JSON.parse(r.json.info).extra_generation_params["Mask mode"]).toBe("Inpaint not masked");
  });

  it("an all-black mask returns the input and says so; a mask of another size is stretched with a note", async () => {
    const black = await a1111(await inpaintPayload(photoPng, await encodeMaskPng(rect(0, 0, 0, 0))));
    expect(black.status).toBe(200);
    expect(Buffer.from(black.image!.data).equals(Buffer.from(photo.data))).toBe(true);
    expect(JSON.parse(black.json.info).notes.join(" ")).toMatch(/nothing to repaint/);
    const small = await a1111(await inpaintPayload(photoPng, await encodeMaskPng(rect(10, 7, 22, 20, 32, 32))));
    expect(small.status).toBe(200);
    expect(JSON.parse(small.json.info).notes.join(" ")).toMatch(/resized to fit/);
  });

  it("bad mask fields are 422 naming the field (FastAPI's shape)", async () => {
    const m = await encodeMaskPng(mask);
    for (const [over, field] of [
      [{ mask: "not base64!" }, "mask"],
      [{ mask: b64(Buffer.from("<svg/>")) }, "mask"],
      [{ inpainting_fill: 7 }, "inpainting_fill"],
      [{ mask_blur_x: -1, mask_blur: undefined }, "mask_blur_x"],
      [{ inpaint_full_res_padding: "wide" }, "inpaint_full_res_padding"],
      [{ latent_mask: b64(m) }, "latent_mask"],
      [{ override_settings: { inpainting_mask_weight: 0.5 } }, "inpainting_mask_weight"],
    ] as const) {
      const r = await a1111(await inpaintPayload(photoPng, m, over));
      expect(r.status, JSON.stringify(over).slice(0, 60)).toBe(422);
      expect(r.json.detail[0].loc).toEqual(["body", field]);
    }
  });

  it("native API: multipart mask file and base64 mask, maskSource alpha; mask settings without a mask are 422", async () => {
    const run = async (body: FormData | string, json = false) => {
      const res = await app.request("/v1/img2img", { method: "POST", body, ...(json ? { headers: { "content-type": "application/json" } } : {}) });
      const job = (await res.json()) as any;
      if (res.status !== 202) return { status: res.status, job };
      // wait on the queue, not in a loop of app.request calls: those resolve as microtasks only, so such a loop
      // starves the event loop and the in-process job (whose ONNX steps complete as macrotasks) never finishes
      await queue.idle();
      const view = (await (await app.request(`/v1/jobs/${job.id}`)).json()) as any;
      const png = view.result ? Buffer.from(await (await app.request(view.result.images[0].url)).arrayBuffer()) : undefined;
      return { status: res.status, job: view, image: png && (await loadImage(png)) };
    };
    const form = new FormData();
    form.set("image", new File([new Uint8Array(photoPng)], "photo.png", { type: "image/png" }));
    form.set("mask", new File([new Uint8Array(await encodeMaskPng(mask))], "mask.png", { type: "image/png" }));
    for (const [k, v] of Object.entries({ prompt: "a fox", strength: "0.75", steps: "4", seed: "3", maskBlur: "0", fill: "latent-nothing" })) form.set(k, v);
    const a = await run(form);
    expect(a.job.status).toBe("succeeded");
    expect(diff(a.image!, photo, mask).outside).toBe(0);
    expect(a.job.settings.mask).toMatchObject({ blur: 0, fill: "latent nothing" });
    expect(a.job.result.images[0].infotext).toMatch(/Mask blur: 0, Masked content: latent nothing/);

    const j = await run(
      JSON.stringify({ image: b64(photoPng), mask: b64(await encodeMaskPng(mask)), prompt: "a fox", strength: 0.5, steps: 4, inpaintArea: "masked" }),
      true,
    );
    expect(j.job.status).toBe("succeeded");
    expect(diff(j.image!, photo, blurMask(mask, 4)).outside).toBe(0);

    const rgba = await rgbaPng(photo, (p) => (mask.data[p] ? 0 : 255));
    const alpha = await run(JSON.stringify({ image: b64(rgba), maskSource: "alpha", maskBlur: 0, prompt: "a fox", strength: 0.8, steps: 4 }), true);
    expect(alpha.job.status).toBe("succeeded");
    expect(diff(alpha.image!, photo, mask).outside).toBe(0);

    const bad = await run(JSON.stringify({ image: b64(photoPng), maskBlur: 4, prompt: "x" }), true);
    expect(bad.status).toBe(422);
    expect(bad.job.error.field).toBe("maskBlur");
    const area = await run(JSON.stringify({ image: b64(photoPng), mask: b64(await encodeMaskPng(mask)), inpaintArea: "face", prompt: "x" }), true);
    expect([area.status, area.job.error.field]).toEqual([422, "inpaintArea"]);
  });

  describe("OpenAI images/edits", () => {
    /** The multipart body the OpenAI SDK builds for images.edit({ image, mask, prompt, n, size, response_format, model }). */
    const sdkForm = (image: Buffer, mask: Buffer | undefined, fields: Record<string, string>) => {
      const f = new FormData();
      f.append("image", new File([new Uint8Array(image)], "image.png", { type: "image/png" }));
      if (mask) f.append("mask", new File([new Uint8Array(mask)], "mask.png", { type: "image/png" }));
      for (const [k, v] of Object.entries(fields)) f.append(k, v);
      return f;
    };
    const edit = async (body: FormData) => {
      const res = await app.request("/v1/images/edits", { method: "POST", body });
      return { status: res.status, json: (await res.json()) as any };
    };
    const transparentMask = () => rgbaPng({ width: W, height: W, data: new Uint8Array(W * W * 3) }, (p) => (mask.data[p] ? 0 : 255));

    it("image + mask (transparent = edit), n, size, b64_json: the unmasked pixels come back unchanged", async () => {
      const r = await edit(
        sdkForm(photoPng, await transparentMask(), { prompt: "a fox", n: "2", size: "64x64", response_format: "b64_json", model: "dall-e-2" }),
      );
      expect(r.status).toBe(200);
      expect(typeof r.json.created).toBe("number");
      expect(r.json.data).toHaveLength(2);
      for (const d of r.json.data) {
        const img = await loadImage(Buffer.from(d.b64_json, "base64"));
        expect([img.width, img.height]).toEqual([W, W]);
        const dd = diff(img, photo, blurMask(mask, 4));
        expect(dd.outside).toBe(0);
        expect(dd.inside).toBeGreaterThan(200);
      }
    });

    it("response_format url (the default) serves the PNG; without a mask the image's own transparency is edited", async () => {
      const r = await edit(sdkForm(await rgbaPng(photo, (p) => (mask.data[p] ? 0 : 255)), undefined, { prompt: "a fox" }));
      expect(r.status).toBe(200);
      const url = new URL(r.json.data[0].url);
      expect(url.pathname).toMatch(/^\/v1\/jobs\/[\w-]+\/images\/0$/);
      const res = await app.request(url.pathname);
      expect(res.headers.get("content-type")).toBe("image/png");
      const img = await loadImage(Buffer.from(await res.arrayBuffer()));
      expect(diff(img, photo, blurMask(mask, 4)).outside).toBe(0);
    });

    it("refusals: unsupported fields, an opaque image without a mask, a mask of another size, several images, not multipart", async () => {
      const rgb = await edit(sdkForm(photoPng, undefined, { prompt: "a fox" }));
      expect(rgb.status).toBe(422);
      expect(rgb.json.error.message).toMatch(/no alpha channel, so no transparent area marks what to repaint/);
      const opaque = await edit(sdkForm(await rgbaPng(photo, () => 255), undefined, { prompt: "a fox" }));
      expect(opaque.status).toBe(422);
      expect(opaque.json.error.message).toMatch(/fully opaque: erase the area to repaint/);
      const q = await edit(sdkForm(photoPng, await transparentMask(), { prompt: "a fox", quality: "hd" }));
      expect([q.status, q.json.error.param, q.json.error.type]).toEqual([422, "quality", "invalid_request_error"]);
      const smallMask = await rgbaPng({ width: 32, height: 32, data: new Uint8Array(32 * 32 * 3) }, () => 0);
      const size = await edit(sdkForm(photoPng, smallMask, { prompt: "a fox" }));
      expect(size.status).toBe(422);
      expect(size.json.error.message).toMatch(/needs a mask of the image's size/);
      const many = new FormData();
      many.append("image[]", new File([new Uint8Array(photoPng)], "a.png", { type: "image/png" }));
      many.append("image[]", new File([new Uint8Array(photoPng)], "b.png", { type: "image/png" }));
      many.append("prompt", "x");
      expect((await edit(many)).json.error.param).toBe("image[]");
      const fmt = await edit(sdkForm(photoPng, await transparentMask(), { prompt: "a fox", response_format: "png" }));
      expect(fmt.json.error.param).toBe("response_format");
      const noPrompt = await edit(sdkForm(photoPng, await transparentMask(), {}));
      expect(noPrompt.json.error.param).toBe("prompt");
      const json = await postJson("/v1/images/edits", { prompt: "x" });
      expect(json.status).toBe(422);
    });
  });
});
