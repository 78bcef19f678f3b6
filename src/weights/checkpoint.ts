// Single-file (original LDM / CompVis, as A1111, ComfyUI and civitai ship them) `.safetensors`
// checkpoints: architecture detection from tensor shapes, LDM -> diffusers key conversion on read, shipped configs.
// Ref: diffusers loaders/single_file_utils.py (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
// convert_ldm_clip_checkpoint, convert_open_clip_checkpoint, infer_diffusers_model_type); stable-diffusion.cpp version detection.
import { readFileSync } from "node:fs";
import { ReimagineError } from "../errors.js";
import { SafetensorsFile } from "./safetensors.js";
import type { TensorInfo, WeightSource } from "./source.js";

export type ModelFamily = "sd1" | "sd2" | "sd2-v" | "sdxl" | "sdxl-refiner" | "unknown";
export type PredictionType = "epsilon" | "v_prediction";

export interface SingleFileConfigs {
  unet: object;
  vae: object;
  /** Absent for the SDXL refiner (text_encoder_2 only). */
  text_encoder?: object;
  /** SDXL's second text encoder (CLIPTextModelWithProjection). */
  text_encoder_2?: object;
  scheduler: object;
  /** model_index.json: the pipeline class and its settings (SDXL's force_zeros_for_empty_prompt, ...). */
  model_index?: object;
  tokenizer?: object;
}

export interface SingleFileModel {
  family: ModelFamily;
  unet: WeightSource;
  vae: WeightSource;
  /** Absent for the SDXL refiner. */
  textEncoder?: WeightSource;
  /** SDXL's second (OpenCLIP bigG, with projection) text encoder. */
  textEncoder2?: WeightSource;
  /** Explicit configs, else the shipped ones for the detected family. */
  configs: SingleFileConfigs | undefined;
  /** One line for logs: file, family and how the prediction type was decided. */
  description: string;
  /** Closes the underlying file; the sources cannot be read afterwards. */
  close(): void;
}

/** What the converter needs from a tensor file (SafetensorsFile satisfies it). */
export type TensorFile = Pick<SafetensorsFile, "description" | "keys" | "info" | "read" | "fingerprint"> & {
  metadata?: Record<string, string>;
};

const UNET = "model.diffusion_model.";
const VAE = "first_stage_model.";
const CLIP_SD = "cond_stage_model.transformer."; // SD 1.x: HF CLIPTextModel names
const OPENCLIP_SD = "cond_stage_model.model."; // SD 2.x: OpenCLIP ViT-H names
const CLIP_XL = "conditioner.embedders.0.transformer.";
const OPENCLIP_XL = "conditioner.embedders.1.model.";
const OPENCLIP_XL_REFINER = "conditioner.embedders.0.model."; // the refiner conditions on OpenCLIP-bigG alone
const CONVERTER_VERSION = "1";
const PICKLE = /\.(ckpt|pt|pth|bin|pkl)$/i;

// ---------------------------------------------------------------------------------------------
// Detection

const startsWith = (keys: string[], p: string) => keys.some((k) => k.startsWith(p));

/**
 * The architecture, from tensor names and shapes only (cross-attention context width: 768 SD1,
 * 1024 SD2, 2048 SDXL; text encoder layout; UNet in_channels 4, or 9 for inpainting). SD 2.x 512/epsilon and 768/v
 * weights are indistinguishable: this returns "sd2" for both (openSingleFile decides).
 *
 * @example
 *   const f = SafetensorsFile.open("v1-5-pruned-emaonly.safetensors");
 *   detectFamily(f); // "sd1"
 */
export function detectFamily(file: TensorFile): ModelFamily {
  return inspect(file).family;
}

/**
 * What a file that is not a full checkpoint holds (a LoRA, a ControlNet, a VAE, an embedding), with the way
 * to use it; undefined when it looks like a checkpoint.
 */
export function notACheckpoint(keys: string[]): string | undefined {
  const any = (re: RegExp) => keys.some((k) => re.test(k));
  if (any(/^lora_(unet|te\d?)_|\.lora_(down|up)\.weight$|\.lora_[AB]\.weight$|\.lora\.(down|up)\.weight$/)) {
    return "is a LoRA, not a full model: pass it with --lora FILE[:WEIGHT] (or <lora:NAME:WEIGHT> in the prompt) on top of a base --model";
  }
  if (any(/^control_model\.|^controlnet_cond_embedding\.|^input_hint_block\./)) {
    return "is a ControlNet, not a full model: pass it with --controlnet FILE on top of a base --model";
  }
  if (any(/^(string_to_param|emb_params|clip_[lg])$|^string_to_param\./)) {
    return "is a textual-inversion embedding, not a model: put it in the embeddings folder and name it in the prompt";
  }
  if (!any(/^model\.diffusion_model\./) && any(/^(first_stage_model\.)?(encoder\.down|decoder\.up|decoder\.conv_in|encoder\.layers|decoder\.layers)/)) {
    return "holds only a VAE, not a full model: use it as --tiny-vae if it is a TAESD, or pick a full checkpoint for --model";
  }
  return undefined;
}

