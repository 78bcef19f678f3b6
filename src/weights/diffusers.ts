// Weights of one diffusers component folder (unet/, vae/, text_encoder/ ...): single file, sharded
// index, or variant (fp16, ema ...). Ref: diffusers `_add_variant` / `_fetch_index_file` and transformers
// `SAFE_WEIGHTS_NAME` / `SAFE_WEIGHTS_INDEX_NAME`. Pickle checkpoints (.bin/.ckpt) are refused.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { ReimagineError } from "../errors.js";
import { parsePythonJson } from "./pyjson.js";
import { SafetensorsFile } from "./safetensors.js";
import { resolveTextLink } from "./text-link.js";
import type { TensorInfo, WeightSource } from "./source.js";

/** Weight file stems: diffusers models, then transformers models (text encoders). */
const STEMS = ["diffusion_pytorch_model", "model"] as const;
const PICKLE = /\.(bin|ckpt|pt|pth|pkl)$/;
const SHARD = /-\d{5}-of-\d{5}$/; // "model.fp16-00001-of-00002" is a shard, not a variant named "fp16-00001..."

/**
 * The union of several sources, e.g. the shards of one sharded checkpoint. A key offered by two
 * sources is an error (a sharded checkpoint stores each tensor once).
 *
 * @example
 *   const w = new MultiSource([SafetensorsFile.open(a), SafetensorsFile.open(b)], "unet/");
 */
export class MultiSource implements WeightSource {
  readonly description: string;
  private readonly owner = new Map<string, WeightSource>();

  constructor(
    readonly sources: WeightSource[],
    description: string,
  ) {
    this.description = description;
    for (const s of sources) {
      for (const k of s.keys()) {
        const prev = this.owner.get(k);
        if (prev)
          throw new ReimagineError(
            `${description}: tensor '${k}' is stored twice (in ${prev.description} and ${s.description}); the checkpoint is inconsistent, re-download it`,
            "corrupt_weights",
          );
        this.owner.set(k, s);
      }
    }
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }

  info(key: string): TensorInfo | undefined {
    return this.owner.get(key)?.info(key);
  }

  read(key: string, shape: readonly number[]): Float32Array {
    const s = this.owner.get(key);
    if (!s)
      throw new ReimagineError(
        `${this.description}: no tensor named '${key}'; the weights do not match the model (wrong component or architecture?)`,
        "weights",
      );
    return s.read(key, shape);
  }

  fingerprint(): string {
    const h = createHash("sha256");
    for (const s of this.sources) h.update(s.fingerprint()).update("\0");
    return h.digest("hex");
  }

  /** Closes every source that can be closed (file handles). */
  close(): void {
    for (const s of this.sources) (s as { close?: () => void }).close?.();
  }
}

/**
 * Parses a JSON file (config.json, model_index.json, an index) as Python's json module does (bare
 * NaN / Infinity / -Infinity allowed: diffusers writes them); `what` names it in errors.
 * Requires a JSON object, which every diffusers/transformers config is.
 *
 * @example
 *   const cfg = readJson<{ in_channels: number }>("unet/config.json", "UNet config");
 */
