// Step 3's text side for every family: each text encoder's encoding of its prompt and negative prompt, in
// AUTOMATIC1111's syntax (emphasis, BREAK, 75-token chunks; src/prompt) or literally ("none": diffusers'
// tokenizer call, today's bits), padded to equal chunk counts with the encoding of "" (A1111 pad_cond_uncond), the
// encoders' features side by side (SDXL: torch.concat(prompt_embeds_list, dim=-1)). LoRA slot feeds reach the
// encoders here. Ref: diffusers encode_prompt (SD and SDXL img2img pipelines), A1111 sd_hijack_clip.py.
import type { HiddenRule, OutputTensor } from "../prompt/clip-layers.js";
import { a1111ClipEncoder } from "../prompt/clip-encoder.js";
import { type A1111Conditioning, encodeA1111, padChunks, type PromptSyntax } from "../prompt/encode.js";
import type { LoadedTextEncoder, StableDiffusionModel } from "./components.js";
import { EmbeddingCache } from "./family.js";

/** One text encoder as a run drives it. */
export interface EncoderRun {
  /** Its model_index.json name (cache key). */
  name: "text_encoder" | "text_encoder_2";
  te: LoadedTextEncoder;
  /** The hidden state taken for the prompt and for the negative prompt (SDXL: diffusers takes -2 for the negative). */
  rule: HiddenRule;
  negativeRule: HiddenRule;
  /** Take the pooled `text_embeds` of the first chunk (SDXL's text_encoder_2). */
  pooled: boolean;
  /** Extra graph inputs: the LoRA slot feeds with this run's LoRAs (computed only on a cache miss). */
  feeds: () => Record<string, OutputTensor>;
  /** The same inputs without any LoRA (the padding chunk: A1111 encodes "" once, without LoRA). */
  plainFeeds: () => Record<string, OutputTensor>;
  /** Identity of `feeds` (the LoRAs and their text-encoder multipliers); "" without LoRA. */
  feedsKey: string;
}

/** What the encoders made of one prompt side, features concatenated: [1, 77 * chunks, width]. */
export interface EncodedSide {
  hidden: Float32Array;
  /** Tokens per row: 77 x chunks. */
  tokens: number;
  width: number;
  pooled?: Float32Array;
}

export interface TextPairRequest {
  /** Per encoder (SDXL: prompt, prompt_2). */
  prompts: string[];
  /** Per encoder; undefined: no classifier-free guidance. */
  negatives?: string[];
  /** SDXL force_zeros_for_empty_prompt with no negative prompt given: zeros like the prompt's embeddings. */
  zeroNegative?: boolean;
  syntax: PromptSyntax;
}

type Trimmed = Pick<A1111Conditioning, "hidden" | "chunks" | "width" | "pooled">;
const caches = new WeakMap<StableDiffusionModel, EmbeddingCache<Trimmed>>();

async function encodeOne(model: StableDiffusionModel, e: EncoderRun, prompt: string, rule: HiddenRule, syntax: PromptSyntax, plain = false): Promise<Trimmed> {
  let cache = caches.get(model);
  if (!cache) {
    cache = new EmbeddingCache();
    caches.set(model, cache);
  }
  const key = [e.name, JSON.stringify(rule), e.pooled, syntax, plain ? "" : e.feedsKey, prompt].join("\u0000");
  return cache.get(key, async () => {
    const extraFeeds = plain ? e.plainFeeds() : e.feeds();
    const enc = a1111ClipEncoder(e.te.tokenizer, e.te.session, rule, { pooled: e.pooled, extraFeeds });
    const { hidden, chunks, width, pooled } = await encodeA1111(prompt, { encoders: [enc], syntax });
    return { hidden, chunks, width, pooled };
  });
}

/**
 * Encodes the prompt (and the negative prompt for classifier-free guidance) with every encoder and joins them.
 * A plain prompt in either syntax gives diffusers' encode_prompt bits.
 *
 * @example const { cond, uncond } = await encodeTextPair(model, encoders, { prompts: ["a (red:1.3) house"], negatives: [""], syntax: "a1111" });
 */
export async function encodeTextPair(
  model: StableDiffusionModel,
  encoders: readonly EncoderRun[],
  req: TextPairRequest,
): Promise<{ cond: EncodedSide; uncond?: EncodedSide }> {
  const conds: Trimmed[] = [];
  const unconds: Trimmed[] = [];
  for (const [i, e] of encoders.entries()) {
    conds.push(await encodeOne(model, e, req.prompts[i], e.rule, req.syntax));
    if (req.negatives && !req.zeroNegative) unconds.push(await encodeOne(model, e, req.negatives[i], e.negativeRule, req.syntax));
  }
  const chunks = Math.max(...conds.map((c) => c.chunks), ...unconds.map((c) => c.chunks));
  const pad = async (side: Trimmed[], negative: boolean) => {
    const out: Trimmed[] = [];
    for (const [i, c] of side.entries()) {
      const e = encoders[i];
      const empty = c.chunks < chunks ? await encodeOne(model, e, "", negative ? e.negativeRule : e.rule, req.syntax, true) : undefined;
      out.push(empty ? padChunks(c, chunks, empty) : c);
    }
    return joinFeatures(out);
  };
  const cond = await pad(conds, false);
  if (!req.negatives) return { cond };
  if (req.zeroNegative) {
    return { cond, uncond: { ...cond, hidden: new Float32Array(cond.hidden.length), pooled: cond.pooled && new Float32Array(cond.pooled.length) } };
  }
  return { cond, uncond: await pad(unconds, true) };
}

/** Encoders' [chunks * 77, D_i] side by side along the features: [chunks * 77, sum D_i]; the pooled output of the one that has it. */
function joinFeatures(parts: Trimmed[]): EncodedSide {
  const tokens = parts[0].hidden.length / parts[0].width;
  const width = parts.reduce((n, p) => n + p.width, 0);
  const pooled = parts.find((p) => p.pooled)?.pooled;
  if (parts.length === 1) return { hidden: parts[0].hidden, tokens, width, pooled };
  const hidden = new Float32Array(tokens * width); // [1, 77 * chunks, D1 + D2]
  for (let t = 0; t < tokens; t++) {
    let o = t * width;
    for (const p of parts) {
      hidden.set(p.hidden.subarray(t * p.width, (t + 1) * p.width), o);
      o += p.width;
    }
  }
  return { hidden, tokens, width, pooled };
}
