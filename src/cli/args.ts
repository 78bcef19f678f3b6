// Command-line options of `reimagine` (img2img, batch): node:util parseArgs definitions, value
// checks that name the fix, and the help text. Values a flag leaves out stay undefined so that
// model defaults and `--from` settings can fill them; nothing here loads a model or an image.
import { readFileSync, statSync } from "node:fs";
import {
  checkSamplerName,
  DEFAULT_MAX_PIXELS,
  type ImageFormat,
  listSamplers,
  noDenoisingStepReason,
  type PredictionType,
  PROVIDERS,
  type Provider,
  QUANTIZE_MODES,
  type QuantizeMode,
  ReimagineError,
  type ResizeMode,
  VAE_TILING_MODES,
  type VaeTilingMode,
} from "../index.js";
import { MASK_HELP, MASK_OPTIONS, type MaskFlags, parseMaskFlags } from "./args-mask.js";
import { LORA_HELP, LORA_OPTIONS, type LoraFlags, parseLoraFlags } from "./lora.js";
import { CONTROL_HELP, CONTROL_OPTIONS, type ControlFlags, parseControlFlags } from "./args-control.js";
import { parseTokens, unknownOption } from "./parse-tokens.js";

/** Where the CLI writes; tests pass string collectors. */
export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}
export interface CliIO {
  stdout: OutStream;
  stderr: OutStream;
}

export interface GenerateFlags extends LoraFlags {
  prompt?: string;
  negativePrompt?: string;
  /** One strength, or several for a sweep. */
  strengths?: number[];
  steps?: number;
  guidanceScale?: number;
  /** diffusers guidance_rescale (zero-terminal-SNR v-prediction models), 0..1. */
  guidanceRescale?: number;
  /** SDXL refiner model and the fraction of the schedule where it takes over. */
  refiner?: string;
  refinerSwitch?: number;
  seed?: number | bigint;
  sampler?: string;
  clipSkip?: number;
  numImages?: number;
  model?: string;
  configFrom?: string;
  predictionType?: PredictionType;
  width?: number;
  height?: number;
  resizeMode?: ResizeMode;
  background?: string;
  output?: string;
  format?: ImageFormat;
  overwrite: boolean;
  from?: string;
  threads?: number;
  provider?: Provider;
  /** "int8" / "int8-conv": quantized linears (and the UNet's convs); faster, approximate. */
  quantize?: QuantizeMode;
  /** AutoencoderTiny (TAESD) repo or folder for fast encode/decode. */
  tinyVae?: string;
  vaeTiling?: VaeTilingMode;
  maxPixels: number;
  quiet: boolean;
  verbose: boolean;
  json: boolean;
  /** --progress: auto | bar | lines | json | none (on stderr). */
  progress?: "auto" | "bar" | "lines" | "json" | "none";
  /** ControlNet units and their options (args-control.ts). */
  control?: ControlFlags;
  /** Inpainting flags (args-mask.ts). */
  mask?: MaskFlags;
}

const OPTIONS = {
  prompt: { type: "string", short: "p" },
  "prompt-file": { type: "string" },
  "negative-prompt": { type: "string", short: "n" },
  strength: { type: "string", short: "s" },
  steps: { type: "string" },
  "guidance-scale": { type: "string", short: "g" },
  "guidance-rescale": { type: "string" },
  refiner: { type: "string" },
  "refiner-switch": { type: "string" },
  seed: { type: "string" },
  sampler: { type: "string" },
  "clip-skip": { type: "string" },
  "num-images": { type: "string" },
  model: { type: "string", short: "m" },
  "config-from": { type: "string" },
  "prediction-type": { type: "string" },
  width: { type: "string" },
  height: { type: "string" },
  "resize-mode": { type: "string" },
  background: { type: "string" },
  output: { type: "string", short: "o" },
  format: { type: "string" },
  overwrite: { type: "boolean" },
  from: { type: "string" },
  threads: { type: "string" },
  provider: { type: "string" },
  quantize: { type: "string" },
  "tiny-vae": { type: "string" },
  "vae-tiling": { type: "string" },
  "max-pixels": { type: "string" },
  quiet: { type: "boolean", short: "q" },
  verbose: { type: "boolean" },
  json: { type: "boolean" },
  progress: { type: "string" },
  help: { type: "boolean", short: "h" },
  ...MASK_OPTIONS,
  ...LORA_OPTIONS,
  ...CONTROL_OPTIONS,
} as const;

