// LoRA file reading on hand-made files: kohya and diffusers/PEFT keys, alpha / rank scales (tensor, metadata, pattern,
// missing), CP lora_mid folding, diffusers' old attention-processor keys, and the refusals (corrupt, pickle, LoHa,
// DoRA, foreign keys, inconsistent shapes, NaN).
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { MemoryWeights } from "../weights/memory.js";
import { writeSafetensors } from "../weights/safetensors.js";
import { type LoraTensorSource, parseLora, readLoraFile } from "./file.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-lora-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const seq = (n: number, s = 1) => Float32Array.from({ length: n }, (_, i) => (i + 1) * s);
function source(tensors: Record<string, { shape: number[]; data?: Float32Array | number[] }>, metadata?: Record<string, string>): LoraTensorSource {
  const w = new MemoryWeights(
    Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data ?? seq(t.shape.reduce((a, b) => a * b, 1)) }])),
    "test.safetensors",
  );
  return Object.assign(w, { metadata });
}

describe("LoRA files", () => {
  it("reads kohya modules with their alpha (scale alpha / rank; none -> 1)", () => {
    const f = parseLora(
      source({
        "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": { shape: [4, 8] },
        "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": { shape: [8, 4] },
        "lora_unet_mid_block_attentions_0_proj_in.alpha": { shape: [], data: [2] },
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": { shape: [2, 8] },
        "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": { shape: [16, 2] },
      }),
    );
    expect(f.format).toBe("kohya");
    expect(f.name).toBe("test");
    const [a, b] = f.modules;
    expect(a).toMatchObject({ component: "unet", path: "mid_block_attentions_0_proj_in", dotted: false, scale: 0.5, downShape: [4, 8], upShape: [8, 4] });
    expect(b).toMatchObject({ component: "text_encoder_2", path: "text_model_encoder_layers_0_mlp_fc1", scale: 1 });
  });

  it("reads diffusers/PEFT files with r / lora_alpha and their patterns from lora_adapter_metadata", () => {
    const meta = { "unet.r": 4, "unet.lora_alpha": 3, "unet.rank_pattern": { "resnets.0.conv1": 2 }, "unet.alpha_pattern": { "resnets.0.conv1": 1 } };
    const f = parseLora(
      source(
        {
          "unet.down_blocks.0.resnets.0.conv1.lora_A.weight": { shape: [2, 4, 3, 3] },
          "unet.down_blocks.0.resnets.0.conv1.lora_B.weight": { shape: [4, 2, 1, 1] },
          "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": { shape: [4, 4] },
          "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": { shape: [4, 4] },
          "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": { shape: [4, 4] },
          "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": { shape: [4, 4] },
        },
        { lora_adapter_metadata: JSON.stringify(meta) },
      ),
    );
    expect(f.format).toBe("diffusers");
    expect(f.modules.map((m) => [m.path, m.scale])).toEqual([
      ["down_blocks.0.resnets.0.conv1", 0.5], // pattern: alpha 1 / r 2
      ["down_blocks.0.attentions.0.proj_in", 0.75], // 3 / 4
      ["text_model.encoder.layers.0.self_attn.q_proj", 1], // no text_encoder metadata
    ]);
  });

  it("maps diffusers' attention-processor keys and folds a CP lora_mid into the down kernel", () => {
    const f = parseLora(
      source({
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight": { shape: [1, 2] },
        "unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight": { shape: [2, 1] },
        "lora_unet_conv_in.lora_down.weight": { shape: [2, 3, 1, 1], data: [1, 0, 2, 0, 1, 0] }, // [r=2, in=3]
        "lora_unet_conv_in.lora_mid.weight": { shape: [2, 2, 1, 2], data: [1, 10, 0, 0, 0, 0, 1, 1] }, // [2, 2, kh=1, kw=2]
        "lora_unet_conv_in.lora_up.weight": { shape: [5, 2, 1, 1] },
      }),
    );
    expect(f.modules[0].path).toBe("mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0");
    const conv = f.modules[1];
    expect(conv.downShape).toEqual([2, 3, 1, 2]);
    // out 0 = mid[0,0] * down[0] = [1,10] x [1,0,2]; out 1 = mid[1,1] * down[1] = [1,1] x [0,1,0]
    expect(Array.from(conv.down)).toEqual([1, 10, 0, 0, 2, 20, 0, 0, 1, 1, 0, 0]);
  });

  it("refuses LyCORIS LoHa/LoKr, DoRA, foreign keys and broken modules with a message naming them", () => {
    const err = (t: Record<string, { shape: number[]; data?: number[] }>) => {
      try {
        parseLora(source(t));
      } catch (e) {
        expect(e).toBeInstanceOf(ReimagineError);
        return (e as Error).message;
      }
      throw new Error("no error");
    };
    expect(err({ "lora_unet_x.hada_w1_a": { shape: [1] } })).toMatch(/LoHa/);
    expect(err({ "lora_unet_x.lokr_w1": { shape: [1] } })).toMatch(/LoKr/);
    expect(err({ "lora_unet_x.dora_scale": { shape: [1] } })).toMatch(/DoRA/);
    expect(err({ "model.diffusion_model.conv_in.weight": { shape: [1] } })).toMatch(
      /1 tensor\(s\) are not LoRA weights \(e.g. 'model.diffusion_model.conv_in.weight'\)/,
    );
    expect(err({ "lora_unet_x.lora_down.weight": { shape: [2, 3] } })).toMatch(/'lora_unet_x' has no up/);
    expect(err({ "lora_unet_x.lora_down.weight": { shape: [2, 3] }, "lora_unet_x.lora_up.weight": { shape: [3, 4] } })).toMatch(/do not form a LoRA/);
    expect(err({ "lora_unet_x.lora_down.weight": { shape: [1, 1], data: [NaN] }, "lora_unet_x.lora_up.weight": { shape: [1, 1] } })).toMatch(/NaN/);
  });

  it("refuses corrupt and pickle files with a ReimagineError naming the file", () => {
    const good = join(dir, "good.safetensors");
    writeSafetensors(good, {
      "lora_unet_a.lora_down.weight": { dtype: "F16", shape: [1, 2], data: seq(2) },
      "lora_unet_a.lora_up.weight": { dtype: "F32", shape: [2, 1], data: seq(2) },
    });
    expect(readLoraFile(good).modules[0].down).toEqual(Float32Array.from([1, 2])); // F16 converted
    truncateSync(good, 40);
    expect(() => readLoraFile(good)).toThrow(/good.safetensors.*(truncated|corrupt)/);
    const junk = join(dir, "junk.safetensors");
    writeFileSync(junk, "not a safetensors file at all");
    expect(() => readLoraFile(junk)).toThrow(ReimagineError);
    expect(() => readLoraFile(join(dir, "x.pt"))).toThrow(/pickle/);
    const meta = join(dir, "meta.safetensors");
    writeSafetensors(
      meta,
      { "unet.a.lora_A.weight": { dtype: "F32", shape: [1, 1], data: seq(1) }, "unet.a.lora_B.weight": { dtype: "F32", shape: [1, 1], data: seq(1) } },
      { lora_adapter_metadata: "{oops" },
    );
    expect(() => readLoraFile(meta)).toThrow(/lora_adapter_metadata .* not valid JSON/);
  });
});
