// Textual-inversion embeddings (A1111 `embeddings/` files, named in the prompt by file name): read from safetensors,
// found in tokenised prompt pieces by their name's token ids, and given ids beyond the vocabulary whose vectors are
// fed to the text encoder as `extra_token_embeddings` (src/graph/token-embedding.ts): no graph rebuild per file.
// Ref: AUTOMATIC1111 modules/textual_inversion/textual_inversion.py (create_embedding_from_data, register_embedding,
// find_embedding_at_position), sd_hijack.py (EmbeddingsWithFixes; SDXL: clip_l / clip_g).
import { ReimagineError } from "../errors.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import type { TensorInfo } from "../weights/source.js";
import type { ChunkEmbedding, EmbeddingLookup } from "./chunks.js";

/** One embedding's vectors for one text encoder: [rows, dim]. */
export interface EmbeddingVectors {
  data: Float32Array;
  rows: number;
  dim: number;
}

export interface TextualInversion {
  /** The name prompts use: the file name without extension. */
  name: string;
  path: string;
  /** Per text encoder: SD 1.x/2.x one entry (`emb_params`), SDXL two (`clip_l`, `clip_g`). */
  vectors: EmbeddingVectors[];
}

interface TensorSource {
  keys(): string[];
  info(key: string): TensorInfo | undefined;
  read(key: string, shape?: readonly number[]): Float32Array;
}

/**
 * Reads an A1111/diffusers textual-inversion `.safetensors` file: `emb_params` [n, D], SDXL `clip_l` + `clip_g`, or
 * diffusers' single `<token>` tensor ([D] or [n, D]). Pickle files (.pt/.bin) are refused.
 *
 * @example readTextualInversion("embeddings/easynegative.safetensors").name // "easynegative"
 */
export function readTextualInversion(path: string): TextualInversion {
  if (/\.(pt|pth|bin|ckpt)$/i.test(path)) {
    throw new ReimagineError(`${path}: pickle embedding files can run code when loaded and are refused; use the .safetensors version`, "unsafe_format");
  }
  const file = SafetensorsFile.open(path);
  try {
    return parseTextualInversion(file, path);
  } finally {
    file.close();
  }
}

export function parseTextualInversion(src: TensorSource, path: string): TextualInversion {
  const name = (path.split(/[\\/]/).pop() ?? path).replace(/\.safetensors$/i, "");
  const keys = src.keys();
  const matrix = (key: string): EmbeddingVectors => {
    const shape = src.info(key)!.shape;
    if (shape.length !== 1 && shape.length !== 2)
      throw new ReimagineError(`embedding ${path}: '${key}' has shape [${shape}], expected [vectors, width]`, "bad_embedding");
    const data = src.read(key, shape);
    if (!data.every(Number.isFinite))
      throw new ReimagineError(`embedding ${path}: '${key}' contains NaN or infinite values; the file is corrupt`, "bad_embedding");
    return shape.length === 1 ? { data, rows: 1, dim: shape[0] } : { data, rows: shape[0], dim: shape[1] };
  };
  let vectors: EmbeddingVectors[];
  if (keys.includes("emb_params")) vectors = [matrix("emb_params")];
  else if (keys.includes("clip_l") && keys.includes("clip_g")) vectors = [matrix("clip_l"), matrix("clip_g")];
  else if (keys.length === 1) vectors = [matrix(keys[0])];
  else
    throw new ReimagineError(
      `embedding ${path}: expected 'emb_params', 'clip_l' + 'clip_g' or one tensor, found ${keys.slice(0, 4).join(", ")}; it is not a textual-inversion embedding`,
      "bad_embedding",
    );
  if (vectors.some((v) => v.rows < 1) || new Set(vectors.map((v) => v.rows)).size > 1) {
    throw new ReimagineError(`embedding ${path}: its encoders have different vector counts (${vectors.map((v) => v.rows).join(" vs ")})`, "bad_embedding");
  }
  return { name, path, vectors };
}

/**
 * The embeddings available to prompts, each given `rows` ids from vocabSize upwards (in order of addition).
 *
 * @example
 *   const ti = new TextualInversionSet(49408, [readTextualInversion("embeddings/style.safetensors")]);
 *   const enc = a1111ClipEncoder(tok, session, rule, { embeddings: ti.lookup((t) => tok.encode(t)), extraFeeds: ti.feeds(0, 768) });
 */
export class TextualInversionSet {
  private readonly rows: ChunkEmbedding[] = [];
  private total = 0;

  constructor(
    readonly vocabSize: number,
    readonly embeddings: readonly TextualInversion[],
  ) {
    for (const e of embeddings) {
      const n = e.vectors[0].rows;
      this.rows.push({ name: e.name, ids: [], rows: Array.from({ length: n }, (_, i) => vocabSize + this.total + i) });
      this.total += n;
    }
  }

  /**
   * Finds embedding names in tokenised text with `tokenize` (the encoder's tokenizer, without start/end tokens):
   * at each position the longest name whose ids follow, as A1111's ids_lookup (sorted longest first).
   */
  lookup(tokenize: (text: string) => number[]): EmbeddingLookup {
    const byFirst = new Map<number, ChunkEmbedding[]>();
    for (const e of this.rows) {
      const ids = tokenize(e.name);
      if (ids.length === 0) continue;
      const list = byFirst.get(ids[0]) ?? [];
      list.push({ ...e, ids });
      list.sort((a, b) => b.ids.length - a.ids.length);
      byFirst.set(ids[0], list);
    }
    return (tokens, offset) => byFirst.get(tokens[offset])?.find((e) => e.ids.every((id, i) => tokens[offset + i] === id));
  }

  /** The text encoder feed: every embedding's vectors for encoder `index` as rows, [max(1, total), dim] (a zero row when none). */
  feeds(index: number, dim: number): Record<"extra_token_embeddings", { data: Float32Array; dims: number[] }> {
    const data = new Float32Array(Math.max(1, this.total) * dim);
    let at = 0;
    for (const e of this.embeddings) {
      const v = e.vectors[index];
      if (!v || v.dim !== dim) {
        const has = e.vectors.map((x) => x.dim).join(" + ");
        throw new ReimagineError(
          `embedding ${e.path} has ${has}-wide vectors but this model's text encoder ${index + 1} is ${dim} wide: it was made for another model family`,
          "embedding_mismatch",
        );
      }
      data.set(v.data, at * dim);
      at += v.rows;
    }
    return { extra_token_embeddings: { data, dims: [Math.max(1, this.total), dim] } };
  }
}
