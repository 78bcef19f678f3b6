// A1111 prompt encoding: literal chunking/emphasis tests, then every embeddings case of the sd-tiny-lora/prompt-syntax
// fixture on the real sd-tiny text encoder (tokens and multipliers exact; z before/after emphasis and the final tensor
// within the fixture's prompt_syntax.embeddings atol 1e-4), the padded prompt/negative pairs of its pipeline cases,
// and plain prompts: A1111 encoding and the pipeline's step 3 (either syntax) equal diffusers' encode_prompt bit for bit.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, maxAbsDiff } from "../../test/fixtures.js";
import { openDiffusersFolder, StableDiffusionModel } from "../pipeline/components.js";
import { Img2ImgPipeline } from "../pipeline/img2img.js";
import { hiddenLayer, runTextEncoder } from "../pipeline/text-encoding.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import { parsePromptAttention } from "./attention.js";
import { chunkPrompt, emptyChunk, encoderIds } from "./chunks.js";
import { a1111ClipEncoder } from "./clip-encoder.js";
import { a1111HiddenRules, textFamily } from "./clip-layers.js";
import { type A1111TextEncoder, applyEmphasis, encodeA1111, encodeA1111Pair } from "./encode.js";

const IDS = { start: 100, end: 101, pad: 101, comma: 7 };
/** A toy tokenizer: one id per word, "," -> 7, other words -> 10 + word length. */
const toyTokenize = (t: string) =>
  t
    .split(/(,)|\s+/)
    .filter((w) => w)
    .map((w) => (w === "," ? 7 : 10 + w.length));

describe("A1111 chunking (literal)", () => {
  const chunk = (prompt: string, opts = {}) => {
    const pieces = parsePromptAttention(prompt);
    return chunkPrompt(
      pieces,
      pieces.map(([t]) => toyTokenize(t)),
      IDS,
      { chunkLength: 5, ...opts },
    );
  };

  it("closes chunks to start + 5 + end, padding with the end token; weights follow the tokens", () => {
    const { chunks, tokenCount } = chunk("a (bb:1.5) ccc");
    expect(chunks).toEqual([{ tokens: [100, 11, 12, 13, 101, 101, 101], multipliers: [1, 1, 1.5, 1, 1, 1, 1], embeddings: [] }]);
    expect(tokenCount).toBe(3);
  });

  it("BREAK closes a chunk (a leading BREAK gives an all-padding chunk, a trailing one nothing)", () => {
    expect(chunk("a BREAK b").chunks.map((c) => c.tokens)).toEqual([
      [100, 11, 101, 101, 101, 101, 101],
      [100, 11, 101, 101, 101, 101, 101],
    ]);
    expect(chunk("BREAK b").chunks.length).toBe(2);
    expect(chunk("b BREAK").chunks.length).toBe(1);
    expect(chunk("").chunks).toEqual([emptyChunk(IDS, 5)]);
  });

  it("backtracks to a comma within commaBacktrack tokens when a chunk overflows", () => {
    // a b , c d | e : the 6th token arrives at a full chunk; the comma is 3 tokens back -> "c d" moves
    expect(chunk("a b , c d e").chunks.map((c) => c.tokens.slice(1, 6))).toEqual([
      [11, 11, 7, 101, 101],
      [11, 11, 11, 101, 101],
    ]);
    expect(chunk("a b , c d e", { commaBacktrack: 1 }).chunks.map((c) => c.tokens.slice(1, 6))).toEqual([
      [11, 11, 7, 11, 11],
      [11, 101, 101, 101, 101],
    ]);
  });

  it("pads after the first end token for OpenCLIP tokenizers (SD2)", () => {
    const c = chunk("a").chunks[0];
    expect(encoderIds(c, { ...IDS, pad: 0 })).toEqual([100, 11, 101, 0, 0, 0, 0]);
  });

  it("emphasis multiplies, then restores the chunk mean; weights 1 leave z bit for bit", () => {
    const z = Float32Array.from([1, 2, 3, 4, 5, 6]); // 3 tokens x 2
    expect(applyEmphasis(z, [1, 1, 1])).toEqual(z);
    const w = applyEmphasis(z, [1, 2, 1]); // [1,2,6,8,5,6] (mean 14/3) rescaled to mean 3.5
    const want = [1, 2, 6, 8, 5, 6].map((v) => (v * 3.5) / (28 / 6));
    for (const [i, v] of w.entries()) expect(v).toBeCloseTo(want[i], 6);
  });

  it("pads the shorter of prompt and negative with the encoding of the empty prompt", async () => {
    const enc: A1111TextEncoder = {
      tokenize: (ts) => ts.map(toyTokenize),
      ids: IDS,
      encode: async (ids) => ({ hidden: Float32Array.from(ids) }), // D = 1: the ids themselves
    };
    const long = Array.from({ length: 80 }, () => "w").join(" ");
    const { cond, uncond } = await encodeA1111Pair(long, "x", { encoders: [enc] });
    expect([cond.chunks, uncond.chunks]).toEqual([2, 2]);
    expect(Array.from(uncond.hidden.subarray(77))).toEqual([100, ...new Array(76).fill(101)]);
    const zeroed = await encodeA1111Pair("x", "", { encoders: [enc], zeroEmptyNegative: true });
    expect(zeroed.uncond.hidden.every((v) => v === 0)).toBe(true);
  });
});

