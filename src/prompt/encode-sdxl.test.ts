// A1111 encoding with SDXL's two text encoders on sdxl-tiny: plain prompts equal diffusers' encode_prompt
// (prompt_embeds = both penultimate layers side by side, pooled = text_encoder_2's text_embeds; atol 1e-4 as the
// fixture's pipeline.prompt_embeds), an empty negative prompt is zeros, weights act on each encoder separately.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { cachedGraph } from "../graph/cache.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../models/clip-text.js";
import { ModelSession } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { parsePromptAttention } from "./attention.js";
import { a1111ClipEncoder } from "./clip-encoder.js";
import { a1111HiddenRules } from "./clip-layers.js";
import { type A1111TextEncoder, applyEmphasis, encodeA1111, encodeA1111Pair } from "./encode.js";

describeWithFixtures(
  "A1111 prompt encoding, SDXL (sdxl-tiny)",
  () => {
    const ref = loadReferenceJson("sdxl-tiny");
    const atol = ref.tolerances["pipeline.prompt_embeds"].atol;
    const cache = mkdtempSync(join(tmpdir(), "reimagine-a1111-xl-"));
    const sessions: ModelSession[] = [];
    let encoders: A1111TextEncoder[];
    beforeAll(async () => {
      const model = fixture("sdxl-tiny", "model");
      const rules = a1111HiddenRules("sdxl");
      encoders = [];
      for (const [i, part] of ["text_encoder", "text_encoder_2"].entries()) {
        const weights = openComponentWeights(join(model, part));
        const config = resolveCLIPTextConfig(readJson(join(model, part, "config.json"), "config"));
        const { path } = cachedGraph({ kind: "text-encoder", config, weights }, () => buildCLIPTextModel(weights, config), cache);
        const session = await ModelSession.load(path, { threads: 1 });
        sessions.push(session);
        const tok = CLIPTokenizer.fromDir(join(model, i === 0 ? "tokenizer" : "tokenizer_2"));
        encoders.push(a1111ClipEncoder(tok, session, rules[i], { pooled: i === 1 }));
      }
    });
    afterAll(async () => {
      await Promise.all(sessions.map((s) => s.release()));
      rmSync(cache, { recursive: true, force: true });
    });

    it("pads with the end token for CLIP-L and with '!' (0) for OpenCLIP-G, as A1111's id_pad", () => {
      expect(encoders.map((e) => e.ids.pad)).toEqual([49407, 0]);
    });

    it("plain prompts equal diffusers' SDXL encode_prompt; an empty negative is zeros", async () => {
      const cases = Object.fromEntries(ref.encode_prompt.cases.map((c: any) => [c.id, c]));
      const { cond, uncond } = await encodeA1111Pair(ref.encode_prompt.prompt, "blurry, low quality", { encoders, zeroEmptyNegative: true });
      const text = cases.cfg_negative_text;
      expect(cond.width).toBe(20);
      expect(maxAbsDiff(cond.hidden, referenceTensor(text.prompt_embeds, "sdxl-tiny").data)).toBeLessThan(atol);
      expect(maxAbsDiff(cond.pooled!, referenceTensor(text.pooled_prompt_embeds, "sdxl-tiny").data)).toBeLessThan(atol);
      expect(maxAbsDiff(uncond.hidden, referenceTensor(text.negative_prompt_embeds, "sdxl-tiny").data)).toBeLessThan(atol);
      expect(maxAbsDiff(uncond.pooled!, referenceTensor(text.negative_pooled_prompt_embeds, "sdxl-tiny").data)).toBeLessThan(atol);
      const empty = await encodeA1111Pair(ref.encode_prompt.prompt, "", { encoders, zeroEmptyNegative: true });
      expect(empty.uncond.hidden.every((v) => v === 0) && empty.uncond.pooled!.every((v) => v === 0)).toBe(true);
      expect(referenceTensor(cases.cfg_negative_none.negative_prompt_embeds, "sdxl-tiny").data.every((v) => v === 0)).toBe(true);
    });

    it("weights apply to each encoder's chunk on its own; the pooled output is the unweighted first chunk's", async () => {
      const plain = await encodeA1111("a red house", { encoders });
      const weighted = await encodeA1111("a (red:1.3) house", { encoders });
      expect(weighted.pooled).toEqual(plain.pooled); // A1111 pools before emphasis
      for (const e of [0, 1]) {
        const rec = weighted.records[e][0];
        expect(rec.zRaw).toEqual(plain.records[e][0].zRaw);
        expect(rec.z).toEqual(applyEmphasis(plain.records[e][0].zRaw, rec.chunk.multipliers));
      }
      expect(parsePromptAttention("a (red:1.3) house")[1]).toEqual(["red", 1.3]);
      // side by side: token t of chunk 0 = [encoder 1 (8 features), encoder 2 (12 features)]
      const t = 2;
      expect(weighted.hidden.subarray(t * 20, t * 20 + 8)).toEqual(weighted.records[0][0].z.subarray(t * 8, t * 8 + 8));
      expect(weighted.hidden.subarray(t * 20 + 8, t * 20 + 20)).toEqual(weighted.records[1][0].z.subarray(t * 12, t * 12 + 12));
    });
  },
  "sdxl-tiny",
);
