// The Redis job codec: any plain-data request round-trips (fields other features add included), image
// bytes travel as blobs, bigint seeds keep their type, uploads come back loadable; non-data is refused.
import { describe, expect, it } from "vitest";
import { encodeImage } from "../index.js";
import type { RequestUnit } from "./controlnet-fields.js";
import type { GenerationRequest, GenerationResult } from "./generate.js";
import { inspectUpload, uploadFrom } from "./http.js";
import { resultInfo } from "./jobs.js";
import { DEFAULT_LIMITS } from "./limits.js";
import { pack, unpack } from "./redis-codec.js";

const png = (w: number, h: number, v: number) => encodeImage({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(v) }, "png");

describe("redis codec", () => {
  it("round-trips a request with uploads, nested extras, typed arrays and a bigint seed; blobs hold the bytes", async () => {
    const input = await inspectUpload(await png(24, 16, 200), "image", DEFAULT_LIMITS, "#ffffff");
    const request = {
      input,
      prompt: "a <lora:ink:0.7> castle",
      seed: 2n ** 63n + 5n,
      strength: 0.5,
      width: undefined,
      // what other features add: a mask upload, ControlNet units with their images, LoRA specs
      mask: await inspectUpload(await png(24, 16, 255), "mask", DEFAULT_LIMITS),
      controlnets: [{ model: "canny", weight: 0.8, image: uploadFrom(8, 8, { fill: 3 }) }],
      loras: [{ name: "ink", weight: 0.7 }],
      weights: new Float32Array([0.25, -1]),
    };
    const { json, blobs } = pack(request);
    expect(blobs).toHaveLength(3); // two PNGs and the Float32Array's bytes
    const text = JSON.stringify(json);
    expect(text).toContain('"prompt":"a <lora:ink:0.7> castle"');
    expect(text).not.toContain("IHDR"); // bytes are not inlined
    const back = unpack(JSON.parse(text), blobs) as typeof request & GenerationRequest;
    expect(back.seed).toBe(2n ** 63n + 5n);
    expect(back.controlnets[0]).toMatchObject({ model: "canny", weight: 0.8 });
    expect(back.loras).toEqual([{ name: "ink", weight: 0.7 }]);
    expect("width" in back).toBe(false);
    expect(back.weights).toEqual(new Float32Array([0.25, -1]));
    for (const [a, b] of [
      [back.input, input],
      [back.mask, request.mask],
      [back.controlnets[0].image, request.controlnets[0].image],
    ] as const) {
      expect([a.width, a.height]).toEqual([b.width, b.height]);
      expect(await a.load()).toEqual(await b.load());
    }
    expect(back.input.source).toMatchObject({ field: "image", background: "#ffffff", maxPixels: DEFAULT_LIMITS.maxPixels });
  });

  it("ControlNet units and an inpainting mask as the routes build them cross as data; detected maps and notes come back", async () => {
    const limits = DEFAULT_LIMITS;
    const unit: RequestUnit = {
      model: "/models/controlnet/scribble.safetensors",
      image: await inspectUpload(await png(16, 16, 9), "controlnets[0].image", limits),
      preprocessor: "canny",
      preprocessorOptions: { lowThreshold: 50, highThreshold: 150 },
      scale: 0.7,
      end: 0.8,
      guessMode: false,
      resizeMode: "resize-and-fill",
      sendMap: true,
    };
    const maskBytes = await png(24, 16, 255);
    const request: Partial<GenerationRequest> = {
      input: await inspectUpload(await png(24, 16, 200), "init_images", limits),
      controlnets: [unit],
      mask: { image: maskBytes, rules: "a1111", blurX: 4, blurY: 4, area: "masked", padding: 0, fill: "latent noise" },
    };
    const { json, blobs } = pack(request);
    const back = unpack(JSON.parse(JSON.stringify(json)), blobs) as GenerationRequest;
    const { image: cnImage, ...rest } = back.controlnets![0];
    const { image: _i, ...want } = unit;
    expect(rest).toEqual(want);
    expect(await cnImage!.load()).toEqual(await unit.image!.load());
    expect(Buffer.isBuffer(back.mask!.image)).toBe(true);
    expect(Buffer.compare(back.mask!.image as Buffer, maskBytes)).toBe(0);
    expect({ ...back.mask, image: undefined }).toEqual({ ...request.mask, image: undefined });
    // a result's info (what a worker returns through BullMQ as JSON, with no blobs): maps as base64 PNGs, notes kept
    const map = await png(8, 8, 77);
    const result: GenerationResult = {
      kind: "img2img",
      images: [],
      seed: 1n,
      width: 8,
      height: 8,
      stepsRun: 2,
      totalMs: 1,
      notes: ["nothing to repaint"],
      controlMaps: [map],
    };
    const info = unpack(JSON.parse(JSON.stringify(pack(resultInfo(result)).json)), []) as ReturnType<typeof resultInfo>;
    expect(info.notes).toEqual(["nothing to repaint"]);
    expect(info.controlMaps).toEqual([map.toString("base64")]);
    expect(info.seed).toBe(1n);
  });

  it("a rebuilt upload keeps its field name and decode limits in errors", async () => {
    const good = await png(64, 64, 1);
    const damaged = await inspectUpload(good.subarray(0, good.length - 30), "init_images", DEFAULT_LIMITS);
    const { json, blobs } = pack({ input: damaged });
    const back = unpack(json, blobs) as { input: typeof damaged };
    await expect(back.input.load()).rejects.toThrow(/^init_images: /);
  });

  it("refuses what is not data, naming the field", () => {
    expect(() => pack({ a: { onProgress: () => 1 } })).toThrow(/job field 'a' cannot be sent to a queue worker: 'onProgress' is a function/);
    expect(() => pack({ at: new Date() })).toThrow(/'at'.*a Date instance is not plain data/);
    expect(() => pack({ s: [1, Number.NaN] })).toThrow(/'s\[1\]'.*NaN is not a finite number/);
    expect(() => pack({ $bytes: 1 })).toThrow(/keys starting with \$ are reserved/);
    expect(() => pack({ input: { width: 1, height: 1, load: async () => ({}) } })).toThrow(/'input'.*an upload without a source/);
  });
});
