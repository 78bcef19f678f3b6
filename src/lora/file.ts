// LoRA files: kohya-ss / AUTOMATIC1111 (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*` with
// `.lora_down/.lora_up/.alpha`, LoCon convs, CP-decomposed `.lora_mid`) and diffusers / PEFT (`unet.*`,
// `text_encoder.*`, `text_encoder_2.*` with `.lora_A/.lora_B`, rank/alpha in the `lora_adapter_metadata` header),
// read into down/up matrices and a per-module scale alpha / rank.
// Ref: kohya-ss sd-scripts networks/lora.py, AUTOMATIC1111 extensions-builtin/Lora (network_lora.py, lyco_helpers.py),
// diffusers loaders/lora_pipeline.py + lora_conversion_utils.py, PEFT tuners/lora (scaling = lora_alpha / r).
import { ReimagineError } from "../errors.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { TensorInfo } from "../weights/source.js";

/** The model component a LoRA module belongs to (diffusers `model_index.json` names). */
export type LoraComponent = "unet" | "text_encoder" | "text_encoder_2";
export const LORA_COMPONENTS: readonly LoraComponent[] = ["unet", "text_encoder", "text_encoder_2"];

/** One module of a LoRA file. */
export interface LoraModuleWeights {
  /** The module's key in the file without its role suffix (e.g. `lora_unet_down_blocks_0_attentions_0_proj_in`). */
  key: string;
  component: LoraComponent;
  /** Module path after the component prefix: dotted diffusers names, or kohya's `_`-joined ones (`dotted` false). */
  path: string;
  dotted: boolean;
  /** lora_down / lora_A, [rank, in] or [rank, in, kh, kw] (a CP `lora_mid` already folded in). */
  down: Float32Array;
  downShape: number[];
  /** lora_up / lora_B, [out, rank] or [out, rank, 1, 1]. */
  up: Float32Array;
  upShape: number[];
  /** alpha / rank: kohya's `.alpha` tensor, diffusers' lora_alpha / r (patterns first); 1 when the file has none. */
  scale: number;
}

export interface LoraFile {
  /** File path (errors) and name (A1111: the file name without extension). */
  path: string;
  name: string;
  format: "kohya" | "diffusers";
  modules: LoraModuleWeights[];
  /** safetensors `__metadata__`. */
  metadata: Record<string, string>;
  /** Keys recognised but not applied (textual-inversion embeddings bundled in the file), with the reason. */
  ignored: { key: string; why: string }[];
  /** Identity of the file's content (header hash and size). */
  fingerprint: string;
}

/** What the reader needs from a tensor file (SafetensorsFile and MemoryWeights have it). */
export interface LoraTensorSource {
  readonly description: string;
  keys(): string[];
  info(key: string): TensorInfo | undefined;
  read(key: string, shape?: readonly number[]): Float32Array;
  fingerprint(): string;
  metadata?: Record<string, string>;
}

const KOHYA_PREFIX: Record<string, LoraComponent> = { lora_unet: "unet", lora_te1: "text_encoder", lora_te2: "text_encoder_2", lora_te: "text_encoder" };
const KOHYA = /^(lora_unet|lora_te1|lora_te2|lora_te)_(.+?)\.(lora_down\.weight|lora_up\.weight|lora_mid\.weight|alpha|[a-z_]+(?:\.weight)?|[a-z_0-9]+)$/;
const DIFFUSERS =
  /^(unet|text_encoder|text_encoder_2)\.(.+)\.(lora_A\.weight|lora_B\.weight|lora\.down\.weight|lora\.up\.weight|lora_linear_layer\.down\.weight|lora_linear_layer\.up\.weight|alpha|lora_magnitude_vector(?:\.weight)?|lora_B\.bias)$/;
