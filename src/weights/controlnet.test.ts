// ControlNet loading: diffusers folders, single files in the A1111/ComfyUI cldm layout (written here from the fixture's
// diffusers weights with an independent inverse of the key mapping) giving the folder's tensors and residuals, shape
// detection of full-size SD 1.5 / 2.x / XL layouts, the family check and refusals.
// Ref: diffusers loaders/single_file_utils.py (convert_controlnet_checkpoint); lllyasviel/ControlNet cldm/cldm.py.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { buildControlNetModel, controlNetOutputNames, controlNetScales, resolveControlNetConfig } from "../models/controlnet.js";
import { resolveUNetConfig } from "../models/unet.js";
import { ModelSession, type TensorData } from "../runtime.js";
import { RESNET_TO_LDM, type TensorFile } from "./checkpoint.js";
import { checkControlNetFits, controlNetFromFile, familyOf, openControlNet, shippedControlNetConfig } from "./controlnet.js";
import { controlNetShapeConfig } from "./controlnet-ldm.js";
import { RandomWeights } from "./random.js";
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from "./safetensors.js";
import type { WeightSource } from "./source.js";

const SET = "sd-tiny-controlnet";
const tmp = mkdtempSync(join(tmpdir(), "reimagine-cn-load-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** diffusers ControlNetModel key -> cldm key (the inverse of the loader's mapping, written out independently). */
function toLdm(key: string, lpb: number, hintBlocks: number): string {
  const fixed: [RegExp, (m: RegExpExecArray) => string][] = [
    [/^conv_in\.(\w+)$/, (m) => `input_blocks.0.0.${m[1]}`],
    [/^time_embedding\.linear_([12])\.(\w+)$/, (m) => `time_embed.${m[1] === "1" ? 0 : 2}.${m[2]}`],
    [/^add_embedding\.linear_([12])\.(\w+)$/, (m) => `label_emb.0.${m[1] === "1" ? 0 : 2}.${m[2]}`],
    [/^controlnet_cond_embedding\.conv_in\.(\w+)$/, (m) => `input_hint_block.0.${m[1]}`],
    [/^controlnet_cond_embedding\.blocks\.(\d+)\.(\w+)$/, (m) => `input_hint_block.${2 * (+m[1] + 1)}.${m[2]}`],
    [/^controlnet_cond_embedding\.conv_out\.(\w+)$/, (m) => `input_hint_block.${2 * (hintBlocks + 1)}.${m[1]}`],
    [/^controlnet_down_blocks\.(\d+)\.(\w+)$/, (m) => `zero_convs.${m[1]}.0.${m[2]}`],
    [/^controlnet_mid_block\.(\w+)$/, (m) => `middle_block_out.0.${m[1]}`],
    [/^down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)$/, (m) => `input_blocks.${1 + +m[1] * (lpb + 1) + +m[2]}.0.${RESNET_TO_LDM[m[3]]}.${m[4]}`],
    [/^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/, (m) => `input_blocks.${1 + +m[1] * (lpb + 1) + +m[2]}.1.${m[3]}`],
    [/^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)$/, (m) => `input_blocks.${1 + +m[1] * (lpb + 1) + lpb}.0.op.${m[2]}`],
    [/^mid_block\.resnets\.([01])\.(\w+)\.(\w+)$/, (m) => `middle_block.${m[1] === "0" ? 0 : 2}.${RESNET_TO_LDM[m[2]]}.${m[3]}`],
    [/^mid_block\.attentions\.0\.(.+)$/, (m) => `middle_block.1.${m[1]}`],
  ];
  for (const [re, f] of fixed) {
    const m = re.exec(key);
    if (m) return f(m);
  }
  throw new Error(`toLdm: no cldm name for '${key}'`);
}

const hintBlockCount = (keys: string[]) => new Set(keys.map((k) => /^controlnet_cond_embedding\.blocks\.(\d+)\./.exec(k)?.[1]).filter(Boolean)).size;

/** A tensor file holding only shapes (read() throws): enough for detection and graph building. */
function shapeOnlyFile(entries: [string, number[]][], description: string): TensorFile {
  const m = new Map(entries);
  return {
    description,
    keys: () => [...m.keys()],
    info: (k: string) => (m.has(k) ? { dtype: "F16", shape: m.get(k)! } : undefined),
    read: () => {
      throw new Error("shape-only file");
    },
    fingerprint: () => `shapes:${description}`,
  };
}

/** The stored (torch) shape of a graph parameter: Linear weights are bound transposed, GroupNorm affines as [C, 1, 1]. */
const storedShape = (dims: number[]) => (dims.length === 2 ? [dims[1], dims[0]] : dims.length === 3 ? [dims[0]] : dims);