export const OPTION_NAMES: readonly string[] = Object.keys(OPTIONS);

/** Turns parseArgs' TypeErrors into one-line ReimagineErrors. */
export function parseError(e: unknown, known: readonly string[]): ReimagineError {
  const msg = String((e as Error)?.message ?? e).split("\n")[0];
  const code = (e as NodeJS.ErrnoException)?.code;
  const opt = msg.match(/'(-{1,2}[^' ]+)/)?.[1];
  if (e instanceof ReimagineError) return e;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && opt) return unknownOption(opt, known);
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    const long = msg.match(/--[\w-]+/)?.[0] ?? opt ?? "the option";
    return new ReimagineError(`option ${long} needs a value, e.g. ${long} VALUE (a value starting with '-' is written ${long}=-VALUE)`, "usage");
  }
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
    return new ReimagineError(`${msg.replace(/\.$/, "")}: see reimagine --help`, "usage");
  }
  return new ReimagineError(`${msg}: see reimagine --help`, "usage");
}

// ---------- value parsers ----------

function num(flag: string, v: string | undefined, what: string, ok: (x: number) => boolean, integer = false): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v.trim());
  if (v.trim() === "" || !Number.isFinite(x) || (integer && !Number.isInteger(x)) || !ok(x)) {
    throw new ReimagineError(`--${flag} expects ${what} (got '${v}')`, "usage");
  }
  return x;
}

/** "0.5" -> [0.5]; "0.2,0.4,0.6" -> a sweep. Each must be in [0, 1]. */
export function parseStrengths(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  return parts.map((p) => {
    const x = Number(p);
    if (p === "" || !Number.isFinite(x)) {
      throw new ReimagineError(`--strength expects a number between 0 and 1 or a list like 0.2,0.4,0.6 (got '${v}')`, "usage");
    }
    if (x < 0 || x > 1) {
      throw new ReimagineError(
        `strength must be between 0 and 1 (got ${p}): use 0.2-0.4 for subtle changes, 0.5-0.7 to restyle, 0.8-1.0 to reimagine`,
        "usage",
      );
    }
    return x;
  });
}

/** "1234" -> 1234; above 2^53 -> bigint; "-1" -> undefined (random). */
export function parseSeed(v: string | undefined): number | bigint | undefined {
  if (v === undefined) return undefined;
  const t = v.trim();
  if (t === "-1") return undefined;
  if (!/^\d+$/.test(t)) throw new ReimagineError(`--seed expects a whole number >= 0, or -1 for a random seed (got '${v}')`, "usage");
  const big = BigInt(t);
  if (big >= 1n << 64n) throw new ReimagineError(`--seed ${t} is too large: use a whole number below 2^64`, "usage");
  return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

function oneOf<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  const x = v.trim().toLowerCase() as T;
  if (!allowed.includes(x)) throw new ReimagineError(`--${flag} must be one of ${allowed.join(", ")} (got '${v}')`, "usage");
  return x;
}

/** Throws the registry's own "unknown sampler" error (listing valid names) for an unknown name. */
export function checkSampler(name: string | undefined): void {
  if (name !== undefined) checkSamplerName(name);
}

function format(v: string | undefined): ImageFormat | undefined {
  const f = v?.trim().toLowerCase();
  return f === "jpg" ? "jpeg" : oneOf("format", f, ["png", "jpeg", "webp"] as const);
}

/** Scheduler steps the CLI accepts: SD models are trained on 1000 timesteps (num_train_timesteps). */
export const MAX_STEPS = 1000;
/** Largest prompt file: A1111 prompts are a few kB; this leaves room for long weighted prompts. */
export const MAX_PROMPT_FILE_BYTES = 1 << 20;

