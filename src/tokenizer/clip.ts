// CLIP byte-level BPE tokenizer, as the Stable Diffusion pipelines call it.
// Ref: transformers models/clip/tokenization_clip.py (slow CLIPTokenizer, the no-ftfy BasicTokenizer branch)
// and tokenization_utils.py (PreTrainedTokenizer.tokenize: added tokens are split out before normalisation).
// Text path: split out added/special tokens -> clean, CJK spacing, NFC, lowercase -> CLIP regex -> bytes -> BPE.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import { parsePythonJson } from "../weights/pyjson.js";
import { resolveTextLink } from "../weights/text-link.js";

/** transformers keeps the first 49152 - 256 - 2 merges of merges.txt (after its "#version" line). */
const MAX_MERGES = 49152 - 256 - 2;
const DEFAULT_MAX_LENGTH = 77;
const BPE_CACHE_LIMIT = 100_000;
const BOS_DEFAULT = "<|startoftext|>";
const EOS_DEFAULT = "<|endoftext|>";

/** The CLIP pre-tokenizer pattern (IGNORECASE in transformers). */
const CLIP_PATTERN = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

export interface CLIPTokenizerCallOptions {
  /** Defaults to modelMaxLength. */
  maxLength?: number;
  /** "max_length" (default) pads with the pad token up to maxLength; "none" leaves the ids as they are. */
  padding?: "max_length" | "none";
  /** Keep at most maxLength ids, bos and eos included (default true). */
  truncation?: boolean;
}

export interface CLIPTokenizerOutput {
  /** [maxLength] with the defaults: bos, ids, eos, then pad ids. */
  inputIds: number[];
  /** 1 for bos/ids/eos, 0 for padding. */
  attentionMask: number[];
  /** bos + every id + eos, never truncated (diffusers compares it with inputIds to warn about truncation). */
  untruncatedIds: number[];
}

/** An added (special) token; matched literally in the raw text before any normalisation. */
export interface CLIPAddedToken {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

/**
 * The slow transformers CLIPTokenizer without ftfy (what a plain `pip install diffusers` runs).
 *
 * @example
 *   const tok = CLIPTokenizer.fromDir("model/tokenizer");
 *   const { inputIds } = tok.call("a photo of a cat"); // 77 ids, like tokenizer(p, padding="max_length", truncation=True)
 */
export class CLIPTokenizer {
  readonly modelMaxLength: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;

  private readonly encoder: Map<string, number>;
  private readonly bpeRanks: Map<string, number>;
  private readonly added: CLIPAddedToken[];
  private readonly addedByContent: Map<string, CLIPAddedToken>;
  private readonly cache = new Map<string, string[]>([
    [BOS_DEFAULT, [BOS_DEFAULT]],
    [EOS_DEFAULT, [EOS_DEFAULT]],
  ]);

  constructor(init: {
    vocab: Record<string, number>;
    merges: [string, string][];
    addedTokens: CLIPAddedToken[];
    bosToken: string;
    eosToken: string;
    padToken: string;
    unkToken: string;
    modelMaxLength?: number;
  }) {
    this.encoder = new Map(Object.entries(init.vocab));
    this.bpeRanks = new Map(init.merges.slice(0, MAX_MERGES).map(([a, b], i) => [`${a} ${b}`, i]));
    this.added = init.addedTokens;
    this.addedByContent = new Map(init.addedTokens.map((t) => [t.content, t]));
    const idOf = (role: string, token: string): number => {
      const id = this.addedByContent.get(token)?.id ?? this.encoder.get(token);
      if (id === undefined) {
        throw new ReimagineError(`CLIP tokenizer: ${role} token '${token}' is in neither vocab.json nor added tokens`);
      }
      return id;
    };
    this.bosTokenId = idOf("bos", init.bosToken);
    this.eosTokenId = idOf("eos", init.eosToken);
    this.padTokenId = idOf("pad", init.padToken);
    this.unkTokenId = idOf("unk", init.unkToken);
    this.modelMaxLength = init.modelMaxLength ?? DEFAULT_MAX_LENGTH;
  }

  /** Loads a diffusers `tokenizer/` folder: vocab.json, merges.txt, tokenizer_config.json[, special_tokens_map.json]. */
  static fromDir(dir: string): CLIPTokenizer {
    return CLIPTokenizer.fromFiles(dir);
  }

