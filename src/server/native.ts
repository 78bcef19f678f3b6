// Reimagine's own API under /v1: submit img2img or strength-sweep jobs (multipart upload or JSON
// with base64), poll or stream them (Server-Sent Events with step, total, ETA and a small latent
// preview every few steps), fetch result PNGs (with A1111 metadata), cancel, list models/samplers.
import { Hono, type Context } from "hono";
import { streamSSE } from "hono/streaming";
import { checkBackground, denoisingSteps, noDenoisingStepReason, type ResizeMode } from "../index.js";
import { type ControlNetCatalog, controlNetsSummary, parseNativeControlNets } from "./controlnet-fields.js";
import { type GenerationRequest, outputSize } from "./generate.js";
import { checkOutputSize, decodeBase64Image, inspectUpload, jsonTooDeep, type Limits, prepareError, readBody, readJson, seedJson, slotOf } from "./http.js";
import { nativeMask } from "./inpaint-fields.js";
import { type JobEvent, type Jobs, type JobSnapshot, type ModelInfo, pickModel } from "./jobs.js";
import { checkJobBudget, MAX_JSON_DEPTH } from "./limits.js";
import { loraList, NO_FOLDERS, parseLoraFields, type PromptFolders } from "./lora-fields.js";
import { FINISHED } from "./queue.js";
import { type Fields, optNumber, optSeed, optString, randomSeed, resolveSampler, ValidationError } from "./validate.js";
import { parseRefiner } from "./refiners.js";

const RESIZE_MODES: ResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill"];

export interface NativeOptions extends Limits {
  /** Send a latent preview every this many steps on the event stream (default 2). */
  previewEvery?: number;
  /** Folders of the LoRAs and embeddings requests may name (tags in the prompt, the `loras` field). */
  folders?: PromptFolders;
  /** The ControlNets requests may name. */
  controlnets?: ControlNetCatalog;
}

/** Fields from a multipart form (the image as a File) or a JSON body (the image as base64). */
async function readFields(c: Context): Promise<{ fields: Fields; image?: Buffer; mask?: Buffer }> {
  const type = c.req.header("content-type") ?? "";
  if (/^multipart\/form-data|^application\/x-www-form-urlencoded/i.test(type)) {
    const form = await readBody(() => c.req.parseBody());
    const fields: Fields = {};
    const files: { image?: Buffer; mask?: Buffer } = {};
    for (const [k, v] of Object.entries(form)) {
      if ((k === "image" || k === "mask") && typeof v === "object" && v !== null && "arrayBuffer" in v)
        files[k] = Buffer.from(await readBody(() => (v as File).arrayBuffer()));
      else fields[k] = v;
    }
    let image = files.image;
    if (!image && typeof fields.image === "string") image = decodeBase64Image(fields.image, "image");
    const mask = files.mask ?? (typeof fields.mask === "string" && fields.mask !== "" ? decodeBase64Image(fields.mask, "mask") : undefined);
    if (typeof fields.strengths === "string" && fields.strengths.trim().startsWith("[") && !jsonTooDeep(fields.strengths, MAX_JSON_DEPTH)) {
      try {
        fields.strengths = JSON.parse(fields.strengths);
      } catch {
        /* validated below */
      }
    }
    return { fields, image, mask };
  }
  const fields = await readJson(c);
  const b64 = (k: string) => (fields[k] === undefined || fields[k] === null || fields[k] === "" ? undefined : decodeBase64Image(fields[k], k));
  return { fields, image: b64("image"), mask: b64("mask") };
}

/** First present key among aliases (camelCase, snake_case). */
const alias = (f: Fields, ...keys: string[]): string => keys.find((k) => f[k] !== undefined && f[k] !== null) ?? keys[0];

/** Validates a native request into a GenerationRequest for the model it names (`model`; default: the
 *  first served) with 422 naming the field on bad input. */
