// The CLI's LoRA and prompt-syntax options: `--lora FILE[:WEIGHT]` (repeatable; a file, a name in the LoRA folders or
// a Hugging Face repo), `--lora-dir DIR`, `--embedding-dir DIR` (repeatable), `--prompt-syntax a1111|none`; their run
// options; and `--from`
// for LoRAs: the tags of the stored prompt are found by name, else by their `Lora hashes` entry, in the LoRA folders.
import { existsSync } from "node:fs";
import { sep } from "node:path";
import {
  DEFAULT_MODEL,
  embeddingDirsFor,
  extractLoraTags,
  findLora,
  listLoras,
  type LoraEntry,
  type LoraSpec,
  loraDirsFor,
  loraRunDefaults,
  loraShortHash,
  PROMPT_SYNTAXES,
  type PromptSyntax,
  ReimagineError,
} from "../index.js";

/** The flags this module adds to GenerateFlags. */
export interface LoraFlags {
  loras?: LoraSpec[];
  /** --lora-dir as given (the defaults are added by loraRunOptions). */
  loraDirs?: string[];
  /** --embedding-dir as given. */
  embeddingDirs?: string[];
  promptSyntax?: PromptSyntax;
}

export const LORA_OPTIONS = {
  lora: { type: "string", multiple: true },
  "lora-dir": { type: "string", multiple: true },
  "embedding-dir": { type: "string", multiple: true },
  "prompt-syntax": { type: "string" },
} as const;

export const LORA_HELP = `      --lora FILE[:WEIGHT]      apply a LoRA (repeatable): a .safetensors file, a name in the LoRA folders, or a
                                Hugging Face repo (latent-consistency/lcm-lora-sdv1-5); WEIGHT default 1. Prompts
                                can also name LoRAs: "a cat <lora:watercolor:0.8>" (<lora:name:te:unet> too).
                                An LCM-LoRA runs the LCM sampler (8 steps, guidance 1) unless you set them
      --lora-dir DIR            folder of LoRA files (repeatable; default: loras/ beside the model; plus REIMAGINE_LORA_DIR)
      --embedding-dir DIR       folder of textual-inversion embeddings (.safetensors) that prompts name by file name
                                (repeatable; default: embeddings/ beside the model; plus REIMAGINE_EMBEDDING_DIR)
      --prompt-syntax S         a1111 (default: (word:1.2) emphasis, [word], BREAK, long prompts, <lora:...> tags)
                                | none (the prompt is literal text, cut at 77 tokens as diffusers)`;

/**
 * `--lora` values as specs: "x.safetensors:0.7", "watercolor:0.8", "latent-consistency/lcm-lora-sdv1-5". The text after
 * the last ":" is the weight unless it is part of a path (C:\...).
 * @example parseLoraArg("watercolor:0.8") // { name: "watercolor", weight: 0.8 }
 */
export function parseLoraArg(v: string): LoraSpec {
  let ref = v.trim();
  let weight: number | undefined;
  const at = ref.lastIndexOf(":");
  if (at > 0 && !/[\\/]/.test(ref.slice(at + 1))) {
    const w = ref.slice(at + 1).trim();
    const x = Number(w);
    if (w === "" || !Number.isFinite(x)) {
      throw new ReimagineError(`--lora '${v}': the weight '${w}' is not a number; write --lora FILE:0.8 (or leave the weight out for 1)`, "usage");
    }
    weight = x;
    ref = ref.slice(0, at);
  }
  if (ref === "") throw new ReimagineError(`--lora '${v}' names no LoRA: give a file, a name in the LoRA folders or a repo id`, "usage");
  const asPath = existsSync(ref) || /\.safetensors$/i.test(ref) || ref.includes(sep) || ref.includes("/");
  return { ...(asPath ? { path: ref } : { name: ref }), ...(weight === undefined ? {} : { weight }) };
}

