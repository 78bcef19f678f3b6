// ControlNet routes: what the A1111 ControlNet extension serves to its clients (/controlnet/version, model_list,
// module_list, settings, detect) and the native API's list and preview (/v1/controlnets, /v1/controlnet/preview, the
// web UI's "see it before generating"). Previews and detect run the same preprocessing as a job (unitControlImage).
// Ref: sd-webui-controlnet scripts/api.py.
import { Hono, type Context } from "hono";
import { A1111_MODULES, encodeImage, listControlNets, PREPROCESSORS, type ResizeMode, resolveUnit, type RGBImage, unitControlImage } from "../index.js";
import { fail as failA1111 } from "./a1111.js";
import { type ControlNetCatalog, MAX_CONTROLNETS } from "./controlnet-fields.js";
import { decodeBase64Image, inspectUpload, type Limits, prepareError, readBody, readJson } from "./http.js";
import { type Fields, optNumber, optString, ValidationError } from "./validate.js";

const RESIZE_MODES: ResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill"];

/** The extension's API version this server answers as (/controlnet/version). */
const API_VERSION = 3;

/** module_detail as the extension reports it: model_free false (they need a ControlNet) and each module's sliders. */
function moduleDetail(): Record<string, { model_free: boolean; sliders: { name: string; value: number; min: number; max: number; step?: number }[] }> {
  const threshold = (name: string, value: number) => ({ name, value, min: 1, max: 255, step: 1 });
  return Object.fromEntries(
    A1111_MODULES.map((m) => [m, { model_free: false, sliders: m === "canny" ? [threshold("Low Threshold", 100), threshold("High Threshold", 200)] : [] }]),
  );
}

/** Runs one preprocessor on a picture at `size` (default its own), as a job's unit would. */
async function preprocess(
  img: RGBImage,
  preprocessor: string,
  opts: { width?: number; height?: number; resizeMode?: ResizeMode; low?: number; high?: number },
) {
  const canny = preprocessor === "canny" ? { lowThreshold: opts.low, highThreshold: opts.high } : undefined;
  const unit = resolveUnit({ model: "(preview)", preprocessor, preprocessorOptions: canny, resizeMode: opts.resizeMode }, 0);
  return unitControlImage(unit, { input: img, width: opts.width ?? img.width, height: opts.height ?? img.height, inputResizeMode: opts.resizeMode });
}

/**
 * Routes at /controlnet/* (A1111 clients) and /v1/controlnet* (native).
 * @example app.route("/", controlNetRoutes({ dir: "models/controlnet" }, limits))
 */