/** A full-size ControlNet's tensors (cldm names, stored shapes) for a config, from the graph built over random weights. */
function cldmShapes(cfg: ReturnType<typeof resolveControlNetConfig>): [string, number[]][] {
  const params = buildControlNetModel(new RandomWeights(1), cfg).params;
  const keys = params.map((p) => p.name);
  return params.map((p) => [`control_model.${toLdm(p.name, cfg.layers_per_block, hintBlockCount(keys))}`, storedShape(p.dims)]);
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

function expectSameWeights(src: WeightSource, ref: WeightSource) {
  expect(src.keys().sort()).toEqual(ref.keys().sort());
  const bad = ref.keys().filter((k) => {
    const shape = ref.info(k)!.shape;
    return JSON.stringify(src.info(k)?.shape) !== JSON.stringify(shape) || !sameBits(src.read(k, shape), ref.read(k, shape));
  });
  expect(bad).toEqual([]);
}

describeWithFixtures(
  "ControlNet folders and single files (sd-tiny-controlnet)",
  () => {
    const cnDir = fixture(SET, "model", "controlnet");
    const json = JSON.parse(readFileSync(join(cnDir, "config.json"), "utf8"));
    const folderFile = () => SafetensorsFile.open(join(cnDir, "diffusion_pytorch_model.safetensors"));

    /** The fixture's weights written as one .safetensors under cldm keys (`prefix` + ...), F16 or F32. */
    function writeLdm(name: string, prefix: string): string {
      const src = folderFile();
      try {
        const keys = src.keys();
        const out: Record<string, TensorToWrite> = {};
        for (const k of keys)
          out[prefix + toLdm(k, json.layers_per_block, hintBlockCount(keys))] = { dtype: "F32", shape: src.info(k)!.shape, data: src.read(k) };
        const path = join(tmp, name);
        writeSafetensors(path, out, { note: "cldm layout written by controlnet.test.ts" });
        return path;
      } finally {
        src.close();
      }
    }

    it("opens a ControlNet repo folder and a pipeline folder (its controlnet/) alike", () => {
      const a = openControlNet(cnDir);
      const b = openControlNet(fixture(SET, "model"));
      try {
        expect(a.config).toEqual(resolveControlNetConfig(json));
        expect(b.config).toEqual(a.config);
        expect(a.family).toBe("unknown"); // tiny: cross_attention_dim 16
        expect(a.name).toBe("controlnet");
        expect(b.weights.keys().sort()).toEqual(a.weights.keys().sort());
      } finally {
        a.close();
        b.close();
      }
    });

    it("a cldm single file (control_model.* keys) gives the folder's tensors bit for bit, and the same residuals", async () => {
      const path = writeLdm("control_tiny.safetensors", "control_model.");
      const file = openControlNet(path, { config: json });
      const folder = openControlNet(cnDir);
      const sessions: ModelSession[] = [];
      try {
        expect(file.description).toMatch(/ldm ControlNet.*explicit config/);
        expect(file.config).toEqual(folder.config);
        expectSameWeights(file.weights, folder.weights);
        for (const [i, p] of [file, folder].entries()) {
          sessions.push(await ModelSession.load(buildControlNetModel(p.weights, p.config).save(join(tmp, `g${i}`)), { threads: 2 }));
        }
        const ref = loadReferenceJson(SET);
        const cs = ref.controlnet.cases[0];
        const t = (r: { tensor: string }): TensorData => {
          const x = referenceTensor(r, SET);
          return { data: x.data, dims: x.shape };
        };
        const names = controlNetOutputNames(file.config);
        const B = cs.sample.shape[0];
        const feeds = {
          sample: t(cs.sample),
          timestep: { data: new Float32Array(B).fill(cs.timestep.value), dims: [B] },
          encoder_hidden_states: t(cs.encoder_hidden_states),
          controlnet_cond: t(cs.controlnet_cond),
          conditioning_scales: { data: controlNetScales(names.down.length, cs.conditioning_scale, cs.guess_mode), dims: [names.down.length + 1] },
        };
        const [a, b] = await Promise.all(sessions.map((s) => s.run(feeds)));
        for (const n of [...names.down, names.mid]) expect(sameBits(a[n].data as Float32Array, b[n].data as Float32Array), n).toBe(true);
        expect(maxAbsDiff(a[names.mid].data as Float32Array, referenceTensor(cs.mid_block_res_sample, SET).data)).toBeLessThan(ref.tolerances.controlnet.atol);
      } finally {
        for (const s of sessions) await s.release();
        file.close();
        folder.close();
      }
    });

    it("reads the architecture off the shapes; the tiny one matches no family, so it needs its config", () => {
      const path = writeLdm("control_bare.safetensors", ""); // thibaud's SD 2.1 files: cldm keys without control_model.
      const file = SafetensorsFile.open(path);
      try {
        const parts = controlNetFromFile(file, "control_bare", { config: json });
        const shapes = controlNetShapeConfig(parts.weights);
        for (const k of Object.keys(shapes) as (keyof typeof shapes)[]) {
          if (k === "projection_class_embeddings_input_dim" || k === "addition_embed_type") expect(shapes[k], k).toBeNull();
          else expect(shapes[k], k).toEqual(json[k] ?? resolveControlNetConfig(json)[k]);
        }
        expect(() => controlNetFromFile(file, "control_bare")).toThrow(/cross-attention width 16 matches no known family.*config\.json/);
      } finally {
        file.close();
      }
    });

    it("a single file with diffusers keys loads as is", () => {
      const src = folderFile();
      const path = join(tmp, "diffusers_keys.safetensors");
      try {
        writeSafetensors(path, Object.fromEntries(src.keys().map((k) => [k, { dtype: "F16" as const, shape: src.info(k)!.shape, data: src.read(k) }])));
      } finally {
        src.close();
      }
      const p = openControlNet(path, { config: json });
      try {
        expect(p.description).toMatch(/diffusers ControlNet/);
        expect(p.weights.info("controlnet_mid_block.weight")).toEqual({ dtype: "F16", shape: [32, 32, 1, 1] });
      } finally {
        p.close();
      }
    });
  },
  SET,
);

describe("full-size single-file ControlNets: architecture and family from shapes", () => {
  for (const family of ["sd1", "sd2", "sdxl"] as const) {
    it(`${family}: a cldm file of the shipped architecture detects to the shipped config and binds every tensor`, () => {
      const want = resolveControlNetConfig(shippedControlNetConfig(family));
      const shapes = cldmShapes(want);
      const file = shapeOnlyFile(shapes, `control_${family}.safetensors`);
      const parts = controlNetFromFile(file, `control_v11p_${family}_scribble`);
      expect(parts.family).toBe(family);
      expect(parts.config).toEqual(want);
      expect(parts.description).toMatch(/architecture from tensor shapes/);
      const g = buildControlNetModel(parts.weights, parts.config); // strict binding: every cldm tensor named and shaped
      expect(g.params).toHaveLength(shapes.length);
    });
  }

  it("a shuffle ControlNet gets global pooling, as sd-webui-controlnet decides it by name", () => {
    const file = shapeOnlyFile(cldmShapes(resolveControlNetConfig(shippedControlNetConfig("sd1"))), "x");
    expect(controlNetFromFile(file, "control_v11e_sd15_shuffle").config.global_pool_conditions).toBe(true);
  });

  it("refuses pickles, missing files, and files that hold no ControlNet", () => {
    expect(() => openControlNet("models/control_sd15_scribble.pth")).toThrow(/pickle files .* refused.*\.safetensors/);
    expect(() => openControlNet(join(tmp, "nope.safetensors"))).toThrow(/not found/);
    expect(() => controlNetFromFile(shapeOnlyFile([["model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3]]], "sd.safetensors"), "sd")).toThrow(
      /not a ControlNet.*Stable Diffusion checkpoint/,
    );
    const withExtra = shapeOnlyFile(
      [
        ["control_model.input_hint_block.0.weight", [16, 3, 3, 3]],
        ["control_model.lora_up.weight", [4, 4]],
      ],
      "lora.safetensors",
    );
    expect(() => controlNetFromFile(withExtra, "x")).toThrow(/not understood as a ControlNet.*control_model\.lora_up\.weight/);
  });
});

describe("checkControlNetFits", () => {
  const unet = (json: Record<string, unknown>) => resolveUNetConfig({ block_out_channels: [320, 640, 1280, 1280], ...json });
  const sd1 = { name: "control_v11p_sd15_scribble", config: resolveControlNetConfig(shippedControlNetConfig("sd1")) };
  it("accepts a ControlNet of the model's family and layout", () => {
    expect(() => checkControlNetFits(sd1, unet({ cross_attention_dim: 768 }), "runwayml/stable-diffusion-v1-5")).not.toThrow();
  });
  it("refuses another family in one line naming both", () => {
    expect(() => checkControlNetFits(sd1, unet({ cross_attention_dim: 1024, attention_head_dim: [5, 10, 20, 20] }), "stabilityai/sd-turbo")).toThrow(
      /^ControlNet 'control_v11p_sd15_scribble' is for SD 1\.x \(cross_attention_dim 768\) but the model 'stabilityai\/sd-turbo' is SD 2\.x \(cross_attention_dim 1024\); use a ControlNet made for SD 2\.x$/,
    );
    const xl = unet({
      cross_attention_dim: 2048,
      addition_embed_type: "text_time",
      addition_time_embed_dim: 256,
      projection_class_embeddings_input_dim: 2816,
      block_out_channels: [320, 640, 1280],
      down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
      up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    });
    expect(familyOf(xl)).toBe("sdxl");
    expect(() => checkControlNetFits(sd1, xl, "sdxl-base")).toThrow(/is for SD 1\.x .* the model 'sdxl-base' is SDXL/);
  });
  it("refuses the same family with another encoder layout", () => {
    expect(() => checkControlNetFits(sd1, unet({ cross_attention_dim: 768, layers_per_block: 1 }), "small")).toThrow(
      /does not match the model 'small' \(both SD 1\.x/,
    );
  });
});
