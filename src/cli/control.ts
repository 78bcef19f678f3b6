// The ControlNet part of a CLI run, before the model loads: ControlNet names looked up in --controlnet-dir (default
// controlnet/ beside the model), control images read with the input's limits (so a bad file is reported first),
// --from's recorded ControlNets, sketch-to-image's default strength 1, and --preview-control's files.
import { basename, dirname, extname, join } from "node:path";
import {
  type ControlNetUnit,
  controlNetSummary,
  defaultControlNetDir,
  encodeImage,
  type RGBImage,
  resolveControlNetRef,
  resolveUnit,
  unitControlImage,
  writeFileAtomic,
} from "../index.js";
import type { CliIO, GenerateFlags } from "./args.js";
import { checkOutputs, loadInput } from "./common.js";

/**
 * Resolves the ControlNet flags: names to paths, control image files to pictures (with --max-pixels), and strength 1
 * by default when a ControlNet reads the input picture itself (sketch-to-image). Flags without ControlNets pass through.
 */
export async function resolveControl(flags: GenerateFlags): Promise<GenerateFlags> {
  const c = flags.control;
  if (!c || c.units.length === 0) return flags;
  const dir = c.dir ?? defaultControlNetDir(flags.model);
  const units: ControlNetUnit[] = [];
  for (const u of c.units) {
    const image = typeof u.image === "string" ? await loadInput(u.image, flags) : u.image;
    units.push({ ...u, model: resolveControlNetRef(u.model, dir), image, resizeMode: u.resizeMode ?? flags.resizeMode });
  }
  units.forEach(resolveUnit); // every field checked before the model loads
  const sketch = units.some((u) => u.image === undefined);
  return { ...flags, strengths: flags.strengths ?? (sketch ? [1] : undefined), control: { ...c, units } };
}

/** --preview-control's file names: <output stem or input stem>-control[-N].png. */
export function previewPaths(inputPath: string, flags: GenerateFlags, count: number): string[] {
  const base = flags.output
    ? flags.output.slice(0, flags.output.length - extname(flags.output).length)
    : join(dirname(inputPath), basename(inputPath, extname(inputPath)));
  return Array.from({ length: count }, (_, i) => `${base}-control${count > 1 ? `-${i + 1}` : ""}.png`);
}

/**
 * Writes the preprocessed control image of every unit (or of --preprocess alone on the input) at the output size
 * (--width/--height, else the input's), as the run would condition on it; returns the paths written.
 */
export async function writeControlPreviews(inputPath: string, input: RGBImage, flags: GenerateFlags, io: CliIO): Promise<string[]> {
  const c = flags.control!;
  const units: ControlNetUnit[] = c.units.length
    ? c.units
    : [{ model: "(preview)", preprocessor: c.preprocessor ?? "scribble", preprocessorOptions: c.cannyThresholds }];
  const paths = previewPaths(inputPath, flags, units.length);
  checkOutputs(paths, flags.overwrite);
  const width = flags.width ?? input.width;
  const height = flags.height ?? input.height;
  for (const [i, u] of units.entries()) {
    const image = typeof u.image === "string" ? await loadInput(u.image, flags) : u.image;
    const unit = resolveUnit({ ...u, image, resizeMode: u.resizeMode ?? flags.resizeMode }, i);
    const map = await unitControlImage(unit, { input, width, height, inputResizeMode: flags.resizeMode });
    await writeFileAtomic(paths[i], await encodeImage(map, "png"), { overwrite: flags.overwrite });
    io.stdout.write(`${paths[i]}\n`);
  }
  return paths;
}

/** The ControlNets of a run for --json output (names as metadata shows them). */
export function controlSummary(units: readonly ControlNetUnit[] | undefined) {
  return units?.map(controlNetSummary);
}
