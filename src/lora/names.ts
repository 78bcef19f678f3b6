// LoRA module names -> the model's own module names. kohya joins module paths with "_", which cannot be split back
// ("to_q", "conv_shortcut", "time_emb_proj" contain "_"), so names are matched against a table built from the
// model's modules: each diffusers name and, for the UNet, its LDM/SGM name (`input_blocks.4.1...`, used by SDXL
// kohya LoRAs), both with "." -> "_". Ref: AUTOMATIC1111 extensions-builtin/Lora/networks.py (network_layer_mapping),
// diffusers scripts/convert_diffusers_to_original_sdxl.py (unet_conversion_map*), the inverse of
// src/weights/checkpoint.ts's LDM -> diffusers UNet conversion.
import { RESNET_TO_LDM } from "../weights/checkpoint.js";
import type { WeightSource } from "../weights/source.js";

/** Linear (2-D) and Conv2d (4-D) weights of a model by module name: `down_blocks.0.attentions.0.proj_in` -> [out, in(, k, k)]. */
export function modelModules(weights: Pick<WeightSource, "keys" | "info">): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const key of weights.keys()) {
    if (!key.endsWith(".weight")) continue;
    const shape = weights.info(key)?.shape;
    if (shape && (shape.length === 2 || shape.length === 4)) out.set(key.slice(0, -".weight".length), shape);
  }
  return out;
}

/** Resolves LoRA module paths (dotted or "_"-joined, diffusers or LDM layout) to the model's module names. */
export class ModuleNameTable {
  private readonly byName = new Map<string, string | null>(); // null: two modules share the name (ambiguous)

  /** `ldmUnet`: also accept the UNet's LDM/SGM names (give the UNet's module list). */
  constructor(modules: Iterable<string>, opts: { ldmUnet?: boolean } = {}) {
    const list = [...modules];
    const ldm = opts.ldmUnet ? ldmUnetNames(list) : new Map<string, string>();
    for (const m of list) {
      this.add(m, m);
      const l = ldm.get(m);
      if (l) this.add(l, m);
    }
  }

  private add(name: string, module: string): void {
    for (const n of new Set([name, name.replace(/\./g, "_")])) {
      const prev = this.byName.get(n);
      this.byName.set(n, prev === undefined || prev === module ? module : null);
    }
  }

  /** The model module a LoRA path names, or undefined. */
  resolve(path: string): string | undefined {
    return this.byName.get(path) ?? undefined;
  }
}

const FIXED_LDM: Record<string, string> = {
  conv_in: "input_blocks.0.0",
  conv_out: "out.2",
  conv_norm_out: "out.0",
  "time_embedding.linear_1": "time_embed.0",
  "time_embedding.linear_2": "time_embed.2",
  "add_embedding.linear_1": "label_emb.0.0",
  "add_embedding.linear_2": "label_emb.0.2",
  "class_embedding.linear_1": "label_emb.0.0",
  "class_embedding.linear_2": "label_emb.0.2",
};

/**
 * LDM/SGM names of a diffusers UNet's modules. The block layout (resnets per level, which up levels have attention)
 * is read from the module names: input block N = 1 + resnets and downsamplers of the levels before + j; output
 * block N = resnets of the up levels before + j; a level's upsampler sits in its last output block at index 2
 * (with attention) or 1.
 *
 * @example ldmUnetNames(["down_blocks.1.attentions.0.proj_in", ...]).get("down_blocks.1.attentions.0.proj_in") // "input_blocks.4.1.proj_in"
 */
export function ldmUnetNames(modules: readonly string[]): Map<string, string> {
  const count = (re: RegExp) => {
    const n = new Map<number, Set<number>>();
    for (const m of modules) {
      const x = re.exec(m);
      if (x) (n.get(+x[1]) ?? n.set(+x[1], new Set()).get(+x[1])!).add(+x[2]);
    }
    return n;
  };
  const downRes = count(/^down_blocks\.(\d+)\.resnets\.(\d+)\./);
  const downSamp = count(/^down_blocks\.(\d+)\.downsamplers\.(\d+)\./);
  const upRes = count(/^up_blocks\.(\d+)\.resnets\.(\d+)\./);
  const upAttn = count(/^up_blocks\.(\d+)\.attentions\.(\d+)\./);
  const midAttn = modules.some((m) => m.startsWith("mid_block.attentions."));
  const levels = (n: Map<number, Set<number>>) => Math.max(-1, ...n.keys()) + 1;
  const inStart: number[] = [];
  for (let l = 0, at = 1; l < levels(downRes); l++) {
    inStart.push(at);
    at += (downRes.get(l)?.size ?? 0) + (downSamp.has(l) ? 1 : 0);
  }
  const outStart: number[] = [];
  for (let l = 0, at = 0; l < levels(upRes); l++) {
    outStart.push(at);
    at += upRes.get(l)?.size ?? 0;
  }
  const out = new Map<string, string>();
  for (const m of modules) {
    const ldm = ldmName(m);
    if (ldm) out.set(m, ldm);
  }
  return out;

  function ldmName(m: string): string | undefined {
    if (FIXED_LDM[m]) return FIXED_LDM[m];
    let x = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$/.exec(m);
    if (x && RESNET_TO_LDM[x[3]]) return `input_blocks.${inStart[+x[1]] + +x[2]}.0.${RESNET_TO_LDM[x[3]]}`;
    x = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(m);
    if (x) return `input_blocks.${inStart[+x[1]] + +x[2]}.1.${x[3]}`;
    x = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(m);
    if (x) return `input_blocks.${inStart[+x[1]] + (downRes.get(+x[1])?.size ?? 0)}.0.op`;
    x = /^mid_block\.resnets\.(\d+)\.(\w+)$/.exec(m);
    if (x && RESNET_TO_LDM[x[2]]) return `middle_block.${+x[1] === 0 ? 0 : midAttn ? 2 : 1}.${RESNET_TO_LDM[x[2]]}`;
    x = /^mid_block\.attentions\.0\.(.+)$/.exec(m);
    if (x) return `middle_block.1.${x[1]}`;
    x = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)$/.exec(m);
    if (x && RESNET_TO_LDM[x[3]]) return `output_blocks.${outStart[+x[1]] + +x[2]}.0.${RESNET_TO_LDM[x[3]]}`;
    x = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(m);
    if (x) return `output_blocks.${outStart[+x[1]] + +x[2]}.1.${x[3]}`;
    x = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(m);
    if (x) {
      const l = +x[1];
      return `output_blocks.${outStart[l] + (upRes.get(l)?.size ?? 1) - 1}.${upAttn.has(l) ? 2 : 1}.conv`;
    }
    return undefined;
  }
}