describeWithFixtures("A1111 prompt encoding (sd-tiny-lora/prompt-syntax on sd-tiny)", () => {
  const dir = fixture("sd-tiny-lora", "prompt-syntax");
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
  const tensors = SafetensorsFile.open(join(dir, "tensors.safetensors"));
  const tensor = (r: { tensor: string }) => tensors.read(r.tensor);
  const atol = ref.tolerances["prompt_syntax.embeddings"].atol;
  const cache = mkdtempSync(join(tmpdir(), "reimagine-a1111-"));
  let model: StableDiffusionModel;
  let pipe: Img2ImgPipeline;
  const encoder = (clipSkip = 0) => {
    const te = model.components.text_encoder!;
    return a1111ClipEncoder(te.tokenizer, te.session, a1111HiddenRules("sd1", clipSkip)[0]);
  };
  /** Today's path: diffusers' encode_prompt (tokenizer call with truncation, one encoder run; text-encoding.ts). */
  const today = async (prompt: string, clipSkip = 0) => {
    const out = await runTextEncoder(model.components.text_encoder!, prompt);
    return clipSkip === 0 ? (out.last_hidden_state.data as Float32Array) : hiddenLayer(out.normed_hidden_states, -(clipSkip + 1));
  };
  /** The pipeline's step 3 for one image without CFG. */
  const step3 = async (prompt: string, clipSkip: number, promptSyntax?: "a1111" | "none") =>
    (await pipe.encodePrompt({ prompt, clipSkip, cfg: false, numImages: 1, height: 64, width: 64, promptSyntax })).unetInputs.encoder_hidden_states.data;
  beforeAll(async () => {
    model = await StableDiffusionModel.load(openDiffusersFolder(fixture("sd-tiny", "model")), { cacheDir: cache, threads: 1 });
    pipe = new Img2ImgPipeline(model);
  });
  afterAll(async () => {
    tensors.close();
    await model?.release();
    rmSync(cache, { recursive: true, force: true });
  });

  it("uses A1111's SD1 ids and rules", () => {
    expect(encoder().ids).toEqual({ start: ref.options.id_start, end: ref.options.id_end, pad: ref.options.id_pad, comma: ref.options.comma_token });
    expect(textFamily(model.family, model.components.text_encoder!.config)).toBe("sd1");
  });

  for (const c of ref.embeddings as any[]) {
    it(`${c.id}: ${JSON.stringify(c.prompt).slice(0, 60)}`, async () => {
      const clipSkip = (c.CLIP_stop_at_last_layers ?? 1) - 1;
      const out = await encodeA1111(c.prompt, { encoders: [encoder(clipSkip)] });
      expect(parsePromptAttention(c.prompt)).toEqual(c.parsed);
      expect(out.chunks).toBe(c.n_chunks);
      expect(out.tokenCount).toBe(c.token_count);
      for (const [i, rc] of (c.chunks as any[]).entries()) {
        const ours = out.records[0][i];
        expect(ours.chunk.tokens).toEqual(rc.tokens);
        expect(ours.chunk.multipliers).toEqual(rc.multipliers);
        expect(ours.encoderIds).toEqual(rc.tokens_to_encoder);
        expect(maxAbsDiff(ours.zRaw, tensor(rc.z_before_emphasis))).toBeLessThan(atol);
        expect(maxAbsDiff(ours.z, tensor(rc.z_after_emphasis))).toBeLessThan(atol);
      }
      expect(out.hidden.length).toBe(c.embedding.shape.reduce((a: number, b: number) => a * b, 1));
      expect(maxAbsDiff(out.hidden, tensor(c.embedding))).toBeLessThan(atol);
    });
  }

  for (const c of ref.pipeline.cases as any[]) {
    it(`pads prompt and negative to equal chunks: ${c.id}`, async () => {
      const { cond, uncond } = await encodeA1111Pair(c.prompt, c.negative_prompt, { encoders: [encoder()] });
      expect([cond.chunks, uncond.chunks]).toEqual([c.n_chunks.after_padding, c.n_chunks.after_padding]);
      expect(maxAbsDiff(cond.hidden, tensor(c.inputs.prompt_embeds))).toBeLessThan(atol);
      expect(maxAbsDiff(uncond.hidden, tensor(c.inputs.negative_prompt_embeds))).toBeLessThan(atol);
    });
  }

  it("a plain prompt gives exactly today's embeddings (syntax a1111 and none, clip skip 0 and 1)", async () => {
    for (const clipSkip of [0, 1]) {
      for (const prompt of ["a cyberpunk version of this photo", "", "blurry, low quality"]) {
        const want = await today(prompt, clipSkip);
        expect((await encodeA1111(prompt, { encoders: [encoder(clipSkip)] })).hidden).toEqual(want);
        expect((await encodeA1111(prompt, { encoders: [encoder(clipSkip)], syntax: "none" })).hidden).toEqual(want);
        expect(await step3(prompt, clipSkip)).toEqual(want);
        expect(await step3(prompt, clipSkip, "none")).toEqual(want);
      }
    }
  });

  it('syntax "none" keeps brackets literal and truncates at 77 ids like diffusers', async () => {
    const long = ref.embeddings.find((c: any) => c.id === "long_2_chunks").prompt;
    const none = await encodeA1111(long, { encoders: [encoder()], syntax: "none" });
    expect(none.chunks).toBe(1);
    expect(none.hidden).toEqual(await today(long));
    expect(await step3(long, 0, "none")).toEqual(none.hidden);
    expect((await step3(long, 0)).length).toBe(2 * none.hidden.length); // a1111: two chunks
  });
});
