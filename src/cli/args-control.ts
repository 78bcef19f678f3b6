// The CLI's ControlNet options: `--control FILE[:MODEL[:SCALE[:START:END]]]` (repeatable) or one ControlNet given by
// separate flags (`--controlnet MODEL --control-image FILE --control-scale 0.8 --control-start 0 --control-end 1
// --preprocess scribble`), guess mode, canny thresholds, a ControlNet scale sweep, and `--preview-control`. Parsing
// only: names are looked up and images read when the command runs (control.ts).
import { type ControlNetUnit, controlNetsFromInfotext, parsePreprocessor, type PreprocessorName, PREPROCESSORS, ReimagineError } from "../index.js";

export const CONTROL_OPTIONS = {
  control: { type: "string", multiple: true },
  controlnet: { type: "string" },
  "control-image": { type: "string" },
  "control-scale": { type: "string" },
  "control-start": { type: "string" },
  "control-end": { type: "string" },
  preprocess: { type: "string" },
  "canny-low": { type: "string" },
  "canny-high": { type: "string" },
  "guess-mode": { type: "boolean" },
  "preview-control": { type: "boolean" },
  "controlnet-dir": { type: "string" },
} as const;

/** What the ControlNet flags ask for (references and image paths as typed). */
export interface ControlFlags {
  /** The units; `image` undefined = the input picture (sketch-to-image). */
  units: ControlNetUnit[];
  /** --control-scale with several values: a sweep over every unit's scale. */
  sweep?: number[];
  /** --preview-control: write the preprocessed control image(s) and stop. */
  preview: boolean;
  /** --preprocess (with --canny-low/high) for --preview-control without a ControlNet. */
  preprocessor?: PreprocessorName;
  cannyThresholds?: { lowThreshold?: number; highThreshold?: number };
  /** Where ControlNet names are looked up (--controlnet-dir). */
  dir?: string;
}

type Values = {
  [K in keyof typeof CONTROL_OPTIONS]?: (typeof CONTROL_OPTIONS)[K]["type"] extends "boolean" ? boolean : K extends "control" ? string[] : string;
};

const usage = (msg: string) => new ReimagineError(msg, "usage");

function fraction(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(x) || x < 0 || x > 1) throw usage(`${flag} expects a number between 0 and 1 (got '${v}')`);
  return x;
}

function scale(flag: string, v: string): number {
  const x = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(x) || x < 0) throw usage(`${flag} expects a ControlNet scale >= 0 such as 0.8 (got '${v}')`);
  return x;
}

function threshold(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(x) || x < 0 || x > 255 * 4) throw usage(`${flag} expects a canny threshold such as 100 (got '${v}')`);
  return x;
}

/**
 * `FILE[:MODEL[:SCALE[:START:END]]]` -> its parts (MODEL may be empty: --controlnet then names it).
 * @example parseControlSpec("pose.png:control_v11p_sd15_canny:0.8:0:0.6") // { file: "pose.png", model: "control_v11p_sd15_canny", scale: 0.8, start: 0, end: 0.6 }
 */
export function parseControlSpec(spec: string): { file: string; model?: string; scale?: number; start?: number; end?: number } {
  const parts = spec.split(":");
  const form = "--control FILE[:MODEL[:SCALE[:START:END]]]";
  if (parts.length > 5 || parts.length === 4 || parts[0] === "")
    throw usage(`${form} expects e.g. sketch.png:control_v11p_sd15_scribble:0.8:0:1 (got '${spec}')`);
  const [file, model, s, start, end] = parts;
  return {
    file,
    model: model || undefined,
    scale: s === undefined || s === "" ? undefined : scale(`${form}'s SCALE`, s),
    start: fraction(`${form}'s START`, start),
    end: fraction(`${form}'s END`, end),
  };
}

/**
 * The ControlNet flags as units (undefined when none is given). `--controlnet` alone conditions on the input picture
 * with the scribble preprocessor (sketch-to-image) unless --preprocess says otherwise; with `--control` specs it is the
 * ControlNet of the specs that name none.
 * @example parseControlFlags({ controlnet: "control_v11p_sd15_scribble", "control-scale": "0.8" }).units[0].scale // 0.8
 */
