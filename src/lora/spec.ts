// LoRAs as run options name them (plain data: runs cross process boundaries): a name found in the LoRA folders, a
// file or a Hugging Face repo, with A1111's multipliers; the folders searched by default; the prompt tags written
// for them in metadata; and the few-step (LCM-LoRA) defaults. Pure: nothing here reads a LoRA.
// Ref: AUTOMATIC1111 extensions-builtin/Lora (extra_networks_lora.py: <lora:name:te:unet>), diffusers LCM-LoRA docs.
import { existsSync, statSync } from "node:fs";
import { basename, delimiter, dirname, join, resolve } from "node:path";
import { cacheRoot } from "../cache-root.js";
import { ReimagineError } from "../errors.js";
import { type PromptSyntax, PROMPT_SYNTAXES } from "../prompt/encode.js";
import { extractLoraTags } from "../prompt/extra-networks.js";

/**
 * A LoRA for a run. Give `name` (as `<lora:name:...>` tags do: the file name without .safetensors, or its
 * ss_output_name, searched in the LoRA folders) or `path` (a .safetensors file, or a Hugging Face repo holding one
 * LoRA such as latent-consistency/lcm-lora-sdv1-5).
 *
 * @example { name: "watercolor", weight: 0.8 } // as <lora:watercolor:0.8>
 * @example { path: "latent-consistency/lcm-lora-sdv1-5" } // with the LCM sampler: a few-step mode
 */
export interface LoraSpec {
  name?: string;
  path?: string;
  /** Multiplier of the text-encoder and UNet parts (default 1; negative inverts the LoRA). */
  weight?: number;
  /** Text-encoder multiplier (A1111's te; default `weight`). */
  teWeight?: number;
  /** UNet multiplier (A1111's unet; default `teWeight` when given, else `weight`). */
  unetWeight?: number;
}

/** The run options that choose LoRAs (a subset of Img2ImgOptions). */
export interface LoraRunOptions {
  prompt: string;
  prompt2?: string;
  loras?: readonly LoraSpec[];
  /** Folders searched for LoRA names (recursively). Default: REIMAGINE_LORA_DIR only (front ends add a loras/ folder beside the model). */
  loraDirs?: readonly string[];
  /** "a1111" (default): emphasis, BREAK, chunks and <lora:...> tags; "none": the prompt is literal text. */
  promptSyntax?: PromptSyntax;
}

/** A LoRA named by a spec or a tag, with its multipliers. */
export interface LoraRequest {
  /** The name shown in tags and `Lora hashes` (a spec's name, a file's stem, a repo id). */
  name: string;
  /** Where to find it: in the LoRA folders by name, or a file / repo. */
  from: { name: string } | { path: string };
  te: number;
  unet: number;
  dynDim?: number;
}

/** Checks a run's prompt syntax. */
export function checkPromptSyntax(syntax: unknown): PromptSyntax {
  if (syntax === undefined) return "a1111";
  if (!PROMPT_SYNTAXES.includes(syntax as PromptSyntax)) {
    throw new ReimagineError(`prompt syntax must be one of ${PROMPT_SYNTAXES.join(", ")} (got '${String(syntax)}')`, "invalid_input");
  }
  return syntax as PromptSyntax;
}

const finite = (v: unknown, what: string, who: string): number => {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ReimagineError(`LoRA ${who}: the ${what} must be a number such as 0.8 (got ${JSON.stringify(v)})`, "invalid_input");
  }
  return v;
};

/** The name a spec is shown under: its name, a file's stem, or a repo id. */
export function specName(spec: LoraSpec): string {
  if (spec.name !== undefined) return spec.name;
  const p = spec.path ?? "";
  return /\.safetensors$/i.test(p) || existsSync(p) ? basename(p).replace(/\.safetensors$/i, "") : p;
}

/** A spec as a LoraRequest, checked: exactly one of name and path, finite weights. */
export function specRequest(spec: LoraSpec): LoraRequest {
  const given = [spec.name, spec.path].filter((x) => x !== undefined);
  if (given.length !== 1 || given[0] === "" || typeof given[0] !== "string") {
    throw new ReimagineError(
      `a LoRA needs exactly one of 'name' (in the LoRA folders) and 'path' (a file or hub repo); got ${JSON.stringify(spec)}`,
      "invalid_input",
    );
  }
  const who = String(given[0]);
  const weight = spec.weight === undefined ? 1 : finite(spec.weight, "weight", who);
  const te = spec.teWeight === undefined ? weight : finite(spec.teWeight, "text-encoder weight", who);
  const unet = spec.unetWeight === undefined ? (spec.teWeight === undefined ? weight : te) : finite(spec.unetWeight, "UNet weight", who);
  return { name: specName(spec), from: spec.name !== undefined ? { name: spec.name } : { path: spec.path! }, te, unet };
}

/**
 * The LoRAs of a run in order (the `loras` option, then the prompt's tags) and the prompts without tags.
 * With syntax "none" tags stay text. Tags name LoRAs in the folders only (as A1111).
 *
 * @example loraRequests({ prompt: "a cat <lora:watercolor:0.8>" }) // { prompt: "a cat ", requests: [{ name: "watercolor", te: 0.8, unet: 0.8, ... }] }
 */
