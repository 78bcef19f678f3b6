// A LoRA file matched to a model: each module's name resolved to the model's own layer, shapes checked against it,
// and the weights normalised to down [r, in*k*k] / up [out, r] with the module's alpha/rank scale.
// Merged (fused) weights W + multiplier * scale * up @ down, as diffusers' fuse_lora and A1111 compute them.
// Ref: diffusers/PEFT LoraLayer.get_delta_weight, AUTOMATIC1111 network_lora.py calc_updown.
import { ReimagineError } from "../errors.js";
import type { TensorInfo, WeightSource } from "../weights/source.js";
import { LORA_COMPONENTS, type LoraComponent, type LoraFile, type LoraModuleWeights } from "./file.js";
import { ModuleNameTable } from "./names.js";

/** One LoRA layer resolved against a model layer. */
export interface LoraLayer {
  module: string;
  /** lora_down, [rank, in * kernel * kernel] row-major (torch layout flattened). */
  down: Float32Array;
  /** lora_up, [out, rank]. */
  up: Float32Array;
  rank: number;
  inF: number;
  outF: number;
  /** The model layer's kernel size (1 for Linear). */
  kernel: number;
  /** alpha / rank. */
  scale: number;
}

/** A LoRA file resolved against a model: layers per component, keyed by the model's module names. */
export interface ResolvedLora {
  name: string;
  path: string;
  fingerprint: string;
  layers: Partial<Record<LoraComponent, Map<string, LoraLayer>>>;
}

/** The model's Linear/Conv2d weight shapes per component (see modelModules). */
export type ModelLayers = Partial<Record<LoraComponent, ReadonlyMap<string, readonly number[]>>>;

/**
 * Matches every module of `file` to a layer of the model. Modules that match nothing are an error naming a few of
 * them (typically a LoRA made for another model family), as are shape mismatches.
 *
 * @example
 *   const lora = resolveLora(readLoraFile("watercolor.safetensors"), { unet: modelModules(unetWeights), text_encoder: modelModules(teWeights) });
 */
export function resolveLora(file: LoraFile, model: ModelLayers): ResolvedLora {
  const tables: Partial<Record<LoraComponent, ModuleNameTable>> = {};
  for (const c of LORA_COMPONENTS) {
    const layers = model[c];
    if (layers) tables[c] = new ModuleNameTable(layers.keys(), { ldmUnet: c === "unet" });
  }
  const layers: Partial<Record<LoraComponent, Map<string, LoraLayer>>> = {};
  const unmatched: string[] = [];
  const misfits: string[] = [];
  for (const m of file.modules) {
    const module = tables[m.component]?.resolve(m.path);
    if (module === undefined) {
      unmatched.push(m.key);
      continue;
    }
    const shape = model[m.component]!.get(module)!;
    const map = layers[m.component] ?? new Map<string, LoraLayer>();
    layers[m.component] = map;
    if (map.has(module))
      throw new ReimagineError(`LoRA ${file.path}: two modules target the model's '${module}' (one is '${m.key}'); the file mixes name layouts`, "bad_lora");
    const layer = layerFor(m, module, shape);
    if (typeof layer === "string") misfits.push(layer);
    else map.set(module, layer);
  }
  if (unmatched.length) {
    const present = LORA_COMPONENTS.filter((c) => model[c]).join(", ");
    throw new ReimagineError(
      `LoRA ${file.path}: ${unmatched.length} of its ${file.modules.length} modules match no layer of this model ` +
        `(e.g. ${unmatched
          .slice(0, 3)
          .map((k) => `'${k}'`)
          .join(", ")}); it was made for another model family ` +
        `(SD 1.x / SD 2.x / SDXL) or another architecture. The model has: ${present}`,
      "lora_mismatch",
    );
  }
  if (misfits.length) {
    throw new ReimagineError(
      `LoRA ${file.path}: ${misfits.length} of its modules do not fit the model's layers (${misfits.slice(0, 2).join("; ")}); ` +
        "it was made for another model family (SD 1.x / SD 2.x / SDXL) or another architecture",
      "lora_mismatch",
    );
  }
  return { name: file.name, path: file.path, fingerprint: file.fingerprint, layers };
}