/** UNet input channels a single file may have: 4 (txt2img/img2img) or 9 (inpainting: latents + mask + masked-image latents). */
const UNET_IN_CHANNELS = [4, 9];

/** The UNet's input channels from `input_blocks.0.0.weight` [C0, in_channels, 3, 3], when the file has one. */
export function unetInChannels(file: TensorFile): number | undefined {
  return file.info(`${UNET}input_blocks.0.0.weight`)?.shape[1];
}

function inspect(file: TensorFile): { family: ModelFamily; why: string } {
  const keys = file.keys();
  const conv = file.info(`${UNET}input_blocks.0.0.weight`);
  if (!conv) return { family: "unknown", why: `no UNet tensor '${UNET}input_blocks.0.0.weight'` };
  if (!UNET_IN_CHANNELS.includes(conv.shape[1])) {
    return {
      family: "unknown",
      why: `UNet takes ${conv.shape[1]} input channels (4 for txt2img/img2img models, 9 for inpainting; 8 is instruct-pix2pix, which Reimagine does not run)`,
    };
  }
  const k = keys.find((x) => x.startsWith(UNET) && x.endsWith(".attn2.to_k.weight"));
  const ctx = k ? file.info(k)!.shape[1] : undefined; // [inner, context_dim]
  const width = (key: string) => file.info(key)?.shape[1]; // token embedding [vocab, hidden]
  const clip = width(`${CLIP_SD}text_model.embeddings.token_embedding.weight`) ?? width(`${CLIP_SD}embeddings.token_embedding.weight`);
  const open = width(`${OPENCLIP_SD}token_embedding.weight`);
  if (startsWith(keys, OPENCLIP_XL) && startsWith(keys, CLIP_XL) && ctx === 2048) return { family: "sdxl", why: "context 2048, CLIP-L + OpenCLIP-G" };
  if (startsWith(keys, OPENCLIP_XL_REFINER) && ctx === 1280) return { family: "sdxl-refiner", why: "context 1280, OpenCLIP-G alone (SDXL refiner)" };
  if (ctx === 1024 && open === 1024) return { family: "sd2", why: "context 1024, OpenCLIP-H text encoder" };
  if (ctx === 768 && clip === 768) return { family: "sd1", why: "context 768, CLIP-L text encoder" };
  return { family: "unknown", why: `cross-attention context ${ctx ?? "none"}, text encoder width ${clip ?? open ?? "none"} match no known model` };
}

// ---------------------------------------------------------------------------------------------
// Key conversion. Each LDM key maps to zero (ignored), one or three (in_proj split) diffusers keys.

type Transform = "copy" | "squeeze" | "q" | "k" | "v" | "transpose";
interface Mapped {
  ldm: string;
  t: Transform;
}
export type SingleFileComponent = "unet" | "vae" | "textEncoder" | "textEncoder2";
type Component = SingleFileComponent;
type Target = { c: Component; key: string; t: Transform };
const IGNORED: Target[] = [];

interface Plan {
  lpb: number; // UNet layers_per_block
  vaeLevels: number; // VAE decoder levels (decoder.up.L counts from the bottom)
  teLayers: number; // text encoder layers kept (SD2 uses the penultimate of 24)
  te2Layers: number;
  labelEmb: "add_embedding" | "class_embedding" | undefined;
}

const RESNET: Record<string, string> = {
  "in_layers.0": "norm1",
  "in_layers.2": "conv1",
  "out_layers.0": "norm2",
  "out_layers.3": "conv2",
  "emb_layers.1": "time_emb_proj",
  skip_connection: "conv_shortcut",
};
/** The inverse: a diffusers ResnetBlock2D's sub-module -> its LDM (single-file) name (LoRA keys and tests name LDM modules). */
export const RESNET_TO_LDM: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(RESNET).map(([ldm, d]) => [d, ldm]));
const UNET_FIXED: Record<string, string> = {
  "time_embed.0": "time_embedding.linear_1",
  "time_embed.2": "time_embedding.linear_2",
  "input_blocks.0.0": "conv_in",
  "out.0": "conv_norm_out",
  "out.2": "conv_out",
};
const ATTN_SUB =
  /^(norm|proj_in|proj_out|transformer_blocks\.\d+\.(norm[123]|attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2))\.(weight|bias)$/;