export function loraRequests(opts: LoraRunOptions): { prompt: string; prompt2?: string; requests: LoraRequest[] } {
  const requests = (opts.loras ?? []).map(specRequest);
  if (checkPromptSyntax(opts.promptSyntax) === "none") return { prompt: opts.prompt, prompt2: opts.prompt2, requests };
  const fromTags = (text: string) => {
    const { prompt, loras } = extractLoraTags(text);
    for (const t of loras) requests.push({ name: t.name, from: { name: t.name }, te: t.te, unet: t.unet, dynDim: t.dynDim });
    return prompt;
  };
  const prompt = fromTags(opts.prompt);
  const prompt2 = opts.prompt2 === undefined ? undefined : fromTags(opts.prompt2);
  return { prompt, prompt2, requests };
}

const num = (x: number) => String(Math.round(x * 1e6) / 1e6);

/**
 * The prompt as metadata records it: the `loras` option's LoRAs appended as A1111 tags, so A1111 and `--from`
 * apply them again (tags remove to nothing: the prompt encodes the same).
 *
 * @example promptWithLoraTags("a cat", [{ name: "watercolor", weight: 0.8 }]) // "a cat <lora:watercolor:0.8>"
 */
export function promptWithLoraTags(prompt: string, loras: readonly LoraSpec[] | undefined): string {
  if (!loras?.length) return prompt;
  const tags = loras.map((s) => {
    const r = specRequest(s);
    return r.te === r.unet ? `<lora:${r.name}:${num(r.te)}>` : `<lora:${r.name}:${num(r.te)}:${num(r.unet)}>`;
  });
  return [prompt, ...tags].filter((x) => x !== "").join(" ");
}

/** LCM-LoRAs (latent-consistency/lcm-lora-*, lcm_lora_*.safetensors): "lcm" as a word in the name. */
export const isLcmLoraName = (name: string): boolean => /(^|[^a-z0-9])lcm([^a-z]|$)/i.test(name);

/**
 * The few-step mode an LCM-LoRA asks for, for the run options the caller left out: the LCM sampler, 8 steps and
 * guidance 1 (the defaults of LCM models); {} without an LCM-LoRA. Names are read as written (no file is opened).
 *
 * @example loraRunDefaults({ prompt: "a cat", loras: [{ path: "latent-consistency/lcm-lora-sdv1-5" }] }) // { sampler: "lcm", steps: 8, guidanceScale: 1 }
 */
export function loraRunDefaults(opts: LoraRunOptions & { sampler?: string; steps?: number; guidanceScale?: number }): {
  sampler?: string;
  steps?: number;
  guidanceScale?: number;
} {
  let names: string[];
  try {
    names = loraRequests(opts).requests.map((r) => ("path" in r.from ? `${r.from.path} ${r.name}` : r.name));
  } catch {
    return {}; // the run itself reports bad LoRA options
  }
  if (!names.some(isLcmLoraName)) return {};
  const out: { sampler?: string; steps?: number; guidanceScale?: number } = {};
  if (opts.sampler === undefined) out.sampler = "lcm";
  if (opts.steps === undefined) out.steps = LCM_LORA_DEFAULTS.steps;
  if (opts.guidanceScale === undefined) out.guidanceScale = LCM_LORA_DEFAULTS.guidanceScale;
  return out;
}

/** Steps and guidance of the LCM-LoRA mode (as for LCM models, src/pipeline/family.ts). */
export const LCM_LORA_DEFAULTS = { steps: 8, guidanceScale: 1 } as const;

/**
 * The LoRA folders a front end searches: REIMAGINE_LORA_DIR (a path list), then the folders given (--lora-dir), else a
 * `loras/` folder beside the model (beside a model folder or file; for hub models in the Reimagine cache folder).
 *
 * @example loraDirsFor("/models/sd15") // ["/models/loras"]
 * @example loraDirsFor("stabilityai/sd-turbo", ["./my-loras"]) // ["./my-loras"]
 */
export function loraDirsFor(modelRef: string | undefined, given?: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  return foldersFor(modelRef, "loras", given, envLoraDirs(env), env);
}

/** `fromEnv`, then `given`, else `folder` beside the model (for hub models under the Reimagine cache folder). */
export function foldersFor(
  modelRef: string | undefined,
  folder: string,
  given: readonly string[] | undefined,
  fromEnv: string[],
  env: NodeJS.ProcessEnv = process.env,
): string[] {
  const local = modelRef !== undefined && existsSync(modelRef);
  const beside = local ? join(dirname(resolve(modelRef)), folder) : join(cacheRoot(env), folder);
  return [...new Set([...fromEnv, ...(given?.length ? given : [beside])])];
}

/** The folders of REIMAGINE_LORA_DIR (a path list, ":"-separated; ";" on Windows). */
export const envLoraDirs = (env: NodeJS.ProcessEnv = process.env): string[] => (env.REIMAGINE_LORA_DIR ?? "").split(delimiter).filter(Boolean);

/** Refuses LoRA folders that exist but are not folders (missing ones are fine: nothing is found there). */
export function checkLoraDirs(dirs: readonly string[]): void {
  for (const d of dirs) {
    if (existsSync(d) && !statSync(d).isDirectory())
      throw new ReimagineError(`LoRA folder '${d}' is a file: give a folder of .safetensors LoRAs`, "invalid_input");
  }
}