/** The layer, or a description of why the module does not fit it. */
function layerFor(m: LoraModuleWeights, module: string, shape: readonly number[]): LoraLayer | string {
  const [outF, inF] = shape;
  const kernel = shape.length === 4 ? shape[2] : 1;
  const rank = m.downShape[0];
  const dk = m.downShape.length === 4 ? m.downShape.slice(2) : [1, 1];
  const fits = m.downShape[1] === inF && m.upShape[0] === outF && dk[0] === kernel && dk[1] === kernel && (shape.length === 4 || kernel === 1);
  if (!fits) {
    const lora = `[${m.upShape[0]}, ${m.downShape[1]}${dk[0] > 1 ? `, ${dk.join(", ")}` : ""}]`;
    return `'${m.key}' is ${lora} but '${module}' is [${shape.join(", ")}]`;
  }
  return { module, down: m.down, up: m.up, rank, inF, outF, kernel, scale: m.scale };
}

/**
 * W + multiplier * scale * (up @ down) for one layer's weight W (torch layout [out, in(, k, k)]), in float32 as
 * diffusers' fuse_lora (the product summed in float64, then rounded).
 *
 * @example fuseLayer(unetWeights.read("conv_in.weight", shape), lora.layers.unet!.get("conv_in")!, 0.8)
 */
export function fuseLayer(weight: Float32Array, layer: LoraLayer, multiplier: number): Float32Array {
  const { down, up, rank, outF } = layer;
  const cols = down.length / rank; // in * k * k
  if (weight.length !== outF * cols) throw new Error(`fuseLayer ${layer.module}: weight has ${weight.length} values, expected ${outF * cols}`);
  const f = Math.fround;
  const s = f(multiplier * layer.scale);
  const out = new Float32Array(weight.length);
  const row = new Float64Array(cols);
  for (let o = 0; o < outF; o++) {
    row.fill(0);
    for (let r = 0; r < rank; r++) {
      const u = up[o * rank + r];
      if (u === 0) continue;
      const d = r * cols;
      for (let c = 0; c < cols; c++) row[c] += u * down[d + c];
    }
    for (let c = 0; c < cols; c++) out[o * cols + c] = f(weight[o * cols + c] + f(f(row[c]) * s));
  }
  return out;
}

/**
 * A model component's weights with LoRAs merged in (the classic "fused" path; the LoRA-slot graphs need no such
 * copy, this serves tests and one-off exports).
 *
 * @example new FusedLoraWeights(unetWeights, "unet", [{ lora, multiplier: 0.6 }])
 */
export class FusedLoraWeights implements WeightSource {
  readonly description: string;
  constructor(
    private readonly base: WeightSource,
    private readonly component: LoraComponent,
    private readonly loras: readonly { lora: ResolvedLora; multiplier: number }[],
  ) {
    this.description = `${base.description} + ${loras.map((l) => `${l.lora.name}:${l.multiplier}`).join(" + ")}`;
  }
  keys(): string[] {
    return this.base.keys();
  }
  info(key: string): TensorInfo | undefined {
    return this.base.info(key);
  }
  read(key: string, shape: readonly number[]): Float32Array {
    let w = this.base.read(key, shape);
    if (!key.endsWith(".weight")) return w;
    const module = key.slice(0, -".weight".length);
    for (const { lora, multiplier } of this.loras) {
      const layer = lora.layers[this.component]?.get(module);
      if (layer) w = fuseLayer(w, layer, multiplier);
    }
    return w;
  }
  fingerprint(): string {
    return `${this.base.fingerprint()}+${this.loras.map((l) => `${l.lora.fingerprint}*${l.multiplier}`).join("+")}`;
  }
}
