// CLIPTokenizer: a hand-made vocabulary (BPE, normalisation, added tokens, padding/truncation, files) and the
// transformers slow-tokenizer ids of the sd-tiny and sdxl-tiny references (exact).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { CLIPTokenizer, type CLIPAddedToken } from "./clip.js";
import { fixture, haveFixtures, loadReferenceJson } from "../../test/fixtures.js";

const VOCAB: Record<string, number> = {
  h: 0,
  e: 1,
  l: 2,
  "o</w>": 3,
  he: 4,
  ll: 5,
  hell: 6,
  "hello</w>": 7,
  "<|startoftext|>": 8,
  "<|endoftext|>": 9,
  "a</w>": 10,
  "'": 11,
  "'s</w>": 12,
  "!</w>": 13,
};
const MERGES: [string, string][] = [
  ["h", "e"],
  ["l", "l"],
  ["he", "ll"],
  ["hell", "o</w>"],
  ["'", "s</w>"],
];
const special = (content: string, id: number): CLIPAddedToken => ({ content, id, lstrip: false, rstrip: false, singleWord: false });

function tinyTokenizer(padToken = "<|endoftext|>", extra: CLIPAddedToken[] = []): CLIPTokenizer {
  return new CLIPTokenizer({
    vocab: VOCAB,
    merges: MERGES,
    addedTokens: [special("<|startoftext|>", 8), special("<|endoftext|>", 9), ...extra],
    bosToken: "<|startoftext|>",
    eosToken: "<|endoftext|>",
    padToken,
    unkToken: "<|endoftext|>",
  });
}

describe("CLIPTokenizer (hand-made vocabulary)", () => {
  const tok = tinyTokenizer();

  it("applies BPE merges by rank and marks the word end with </w>", () => {
    expect(tok.tokenize("hello")).toEqual(["hello</w>"]);
    expect(tok.tokenize("hel")).toEqual(["he", "l</w>"]); // "l l" needs two l's; "he l</w>" is not a merge
    expect(tok.encode("hel")).toEqual([4, 9]); // unknown "l</w>" -> unk (<|endoftext|>)
    expect(tok.tokenize("a's")).toEqual(["a</w>", "'s</w>"]); // the 's contraction is its own pre-token
  });

  it("normalises like BasicTokenizer: lowercase, whitespace runs, controls and zero-width chars dropped", () => {
    expect(tok.tokenize("  HeLLo\t\u00a0\u3000hello\n")).toEqual(["hello</w>", "hello</w>"]);
    expect(tok.tokenize("hel\u200blo")).toEqual(["hello</w>"]); // U+200B is a format char (Cf): removed
    expect(tok.tokenize("hel\u0000lo\ufffd")).toEqual(["hello</w>"]);
    expect(tok.tokenize("e\u0301")).toEqual(tok.tokenize("\u00e9")); // NFC
  });

  it("puts spaces around CJK ideographs (each becomes its own pre-token)", () => {
    const one = tok.tokenize("猫");
    expect(one.length).toBe(3); // 3 UTF-8 bytes, no merges in this vocabulary
    expect(tok.tokenize("猫猫")).toEqual([...one, ...one]);
    expect(tok.tokenize("ねこ").length).toBe(6); // kana are not ideographs: one pre-token, last byte gets </w>
    expect(tok.tokenize("ねこ")[5].endsWith("</w>")).toBe(true);
    expect(tok.tokenize("ねこ")[2].endsWith("</w>")).toBe(false);
  });

  it("splits special tokens out of the raw text before normalisation", () => {
    expect(tok.tokenize("hello<|endoftext|>hello")).toEqual(["hello</w>", "<|endoftext|>", "hello</w>"]);
    // not an exact match -> lowercased, then the CLIP regex still recognises it
    expect(tok.encode("HELLO<|ENDOFTEXT|>")).toEqual([7, 9]);
    const bang = tinyTokenizer("!", [special("!", 0)]);
    expect(bang.padTokenId).toBe(0);
    expect(bang.tokenize("hello!!")).toEqual(["hello</w>", "!", "!"]);
    expect(tok.tokenize("hello!!")).toEqual(["hello</w>", "!", "!</w>"]);
  });

  it("honours single_word added tokens (only matched as a whole word)", () => {
    const t = tinyTokenizer("<|endoftext|>", [{ ...special("[x]", 99), singleWord: true }]);
    expect(t.tokenize("hello [x] hello")).toEqual(["hello</w>", "[x]", "hello</w>"]);
    expect(t.tokenize("hello[x]")).not.toContain("[x]");
    expect(t.encode("[x]")).toEqual([99]);
  });

  it("call(): bos + ids + eos, padded to maxLength, truncated from the end", () => {
    const p = tinyTokenizer("!", [special("!", 0)]);
    expect(p.call("hello", { maxLength: 5 })).toEqual({
      inputIds: [8, 7, 9, 0, 0],
      attentionMask: [1, 1, 1, 0, 0],
      untruncatedIds: [8, 7, 9],
    });
    const long = "hello hello hello hello";
    expect(p.call(long, { maxLength: 5 }).inputIds).toEqual([8, 7, 7, 7, 9]);
    expect(p.call(long, { maxLength: 5 }).untruncatedIds).toEqual([8, 7, 7, 7, 7, 9]);
    expect(p.call(long, { maxLength: 5, truncation: false }).inputIds).toEqual([8, 7, 7, 7, 7, 9]);
    expect(p.call("hello", { maxLength: 5, padding: "none" }).inputIds).toEqual([8, 7, 9]);
    expect(p.call("").inputIds.length).toBe(77); // default modelMaxLength
    expect(() => p.call("hello", { maxLength: 1 })).toThrow(ReimagineError);
  });
});