export async function parseNativeRequest(
  c: Context,
  jobs: Jobs,
  limits: Limits & { folders?: PromptFolders },
  catalog: ControlNetCatalog = {},
): Promise<{ req: GenerationRequest; fields: Fields; engine: ModelInfo }> {
  const { fields: f, image, mask } = await readFields(c);
  const engine = await pickModel(jobs, optString(f, "model", { max: 1000 }));
  if (!image)
    throw new ValidationError("image", "image is missing: upload a file field 'image' (multipart/form-data) or send 'image' as base64 in a JSON body");
  const d = engine.defaults;
  const strength = optNumber(f, "strength", { min: 0, max: 1 }) ?? d.strength;
  const steps = optNumber(f, "steps", { min: 1, max: 150, int: true }) ?? d.steps;
  const noStep = noDenoisingStepReason(steps, strength);
  if (noStep) throw new ValidationError("steps", noStep);
  const width = optNumber(f, "width", { min: 1, max: 16384, int: true });
  const height = optNumber(f, "height", { min: 1, max: 16384, int: true });
  checkOutputSize(width, height, engine.vaeScaleFactor, limits);
  const resizeMode = (optString(f, alias(f, "resizeMode", "resize_mode")) ?? "just-resize") as ResizeMode;
  if (!RESIZE_MODES.includes(resizeMode)) throw new ValidationError("resizeMode", `resizeMode must be one of ${RESIZE_MODES.join(", ")} (got "${resizeMode}")`);
  const background = optString(f, "background", { max: 64 });
  if (background !== undefined) {
    try {
      checkBackground(background);
    } catch (e) {
      throw new ValidationError("background", (e as Error).message);
    }
  }
  const prompt = optString(f, "prompt") ?? "";
  const lora = parseLoraFields(f, prompt, limits.folders ?? NO_FOLDERS, { native: true });
  const req: GenerationRequest = {
    input: await inspectUpload(image, "image", limits, background),
    prompt,
    negativePrompt: optString(f, alias(f, "negativePrompt", "negative_prompt")),
    strength,
    steps,
    guidanceScale: optNumber(f, alias(f, "guidanceScale", "guidance_scale", "cfg_scale"), { min: 0, max: 50 }) ?? d.guidanceScale,
    seed: optSeed(f, "seed") ?? randomSeed(),
    sampler: resolveSampler(engine.samplers(), optString(f, "sampler", { max: 100 }), undefined, d.sampler),
    clipSkip: optNumber(f, alias(f, "clipSkip", "clip_skip"), { min: 0, max: 11, int: true }) ?? 0,
    batchSize: optNumber(f, alias(f, "numImages", "num_images"), { min: 1, max: 8, int: true }) ?? 1,
    nIter: 1,
    width,
    height,
    resizeMode,
    controlnets: await parseNativeControlNets(f, catalog, limits),
    mask: await nativeMask(f, mask, image, limits),
    refiner: parseRefiner(f, engine, { model: "refiner", switchAt: alias(f, "refinerSwitchAt", "refiner_switch_at") }),
    lora,
  };
  const size = outputSize(req, engine.vaeScaleFactor);
  checkOutputSize(size.width, size.height, engine.vaeScaleFactor, limits);
  return { req, fields: f, engine };
}

/** The compute budget of a native job: its output size x images x denoising steps (summed over a sweep). */
function checkBudget(req: GenerationRequest, engine: ModelInfo, limits: Limits, strengths?: number[]): void {
  const size = outputSize(req, engine.vaeScaleFactor);
  const steps = strengths ? strengths.reduce((n, s) => n + denoisingSteps(req.steps, s), 0) : denoisingSteps(req.steps, req.strength);
  checkJobBudget({ ...size, images: strengths ? 1 : req.batchSize, stepsPerImage: steps }, limits, strengths ? "strengths" : "numImages");
}

/** Strengths of a sweep: a list (JSON array or "0.3,0.5") of 1-12 values in (0, 1]. */
function parseStrengths(f: Fields, steps: number): number[] {
  const raw = f.strengths ?? "0.3,0.5,0.7,0.9";
  const list = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(/[,\s]+/).filter(Boolean) : [raw];
  if (list.length < 1 || list.length > 12) throw new ValidationError("strengths", `strengths must list 1 to 12 values (got ${list.length})`);
  return list.map((v, i) => {
    const s = optNumber({ [`strengths[${i}]`]: v }, `strengths[${i}]`, { min: 0.01, max: 1 })!;
    const noStep = noDenoisingStepReason(steps, s);
    if (noStep) throw new ValidationError("strengths", noStep);
    return s;
  });
}

/** Settings echoed in job views (no image bytes). */
function settingsOf(req: GenerationRequest): Record<string, unknown> {
  return {
    prompt: req.prompt,
    negativePrompt: req.negativePrompt ?? null,
    strength: req.strength,
    steps: req.steps,
    guidanceScale: req.guidanceScale,
    seed: seedJson(req.seed),
    sampler: req.sampler.name,
    samplerA1111: req.sampler.a1111Name,
    clipSkip: req.clipSkip,
    numImages: req.batchSize,
    width: req.width ?? null,
    height: req.height ?? null,
    resizeMode: req.resizeMode,
    inputWidth: req.input.width,
    inputHeight: req.input.height,
    ...(req.controlnets ? { controlnets: controlNetsSummary(req.controlnets) } : {}),
    mask: req.mask ? { ...req.mask, image: undefined } : null,
    refiner: req.refiner ? { name: req.refiner.name, switchAt: req.refiner.switchAt } : null,
    loras: req.lora?.loras ?? [],
    promptSyntax: req.lora?.promptSyntax ?? "a1111",
  };
}

