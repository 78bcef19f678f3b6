// `reimagine <input> --prompt TEXT [...]`: one img2img run (or a strength sweep) from the command line,
// plus the pieces `reimagine batch` shares: model loading with status/progress, Ctrl+C -> AbortSignal,
// A1111 metadata and output naming. Output files are checked before the model loads and written atomically.
import { existsSync, statSync } from "node:fs";
import { basename, dirname, extname, join } from "node:path";
import {
  a1111SamplerName,
  abortError,
  DEFAULT_MODEL,
  encodeImage,
  formatFromPath,
  formatInfotext,
  type ImageFormat,
  type Img2ImgOptions,
  type Img2ImgPipeline,
  isAbortError,
  loadImage,
  loadPipeline,
  type ProgressEvent,
  parseInfotext,
  ReimagineError,
  type RGBImage,
  readImageParameters,
  strengthSweep,
  sweepLabel,
  validateStrengths,
  writeFileAtomic,
} from "../index.js";
import { type CliIO, type GenerateFlags, mainHelp, parseGenerateArgs } from "./args.js";
import { createProgress, downloadProgress, type Progress } from "./progress.js";

// ---------- shared with batch ----------

/** Status lines (model loading) go to stderr on a terminal, or anywhere with --verbose; never with --quiet. */
export function statusWriter(io: CliIO, flags: GenerateFlags): (message: string) => void {
  const on = !flags.quiet && !flags.json && (io.stderr.isTTY || flags.verbose);
  return (m) => {
    if (on) io.stderr.write(`${m}\n`);
  };
}

/** A denoising-steps bar for one run (drawn only on a TTY). */
export function stepProgress(io: CliIO, flags: GenerateFlags, label: string): (e: ProgressEvent) => void {
  let bar: Progress | undefined;
  return (e) => {
    if (flags.quiet || flags.json || !io.stderr.isTTY) return;
    bar ??= createProgress({ label, total: e.total, unit: "steps", stream: io.stderr as NodeJS.WriteStream });
    bar.update(e.step);
    if (e.step === e.total) bar.finish();
  };
}

/** An Error whose name is AbortError (the pipeline's and fetch's cancellation). */
export const isAbort = isAbortError;

/**
 * Runs `fn` with an AbortSignal that the first Ctrl+C aborts (the run stops within a step and
 * writes nothing); a second Ctrl+C exits at once with 130.
 */