const PARAM = /^(.+)\.(weight|bias)$/;

function unetResnet(sub: string): string | undefined {
  const m = PARAM.exec(sub);
  return m && RESNET[m[1]] ? `${RESNET[m[1]]}.${m[2]}` : undefined;
}

const suffix = (prefix: string, sub: string | undefined) => (sub === undefined ? undefined : `${prefix}.${sub}`);

/** UNet: input_blocks.N.M / middle_block.N / output_blocks.N.M -> down/mid/up blocks. */
function mapUnet(rest: string, plan: Plan): string | undefined {
  const p = PARAM.exec(rest);
  if (p && UNET_FIXED[p[1]]) return `${UNET_FIXED[p[1]]}.${p[2]}`;
  const n = plan.lpb + 1; // input blocks per level (resnets + downsampler), output blocks per level
  let m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(rest);
  if (m && +m[1] > 0) {
    const i = +m[1] - 1,
      level = Math.floor(i / n),
      j = i % n,
      sub = m[3];
    if (m[2] === "0" && /^op\.(weight|bias)$/.test(sub)) return `down_blocks.${level}.downsamplers.0.conv.${sub.slice(3)}`;
    if (m[2] === "0") return suffix(`down_blocks.${level}.resnets.${j}`, unetResnet(sub));
    if (m[2] === "1" && ATTN_SUB.test(sub)) return `down_blocks.${level}.attentions.${j}.${sub}`;
    return undefined;
  }
  m = /^middle_block\.([012])\.(.+)$/.exec(rest);
  if (m) {
    if (m[1] === "1") return ATTN_SUB.test(m[2]) ? `mid_block.attentions.0.${m[2]}` : undefined;
    return suffix(`mid_block.resnets.${m[1] === "0" ? 0 : 1}`, unetResnet(m[2]));
  }
  m = /^output_blocks\.(\d+)\.([012])\.(.+)$/.exec(rest);
  if (m) {
    const level = Math.floor(+m[1] / n),
      j = +m[1] % n,
      sub = m[3];
    if (m[2] === "0") return suffix(`up_blocks.${level}.resnets.${j}`, unetResnet(sub));
    if (/^conv\.(weight|bias)$/.test(sub)) return `up_blocks.${level}.upsamplers.0.${sub}`; // at .1 (no attention) or .2
    if (m[2] === "1" && ATTN_SUB.test(sub)) return `up_blocks.${level}.attentions.${j}.${sub}`;
    return undefined;
  }
  m = /^label_emb\.0\.([02])\.(weight|bias)$/.exec(rest); // SDXL add_embedding (text_time) or class embedding
  if (m && plan.labelEmb) return `${plan.labelEmb}.linear_${m[1] === "0" ? 1 : 2}.${m[2]}`;
  return undefined;
}

/** One LDM UNet key (the part after `model.diffusion_model.`) -> its diffusers name, or undefined when the
 *  converter does not know it. Shared with the ControlNet converter (weights/controlnet-ldm.ts), whose trunk
 *  (`control_model.input_blocks` / `middle_block` / `time_embed` / `label_emb`) uses the UNet's LDM layout. */
export function ldmUnetKeyToDiffusers(rest: string, layersPerBlock: number, labelEmb?: "add_embedding" | "class_embedding"): string | undefined {
  return mapUnet(rest, { lpb: layersPerBlock, vaeLevels: 0, teLayers: 0, te2Layers: 0, labelEmb });
}

const VAE_FIXED = /^(encoder\.conv_in|encoder\.conv_out|decoder\.conv_in|decoder\.conv_out|quant_conv|post_quant_conv)\.(weight|bias)$/;
const VAE_RESNET = /^(norm1|norm2|conv1|conv2|nin_shortcut)\.(weight|bias)$/;
const VAE_ATTN: Record<string, string> = { norm: "group_norm", q: "to_q", k: "to_k", v: "to_v", proj_out: "to_out.0" };

