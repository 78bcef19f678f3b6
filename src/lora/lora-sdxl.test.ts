// SDXL LoRAs on sdxl-tiny (no reference numbers there): a random kohya file in the SGM/LDM UNet layout with
// lora_te1_/lora_te2_ text-encoder keys, and the same LoRA in diffusers layout, resolve to the same layers; with
// them, the slot UNet (text_time inputs) and both slot text encoders equal the merged-weight graphs (fp32, 1e-4) on an
// emphasised prompt, and weight 0 or no LoRA equals the plain graphs bit for bit.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { cachedGraph } from "../graph/cache.js";
import { slotsFromInputs } from "../graph/lora-slots.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../models/unet.js";
import { a1111ClipEncoder } from "../prompt/clip-encoder.js";
import { a1111HiddenRules } from "../prompt/clip-layers.js";
import { encodeA1111 } from "../prompt/encode.js";
import { ModelSession } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { type TensorToWrite, writeSafetensors } from "../weights/safetensors.js";
import type { WeightSource } from "../weights/source.js";
import { type ActiveLora, loraFeeds } from "./feeds.js";
import { type LoraComponent, readLoraFile } from "./file.js";
import { ldmUnetNames, modelModules } from "./names.js";
import { FusedLoraWeights, type ResolvedLora, resolveLora } from "./resolve.js";

