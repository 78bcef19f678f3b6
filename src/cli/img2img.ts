// `reimagine <input> --prompt TEXT [...]`: one img2img run (or a strength / ControlNet scale sweep) from the command
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
  sweepPoints,
  validateStrengths,
  withControlScale,
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
import { controlSummary, resolveControl, writeControlPreviews } from "./control.js";
import { maskRunOption } from "./mask.js";
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
  const from = await applyFrom(parsed.flags);
  const report = createReporter(progressMode(from.flags, io.stderr), io.stderr, { verbose: from.flags.verbose });
  if (from.note) report.status(from.note);
  if (from.flags.control?.preview) {
    await writeControlPreviews(inputPath, await loadInput(inputPath, from.flags), from.flags, io);
    return 0; // the preprocessed control image is the whole answer: no model is loaded
  }
  const prompt = requirePrompt(from.flags);
  const input = await loadInput(inputPath, from.flags); // a bad input is the first thing to report
  const flags = await resolveControl(from.flags);
  const sweep = sweepAxes(flags);
  if (sweep) {
    if ((flags.numImages ?? 1) > 1) throw new ReimagineError("a sweep makes one image per strength (and ControlNet scale): drop --num-images", "usage");
    if (sweep.strengths) validateStrengths(sweep.strengths, flags.steps);
  }
  const fmt = outputFormat(flags);
  const paths = outputPaths(inputPath, flags, fmt, flags.numImages ?? 1, sweep?.names);
  const mask = await maskRunOption(flags.mask, inputPath, { maxPixels: flags.maxPixels }); // after the input: a bad mask is reported next
  checkOutputPixels(parsed.flags, flags, input);
  checkOutputs([...paths.images, ...(paths.sheet ? [paths.sheet] : [])], flags.overwrite);

  return withInterrupt(io, async (signal) => {
    const pipe = await openPipeline(flags, report, signal);
    try {
      checkOutputSize(flags, pipe.model.vaeScaleFactor);
      const job: Job = { pipe, input, flags, base: { ...baseRunOptions(flags, pipe, prompt), mask }, paths, fmt, io, report, signal };
      return sweep ? await runSweep(job, sweep) : await runOnce(job);
    } finally {
      await pipe.close();
    }
  });
}

/** What a run sweeps: several strengths, several ControlNet scales, or both (a grid, strengths outer); file suffixes. */
interface SweepAxes {
  strengths?: number[];
  scales?: number[];
  names: string[];
}

function sweepAxes(flags: GenerateFlags): SweepAxes | undefined {
  const strengths = flags.strengths && flags.strengths.length > 1 ? flags.strengths : undefined;
  const scales = flags.control?.sweep;
  if (!strengths && !scales) return undefined;
  const c = (x: number) => `c${x.toFixed(2)}`;
  const names = sweepPoints(strengths ?? [Number.NaN], scales).map((p) =>
    [strengths ? `s${p.strength.toFixed(2)}` : "", p.controlScale === undefined ? "" : c(p.controlScale)].filter(Boolean).join("-"),
  );
  return { strengths, scales, names };
}

interface Job {
  pipe: PipelineWorker;
  input: RGBImage;
  flags: GenerateFlags;
  base: ReturnType<typeof baseRunOptions> & { mask?: Awaited<ReturnType<typeof maskRunOption>> };
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
    const { width, height, stepsRun, timings, notes } = result;
    io.stdout.write(`${JSON.stringify({ outputs, seed: seedJson(result.seed), strength, width, height, stepsRun, ...summary(pipe, base), timings, notes })}\n`);
  } else {
    if (!flags.quiet) for (const note of result.notes ?? []) io.stderr.write(`note: ${note}\n`);
    for (const p of outputs) io.stdout.write(`${p}\n`);
    io.stdout.write(`seed ${result.seed}\n`);
  }
  return 0;
}

/** Several strengths and/or ControlNet scales: one model load, one seed, images + contact sheet written once all are done. */
async function runSweep({ pipe, input, flags, base, paths, fmt, io, report, signal }: Job, axes: SweepAxes): Promise<number> {
  let onProgress = report.steps("");
  const points = sweepPoints(axes.strengths ?? [flags.strengths?.[0] ?? pipe.defaults.strength], axes.scales);
  const sw = await strengthSweep(pipe, { ...base, image: input, seed: flags.seed, signal, onProgress: (e) => onProgress(e) }, points, {
    onStart: (s, _i, c) => (onProgress = report.steps(`strength ${s.toFixed(2)}${c === undefined ? "" : ` control ${c.toFixed(2)}`}`)),
  });
  for (let i = 0; i < sw.results.length; i++) {
    const r = sw.results[i];
    const controlnets = r.controlScale === undefined ? base.controlnets : withControlScale(base.controlnets, r.controlScale);
    const png = await encodeResult(
      pipe,
      { ...base, strength: r.strength, controlnets },
      { images: [r.image], seed: sw.seed, extraGenerationParams: r.extraGenerationParams },
      { format: fmt },
    );
    await writeFileAtomic(paths.images[i], png, { overwrite: flags.overwrite });
  }
  await writeFileAtomic(paths.sheet!, await encodeImage(sw.sheet, fmt), { overwrite: flags.overwrite });
  if (flags.json) {
    const results = sw.results.map((r, i) => ({
      path: paths.images[i],
      strength: r.strength,
      ...(r.controlScale === undefined ? {} : { controlScale: r.controlScale }),
      ssim: r.ssim,
    }));
    io.stdout.write(`${JSON.stringify({ outputs: paths.images, sheet: paths.sheet, seed: seedJson(sw.seed), results, ...summary(pipe, base) })}\n`);
  } else {
    for (const [i, r] of sw.results.entries()) io.stdout.write(`${paths.images[i]}  ${sweepLabel(r)}\n`);
    io.stdout.write(`${paths.sheet}\nseed ${sw.seed}\n`);
  }
  return 0;
}

function summary(pipe: PipelineWorker, s: ReturnType<typeof baseRunOptions>) {
  const controlnets = controlSummary(s.controlnets);
  return {
    steps: s.steps,
    guidanceScale: s.guidanceScale,
    sampler: samplerDisplayName(pipe, s.sampler),
    model: pipe.modelName,
    modelHash: pipe.modelHash,
    ...(controlnets ? { controlnets } : {}),
  };
}
