// Real-size SDXL single-file layouts: the key sets of stabilityai's SGM checkpoints (base: UNet + VAE +
// CLIP-L + OpenCLIP-bigG; refiner: UNet + VAE + OpenCLIP-bigG) built from the shipped configs' graphs,
// written as sparse fp16 files (header only on disk), detected from shapes and converted back to exactly
// the diffusers keys the graphs bind. Also: files that are not full checkpoints get a one-line error.
import { closeSync, mkdtempSync, openSync, rmSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig } from "../models/vae.js";
import { detectFamily, openSingleFile, RESNET_TO_LDM, shippedConfigs } from "./checkpoint.js";
import { RandomWeights } from "./random.js";
import { SafetensorsFile } from "./safetensors.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-xl-ckpt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A safetensors file whose data section is a sparse hole: valid header, right size, no disk use. */
function writeSparse(path: string, tensors: Map<string, readonly number[]>): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [k, shape] of tensors) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1); // F16
    header[k] = { dtype: "F16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path, "w");
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + offset);
  closeSync(fd);
}

// LDM (SGM) names of diffusers keys, the inverse of checkpoint.ts's conversion.
function ldmUnetKey(k: string, lpb: number, attnLevels: Set<number>): string {
  const n = lpb + 1;
  const fixed: Record<string, string> = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    conv_in: "input_blocks.0.0",
    conv_norm_out: "out.0",
    conv_out: "out.2",
  };
  const [, mod, param] = /^(.+)\.(weight|bias)$/.exec(k)!;
  if (fixed[mod]) return `model.diffusion_model.${fixed[mod]}.${param}`;
  let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(k);
  if (m) {
    const idx = n * +m[1] + +m[3] + 1;
    if (m[2] === "attentions") return `model.diffusion_model.input_blocks.${idx}.1.${m[4]}`;
    const [, sub, p] = /^(.+)\.(weight|bias)$/.exec(m[4])!;
    return `model.diffusion_model.input_blocks.${idx}.0.${RESNET_TO_LDM[sub]}.${p}`;
  }
  m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)$/.exec(k);
  if (m) return `model.diffusion_model.input_blocks.${n * (+m[1] + 1)}.0.op.${m[2]}`;
  m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(k);
  if (m) {
    if (m[1] === "attentions") return `model.diffusion_model.middle_block.1.${m[3]}`;
    const [, sub, p] = /^(.+)\.(weight|bias)$/.exec(m[3])!;
    return `model.diffusion_model.middle_block.${m[2] === "0" ? 0 : 2}.${RESNET_TO_LDM[sub]}.${p}`;
  }
  m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(k);
  if (m) {
    const idx = n * +m[1] + +m[3];
    if (m[2] === "attentions") return `model.diffusion_model.output_blocks.${idx}.1.${m[4]}`;
    const [, sub, p] = /^(.+)\.(weight|bias)$/.exec(m[4])!;
    return `model.diffusion_model.output_blocks.${idx}.0.${RESNET_TO_LDM[sub]}.${p}`;
  }
  m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)$/.exec(k);
  if (m) return `model.diffusion_model.output_blocks.${n * +m[1] + lpb}.${attnLevels.has(+m[1]) ? 2 : 1}.conv.${m[2]}`;
  throw new Error(`no LDM name for UNet key ${k}`);
}

function ldmVaeKey(k: string, levels: number): { key: string; shape?: (s: readonly number[]) => number[] } {
  const v = (rest: string) => ({ key: `first_stage_model.${rest}` });
  let m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(k);
  if (m) {
    const name = { group_norm: "norm", to_q: "q", to_k: "k", to_v: "v", "to_out.0": "proj_out" }[m[2]]!;
    const conv = m[2] !== "group_norm" && m[3] === "weight";
    return { key: `first_stage_model.${m[1]}.mid.attn_1.${name}.${m[3]}`, shape: conv ? (s) => [...s, 1, 1] : undefined };
  }
  const res = (sub: string) => sub.replace("conv_shortcut", "nin_shortcut");
  m = /^(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)$/.exec(k);
  if (m) return v(`${m[1]}.mid.block_${+m[2] + 1}.${res(m[3])}`);
  m = /^(encoder|decoder)\.conv_norm_out\.(weight|bias)$/.exec(k);
  if (m) return v(`${m[1]}.norm_out.${m[2]}`);
  m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k);
  if (m) return v(`encoder.down.${m[1]}.block.${m[2]}.${res(m[3])}`);
  m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(k);
  if (m) return v(`encoder.down.${m[1]}.downsample.conv.${m[2]}`);
  m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(k);
  if (m) return v(`decoder.up.${levels - 1 - +m[1]}.block.${m[2]}.${res(m[3])}`);
  m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(k);
  if (m) return v(`decoder.up.${levels - 1 - +m[1]}.upsample.conv.${m[2]}`);
  return v(k); // conv_in, conv_out, quant_conv, post_quant_conv
}

