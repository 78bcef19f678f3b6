// Single-file LDM checkpoint conversion: sd-tiny's LDM file must give the diffusers folder's keys and
// bit-identical tensors; OpenCLIP (SD2/SDXL) layouts round-trip; detection and refusals on synthetic files.
// Ref: diffusers loaders/single_file_utils.py; fixture written by diffusers' convert_diffusers_to_original_stable_diffusion.py.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fixture, describeWithFixtures } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import {
  convertLdmCheckpoint,
  detectFamily,
  openSingleFile,
  predictionTypeHint,
  shippedConfigs,
  tokenizerRepoFor,
  type SingleFileConfigs,
} from "./checkpoint.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "./safetensors.js";
import type { WeightSource } from "./source.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-ckpt-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

/** Every key of `ref` is in `src` (and nothing else) with the same shape and bit-identical float32 data. */
function expectSameWeights(src: WeightSource, ref: WeightSource) {
  expect(src.keys().sort()).toEqual(ref.keys().sort());
  const bad: string[] = [];
  for (const k of ref.keys()) {
    const shape = ref.info(k)!.shape;
    if (JSON.stringify(src.info(k)?.shape) !== JSON.stringify(shape) || !sameBits(src.read(k, shape), ref.read(k, shape))) bad.push(k);
  }
  expect(bad).toEqual([]);
}

let seed = 1;
const t = (shape: number[]): TensorToWrite => {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) {
    seed = (seed * 48271) % 2147483647;
    data[i] = seed / 2147483647 - 0.5;
  }
  return { dtype: "F32", shape, data };
};
function write(name: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): string {
  const path = join(tmp, name);
  writeSafetensors(path, tensors, metadata);
  return path;
}

/** Shape-only LDM checkpoint: a UNet with 2 levels (lpb 2), one VAE and one text-encoder tensor. */
function synthetic(ctx: number, te: Record<string, TensorToWrite>, inChannels = 4): Record<string, TensorToWrite> {
  return {
    "model.diffusion_model.input_blocks.0.0.weight": t([2, inChannels, 1, 1]),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": t([2, ctx]),
    "model.diffusion_model.input_blocks.3.0.op.weight": t([2, 2, 1, 1]),
    "first_stage_model.encoder.conv_in.weight": t([2, 3, 1, 1]),
    ...te,
  };
}
const sd1Te = (w = 768) => ({ "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": t([2, w]) });
const sd2Te = (w = 1024) => ({ "cond_stage_model.model.token_embedding.weight": t([2, w]) });

