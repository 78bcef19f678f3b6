// CLIPTextModel / CLIPTextModelWithProjection (transformers) as an ONNX graph.
// Ref: transformers models/clip/modeling_clip.py (CLIPTextTransformer, CLIPEncoderLayer).
// Outputs every hidden state so one graph serves clip skip and SDXL's penultimate layer.
import { Graph, type Value } from "../graph/builder.js";
import { activation, attention, layerNorm, linear } from "../graph/layers.js";
import { useLoraSlots } from "../graph/lora-slots.js";
import { tokenEmbeddingWithExtras } from "../graph/token-embedding.js";
import { type QuantizeMode, quantizeTextEncoder } from "../graph/quantize.js";
import type { WeightSource } from "../weights/source.js";

/** transformers CLIPTextConfig (snake_case as in config.json). */
export interface CLIPTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  eos_token_id: number;
  projection_dim?: number;
  architectures?: string[];
}

const DEFAULTS: CLIPTextConfig = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: "quick_gelu",
  layer_norm_eps: 1e-5,
  eos_token_id: 49407,
  projection_dim: 512,
};

/** Fills transformers' CLIPTextConfig defaults for keys a config.json leaves out. */
export function resolveCLIPTextConfig(json: Record<string, unknown>): CLIPTextConfig {
  return { ...DEFAULTS, ...(json as Partial<CLIPTextConfig>) };
}

export interface CLIPTextBuildOptions {
  /** LoRA slot inputs on every Linear (src/graph/lora-slots.ts): LoRAs switch per run through the feeds. */
  loraSlots?: boolean;
  /** Input `extra_token_embeddings` [E, D]: ids >= vocab_size take its rows (textual inversion, src/graph/token-embedding.ts). */
  extraTokens?: boolean;
  /** int8 Linear layers (src/graph/quantize.ts): faster, approximate. */
  quantize?: QuantizeMode;
}

/**
 * Graph inputs: `input_ids` int64 [B, L]. Outputs:
 * - `last_hidden_state` [B, L, D]: final_layer_norm(last layer)
 * - `hidden_states` [N+1, B, L, D]: embeddings then each layer's output (un-normed; SDXL)
 * - `normed_hidden_states` [N+1, B, L, D]: final_layer_norm of each (clip skip k = index N-k)
 * - `pooler_output` [B, D]: last_hidden_state at the EOS position
 * - `text_embeds` [B, P] when the weights have `text_projection` (WithProjection)
 */
export function buildCLIPTextModel(weights: WeightSource, config: CLIPTextConfig, opts: CLIPTextBuildOptions = {}): Graph {
  const c = config;
  const D = c.hidden_size;
  const g = new Graph(weights, "CLIPTextModel");
  if (opts.quantize) quantizeTextEncoder(g, opts.quantize); // opt-in: not transformers-exact
  if (opts.loraSlots) useLoraSlots(g);
  const ids = g.input("input_ids", "int64", ["batch", "sequence"]);
  const p = "text_model";

  // 1. embeddings: token + position (positions 0..L-1)
  const tok = g.param(`${p}.embeddings.token_embedding.weight`, [c.vocab_size, D]);
  const pos = g.param(`${p}.embeddings.position_embedding.weight`, [c.max_position_embeddings, D]);
  const seqLen = g.op("Slice", [g.op("Shape", [ids]), g.ints([1]), g.ints([2])]); // [1] = L
  const posL = g.op("Slice", [pos, g.ints([0]), seqLen, g.ints([0])]); // [L, D]
  const extra = opts.extraTokens ? tokenEmbeddingWithExtras(g, tok, ids, c.vocab_size, D) : undefined;
  let h = g.add(extra?.embeds ?? g.op("Gather", [tok, ids], { axis: 0 }), posL); // [B, L, D]

  // 2. encoder layers (pre-LN transformer, causal self-attention)
  const hidden: Value[] = [h];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `${p}.encoder.layers.${i}`;
    let x = layerNorm(g, `${l}.layer_norm1`, h, D, c.layer_norm_eps);
    const q = linear(g, `${l}.self_attn.q_proj`, x, D, D); // [B, L, D]
    const k = linear(g, `${l}.self_attn.k_proj`, x, D, D);
    const v = linear(g, `${l}.self_attn.v_proj`, x, D, D);
    x = attention(g, q, k, v, c.num_attention_heads, { causal: true }); // [B, L, D]
    h = g.add(h, linear(g, `${l}.self_attn.out_proj`, x, D, D));
    x = layerNorm(g, `${l}.layer_norm2`, h, D, c.layer_norm_eps);
    x = activation(g, c.hidden_act, linear(g, `${l}.mlp.fc1`, x, D, c.intermediate_size));
    h = g.add(h, linear(g, `${l}.mlp.fc2`, x, c.intermediate_size, D));
    hidden.push(h);
  }
  const last = layerNorm(g, `${p}.final_layer_norm`, h, D, c.layer_norm_eps); // [B, L, D]
  g.output(last, "last_hidden_state");
  const stacked = g.concat(
    hidden.map((x) => g.op("Unsqueeze", [x, g.ints([0])])),
    0,
  ); // [N+1, B, L, D]
  g.output(stacked, "hidden_states");
  g.output(layerNorm(g, `${p}.final_layer_norm`, stacked, D, c.layer_norm_eps), "normed_hidden_states");

  // 3. pooled output at the EOS token: transformers' legacy rule (eos_token_id == 2) takes
  //    argmax(input_ids) (the EOS id is the largest); otherwise the first id == eos_token_id.
  const vocabIds = extra?.baseIds ?? ids; // extra (textual-inversion) ids count as 0 here, as A1111's placeholders
  const eosIndex =
    c.eos_token_id === 2
      ? g.op("ArgMax", [vocabIds], { axis: -1, keepdims: 0 }) // [B]
      : g.op("ArgMax", [g.op("Cast", [g.op("Equal", [vocabIds, g.constant([c.eos_token_id], [], "int64")])], { to: 6 })], {
          axis: -1,
          keepdims: 0,
          select_last_index: 0,
        });
  const idx = g.op("Unsqueeze", [eosIndex, g.ints([1])]); // [B, 1]
  const pooled = g.op("GatherND", [last, idx], { batch_dims: 1 }); // [B, D]
  g.output(pooled, "pooler_output");
  if (g.has("text_projection.weight")) {
    const P = c.projection_dim ?? D;
    g.output(linear(g, "text_projection", pooled, D, P, false), "text_embeds"); // [B, P]
  }
  // position_ids is a buffer some checkpoints carry, not a parameter
  g.checkAllWeightsUsed((k) => k.endsWith("embeddings.position_ids"));
  return g;
}
