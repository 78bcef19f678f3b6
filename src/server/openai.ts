// OpenAI-compatible image edits, POST /v1/images/edits, as the OpenAI SDKs and Open WebUI send it: multipart
// `image`, optional `mask` (its fully transparent pixels mark the area to edit; without it the image's own
// transparency does), `prompt`, `n`, `size`, `response_format` (b64_json or url), `model` (a served model's
// name; other names, e.g. "dall-e-2", get the default model) and `user` (accepted). Anything else is a 422 naming the field. Ref: OpenAI API reference, images/edits.
import { Hono, type Context } from "hono";
import { denoisingSteps, type MaskOptions } from "../index.js";
import type { GenerationRequest } from "./generate.js";
import { checkOutputSize, inspectUpload, type Limits, prepareError, readBody, slotOf } from "./http.js";
import { checkMaskUpload } from "./inpaint-fields.js";
import { type Jobs, modelTitle, pickModel } from "./jobs.js";
import { checkJobBudget } from "./limits.js";
import { type Fields, optNumber, optString, randomSeed, resolveSampler, ValidationError } from "./validate.js";

/** Fields the endpoint honours; `user` is accepted (no per-user tracking). */
const KNOWN = new Set(["image", "mask", "prompt", "n", "size", "response_format", "model", "user"]);

/** OpenAI's error body, with the field in `param`. */
function openaiError(c: Context, e: unknown) {
  const p = prepareError(c, e);
  const type = p.status === 500 ? "server_error" : "invalid_request_error";
  return c.json({ error: { message: p.message, type, param: p.field ?? null, code: p.code } }, p.status);
}

const isFile = (v: unknown): v is File => typeof v === "object" && v !== null && "arrayBuffer" in v;

/** size: "auto" (the image's size), or "WxH" in pixels (multiples of the VAE factor). */
function parseSize(v: string | undefined): { width?: number; height?: number } {
  if (v === undefined || v === "auto") return {};
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(v.trim());
  if (!m) throw new ValidationError("size", `size must be "auto" or WIDTHxHEIGHT such as "512x512" (got "${v.slice(0, 40)}")`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

/**
 * Routes of the OpenAI-compatible API (mount at the app root).
 * @example app.route("/", openaiRoutes(jobs, limits))
 */
export function openaiRoutes(jobs: Jobs, limits: Limits): Hono {
  const app = new Hono();
  app.post("/v1/images/edits", async (c) => {
    try {
      if (!/^multipart\/form-data/i.test(c.req.header("content-type") ?? "")) {
        throw new ValidationError(
          "image",
          "images/edits takes multipart/form-data (as the OpenAI SDKs send it): a file field 'image', optional 'mask', and 'prompt'",
        );
      }
      const form = (await readBody(() => c.req.parseBody())) as Fields;
      for (const k of Object.keys(form)) {
        if (k === "image[]") throw new ValidationError("image[]", "one image per edit: send a single file field 'image'");
        if (!KNOWN.has(k)) throw new ValidationError(k, `${k} is not supported by this server's images/edits (it accepts ${[...KNOWN].join(", ")})`);
      }
      if (!isFile(form.image)) throw new ValidationError("image", "image is missing: upload the picture as a file field 'image'");
      const prompt = optString(form, "prompt", { max: 32_000 });
      if (!prompt) throw new ValidationError("prompt", "prompt is required: describe the edited picture");
      const n = optNumber(form, "n", { min: 1, max: 10, int: true }) ?? 1;
      const format = optString(form, "response_format", { max: 20 }) ?? "url";
      if (format !== "url" && format !== "b64_json")
        throw new ValidationError("response_format", `response_format must be "url" or "b64_json" (got "${format}")`);
      // OpenAI clients send their own model names ("dall-e-2"): a served model's name picks it, others the default
      const named = optString(form, "model", { max: 1000 });
      const models = await jobs.models();
      const engine = await pickModel(jobs, models.some((m) => named === m.modelName || named === modelTitle(m)) ? named : undefined);
      const { width, height } = parseSize(optString(form, "size", { max: 20 }));
      checkOutputSize(width, height, engine.vaeScaleFactor, limits);
      const imageBytes = Buffer.from(await readBody(() => (form.image as File).arrayBuffer()));
      const input = await inspectUpload(imageBytes, "image", limits);
      let mask: MaskOptions;
      if (form.mask === undefined)
        mask = { image: imageBytes, source: "alpha" }; // the image's transparent pixels are edited
      else if (isFile(form.mask))
        mask = { image: await checkMaskUpload(Buffer.from(await readBody(() => (form.mask as File).arrayBuffer())), "mask", limits), source: "openai" };
      else throw new ValidationError("mask", "mask must be a file field (a PNG whose transparent pixels mark the area to edit)");
      const d = engine.defaults;
      // the edited area is generated anew (strength 1), the rest kept: DALL-E's edit semantics
      const req: GenerationRequest = {
        input,
        prompt,
        negativePrompt: "",
        strength: 1,
        steps: d.steps,
        guidanceScale: d.guidanceScale,
        seed: randomSeed(),
        sampler: resolveSampler(engine.samplers(), undefined, undefined, d.sampler),
        clipSkip: 0,
        batchSize: n,
        nIter: 1,
        width,
        height,
        resizeMode: "just-resize",
        mask,
      };
      const w = width ?? input.width - (input.width % engine.vaeScaleFactor);
      const h = height ?? input.height - (input.height % engine.vaeScaleFactor);
      checkJobBudget({ width: w, height: h, images: n, stepsPerImage: denoisingSteps(req.steps, 1) }, limits, "n");
      const { id } = await jobs.submit({ kind: "img2img", model: engine.modelName, request: req }, { api: "openai", prompt }, slotOf(c));
      const signal = c.req.raw.signal;
      const onAbort = () => void jobs.cancel(id).catch(() => undefined);
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) onAbort(); // the client left while the job was being queued
      const job = await jobs.wait(id, { owned: true }).finally(() => signal.removeEventListener("abort", onAbort));
      if (job?.status !== "succeeded") {
        const internal = !job || job.error?.code === "internal_error" || job.error?.code === "worker_lost";
        const message = !job
          ? "the job's record is gone (expired or removed) before it finished"
          : job.status === "failed"
            ? job.error!.message
            : "the edit was cancelled before it finished; no image was produced";
        return c.json(
          {
            error: {
              message,
              type: internal ? "server_error" : "invalid_request_error",
              param: null,
              code: job?.error?.code ?? job?.status ?? "internal_error",
            },
          },
          internal ? 500 : 422,
        );
      }
      const r = job.result!;
      const pngs = format === "b64_json" ? await jobs.images(id) : [];
      const data = r.images.map((_im, i) =>
        format === "b64_json" ? { b64_json: pngs[i].toString("base64") } : { url: new URL(`/v1/jobs/${id}/images/${i}`, c.req.url).href },
      );
      return c.json({ created: Math.floor(Date.now() / 1000), data, ...(r.notes ? { notes: r.notes } : {}) });
    } catch (e) {
      return openaiError(c, e);
    }
  });
  return app;
}