export function readJson<T = Record<string, unknown>>(path: string, what: string): T {
  let text: string;
  try {
    text = readFileSync(resolveTextLink(path), "utf8");
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
    throw new ReimagineError(
      missing
        ? `${what} not found: ${path}; the model folder is incomplete, download it again (it needs every file listed by the repository)`
        : `${what} at ${path} cannot be read (${(e as Error).message}); check its permissions`,
      missing ? "not_found" : "invalid_input",
      { cause: e },
    );
  }
  let value: unknown;
  try {
    value = parsePythonJson(text);
  } catch (e) {
    throw new ReimagineError(
      `${what} at ${path} is not valid JSON (${(e as Error).message}): fix the file, or download it again if it came from a model repository`,
      "invalid_input",
      { cause: e },
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ReimagineError(
      `${what} at ${path} is not a JSON object (a config is {...}): fix the file, or download it again if it came from a model repository`,
    );
  }
  return value as T;
}

/** Which file(s) hold a component's weights. */
type Resolved = { kind: "single" | "index"; file: string };

/**
 * Opens the weights of a diffusers component folder. Resolution, per stem
 * (`diffusion_pytorch_model` for diffusers models, `model` for transformers ones):
 *  - with `variant` (e.g. "fp16"): `<stem>.safetensors.index.<variant>.json` (the name diffusers and
 *    transformers write), the legacy `<stem>.<variant>.safetensors.index.json`, then
 *    `<stem>.<variant>.safetensors`; when none exists, fall back to the non-variant files below.
 *  - without: `<stem>.safetensors.index.json` (an index wins, as in diffusers), then `<stem>.safetensors`.
 *    When only ONE variant is present (an fp16-only download), it is used: that is what the user
 *    has, and every tensor converts to float32 anyway. Several variants and no choice -> error.
 *
 * @example
 *   const unet = openComponentWeights("models/sd15/unet", { variant: "fp16" });
 */
export function openComponentWeights(componentDir: string, opts: { variant?: string } = {}): WeightSource {
  const component = basename(componentDir.replace(/[\\/]+$/, "")) || componentDir;
  let files: string[];
  try {
    if (!statSync(componentDir).isDirectory()) throw new Error("not a folder");
    files = readdirSync(componentDir);
  } catch (e) {
    throw new ReimagineError(
      `component '${component}': folder ${componentDir} does not exist or is not a folder; the model download is incomplete, download it again`,
      "not_found",
      { cause: e },
    );
  }
  if (files.length === 0)
    throw new ReimagineError(`component '${component}': folder ${componentDir} is empty; the model download is incomplete, download it again`, "not_found");

  const resolved = resolve(componentDir, component, new Set(files), opts.variant);
  const path = join(componentDir, resolved.file);
  return resolved.kind === "single" ? SafetensorsFile.open(resolveTextLink(path)) : openIndex(componentDir, path);
}

function resolve(dir: string, component: string, files: Set<string>, variant: string | undefined): Resolved {
  const pick = (v: string | undefined): Resolved | undefined => {
    for (const stem of STEMS) {
      const candidates: Resolved[] = v
        ? [
            { kind: "index", file: `${stem}.safetensors.index.${v}.json` },
            { kind: "index", file: `${stem}.${v}.safetensors.index.json` },
            { kind: "single", file: `${stem}.${v}.safetensors` },
          ]
        : [
            { kind: "index", file: `${stem}.safetensors.index.json` },
            { kind: "single", file: `${stem}.safetensors` },
          ];
      const hit = candidates.find((c) => files.has(c.file));
      if (hit) return hit;
    }
    return undefined;
  };

  const chosen = (variant !== undefined && pick(variant)) || pick(undefined);
  if (chosen) return chosen;

  const variants = findVariants(files);
  if (variant !== undefined && variants.length > 0) {
    throw new ReimagineError(
      `component '${component}': ${dir} has no '${variant}' variant and no plain weights (variants present: ${variants.join(", ")}); choose one of those with the variant option`,
      "not_found",
    );
  }
  if (variants.length === 1) return pick(variants[0])!;
  if (variants.length > 1) {
    throw new ReimagineError(
      `component '${component}': ${dir} holds several weight variants (${variants.join(", ")}) and no plain weights; choose one with the variant option (e.g. --variant ${variants[0]})`,
    );
  }
  const pickles = [...files].filter((f) => PICKLE.test(f));
  if (pickles.length > 0) {
    throw new ReimagineError(
      `component '${component}': ${dir} only has pickle weights (${pickles.join(", ")}), which are refused because loading them can execute code; ` +
        `download the .safetensors files of the model instead, or convert once in Python with diffusers: ` +
        `DiffusionPipeline.from_pretrained(path).save_pretrained(out, safe_serialization=True)`,
      "unsafe_weights",
    );
  }
  throw new ReimagineError(
    `component '${component}': no weights in ${dir} (expected ${STEMS.map((s) => `${s}.safetensors`).join(" or ")}, found ${[...files].join(", ")}); the download is incomplete, download it again`,
    "not_found",
  );
}

/** Variant names present in a folder (single files and indexes), shards excluded. */
function findVariants(files: Set<string>): string[] {
  const found = new Set<string>();
  for (const stem of STEMS) {
    const e = stem.replace(/\./g, "\\.");
    const patterns = [
      new RegExp(`^${e}\\.([^.]+)\\.safetensors$`),
      new RegExp(`^${e}\\.safetensors\\.index\\.([^.]+)\\.json$`),
      new RegExp(`^${e}\\.([^.]+)\\.safetensors\\.index\\.json$`),
    ];
    for (const f of files) {
      for (const re of patterns) {
        const m = re.exec(f);
        if (m && !SHARD.test(m[1])) found.add(m[1]);
      }
    }
  }
  return [...found].sort();
}

/** A sharded checkpoint: `weight_map` key -> shard file; each shard is opened once. */
function openIndex(dir: string, indexPath: string): MultiSource {
  const index = readJson<{ weight_map?: unknown }>(indexPath, "sharded weights index");
  const map = index.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) {
    throw new ReimagineError(`${indexPath}: sharded weights index has no "weight_map" object; the file is corrupt, download it again`, "corrupt_weights");
  }
  const byShard = new Map<string, string[]>();
  for (const [key, shard] of Object.entries(map)) {
    // A shard must be a plain file name in this folder: never follow paths out of it.
    if (typeof shard !== "string" || shard === "" || /[\\/]/.test(shard) || shard === "." || shard === ".." || !shard.endsWith(".safetensors")) {
      throw new ReimagineError(
        `${indexPath}: weight_map entry '${key}' names an invalid shard ${JSON.stringify(shard)} (must be a .safetensors file in the same folder); the index is corrupt, download it again`,
        "corrupt_weights",
      );
    }
    if (!byShard.has(shard)) byShard.set(shard, []);
    byShard.get(shard)!.push(key);
  }
  if (byShard.size === 0)
    throw new ReimagineError(`${indexPath}: sharded weights index lists no tensors; the file is corrupt, download it again`, "corrupt_weights");

  const opened: SafetensorsFile[] = [];
  try {
    for (const [shard, keys] of byShard) {
      const shardPath = join(dir, shard);
      if (!existsSync(shardPath))
        throw new ReimagineError(`${indexPath}: shard ${shard} is missing from ${dir}; the download is incomplete, download it again`, "not_found");
      const f = SafetensorsFile.open(resolveTextLink(shardPath));
      opened.push(f);
      const absent = keys.find((k) => f.info(k) === undefined);
      if (absent !== undefined)
        throw new ReimagineError(
          `${indexPath}: index puts tensor '${absent}' in ${shard}, but that shard does not hold it; index and shards come from different downloads, download them again`,
          "corrupt_weights",
        );
    }
    return new MultiSource(opened, dir);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}
