// Textual inversion: files (emb_params, SDXL clip_l/clip_g, diffusers' single tensor), name lookup as A1111 (longest
// name first, by token ids), chunking with the vectors as ids beyond the vocabulary, and on the sd-tiny text encoder:
// an embedding whose vectors are the token embeddings of "cyberpunk version" gives exactly the encoding of those words.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { cachedGraph } from "../graph/cache.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../models/clip-text.js";
import { ModelSession } from "../runtime.js";
import { CLIPTokenizer } from "../tokenizer/clip.js";
import { openComponentWeights, readJson } from "../weights/diffusers.js";
import { MemoryWeights } from "../weights/memory.js";
import { writeSafetensors } from "../weights/safetensors.js";
import { parsePromptAttention } from "./attention.js";
import { chunkPrompt } from "./chunks.js";
import { a1111ClipEncoder } from "./clip-encoder.js";
import { a1111HiddenRules } from "./clip-layers.js";
import { encodeA1111 } from "./encode.js";
import { parseTextualInversion, readTextualInversion, TextualInversionSet } from "./embeddings.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-ti-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("textual-inversion embeddings", () => {
  it("reads A1111, SDXL and diffusers layouts and refuses the rest", () => {
    const p = join(dir, "style.safetensors");
    writeSafetensors(p, { emb_params: { dtype: "F16", shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) } });
    expect(readTextualInversion(p)).toMatchObject({ name: "style", vectors: [{ rows: 2, dim: 3 }] });
    const xl = parseTextualInversion(
      new MemoryWeights({ clip_l: { shape: [1, 2], data: [1, 2] }, clip_g: { shape: [1, 3], data: [1, 2, 3] } }),
      "x/xl.safetensors",
    );
    expect(xl.vectors.map((v) => v.dim)).toEqual([2, 3]);
    expect(parseTextualInversion(new MemoryWeights({ "<cat-toy>": { shape: [4], data: [1, 2, 3, 4] } }), "cat.safetensors").vectors[0]).toMatchObject({
      rows: 1,
      dim: 4,
    });
    expect(() => parseTextualInversion(new MemoryWeights({ a: { shape: [1], data: [1] }, b: { shape: [1], data: [1] } }), "two.safetensors")).toThrow(
      /not a textual-inversion embedding/,
    );
    expect(() => readTextualInversion("x.pt")).toThrow(/pickle/);
    const set = new TextualInversionSet(100, [xl]);
    expect(() => set.feeds(1, 4)).toThrow(/2 \+ 3-wide vectors but this model's text encoder 2 is 4 wide/);
  });

  it("finds the longest matching name and puts its vectors in the chunk as ids beyond the vocabulary", () => {
    const ti = (name: string, rows: number) => ({ name, path: `${name}.safetensors`, vectors: [{ data: new Float32Array(rows * 2), rows, dim: 2 }] });
    const set = new TextualInversionSet(100, [ti("ab", 2), ti("a", 1)]);
    const tokenize = (t: string) => [...t.replace(/\s/g, "")].map((c) => c.charCodeAt(0) - 96); // a=1, b=2, ...
    const pieces = parsePromptAttention("(ab:1.5) a c");
    const { chunks } = chunkPrompt(
      pieces,
      pieces.map(([t]) => tokenize(t)),
      { start: 90, end: 91, pad: 91 },
      { chunkLength: 6, embeddings: set.lookup(tokenize) },
    );
    expect(chunks[0].tokens).toEqual([90, 100, 101, 102, 3, 91, 91, 91]); // "ab" -> rows 0, 1; "a" -> row 2
    expect(chunks[0].multipliers.slice(1, 5)).toEqual([1.5, 1.5, 1, 1]);
    expect(chunks[0].embeddings).toEqual(["ab", "a"]);
    expect(set.feeds(0, 2).extra_token_embeddings.dims).toEqual([3, 2]);
    expect(new TextualInversionSet(100, []).feeds(0, 2).extra_token_embeddings.dims).toEqual([1, 2]);
  });
});

describeWithFixtures("textual inversion on the sd-tiny text encoder", () => {
  const model = fixture("sd-tiny", "model");
  const weights = openComponentWeights(join(model, "text_encoder"));
  const config = resolveCLIPTextConfig(readJson(join(model, "text_encoder", "config.json"), "config"));
  const tok = CLIPTokenizer.fromDir(join(model, "tokenizer"));
  const sessions: ModelSession[] = [];
  let withExtras: ModelSession;
  let plain: ModelSession;
  beforeAll(async () => {
    const load = async (extraTokens: boolean) => {
      const { path } = cachedGraph({ kind: "te", config, weights, extra: { extraTokens } }, () => buildCLIPTextModel(weights, config, { extraTokens }), dir);
      const s = await ModelSession.load(path, { threads: 1 });
      sessions.push(s);
      return s;
    };
    withExtras = await load(true);
    plain = await load(false);
  });
  afterAll(async () => Promise.all(sessions.map((s) => s.release())));

  it("an embedding made of the token vectors of 'cyberpunk version' encodes exactly like those words", async () => {
    const D = config.hidden_size;
    const table = weights.read("text_model.embeddings.token_embedding.weight", [config.vocab_size, D]);
    const ids = tok.encode("cyberpunk version");
    const vectors = new Float32Array(ids.length * D);
    for (const [i, id] of ids.entries()) vectors.set(table.subarray(id * D, (id + 1) * D), i * D);
    const set = new TextualInversionSet(config.vocab_size, [
      { name: "neonstyle", path: "neonstyle.safetensors", vectors: [{ data: vectors, rows: ids.length, dim: D }] },
    ]);
    const rule = a1111HiddenRules("sd1")[0];
    const ti = a1111ClipEncoder(tok, withExtras, rule, { embeddings: set.lookup((t) => tok.encode(t)), extraFeeds: set.feeds(0, D) });
    const words = a1111ClipEncoder(tok, plain, rule);
    const a = await encodeA1111("a (neonstyle:1.2) of this photo", { encoders: [ti] });
    const b = await encodeA1111("a (cyberpunk version:1.2) of this photo", { encoders: [words] });
    expect(a.embeddings).toEqual(["neonstyle"]);
    expect(a.records[0][0].chunk.tokens.slice(0, 4)).toEqual([49406, 320, config.vocab_size, config.vocab_size + 1]);
    expect(a.hidden).toEqual(b.hidden);
    // the pooled output (EOS position) ignores the extra ids, as A1111's 0 placeholders
    const run = (sess: ModelSession, rec: typeof a) =>
      sess.run({
        input_ids: { data: BigInt64Array.from(rec.records[0][0].encoderIds, BigInt), dims: [1, 77] },
        ...(sess === withExtras ? set.feeds(0, D) : {}),
      });
    expect((await run(withExtras, a)).pooler_output.data).toEqual((await run(plain, b)).pooler_output.data);
    // the same graph without embeddings in the prompt is today's encoder
    const c = await encodeA1111("a cyberpunk version of this photo", { encoders: [ti] });
    expect(c.hidden).toEqual((await encodeA1111("a cyberpunk version of this photo", { encoders: [words] })).hidden);
  });
});