export function controlNetRoutes(catalog: ControlNetCatalog, limits: Limits): Hono {
  const app = new Hono();
  const names = () => listControlNets(catalog.dir).map((e) => e.name);
  const failNative = (c: Context, e: unknown) => {
    const p = prepareError(c, e);
    return c.json({ error: { code: p.code, message: p.message, ...(p.field ? { field: p.field } : {}) } }, p.status);
  };

  app.get("/controlnet/version", (c) => c.json({ version: API_VERSION }));
  app.get("/controlnet/model_list", (c) => c.json({ model_list: names() }));
  app.get("/controlnet/module_list", (c) => c.json({ module_list: [...A1111_MODULES], module_detail: moduleDetail() }));
  app.get("/controlnet/settings", (c) => c.json({ control_net_unit_count: MAX_CONTROLNETS }));

  // detect: each image preprocessed at its own size (always "pixel perfect"; controlnet_processor_res is not needed)
  app.post("/controlnet/detect", async (c) => {
    try {
      const body = await readJson(c);
      const module = optString(body, "controlnet_module", { max: 200 }) ?? "none";
      if (!Object.hasOwn(PREPROCESSORS, module)) {
        throw new ValidationError(
          "controlnet_module",
          `Module not available: '${module}'; this server has ${A1111_MODULES.join(", ")} (GET /controlnet/module_list)`,
        );
      }
      const field = body.controlnet_input_images !== undefined ? "controlnet_input_images" : "controlnet_images"; // webuiapi sends the second
      const images = body[field];
      if (!Array.isArray(images) || images.length === 0)
        throw new ValidationError(field, "No image selected: send controlnet_input_images as a list of base64 images");
      if (images.length > 8) throw new ValidationError(field, `at most 8 images per detect request (got ${images.length})`);
      const thresholds = (k: string) => {
        const v = optNumber(body, k);
        return v === undefined || v < 0 ? undefined : v;
      };
      const out: string[] = [];
      for (const [i, b64] of images.entries()) {
        const upload = await inspectUpload(decodeBase64Image(b64, `${field}[${i}]`), `${field}[${i}]`, limits);
        const map = await preprocess(await upload.load(), module, { low: thresholds("controlnet_threshold_a"), high: thresholds("controlnet_threshold_b") });
        out.push((await encodeImage(map, "png")).toString("base64"));
      }
      return c.json({ images: out, info: "Success" });
    } catch (e) {
      return failA1111(c, e);
    }
  });

  app.get("/v1/controlnets", (c) =>
    c.json({
      models: listControlNets(catalog.dir).map((e) => ({ name: e.name })),
      preprocessors: Object.entries(PREPROCESSORS).map(([name, description]) => ({ name, description })),
      maxUnits: MAX_CONTROLNETS,
    }),
  );

  // the preprocessed control image a job would condition on: multipart (image file) or JSON (base64)
  app.post("/v1/controlnet/preview", async (c) => {
    try {
      const type = c.req.header("content-type") ?? "";
      let f: Fields;
      let bytes: Buffer | undefined;
      if (/^multipart\/form-data/i.test(type)) {
        f = (await readBody(() => c.req.parseBody())) as Fields;
        const file = f.image;
        if (typeof file === "object" && file !== null && "arrayBuffer" in file) bytes = Buffer.from(await (file as File).arrayBuffer());
        else if (typeof file === "string") bytes = decodeBase64Image(file, "image");
      } else {
        f = await readJson(c);
        if (f.image !== undefined) bytes = decodeBase64Image(f.image, "image");
      }
      if (!bytes) throw new ValidationError("image", "image is missing: send the picture to preprocess");
      const preprocessor = optString(f, "preprocessor", { max: 50 }) ?? "scribble";
      if (!Object.hasOwn(PREPROCESSORS, preprocessor))
        throw new ValidationError("preprocessor", `preprocessor must be one of ${Object.keys(PREPROCESSORS).join(", ")} (got ${JSON.stringify(preprocessor)})`);
      const size = (k: string) => optNumber(f, k, { min: 1, max: 16384, int: true });
      const [width, height] = [size("width"), size("height")];
      if (width !== undefined && height !== undefined && width * height > limits.maxPixels)
        throw new ValidationError("width", `${width}x${height} is over the server's limit of ${limits.maxPixels} pixels`);
      const resizeMode = (optString(f, "resizeMode") ?? "just-resize") as ResizeMode;
      if (!RESIZE_MODES.includes(resizeMode))
        throw new ValidationError("resizeMode", `resizeMode must be one of ${RESIZE_MODES.join(", ")} (got ${JSON.stringify(resizeMode)})`);
      const upload = await inspectUpload(bytes, "image", limits);
      const map = await preprocess(await upload.load(), preprocessor, {
        width,
        height,
        resizeMode,
        low: optNumber(f, "cannyLow", { min: 0, max: 1020 }),
        high: optNumber(f, "cannyHigh", { min: 0, max: 1020 }),
      });
      c.header("Content-Type", "image/png");
      c.header("Cache-Control", "no-store");
      return c.body(new Uint8Array(await encodeImage(map, "png")));
    } catch (e) {
      return failNative(c, e);
    }
  });
  return app;
}