describeWithFixtures("sd-tiny single-file checkpoint", () => {
  const cfg = (c: string, f = "config.json") => JSON.parse(readFileSync(fixture("sd-tiny", "model", c, f), "utf8"));
  const configs: SingleFileConfigs = {
    unet: cfg("unet"),
    vae: cfg("vae"),
    text_encoder: cfg("text_encoder"),
    scheduler: cfg("scheduler", "scheduler_config.json"),
  };
  const path = fixture("sd-tiny", "single-file", "sd-tiny.safetensors");
  const folder = (c: string, f: string) => SafetensorsFile.open(fixture("sd-tiny", "model", c, f));

  it("gives the diffusers folder's key sets and bit-identical tensors (unet, vae, text_encoder)", () => {
    const m = openSingleFile(path, { configs });
    try {
      expect(m.family).toBe("unknown"); // tiny dims: no known architecture, configs given explicitly
      expect(m.configs).toBe(configs);
      expect(m.textEncoder2).toBeUndefined();
      expectSameWeights(m.unet, folder("unet", "diffusion_pytorch_model.safetensors"));
      expectSameWeights(m.vae, folder("vae", "diffusion_pytorch_model.safetensors"));
      expectSameWeights(m.textEncoder!, folder("text_encoder", "model.safetensors"));
      // the VAE mid-attention 1x1 convs became Linear weights
      expect(m.vae.info("encoder.mid_block.attentions.0.to_q.weight")!.shape).toEqual([32, 32]);
      expect(new Set([m.unet.fingerprint(), m.vae.fingerprint(), m.textEncoder!.fingerprint()]).size).toBe(3);
    } finally {
      m.close();
    }
  });

  it("infers the block layout from the keys when no configs are given", () => {
    const file = SafetensorsFile.open(path);
    try {
      const parts = convertLdmCheckpoint(file, "unknown");
      expectSameWeights(parts.unet!, folder("unet", "diffusion_pytorch_model.safetensors"));
      expectSameWeights(parts.vae!, folder("vae", "diffusion_pytorch_model.safetensors"));
    } finally {
      file.close();
    }
  });

  it("refuses a config whose layers_per_block contradicts the checkpoint", () => {
    const bad = { ...configs, unet: { ...configs.unet, layers_per_block: 1 } };
    expect(() => openSingleFile(path, { configs: bad })).toThrow(/layers_per_block 1 .* imply 2/);
  });

  it("refuses the tiny file without configs: it matches no known architecture", () => {
    expect(() => openSingleFile(path)).toThrow(/match no known architecture.*--config-from/);
  });

  it("OpenCLIP layouts (SD2 penultimate layer, SDXL with projection) round-trip to the same text encoder", () => {
    const ref = folder("text_encoder", "model.safetensors");
    const r = (k: string) => ref.read(`text_model.${k}`);
    const f32 = (shape: number[], data: Float32Array): TensorToWrite => ({ dtype: "F32", shape, data });
    const D = 16,
      L = 5; // sd-tiny text encoder: hidden 16, 5 layers
    const openClip = (prefix: string, extraLayer: boolean, proj?: Float32Array) => {
      const out: Record<string, TensorToWrite> = {
        [`${prefix}token_embedding.weight`]: f32([49408, D], r("embeddings.token_embedding.weight")),
        [`${prefix}positional_embedding`]: f32([77, D], r("embeddings.position_embedding.weight")),
        [`${prefix}ln_final.weight`]: f32([D], r("final_layer_norm.weight")),
        [`${prefix}ln_final.bias`]: f32([D], r("final_layer_norm.bias")),
        [`${prefix}logit_scale`]: t([]),
        [`${prefix}text_projection`]: proj ? f32([D, D], proj) : t([D, D]),
      };
      for (let i = 0; i < L + (extraLayer ? 1 : 0); i++) {
        const src = i < L ? i : 0,
          l = (k: string) => r(`encoder.layers.${src}.${k}`);
        const cat = (w: string) => new Float32Array([...l(`self_attn.q_proj.${w}`), ...l(`self_attn.k_proj.${w}`), ...l(`self_attn.v_proj.${w}`)]);
        const p = `${prefix}transformer.resblocks.${i}.`;
        out[`${p}attn.in_proj_weight`] = f32([3 * D, D], cat("weight"));
        out[`${p}attn.in_proj_bias`] = f32([3 * D], cat("bias"));
        for (const [o, n] of [
          ["attn.out_proj", "self_attn.out_proj"],
          ["ln_1", "layer_norm1"],
          ["ln_2", "layer_norm2"],
          ["mlp.c_fc", "mlp.fc1"],
          ["mlp.c_proj", "mlp.fc2"],
        ]) {
          for (const w of ["weight", "bias"]) out[`${p}${o}.${w}`] = f32(ref.info(`text_model.encoder.layers.${src}.${n}.${w}`)!.shape, l(`${n}.${w}`));
        }
      }
      return out;
    };
    const ldmUnetVae = (file: SafetensorsFile) =>
      Object.fromEntries(
        file
          .keys()
          .filter((k) => !k.startsWith("cond_stage_model."))
          .map((k) => [k, { dtype: "F32" as const, shape: file.info(k)!.shape, data: file.read(k) }]),
      );
    const base = SafetensorsFile.open(path);
    const unetVae = ldmUnetVae(base);
    base.close();

    // SD2: an unused 6th resblock (the real SD2 file has 24, diffusers keeps 23) and text_projection are dropped
    const sd2 = SafetensorsFile.open(write("sd2-layout.safetensors", { ...unetVae, ...openClip("cond_stage_model.model.", true) }));
    const m2 = convertLdmCheckpoint(sd2, "unknown", { ...configs });
    expectSameWeights(m2.textEncoder!, ref);
    sd2.close();

    // SDXL encoder 2: every resblock kept, text_projection [in, out] -> Linear weight [out, in]
    const proj = t([D, D]).data;
    const xl = SafetensorsFile.open(
      write("xl-layout.safetensors", {
        ...unetVae,
        ...openClip("conditioner.embedders.1.model.", false, proj),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": f32([49408, D], r("embeddings.token_embedding.weight")),
      }),
    );
    const mx = convertLdmCheckpoint(xl, "sdxl");
    const te2 = mx.textEncoder2!;
    expect(
      te2
        .keys()
        .filter((k) => k !== "text_projection.weight")
        .sort(),
    ).toEqual(ref.keys().sort());
    for (const k of ref.keys()) expect(sameBits(te2.read(k, []), ref.read(k))).toBe(true);
    const pt = te2.read("text_projection.weight", [D, D]);
    expect(pt[1 * D + 0]).toBe(proj[0 * D + 1]); // transposed
    expect(pt[3 * D + 7]).toBe(proj[7 * D + 3]);
    expect(mx.textEncoder!.keys()).toEqual(["text_model.embeddings.token_embedding.weight"]);
    xl.close();
  });
});