/** Reads a prompt file (UTF-8, BOM and trailing line breaks dropped), refusing huge or unreadable files. */
export function readPromptFile(path: string, flag: string): string {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ReimagineError(`${flag} '${path}' is not a file: give a text file holding the prompt`, "usage");
    size = st.size;
  } catch (e) {
    if (e instanceof ReimagineError) throw e;
    throw new ReimagineError(`${flag} '${path}': file not found; give a text file holding the prompt`, "not_found");
  }
  if (size > MAX_PROMPT_FILE_BYTES)
    throw new ReimagineError(`${flag} '${path}' is ${size} bytes; the limit for a prompt is ${MAX_PROMPT_FILE_BYTES} bytes`, "usage");
  return readFileSync(path, "utf8")
    .replace(/^\uFEFF/, "")
    .replace(/(\r?\n)+$/, "");
}

/**
 * The prompt of -p/--prompt or --prompt-file: "-p @FILE" reads FILE (curl's convention), "@@text" is the literal "@text".
 * @example promptArg("@prompt.txt", undefined) // the file's text
 */
export function promptArg(value: string | undefined, file: string | undefined, flag = "--prompt"): string | undefined {
  if (value !== undefined && file !== undefined) throw new ReimagineError(`give the prompt once: ${flag} or ${flag}-file, not both`, "usage");
  if (file !== undefined) return readPromptFile(file, `${flag}-file`);
  if (value === undefined || !value.startsWith("@")) return value;
  if (value.startsWith("@@")) return value.slice(1);
  if (value === "@") throw new ReimagineError(`${flag} @ needs a file name: ${flag} @prompt.txt`, "usage");
  return readPromptFile(value.slice(1), `${flag} @FILE`);
}

/**
 * Refuses an output size over --max-pixels before the model loads. `explicit` are the flags as given,
 * `flags` after --from, so the message names where the size came from.
 */
export function checkOutputPixels(explicit: GenerateFlags, flags: GenerateFlags, input: { width: number; height: number }): void {
  const width = flags.width ?? input.width;
  const height = flags.height ?? input.height;
  if (width * height <= flags.maxPixels) return;
  const fromFile = flags.from !== undefined && (explicit.width !== flags.width || explicit.height !== flags.height);
  const origin = fromFile
    ? `the settings of --from '${flags.from}' ask`
    : flags.width !== undefined || flags.height !== undefined
      ? "--width/--height ask"
      : "the input asks";
  throw new ReimagineError(
    `${origin} for ${width}x${height} = ${width * height} pixels, over --max-pixels ${flags.maxPixels}: choose a smaller --width/--height or raise --max-pixels`,
    "image_too_large",
  );
}

export interface ParsedGenerate {
  positionals: string[];
  flags: GenerateFlags;
  help: boolean;
}

/**
 * Parses the options shared by `reimagine <input>` and `reimagine batch`.
 * @example parseGenerateArgs(["in.png", "--prompt", "a castle", "--strength", "0.2,0.4"]).flags.strengths // [0.2, 0.4]
 */