const etaMs = (job: JobSnapshot): number | null => {
  if (!job.startedAt || job.step < 1 || job.total < 1) return null;
  return Math.round(((Date.now() - job.startedAt) / job.step) * (job.total - job.step));
};

/** Public JSON view of a job. */
export function jobView(job: JobSnapshot): Record<string, unknown> {
  const r = job.result;
  return {
    id: job.id,
    kind: job.kind,
    model: job.model,
    status: job.status,
    position: job.position ?? null,
    attempts: job.attempts,
    worker: job.worker ?? null,
    createdAt: new Date(job.createdAt).toISOString(),
    startedAt: job.startedAt ? new Date(job.startedAt).toISOString() : null,
    finishedAt: job.finishedAt ? new Date(job.finishedAt).toISOString() : null,
    progress: { step: job.step, total: job.total, fraction: job.total ? job.step / job.total : 0, etaMs: etaMs(job) },
    settings: job.meta,
    error: job.error ?? null,
    expired: job.expired ?? false,
    result: r
      ? {
          seed: seedJson(r.seed),
          width: r.width,
          height: r.height,
          stepsRun: r.stepsRun,
          totalMs: Math.round(r.totalMs),
          notes: r.notes ?? [],
          images: r.images.map((im, i) => ({
            url: `/v1/jobs/${job.id}/images/${i}`,
            seed: seedJson(im.seed),
            width: im.width,
            height: im.height,
            infotext: im.infotext,
            ...(im.strength !== undefined ? { strength: im.strength, ssim: im.ssim } : {}),
          })),
        }
      : null,
  };
}

/**
 * Routes under /v1 (mount at the app root).
 * @example app.route("/", nativeRoutes(jobs, { maxPixels: 16e6, maxBodyBytes: 32 << 20 }))
 */
export function nativeRoutes(jobs: Jobs, opts: NativeOptions): Hono {
  const app = new Hono();
  const fail = (c: Context, e: unknown) => {
    const p = prepareError(c, e);
    return c.json({ error: { code: p.code, message: p.message, ...(p.field ? { field: p.field } : {}) } }, p.status);
  };
  const accepted = (c: Context, job: JobSnapshot) => c.json({ ...jobView(job), url: `/v1/jobs/${job.id}`, events: `/v1/jobs/${job.id}/events` }, 202);
  const notFound = (c: Context) => c.json({ error: { code: "not_found", message: "no such job (finished jobs are kept for a while only)" } }, 404);

  // the queue slot was reserved before the body was read (app.ts); submit() takes it
  app.post("/v1/img2img", async (c) => {
    try {
      const { req, engine } = await parseNativeRequest(c, jobs, opts, opts.controlnets);
      checkBudget(req, engine, opts);
      return accepted(c, await jobs.submit({ kind: "img2img", model: engine.modelName, request: req }, settingsOf(req), slotOf(c)));
    } catch (e) {
      return fail(c, e);
    }
  });

  app.post("/v1/sweep", async (c) => {
    try {
      const { req, fields, engine } = await parseNativeRequest(c, jobs, opts, opts.controlnets);
      const strengths = parseStrengths(fields, req.steps);
      checkBudget(req, engine, opts, strengths);
      const spec = { kind: "sweep" as const, model: engine.modelName, request: req, strengths };
      return accepted(c, await jobs.submit(spec, { ...settingsOf(req), strengths }, slotOf(c)));
    } catch (e) {
      return fail(c, e);
    }
  });

  app.get("/v1/jobs/:id", async (c) => {
    const job = await jobs.get(c.req.param("id"));
    return job ? c.json(jobView(job)) : notFound(c);
  });

  app.delete("/v1/jobs/:id", async (c) => {
    const id = c.req.param("id");
    const outcome = await jobs.cancel(id);
    const job = outcome === "not-found" ? undefined : await jobs.get(id);
    if (!job) return c.json({ error: { code: "not_found", message: "no such job" } }, 404);
    if (outcome === "finished") return c.json({ error: { code: "finished", message: `job already ${job.status}` }, job: jobView(job) }, 409);
    return c.json(jobView(job));
  });

  app.get("/v1/jobs/:id/images/:n", async (c) => {
    const n = c.req.param("n");
    if (!/^\d{1,4}$/.test(n))
      return c.json(
        { error: { code: "invalid_input", message: `image index must be a whole number such as 0 (got ${JSON.stringify(n.slice(0, 20))})`, field: "n" } },
        422,
      );
    const id = c.req.param("id");
    const png = await jobs.image(id, Number(n));
    if (png === "expired") {
      const message =
        "this job's images were dropped to keep the server's memory bounded (reimagine serve --keep-results-mb / --result-ttl-s): fetch results soon after they finish";
      return c.json({ error: { code: "expired", message } }, 410);
    }
    const im = png && (await jobs.get(id))?.result?.images[Number(n)];
    if (!png || !im) return c.json({ error: { code: "not_found", message: "no such image: the job is unknown, unfinished, or has fewer images" } }, 404);
    c.header("Content-Type", "image/png");
    c.header("Content-Disposition", `inline; filename="reimagine-${String(im.seed)}-${Number(n)}.png"`);
    c.header("Cache-Control", "private, max-age=3600");
    return c.body(new Uint8Array(png));
  });

  app.get("/v1/jobs/:id/events", async (c) => {
    const job = await jobs.get(c.req.param("id"));
    if (!job) return c.json({ error: { code: "not_found", message: "no such job" } }, 404);
    return streamSSE(c, (stream) => streamJob(stream, job, jobs, opts.previewEvery ?? 2));
  });

  app.get("/v1/queue", async (c) => {
    const s = await jobs.stats();
    return c.json({
      size: s.size,
      maxSize: s.maxSize,
      running: s.running[0] ?? null,
      runningAll: s.running,
      queued: s.queued,
      depth: s.depth,
      workers: s.workers,
      retainedBytes: s.retainedBytes ?? null,
    });
  });

  app.get("/v1/models", async (c) => {
    const workers = (await jobs.stats()).workers;
    return c.json(
      (await jobs.models()).map((engine) => ({
        name: engine.modelName,
        hash: engine.modelHash,
        loaded: true,
        workers: workers[engine.modelName] ?? 0,
        defaults: engine.defaults,
        vaeScaleFactor: engine.vaeScaleFactor,
        family: engine.family ?? null,
        nativeSize: engine.nativeSize ?? null,
        refiners: (engine.refiners ?? []).map((r) => r.name),
        maxPixels: opts.maxPixels,
      })),
    );
  });

  app.get("/v1/loras", (c) => c.json(loraList((opts.folders ?? NO_FOLDERS).loraDirs).map(({ name, alias, path }) => ({ name, alias, path }))));

  app.get("/v1/samplers", async (c) => {
    try {
      const engine = await pickModel(jobs, c.req.query("model"));
      return c.json(engine.samplers().map((s) => ({ ...s, default: s.name === engine.defaults.sampler })));
    } catch (e) {
      return fail(c, e);
    }
  });

  return app;
}

