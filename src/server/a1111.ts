// AUTOMATIC1111-compatible subset under /sdapi/v1, shaped as stable-diffusion-webui's
// modules/api/api.py answers (Ref: img2imgapi, progressapi, interruptapi, get_samplers, get_sd_models,
// get_config): requests as the webuiapi client and SillyTavern send them, unknown fields ignored.
import { Hono, type Context } from "hono";
import { DEFAULT_SAMPLER, denoisingSteps, maskInfotext, noDenoisingStepReason, type ResizeMode } from "../index.js";
import { type ControlNetCatalog, parseA1111ControlNets } from "./controlnet-fields.js";
import type { GenerationRequest } from "./generate.js";
import { decodeBase64Image, inspectUpload, type Limits, prepareError, readJson, seedJson, slotOf, type Upload, uploadFrom } from "./http.js";
import { a1111Mask, refuseMask } from "./inpaint-fields.js";
import { type Jobs, type JobSnapshot, type ModelInfo, modelTitle, pickModel, type ResultInfo } from "./jobs.js";
import { checkJobBudget } from "./limits.js";
import { embeddingList, loraList, NO_FOLDERS, parseLoraFields, type PromptFolders } from "./lora-fields.js";
import { type Fields, optBoolean, optNumber, optSeed, optString, randomSeed, resolveSampler, ValidationError } from "./validate.js";
import { parseRefiner } from "./refiners.js";

/** A1111 resize_mode: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale (we resize). */
const RESIZE: ResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill", "just-resize"];

/** A1111's error body for HTTPException-style failures. */
const httpError = (detail: string, error = "HTTPException") => ({ error, detail, body: "", errors: "" });

/** FastAPI's 422 body (what A1111 answers for a request that fails validation). */
const validationBody = (field: string, msg: string) => ({ detail: [{ loc: ["body", field], msg, type: "value_error" }] });

const timestamp = (ms: number) => new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14); // %Y%m%d%H%M%S (UTC)

/** Server-wide options a client may set via POST /sdapi/v1/options (others are accepted and ignored). */
interface A1111State {
  clipStopAtLastLayers: number;
  /** sd_model_checkpoint as set by a client (a served model's name or title); default: the first served. */
  model?: string;
}

/** A1111-shaped error response (FastAPI's 422 shape for a bad field). */
export function fail(c: Context, e: unknown) {
  if (e instanceof ValidationError) return c.json(validationBody(e.field, e.message), 422);
  const p = prepareError(c, e);
  return c.json(httpError(p.message, p.status === 500 ? "RuntimeError" : "HTTPException"), p.status);
}

