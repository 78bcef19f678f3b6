// LoRAs and prompt syntax on the server, for both APIs: the LoRAs of the server's LoRA folders (GET /sdapi/v1/loras in
// A1111's shape, GET /v1/loras), the prompt's <lora:name:...> tags and the native `loras` field checked against them
// before a job is queued (422 naming the field, with close matches), `promptSyntax` (native). Clients name LoRAs;
// they never give paths or hub repos. Ref: AUTOMATIC1111 extensions-builtin/Lora/scripts/lora_script.py (api_networks).
import { basename, relative } from "node:path";
import {
  embeddingFiles,
  extractLoraTags,
  findLora,
  listLoras,
  type LoraEntry,
  type LoraSpec,
  PROMPT_SYNTAXES,
  type PromptSyntax,
  ReimagineError,
  readTextualInversion,
} from "../index.js";
import { type Fields, ValidationError } from "./validate.js";

/** The server's folders of LoRAs and textual-inversion embeddings (reimagine serve --lora-dir, --embedding-dir). */
export interface PromptFolders {
  loraDirs: string[];
  embeddingDirs: string[];
}
export const NO_FOLDERS: PromptFolders = { loraDirs: [], embeddingDirs: [] };

/** What a generation request carries for LoRAs (GenerationRequest.lora): run options as the engine takes them. */
export interface LoraRequestFields extends PromptFolders {
  loras?: LoraSpec[];
  promptSyntax?: PromptSyntax;
}

/** Most LoRAs one request may apply (each adds its rank to every layer it touches). */
export const MAX_LORAS_PER_REQUEST = 8;

/** The LoRAs of the folders with their safetensors metadata, as A1111 lists them (paths relative to their folder). */
export function loraList(dirs: readonly string[]): { name: string; alias: string; path: string; metadata: Record<string, string> }[] {
  return listLoras(dirs).map((e) => ({ name: e.name, alias: e.alias, path: shownPath(e, dirs), metadata: e.metadata ?? {} }));
}

/** A LoRA's path below its folder: the server's own folder layout is not shown to clients. */
function shownPath(e: LoraEntry, dirs: readonly string[]): string {
  for (const d of dirs) {
    const r = relative(d, e.path);
    if (!r.startsWith("..")) return r;
  }
  return e.name;
}

/**
 * The embeddings of the folders in A1111's shape ({loaded: {name: {shape, vectors, ...}}, skipped}); whether one fits
 * the model is decided when a prompt uses it (another family's embedding is skipped then, as A1111 skips it at load).
 */
export function embeddingList(dirs: readonly string[]): { loaded: Record<string, unknown>; skipped: Record<string, unknown> } {
  const loaded: Record<string, unknown> = {};
  const skipped: Record<string, unknown> = {};
  for (const path of embeddingFiles(dirs)) {
    const name = basename(path).replace(/\.safetensors$/i, "");
    const entry = { step: null, sd_checkpoint: null, sd_checkpoint_name: null };
    try {
      const v = readTextualInversion(path).vectors[0];
      loaded[name] = { ...entry, shape: v.dim, vectors: v.rows };
    } catch {
      skipped[name] = { ...entry, shape: null, vectors: null };
    }
  }
  return { loaded, skipped };
}

const finite = (v: unknown, field: string): number => {
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new ValidationError(field, `${field} must be a number such as 0.8 (got ${JSON.stringify(v)})`);
  return n;
};

/** The native `loras` field: [{ name, weight?, teWeight?, unetWeight? }] or ["name:0.8"], as JSON or a JSON string (forms). */
function nativeLoras(raw: unknown): LoraSpec[] {
  let list = raw;
  if (typeof raw === "string") {
    const t = raw.trim();
    if (t === "") return [];
    try {
      list = t.startsWith("[") ? JSON.parse(t) : t.split(",");
    } catch {
      throw new ValidationError("loras", 'loras must be a JSON array such as [{"name": "watercolor", "weight": 0.8}]');
    }
  }
  if (!Array.isArray(list)) throw new ValidationError("loras", 'loras must be an array such as [{"name": "watercolor", "weight": 0.8}]');
  if (list.length > MAX_LORAS_PER_REQUEST) throw new ValidationError("loras", `at most ${MAX_LORAS_PER_REQUEST} LoRAs per request (got ${list.length})`);
  return list.map((item, i) => {
    const f = `loras[${i}]`;
    if (typeof item === "string") {
      const [name, w] = item.trim().split(/:(?=[^:]*$)/);
      return w === undefined ? { name } : { name, weight: finite(w, `${f}.weight`) };
    }
    if (typeof item !== "object" || item === null) throw new ValidationError("loras", `${f} must be an object with a name`);
    const o = item as Fields;
    if ("path" in o) throw new ValidationError("loras", `${f}: the server applies LoRAs by name (GET /v1/loras lists them), not by path`);
    if (typeof o.name !== "string" || o.name === "") throw new ValidationError("loras", `${f}.name must be the name of a LoRA (GET /v1/loras lists them)`);
    const spec: LoraSpec = { name: o.name };
    for (const k of ["weight", "teWeight", "unetWeight"] as const) if (o[k] !== undefined && o[k] !== null) spec[k] = finite(o[k], `${f}.${k}`);
    return spec;
  });
}

/**
 * The LoRA fields of a request, checked: every name (tags in `prompt`, the native `loras` field) must be in the
 * server's LoRA folders, weights must be numbers.
 *
 * @example parseLoraFields(body, prompt, folders, { native: true }) // { loras: [...], loraDirs, embeddingDirs, promptSyntax: "a1111" }
 */
export function parseLoraFields(body: Fields, prompt: string, folders: PromptFolders, opts: { native: boolean }): LoraRequestFields {
  const dirs = folders.loraDirs;
  let promptSyntax: PromptSyntax | undefined;
  let loras: LoraSpec[] | undefined;
  if (opts.native) {
    const key = body.promptSyntax !== undefined ? "promptSyntax" : "prompt_syntax";
    const v = body[key];
    if (v !== undefined && v !== null && v !== "") {
      if (!PROMPT_SYNTAXES.includes(v as PromptSyntax))
        throw new ValidationError(key, `${key} must be one of ${PROMPT_SYNTAXES.join(", ")} (got ${JSON.stringify(v)})`);
      promptSyntax = v as PromptSyntax;
    }
    if (body.loras !== undefined && body.loras !== null) loras = nativeLoras(body.loras);
  }
  let tags: string[] = [];
  if (promptSyntax !== "none") {
    try {
      tags = extractLoraTags(prompt).loras.map((t) => t.name);
    } catch (e) {
      throw new ValidationError("prompt", (e as Error).message);
    }
  }
  if (tags.length + (loras?.length ?? 0) > MAX_LORAS_PER_REQUEST) throw new ValidationError("prompt", `at most ${MAX_LORAS_PER_REQUEST} LoRAs per request`);
  if (tags.length || loras?.length) {
    const entries = listLoras(dirs);
    const check = (name: string, field: string) => {
      try {
        findLora(name, entries);
      } catch (e) {
        if (e instanceof ReimagineError) throw new ValidationError(field, `${e.message}; GET /sdapi/v1/loras lists them`, "unknown_lora");
        throw e;
      }
    };
    for (const t of tags) check(t, "prompt");
    for (const l of loras ?? []) check(l.name!, "loras");
  }
  return { loras, ...folders, promptSyntax };
}
