// The sd-tiny UNet and text encoder built with LoRA slots, fed the sd-tiny-lora fixture (both file formats) through
// loraFeeds: the text encoder gives the pipeline cases' prompt_embeds and the UNet their first noise prediction
// (diffusers' references, atol 1e-4 as the fixture's unet / pipeline.prompt_embeds), the UNet equals the
// merged-weight UNet, the <lora:...:0.8> tag case equals case lora0.8, and weight 0 / no LoRA equal the plain graphs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { cachedGraph } from "../graph/cache.js";
import { type LoraSlot, slotsFromInputs } from "../graph/lora-slots.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../models/unet.js";
import { a1111ClipEncoder } from "../prompt/clip-encoder.js";
import { a1111HiddenRules } from "../prompt/clip-layers.js";
import { encodeA1111 } from "../prompt/encode.js";
import { extractLoraTags } from "../prompt/extra-networks.js";
import { ModelSession } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import type { WeightSource } from "../weights/source.js";
import { type ActiveLora, loraFeeds } from "./feeds.js";
import { readLoraFile } from "./file.js";
import { modelModules } from "./names.js";
import { FusedLoraWeights, type ResolvedLora, resolveLora } from "./resolve.js";

describeWithFixtures(
  "LoRA slot graphs (sd-tiny + sd-tiny-lora)",
  () => {
    const ref = loadReferenceJson("sd-tiny-lora");
    const atol = ref.tolerances.unet.atol;
    const model = fixture("sd-tiny", "model");
    const cache = mkdtempSync(join(tmpdir(), "reimagine-lora-graphs-"));
    const unetWeights = openComponentWeights(join(model, "unet"));
    const teWeights = openComponentWeights(join(model, "text_encoder"));
    const unetConfig = resolveUNetConfig(readJson(join(model, "unet", "config.json"), "config"));
    const teConfig = resolveCLIPTextConfig(readJson(join(model, "text_encoder", "config.json"), "config"));
    const tokenizer = CLIPTokenizer.fromDir(join(model, "tokenizer"));
    const layers = { unet: modelModules(unetWeights), text_encoder: modelModules(teWeights) };
    const loras: Record<string, ResolvedLora> = {
      kohya: resolveLora(readLoraFile(fixture("sd-tiny-lora", "lora", "sd-tiny-lora.safetensors")), layers),
      diffusers: resolveLora(readLoraFile(fixture("sd-tiny-lora", "lora", "sd-tiny-lora.diffusers.safetensors")), layers),
    };
    const sessions: ModelSession[] = [];
    const load = async (kind: string, weights: WeightSource, build: () => ReturnType<typeof buildUNet2DConditionModel>, extra?: unknown) => {
      const s = await ModelSession.load(cachedGraph({ kind, config: kind, weights, extra }, build, cache).path, { threads: 1 });
      sessions.push(s);
      return s;
    };
    let unet: ModelSession, unetPlain: ModelSession, te: ModelSession, tePlain: ModelSession;
    let unetSlots: LoraSlot[], teSlots: LoraSlot[];
    beforeAll(async () => {
      unet = await load("unet", unetWeights, () => buildUNet2DConditionModel(unetWeights, unetConfig, { loraSlots: true }), "slots");
      unetPlain = await load("unet", unetWeights, () => buildUNet2DConditionModel(unetWeights, unetConfig));
      te = await load("te", teWeights, () => buildCLIPTextModel(teWeights, teConfig, { loraSlots: true }), "slots");
      tePlain = await load("te", teWeights, () => buildCLIPTextModel(teWeights, teConfig));
      unetSlots = slotsFromInputs(unet.inputNames, (k) => unetWeights.info(k)?.shape);
      teSlots = slotsFromInputs(te.inputNames, (k) => teWeights.info(k)?.shape);
    });
    afterAll(async () => {
      await Promise.all(sessions.map((s) => s.release()));
      rmSync(cache, { recursive: true, force: true });
    });

    const caseById = (id: string) => ref.pipeline.cases.find((c: any) => c.id === id);
    const unetInputs = (c: any) => {
      const sample = referenceTensor(c.unet_first_call.latent_model_input, "sd-tiny-lora");
      const neg = referenceTensor(c.negative_prompt_embeds, "sd-tiny-lora");
      const pos = referenceTensor(c.prompt_embeds, "sd-tiny-lora");
      const ehs = new Float32Array(neg.data.length * 2);
      ehs.set(neg.data);
      ehs.set(pos.data, neg.data.length); // diffusers: cat([negative, prompt])
      return {
        sample: { data: sample.data, dims: sample.shape },
        timestep: { data: new Float32Array(2).fill(c.unet_first_call.timestep), dims: [2] },
        encoder_hidden_states: { data: ehs, dims: [2, ...neg.shape.slice(1)] },
      };
    };
    const encoder = (feeds: ReturnType<typeof loraFeeds>) => a1111ClipEncoder(tokenizer, te, a1111HiddenRules("sd1")[0], { extraFeeds: feeds });

    it("has a slot for every Linear/Conv2d of the UNet and of the text encoder", () => {
      expect(unetSlots.length).toBe(layers.unet.size);
      expect(teSlots.length).toBe([...layers.text_encoder.keys()].filter((m) => m.includes(".encoder.layers.")).length);
    });

    for (const [id, multiplier] of [
      ["lora1.0", 1.0],
      ["lora0.6_cross_attention_kwargs", 0.6],
      ["lora0.8", 0.8],
    ] as const) {
      for (const format of ["kohya", "diffusers"]) {
        it(`${format} at ${multiplier}: text encoder and UNet match diffusers (case ${id})`, async () => {
          const c = caseById(id);
          const active: ActiveLora[] = [{ lora: loras[format], multiplier }];
          const enc = encoder(loraFeeds(teSlots, "text_encoder", active));
          const cond = await encodeA1111(c.inputs.prompt, { encoders: [enc] });
          const uncond = await encodeA1111(c.inputs.negative_prompt, { encoders: [enc] });
          expect(maxAbsDiff(cond.hidden, referenceTensor(c.prompt_embeds, "sd-tiny-lora").data)).toBeLessThan(atol);
          expect(maxAbsDiff(uncond.hidden, referenceTensor(c.negative_prompt_embeds, "sd-tiny-lora").data)).toBeLessThan(atol);
          const out = await unet.run({ ...unetInputs(c), ...loraFeeds(unetSlots, "unet", active) });
          const want = referenceTensor(c.unet_first_call.noise_pred_before_guidance, "sd-tiny-lora").data;
          expect(maxAbsDiff(out.out_sample.data as Float32Array, want)).toBeLessThan(atol);
        });
      }
    }

    it("the fused case (lora0.6_fused) and the merged-weight UNet agree with the slot UNet", async () => {
      const c = caseById("lora0.6_fused");
      const active = [{ lora: loras.kohya, multiplier: 0.6 }];
      const fused = await load("unet", new FusedLoraWeights(unetWeights, "unet", active), () =>
        buildUNet2DConditionModel(new FusedLoraWeights(unetWeights, "unet", active), unetConfig),
      );
      const slot = (await unet.run({ ...unetInputs(c), ...loraFeeds(unetSlots, "unet", active) })).out_sample.data as Float32Array;
      const merged = (await fused.run(unetInputs(c))).out_sample.data as Float32Array;
      expect(maxAbsDiff(slot, merged)).toBeLessThan(atol);
      expect(maxAbsDiff(slot, referenceTensor(c.unet_first_call.noise_pred_before_guidance, "sd-tiny-lora").data)).toBeLessThan(atol);
    });

    it("the <lora:sd-tiny-lora:0.8> tag case equals case lora0.8", async () => {
      const tag = ref.tag_syntax.pipeline_case;
      const { prompt, loras: tags } = extractLoraTags(tag.prompt_with_tags);
      expect(prompt).toBe(tag.cleaned_prompt);
      const active = tags.map((t) => ({ lora: loras.kohya, multiplier: t.te }));
      const cond = await encodeA1111(prompt, { encoders: [encoder(loraFeeds(teSlots, "text_encoder", active))] });
      expect(maxAbsDiff(cond.hidden, referenceTensor(caseById("lora0.8").prompt_embeds, "sd-tiny-lora").data)).toBeLessThan(atol);
    });

    it("weight 0 and no LoRA equal the plain graphs bit for bit; switching back and forth changes nothing else", async () => {
      const c = caseById("lora1.0");
      const plain = (await unetPlain.run(unetInputs(c))).out_sample.data;
      const none = loraFeeds(unetSlots, "unet", []);
      const zero = loraFeeds(unetSlots, "unet", [{ lora: loras.kohya, multiplier: 0 }]);
      const one = loraFeeds(unetSlots, "unet", [{ lora: loras.kohya, multiplier: 1 }]);
      const first = (await unet.run({ ...unetInputs(c), ...one })).out_sample.data;
      expect((await unet.run({ ...unetInputs(c), ...none })).out_sample.data).toEqual(plain);
      expect((await unet.run({ ...unetInputs(c), ...zero })).out_sample.data).toEqual(plain);
      expect((await unet.run({ ...unetInputs(c), ...one })).out_sample.data).toEqual(first);
      const ids = { data: BigInt64Array.from(tokenizer.call("a photo").inputIds, BigInt), dims: [1, 77] };
      const tePlainOut = (await tePlain.run({ input_ids: ids })).last_hidden_state.data;
      expect((await te.run({ input_ids: ids, ...loraFeeds(teSlots, "text_encoder", []) })).last_hidden_state.data).toEqual(tePlainOut);
    });
  },
  "sd-tiny-lora",
);
