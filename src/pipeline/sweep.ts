// Strength sweep: one model, one seed, one image per denoising strength (and ControlNet scale, when the run has
// ControlNets), plus a labelled contact sheet scoring how much of the input's structure each cell keeps (SSIM on
// luminance). Used by the CLI (`--strength 0.2,0.4,0.6`, `--control-scale 0.4,0.7,1`) and the server. No reference
// implementation: it is a loop over StableDiffusionImg2ImgPipeline runs that differ only in those settings.
import { withControlScale } from "../control/unit.js";
import { ReimagineError } from "../errors.js";
import { contactSheet, loadImage, type RGBImage, ssimResized } from "../image.js";
import { normalizeSeed } from "../rng.js";
import { noDenoisingStepReason } from "../schedulers/strength.js";
import type { Img2ImgOptions, Img2ImgPipeline } from "./img2img.js";

/** One cell of a sweep: a strength, and the scale every ControlNet of the run takes there (when swept). */
export interface SweepPoint {
  strength: number;
  controlScale?: number;
}

export interface SweepImage extends SweepPoint {
  image: RGBImage;
  /** Structure preservation: SSIM (luminance) of the output against the input resized to it; 1 = identical. */
  ssim: number;
  /** The run's infotext pairs (e.g. "Lora hashes"). */
  extraGenerationParams?: Record<string, string>;
}

export interface StrengthSweepResult {
  results: SweepImage[];
  /** The input followed by every result, each labelled "strength 0.40 · SSIM 0.83". */
  sheet: RGBImage;
  /** The seed every run used (drawn once when opts.seed is absent or -1). */
  seed: number | bigint;
  /** The decoded input (before resizing). */
  input: RGBImage;
}

export interface SweepHooks {
  /** Called before each run (e.g. to relabel a progress bar). */
  onStart?: (strength: number, index: number, controlScale?: number) => void;
  /** Called as each image is ready, in order. */
  onImage?: (result: SweepImage, index: number) => void | Promise<void>;
}

/** Options shared by every run of the sweep (numImages, if given, must be 1: one image per strength). */
export type SweepOptions = Omit<Img2ImgOptions, "strength" | "image"> & { image: RGBImage | string | Buffer };

/**
 * Checks a list of strengths before any work: non-empty, each in [0, 1], no repeats, and
 * steps x strength >= 1 for every non-zero strength. Throws ReimagineError naming the fix.
 * @example validateStrengths([0.2, 0.4], 10)
 */
export function validateStrengths(strengths: readonly number[], steps?: number): void {
  if (strengths.length === 0) throw new ReimagineError("a strength sweep needs at least one strength, e.g. --strength 0.2,0.4,0.6");
  const seen = new Set<number>();
  for (const s of strengths) {
    if (!(Number.isFinite(s) && s >= 0 && s <= 1)) {
      throw new ReimagineError(`strength must be between 0 and 1 (got ${s}): 0.2-0.4 keeps details, 0.5-0.7 restyles, 0.8-1.0 reimagines`);
    }
    if (seen.has(s)) throw new ReimagineError(`strength ${s} is listed twice in the sweep; list each strength once`);
    seen.add(s);
    const noStep = steps === undefined ? undefined : noDenoisingStepReason(steps, s);
    if (noStep) throw new ReimagineError(noStep);
  }
}

/** "strength 0.40 · SSIM 0.83", or "strength 1.00 · control 0.70 · SSIM 0.61" for a ControlNet scale sweep. */
export function sweepLabel(r: SweepImage): string {
  const control = r.controlScale === undefined ? "" : ` · control ${r.controlScale.toFixed(2)}`;
  return `strength ${r.strength.toFixed(2)}${control} · SSIM ${r.ssim.toFixed(2)}`;
}

/**
 * The cells of a sweep: every strength, times every ControlNet scale when some are given (strengths outer).
 * @example sweepPoints([1], [0.4, 0.7]) // [{ strength: 1, controlScale: 0.4 }, { strength: 1, controlScale: 0.7 }]
 */
export function sweepPoints(strengths: readonly number[], controlScales?: readonly number[]): SweepPoint[] {
  if (!controlScales) return strengths.map((strength) => ({ strength }));
  return strengths.flatMap((strength) => controlScales.map((controlScale) => ({ strength, controlScale })));
}

/**
 * Runs the pipeline once per strength with the same seed and settings, and builds a contact sheet.
 * @example
 * const pipe = await loadPipeline("stabilityai/sd-turbo");
 * const { results, sheet } = await strengthSweep(pipe, { image: "photo.png", prompt: "oil painting", steps: 4 }, [0.25, 0.5, 0.75, 1]);
 */
export async function strengthSweep(
  pipe: Pick<Img2ImgPipeline, "run" | "defaults">,
  opts: SweepOptions,
  strengths: readonly (number | SweepPoint)[],
  hooks: SweepHooks = {},
): Promise<StrengthSweepResult> {
  if (opts.numImages !== undefined && opts.numImages !== 1) {
    throw new ReimagineError("a strength sweep makes one image per strength: leave out the number of images");
  }
  const points = strengths.map((p) => (typeof p === "number" ? { strength: p } : p));
  const scales = points.filter((p) => p.controlScale !== undefined);
  validateStrengths(scales.length ? [...new Set(points.map((p) => p.strength))] : points.map((p) => p.strength), opts.steps ?? pipe.defaults.steps);
  if (scales.length && !opts.controlnets?.length)
    throw new ReimagineError("a ControlNet scale sweep needs a ControlNet: give controlnets (--controlnet MODEL)");
  for (const p of scales)
    if (!(Number.isFinite(p.controlScale) && p.controlScale! >= 0)) throw new ReimagineError(`ControlNet scale must be a number >= 0 (got ${p.controlScale})`);
  if (new Set(points.map((p) => `${p.strength}/${p.controlScale}`)).size !== points.length)
    throw new ReimagineError("a sweep lists the same cell twice; list each strength and ControlNet scale once");
  const seed = normalizeSeed(opts.seed); // one seed for every strength, so only the strength differs
  const input = typeof opts.image === "string" || Buffer.isBuffer(opts.image) ? await loadImage(opts.image, { background: opts.background }) : opts.image;

  const results: SweepImage[] = [];
  for (let i = 0; i < points.length; i++) {
    const { strength, controlScale } = points[i];
    hooks.onStart?.(strength, i, controlScale);
    const controlnets = controlScale === undefined ? opts.controlnets : withControlScale(opts.controlnets, controlScale);
    const out = await pipe.run({ ...opts, image: input, strength, seed, numImages: 1, controlnets });
    const image = out.images[0];
    const r: SweepImage = {
      strength,
      ...(controlScale === undefined ? {} : { controlScale }),
      image,
      ssim: await ssimResized(image, input),
      extraGenerationParams: out.extraGenerationParams,
    };
    results.push(r);
    await hooks.onImage?.(r, i);
  }
  const cells = [{ image: input, label: "input" }, ...results.map((r) => ({ image: r.image, label: sweepLabel(r) }))];
  const sheet = await contactSheet(cells, { columns: Math.min(cells.length, 5) });
  return { results, sheet, seed, input };
}