/** Fills LoraFlags from parsed option values. */
export function parseLoraFlags(v: { lora?: string[]; "lora-dir"?: string[]; "embedding-dir"?: string[]; "prompt-syntax"?: string }): LoraFlags {
  const syntax = v["prompt-syntax"]?.trim().toLowerCase();
  if (syntax !== undefined && !PROMPT_SYNTAXES.includes(syntax as PromptSyntax)) {
    throw new ReimagineError(`--prompt-syntax must be one of ${PROMPT_SYNTAXES.join(", ")} (got '${v["prompt-syntax"]}')`, "usage");
  }
  return { loras: v.lora?.map(parseLoraArg), loraDirs: v["lora-dir"], embeddingDirs: v["embedding-dir"], promptSyntax: syntax as PromptSyntax | undefined };
}

/**
 * The run options of these flags (LoRA folders with their defaults) and the LCM-LoRA mode's sampler, steps and
 * guidance where the flags leave them out.
 */
export function loraRunOptions(
  flags: LoraFlags & { model?: string; sampler?: string; steps?: number; guidanceScale?: number },
  prompt: string,
): { loras?: LoraSpec[]; loraDirs: string[]; embeddingDirs: string[]; promptSyntax?: PromptSyntax; fewStep: ReturnType<typeof loraRunDefaults> } {
  const model = flags.model ?? DEFAULT_MODEL;
  const base = {
    loras: flags.loras,
    loraDirs: loraDirsFor(model, flags.loraDirs),
    embeddingDirs: embeddingDirsFor(model, flags.embeddingDirs),
    promptSyntax: flags.promptSyntax,
  };
  return { ...base, fewStep: loraRunDefaults({ ...base, prompt, sampler: flags.sampler, steps: flags.steps, guidanceScale: flags.guidanceScale }) };
}

/**
 * `--from`: the LoRAs of a stored prompt. A tag whose name is not in the LoRA folders is found by its `Lora hashes`
 * hash (the tag is renamed to the file found) or, when it names a hub repo, turned into `--lora REPO`; otherwise it is
 * an error that names the LoRA and the folders searched. Returns the prompt to run, extra specs and notes.
 */
export function fromLoras(
  prompt: string,
  pairs: Map<string, string>,
  flags: LoraFlags & { model?: string },
): { prompt: string; loras: LoraSpec[]; notes: string[] } {
  if (flags.promptSyntax === "none") return { prompt, loras: [], notes: [] };
  const { loras: tags } = extractLoraTags(prompt);
  if (tags.length === 0) return { prompt, loras: [], notes: [] };
  const hashes = new Map(
    (pairs.get("Lora hashes") ?? "")
      .split(",")
      .map((p) => p.trim().split(/:\s*/))
      .filter((kv) => kv.length === 2)
      .map(([k, v]) => [k, v]),
  );
  const dirs = loraDirsFor(flags.model ?? DEFAULT_MODEL, flags.loraDirs);
  const entries = listLoras(dirs);
  let byHash: Map<string, LoraEntry> | undefined;
  const notes: string[] = [];
  const loras: LoraSpec[] = [];
  let out = prompt;
  for (const t of tags) {
    try {
      findLora(t.name, entries);
      continue;
    } catch {
      // not by name: by hash, or a hub repo
    }
    const hash = hashes.get(t.name.replace(/[:,]/g, ""));
    byHash ??= new Map(entries.map((e) => [safeHash(e.path), e]));
    const hit = hash ? byHash.get(hash) : undefined;
    if (hit) {
      out = out.replace(t.text, t.text.replace(`:${t.name}`, `:${hit.name}`));
      notes.push(`--from: LoRA '${t.name}' [${hash}] is ${hit.path} (found by its hash)`);
    } else if (/^[\w.-]+\/[\w.-]+$/.test(t.name)) {
      out = out.replace(t.text, "");
      loras.push({ path: t.name, teWeight: t.te, unetWeight: t.unet });
      notes.push(`--from: LoRA '${t.name}' is a Hugging Face repo; it is downloaded if it is not cached`);
    } else {
      throw new ReimagineError(
        `--from: the image was made with LoRA '${t.name}'${hash ? ` [${hash}]` : ""}, which is in none of the LoRA folders (${dirs.join(", ")}): put the file there, pass --lora-dir, or give --prompt without its tag`,
        "not_found",
      );
    }
  }
  return { prompt: out, loras, notes };
}

function safeHash(path: string): string {
  try {
    return loraShortHash(path);
  } catch {
    return "";
  }
}