/** VAE: encoder.down.I / decoder.up.L (L from the bottom) / mid.{block_1,attn_1,block_2}. */
function mapVae(rest: string, plan: Plan): { key: string; t: Transform } | undefined {
  const res = (prefix: string, sub: string) => {
    const m = VAE_RESNET.exec(sub);
    return m ? { key: `${prefix}.${m[1] === "nin_shortcut" ? "conv_shortcut" : m[1]}.${m[2]}`, t: "copy" as const } : undefined;
  };
  if (VAE_FIXED.test(rest)) return { key: rest, t: "copy" };
  let m = /^(encoder|decoder)\.norm_out\.(weight|bias)$/.exec(rest);
  if (m) return { key: `${m[1]}.conv_norm_out.${m[2]}`, t: "copy" };
  m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(rest);
  if (m) return res(`${m[1]}.mid_block.resnets.${+m[2] - 1}`, m[3]);
  m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(rest);
  if (m) {
    // LDM stores q/k/v/proj_out as 1x1 convs [C, C, 1, 1]; diffusers as Linear [C, C]
    const t = m[2] !== "norm" && m[3] === "weight" ? "squeeze" : "copy";
    return { key: `${m[1]}.mid_block.attentions.0.${VAE_ATTN[m[2]]}.${m[3]}`, t };
  }
  m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(rest);
  if (m) return res(`encoder.down_blocks.${m[1]}.resnets.${m[2]}`, m[3]);
  m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(rest);
  if (m) return { key: `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`, t: "copy" };
  m = /^decoder\.up\.(\d+)\.(block\.(\d+)\.(.+)|upsample\.conv\.(weight|bias))$/.exec(rest);
  if (m) {
    const level = plan.vaeLevels - 1 - +m[1]; // diffusers counts up_blocks from the top
    if (level < 0) return undefined;
    if (m[3] !== undefined) return res(`decoder.up_blocks.${level}.resnets.${m[3]}`, m[4]);
    return { key: `decoder.up_blocks.${level}.upsamplers.0.conv.${m[5]}`, t: "copy" };
  }
  return undefined;
}

const CLIP_KEY =
  /^text_model\.(embeddings\.(token|position)_embedding\.weight|final_layer_norm\.(weight|bias)|encoder\.layers\.(\d+)\.(self_attn\.(q|k|v|out)_proj|layer_norm[12]|mlp\.fc[12])\.(weight|bias))$/;

/** HF CLIPTextModel names (SD1, SDXL encoder 1): unchanged, older files lack the `text_model.` level. */
function mapClip(rest: string, layers: number): string | null | undefined {
  const key = /^(embeddings|encoder|final_layer_norm)\./.test(rest) ? `text_model.${rest}` : rest;
  if (key === "text_model.embeddings.position_ids") return null; // buffer, not a weight in transformers >= 4.31
  const m = CLIP_KEY.exec(key);
  if (!m) return undefined;
  return m[4] !== undefined && +m[4] >= layers ? null : key;
}

const OPENCLIP_LAYER: Record<string, string> = {
  ln_1: "layer_norm1",
  ln_2: "layer_norm2",
  "mlp.c_fc": "mlp.fc1",
  "mlp.c_proj": "mlp.fc2",
  "attn.out_proj": "self_attn.out_proj",
};

/** OpenCLIP names (SD2, SDXL encoder 2) -> CLIPTextModel(WithProjection) names; in_proj split into q/k/v. */
function mapOpenClip(rest: string, layers: number, c: Component, projection: boolean): Target[] | undefined {
  const one = (key: string, t: Transform = "copy"): Target[] => [{ c, key, t }];
  if (rest === "positional_embedding") return one("text_model.embeddings.position_embedding.weight");
  if (rest === "token_embedding.weight") return one("text_model.embeddings.token_embedding.weight");
  let m = /^ln_final\.(weight|bias)$/.exec(rest);
  if (m) return one(`text_model.final_layer_norm.${m[1]}`);
  if (rest === "text_projection") return projection ? one("text_projection.weight", "transpose") : IGNORED; // x @ P vs Linear
  if (rest === "logit_scale" || rest === "attn_mask" || rest.startsWith("visual.")) return IGNORED;
  m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(rest);
  if (!m) return undefined;
  if (+m[1] >= layers) return IGNORED; // SD2 conditions on the penultimate layer: diffusers drops resblock 23
  const prefix = `text_model.encoder.layers.${m[1]}`;
  const inProj = /^attn\.in_proj_(weight|bias)$/.exec(m[2]);
  if (inProj) return (["q", "k", "v"] as const).map((t) => ({ c, key: `${prefix}.self_attn.${t}_proj.${inProj[1]}`, t }));
  const p = PARAM.exec(m[2]);
  return p && OPENCLIP_LAYER[p[1]] ? one(`${prefix}.${OPENCLIP_LAYER[p[1]]}.${p[2]}`) : undefined;
}