/** diffusers' old attention-processor layout: `...attn1.processor.to_q_lora.down.weight`. */
const ATTN_PROC = /^(unet|text_encoder|text_encoder_2)\.(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;

const ROLE: Record<string, "down" | "up" | "mid" | "alpha"> = {
  "lora_down.weight": "down",
  "lora_up.weight": "up",
  "lora_mid.weight": "mid",
  alpha: "alpha",
  "lora_A.weight": "down",
  "lora_B.weight": "up",
  "lora.down.weight": "down",
  "lora.up.weight": "up",
  "lora_linear_layer.down.weight": "down",
  "lora_linear_layer.up.weight": "up",
};

/** Suffixes of LoRA variants this engine does not apply, with what to tell the user. */
function unsupportedKind(suffix: string): string | undefined {
  if (suffix.startsWith("hada_")) return "LyCORIS LoHa (hada_*)";
  if (suffix.startsWith("lokr_")) return "LyCORIS LoKr (lokr_*)";
  if (suffix === "dora_scale" || suffix.startsWith("lora_magnitude_vector")) return "DoRA (weight-decomposed LoRA)";
  if (suffix === "diff" || suffix === "diff_b" || suffix === "bias" || suffix === "lora_B.bias") return "full/bias weight differences";
  return undefined;
}

interface Parts {
  key: string;
  component: LoraComponent;
  path: string;
  dotted: boolean;
  tensors: Partial<Record<"down" | "up" | "mid" | "alpha", string>>;
}

/**
 * Reads a LoRA `.safetensors` file (pickle `.pt/.ckpt/.bin` files are refused). Throws a ReimagineError naming the
 * file for a corrupt file, an unsupported LoRA variant, keys that are not LoRA weights, or inconsistent shapes.
 *
 * @example
 *   const lora = readLoraFile("loras/watercolor.safetensors");
 *   lora.modules[0]; // { component: "unet", path: "down_blocks_0_attentions_0_proj_in", dotted: false, scale: 0.75, ... }
 */
export function readLoraFile(path: string): LoraFile {
  if (/\.(pt|pth|ckpt|bin|pkl)$/i.test(path)) {
    throw new ReimagineError(`${path}: pickle LoRA files can run code when loaded and are refused; use the .safetensors version of this LoRA`, "unsafe_format");
  }
  const file = SafetensorsFile.open(path);
  try {
    return parseLora(file, path);
  } finally {
    file.close();
  }
}

/** Parses LoRA tensors from any tensor source (readLoraFile's core; tests use in-memory sources). */
export function parseLora(src: LoraTensorSource, path = src.description): LoraFile {
  const fail = (what: string, code = "bad_lora") => new ReimagineError(`LoRA ${path}: ${what}`, code);
  const metadata = src.metadata ?? {};
  const modules = new Map<string, Parts>();
  const ignored: { key: string; why: string }[] = [];
  const unknown: string[] = [];
  let format: "kohya" | "diffusers" | undefined;
  const part = (key: string, component: LoraComponent, p: string, dotted: boolean) => {
    const m = modules.get(key) ?? { key, component, path: p, dotted, tensors: {} };
    modules.set(key, m);
    return m;
  };
  for (const full of src.keys()) {
    const k = full.startsWith("base_model.model.") ? full.slice("base_model.model.".length) : full;
    if (k.startsWith("bundle_emb.")) {
      ignored.push({ key: full, why: "textual-inversion embedding bundled in the LoRA file (not applied)" });
      continue;
    }
    let m = ATTN_PROC.exec(k);
    if (m) {
      const p = `${m[2]}.${m[3] === "to_out" ? "to_out.0" : m[3]}`;
      part(`${m[1]}.${p}`, m[1] as LoraComponent, p, true).tensors[m[4] as "down" | "up"] = full;
      format ??= "diffusers";
      continue;
    }
    m = DIFFUSERS.exec(k) ?? KOHYA.exec(k);
    if (!m) {
      unknown.push(full);
      continue;
    }
    const kohya = m[1].startsWith("lora_");
    const bad = unsupportedKind(m[3]);
    if (bad) throw fail(`it is a ${bad} file ('${full}'), which Reimagine cannot apply; use a plain LoRA or LoCon`, "unsupported");
    const role = ROLE[m[3]];
    if (!role) {
      unknown.push(full);
      continue;
    }
    const component = kohya ? KOHYA_PREFIX[m[1]] : (m[1] as LoraComponent);
    const key = kohya ? `${m[1]}_${m[2]}` : `${m[1]}.${m[2]}`;
    const entry = part(key, component, m[2], !kohya);
    if (entry.tensors[role]) throw fail(`two tensors give module '${key}' its ${role} weight ('${entry.tensors[role]}', '${full}'); the file mixes formats`);
    entry.tensors[role] = full;
    format ??= kohya ? "kohya" : "diffusers";
  }
  if (unknown.length) {
    throw fail(
      `${unknown.length} tensor(s) are not LoRA weights (e.g. ${unknown
        .slice(0, 3)
        .map((k) => `'${k}'`)
        .join(", ")}); ` +
        "expected kohya keys (lora_unet_*/lora_te*_* with .lora_down/.lora_up/.alpha) or diffusers keys (unet.*/text_encoder*.* with .lora_A/.lora_B)",
    );
  }
  if (modules.size === 0) throw fail("no LoRA weights in the file");
  const patterns = adapterPatterns(metadata, fail);
  const out: LoraModuleWeights[] = [];
  for (const p of modules.values()) out.push(loadModule(src, p, patterns, fail));
  return { path, name: fileStem(path), format: format!, modules: out, metadata, ignored, fingerprint: src.fingerprint() };
}

/** diffusers/PEFT `lora_adapter_metadata` per component: r, lora_alpha and their per-module patterns. */
type AdapterConfig = { r?: number; alpha?: number; rankPattern: Record<string, number>; alphaPattern: Record<string, number> };

function adapterPatterns(metadata: Record<string, string>, fail: (w: string) => ReimagineError): Partial<Record<LoraComponent, AdapterConfig>> {
  const raw = metadata.lora_adapter_metadata;
  if (raw === undefined) return {};
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(raw);
  } catch {
    throw fail("its lora_adapter_metadata header entry is not valid JSON; the file is corrupt");
  }
  const out: Partial<Record<LoraComponent, AdapterConfig>> = {};
  for (const c of LORA_COMPONENTS) {
    const get = (k: string) => json[`${c}.${k}`];
    const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
    const rec = (v: unknown) => (v && typeof v === "object" ? (v as Record<string, number>) : {});
    if (get("r") === undefined && get("lora_alpha") === undefined) continue;
    out[c] = { r: num(get("r")), alpha: num(get("lora_alpha")), rankPattern: rec(get("rank_pattern")), alphaPattern: rec(get("alpha_pattern")) };
  }
  return out;
}

