// The A1111 ControlNet extension's names for what a unit sets, and ours: preprocessor modules, resize modes, control
// modes, and the `ControlNet N` infotext pairs (written with every result, read back by `--from` and A1111's PNG Info).
// Ref: sd-webui-controlnet internal_controlnet/args.py (ControlNetUnit.serialize / parse, infotext_fields),
// internal_controlnet/external_code.py (resize_mode_from_value), scripts/enums.py (ResizeMode, ControlMode).
import { ReimagineError } from "../errors.js";
import type { ResizeMode } from "../image.js";
import { PREPROCESSORS, type PreprocessorName } from "./preprocess.js";
import type { ControlNetUnit } from "./unit.js";

/** The extension's module names (and UI labels) for our preprocessors. */
const MODULES: Record<string, PreprocessorName> = {
  none: "none",
  invert: "invert",
  "invert (from white bg & black line)": "invert",
  canny: "canny",
  scribble: "scribble",
};

/**
 * Our preprocessor for an A1111 module name, or undefined when we have none like it (depth, openpose, HED, ...).
 * @example preprocessorFromA1111("invert (from white bg & black line)") // "invert"
 */
export function preprocessorFromA1111(module: string): PreprocessorName | undefined {
  return Object.hasOwn(MODULES, module.trim().toLowerCase()) ? MODULES[module.trim().toLowerCase()] : undefined;
}

/** The module names /controlnet/module_list reports: exactly the preprocessors we run. */
export const A1111_MODULES: readonly string[] = Object.keys(PREPROCESSORS);

const RESIZE: [string, ResizeMode][] = [
  ["Just Resize", "just-resize"],
  ["Crop and Resize", "crop-and-resize"],
  ["Resize and Fill", "resize-and-fill"],
];
const RESIZE_ALIASES: Record<string, string> = {
  "Inner Fit (Scale to Fit)": "Crop and Resize",
  "Scale to Fit (Inner Fit)": "Crop and Resize",
  "Outer Fit (Shrink to Fit)": "Resize and Fill",
  "Envelope (Outer Fit)": "Resize and Fill",
};

/**
 * The extension's resize_mode (0/1/2, 3 = "Just Resize (Latent upscale)", or the names and their aliases) as ours;
 * undefined for anything else.
 * @example resizeModeFromA1111("Crop and Resize") // "crop-and-resize"
 */
export function resizeModeFromA1111(v: unknown): ResizeMode | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 && v <= 3 ? RESIZE[v === 3 ? 0 : v][1] : undefined;
  if (typeof v !== "string") return undefined;
  const name = RESIZE_ALIASES[v] ?? v;
  return RESIZE.find(([n]) => n === name)?.[1];
}

const resizeModeName = (m: ResizeMode) => RESIZE.find(([, r]) => r === m)![0];

/** The extension's control modes: "Balanced" (0), "My prompt is more important" (1), "ControlNet is more important" (2). */
export const CONTROL_MODES = ["Balanced", "My prompt is more important", "ControlNet is more important"] as const;

/**
 * An A1111 control_mode as our guess mode: Balanced = off, "ControlNet is more important" = diffusers guess mode (the
 * ControlNet only on the conditional batch, residuals scaled 0.1 .. 1: 10^(-1/12) = 0.8254 per level where the extension
 * uses 0.825); "My prompt is more important" (soft weights on both halves) has no diffusers equivalent: undefined.
 * @example guessModeFromA1111(2) // true
 */
export function guessModeFromA1111(v: unknown): boolean | undefined {
  const i = typeof v === "number" ? v : CONTROL_MODES.indexOf(v as (typeof CONTROL_MODES)[number]);
  return i === 0 ? false : i === 2 ? true : undefined;
}

/** Python's str(float): 1 -> "1.0", 0.75 -> "0.75" (the extension writes its floats so). */
const pyFloat = (x: number) => (Number.isInteger(x) ? x.toFixed(1) : String(x));

/** A ControlNet reference as infotext shows it: a repo id, or a file / folder name without .safetensors. */
export function controlNetDisplayName(ref: string): string {
  const trimmed = ref.replace(/[\\/]+$/, "");
  const name = /^[\w.-]+\/[\w.-]+$/.test(trimmed) && !trimmed.startsWith(".") ? trimmed : (trimmed.split(/[\\/]/).pop() ?? trimmed);
  return name.replace(/\.safetensors$/i, "").replace(/[,:]/g, "_"); // the extension's values hold no ',' or ':'
}

/** A unit as --json output and job views show it: names, no image bytes, diffusers' defaults filled in. */
export function controlNetSummary(u: Omit<ControlNetUnit, "image">) {
  return {
    model: controlNetDisplayName(u.model),
    preprocessor: u.preprocessor ?? "none",
    scale: u.scale ?? 1,
    start: u.start ?? 0,
    end: u.end ?? 1,
    guessMode: u.guessMode ?? false,
  };
}