/** Where one LDM key goes: targets, [] for ignored, undefined for a tensor the converter does not understand. */
function route(key: string, plan: Plan): Target[] | undefined {
  const wrap = (c: Component, key: string | null | undefined): Target[] | undefined =>
    key === undefined ? undefined : key === null ? IGNORED : [{ c, key, t: "copy" }];
  if (key.startsWith(UNET)) return wrap("unet", mapUnet(key.slice(UNET.length), plan));
  if (key.startsWith(VAE)) {
    const rest = key.slice(VAE.length);
    if (rest.startsWith("loss.")) return IGNORED; // training-only LPIPS / discriminator
    const m = mapVae(rest, plan);
    return m && [{ c: "vae", ...m }];
  }
  if (key.startsWith(CLIP_SD)) return wrap("textEncoder", mapClip(key.slice(CLIP_SD.length), plan.teLayers));
  if (key.startsWith(OPENCLIP_SD)) return mapOpenClip(key.slice(OPENCLIP_SD.length), plan.teLayers, "textEncoder", false);
  if (key.startsWith(CLIP_XL)) return wrap("textEncoder", mapClip(key.slice(CLIP_XL.length), plan.teLayers));
  if (key.startsWith(OPENCLIP_XL)) return mapOpenClip(key.slice(OPENCLIP_XL.length), plan.te2Layers, "textEncoder2", true);
  if (key.startsWith(OPENCLIP_XL_REFINER)) return mapOpenClip(key.slice(OPENCLIP_XL_REFINER.length), plan.te2Layers, "textEncoder2", true);
  if (key.startsWith("cond_stage_model.") || key.startsWith("conditioner.")) return undefined; // e.g. the SDXL refiner's lone OpenCLIP
  return IGNORED; // model_ema.*, betas, alphas_cumprod, optimizer state ...: not part of any component
}

// ---------------------------------------------------------------------------------------------
// The converted sources

/** One component of an LDM checkpoint under diffusers key names; tensors are converted on read. */
class LdmComponentSource implements WeightSource {
  readonly description: string;
  constructor(
    private readonly file: TensorFile,
    readonly component: Component,
    private readonly map: Map<string, Mapped>,
  ) {
    this.description = `${file.description} [${component}, LDM keys as diffusers]`;
  }

  keys(): string[] {
    return [...this.map.keys()];
  }

  info(key: string): TensorInfo | undefined {
    const m = this.map.get(key);
    const src = m && this.file.info(m.ldm);
    return src && { dtype: src.dtype, shape: convertShape(src.shape, m.t, m.ldm, this.file.description) };
  }

  read(key: string, _shape?: readonly number[]): Float32Array {
    const m = this.map.get(key);
    if (!m)
      throw new ReimagineError(
        `${this.description}: no tensor '${key}'; the checkpoint does not hold this ${this.component} weight (wrong architecture or config?)`,
        "weights",
      );
    const shape = this.file.info(m.ldm)!.shape;
    const data = this.file.read(m.ldm);
    if (m.t === "copy" || m.t === "squeeze") return data; // same row-major data, [C, C, 1, 1] -> [C, C]
    if (m.t === "transpose") {
      // [a, b] -> [b, a]
      const [a, b] = shape,
        out = new Float32Array(data.length);
      for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = data[i * b + j];
      return out;
    }
    const part = data.length / 3,
      at = { q: 0, k: 1, v: 2 }[m.t]; // in_proj [3D, ...] -> rows of q, k, v
    return data.slice(at * part, (at + 1) * part);
  }

  fingerprint(): string {
    return `${this.file.fingerprint()}:ldm-${this.component}:${CONVERTER_VERSION}`;
  }
}

