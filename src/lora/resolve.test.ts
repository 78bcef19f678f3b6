// LoRA resolution and merging against the sd-tiny-lora fixture: both file formats resolve to the same 147 layers
// with each module group's own alpha / rank, and the merged weights at multiplier 1.0 and 0.6 equal diffusers'
// fuse_lora (lora.fused_weights: atol 1e-6 + rtol 1e-5); the kohya file renamed to LDM/SGM names (SDXL kohya
// style) resolves the same; a LoRA for another family is refused naming its keys.
import { describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, referenceTensor } from "../../test/fixtures.js";
import { MemoryWeights } from "../weights/memory.js";
import { openComponentWeights } from "../weights/diffusers.js";
import { type LoraFile, parseLora, readLoraFile } from "./file.js";
import { ldmUnetNames, modelModules } from "./names.js";
import { FusedLoraWeights, fuseLayer, type ModelLayers, resolveLora } from "./resolve.js";

describe("resolveLora (literal)", () => {
  const model: ModelLayers = {
    unet: new Map([
      ["conv_in", [2, 1, 3, 3]],
      ["proj", [2, 3]],
    ]),
  };
  const lora = (down: number[], downShape: number[], upShape = [2, 1]) =>
    parseLora(
      Object.assign(
        new MemoryWeights(
          {
            "lora_unet_conv_in.lora_down.weight": { shape: downShape, data: down },
            "lora_unet_conv_in.lora_up.weight": { shape: upShape, data: [1, 2] },
            "lora_unet_conv_in.alpha": { shape: [], data: [0.5] },
          },
          "t.safetensors",
        ),
      ),
    );

  it("merges W + m * alpha/r * up @ down into a conv kernel", () => {
    const r = resolveLora(lora([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]), model);
    const layer = r.layers.unet!.get("conv_in")!;
    expect(layer).toMatchObject({ rank: 1, inF: 1, outF: 2, kernel: 3, scale: 0.5 });
    const w = fuseLayer(new Float32Array(18), layer, 2); // 2 * 0.5 * up[o] * down
    expect(Array.from(w)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  });

  it("refuses a kernel or width that does not fit the layer, naming both shapes", () => {
    expect(() => resolveLora(lora([1], [1, 1, 1, 1]), model)).toThrow(/'lora_unet_conv_in' is \[2, 1\] but 'conv_in' is \[2, 1, 3, 3\].*another model family/);
    expect(() => resolveLora(lora(new Array(18).fill(1), [1, 2, 3, 3]), model)).toThrow(/do not fit/);
  });
});

describeWithFixtures(
  "LoRA merging (sd-tiny-lora)",
  () => {
    const ref = loadReferenceJson("sd-tiny-lora");
    const tol = ref.tolerances["lora.fused_weights"];
    const dir = fixture("sd-tiny", "model");
    const base = { unet: openComponentWeights(`${dir}/unet`), text_encoder: openComponentWeights(`${dir}/text_encoder`) };
    const model: ModelLayers = { unet: modelModules(base.unet), text_encoder: modelModules(base.text_encoder) };
    const files = {
      kohya: readLoraFile(fixture("sd-tiny-lora", "lora", "sd-tiny-lora.safetensors")),
      diffusers: readLoraFile(fixture("sd-tiny-lora", "lora", "sd-tiny-lora.diffusers.safetensors")),
    };

    for (const [format, file] of Object.entries(files)) {
      it(`${format}: every module resolves, with its group's scale`, () => {
        expect(file.format).toBe(format);
        const r = resolveLora(file, model);
        const meta = ref.loras["sd-tiny-lora"].modules;
        for (const c of ["unet", "text_encoder"] as const) {
          expect(r.layers[c]!.size).toBe(meta[c].length);
          for (const m of meta[c]) expect(r.layers[c]!.get(m.module)).toMatchObject({ rank: m.rank, scale: m.scale_alpha_over_rank });
        }
      });

      for (const scale of ["scale1.0", "scale0.6"]) {
        it(`${format}: merged weights at ${scale} equal diffusers' fuse_lora`, () => {
          const fw = ref.fused_weights[scale];
          const r = resolveLora(file, model);
          const m = fw.multipliers["sd-tiny-lora"];
          expect(fw.weights.length).toBe(147);
          let worst = 0;
          for (const w of fw.weights) {
            const c = w.component as "unet" | "text_encoder";
            const fused = new FusedLoraWeights(base[c], c, [{ lora: r, multiplier: m }]).read(w.key, w.value.shape);
            const want = referenceTensor(w.value, "sd-tiny-lora").data;
            for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(fused[i] - want[i]) - tol.rtol * Math.abs(want[i]));
          }
          expect(worst).toBeLessThan(tol.atol);
        });
      }
    }

    it("untargeted weights are unchanged", () => {
      const fused = new FusedLoraWeights(base.unet, "unet", [{ lora: resolveLora(files.kohya, model), multiplier: 1 }]);
      expect(fused.read("conv_in.weight", [16, 4, 3, 3])).toEqual(base.unet.read("conv_in.weight", [16, 4, 3, 3]));
    });

    it("resolves kohya files in the LDM/SGM UNet layout (SDXL kohya LoRAs) to the same layers", () => {
      const ldm = ldmUnetNames([...model.unet!.keys()]);
      const renamed: LoraFile = {
        ...files.kohya,
        modules: files.kohya.modules.map((m) => {
          if (m.component !== "unet") return m;
          const module = [...model.unet!.keys()].find((k) => k.replace(/\./g, "_") === m.path)!;
          return { ...m, path: ldm.get(module)!.replace(/\./g, "_") };
        }),
      };
      expect(renamed.modules.some((m) => m.path.startsWith("input_blocks_"))).toBe(true);
      const a = resolveLora(renamed, model).layers.unet!;
      const b = resolveLora(files.kohya, model).layers.unet!;
      expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    });

    it("refuses a LoRA made for another family, naming some of its keys", () => {
      const xl = fixture("sdxl-tiny", "model");
      const xlModel: ModelLayers = {
        unet: modelModules(openComponentWeights(`${xl}/unet`)),
        text_encoder: modelModules(openComponentWeights(`${xl}/text_encoder`)),
      };
      expect(() => resolveLora(files.kohya, xlModel)).toThrow(
        /LoRA .*sd-tiny-lora.safetensors: \d+ of its 147 modules (match no layer|do not fit).*another model family/,
      );
    });
  },
  "sd-tiny-lora",
);