/**
 * The `ControlNet N` infotext pairs of a run's units, in the extension's format (its infotext_fields in order):
 * `Module: scribble, Model: control_v11p_sd15_scribble, Weight: 0.8, Resize Mode: Just Resize, Processor Res: 512,
 * Threshold A: -1, Threshold B: -1, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced`.
 * Preprocessing runs at the output size, so Processor Res is its short side and Pixel Perfect is True.
 *
 * @example controlNetInfotext([{ model: "models/control_v11p_sd15_scribble.safetensors", preprocessor: "scribble" }], { width: 512, height: 512 })
 */
export function controlNetInfotext(units: readonly ControlNetUnit[] | undefined, size: { width: number; height: number }): Record<string, string> {
  const out: Record<string, string> = {};
  (units ?? []).forEach((u, i) => {
    const module = u.preprocessor ?? "none";
    const o = u.preprocessorOptions ?? {};
    const [a, b] = module === "canny" ? [o.lowThreshold ?? 100, o.highThreshold ?? 200] : module === "scribble" ? [o.threshold ?? -1, o.sigma ?? -1] : [-1, -1];
    const fields: [string, string][] = [
      ["Module", module],
      ["Model", controlNetDisplayName(u.model)],
      ["Weight", pyFloat(u.scale ?? 1)],
      ["Resize Mode", resizeModeName(u.resizeMode ?? "just-resize")],
      ["Processor Res", String(Math.min(size.width, size.height))],
      ["Threshold A", String(a)],
      ["Threshold B", String(b)],
      ["Guidance Start", pyFloat(u.start ?? 0)],
      ["Guidance End", pyFloat(u.end ?? 1)],
      ["Pixel Perfect", "True"],
      ["Control Mode", CONTROL_MODES[u.guessMode ? 2 : 0]],
    ];
    out[`ControlNet ${i}`] = fields.map(([k, v]) => `${k}: ${v}`).join(", ");
  });
  return out;
}

/**
 * The units recorded in an infotext's `ControlNet N` pairs (A1111's or ours), without images: `model` is the name
 * shown ("name [hash]" loses the hash). Throws naming the pair when it asks for what we cannot do.
 * @example controlNetsFromInfotext(parseInfotext(text).pairs)
 */
export function controlNetsFromInfotext(pairs: ReadonlyMap<string, string>): ControlNetUnit[] {
  const units: ControlNetUnit[] = [];
  const keys = [...pairs.keys()].filter((k) => /^ControlNet \d+$/.test(k)).sort((x, y) => Number(x.slice(11)) - Number(y.slice(11)));
  for (const key of keys) {
    const f = new Map<string, string>();
    for (const item of pairs.get(key)!.split(",")) {
      const at = item.indexOf(": ");
      if (at > 0) f.set(item.slice(0, at).trim(), item.slice(at + 2).trim());
    }
    const bad = (what: string) => new ReimagineError(`'${key}' in the image's parameters: ${what}`, "invalid_input");
    const module = f.get("Module") ?? "none";
    const preprocessor = preprocessorFromA1111(module);
    if (!preprocessor) throw bad(`preprocessor '${module}' is not one of ours (${A1111_MODULES.join(", ")}); pass --preprocess and --control-image`);
    const model = (f.get("Model") ?? "").replace(/\s*\[[0-9a-fA-F]+\]$/, "");
    if (!model || model === "None") throw bad("it names no ControlNet model");
    const num = (k: string) => (f.has(k) ? Number(f.get(k)) : undefined);
    const guessMode = guessModeFromA1111(f.get("Control Mode") ?? "Balanced");
    if (guessMode === undefined) throw bad(`control mode '${f.get("Control Mode")}' is not supported (only Balanced and ControlNet is more important)`);
    const [a, b] = [num("Threshold A"), num("Threshold B")];
    const set = (v: number | undefined) => (v !== undefined && v >= 0 ? v : undefined);
    const preprocessorOptions =
      preprocessor === "canny"
        ? { lowThreshold: set(a), highThreshold: set(b) }
        : preprocessor === "scribble"
          ? { threshold: set(a), sigma: set(b) }
          : undefined;
    units.push({
      model,
      preprocessor,
      preprocessorOptions: preprocessorOptions && Object.values(preprocessorOptions).some((v) => v !== undefined) ? preprocessorOptions : undefined,
      scale: num("Weight"),
      start: num("Guidance Start"),
      end: num("Guidance End"),
      guessMode,
      resizeMode: resizeModeFromA1111(f.get("Resize Mode") ?? "Just Resize"),
    });
  }
  return units;
}