export function parseGenerateArgs(args: string[]): ParsedGenerate {
  let parsed;
  try {
    parsed = parseTokens(args, OPTIONS);
  } catch (e) {
    throw parseError(e, OPTION_NAMES);
  }
  const v = parsed.values;
  const pos = (x: number) => x > 0;
  const flags: GenerateFlags = {
    prompt: promptArg(v.prompt, v["prompt-file"]),
    negativePrompt: promptArg(v["negative-prompt"], undefined, "--negative-prompt"),
    strengths: v.strength === undefined ? undefined : parseStrengths(v.strength),
    steps: num("steps", v.steps, `a whole number from 1 to ${MAX_STEPS}`, (x) => x >= 1 && x <= MAX_STEPS, true),
    guidanceScale: num("guidance-scale", v["guidance-scale"], "a number such as 7.5 (0 or 1 turns guidance off)", (x) => x >= 0),
    guidanceRescale: num("guidance-rescale", v["guidance-rescale"], "a number from 0 to 1 (0.7 for zero-terminal-SNR models)", (x) => x >= 0 && x <= 1),
    refiner: v.refiner,
    refinerSwitch: num("refiner-switch", v["refiner-switch"], "a fraction strictly between 0 and 1, e.g. 0.8", (x) => x > 0 && x < 1),
    seed: parseSeed(v.seed),
    sampler: v.sampler,
    clipSkip: num("clip-skip", v["clip-skip"], "a whole number >= 0 (0 = last CLIP layer)", (x) => x >= 0, true),
    numImages: num("num-images", v["num-images"], "a whole number from 1 to 64", (x) => x >= 1 && x <= 64, true),
    model: v.model,
    configFrom: v["config-from"],
    predictionType: oneOf("prediction-type", v["prediction-type"], ["epsilon", "v_prediction"] as const),
    width: num("width", v.width, "a whole number of pixels (a multiple of 8)", pos, true),
    height: num("height", v.height, "a whole number of pixels (a multiple of 8)", pos, true),
    resizeMode: oneOf("resize-mode", v["resize-mode"], ["just-resize", "crop-and-resize", "resize-and-fill"] as const),
    background: v.background,
    output: v.output,
    format: format(v.format),
    overwrite: v.overwrite ?? false,
    from: v.from,
    threads: num("threads", v.threads, "a whole number >= 1", pos, true),
    provider: oneOf("provider", v.provider, PROVIDERS),
    quantize: oneOf("quantize", v.quantize, QUANTIZE_MODES),
    tinyVae: v["tiny-vae"],
    vaeTiling: oneOf("vae-tiling", v["vae-tiling"], VAE_TILING_MODES),
    maxPixels: num("max-pixels", v["max-pixels"], "a whole number of pixels, e.g. 16000000", pos, true) ?? DEFAULT_MAX_PIXELS,
    quiet: v.quiet ?? false,
    verbose: v.verbose ?? false,
    json: v.json ?? false,
    progress: oneOf("progress", v.progress, ["auto", "bar", "lines", "json", "none"] as const),
    mask: parseMaskFlags(v),
    ...parseLoraFlags(v),
    control: parseControlFlags(v),
  };
  checkSampler(flags.sampler);
  if (flags.refinerSwitch !== undefined && flags.refiner === undefined)
    throw new ReimagineError("--refiner-switch needs --refiner MODEL (an SDXL refiner)", "usage");
  if (flags.width !== undefined && flags.height !== undefined) checkOutputPixels(flags, flags, { width: flags.width, height: flags.height });
  if (flags.steps !== undefined && flags.strengths) {
    for (const s of flags.strengths) {
      const reason = noDenoisingStepReason(flags.steps, s, { strength: "--strength", steps: "--steps" });
      if (reason) throw new ReimagineError(reason, "usage");
    }
  }
  return { positionals: parsed.positionals, flags, help: v.help ?? false };
}

// ---------- help ----------

function samplerTable(): string {
  return listSamplers()
    .map((s) => `  ${s.name.padEnd(17)} ${`"${s.a1111Name}"`.padEnd(19)} ${s.className}`)
    .join("\n");
}