export async function withInterrupt<T>(io: CliIO, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130);
    io.stderr.write("\nreimagine: stopping (Ctrl+C again to quit at once)\n");
    ac.abort(abortError("interrupted"));
  };
  process.on("SIGINT", onSigint);
  try {
    return await fn(ac.signal);
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/** Loads the model named by --model (default sd-turbo) with download bars and status lines. */
export async function openPipeline(flags: GenerateFlags, io: CliIO, signal: AbortSignal): Promise<Img2ImgPipeline> {
  const ref = flags.model ?? DEFAULT_MODEL;
  if (flags.configFrom && !(existsSync(flags.configFrom) && statSync(flags.configFrom).isDirectory())) {
    throw new ReimagineError(`--config-from '${flags.configFrom}' is not a folder: give a diffusers model folder (with unet/, vae/, text_encoder/, tokenizer/, scheduler/)`, "not_found");
  }
  const status = statusWriter(io, flags);
  status(`loading model ${ref}`);
  const bars = !flags.quiet && !flags.json ? downloadProgress({ stream: io.stderr as NodeJS.WriteStream }) : undefined;
  const pipe = await loadPipeline(ref, {
    threads: flags.threads,
    provider: flags.provider,
    configFrom: flags.configFrom,
    predictionType: flags.predictionType,
    quantize: flags.quantize,
    tinyVae: flags.tinyVae,
    onStatus: status,
    hub: { onProgress: bars, signal },
  });
  if (signal.aborted) throw abortError("interrupted");
  return pipe;
}

/** A1111 display name of a sampler (ours, A1111's or a class name), or of the model's own scheduler. */
export function samplerDisplayName(pipe: Img2ImgPipeline, sampler?: string): string {
  return a1111SamplerName(pipe.scheduler(sampler));
}

/** Settings a run actually used, for metadata and --json. */
export interface RunSettings {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  guidanceScale: number;
  strength: number;
  sampler?: string;
  clipSkip?: number;
}

/** The A1111 `parameters` text of one output image. */
export function infotextFor(pipe: Img2ImgPipeline, s: RunSettings, seed: number | bigint, width: number, height: number, extra?: Record<string, string>): string {
  return formatInfotext({
    prompt: s.prompt,
    negativePrompt: s.negativePrompt,
    steps: s.steps,
    sampler: samplerDisplayName(pipe, s.sampler),
    cfgScale: s.guidanceScale,
    seed,
    width,
    height,
    model: pipe.modelName,
    modelHash: pipe.modelHash,
    denoisingStrength: s.strength,
    clipSkip: s.clipSkip,
    extra: { ...approximationNotes(pipe), ...extra },
  });
}

/** Infotext pairs that mark results of the opt-in approximate modes (not diffusers-exact). */
export function approximationNotes(pipe: Img2ImgPipeline): Record<string, string> {
  const notes: Record<string, string> = {};
  if (pipe.model.quantize) notes.Quantization = pipe.model.quantize;
  if (pipe.model.tinyVae?.use === "all") notes.VAE = "TAESD";
  return notes;
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

/** Output file names: <stem>-reimagined.png, -1/-2... for several images, -s0.20 / -sweep for sweeps. */
export function outputPaths(input: string, flags: GenerateFlags, fmt: ImageFormat, count: number, sweep?: number[]): { images: string[]; sheet?: string } {
  const ext = EXT[fmt];
  const stem = basename(input, extname(input));
  if (sweep) {
    const base = flags.output ? stripKnownExt(flags.output) : join(dirname(input), stem);
    return { images: sweep.map((s) => `${base}-s${s.toFixed(2)}${ext}`), sheet: `${base}-sweep${ext}` };
  }
  if (count === 1) return { images: [flags.output ?? join(dirname(input), `${stem}-reimagined${ext}`)] };
  const base = flags.output ? stripKnownExt(flags.output) : join(dirname(input), `${stem}-reimagined`);
  return { images: Array.from({ length: count }, (_, i) => `${base}-${i + 1}${ext}`) };
}

/** Explicit flags win over the settings stored in `--from IMAGE`. */
export async function applyFrom(flags: GenerateFlags): Promise<GenerateFlags> {
  if (!flags.from) return flags;
  if (!existsSync(flags.from)) throw new ReimagineError(`--from '${flags.from}': file not found; give an image written by reimagine or AUTOMATIC1111`, "not_found");
  const text = await readImageParameters(flags.from);
  if (!text) throw new ReimagineError(`--from '${flags.from}' has no generation parameters: give an image written by reimagine or AUTOMATIC1111`, "invalid_input");
  const p = parseInfotext(text);
  return {
    ...flags,
    prompt: flags.prompt ?? p.prompt,
    negativePrompt: flags.negativePrompt ?? p.negativePrompt,
    steps: flags.steps ?? p.steps,
    sampler: flags.sampler ?? p.sampler,
    guidanceScale: flags.guidanceScale ?? p.cfgScale,
    seed: flags.seed ?? p.seed,
    width: flags.width ?? (flags.height === undefined ? p.width : undefined),
    height: flags.height ?? (flags.width === undefined ? p.height : undefined),
    strengths: flags.strengths ?? (p.denoisingStrength !== undefined ? [p.denoisingStrength] : undefined),
    clipSkip: flags.clipSkip ?? p.clipSkip,
  };
}

export function requirePrompt(flags: GenerateFlags): string {
  if (flags.prompt === undefined) {
    throw new ReimagineError(`--prompt is required: describe the picture you want, e.g. --prompt "a watercolor painting of a harbour"`, "usage");
  }
  return flags.prompt;
}

/** Pipeline options common to every run of a command (no image, strength or seed). */
export function baseRunOptions(flags: GenerateFlags, pipe: Img2ImgPipeline, prompt: string): RunSettings & Omit<Img2ImgOptions, "image" | "strength"> {
  return {
    prompt,
    negativePrompt: flags.negativePrompt,
    steps: flags.steps ?? pipe.defaults.steps,
    guidanceScale: flags.guidanceScale ?? pipe.defaults.guidanceScale,
    strength: pipe.defaults.strength,
    sampler: flags.sampler,
    clipSkip: flags.clipSkip,
    width: flags.width,
    height: flags.height,
    resizeMode: flags.resizeMode,
    background: flags.background,
    vaeTiling: flags.vaeTiling,
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
      throw new ReimagineError(`image '${path}' is too large${px}: the limit is --max-pixels ${flags.maxPixels}; downscale it first or raise --max-pixels`, e.code, { cause: e });
    }
    throw e;
  }
}

export const seedJson = (s: number | bigint) => (typeof s === "bigint" ? s.toString() : s);

async function save(img: RGBImage, path: string, fmt: ImageFormat, parameters: string | undefined, overwrite: boolean): Promise<void> {
  await writeFileAtomic(path, await encodeImage(img, fmt, { parameters }), { overwrite });
}

// ---------- the command ----------

/** `reimagine [img2img] <input> --prompt TEXT ...`; returns the exit code. */
export async function img2imgMain(args: string[], io: CliIO, version = ""): Promise<number> {
  const parsed = parseGenerateArgs(args);
  if (parsed.help) {
    io.stdout.write(mainHelp(version));
    return 0;
  }
  if (parsed.positionals.length === 0) throw new ReimagineError(`missing input image: reimagine <input> --prompt TEXT (see reimagine --help)`, "usage");
  if (parsed.positionals.length > 1) {
    throw new ReimagineError(`one input image at a time (got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}); for a folder use reimagine batch <in-dir> <out-dir>`, "usage");
  }
  const inputPath = parsed.positionals[0];
  const flags = await applyFrom(parsed.flags);
  const prompt = requirePrompt(flags);
  const sweep = flags.strengths && flags.strengths.length > 1 ? flags.strengths : undefined;
  if (sweep) {
    if ((flags.numImages ?? 1) > 1) throw new ReimagineError("a strength sweep makes one image per strength: drop --num-images", "usage");
    validateStrengths(sweep, flags.steps);
  }
  const fmt = outputFormat(flags);
  const paths = outputPaths(inputPath, flags, fmt, flags.numImages ?? 1, sweep);
  const input = await loadInput(inputPath, flags); // a bad input is the first thing to report
  checkOutputs([...paths.images, ...(paths.sheet ? [paths.sheet] : [])], flags.overwrite);

  return withInterrupt(io, async (signal) => {
    const pipe = await openPipeline(flags, io, signal);
    try {
      const job: Job = { pipe, input, flags, base: baseRunOptions(flags, pipe, prompt), paths, fmt, io, signal };
      return sweep ? await runSweep(job, sweep) : await runOnce(job);
    } finally {
      await pipe.model.release().catch(() => undefined);
    }
  });
}

interface Job {
  pipe: Img2ImgPipeline;
  input: RGBImage;
  flags: GenerateFlags;
  base: ReturnType<typeof baseRunOptions>;
  paths: { images: string[]; sheet?: string };
  fmt: ImageFormat;
  io: CliIO;
  signal: AbortSignal;
}

/** One strength: N images from one batch, written after the whole run (an interrupt writes nothing). */
async function runOnce({ pipe, input, flags, base, paths, fmt, io, signal }: Job): Promise<number> {
  const strength = flags.strengths?.[0] ?? pipe.defaults.strength;
  const onProgress = stepProgress(io, flags, "denoising");
  const result = await pipe.run({ ...base, image: input, strength, seed: flags.seed, numImages: flags.numImages, signal, onProgress });
  const n = result.images.length;
  for (let i = 0; i < n; i++) {
    const img = result.images[i];
    const extra = n > 1 ? { "Batch size": String(n), "Batch pos": String(i) } : undefined;
    await save(img, paths.images[i], fmt, infotextFor(pipe, { ...base, strength }, result.seed, img.width, img.height, extra), flags.overwrite);
  }
  const outputs = paths.images.slice(0, n);
  if (flags.json) {
    const { width, height, stepsRun, timings } = result;
    io.stdout.write(`${JSON.stringify({ outputs, seed: seedJson(result.seed), strength, width, height, stepsRun, ...summary(pipe, base), timings })}\n`);
  } else {
    for (const p of outputs) io.stdout.write(`${p}\n`);
    io.stdout.write(`seed ${result.seed}\n`);
  }
  return 0;
}

/** Several strengths: one model load, one seed, images + contact sheet written once all are done. */
async function runSweep({ pipe, input, flags, base, paths, fmt, io, signal }: Job, strengths: number[]): Promise<number> {
  let onProgress = stepProgress(io, flags, "");
  const sw = await strengthSweep(pipe, { ...base, image: input, seed: flags.seed, signal, onProgress: (e) => onProgress(e) }, strengths, {
    onStart: (s) => (onProgress = stepProgress(io, flags, `strength ${s.toFixed(2)}`)),
  });
  for (let i = 0; i < sw.results.length; i++) {
    const r = sw.results[i];
    const text = infotextFor(pipe, { ...base, strength: r.strength }, sw.seed, r.image.width, r.image.height);
    await save(r.image, paths.images[i], fmt, text, flags.overwrite);
  }
  await save(sw.sheet, paths.sheet!, fmt, undefined, flags.overwrite);
  if (flags.json) {
    const results = sw.results.map((r, i) => ({ path: paths.images[i], strength: r.strength, ssim: r.ssim }));
    io.stdout.write(`${JSON.stringify({ outputs: paths.images, sheet: paths.sheet, seed: seedJson(sw.seed), results, ...summary(pipe, base) })}\n`);
  } else {
    sw.results.forEach((r, i) => {
      io.stdout.write(`${paths.images[i]}  ${sweepLabel(r)}\n`);
    });
    io.stdout.write(`${paths.sheet}\nseed ${sw.seed}\n`);
  }
  return 0;
}

function summary(pipe: Img2ImgPipeline, s: RunSettings) {
  return { steps: s.steps, guidanceScale: s.guidanceScale, sampler: samplerDisplayName(pipe, s.sampler), model: pipe.modelName, modelHash: pipe.modelHash };
}