/** OpenCLIP names of a CLIPTextModelWithProjection's keys; q/k/v fold into in_proj. */
function openClip(keys: ReadonlyMap<string, readonly number[]>, prefix: string, out: Map<string, readonly number[]>): void {
  for (const [k, s] of keys) {
    const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(k);
    if (m) {
      const layer = `${prefix}transformer.resblocks.${m[1]}`;
      const names: Record<string, string> = {
        layer_norm1: "ln_1",
        layer_norm2: "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
      };
      if (m[2] === "self_attn.q_proj") out.set(`${layer}.attn.in_proj_${m[3]}`, [3 * s[0], ...s.slice(1)]);
      else if (names[m[2]]) out.set(`${layer}.${names[m[2]]}.${m[3]}`, s);
      continue;
    }
    if (k === "text_model.embeddings.position_embedding.weight") out.set(`${prefix}positional_embedding`, s);
    else if (k === "text_model.embeddings.token_embedding.weight") out.set(`${prefix}token_embedding.weight`, s);
    else if (/^text_model\.final_layer_norm\.(weight|bias)$/.test(k)) out.set(`${prefix}ln_final.${k.split(".").pop()}`, s);
    else if (k === "text_projection.weight") out.set(`${prefix}text_projection`, [s[1], s[0]]);
  }
}

/** The SGM key layout of a real-size SDXL base or refiner built from the shipped configs (or an LDM SD 1.x / 2.x
 *  one; `inChannels` 9 for an inpainting UNet). */
function sgmLayout(family: "sdxl" | "sdxl-refiner" | "sd1" | "sd2", inChannels = 4): Map<string, readonly number[]> {
  const c = shippedConfigs(family);
  const w = new RandomWeights(0);
  const out = new Map<string, readonly number[]>();
  const unetConfig = resolveUNetConfig({ ...(c.unet as Record<string, unknown>), in_channels: inChannels });
  const attnLevels = new Set([...unetConfig.up_block_types].map((t, i) => (t.startsWith("CrossAttn") ? i : -1)).filter((i) => i >= 0));
  for (const [k, s] of buildUNet2DConditionModel(w, unetConfig).boundWeights()) out.set(ldmUnetKey(k, unetConfig.layers_per_block as number, attnLevels), s);
  const vae = resolveVaeConfig(c.vae as Record<string, unknown>);
  for (const g of [buildVaeEncoder(w, vae), buildVaeDecoder(w, vae)]) {
    for (const [k, s] of g.boundWeights()) {
      const m = ldmVaeKey(k, vae.up_block_types.length);
      out.set(m.key, m.shape ? m.shape(s) : s);
    }
  }
  if (family === "sd1" || family === "sd2") {
    const te = buildCLIPTextModel(w, resolveCLIPTextConfig(c.text_encoder as Record<string, unknown>)).boundWeights();
    if (family === "sd2") openClip(te, "cond_stage_model.model.", out);
    else for (const [k, s] of te) if (k !== "text_projection.weight") out.set(`cond_stage_model.transformer.${k}`, s);
    return out;
  }
  if (c.text_encoder) {
    for (const [k, s] of buildCLIPTextModel(w, resolveCLIPTextConfig(c.text_encoder as Record<string, unknown>)).boundWeights()) {
      if (k !== "text_projection.weight") out.set(`conditioner.embedders.0.transformer.${k}`, s); // CLIP-L: HF names, no projection
    }
  }
  const te2 = buildCLIPTextModel(w, resolveCLIPTextConfig(c.text_encoder_2 as Record<string, unknown>)).boundWeights();
  openClip(te2, family === "sdxl" ? "conditioner.embedders.1.model." : "conditioner.embedders.0.model.", out);
  out.set(family === "sdxl" ? "conditioner.embedders.1.model.logit_scale" : "conditioner.embedders.0.model.logit_scale", []); // present in real files, ignored
  return out;
}

