// Token embedding with extra rows fed at run time: ids >= vocab index `extra_token_embeddings` (textual-inversion
// vectors, see src/prompt/embeddings.ts), all others the model's table. No graph rebuild per embedding.
// Ref: AUTOMATIC1111 sd_hijack.py EmbeddingsWithFixes (vectors written over the token embeddings of placeholders).
import type { Graph, Value } from "./builder.js";

/**
 * Gathers `ids` [B, L] from `table` [V, D] and, for ids >= V, from the graph input `extra_token_embeddings` [E, D]
 * (E >= 1: feed one zero row when there are none). Returns the embeddings [B, L, D] and the ids with extra ids
 * replaced by 0 (for EOS searches, as A1111's placeholders are 0).
 *
 * @example const { embeds, baseIds } = tokenEmbeddingWithExtras(g, tok, ids, 49408, 768);
 */
export function tokenEmbeddingWithExtras(g: Graph, table: Value, ids: Value, vocab: number, dim: number): { embeds: Value; baseIds: Value } {
  const extra = g.input("extra_token_embeddings", "float32", ["extra_tokens", dim]);
  const V = g.constant([vocab], [], "int64");
  const zero = g.constant([0], [], "int64");
  const isExtra = g.op("GreaterOrEqual", [ids, V]); // [B, L] bool
  const baseIds = g.op("Where", [isExtra, zero, ids]); // [B, L]
  const extraIds = g.op("Where", [isExtra, g.op("Sub", [ids, V]), zero]); // [B, L]
  const fromTable = g.op("Gather", [table, baseIds], { axis: 0 }); // [B, L, D]
  const fromExtra = g.op("Gather", [extra, extraIds], { axis: 0 }); // [B, L, D]
  const embeds = g.op("Where", [g.op("Unsqueeze", [isExtra, g.ints([2])]), fromExtra, fromTable]); // [B, L, D]
  return { embeds, baseIds };
}