describeWithFixtures(
  "SDXL LoRA (sdxl-tiny)",
  () => {
    const ref = loadReferenceJson("sdxl-tiny");
    const root = fixture("sdxl-tiny", "model");
    const dir = mkdtempSync(join(tmpdir(), "reimagine-lora-xl-"));
    const parts = { unet: "unet", text_encoder: "text_encoder", text_encoder_2: "text_encoder_2" } as const;
    const weights = Object.fromEntries(Object.keys(parts).map((c) => [c, openComponentWeights(join(root, c))])) as Record<LoraComponent, WeightSource>;
    const layers = Object.fromEntries(Object.entries(weights).map(([c, w]) => [c, modelModules(w)])) as Record<LoraComponent, Map<string, number[]>>;
    const unetConfig = resolveUNetConfig(readJson(join(root, "unet", "config.json"), "config"));
    const teConfig = (c: string) => resolveCLIPTextConfig(readJson(join(root, c, "config.json"), "config"));

    // a random LoRA over the attention, resnet and sampler layers and both text encoders' encoder layers
    let seed = 7;
    const next = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 31 - 1;
    };
    const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => next() * scale);
    const targets = (c: LoraComponent) =>
      [...layers[c].entries()].filter(([m]) => (c === "unet" ? /\.(attentions|resnets|downsamplers|upsamplers)\./.test(m) : m.includes(".encoder.layers.")));
    const ldm = ldmUnetNames([...layers.unet.keys()]);
    const kohya: Record<string, TensorToWrite> = {};
    const diffusers: Record<string, TensorToWrite> = {};
    const kohyaPrefix = { unet: "lora_unet", text_encoder: "lora_te1", text_encoder_2: "lora_te2" };
    for (const c of Object.keys(parts) as LoraComponent[]) {
      for (const [m, shape] of targets(c)) {
        const [out, inF] = shape;
        const k = shape.length === 4 ? shape[2] : 1;
        const rank = c === "unet" && k === 3 ? 2 : 3;
        const down = {
          dtype: "F32" as const,
          shape: k > 1 || shape.length === 4 ? [rank, inF, k, k] : [rank, inF],
          data: rand(rank * inF * k * k, 1 / Math.sqrt(inF * k * k)),
        };
        const up = { dtype: "F32" as const, shape: shape.length === 4 ? [out, rank, 1, 1] : [out, rank], data: rand(out * rank, 0.5 / Math.sqrt(rank)) };
        const name = `${kohyaPrefix[c]}_${(c === "unet" ? ldm.get(m)! : m).replace(/\./g, "_")}`;
        Object.assign(kohya, {
          [`${name}.lora_down.weight`]: down,
          [`${name}.lora_up.weight`]: up,
          [`${name}.alpha`]: { dtype: "F32", shape: [], data: Float32Array.of(rank) },
        });
        Object.assign(diffusers, { [`${c}.${m}.lora_A.weight`]: down, [`${c}.${m}.lora_B.weight`]: up });
      }
    }
    writeSafetensors(join(dir, "xl-kohya.safetensors"), kohya);
    writeSafetensors(join(dir, "xl-diffusers.safetensors"), diffusers);
    let lora: ResolvedLora;

    const sessions: ModelSession[] = [];
    const load = async (kind: string, w: WeightSource, build: () => ReturnType<typeof buildUNet2DConditionModel>, extra?: unknown) => {
      const s = await ModelSession.load(cachedGraph({ kind, config: kind, weights: w, extra }, build, dir).path, { threads: 1 });
      sessions.push(s);
      return s;
    };
    afterAll(async () => {
      await Promise.all(sessions.map((s) => s.release()));
      rmSync(dir, { recursive: true, force: true });
    });
    beforeAll(() => {
      lora = resolveLora(readLoraFile(join(dir, "xl-kohya.safetensors")), layers);
    });

    it("resolves the SGM-layout kohya file and the diffusers file to the same layers", () => {
      expect(Object.keys(kohya).some((k) => k.startsWith("lora_unet_input_blocks_") || k.startsWith("lora_unet_output_blocks_"))).toBe(true);
      const other = resolveLora(readLoraFile(join(dir, "xl-diffusers.safetensors")), layers);
      for (const c of Object.keys(parts) as LoraComponent[]) {
        expect(lora.layers[c]!.size).toBe(targets(c).length);
        expect([...lora.layers[c]!.keys()].sort()).toEqual([...other.layers[c]!.keys()].sort());
      }
    });

    it("UNet: slots equal the merged weights; weight 0 and no LoRA equal the plain UNet bit for bit", async () => {
      const cs = ref.unet.cases[0];
      const sample = referenceTensor(cs.sample, "sdxl-tiny");
      const B = sample.shape[0];
      const tv = cs.timestep.value;
      const feeds = {
        sample: { data: sample.data, dims: sample.shape },
        timestep: { data: Float32Array.from(Array.isArray(tv) ? tv : Array.from({ length: B }, () => tv)), dims: [B] },
        encoder_hidden_states: (({ data, shape }) => ({ data, dims: shape }))(referenceTensor(cs.encoder_hidden_states, "sdxl-tiny")),
        text_embeds: (({ data, shape }) => ({ data, dims: shape }))(referenceTensor(cs.text_embeds, "sdxl-tiny")),
        time_ids: (({ data, shape }) => ({ data, dims: shape }))(referenceTensor(cs.time_ids_tensor, "sdxl-tiny")),
      };
      const active: ActiveLora[] = [{ lora, multiplier: 0.7 }];
      const w = weights.unet;
      const slots = await load("unet", w, () => buildUNet2DConditionModel(w, unetConfig, { loraSlots: true }), "slots");
      const plain = await load("unet", w, () => buildUNet2DConditionModel(w, unetConfig));
      const fusedW = new FusedLoraWeights(w, "unet", active);
      const fused = await load("unet", fusedW, () => buildUNet2DConditionModel(fusedW, unetConfig));
      const s = slotsFromInputs(slots.inputNames, (k) => w.info(k)?.shape);
      const out = async (sess: ModelSession, extra = {}) => (await sess.run({ ...feeds, ...extra })).out_sample.data as Float32Array;
      const base = await out(plain);
      const withLora = await out(slots, loraFeeds(s, "unet", active));
      expect(maxAbsDiff(withLora, await out(fused))).toBeLessThan(ref.tolerances.unet.atol);
      expect(maxAbsDiff(withLora, base)).toBeGreaterThan(1e-3);
      expect(await out(slots, loraFeeds(s, "unet", [{ lora, multiplier: 0 }]))).toEqual(base);
      expect(await out(slots, loraFeeds(s, "unet", []))).toEqual(base);
    });

    it("text encoders: an emphasised prompt with the LoRA equals the merged encoders; weight 0 equals no LoRA", async () => {
      const rules = a1111HiddenRules("sdxl");
      const loaded = new Map<string, Promise<ModelSession>>();
      const encoders = async (variant: "slots" | "plain" | "fused", multiplier: number) =>
        Promise.all(
          (["text_encoder", "text_encoder_2"] as const).map(async (c, i) => {
            const active: ActiveLora[] = [{ lora, multiplier }];
            const w = variant === "fused" ? new FusedLoraWeights(weights[c], c, active) : weights[c];
            const id = `${c}/${variant}`;
            if (!loaded.has(id))
              loaded.set(
                id,
                load(c, w, () => buildCLIPTextModel(w, teConfig(c), { loraSlots: variant === "slots" }), variant),
              );
            const sess = await loaded.get(id)!;
            const extraFeeds =
              variant === "slots"
                ? loraFeeds(
                    slotsFromInputs(sess.inputNames, (k) => weights[c].info(k)?.shape),
                    c,
                    active,
                  )
                : undefined;
            return a1111ClipEncoder(CLIPTokenizer.fromDir(join(root, i === 0 ? "tokenizer" : "tokenizer_2")), sess, rules[i], { pooled: i === 1, extraFeeds });
          }),
        );
      const prompt = "a (red:1.3) house, [blurry]";
      const slot = await encodeA1111(prompt, { encoders: await encoders("slots", 0.7) });
      const merged = await encodeA1111(prompt, { encoders: await encoders("fused", 0.7) });
      const plain = await encodeA1111(prompt, { encoders: await encoders("plain", 0) });
      expect(maxAbsDiff(slot.hidden, merged.hidden)).toBeLessThan(ref.tolerances["pipeline.prompt_embeds"].atol);
      expect(maxAbsDiff(slot.pooled!, merged.pooled!)).toBeLessThan(ref.tolerances["pipeline.prompt_embeds"].atol);
      expect(maxAbsDiff(slot.hidden, plain.hidden)).toBeGreaterThan(1e-3);
      const zero = await encodeA1111(prompt, { encoders: await encoders("slots", 0) });
      expect(zero.hidden).toEqual(plain.hidden);
      expect(zero.pooled).toEqual(plain.pooled);
    });
  },
  "sdxl-tiny",
);