describe("architecture detection from shapes", () => {
  const family = (tensors: Record<string, TensorToWrite>, name: string) => {
    const f = SafetensorsFile.open(write(name, tensors));
    try {
      return detectFamily(f);
    } finally {
      f.close();
    }
  };

  it("tells SD1, SD2 and SDXL apart by context width and text encoder layout", () => {
    expect(family(synthetic(768, sd1Te()), "sd1.safetensors")).toBe("sd1");
    expect(family(synthetic(768, { "cond_stage_model.transformer.embeddings.token_embedding.weight": t([2, 768]) }), "sd1-old.safetensors")).toBe("sd1");
    expect(family(synthetic(1024, sd2Te()), "sd2.safetensors")).toBe("sd2");
    expect(
      family(
        synthetic(2048, {
          "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": t([2, 768]),
          "conditioner.embedders.1.model.token_embedding.weight": t([2, 1280]),
        }),
        "sdxl.safetensors",
      ),
    ).toBe("sdxl");
  });

  it("says unknown for mismatched or unsupported shapes", () => {
    expect(family(synthetic(1024, sd1Te()), "mixed.safetensors")).toBe("unknown"); // SD2 UNet with a CLIP-L encoder
    expect(family(synthetic(768, sd1Te(), 8), "pix2pix.safetensors")).toBe("unknown"); // instruct-pix2pix UNet (inpainting: checkpoint-inpaint.test.ts)
    expect(family({ "first_stage_model.encoder.conv_in.weight": t([2, 3, 1, 1]) }, "vae-only.safetensors")).toBe("unknown");
  });

  it("shipped configs agree with what detection keys on", () => {
    const sd1 = shippedConfigs("sd1"),
      sd2 = shippedConfigs("sd2"),
      sd2v = shippedConfigs("sd2-v");
    expect((sd1.unet as any).cross_attention_dim).toBe(768);
    expect((sd1.text_encoder as any).hidden_size).toBe(768);
    for (const c of [sd2, sd2v]) {
      expect((c.unet as any).cross_attention_dim).toBe(1024);
      expect((c.unet as any).use_linear_projection).toBe(true);
      expect((c.text_encoder as any).num_hidden_layers).toBe(23); // penultimate of OpenCLIP-H's 24
    }
    expect((sd2.scheduler as any).prediction_type).toBe("epsilon");
    expect((sd2v.scheduler as any).prediction_type).toBe("v_prediction");
    expect([(sd2.unet as any).sample_size, (sd2v.unet as any).sample_size]).toEqual([64, 96]);
  });
});

