// `reimagine <input> --prompt TEXT [...]`: one img2img run (or a strength sweep) from the command
// line. The model runs in a child process; outputs are checked before it loads and written
// atomically with A1111 metadata once the run is complete (an interrupted run writes nothing).
import {
  encodeImage,
  encodeResult,
  type ImageFormat,
  type PipelineWorker,
  ReimagineError,
  type RGBImage,
  samplerDisplayName,
  strengthSweep,
  sweepLabel,
  validateStrengths,
  writeFileAtomic,
} from "../index.js";
import { checkOutputPixels, type CliIO, type GenerateFlags, mainHelp, parseGenerateArgs } from "./args.js";
import {
  applyFrom,
  baseRunOptions,
  checkOutputSize,
  checkOutputs,
  loadInput,
  openPipeline,
  outputFormat,
  outputPaths,
  requirePrompt,
  seedJson,
  withInterrupt,
} from "./common.js";
import { createReporter, progressMode, type Reporter } from "./report.js";

/** `reimagine [img2img] <input> --prompt TEXT ...`; returns the exit code. */
export async function img2imgMain(args: string[], io: CliIO, version = ""): Promise<number> {
  const parsed = parseGenerateArgs(args);
  if (parsed.help) {
    io.stdout.write(mainHelp(version));
    return 0;
  }
  if (parsed.positionals.length === 0) throw new ReimagineError(`missing input image: reimagine <input> --prompt TEXT (see reimagine --help)`, "usage");
  if (parsed.positionals.length > 1) {
    throw new ReimagineError(
      `one input image at a time (got ${parsed.positionals.length}: ${parsed.positionals.join(" ")}); for a folder use reimagine batch <in-dir> <out-dir>`,
      "usage",
    );
  }
  const inputPath = parsed.positionals[0];
  const { flags, note } = await applyFrom(parsed.flags);
  const report = createReporter(progressMode(flags, io.stderr), io.stderr, { verbose: flags.verbose });
  if (note) report.status(note);
  const prompt = requirePrompt(flags);
  const sweep = flags.strengths && flags.strengths.length > 1 ? flags.strengths : undefined;
  if (sweep) {
    if ((flags.numImages ?? 1) > 1) throw new ReimagineError("a strength sweep makes one image per strength: drop --num-images", "usage");
    validateStrengths(sweep, flags.steps);
  }
  const fmt = outputFormat(flags);
  const paths = outputPaths(inputPath, flags, fmt, flags.numImages ?? 1, sweep);
  const input = await loadInput(inputPath, flags); // a bad input is the first thing to report
  checkOutputPixels(parsed.flags, flags, input);
  checkOutputs([...paths.images, ...(paths.sheet ? [paths.sheet] : [])], flags.overwrite);

  return withInterrupt(io, async (signal) => {
    const pipe = await openPipeline(flags, report, signal);
    try {
      checkOutputSize(flags, pipe.model.vaeScaleFactor);
      const job: Job = { pipe, input, flags, base: baseRunOptions(flags, pipe, prompt), paths, fmt, io, report, signal };
      return sweep ? await runSweep(job, sweep) : await runOnce(job);
    } finally {
      await pipe.close();
    }
  });
}

interface Job {
  pipe: PipelineWorker;
  input: RGBImage;
  flags: GenerateFlags;
  base: ReturnType<typeof baseRunOptions>;
  paths: { images: string[]; sheet?: string };
  fmt: ImageFormat;
  io: CliIO;
  report: Reporter;
  signal: AbortSignal;
}

/** One strength: N images from one batch, written after the whole run (an interrupt writes nothing). */
async function runOnce({ pipe, input, flags, base, paths, fmt, io, report, signal }: Job): Promise<number> {
  const strength = flags.strengths?.[0] ?? pipe.defaults.strength;
  const settings = { ...base, strength };
  const result = await pipe.run(
    { ...settings, image: input, seed: flags.seed, numImages: flags.numImages, signal, onProgress: report.steps("") },
    { previews: "none" },
  );
  const n = result.images.length;
  for (let i = 0; i < n; i++) {
    await writeFileAtomic(paths.images[i], await encodeResult(pipe, settings, result, { index: i, format: fmt }), { overwrite: flags.overwrite });
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
async function runSweep({ pipe, input, flags, base, paths, fmt, io, report, signal }: Job, strengths: number[]): Promise<number> {
  let onProgress = report.steps("");
  const sw = await strengthSweep(pipe, { ...base, image: input, seed: flags.seed, signal, onProgress: (e) => onProgress(e) }, strengths, {
    onStart: (s) => (onProgress = report.steps(`strength ${s.toFixed(2)}`)),
  });
  for (let i = 0; i < sw.results.length; i++) {
    const r = sw.results[i];
    const png = await encodeResult(pipe, { ...base, strength: r.strength }, { images: [r.image], seed: sw.seed, extraGenerationParams: r.extraGenerationParams }, { format: fmt });
    await writeFileAtomic(paths.images[i], png, { overwrite: flags.overwrite });
  }
  await writeFileAtomic(paths.sheet!, await encodeImage(sw.sheet, fmt), { overwrite: flags.overwrite });
  if (flags.json) {
    const results = sw.results.map((r, i) => ({ path: paths.images[i], strength: r.strength, ssim: r.ssim }));
    io.stdout.write(`${JSON.stringify({ outputs: paths.images, sheet: paths.sheet, seed: seedJson(sw.seed), results, ...summary(pipe, base) })}\n`);
  } else {
    for (const [i, r] of sw.results.entries()) io.stdout.write(`${paths.images[i]}  ${sweepLabel(r)}\n`);
    io.stdout.write(`${paths.sheet}\nseed ${sw.seed}\n`);
  }
  return 0;
}

function summary(pipe: PipelineWorker, s: ReturnType<typeof baseRunOptions>) {
  return { steps: s.steps, guidanceScale: s.guidanceScale, sampler: samplerDisplayName(pipe, s.sampler), model: pipe.modelName, modelHash: pipe.modelHash };
}
