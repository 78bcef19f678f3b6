// Pieces `reimagine <input>` and `reimagine batch` share: the model in a child process (so Ctrl+C
// ends a run at once, even inside ONNX Runtime), Ctrl+C/SIGTERM -> AbortSignal, `--from` (settings
// and the model, found in the caches), output names and checks, and the run options from flags.
import { existsSync, statSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import {
  abortError,
  DEFAULT_MODEL,
  findModel,
  formatFromPath,
  hubCacheDir,
  type Img2ImgOptions,
  type ImageFormat,
  loadImage,
  parseInfotext,
  PipelineWorker,
  readImageParameters,
  ReimagineError,
  type RGBImage,
} from "../index.js";
import type { CliIO, GenerateFlags } from "./args.js";
import { maskFlagsFrom } from "./mask.js";
import { fromLoras, loraRunOptions } from "./lora.js";
import { controlFromInfotext, controlRunOptions } from "./args-control.js";
import type { Reporter } from "./report.js";

/**
 * Runs `fn` with an AbortSignal that the first Ctrl+C (or SIGTERM) aborts: the model process is
 * ended at once and nothing is written. A second one exits with 130 at once. Safe at any moment:
 * ONNX Runtime never runs in this process.
 */
export async function withInterrupt<T>(io: CliIO, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = () => {
    if (ac.signal.aborted) process.exit(130);
    io.stderr.write("\nreimagine: stopping (Ctrl+C again to quit at once)\n");
    ac.abort(abortError("interrupted"));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    return await fn(ac.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

/** Loads the model named by --model (default sd-turbo) in a child process; `signal` ends it at once. */
export async function openPipeline(flags: GenerateFlags, report: Reporter, signal: AbortSignal): Promise<PipelineWorker> {
  const ref = flags.model ?? DEFAULT_MODEL;
  if (flags.configFrom && !(existsSync(flags.configFrom) && statSync(flags.configFrom).isDirectory())) {
    throw new ReimagineError(
      `--config-from '${flags.configFrom}' is not a folder: give a diffusers model folder (with unet/, vae/, text_encoder/, tokenizer/, scheduler/)`,
      "not_found",
    );
  }
  report.status(`loading model ${ref}`);
  const load = {
    threads: flags.threads,
    provider: flags.provider,
    configFrom: flags.configFrom,
    predictionType: flags.predictionType,
    quantize: flags.quantize,
    tinyVae: flags.tinyVae,
  };
  const pipe = await PipelineWorker.start(ref, load, { onStatus: (m) => report.status(m), onDownload: (e) => report.download(e), signal });
  signal.addEventListener("abort", () => pipe.kill(), { once: true });
  if (signal.aborted) pipe.kill();
  return pipe;
}

/** Refuses an explicit --width/--height the model cannot make (the native API refuses them too). */
export function checkOutputSize(flags: GenerateFlags, factor: number): void {
  for (const [name, v] of [
    ["width", flags.width],
    ["height", flags.height],
  ] as const) {
    if (v === undefined || v % factor === 0) continue;
    const down = Math.max(factor, v - (v % factor));
    throw new ReimagineError(`--${name} ${v} is not a multiple of ${factor} (this model's VAE factor): use --${name} ${down} or ${down + factor}`, "usage");
  }
}

const EXT: Record<ImageFormat, string> = { png: ".png", jpeg: ".jpg", webp: ".webp" };

/** --format, else the --output extension, else png; refuses a contradiction. */
export function outputFormat(flags: GenerateFlags): ImageFormat {
  if (!flags.output) return flags.format ?? "png";
  let fromPath: ImageFormat | undefined;
  try {
    fromPath = formatFromPath(flags.output);
  } catch (e) {
    if (!flags.format) throw e;
  }
  if (flags.format && fromPath && flags.format !== fromPath) {
    throw new ReimagineError(`--output '${flags.output}' is a ${fromPath} name but --format is ${flags.format}: make them agree`, "usage");
  }
  return flags.format ?? fromPath!;
}

export function extensionOf(fmt: ImageFormat): string {
  return EXT[fmt];
}

/** Refuses outputs that exist (unless --overwrite) or whose folder is missing, before any work. */
export function checkOutputs(paths: string[], overwrite: boolean): void {
  for (const p of paths) {
    const dir = dirname(p);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) {
      throw new ReimagineError(`output folder '${dir}' does not exist: create it first or choose another --output`, "not_found");
    }
    if (!overwrite && existsSync(p)) {
      throw new ReimagineError(`'${p}' already exists: pass --overwrite to replace it, or choose another name with --output`, "file_exists");
    }
  }
}

function stripKnownExt(p: string): string {
  const ext = extname(p);
  return /^\.(png|jpe?g|webp)$/i.test(ext) ? p.slice(0, -ext.length) : p;
}

/** Output file names: <stem>-reimagined.png, -1/-2... for several images, -s0.20 / -sweep for sweeps (a sweep cell
 *  is a strength, or its name suffix such as "s1.00-c0.40"). */
export function outputPaths(
  input: string,
  flags: GenerateFlags,
  fmt: ImageFormat,
  count: number,
  sweep?: (number | string)[],
): { images: string[]; sheet?: string } {
  const ext = EXT[fmt];
  const stem = basename(input, extname(input));
  if (sweep) {
    const base = flags.output ? stripKnownExt(flags.output) : join(dirname(input), stem);
    return { images: sweep.map((s) => `${base}-${typeof s === "number" ? `s${s.toFixed(2)}` : s}${ext}`), sheet: `${base}-sweep${ext}` };
  }
  if (count === 1) return { images: [flags.output ?? join(dirname(input), `${stem}-reimagined${ext}`)] };
  const base = flags.output ? stripKnownExt(flags.output) : join(dirname(input), `${stem}-reimagined`);
  return { images: Array.from({ length: count }, (_, i) => `${base}-${i + 1}${ext}`) };
}

/**
 * Explicit flags win over the settings stored in `--from IMAGE`; the model it was made with is
 * looked up in the caches (by repo id, then by hash) unless --model is given. `note` says where
 * the model was found.
 */
export async function applyFrom(flags: GenerateFlags): Promise<{ flags: GenerateFlags; note?: string }> {
  if (!flags.from) return { flags };
  if (!existsSync(flags.from))
    throw new ReimagineError(`--from '${flags.from}': file not found; give an image written by reimagine or AUTOMATIC1111`, "not_found");
  const text = await readImageParameters(flags.from);
  if (!text)
    throw new ReimagineError(`--from '${flags.from}' has no generation parameters: give an image written by reimagine or AUTOMATIC1111`, "invalid_input");
  const p = parseInfotext(text);
  let model = flags.model;
  let note: string | undefined;
  if (model === undefined && (p.model || p.modelHash)) {
    const found = findModel({ name: p.model, hash: p.modelHash });
    const named = `${p.model ?? "?"}${p.modelHash ? ` [${p.modelHash}]` : ""}`;
    if (found) {
      model = found.ref;
      note = `--from: model ${named} is ${found.ref} (found in ${found.where})`;
    } else if (p.model && /^[\w.-]+\/[\w.-]+(@[\w./-]+)?$/.test(p.model)) {
      model = p.model; // a hub repo id: loaded (downloaded) like any --model
      note = `--from: model ${named} is not in the Hugging Face cache; it will be downloaded`;
    } else {
      throw new ReimagineError(
        `--from '${flags.from}' was made with model ${named}, which is neither in the Hugging Face cache (${hubCacheDir()}) nor among the models reimagine has loaded: pass --model with its file, folder or repo id`,
        "not_found",
      );
    }
  }
  const masked = maskFlagsFrom(flags.mask, p.pairs);
  if (masked.note) note = note ? `${note}\n${masked.note}` : masked.note;
  const loras = flags.prompt === undefined && p.prompt ? fromLoras(p.prompt, p.pairs, { ...flags, model }) : undefined;
  if (loras?.notes.length) note = [note, ...loras.notes].filter(Boolean).join("\n");
  return {
    note,
    flags: {
      ...flags,
      mask: masked.mask,
      model,
      prompt: flags.prompt ?? loras?.prompt ?? p.prompt,
      loras: loras?.loras.length ? [...(flags.loras ?? []), ...loras.loras] : flags.loras,
      negativePrompt: flags.negativePrompt ?? p.negativePrompt,
      steps: flags.steps ?? p.steps,
      sampler: flags.sampler ?? p.sampler,
      guidanceScale: flags.guidanceScale ?? p.cfgScale,
      seed: flags.seed ?? p.seed,
      width: flags.width ?? (flags.height === undefined ? p.width : undefined),
      height: flags.height ?? (flags.width === undefined ? p.height : undefined),
      strengths: flags.strengths ?? (p.denoisingStrength !== undefined ? [p.denoisingStrength] : undefined),
      clipSkip: flags.clipSkip ?? p.clipSkip,
      control: controlFromInfotext(flags.control, p.pairs),
      guidanceRescale: flags.guidanceRescale ?? num(p.pairs.get("CFG Rescale phi")),
      refiner: flags.refiner ?? p.pairs.get("Refiner")?.replace(/\s*\[[0-9a-f]+\]$/, ""),
      refinerSwitch: flags.refinerSwitch ?? num(p.pairs.get("Refiner switch at")),
    },
  };
}

const num = (v: string | undefined): number | undefined => (v === undefined || !Number.isFinite(Number(v)) ? undefined : Number(v));

export function requirePrompt(flags: GenerateFlags): string {
  if (flags.prompt === undefined) {
    throw new ReimagineError(`--prompt is required: describe the picture you want, e.g. --prompt "a watercolor painting of a harbour"`, "usage");
  }
  return flags.prompt;
}

/** Run options from flags common to every run of a command (no image, strength or seed): the
 *  model's defaults filled in, so metadata and --json show what ran. */
export function baseRunOptions(
  flags: GenerateFlags,
  pipe: PipelineWorker,
  prompt: string,
): Omit<Img2ImgOptions, "image" | "strength"> & { steps: number; guidanceScale: number } {
  const { fewStep, ...lora } = loraRunOptions(flags, prompt); // an LCM-LoRA: LCM sampler, few steps, no guidance
  return {
    prompt,
    negativePrompt: flags.negativePrompt,
    steps: flags.steps ?? fewStep.steps ?? pipe.defaults.steps,
    guidanceScale: flags.guidanceScale ?? fewStep.guidanceScale ?? pipe.defaults.guidanceScale,
    guidanceRescale: flags.guidanceRescale,
    refiner: flags.refiner === undefined ? undefined : { model: flags.refiner, switchAt: flags.refinerSwitch ?? 0.8 },
    sampler: flags.sampler ?? fewStep.sampler,
    ...lora,
    clipSkip: flags.clipSkip,
    width: flags.width,
    height: flags.height,
    resizeMode: flags.resizeMode,
    background: flags.background,
    vaeTiling: flags.vaeTiling,
    controlnets: controlRunOptions(flags.control),
  };
}

/** Decodes the input with the CLI's --max-pixels limit (named in the error so the fix is clear). */
export async function loadInput(path: string, flags: GenerateFlags): Promise<RGBImage> {
  try {
    return await loadImage(path, { background: flags.background, maxPixels: flags.maxPixels });
  } catch (e) {
    if (e instanceof ReimagineError && e.code === "image_too_large") {
      const size = e.message.match(/(\d+)x(\d+)/);
      const px = size ? ` (${size[1]}x${size[2]} = ${Number(size[1]) * Number(size[2])} pixels)` : "";
      throw new ReimagineError(
        `image '${path}' is too large${px}: the limit is --max-pixels ${flags.maxPixels}; downscale it first or raise --max-pixels`,
        e.code,
        { cause: e },
      );
    }
    throw e;
  }
}

export const seedJson = (s: number | bigint) => (typeof s === "bigint" ? s.toString() : s);