describe("openSingleFile on synthetic checkpoints", () => {
  it("SD1: shipped configs, ignored extras (EMA, schedule buffers, position_ids)", () => {
    const m = openSingleFile(
      write("sd1-full.safetensors", {
        ...synthetic(768, sd1Te()),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": { dtype: "F32", shape: [1, 77], data: new Float32Array(77) },
        "model_ema.diffusion_modelinput_blocks00weight": t([2, 4, 1, 1]),
        "model_ema.decay": t([]),
        alphas_cumprod: t([10]),
      }),
    );
    try {
      expect(m.family).toBe("sd1");
      expect((m.configs!.unet as any).cross_attention_dim).toBe(768);
      expect(m.unet.keys().sort()).toEqual([
        "conv_in.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.0.downsamplers.0.conv.weight",
      ]);
      expect(m.textEncoder!.keys()).toEqual(["text_model.embeddings.token_embedding.weight"]);
      expect(tokenizerRepoFor(m.family).repo).toBe("openai/clip-vit-large-patch14");
    } finally {
      m.close();
    }
  });

  it("SD2: v_prediction by default, epsilon from the option or the file's metadata", () => {
    const path = write("sd2-full.safetensors", synthetic(1024, sd2Te()));
    const byDefault = openSingleFile(path);
    expect(byDefault.family).toBe("sd2-v");
    expect((byDefault.configs!.scheduler as any).prediction_type).toBe("v_prediction");
    expect(byDefault.description).toMatch(/assumed/);
    expect(predictionTypeHint(byDefault.family)).toMatch(/predictionType "epsilon"/);
    byDefault.close();

    const eps = openSingleFile(path, { predictionType: "epsilon" });
    expect(eps.family).toBe("sd2");
    expect((eps.configs!.unet as any).sample_size).toBe(64);
    expect((eps.configs!.scheduler as any).prediction_type).toBe("epsilon");
    expect(tokenizerRepoFor(eps.family)).toEqual({ repo: "stabilityai/stable-diffusion-2-1", subfolder: "tokenizer" });
    eps.close();

    const meta = openSingleFile(write("sd2-512.safetensors", synthetic(1024, sd2Te()), { "modelspec.architecture": "stable-diffusion-v2-512" }));
    expect(meta.family).toBe("sd2");
    meta.close();
    const meta768 = openSingleFile(write("sd2-768.safetensors", synthetic(1024, sd2Te()), { "modelspec.architecture": "stable-diffusion-v2-768-v" }), {});
    expect(meta768.family).toBe("sd2-v");
    expect(meta768.description).toMatch(/modelspec\.architecture/);
    meta768.close();
  });

  it("reports a tensor the converter does not understand, naming it", () => {
    const path = write("odd.safetensors", { ...synthetic(768, sd1Te()), "model.diffusion_model.input_blocks.1.2.lora_up.weight": t([2, 2]) });
    let err: unknown;
    try {
      openSingleFile(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReimagineError);
    expect((err as ReimagineError).code).toBe("unsupported_model");
    expect((err as Error).message).toMatch(/'model\.diffusion_model\.input_blocks\.1\.2\.lora_up\.weight'/);
  });

  it("refuses a checkpoint without a VAE", () => {
    const { "first_stage_model.encoder.conv_in.weight": _, ...noVae } = synthetic(768, sd1Te());
    expect(() => openSingleFile(write("no-vae.safetensors", noVae))).toThrow(/no vae tensors/);
  });

  it("refuses pickle checkpoints before touching the file", () => {
    for (const ext of ["ckpt", "pt", "bin", "pth"]) {
      let err: unknown;
      try {
        openSingleFile(join(tmp, `does-not-exist.${ext}`));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ReimagineError);
      expect((err as ReimagineError).code).toBe("unsafe_format");
      expect((err as Error).message).toMatch(/arbitrary code.*\.safetensors/);
    }
  });
});