  /** Text -> BPE tokens (no bos/eos), e.g. "A cat!" -> ["a</w>", "cat</w>", "!</w>"]. */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const piece of this.splitAddedTokens(text)) {
      if (typeof piece !== "string") out.push(piece.content);
      else for (const word of preTokenize(piece)) out.push(...this.bpe(byteEncode(word)));
    }
    return out;
  }

  /** Text -> ids without bos/eos. */
  encode(text: string): number[] {
    return this.tokenize(text).map((t) => this.addedByContent.get(t)?.id ?? this.encoder.get(t) ?? this.unkTokenId);
  }

  /** tokenizer(text, padding="max_length", max_length=model_max_length, truncation=True) by default. */
  call(text: string, opts: CLIPTokenizerCallOptions = {}): CLIPTokenizerOutput {
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    const padding = opts.padding ?? "max_length";
    const truncation = opts.truncation ?? true;
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new ReimagineError(`CLIP tokenizer: maxLength ${maxLength} is invalid: it must be an integer >= 2 (bos + eos)`);
    }
    const ids = this.encode(text);
    const untruncatedIds = [this.bosTokenId, ...ids, this.eosTokenId];
    // truncation (longest_first on one sequence): drop ids from the end so that bos + ids + eos fits
    const kept = truncation && ids.length + 2 > maxLength ? ids.slice(0, maxLength - 2) : ids;
    const inputIds = [this.bosTokenId, ...kept, this.eosTokenId];
    const attentionMask = inputIds.map(() => 1);
    if (padding === "max_length") {
      while (inputIds.length < maxLength) {
        inputIds.push(this.padTokenId);
        attentionMask.push(0);
      }
    }
    return { inputIds, attentionMask, untruncatedIds };
  }

  /** Byte-level BPE of one pre-token (already byte-encoded); the last symbol carries "</w>". */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = Array.from(token);
    let word = [...chars.slice(0, -1), `${chars[chars.length - 1]}</w>`];
    while (word.length > 1) {
      // the adjacent pair with the lowest merge rank
      let best: string | undefined;
      let bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = `${word[i]} ${word[i + 1]}`;
        }
      }
      if (best === undefined) break;
      const [first, second] = best.split(" ");
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i]);
          i += 1;
        }
      }
      word = merged;
    }
    if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear(); // bounded, for long-running servers
    this.cache.set(BOS_DEFAULT, [BOS_DEFAULT]).set(EOS_DEFAULT, [EOS_DEFAULT]).set(token, word);
    return word;
  }

  /** tokens_trie.split: leftmost-longest matches of added tokens, with their lstrip/rstrip/single_word rules. */
  private splitAddedTokens(text: string): (string | CLIPAddedToken)[] {
    const pieces: (string | CLIPAddedToken)[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      let match: CLIPAddedToken | undefined;
      for (const t of this.added) {
        if (t.content.length > (match?.content.length ?? 0) && text.startsWith(t.content, i)) match = t;
      }
      if (!match) {
        i++;
        continue;
      }
      pieces.push(text.slice(start, i), match);
      i += match.content.length;
      start = i;
    }
    pieces.push(text.slice(start));
    // stripping rules, as PreTrainedTokenizer.tokenize applies them
    for (let k = 0; k < pieces.length; k++) {
      const t = pieces[k];
      if (typeof t === "string") continue;
      const left = pieces[k - 1] as string; // text pieces alternate with tokens
      const right = pieces[k + 1] as string;
      if (t.rstrip && right) pieces[k + 1] = right.trimStart();
      if (t.lstrip && left) pieces[k - 1] = left.trimEnd();
      if (t.singleWord && left && !left.endsWith(" ")) {
        pieces[k - 1] = left + t.content;
        pieces[k] = "";
      } else if (t.singleWord && right && !right.startsWith(" ")) {
        pieces[k + 1] = t.content + right;
        pieces[k] = "";
      }
    }
    return pieces.filter((p) => p !== "");
  }

  private static fromFiles(dir: string): CLIPTokenizer {
    const config = readJson(dir, "tokenizer_config.json") as Record<string, unknown>;
    // special_tokens_map.json is optional, as in transformers (tokenizer_config.json names the tokens too)
    const hasMap = existsSync(join(dir, "special_tokens_map.json"));
    const specialMap = (hasMap ? readJson(dir, "special_tokens_map.json") : {}) as Record<string, unknown>;
    const vocab = readJson(dir, "vocab.json");
    if (typeof vocab !== "object" || vocab === null || Array.isArray(vocab)) {
      throw malformed(dir, "vocab.json", "expected an object mapping token -> id");
    }
    for (const [k, v] of Object.entries(vocab)) {
      if (!Number.isInteger(v)) throw malformed(dir, "vocab.json", `id of '${k}' is not an integer`);
    }
    const merges = parseMerges(dir, readText(dir, "merges.txt"));

    // special tokens: CLIPTokenizer defaults < tokenizer_config.json < special_tokens_map.json (as from_pretrained)
    const special = (key: string, fallback: string): string => tokenContent(specialMap[key]) ?? tokenContent(config[key]) ?? fallback;
    const bosToken = special("bos_token", BOS_DEFAULT);
    const eosToken = special("eos_token", EOS_DEFAULT);
    const padToken = special("pad_token", EOS_DEFAULT);
    const unkToken = special("unk_token", EOS_DEFAULT);

    const addedTokens: CLIPAddedToken[] = [];
    const decoder = config.added_tokens_decoder ?? {};
    if (typeof decoder !== "object" || decoder === null) {
      throw malformed(dir, "tokenizer_config.json", "added_tokens_decoder is not an object");
    }
    for (const [id, spec] of Object.entries(decoder as Record<string, unknown>)) {
      const s = spec as Record<string, unknown>;
      if (!/^\d+$/.test(id) || typeof s?.content !== "string") {
        const why = `added_tokens_decoder entry '${id}' needs an integer id and a content string`;
        throw malformed(dir, "tokenizer_config.json", why);
      }
      const flags = { lstrip: !!s.lstrip, rstrip: !!s.rstrip, singleWord: !!s.single_word };
      addedTokens.push({ content: s.content, id: Number(id), ...flags });
    }
    // special tokens missing from added_tokens_decoder (older configs) are added with their vocab id
    const vocabMap = vocab as Record<string, number>;
    for (const tok of [bosToken, eosToken, unkToken, padToken]) {
      if (addedTokens.some((t) => t.content === tok)) continue;
      const id = Object.hasOwn(vocabMap, tok) ? vocabMap[tok] : undefined;
      if (id === undefined) throw malformed(dir, "vocab.json", `special token '${tok}' has no id`);
      addedTokens.push({ content: tok, id, lstrip: false, rstrip: false, singleWord: false });
    }

    const maxLen = config.model_max_length;
    // transformers writes a huge sentinel (int(1e30)) when a tokenizer has no limit; CLIP always has one
    const hasMaxLength = Number.isInteger(maxLen) && (maxLen as number) > 0 && (maxLen as number) < 1e9;
    return new CLIPTokenizer({
      vocab: vocabMap,
      merges,
      addedTokens,
      bosToken,
      eosToken,
      padToken,
      unkToken,
      modelMaxLength: hasMaxLength ? (maxLen as number) : undefined,
    });
  }
}