export function mainHelp(version: string): string {
  return `reimagine ${version}: image-to-image Stable Diffusion (diffusers-exact) in Node.js

Usage:
  reimagine <input> --prompt TEXT [options]      reimagine one picture (alias: reimagine img2img ...)
  reimagine <input> --prompt TEXT --strength 0.2,0.4,0.6,0.8
                                                 strength sweep: one image per strength + a contact sheet
  reimagine batch <in-dir> <out-dir> [options]   every image of a folder (resumable)
  reimagine info <image>                         print the generation parameters stored in an image
  reimagine serve [options]                      web UI and HTTP API (reimagine serve --help)
  reimagine worker --queue URL --model M         run queued jobs for serve --queue (reimagine worker --help)
  reimagine --version

Inputs: PNG, JPEG, WebP, AVIF, TIFF and GIF (first frame). SVG is not supported: export it as PNG first.

Strength (how far from the input to go; --strength F):
  0.2-0.4  subtle: restyles details and textures, keeps everything in place
  0.5-0.7  restyle: new look, same composition
  0.8-1.0  reimagine: only the rough layout and colours are kept
  Sketches and doodles: draw shapes on white, describe the finished picture in the prompt, use 0.7-0.9
  (transparent pixels are flattened onto --background, white by default). steps x strength must be >= 1.

Options:
  -p, --prompt TEXT             what the result should show (-p @FILE reads it from FILE; @@ for a literal @)
      --prompt-file FILE        read the prompt from a text file (for long prompts)
  -n, --negative-prompt TEXT    what to avoid (used when --guidance-scale > 1; -n @FILE reads a file)
  -s, --strength F[,F...]       denoising strength in [0, 1] (model default, e.g. sd-turbo 0.5); a list makes a sweep
      --steps N                 scheduler steps for strength 1; about steps x strength run (model default)
  -g, --guidance-scale F        classifier-free guidance; <= 1 turns it off (model default)
      --guidance-rescale F      rescale CFG 0..1 (diffusers guidance_rescale; ~0.7 for v-prediction zero-SNR models)
      --refiner REF             SDXL refiner that finishes the run (e.g. stabilityai/stable-diffusion-xl-refiner-1.0)
      --refiner-switch F        where the refiner takes over, a fraction of the schedule (default 0.8)
      --seed N                  seed for reproducible results (-1 or none: random; printed as "seed N")
      --sampler NAME            sampler (default: the model's scheduler); see the list below
      --clip-skip N             use the CLIP layer N before the last (0 = last)
      --num-images N            images per run (files get -1, -2, ...)
${LORA_HELP}
  -m, --model REF               diffusers folder, .safetensors checkpoint or Hugging Face repo id (stabilityai/sd-turbo)
      --config-from DIR         diffusers folder whose configs/tokenizer a single-file checkpoint uses
      --prediction-type T       epsilon | v_prediction (single-file SD 2.x v-models)
      --width W --height H      output size (multiples of 8; default: the input size rounded down)
      --resize-mode M           just-resize | crop-and-resize | resize-and-fill (when the size differs)
      --background COLOR        colour under transparent pixels (default white)
  -o, --output PATH             output file (default <input>-reimagined.png beside the input)
      --format F                png | jpeg | webp (default from --output, else png)
      --overwrite               replace existing output files
      --from IMAGE              reuse the settings stored in an earlier output (explicit flags win)
      --threads N               CPU threads for ONNX Runtime (default: all cores)
      --provider P              ${PROVIDERS.join(" | ")} (default cpu)
      --quantize M              int8 (int8 linear layers) or int8-conv (also the UNet's convs: fastest); approximate,
                                see docs/performance.md
      --tiny-vae REF            fast TAESD encode/decode (e.g. madebyollin/taesd); approximate
      --vae-tiling M            auto (tiles above 1024x1024, default) | on | off
      --max-pixels N            refuse bigger input or output images (default ${DEFAULT_MAX_PIXELS})
  -q, --quiet                   no progress or status lines
      --verbose                 status lines everywhere, stack traces on errors
      --json                    print one JSON result line on stdout
      --progress M              auto (bar on a terminal, "step 3/25 ..." lines otherwise) | bar | lines
                                | json (one JSON object per line, for scripts) | none; on stderr
  -h, --help                    this help

${CONTROL_HELP}
${MASK_HELP}

Environment: REIMAGINE_CACHE (built graphs), HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE=1, HF_TOKEN.

Samplers (--sampler accepts our name, the AUTOMATIC1111 name or the diffusers class):
${samplerTable()}

Examples:
  reimagine photo.jpg -p "a watercolor painting" --strength 0.5
  reimagine sketch.png -p "a castle on a hill, detailed matte painting" --strength 0.8 --seed 42
  reimagine photo.jpg -p "oil painting" --strength 0.2,0.4,0.6,0.8
  reimagine stickman.png -p "a knight in a misty forest" --controlnet control_v11p_sd15_scribble --control-scale 0.4,0.7,1
  reimagine batch photos/ painted/ -p "oil painting" --seed 1
  reimagine photo.png --mask hand.png -p "a hand, detailed" --strength 0.75 --mask-blur 8
`;
}

export function batchHelp(): string {
  return `Usage: reimagine batch <in-dir> <out-dir> [options]

Runs img2img on every image of <in-dir> (png, jpg, jpeg, webp, avif, tif, tiff, gif; sorted by name) and
writes <out-dir>/<name>.png. The model is loaded once. A sidecar <name>.txt beside an image holds its prompt
(else --prompt); a <name>.mask.png beside it is its inpainting mask (else --mask, if given). Files that fail are reported and skipped; the exit code is 2 when some failed.
Interrupted runs resume: outputs that already exist are skipped (writes are atomic, so they are complete).
Options are those of \`reimagine <input>\` (see reimagine --help) except --output, --from and strength sweeps.
`;
}
