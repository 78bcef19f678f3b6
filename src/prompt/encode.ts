// AUTOMATIC1111 prompt encoding: parse emphasis, chunk, run the text encoder(s) chunk by chunk, multiply the
// per-token weights in and restore the mean ("Original" emphasis); SD 1.x/2.x (one encoder) and SDXL (two, concatenated).
// Ref: AUTOMATIC1111 modules/sd_hijack_clip.py (forward, process_tokens), sd_emphasis.py (EmphasisOriginal),
// sd_models_xl.py (get_learned_conditioning), sd_samplers_cfg_denoiser.py (pad_cond_uncond), v1.10.
// Pure: the encoders are functions; nothing here imports ONNX Runtime.
import { parsePromptAttention, type PromptPiece } from "./attention.js";
import { type ChunkTokenIds, chunkPrompt, encoderIds, type EmbeddingLookup, type PromptChunk } from "./chunks.js";

/** "a1111": emphasis, BREAK, chunks of 75 tokens; "none": the prompt as one literal piece, diffusers-style 77-token truncation (today's path). */
export type PromptSyntax = "a1111" | "none";
export const PROMPT_SYNTAXES: readonly PromptSyntax[] = ["a1111", "none"];

/** One text encoder as A1111 drives it. */
export interface A1111TextEncoder {
  /** Ids of each text without start/end tokens (`tokenizer(texts, truncation=False, add_special_tokens=False)`). */
  tokenize(texts: string[]): number[][];
  ids: ChunkTokenIds;
  /**
   * Runs the encoder on one chunk of 77 ids and returns the hidden states A1111 takes from it, [77 * D]
   * (see a1111HiddenState), plus the pooled output when this encoder provides it (SDXL's second).
   */
  encode(ids: number[]): Promise<{ hidden: Float32Array; pooled?: Float32Array }>;
  /** Textual-inversion embeddings this encoder's tokenizer finds in the text. */
  embeddings?: EmbeddingLookup;
}

export interface A1111EncodeOptions {
  /** One encoder (SD 1.x/2.x) or two (SDXL: CLIP-L then OpenCLIP-G), concatenated along the feature axis. */
  encoders: readonly A1111TextEncoder[];
  /** Default "a1111". */
  syntax?: PromptSyntax;
  /** A1111 `comma_padding_backtrack` (default 20). */
  commaBacktrack?: number;
}

/** What one encoder made of one chunk (for tests and token counters). */
export interface ChunkRecord {
  chunk: PromptChunk;
  /** The ids fed to the encoder (SD2/OpenCLIP: pad after the first end token). */
  encoderIds: number[];
  /** Hidden states before and after emphasis, [77 * D]. */
  zRaw: Float32Array;
  z: Float32Array;
}

/** A prompt's A1111 conditioning. */
export interface A1111Conditioning {
  /** [1, 77 * chunks, width]: the chunks one after another, each encoder's features side by side. */
  hidden: Float32Array;
  chunks: number;
  /** Feature width (sum over encoders). */
  width: number;
  /** SDXL: the pooled output of the first chunk (A1111: zs[0].pooled). */
  pooled?: Float32Array;
  /** A1111's "N/75" token count (of the first encoder). */
  tokenCount: number;
  /** Per encoder, per chunk. */
  records: ChunkRecord[][];
  /** Textual-inversion embeddings used. */
  embeddings: string[];
}

/**
 * A1111 "Original" emphasis on one chunk's hidden states `z` [L * D]: multiply each token's features by its weight,
 * then rescale everything so the chunk's mean is unchanged. float32 arithmetic as torch; all weights 1 leave `z`
 * bit for bit.
 *
 * @example applyEmphasis(z, chunk.multipliers) // new array
 */
export function applyEmphasis(z: Float32Array, multipliers: readonly number[]): Float32Array {
  const f = Math.fround;
  const L = multipliers.length;
  const D = z.length / L;
  const originalMean = f(mean(z));
  const out = new Float32Array(z.length);
  for (let t = 0; t < L; t++) {
    const m = f(multipliers[t]);
    for (let d = 0; d < D; d++) out[t * D + d] = f(z[t * D + d] * m);
  }
  const ratio = f(originalMean / f(mean(out)));
  for (let i = 0; i < out.length; i++) out[i] = f(out[i] * ratio);
  return out;
}

function mean(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s / x.length;
}

/** Parsed pieces for a syntax ("none": one literal piece). */
export function promptPieces(prompt: string, syntax: PromptSyntax = "a1111"): PromptPiece[] {
  return syntax === "a1111" ? parsePromptAttention(prompt) : [[prompt, 1.0]];
}

/**
 * Encodes a prompt as A1111 does (extra-network tags must already be removed: see extractLoraTags).
 * With syntax "none" the prompt is one literal piece, truncated to one chunk like diffusers' tokenizer call.
 *
 * @example
 *   const enc = { tokenize: (ts) => ts.map((t) => tok.encode(t)), ids: { start: 49406, end: 49407, pad: 49407, comma: 267 },
 *                 encode: async (ids) => ({ hidden: await runClip(ids) }) };
 *   const { hidden, chunks } = await encodeA1111("a (red:1.3) house BREAK a blue sky", { encoders: [enc] }); // [1, 154, D]
 */