function convertShape(shape: number[], t: Transform, ldm: string, path: string): number[] {
  const fail = (what: string) => {
    throw new ReimagineError(`${path}: tensor '${ldm}' has shape [${shape}], ${what}; the checkpoint is corrupt or not an SD model`, "corrupt_weights");
  };
  if (t === "copy") return [...shape];
  if (t === "squeeze") {
    // [C, C, 1, 1] (conv) or [C, C] (already linear)
    if (shape.length < 2 || shape.slice(2).some((d) => d !== 1)) fail("expected [C, C, 1, 1] or [C, C]");
    return shape.slice(0, 2);
  }
  if (t === "transpose") {
    if (shape.length !== 2) fail("expected a 2-D projection");
    return [shape[1], shape[0]];
  }
  if (shape[0] % 3 !== 0) fail("expected an in_proj with 3*D rows");
  return [shape[0] / 3, ...shape.slice(1)];
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/**
 * Diffusers-named weight sources over an LDM checkpoint already open. `configs` decide the block
 * layout (layers_per_block, VAE levels, text encoder depth); without them it is inferred from the keys.
 * Throws when a tensor under a component prefix is not understood, or a component is absent.
 */
export function convertLdmCheckpoint(
  file: TensorFile,
  family: ModelFamily,
  configs?: SingleFileConfigs,
): Record<SingleFileComponent, WeightSource | undefined> {
  const keys = file.keys();
  const plan = makePlan(keys, family, configs, file.description);
  const maps: Record<Component, Map<string, Mapped>> = { unet: new Map(), vae: new Map(), textEncoder: new Map(), textEncoder2: new Map() };
  const unknown: string[] = [];
  for (const key of keys) {
    const targets = route(key, plan);
    if (!targets) {
      unknown.push(key);
      continue;
    }
    for (const t of targets) {
      const prev = maps[t.c].get(t.key);
      if (prev)
        throw new ReimagineError(
          `${file.description}: tensors '${prev.ldm}' and '${key}' both convert to ${t.c} '${t.key}'; the checkpoint mixes key layouts, re-save it from a clean source`,
          "corrupt_weights",
        );
      maps[t.c].set(t.key, { ldm: key, t: t.t });
    }
  }
  if (unknown.length > 0) {
    throw new ReimagineError(
      `${file.description}: ${unknown.length} tensor(s) are not understood by the LDM checkpoint converter (e.g. ${unknown
        .slice(0, 3)
        .map((k) => `'${k}'`)
        .join(", ")}); ` +
        `this is not a plain SD 1.x/2.x/XL (or inpainting) checkpoint (ControlNet, LoRA or another architecture?). ` +
        `Convert it with diffusers (from_single_file(...).save_pretrained(folder)) and load the folder instead`,
      "unsupported_model",
    );
  }
  const need: [Component, string][] = [
    ["unet", UNET],
    ["vae", VAE],
  ];
  if (family === "sdxl" || family === "sdxl-refiner") need.push(["textEncoder2", family === "sdxl" ? OPENCLIP_XL : OPENCLIP_XL_REFINER]);
  if (family !== "sdxl-refiner") need.push(["textEncoder", `${CLIP_SD}, ${OPENCLIP_SD} or ${CLIP_XL}`]);
  for (const [c, prefix] of need) {
    if (maps[c].size === 0)
      throw new ReimagineError(
        `${file.description}: no ${c} tensors (${prefix}*) in this checkpoint; single-file loading needs UNet, VAE and text encoder in one file — use a full checkpoint or a diffusers folder`,
        "weights",
      );
  }
  const src = (c: Component) => (maps[c].size > 0 ? new LdmComponentSource(file, c, maps[c]) : undefined);
  return { unet: src("unet"), vae: src("vae"), textEncoder: src("textEncoder"), textEncoder2: src("textEncoder2") };
}

function makePlan(keys: string[], family: ModelFamily, configs: SingleFileConfigs | undefined, path: string): Plan {
  const unet = configs?.unet as Record<string, unknown> | undefined;
  const num = (o: object | undefined, k: string) =>
    o && typeof (o as Record<string, unknown>)[k] === "number" ? ((o as Record<string, unknown>)[k] as number) : undefined;
  const ints = (re: RegExp) =>
    keys
      .map((k) => re.exec(k))
      .filter((m) => m !== null)
      .map((m) => +m![1]);
  // layers_per_block: the first downsampler sits at input_blocks.(lpb+1); with no downsampler, all input blocks are one level
  const ops = ints(/^model\.diffusion_model\.input_blocks\.(\d+)\.0\.op\.weight$/);
  const inferred = ops.length > 0 ? Math.min(...ops) - 1 : new Set(ints(/^model\.diffusion_model\.input_blocks\.([1-9]\d*)\./)).size;
  const lpb = num(unet, "layers_per_block") ?? inferred;
  if (lpb !== inferred && ints(/^model\.diffusion_model\.input_blocks\.(\d+)\./).length > 0) {
    throw new ReimagineError(
      `${path}: unet config says layers_per_block ${lpb} but the checkpoint's blocks imply ${inferred}; pass the config that belongs to this checkpoint`,
      "config_mismatch",
    );
  }
  const upTypes = (configs?.vae as { up_block_types?: unknown[] } | undefined)?.up_block_types;
  const vaeLevels = upTypes?.length ?? Math.max(-1, ...ints(/^first_stage_model\.decoder\.up\.(\d+)\./)) + 1;
  const openClipSd2 = keys.some((k) => k.startsWith(OPENCLIP_SD));
  const teLayers = num(configs?.text_encoder, "num_hidden_layers") ?? (openClipSd2 ? 23 : Infinity);
  const classEmb = unet && ["timestep", "projection"].includes(unet.class_embed_type as string);
  const addEmb = unet ? unet.addition_embed_type === "text_time" : family === "sdxl" || family === "sdxl-refiner";
  return { lpb, vaeLevels, teLayers, te2Layers: Infinity, labelEmb: classEmb ? "class_embedding" : addEmb ? "add_embedding" : undefined };
}

/** The configs shipped in src/weights/configs for a known family (the diffusers hub repo's JSON files). */
export function shippedConfigs(family: Exclude<ModelFamily, "unknown">): SingleFileConfigs {
  const load = (name: string) => JSON.parse(readFileSync(new URL(`./configs/${family}/${name}.json`, import.meta.url), "utf8")) as object;
  const xl = family === "sdxl" || family === "sdxl-refiner";
  return {
    unet: load("unet"),
    vae: load("vae"),
    text_encoder: family === "sdxl-refiner" ? undefined : load("text_encoder"),
    text_encoder_2: xl ? load("text_encoder_2") : undefined,
    scheduler: load("scheduler"),
    model_index: xl ? load("model_index") : undefined,
  };
}

/** Hub repo and subfolders ("" = root; subfolder2 = tokenizer_2 for SDXL) whose CLIP tokenizer files a single-file model of `family` uses. */
export function tokenizerRepoFor(family: ModelFamily): { repo: string; subfolder?: string; subfolder2?: string } {
  switch (family) {
    case "sd1":
      return { repo: "openai/clip-vit-large-patch14", subfolder: "" };
    case "sd2":
    case "sd2-v":
      return { repo: "stabilityai/stable-diffusion-2-1", subfolder: "tokenizer" }; // pads with "!", not <|endoftext|>
    case "sdxl":
      return { repo: "stabilityai/stable-diffusion-xl-base-1.0", subfolder: "tokenizer", subfolder2: "tokenizer_2" };
    case "sdxl-refiner":
      return { repo: "stabilityai/stable-diffusion-xl-base-1.0", subfolder2: "tokenizer_2" }; // no CLIP-L encoder
    default:
      throw new ReimagineError("no known tokenizer for an unrecognised checkpoint; load a diffusers folder (with tokenizer/) instead", "unsupported_model");
  }
}

/** What to do when the prediction type guessed for `family` is wrong (it is not stored in the weights). */
export function predictionTypeHint(family: ModelFamily): string {
  if (family === "sd2-v")
    return 'SD 2.x was taken as a 768px v-prediction model (like stabilityai/stable-diffusion-2-1); if images come out as noise, grey mush or wrong colours it is a 512px epsilon model (SD 2.x base): pass predictionType "epsilon"';
  if (family === "sd2")
    return 'SD 2.x was taken as a 512px epsilon model (SD 2.x base); if images come out as noise, grey mush or wrong colours it is a 768px v-prediction model (like stabilityai/stable-diffusion-2-1): pass predictionType "v_prediction"';
  return 'this model family predicts noise (epsilon); a v-prediction fine-tune needs predictionType "v_prediction"';
}

/** SD 2.x 512/epsilon vs 768/v: option, else safetensors metadata (SAI modelspec, kohya), else diffusers' default (v). */
function sd2Variant(meta: Record<string, string>, opt: PredictionType | undefined, inpainting = false): { family: "sd2" | "sd2-v"; why: string } {
  const pick = (v: boolean, why: string) => ({ family: v ? ("sd2-v" as const) : ("sd2" as const), why });
  if (opt) return pick(opt === "v_prediction", "predictionType option");
  const pt = meta["modelspec.prediction_type"]?.toLowerCase();
  if (pt) return pick(pt.startsWith("v"), `metadata modelspec.prediction_type=${pt}`);
  const arch = meta["modelspec.architecture"];
  if (arch?.startsWith("stable-diffusion-v2")) return pick(/-v(-|$)/.test(arch.slice("stable-diffusion-v2".length)), `metadata modelspec.architecture=${arch}`);
  const ss = meta.ss_v_parameterization;
  if (ss === "True" || ss === "False") return pick(ss === "True", `metadata ss_v_parameterization=${ss}`);
  // the SD 2.x inpainting model (stabilityai/stable-diffusion-2-inpainting, 512-inpainting-ema) predicts noise
  if (inpainting) return pick(false, "assumed epsilon, as stable-diffusion-2-inpainting: the weights do not say");
  return pick(true, "assumed, as diffusers does: the weights do not say");
}

/**
 * SDXL v-prediction fine-tunes (NoobAI-XL v-pred and others) mark themselves with the empty tensors `v_pred`
 * and `ztsnr` (zero terminal SNR: diffusers' rescale_betas_zero_snr), as ComfyUI reads them, or with SAI
 * modelspec metadata. Returns the scheduler settings they imply.
 */
function xlVPrediction(keys: string[], meta: Record<string, string>): { scheduler: Record<string, unknown>; why: string } | undefined {
  const pt = meta["modelspec.prediction_type"]?.toLowerCase();
  const v = keys.includes("v_pred") || pt?.startsWith("v");
  if (!v) return undefined;
  const zsnr = keys.includes("ztsnr");
  return {
    scheduler: { prediction_type: "v_prediction", ...(zsnr ? { rescale_betas_zero_snr: true } : {}) },
    why: `v_prediction${zsnr ? " with zero terminal SNR" : ""} (${keys.includes("v_pred") ? "v_pred key" : "metadata modelspec.prediction_type"})`,
  };
}

/**
 * Opens a single-file LDM `.safetensors` checkpoint as diffusers components.
 * Pickle files (.ckpt/.pt/.bin) are refused. For SD 2.x the prediction type comes from `opts`,
 * then the file's metadata, else v_prediction (see predictionTypeHint for a wrong guess).
 *
 * @example
 *   const m = openSingleFile("models/v1-5-pruned-emaonly.safetensors");
 *   m.family; // "sd1"
 *   m.unet.read("conv_in.weight", [320, 4, 3, 3]);
 */
export function openSingleFile(path: string, opts: { configs?: SingleFileConfigs; predictionType?: PredictionType } = {}): SingleFileModel {
  if (PICKLE.test(path)) {
    throw new ReimagineError(
      `${path}: pickle checkpoints (.ckpt/.pt/.pth/.bin) can execute arbitrary code when loaded, so they are refused. ` +
        `Download the .safetensors version, or convert it once in a sandbox: python -c "import torch, safetensors.torch as st; ` +
        `sd = torch.load('model.ckpt', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); ` +
        `st.save_file({k: v.clone().contiguous() for k, v in sd.items() if isinstance(v, torch.Tensor)}, 'model.safetensors')"`,
      "unsafe_format",
    );
  }
  const file = SafetensorsFile.open(path);
  try {
    const found = inspect(file);
    let family = found.family,
      why = found.why;
    const inChannels = unetInChannels(file) ?? 4;
    if (family === "sd2") ({ family, why } = sd2Variant(file.metadata, opts.predictionType, inChannels === 9));
    let configs = opts.configs;
    const what = family === "unknown" ? notACheckpoint(file.keys()) : undefined;
    if (what) throw new ReimagineError(`${path} ${what}`, "not_a_model");
    if (!configs && family === "unknown") {
      throw new ReimagineError(
        `${path}: the tensors match no known architecture (${found.why}); pass explicit configs with --config-from <diffusers folder of the same architecture>, or load a diffusers folder instead`,
        "unsupported_model",
      );
    }
    if (!configs && family !== "unknown") configs = shippedConfigs(family);
    // inpainting checkpoints (sd-v1-5-inpainting, 512-inpainting-ema, SDXL inpainting 0.1) are their family's UNet with
    // a 9-channel conv_in: the weights decide in_channels, whatever config came with them
    const cfgIn = (configs?.unet as { in_channels?: number } | undefined)?.in_channels;
    if (configs && cfgIn !== inChannels) {
      configs = { ...configs, unet: { ...configs.unet, in_channels: inChannels } };
      if (opts.configs) why += `; in_channels ${inChannels} from the weights (the config says ${cfgIn})`;
    }
    if (inChannels === 9) why += "; 9-channel inpainting UNet";
    if (configs && opts.predictionType) configs = { ...configs, scheduler: { ...configs.scheduler, prediction_type: opts.predictionType } };
    else if (configs && (family === "sdxl" || family === "sdxl-refiner")) {
      const v = xlVPrediction(file.keys(), file.metadata);
      if (v) {
        configs = { ...configs, scheduler: { ...configs.scheduler, ...v.scheduler } };
        why += `; ${v.why}`;
      }
    }
    const parts = convertLdmCheckpoint(file, family, configs);
    return {
      family,
      unet: parts.unet!,
      vae: parts.vae!,
      textEncoder: parts.textEncoder,
      textEncoder2: parts.textEncoder2,
      configs,
      description: `${path}: ${family} (${why})${opts.configs ? ", explicit configs" : ""}`,
      close: () => file.close(),
    };
  } catch (e) {
    file.close();
    throw e;
  }
}
