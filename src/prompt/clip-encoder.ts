// Adapts our CLIP tokenizer and a CLIPTextModel session (src/models/clip-text.ts graph) to the A1111 encoder
// contract of encode.ts. The session is any object with run(feeds) (ModelSession satisfies it), so this file
// stays free of ONNX Runtime. Extra feeds (LoRA slot inputs, textual-inversion rows) are added to every run.
import type { CLIPTokenizer } from "../tokenizer/clip.js";
import type { EmbeddingLookup } from "./chunks.js";
import { type HiddenRule, type OutputTensor, pickHidden } from "./clip-layers.js";
import type { A1111TextEncoder } from "./encode.js";

/** What the adapter needs from a text-encoder session (ModelSession has it). */
export interface TextEncoderRunner {
  run(feeds: Record<string, OutputTensor>): Promise<Record<string, OutputTensor>>;
}

export interface ClipEncoderOptions {
  /** Take the pooled `text_embeds` output (SDXL's second encoder). */
  pooled?: boolean;
  /** Further inputs of the graph for every run (e.g. LoRA slot feeds, see src/lora/feeds.ts). */
  extraFeeds?: Record<string, OutputTensor>;
  /** Textual-inversion lookup for this tokenizer (see embeddings.ts). */
  embeddings?: EmbeddingLookup;
}

/**
 * An A1111 encoder over a CLIP tokenizer and text-encoder session: pad id from the tokenizer (the end token for
 * CLIP-L, "!" = 0 for OpenCLIP tokenizers, as A1111's id_pad), comma id of `,</w>`.
 *
 * @example
 *   const enc = a1111ClipEncoder(model.tokenizer, model.textEncoder, a1111HiddenRules("sd1", 0)[0]);
 *   const { hidden } = await encodeA1111("a (red:1.3) house", { encoders: [enc] });
 */
export function a1111ClipEncoder(tokenizer: CLIPTokenizer, session: TextEncoderRunner, rule: HiddenRule, opts: ClipEncoderOptions = {}): A1111TextEncoder {
  const comma = tokenizer.encode(",");
  return {
    tokenize: (texts) => texts.map((t) => tokenizer.encode(t)),
    ids: { start: tokenizer.bosTokenId, end: tokenizer.eosTokenId, pad: tokenizer.padTokenId, comma: comma.length === 1 ? comma[0] : undefined },
    embeddings: opts.embeddings,
    async encode(ids) {
      const out = await session.run({ ...opts.extraFeeds, input_ids: { data: BigInt64Array.from(ids, (x) => BigInt(x)), dims: [1, ids.length] } });
      const pooled = opts.pooled ? (out.text_embeds?.data as Float32Array | undefined)?.slice() : undefined;
      if (opts.pooled && !pooled) throw new Error("text encoder has no text_embeds output (not a CLIPTextModelWithProjection)");
      return { hidden: pickHidden(out, rule), pooled };
    },
  };
}