export async function encodeA1111(prompt: string, opts: A1111EncodeOptions): Promise<A1111Conditioning> {
  const syntax = opts.syntax ?? "a1111";
  const pieces = promptPieces(prompt, syntax);
  const records: ChunkRecord[][] = [];
  let tokenCount = 0;
  let pooled: Float32Array | undefined;
  const embeddings = new Set<string>();
  for (const [e, enc] of opts.encoders.entries()) {
    const tokenized = enc.tokenize(pieces.map(([text]) => text));
    const chunking = syntax === "a1111" ? { commaBacktrack: opts.commaBacktrack, embeddings: enc.embeddings } : { commaBacktrack: 0 };
    let { chunks, tokenCount: count } = chunkPrompt(pieces, tokenized, enc.ids, chunking);
    if (syntax === "none") chunks = chunks.slice(0, 1); // diffusers truncates to the first 75 tokens
    if (e === 0) tokenCount = count;
    const recs: ChunkRecord[] = [];
    for (const [i, chunk] of chunks.entries()) {
      const ids = encoderIds(chunk, enc.ids);
      const out = await enc.encode(ids);
      if (i === 0 && out.pooled) pooled = out.pooled;
      recs.push({ chunk, encoderIds: ids, zRaw: out.hidden, z: syntax === "a1111" ? applyEmphasis(out.hidden, chunk.multipliers) : out.hidden });
      for (const name of chunk.embeddings) embeddings.add(name);
    }
    records.push(recs);
  }
  return { ...joinEncoders(records), pooled, tokenCount, records, embeddings: [...embeddings] };
}

/** Concatenates each encoder's chunks along the token axis and the encoders along the feature axis. */
function joinEncoders(records: ChunkRecord[][]): { hidden: Float32Array; chunks: number; width: number } {
  const chunks = records[0].length;
  if (records.some((r) => r.length !== chunks)) {
    throw new Error(`text encoders chunked the prompt differently (${records.map((r) => r.length).join(" vs ")} chunks)`);
  }
  const L = records[0][0].chunk.tokens.length;
  const widths = records.map((r) => r[0].z.length / L);
  const width = widths.reduce((a, b) => a + b, 0);
  const hidden = new Float32Array(chunks * L * width); // [1, chunks * L, width]
  for (let c = 0; c < chunks; c++) {
    let off = 0;
    for (const [e, recs] of records.entries()) {
      const D = widths[e];
      const z = recs[c].z;
      for (let t = 0; t < L; t++) hidden.set(z.subarray(t * D, (t + 1) * D), (c * L + t) * width + off);
      off += D;
    }
  }
  return { hidden, chunks, width };
}

export interface A1111PairOptions extends A1111EncodeOptions {
  /**
   * SDXL: an empty negative prompt gives zeros (hidden and pooled), as A1111's force_zero_embeddings
   * (and diffusers' force_zeros_for_empty_prompt). Default false.
   */
  zeroEmptyNegative?: boolean;
  /**
   * Encoders for the padding chunk (the encoding of ""). A1111 computes it once at model load, without any LoRA:
   * pass encoders without LoRA here to match it when a LoRA changes the text encoder. Default: `encoders`.
   */
  paddingEncoders?: readonly A1111TextEncoder[];
}

/**
 * Encodes a prompt and its negative prompt and pads the one with fewer chunks with the encoding of "" until both
 * have the same length (A1111's pad_cond_uncond; diffusers needs equal shapes for classifier-free guidance).
 *
 * @example
 *   const { cond, uncond } = await encodeA1111Pair(prompt, negative, { encoders: [enc] });
 *   // cond.hidden and uncond.hidden: [1, 77 * n, D] with the same n
 */
export async function encodeA1111Pair(
  prompt: string,
  negative: string,
  opts: A1111PairOptions,
): Promise<{ cond: A1111Conditioning; uncond: A1111Conditioning }> {
  const cond = await encodeA1111(prompt, opts);
  let uncond = await encodeA1111(negative, opts);
  if (opts.zeroEmptyNegative && negative === "") {
    uncond = { ...uncond, hidden: new Float32Array(uncond.hidden.length), pooled: uncond.pooled && new Float32Array(uncond.pooled.length) };
  }
  if (cond.chunks === uncond.chunks) return { cond, uncond };
  const empty = await encodeA1111("", { ...opts, encoders: opts.paddingEncoders ?? opts.encoders });
  return cond.chunks < uncond.chunks ? { cond: padChunks(cond, uncond.chunks, empty), uncond } : { cond, uncond: padChunks(uncond, cond.chunks, empty) };
}

/** `c` followed by copies of `empty` (the one-chunk encoding of "") up to `chunks` chunks. */
export function padChunks<T extends Pick<A1111Conditioning, "hidden" | "chunks">>(c: T, chunks: number, empty: Pick<A1111Conditioning, "hidden">): T {
  const hidden = new Float32Array((c.hidden.length / c.chunks) * chunks);
  hidden.set(c.hidden);
  for (let i = c.chunks; i < chunks; i++) hidden.set(empty.hidden, i * empty.hidden.length);
  return { ...c, hidden, chunks };
}