export function parseControlFlags(v: Values): ControlFlags | undefined {
  const specs = v.control ?? [];
  const scales = v["control-scale"]?.split(",").map((x) => scale("--control-scale", x));
  const start = fraction("--control-start", v["control-start"]);
  const end = fraction("--control-end", v["control-end"]);
  const preprocessor = v.preprocess === undefined ? undefined : preprocess(v.preprocess);
  const cannyThresholds = { lowThreshold: threshold("--canny-low", v["canny-low"]), highThreshold: threshold("--canny-high", v["canny-high"]) };
  const canny = cannyThresholds.lowThreshold !== undefined || cannyThresholds.highThreshold !== undefined;
  const guessMode = v["guess-mode"] ?? false;
  const preview = v["preview-control"] ?? false;
  if (canny && preprocessor !== "canny") throw usage("--canny-low/--canny-high set the canny preprocessor's thresholds: add --preprocess canny");
  if (scales && new Set(scales).size !== scales.length) throw usage(`--control-scale lists a value twice (${v["control-scale"]}); list each scale once`);
  const one = scales?.length === 1 ? scales[0] : undefined;
  const preprocessorOptions = canny ? cannyThresholds : undefined;
  const base = { start, end, guessMode, preprocessorOptions };
  let units: ControlNetUnit[] = [];
  if (specs.length > 0) {
    if (v["control-image"] !== undefined)
      throw usage("--control-image goes with --controlnet alone; with --control, give each control image as FILE in --control FILE:MODEL");
    units = specs.map((s) => {
      const p = parseControlSpec(s);
      const model = p.model ?? v.controlnet;
      if (!model) throw usage(`--control ${s} names no ControlNet: write --control ${s}:MODEL or add --controlnet MODEL`);
      return { ...base, model, image: p.file, scale: p.scale ?? one, start: p.start ?? start, end: p.end ?? end, preprocessor: preprocessor ?? "none" };
    });
  } else if (v.controlnet !== undefined) {
    const image = v["control-image"];
    units = [{ ...base, model: v.controlnet, image, scale: one, preprocessor: preprocessor ?? (image === undefined ? "scribble" : "none") }];
  } else {
    const given = (["control-image", "control-scale", "control-start", "control-end", "guess-mode"] as const).find((k) => v[k] !== undefined);
    if (given) throw usage(`--${given} needs a ControlNet: add --controlnet MODEL (or --control FILE:MODEL)`);
    if (v["controlnet-dir"] === undefined && !preview && preprocessor === undefined) return undefined;
    if (preprocessor !== undefined && !preview)
      throw usage("--preprocess needs a ControlNet (--controlnet MODEL), or --preview-control to only see the preprocessed image");
  }
  for (const u of units) {
    const s = u.start ?? 0;
    const e = u.end ?? 1;
    if (s >= e) throw usage(`the ControlNet's start (${s}) must be below its end (${e}): --control-start 0 --control-end 1 acts on every step`);
  }
  return {
    units,
    sweep: scales && scales.length > 1 ? scales : undefined,
    preview,
    preprocessor,
    cannyThresholds: canny ? cannyThresholds : undefined,
    dir: v["controlnet-dir"],
  };
}

/** --from: the ControlNets an image records, unless ControlNet flags were given (they replace them). */
export function controlFromInfotext(control: ControlFlags | undefined, pairs: ReadonlyMap<string, string>): ControlFlags | undefined {
  if (control && control.units.length > 0) return control;
  const units = controlNetsFromInfotext(pairs);
  if (units.length === 0) return control;
  return { ...(control ?? { preview: false }), units };
}

/** Run options' `controlnets` from (resolved) flags. */
export const controlRunOptions = (control: ControlFlags | undefined): ControlNetUnit[] | undefined => (control?.units.length ? control.units : undefined);

function preprocess(v: string): PreprocessorName {
  try {
    return parsePreprocessor(v.trim().toLowerCase());
  } catch {
    throw usage(
      `--preprocess must be one of ${Object.keys(PREPROCESSORS).join(", ")} (got '${v}'); neural annotators (depth, HED, openpose) are not built in: give a ready control image with --preprocess none`,
    );
  }
}

export const CONTROL_HELP = `ControlNet (keep a sketch's or picture's layout at any strength; docs/controlnet.md):
      --controlnet MODEL        ControlNet folder, .safetensors file, Hugging Face repo id, or a name in --controlnet-dir
                                (default dir: controlnet/ beside --model). Alone it conditions on the input picture with
                                the scribble preprocessor, at --strength 1 unless given (sketch-to-image)
      --control-image FILE      its control image instead of the input picture (fitted with --resize-mode)
      --control-scale F[,F...]  conditioning scale (default 1); a list makes a sweep with a contact sheet
      --control-start F --control-end F   the part of the denoising steps it acts in (default 0 and 1)
      --preprocess P            ${Object.keys(PREPROCESSORS).join(" | ")} (default scribble for the input picture, none for --control-image)
      --canny-low N --canny-high N        canny thresholds (default 100 200)
      --guess-mode              the ControlNet sees only the conditional batch (A1111 "ControlNet is more important")
      --control FILE[:MODEL[:SCALE[:START:END]]]  one ControlNet per --control (repeatable; residuals summed);
                                MODEL defaults to --controlnet, the preprocessor to --preprocess (else none)
      --preview-control         write the preprocessed control image(s) (<name>-control.png) and stop before loading
                                the model (at --width/--height, else the input's size)
      --controlnet-dir DIR      where ControlNet names are looked up
  .pth/.ckpt ControlNets are refused (pickle): use the .safetensors version.`;