describe("real-size SDXL single-file layouts (sparse files)", () => {
  for (const family of ["sdxl", "sdxl-refiner"] as const) {
    it(`${family}: detected from shapes, shipped configs, every tensor converted back to the graphs' keys`, () => {
      const layout = sgmLayout(family);
      const path = join(tmp, `${family}.safetensors`);
      writeSparse(path, layout);
      const f = SafetensorsFile.open(path);
      expect(detectFamily(f)).toBe(family);
      f.close();
      const m = openSingleFile(path);
      try {
        expect(m.family).toBe(family);
        const c = shippedConfigs(family);
        const w = new RandomWeights(0);
        const unetKeys = [
          ...buildUNet2DConditionModel(w, resolveUNetConfig(c.unet as Record<string, unknown>))
            .boundWeights()
            .keys(),
        ];
        expect(m.unet.keys().sort()).toEqual(unetKeys.sort());
        expect(m.unet.info("add_embedding.linear_1.weight")!.shape).toEqual(family === "sdxl" ? [1280, 2816] : [1536, 2560]);
        expect(m.textEncoder2!.info("text_projection.weight")!.shape).toEqual([1280, 1280]);
        expect(m.textEncoder2!.keys()).toContain("text_model.encoder.layers.31.self_attn.v_proj.weight");
        if (family === "sdxl") expect(m.textEncoder!.keys()).toContain("text_model.encoder.layers.11.mlp.fc2.bias");
        else expect(m.textEncoder).toBeUndefined();
        expect(m.unet.keys().length).toBe(family === "sdxl" ? 1680 : unetKeys.length);
        const vae = resolveVaeConfig(c.vae as Record<string, unknown>);
        const vaeKeys = [...buildVaeEncoder(w, vae).boundWeights().keys(), ...buildVaeDecoder(w, vae).boundWeights().keys()];
        expect(m.vae.keys().sort()).toEqual([...new Set(vaeKeys)].sort());
        const te2Keys = [
          ...buildCLIPTextModel(w, resolveCLIPTextConfig(c.text_encoder_2 as Record<string, unknown>))
            .boundWeights()
            .keys(),
        ];
        expect(m.textEncoder2!.keys().sort()).toEqual(te2Keys.sort());
      } finally {
        m.close();
      }
    });
  }
});

describe("files that are not full checkpoints, given as a model", () => {
  const tiny = (keys: string[]) => {
    const path = join(tmp, `${keys[0].replace(/[^\w]/g, "_")}.safetensors`);
    writeSparse(path, new Map(keys.map((k) => [k, [2, 2]])));
    return path;
  };
  it.each([
    [["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "lora_unet_down_blocks_0_attentions_0_proj_in.alpha"], /is a LoRA.*--lora FILE/],
    [["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"], /is a LoRA/],
    [["control_model.input_blocks.0.0.weight", "control_model.input_hint_block.0.weight"], /is a ControlNet.*--controlnet FILE/],
    [["controlnet_cond_embedding.conv_in.weight", "conv_in.weight"], /is a ControlNet/],
    [["emb_params"], /textual-inversion embedding/],
    [["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"], /only a VAE/],
    [["some.other.weight"], /match no known architecture.*--config-from/],
  ])("%j -> a one-line error naming the fix", (keys, message) => {
    const path = tiny(keys);
    expect(() => openSingleFile(path)).toThrow(message);
    try {
      openSingleFile(path);
    } catch (e) {
      expect(String((e as Error).message)).not.toContain("\n");
    }
  });
});

describe("SDXL v-prediction single files", () => {
  it("v_pred + ztsnr keys (as NoobAI-XL v-pred ships them) -> v_prediction with rescale_betas_zero_snr", () => {
    const layout = sgmLayout("sdxl");
    layout.set("v_pred", []);
    layout.set("ztsnr", []);
    const path = join(tmp, "vpred.safetensors");
    writeSparse(path, layout);
    const m = openSingleFile(path);
    try {
      expect(m.configs!.scheduler).toMatchObject({ prediction_type: "v_prediction", rescale_betas_zero_snr: true });
      expect(m.description).toMatch(/zero terminal SNR/);
    } finally {
      m.close();
    }
    const plain = join(tmp, "eps.safetensors");
    writeSparse(plain, sgmLayout("sdxl"));
    const e = openSingleFile(plain);
    expect(e.configs!.scheduler).toMatchObject({ prediction_type: "epsilon" });
    e.close();
  });
});

describe("9-channel inpainting single files (sd-v1-5-inpainting, 512-inpainting-ema, SDXL inpainting 0.1 layouts)", () => {
  for (const family of ["sd1", "sd2", "sdxl"] as const) {
    it(`${family}: detected from input_blocks.0.0.weight [320, 9, 3, 3], shipped configs with in_channels 9, every tensor converted`, () => {
      const layout = sgmLayout(family, 9);
      expect(layout.get("model.diffusion_model.input_blocks.0.0.weight")).toEqual([320, 9, 3, 3]);
      const path = join(tmp, `${family}-inpainting.safetensors`);
      writeSparse(path, layout);
      const m = openSingleFile(path);
      try {
        expect(m.family).toBe(family); // SD 2.x inpainting is the 512 epsilon model, not the 768-v default
        expect((m.configs!.unet as { in_channels: number }).in_channels).toBe(9);
        expect(m.unet.info("conv_in.weight")!.shape).toEqual([320, 9, 3, 3]);
        expect(m.description).toMatch(/9-channel inpainting UNet/);
        const unetConfig = resolveUNetConfig(m.configs!.unet as Record<string, unknown>);
        const unetKeys = [...buildUNet2DConditionModel(new RandomWeights(0), unetConfig).boundWeights().keys()];
        expect(m.unet.keys().sort()).toEqual(unetKeys.sort());
        if (family === "sd2") expect((m.configs!.scheduler as { prediction_type: string }).prediction_type).toBe("epsilon");
      } finally {
        m.close();
      }
    });
  }
});