/** PEFT get_pattern_key: the first pattern p with `(.*\.)?(p)$` matching the module path. */
function patternValue(pattern: Record<string, number>, module: string): number | undefined {
  for (const [p, v] of Object.entries(pattern)) {
    try {
      if (new RegExp(`^(.*\\.)?(${p})$`).test(module)) return v;
    } catch {
      if (module === p || module.endsWith(`.${p}`)) return v;
    }
  }
  return undefined;
}

function loadModule(
  src: LoraTensorSource,
  p: Parts,
  patterns: Partial<Record<LoraComponent, AdapterConfig>>,
  fail: (w: string) => ReimagineError,
): LoraModuleWeights {
  const { down: dk, up: uk, mid: mk, alpha: ak } = p.tensors;
  if (!dk || !uk) throw fail(`module '${p.key}' has ${dk ? "no up (lora_up/lora_B)" : "no down (lora_down/lora_A)"} weight; the file is incomplete or corrupt`);
  const read = (key: string) => {
    const shape = src.info(key)!.shape;
    const data = src.read(key, shape);
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw fail(`tensor '${key}' contains NaN or infinite values; the file is corrupt`);
    return { data, shape };
  };
  let down = read(dk);
  const up = read(uk);
  const rank = down.shape[0];
  const okDown = down.shape.length === 2 || down.shape.length === 4;
  const okUp = (up.shape.length === 2 || (up.shape.length === 4 && up.shape[2] === 1 && up.shape[3] === 1)) && up.shape[1] === rank;
  if (!okDown || !okUp || rank < 1) {
    throw fail(`module '${p.key}': down [${down.shape}] and up [${up.shape}] do not form a LoRA (expected [r, in(, k, k)] and [out, r(, 1, 1)])`);
  }
  if (mk) down = foldMid(read(mk), down, p.key, fail);
  let scale = 1; // kohya/A1111 without alpha; diffusers files without metadata are treated the same
  const cfg = patterns[p.component];
  if (ak) {
    const a = read(ak).data;
    if (a.length !== 1) throw fail(`module '${p.key}': alpha has ${a.length} values, expected one`);
    scale = a[0] / rank;
  } else if (cfg && p.dotted) {
    const r = patternValue(cfg.rankPattern, p.path) ?? cfg.r ?? rank;
    const alpha = patternValue(cfg.alphaPattern, p.path) ?? cfg.alpha ?? r;
    scale = alpha / r;
  }
  return { key: p.key, component: p.component, path: p.path, dotted: p.dotted, down: down.data, downShape: down.shape, up: up.data, upShape: up.shape, scale };
}

/**
 * LyCORIS CP decomposition (`lora_mid` [r, r, kh, kw] between a 1x1 down [r, in, 1, 1] and up): the 1x1 down followed
 * by the kxk mid is one kxk conv with kernel mid[o, j] * down[j, i] summed over j.
 */
function foldMid(
  mid: { data: Float32Array; shape: number[] },
  down: { data: Float32Array; shape: number[] },
  key: string,
  fail: (w: string) => ReimagineError,
) {
  const [r, r2, kh, kw] = mid.shape;
  const inF = down.shape[1];
  if (mid.shape.length !== 4 || r2 !== down.shape[0] || down.shape.slice(2).some((d) => d !== 1)) {
    throw fail(`module '${key}': lora_mid [${mid.shape}] does not fit lora_down [${down.shape}]`);
  }
  const out = new Float32Array(r * inF * kh * kw); // [r, in, kh, kw]
  for (let o = 0; o < r; o++)
    for (let i = 0; i < inF; i++)
      for (let t = 0; t < kh * kw; t++) {
        let s = 0;
        for (let j = 0; j < r2; j++) s += mid.data[(o * r2 + j) * kh * kw + t] * down.data[j * inF + i];
        out[(o * inF + i) * kh * kw + t] = s;
      }
  return { data: out, shape: [r, inF, kh, kw] };
}

function fileStem(path: string): string {
  const base = path.split(/[\\/]/).pop() ?? path;
  return base.replace(/\.safetensors$/i, "");
}