/** Parses an A1111 img2img/txt2img body into our request. */
async function parseA1111(
  body: Fields,
  engine: ModelInfo,
  limits: Limits,
  state: A1111State,
  txt2img: boolean,
  folders: PromptFolders,
  catalog: ControlNetCatalog,
): Promise<GenerationRequest> {
  const f = engine.vaeScaleFactor;
  // A1111 renders at width x height (default 512) and the VAE floors to its factor; we round the same way
  const size = (k: string) => {
    const v = optNumber(body, k, { min: 1, max: 16384, int: true }) ?? 512;
    if (v - (v % f) < f) throw new ValidationError(k, `${k} must be at least ${f} (got ${v})`);
    return v - (v % f);
  };
  const width = size("width");
  const height = size("height");
  if (width * height > limits.maxPixels) throw new ValidationError("width", `${width}x${height} is over the server's limit of ${limits.maxPixels} pixels`);
  const batchSize = optNumber(body, "batch_size", { min: 1, max: 8, int: true }) ?? 1;
  const nIter = optNumber(body, "n_iter", { min: 1, max: 16, int: true }) ?? 1;
  if (batchSize * nIter > 16) throw new ValidationError("n_iter", `batch_size x n_iter is ${batchSize * nIter}; at most 16 images per request`);
  const strength = txt2img ? 1 : (optNumber(body, "denoising_strength", { min: 0, max: 1 }) ?? 0.75);
  const steps = optNumber(body, "steps", { min: 1, max: 150, int: true }) ?? engine.defaults.steps;
  const noStep = noDenoisingStepReason(steps, strength, { strength: "denoising_strength", steps: "steps" });
  if (noStep) throw new ValidationError("steps", noStep);
  const resizeMode = optNumber(body, "resize_mode", { min: 0, max: 3, int: true }) ?? 0;
  const override = typeof body.override_settings === "object" && body.override_settings !== null ? (body.override_settings as Fields) : {};
  const clipStop = optNumber(override, "CLIP_stop_at_last_layers", { min: 1, max: 12, int: true }) ?? state.clipStopAtLastLayers;
  const samplerName = optString(body, "sampler_name", { max: 100 }) || optString(body, "sampler_index", { max: 100 }) || undefined;
  const sampler = resolveSampler(
    engine.samplers(),
    samplerName,
    optString(body, "scheduler", { max: 100 }) ?? undefined,
    engine.defaults.sampler,
    "sampler_name",
  );
  checkJobBudget({ width, height, images: batchSize * nIter, stepsPerImage: denoisingSteps(steps, strength) }, limits, "steps");
  const prompt = optString(body, "prompt") ?? "";
  const lora = parseLoraFields(body, prompt, folders, { native: false }); // <lora:name:w> tags in the prompt
  let input: Upload;
  if (txt2img) refuseMask(body, "txt2img");
  if (txt2img) {
    // txt2img: img2img at strength 1 from a mid-grey canvas (the input keeps ~7% weight at t=999); made inside the job
    input = uploadFrom(width, height, { fill: 128 });
  } else {
    const init = body.init_images as unknown[];
    input = await inspectUpload(decodeBase64Image(init[0], "init_images"), "init_images", limits);
  }
  const controlnets = await parseA1111ControlNets(body, catalog, limits);
  const blind = txt2img ? controlnets?.findIndex((u) => !u.image) : -1;
  if (blind !== undefined && blind >= 0)
    throw new ValidationError(
      "alwayson_scripts.controlnet.args",
      `ControlNet unit ${blind} has no image: txt2img has no init image to use, send the unit's image`,
    );
  return {
    input,
    prompt,
    negativePrompt: optString(body, "negative_prompt") ?? "",
    strength,
    steps,
    guidanceScale: optNumber(body, "cfg_scale", { min: 0, max: 50 }) ?? engine.defaults.guidanceScale,
    seed: optSeed(body, "seed") ?? randomSeed(),
    sampler,
    clipSkip: clipStop - 1,
    batchSize,
    nIter,
    width,
    height,
    resizeMode: RESIZE[resizeMode],
    controlnets,
    mask: txt2img ? undefined : await a1111Mask(body, limits),
    refiner: parseRefiner(body, engine, { model: "refiner_checkpoint", switchAt: "refiner_switch_at" }),
    lora,
  };
}

/** `info` of an A1111 response (processed.js()): a JSON *string*. */
function infoString(engine: ModelInfo, req: GenerationRequest, r: ResultInfo, job: JobSnapshot): string {
  const seeds = r.images.map((im) => seedJson(im.seed));
  const n = r.images.length;
  return JSON.stringify({
    prompt: req.prompt,
    all_prompts: Array(n).fill(req.prompt),
    negative_prompt: req.negativePrompt,
    all_negative_prompts: Array(n).fill(req.negativePrompt),
    seed: seedJson(req.seed),
    all_seeds: seeds,
    subseed: seedJson(req.seed),
    all_subseeds: seeds,
    subseed_strength: 0,
    width: r.width,
    height: r.height,
    sampler_name: req.sampler.a1111Name,
    cfg_scale: req.guidanceScale,
    steps: req.steps,
    batch_size: req.batchSize,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: engine.modelName,
    sd_model_hash: engine.modelHash || null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: req.strength,
    extra_generation_params: { ...maskInfotext(req.mask), ...r.extraGenerationParams },
    index_of_first_image: 0,
    infotexts: r.images.map((im) => im.infotext),
    styles: [],
    job_timestamp: timestamp(job.startedAt ?? job.createdAt),
    clip_skip: req.clipSkip + 1,
    is_using_inpainting_conditioning: false,
    version: "reimagine",
    ...(r.notes ? { notes: r.notes } : {}),
  });
}

