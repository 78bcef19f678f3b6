// `reimagine batch <in-dir> <out-dir> [options]`: img2img over every image of a folder with one model load.
// Per-image prompts from sidecar <name>.txt files; failures are reported and skipped (exit 2); reruns
// resume because an existing output can only be complete (atomic writes) and is skipped.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, extname, join, resolve } from "node:path";
import {
  encodeResult,
  isAbortError,
  type ImageFormat,
  type MaskOptions,
  type PipelineWorker,
  ReimagineError,
  type RGBImage,
  writeFileAtomic,
} from "../index.js";
import { batchHelp, type CliIO, parseGenerateArgs } from "./args.js";
import { resolveControl } from "./control.js";
import { baseRunOptions, checkOutputSize, extensionOf, loadInput, openPipeline, outputFormat, seedJson, withInterrupt } from "./common.js";
import { batchMaskFile, isMaskFile, maskRunOption } from "./mask.js";
import { createReporter, progressMode } from "./report.js";

/** Input formats batch picks up (by extension, case-insensitive). */
export const BATCH_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg", ".webp", ".avif", ".tif", ".tiff", ".gif"];

/** Image file names in `dir`, sorted by code point (stable across platforms). */
export function listBatchInputs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && !d.name.startsWith(".") && BATCH_EXTENSIONS.includes(extname(d.name).toLowerCase()) && !isMaskFile(d.name))
    .map((d) => d.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** name -> output paths: <stem><ext> (or <stem>-<n><ext>); inputs sharing a stem keep their extension in the name. */
export function batchOutputs(names: string[], outDir: string, fmt: ImageFormat, count: number): Map<string, string[]> {
  const stems = new Map<string, number>();
  for (const n of names) stems.set(basename(n, extname(n)), (stems.get(basename(n, extname(n))) ?? 0) + 1);
  const out = new Map<string, string[]>();
  for (const n of names) {
    const stem = basename(n, extname(n));
    const base = stems.get(stem)! > 1 ? `${stem}-${extname(n).slice(1).toLowerCase()}` : stem;
    const ext = extensionOf(fmt);
    const files = count === 1 ? [`${base}${ext}`] : Array.from({ length: count }, (_, i) => `${base}-${i + 1}${ext}`);
    out.set(
      n,
      files.map((f) => join(outDir, f)),
    );
  }
  return out;
}

/** The prompt of one image: its sidecar <stem>.txt when present and non-empty, else --prompt. */
export function promptFor(inDir: string, name: string, fallback: string | undefined): string {
  const sidecar = join(inDir, `${basename(name, extname(name))}.txt`);
  if (existsSync(sidecar)) {
    const text = readFileSync(sidecar, "utf8").trim();
    if (text) return text;
  }
  if (fallback === undefined) {
    throw new ReimagineError(`no prompt: add ${basename(sidecar)} beside the image or pass --prompt`, "usage");
  }
  return fallback;
}

function dirArg(path: string, what: string): string {
  if (!existsSync(path)) throw new ReimagineError(`${what} '${path}' not found: check the path`, "not_found");
  if (!statSync(path).isDirectory())
    throw new ReimagineError(`${what} '${path}' is not a folder: reimagine batch <in-dir> <out-dir> (for one file use reimagine <input>)`, "usage");
  return path;
}

/** Returns 0 when every image is done, 2 when some failed. */
export async function batchMain(args: string[], io: CliIO): Promise<number> {
  const parsed = parseGenerateArgs(args);
  if (parsed.help) {
    io.stdout.write(batchHelp());
    return 0;
  }
  const flags = await resolveControl(parsed.flags); // ControlNet names and control images, before any work
  if (parsed.positionals.length !== 2) throw new ReimagineError("reimagine batch needs two folders: reimagine batch <in-dir> <out-dir> --prompt TEXT", "usage");
  if (flags.output) throw new ReimagineError("batch names its outputs after the inputs: drop --output and give <out-dir>", "usage");
  if (flags.from) throw new ReimagineError("--from works on a single input: use reimagine <input> --from <image>", "usage");
  if (flags.control?.preview || flags.control?.sweep)
    throw new ReimagineError("--preview-control and ControlNet scale sweeps work on a single input: use reimagine <input>", "usage");
  if (flags.strengths && flags.strengths.length > 1)
    throw new ReimagineError("batch takes one strength: run a sweep on a single image with reimagine <input> --strength 0.2,0.4,...", "usage");
  const [inDir, outDir] = parsed.positionals;
  dirArg(inDir, "input folder");
  if (resolve(inDir) === resolve(outDir)) throw new ReimagineError("<out-dir> must differ from <in-dir>, so outputs are never read as inputs", "usage");
  if (existsSync(outDir)) dirArg(outDir, "output folder");
  else mkdirSync(outDir, { recursive: true });

  const names = listBatchInputs(inDir);
  if (names.length === 0) throw new ReimagineError(`no images in '${inDir}': batch reads ${BATCH_EXTENSIONS.join(" ")} files`, "not_found");
  const fmt = outputFormat(flags);
  const outputs = batchOutputs(names, outDir, fmt, flags.numImages ?? 1);
  const isDone = (n: string) => !flags.overwrite && outputs.get(n)!.every((p) => existsSync(p));
  const report = createReporter(progressMode(flags, io.stderr), io.stderr, { verbose: flags.verbose });
  const log = (m: string) => {
    if (report.mode === "json") report.status(m);
    else if (!flags.quiet && !flags.json) io.stderr.write(`${m}\n`);
  };
  const written: string[] = [];
  const skipped: string[] = [];
  const failed: { file: string; error: string }[] = [];

  await withInterrupt(io, async (signal) => {
    // the model loads on the first image that needs it: a finished batch, or one whose remaining
    // inputs are all broken, never waits for it
    let pipe: PipelineWorker | undefined;
    try {
      for (let k = 0; k < names.length; k++) {
        const name = names[k];
        const tag = `[${k + 1}/${names.length}] ${name}`;
        if (isDone(name)) {
          skipped.push(name);
          log(`${tag}: already done, skipped`);
          continue;
        }
        log(tag);
        let input: RGBImage;
        let prompt: string;
        let mask: MaskOptions | undefined;
        try {
          prompt = promptFor(inDir, name, flags.prompt);
          input = await loadInput(join(inDir, name), flags);
          mask = await maskRunOption(flags.mask, join(inDir, name), { maskFile: batchMaskFile(inDir, name), maxPixels: flags.maxPixels, batch: true });
        } catch (e) {
          fail(name, tag, e);
          continue;
        }
        if (!pipe) {
          pipe = await openPipeline(flags, report, signal); // a model that cannot load stops the batch (exit 1)
          checkOutputSize(flags, pipe.model.vaeScaleFactor);
        }
        try {
          written.push(...(await runOne(pipe, input, prompt, mask, outputs.get(name)!, name, signal)));
        } catch (e) {
          if (isAbortError(e) || signal.aborted) throw e;
          fail(name, tag, e);
        }
      }
    } finally {
      await pipe?.close();
    }
  });

  function fail(name: string, tag: string, e: unknown): void {
    const msg = String((e as Error)?.message ?? e).split("\n")[0];
    failed.push({ file: name, error: msg });
    io.stderr.write(`${tag}: failed: ${msg}\n`);
    if (flags.verbose && !(e instanceof ReimagineError)) io.stderr.write(`${(e as Error)?.stack ?? e}\n`);
  }

  async function runOne(
    pipe: PipelineWorker,
    input: RGBImage,
    prompt: string,
    mask: MaskOptions | undefined,
    paths: string[],
    name: string,
    signal: AbortSignal,
  ): Promise<string[]> {
    const settings = { ...baseRunOptions(flags, pipe, prompt), strength: flags.strengths?.[0] ?? pipe.defaults.strength, mask };
    const result = await pipe.run(
      { ...settings, image: input, seed: flags.seed, numImages: flags.numImages, signal, onProgress: report.steps(name) },
      { previews: "none" },
    );
    const n = result.images.length;
    for (let i = 0; i < n; i++) {
      await writeFileAtomic(paths[i], await encodeResult(pipe, settings, result, { index: i, format: fmt }), { overwrite: flags.overwrite });
      if (!flags.json) io.stdout.write(`${paths[i]}\n`);
    }
    for (const note of result.notes ?? []) log(`${name}: note: ${note}`);
    log(`[${names.indexOf(name) + 1}/${names.length}] ${name}: done (seed ${result.seed})`);
    return paths.slice(0, n);
  }

  const summary = `batch: ${written.length} written, ${skipped.length} already done, ${failed.length} failed${failed.length ? ` (${failed.map((f) => f.file).join(", ")})` : ""}`;
  if (flags.json) {
    io.stdout.write(
      `${JSON.stringify({ written, skipped: skipped.flatMap((n) => outputs.get(n)!), failed, seed: flags.seed === undefined ? null : seedJson(flags.seed) })}\n`,
    );
  } else if (!flags.quiet || failed.length) {
    io.stderr.write(`${summary}\n`);
  }
  return failed.length ? 2 : 0;
}