describe("CLIPTokenizer.fromDir (files)", () => {
  const root = mkdtempSync(join(tmpdir(), "reimagine-clip-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const write = (dir: string, files: Record<string, string>) => {
    mkdirSync(join(root, dir), { recursive: true });
    for (const [k, v] of Object.entries(files)) writeFileSync(join(root, dir, k), v);
    return join(root, dir);
  };
  const good = {
    "vocab.json": JSON.stringify(VOCAB),
    "merges.txt": `#version: 0.2\n${MERGES.map((m) => m.join(" ")).join("\n")}\n`,
    "tokenizer_config.json": JSON.stringify({ model_max_length: 7, pad_token: "!", unk_token: "<|endoftext|>" }),
    "special_tokens_map.json": JSON.stringify({ bos_token: { content: "<|startoftext|>" }, eos_token: "<|endoftext|>" }),
  };

  it("reads the four files; special tokens without added_tokens_decoder get their vocab ids", () => {
    const dir = write("good", { ...good, "vocab.json": JSON.stringify({ ...VOCAB, "!": 42 }) });
    const t = CLIPTokenizer.fromDir(dir);
    expect([t.bosTokenId, t.eosTokenId, t.padTokenId, t.modelMaxLength]).toEqual([8, 9, 42, 7]);
    expect(t.call("hello!").inputIds).toEqual([8, 7, 42, 9, 42, 42, 42]); // "!" is special: split out
  });

  it("follows a symlink stored as a text file (SDXL tokenizer_2 -> ../tokenizer)", () => {
    write("real", { ...good, "vocab.json": JSON.stringify({ ...VOCAB, "!": 0 }) });
    const dir = write("linked", {
      ...good,
      "vocab.json": "../real/vocab.json",
      "merges.txt": "../real/merges.txt",
    });
    expect(CLIPTokenizer.fromDir(dir).encode("hello")).toEqual([7]);
  });

  it("refuses a missing or malformed file with a ReimagineError naming it", () => {
    expect(() => CLIPTokenizer.fromDir(join(root, "nope"))).toThrow(/tokenizer_config\.json is missing/);
    const { "vocab.json": _omit, ...withoutVocab } = good;
    const noVocab = write("novocab", withoutVocab);
    expect(() => CLIPTokenizer.fromDir(noVocab)).toThrow(/vocab\.json is missing/);
    expect(() => CLIPTokenizer.fromDir(write("badjson", { ...good, "vocab.json": "{oops" }))).toThrow(/vocab\.json is malformed/);
    expect(() => CLIPTokenizer.fromDir(write("badmerge", { ...good, "merges.txt": "#v\nh e x\n" }))).toThrow(/merges\.txt is malformed/);
    expect(() => CLIPTokenizer.fromDir(write("nopad", good))).toThrow(ReimagineError); // pad "!" not in vocab
    const { "special_tokens_map.json": _map, ...withoutMap } = good;
    const noMap = CLIPTokenizer.fromDir(write("nomap", { ...withoutMap, "vocab.json": JSON.stringify({ ...VOCAB, "!": 5 }) }));
    expect([noMap.bosTokenId, noMap.padTokenId]).toEqual([8, 5]); // optional, as in transformers
  });
});

describe.skipIf(!haveFixtures("sd-tiny"))("CLIPTokenizer vs transformers (sd-tiny reference, exact)", () => {
  const ref = haveFixtures("sd-tiny") ? loadReferenceJson("sd-tiny").tokenizer : { cases: [] };
  const tok = haveFixtures("sd-tiny") ? CLIPTokenizer.fromDir(fixture("sd-tiny", "model", "tokenizer")) : undefined;
  const ftfy = new Set<number>(ref.ftfy_sensitive_prompts?.indices ?? []);

  it("special ids and max length", () => {
    expect(ref.ftfy_installed).toBe(false); // references are the no-ftfy path we implement
    expect(tok!.bosTokenId).toBe(ref.bos_token_id);
    expect(tok!.eosTokenId).toBe(ref.eos_token_id);
    expect(tok!.padTokenId).toBe(ref.pad_token_id);
    expect(tok!.modelMaxLength).toBe(ref.model_max_length);
    expect(ref.cases.length).toBe(ref.num_prompts);
  });

  for (const c of ref.cases) {
    const tag = ftfy.has(c.index) ? " [ftfy-sensitive]" : c.fast_matches_slow ? "" : " [fast tokenizer differs]";
    it(`prompt ${c.index}${tag}: ${JSON.stringify(c.prompt).slice(0, 60)}`, () => {
      const out = tok!.call(c.prompt);
      expect(out.inputIds).toEqual(c.input_ids);
      expect(out.attentionMask).toEqual(c.attention_mask);
      expect(out.untruncatedIds).toEqual(c.untruncated_ids);
      expect(out.untruncatedIds.length).toBe(c.untruncated_length);
      expect(out.untruncatedIds.length > tok!.modelMaxLength).toBe(c.truncated);
      expect(["<|startoftext|>", ...tok!.tokenize(c.prompt), "<|endoftext|>"]).toEqual(c.tokens);
      // we follow the slow tokenizer (what the pipeline uses), not the fast one, where they disagree
      if (!c.fast_matches_slow) expect(out.inputIds).not.toEqual(c.fast_tokenizer_input_ids);
    });
  }
});

describe.skipIf(!haveFixtures("sdxl-tiny"))("CLIPTokenizer vs transformers (sdxl-tiny, both tokenizers)", () => {
  const ref = haveFixtures("sdxl-tiny") ? loadReferenceJson("sdxl-tiny").tokenizer : { cases: [] };
  const load = (sub: string) => CLIPTokenizer.fromDir(fixture("sdxl-tiny", "model", sub));
  const tok1 = haveFixtures("sdxl-tiny") ? load("tokenizer") : undefined;
  const tok2 = haveFixtures("sdxl-tiny") ? load("tokenizer_2") : undefined;

  it("tokenizer pads with <|endoftext|>, tokenizer_2 with '!' (id 0)", () => {
    expect([tok1!.padTokenId, tok1!.bosTokenId, tok1!.eosTokenId]).toEqual([
      ref.tokenizer.pad_token_id,
      ref.tokenizer.bos_token_id,
      ref.tokenizer.eos_token_id,
    ]);
    expect([tok2!.padTokenId, tok2!.bosTokenId, tok2!.eosTokenId]).toEqual([
      ref.tokenizer_2.pad_token_id,
      ref.tokenizer_2.bos_token_id,
      ref.tokenizer_2.eos_token_id,
    ]);
  });

  for (const c of ref.cases) {
    it(`prompt ${c.index}: ${JSON.stringify(c.prompt).slice(0, 60)}`, () => {
      const a = tok1!.call(c.prompt);
      const b = tok2!.call(c.prompt);
      expect(a.inputIds).toEqual(c.tokenizer_input_ids);
      expect(a.attentionMask).toEqual(c.tokenizer_attention_mask);
      expect(a.untruncatedIds.length).toBe(c.untruncated_length);
      expect(b.inputIds).toEqual(c.tokenizer_2_input_ids);
      expect(b.attentionMask).toEqual(c.tokenizer_2_attention_mask);
      expect(b.untruncatedIds.length).toBe(c.tokenizer_2_untruncated_length);
      expect(["<|startoftext|>", ...tok1!.tokenize(c.prompt), "<|endoftext|>"]).toEqual(c.tokens);
      expect(["<|startoftext|>", ...tok2!.tokenize(c.prompt), "<|endoftext|>"]).toEqual(c.tokenizer_2_tokens);
    });
  }
});