// ---- text normalisation (BasicTokenizer(strip_accents=False, do_split_on_punc=False)) --------------------------

const CONTROL = /^\p{C}$/u;
const SPACE_SEPARATOR = /^\p{Zs}$/u;
const WHITESPACE_RUN = /\s+/u;

/** CJK Unified Ideographs blocks that BasicTokenizer surrounds with spaces. */
function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

/** BasicTokenizer.tokenize then the CLIP regex: one text piece (no added tokens in it) -> pre-tokens. */
function preTokenize(text: string): string[] {
  let cleaned = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    const isWhitespace = ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || SPACE_SEPARATOR.test(ch);
    if (!isWhitespace && CONTROL.test(ch)) continue; // \t \n \r are not "control" for BERT
    if (isWhitespace) cleaned += " ";
    else if (isChineseChar(cp)) cleaned += ` ${ch} `;
    else cleaned += ch;
  }
  const words = cleaned
    .normalize("NFC")
    .split(WHITESPACE_RUN)
    .filter((w) => w !== "")
    .map((w) => w.toLowerCase());
  return words.join(" ").match(CLIP_PATTERN) ?? [];
}

// ---- bytes <-> unicode (GPT-2 byte encoder) -------------------------------------------------------------------

/** bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 and up, so BPE never sees spaces/controls. */
const BYTE_ENCODER: string[] = (() => {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
})();
const utf8 = new TextEncoder();

function byteEncode(word: string): string {
  let out = "";
  for (const b of utf8.encode(word)) out += BYTE_ENCODER[b];
  return out;
}

// ---- files ---------------------------------------------------------------------------------------------------

/** Token content from `"<|x|>"` or `{"content": "<|x|>", ...}` (AddedToken as saved by transformers). */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return undefined;
}

function parseMerges(dir: string, text: string): [string, string][] {
  // like transformers: strip, split lines, drop the first ("#version: 0.2") line
  const lines = text
    .trim()
    .split("\n")
    .slice(1, 1 + MAX_MERGES);
  return lines.map((line, i) => {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw malformed(dir, "merges.txt", `line ${i + 2} is not two space-separated symbols`);
    return [parts[0], parts[1]];
  });
}

function malformed(dir: string, file: string, why: string): ReimagineError {
  return new ReimagineError(`CLIP tokenizer file ${join(dir, file)} is malformed (${why}): re-download the model's tokenizer folder`, "invalid_model");
}

/**
 * A tokenizer file's text. A file whose whole content is a relative path to another existing file is a symlink
 * stored as text (git without symlink support writes them so; SDXL's tokenizer_2 links to ../tokenizer): follow it.
 */
function readText(dir: string, file: string): string {
  const path = join(dir, file);
  if (!existsSync(path)) {
    throw new ReimagineError(
      `CLIP tokenizer file ${path} is missing: the tokenizer folder needs vocab.json, merges.txt and ` +
        "tokenizer_config.json (special_tokens_map.json optional)",
      "invalid_model",
    );
  }
  return readFileSync(resolveTextLink(path), "utf8");
}

function readJson(dir: string, file: string): unknown {
  const text = readText(dir, file);
  try {
    return parsePythonJson(text);
  } catch (e) {
    throw malformed(dir, file, `not valid JSON: ${(e as Error).message}`);
  }
}