/**
 * Routes under /sdapi/v1 (mount at the app root).
 * @example app.route("/", a1111Routes(jobs, limits))
 */
export function a1111Routes(jobs: Jobs, limits: Limits, folders: PromptFolders = NO_FOLDERS, catalog: ControlNetCatalog = {}): Hono {
  const app = new Hono();
  const state: A1111State = { clipStopAtLastLayers: 1 };
  /** The model a request runs on: override_settings.sd_model_checkpoint, else the one set by POST options. */
  const modelFor = (body: Fields) => {
    const override = typeof body.override_settings === "object" && body.override_settings !== null ? (body.override_settings as Fields) : {};
    const named = optString(override, "sd_model_checkpoint", { max: 1000 });
    return named ? pickModel(jobs, named, "sd_model_checkpoint") : pickModel(jobs, state.model).catch(() => pickModel(jobs, undefined));
  };

  /** Queues the request, waits for it (cancelling it if the client goes away), answers A1111's shape. */
  const generate = async (c: Context, txt2img: boolean) => {
    try {
      const body = await readJson(c);
      if (!txt2img && (!Array.isArray(body.init_images) || body.init_images.length === 0)) {
        return c.json(httpError("Init image not found"), 404);
      }
      const engine = await modelFor(body);
      const req = await parseA1111(body, engine, limits, state, txt2img, folders, catalog);
      // every field read below is checked here, before the job runs
      const sendImages = optBoolean(body, "send_images") ?? true;
      const includeInit = optBoolean(body, "include_init_images") ?? false;
      const spec = { kind: txt2img ? ("txt2img" as const) : ("img2img" as const), model: engine.modelName, request: req };
      const { id } = await jobs.submit(spec, { api: "a1111", prompt: req.prompt }, slotOf(c));
      const signal = c.req.raw.signal;
      const onAbort = () => void jobs.cancel(id).catch(() => undefined);
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) onAbort(); // the client left while the job was being queued
      const job = await jobs.wait(id, { owned: true }).finally(() => signal.removeEventListener("abort", onAbort));
      if (!job) return c.json(httpError("the job's record is gone (expired or removed) before it finished", "RuntimeError"), 500);
      if (job.status === "cancelled") {
        return c.json(httpError("Interrupted: the job was interrupted or cancelled before it finished; no image was produced", "Interrupted"), 409);
      }
      if (job.status === "failed") {
        const internal = job.error?.code === "internal_error" || job.error?.code === "worker_lost";
        return c.json(httpError(job.error!.message, internal ? "RuntimeError" : "HTTPException"), internal ? 500 : 422);
      }
      const r = job.result!;
      const pngs = sendImages ? await jobs.images(id) : [];
      const parameters: Fields = { ...body };
      if (!includeInit) {
        if (!txt2img) parameters.init_images = null;
        parameters.mask = null;
      }
      return c.json({
        // the extension appends each unit's preprocessed control image ("detected map") after the results
        images: [...pngs.map((png) => png.toString("base64")), ...(sendImages ? (r.controlMaps ?? []) : [])],
        parameters,
        info: infoString(engine, req, r, job),
      });
    } catch (e) {
      return fail(c, e);
    }
  };

  app.post("/sdapi/v1/img2img", (c) => generate(c, false));
  app.post("/sdapi/v1/txt2img", (c) => generate(c, true));

  app.get("/sdapi/v1/progress", async (c) => {
    const skip = /^(true|1)$/i.test(c.req.query("skip_current_image") ?? "false");
    const [job] = await jobs.running();
    const s = {
      skipped: false,
      interrupted: job?.interrupted ?? false,
      stopping_generation: false,
      job: job ? job.kind : "",
      job_count: (await jobs.stats()).size,
      job_timestamp: timestamp(job?.startedAt ?? Date.now()),
      job_no: 0,
      sampling_step: job?.step ?? 0,
      sampling_steps: job?.total ?? 0,
    };
    if (!job) return c.json({ progress: 0, eta_relative: 0, state: s, current_image: null, textinfo: null });
    const progress = job.total ? Math.min(1, job.step / job.total) : 0;
    const elapsed = (Date.now() - (job.startedAt ?? Date.now())) / 1000;
    const eta = job.step > 0 ? (elapsed / job.step) * (job.total - job.step) : 0;
    const preview = skip ? undefined : await jobs.preview(job.id);
    const current = preview ? preview.toString("base64") : null;
    return c.json({ progress, eta_relative: eta, state: s, current_image: current, textinfo: null });
  });

  app.post("/sdapi/v1/interrupt", async (c) => {
    await jobs.interrupt();
    return c.json({});
  });
  app.post("/sdapi/v1/skip", (c) => c.json(null)); // one image at a time per batch: nothing to skip

  app.get("/sdapi/v1/samplers", async (c) => {
    // the model's own scheduler ("default") is listed only when no other entry has its A1111 name
    const all = (await modelFor({})).samplers();
    const shown = all.filter((s) => s.name !== DEFAULT_SAMPLER || !all.some((o) => o !== s && o.a1111Name === s.a1111Name));
    return c.json(shown.map((s) => ({ name: s.a1111Name, aliases: [s.name], options: {} })));
  });
  app.get("/sdapi/v1/schedulers", async (c) =>
    c.json([
      { name: "automatic", label: "Automatic", aliases: null, default_rho: -1, need_inner_model: false },
      ...((await modelFor({})).samplers().some((s) => /karras/i.test(s.a1111Name))
        ? [{ name: "karras", label: "Karras", aliases: null, default_rho: 7, need_inner_model: false }]
        : []),
    ]),
  );
  app.get("/sdapi/v1/sd-models", async (c) =>
    c.json(
      (await jobs.models()).flatMap((m) => [
        { title: modelTitle(m), model_name: m.modelName, hash: m.modelHash || null, sha256: null, filename: m.modelName, config: null },
        // refiners are listed like checkpoints: clients pick refiner_checkpoint from this list
        ...(m.refiners ?? []).map((r) => ({ title: r.name, model_name: r.name, hash: null, sha256: null, filename: r.ref, config: null })),
      ]),
    ),
  );
  app.get("/sdapi/v1/options", async (c) => {
    const engine = await modelFor({});
    return c.json({
      sd_model_checkpoint: modelTitle(engine),
      sd_checkpoint_hash: engine.modelHash || null,
      CLIP_stop_at_last_layers: state.clipStopAtLastLayers,
      samples_format: "png",
      sd_vae: "Automatic",
      img2img_fix_steps: false,
    });
  });
  app.post("/sdapi/v1/options", async (c) => {
    try {
      const body = await readJson(c);
      const ckpt = optString(body, "sd_model_checkpoint", { max: 1000 });
      if (ckpt !== undefined) state.model = modelTitle(await pickModel(jobs, ckpt, "sd_model_checkpoint"));
      const clip = optNumber(body, "CLIP_stop_at_last_layers", { min: 1, max: 12, int: true });
      if (clip !== undefined) state.clipStopAtLastLayers = clip;
      return c.json(null);
    } catch (e) {
      return fail(c, e);
    }
  });
  // lists clients read while setting up; this server has none of these extras
  app.get("/sdapi/v1/upscalers", (c) => c.json([{ name: "None", model_name: null, model_path: null, model_url: null, scale: 4 }]));
  app.get("/sdapi/v1/latent-upscale-modes", (c) => c.json([]));
  app.get("/sdapi/v1/sd-vae", (c) => c.json([]));
  app.get("/sdapi/v1/loras", (c) => c.json(loraList(folders.loraDirs))); // read from the folders on each call: refresh is a no-op
  app.post("/sdapi/v1/refresh-loras", (c) => c.json(null));
  app.get("/sdapi/v1/prompt-styles", (c) => c.json([]));
  app.get("/sdapi/v1/embeddings", (c) => c.json(embeddingList(folders.embeddingDirs)));
  app.get("/sdapi/v1/scripts", (c) => c.json({ txt2img: [], img2img: [] }));
  app.all("/sdapi/*", (c) => c.json({ detail: "Not Found" }, 404));
  return app;
}