type SSE = Parameters<Parameters<typeof streamSSE>[1]>[0];

/** Streams one job: `status` events, `progress` events (preview data URL every few steps), then `done`. */
async function streamJob(stream: SSE, first: JobSnapshot, jobs: Jobs, previewEvery: number): Promise<void> {
  const events: JobEvent[] = [];
  let wake: (() => void) | undefined;
  const unsubscribe = await jobs.watch(first.id, (e) => {
    events.push(e);
    wake?.();
  });
  stream.onAbort(() => {
    unsubscribe();
    wake?.();
  });
  let lastPreview = 0;
  try {
    let job = (await jobs.get(first.id)) ?? first; // read after subscribing: nothing is missed in between
    await stream.writeSSE({ event: "status", data: JSON.stringify(jobView(job)) });
    while (!FINISHED.includes(job.status) && !stream.aborted) {
      if (events.length === 0) {
        const keepAlive = setTimeout(() => void stream.write(": keep-alive\n\n").catch(() => undefined), 15_000);
        await new Promise<void>((r) => (wake = r));
        clearTimeout(keepAlive);
        wake = undefined;
      }
      // coalesce: only the latest status and progress matter
      const batch = events.splice(0);
      if (batch.length === 0) continue;
      job = batch[batch.length - 1].job;
      const status = batch.some((e) => e.type === "status");
      if (status && !FINISHED.includes(job.status)) await stream.writeSSE({ event: "status", data: JSON.stringify(jobView(job)) });
      if (batch.some((e) => e.type === "progress") && job.status === "running") {
        const payload: Record<string, unknown> = { step: job.step, total: job.total, fraction: job.total ? job.step / job.total : 0, etaMs: etaMs(job) };
        if (job.step - lastPreview >= previewEvery || job.step === job.total) {
          const png = await jobs.preview(job.id);
          if (png) {
            lastPreview = job.step;
            payload.preview = `data:image/png;base64,${png.toString("base64")}`;
          }
        }
        await stream.writeSSE({ event: "progress", data: JSON.stringify(payload) });
      }
    }
    if (!stream.aborted) await stream.writeSSE({ event: "done", data: JSON.stringify(jobView(job)) });
  } finally {
    unsubscribe();
  }
}
