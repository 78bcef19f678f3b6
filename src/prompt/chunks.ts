// AUTOMATIC1111's prompt chunking: parsed pieces -> 75-token chunks with per-token weights, comma backtracking,
// BREAK, textual-inversion placeholders; each chunk closed to 77 ids with start/end tokens.
// Ref: AUTOMATIC1111 modules/sd_hijack_clip.py (FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line, empty_chunk,
// process_tokens' SD2 padding), v1.10.
import { isBreak, type PromptPiece } from "./attention.js";

/** Special token ids of one tokenizer. `pad` differs from `end` for OpenCLIP encoders (SD 2.x, SDXL's second). */
export interface ChunkTokenIds {
  start: number;
  end: number;
  pad: number;
  /** Id of `,</w>` (A1111 backtracks to the last comma when a chunk overflows); undefined disables backtracking. */
  comma?: number;
}

/** A textual-inversion embedding found in the text: `ids` spell its name, `rows` are its vectors' token ids. */
export interface ChunkEmbedding {
  name: string;
  /** The name's token ids (what A1111 matches in the prompt). */
  ids: readonly number[];
  /** One token id per vector, beyond the vocabulary (see encode.ts: vocabSize + row of the extra table). */
  rows: readonly number[];
}

/** Finds the embedding whose name's ids start at `tokens[offset]` (A1111's find_embedding_at_position). */
export type EmbeddingLookup = (tokens: readonly number[], offset: number) => ChunkEmbedding | undefined;

export interface PromptChunk {
  /** 77 ids: start, 75 tokens or end-padding, end (textual-inversion vectors as ids beyond the vocabulary). */
  tokens: number[];
  /** One weight per id (Python floats: products of 1.1 and 1/1.1); 1.0 for start, end and padding. */
  multipliers: number[];
  /** Names of the textual-inversion embeddings used in this chunk. */
  embeddings: string[];
}

export interface ChunkOptions {
  /** Tokens per chunk between start and end (A1111: 75). */
  chunkLength?: number;
  /** A1111 `comma_padding_backtrack`: move the words after a comma seen within this many tokens to the next chunk (default 20; 0 disables). */
  commaBacktrack?: number;
  /** Textual-inversion embeddings by name (none by default). */
  embeddings?: EmbeddingLookup;
}

/**
 * Splits a parsed prompt into A1111 chunks. `tokenized[i]` holds the ids of `pieces[i]` (tokenised alone, without
 * start/end tokens: a word split across pieces tokenises differently than in plain text, as in A1111).
 * `tokenCount` is what A1111 shows as "N/75": full chunks count 75, the last its real tokens.
 *
 * @example
 *   const pieces = parsePromptAttention("a (red:1.3) house");
 *   const { chunks } = chunkPrompt(pieces, pieces.map(([t]) => tok.encode(t)), { start: 49406, end: 49407, pad: 49407, comma: 267 });
 */
export function chunkPrompt(
  pieces: readonly PromptPiece[],
  tokenized: readonly (readonly number[])[],
  ids: ChunkTokenIds,
  opts: ChunkOptions = {},
): { chunks: PromptChunk[]; tokenCount: number } {
  const length = opts.chunkLength ?? 75;
  const backtrack = opts.commaBacktrack ?? 20;
  const chunks: PromptChunk[] = [];
  let tokens: number[] = [];
  let multipliers: number[] = [];
  let embeddings: string[] = [];
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false) => {
    tokenCount += isLast ? tokens.length : length;
    const toAdd = length - tokens.length;
    if (toAdd > 0) {
      tokens.push(...new Array<number>(toAdd).fill(ids.end));
      multipliers.push(...new Array<number>(toAdd).fill(1.0));
    }
    chunks.push({ tokens: [ids.start, ...tokens, ids.end], multipliers: [1.0, ...multipliers, 1.0], embeddings });
    tokens = [];
    multipliers = [];
    embeddings = [];
    lastComma = -1;
  };

  pieces.forEach((piece, i) => {
    const [, weight] = piece;
    if (isBreak(piece)) {
      nextChunk();
      return;
    }
    const pieceIds = tokenized[i];
    let position = 0;
    while (position < pieceIds.length) {
      const token = pieceIds[position];
      if (token === ids.comma) {
        lastComma = tokens.length;
      } else if (backtrack !== 0 && tokens.length === length && lastComma !== -1 && tokens.length - lastComma <= backtrack) {
        // the chunk is full and a comma is near: the words after it move to the next chunk
        const at = lastComma + 1;
        const movedTokens = tokens.slice(at);
        const movedMultipliers = multipliers.slice(at);
        tokens = tokens.slice(0, at);
        multipliers = multipliers.slice(0, at);
        nextChunk();
        tokens = movedTokens;
        multipliers = movedMultipliers;
      }
      if (tokens.length === length) nextChunk();

      const embedding = opts.embeddings?.(pieceIds, position);
      if (!embedding) {
        tokens.push(token);
        multipliers.push(weight);
        position += 1;
        continue;
      }
      if (tokens.length + embedding.rows.length > length) nextChunk();
      embeddings.push(embedding.name);
      tokens.push(...embedding.rows);
      multipliers.push(...embedding.rows.map(() => weight));
      position += embedding.ids.length;
    }
  });
  if (tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

/** A chunk of only padding (start, then end tokens), as A1111's empty_chunk: what the shorter prompt is padded with. */
export function emptyChunk(ids: ChunkTokenIds, chunkLength = 75): PromptChunk {
  return {
    tokens: [ids.start, ...new Array<number>(chunkLength + 1).fill(ids.end)],
    multipliers: new Array<number>(chunkLength + 2).fill(1.0),
    embeddings: [],
  };
}

/** The ids fed to the encoder: after the first end token, `pad` (A1111 process_tokens; a no-op when pad = end). */
export function encoderIds(chunk: PromptChunk, ids: ChunkTokenIds): number[] {
  const out = chunk.tokens.slice();
  if (ids.pad !== ids.end) {
    const first = out.indexOf(ids.end);
    for (let i = first + 1; i > 0 && i < out.length; i++) out[i] = ids.pad;
  }
  return out;
}
