// Step 3's text side for every family: each text encoder's encoding of its prompt and negative prompt, in
// AUTOMATIC1111's syntax (emphasis, BREAK, 75-token chunks; src/prompt) or literally ("none": diffusers'
// tokenizer call, today's bits), padded to equal chunk counts with the encoding of "" (A1111 pad_cond_uncond), the
// encoders' features side by side (SDXL: torch.concat(prompt_embeds_list, dim=-1)). LoRA slot feeds and
// textual-inversion embeddings reach the encoders here. Ref: diffusers encode_prompt (SD and SDXL img2img
// pipelines), A1111 sd_hijack_clip.py.
import { feedsKey, prepareRunLoras, textEncoderFeeds, useTextInputs } from "../lora/run.js";
import { checkPromptSyntax } from "../lora/spec.js";
import type { EmbeddingLookup } from "../prompt/chunks.js";
import type { HiddenRule, OutputTensor } from "../prompt/clip-layers.js";
import { a1111ClipEncoder } from "../prompt/clip-encoder.js";
import { envEmbeddingDirs, mentionsEmbedding, runEmbeddings, tiHashes } from "../prompt/embedding-dirs.js";
import { TextualInversionSet } from "../prompt/embeddings.js";
import { type A1111Conditioning, encodeA1111, padChunks, type PromptSyntax } from "../prompt/encode.js";
import type { LoadedTextEncoder, StableDiffusionModel } from "./components.js";
import { EmbeddingCache, type PromptRequest } from "./family.js";

/** A text encoder of the model and the hidden states a family takes from it. */
export interface EncoderPart {
  /** Its model_index.json name (cache key). */
  name: "text_encoder" | "text_encoder_2";
  te: LoadedTextEncoder;
  /** The hidden state taken for the prompt and for the negative prompt (SDXL: diffusers takes -2 for the negative). */
  rule: HiddenRule;
  negativeRule: HiddenRule;
  /** Take the pooled `text_embeds` of the first chunk (SDXL's text_encoder_2). */
  pooled: boolean;
}

/** One text encoder as a run drives it. */
export interface EncoderRun extends EncoderPart {
  /** Textual-inversion embeddings its tokenizer finds in prompts. */
  embeddings?: EmbeddingLookup;
  /** Extra graph inputs: LoRA slot feeds with this run's LoRAs, textual-inversion rows (computed on a cache miss only). */
  feeds: () => Record<string, OutputTensor>;
  /** The same inputs without any LoRA (the padding chunk: A1111 encodes "" once, without LoRA). */
  plainFeeds: () => Record<string, OutputTensor>;
  /** Identity of `feeds` and `embeddings` (LoRAs with their text-encoder multipliers, embedding files). */
  feedsKey: string;
}

/**
 * A run's text encoders with their LoRA feeds and textual-inversion embeddings (the embedding folders' files that
 * fit the model; when a prompt mentions one, the encoders switch to graphs that take their vectors), and the
 * prompts without LoRA tags.
 */
export async function textEncoderRuns(
  model: StableDiffusionModel,
  req: PromptRequest,
  parts: readonly EncoderPart[],
): Promise<{ prompt: string; prompt2?: string; runs: EncoderRun[]; tiHashes: (used: string[]) => string }> {
  const syntax = checkPromptSyntax(req.promptSyntax);
  const { prompt, prompt2, loras } = await prepareRunLoras(model, req);
  // SD: emb_params (index 0); SDXL: clip_l for text_encoder, clip_g for text_encoder_2 (also the refiner's only one)
  const index = (p: EncoderPart) => (p.name === "text_encoder_2" ? 1 : 0);
  const shapes = parts.map((p) => ({ index: index(p), dim: p.te.config.hidden_size }));
  const ti = syntax === "a1111" ? runEmbeddings(req.embeddingDirs ?? envEmbeddingDirs(), parts[0].te.config.vocab_size, shapes) : undefined;
  const texts = [prompt, prompt2, req.negativePrompt, req.negativePrompt2].filter((t): t is string => typeof t === "string");
  if (ti && parts.some((p) => mentionsEmbedding(ti.set, (t) => p.te.tokenizer.encode(t), texts))) await useTextInputs(model, { extraTokens: true });
  const runs = parts.map((p): EncoderRun => {
    const takesRows = p.te.session.inputNames.includes("extra_token_embeddings");
    const set = ti?.set ?? new TextualInversionSet(p.te.config.vocab_size, []); // one zero row when there are none
    const rows = () => (takesRows ? set.feeds(index(p), p.te.config.hidden_size) : {});
    return {
      ...p,
      embeddings: takesRows && ti ? ti.set.lookup((t) => p.te.tokenizer.encode(t)) : undefined,
      feeds: () => ({ ...textEncoderFeeds(model, p.name, loras), ...rows() }),
      plainFeeds: () => ({ ...textEncoderFeeds(model, p.name, []), ...rows() }),
      feedsKey: `${feedsKey(loras, "te")}\u0000${takesRows ? (ti?.key ?? "") : ""}`,
    };
  });
  return { prompt, prompt2, runs, tiHashes: (used) => (ti && used.length ? tiHashes(ti, used) : "") };
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

type Trimmed = Pick<A1111Conditioning, "hidden" | "chunks" | "width" | "pooled" | "embeddings">;
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
    const enc = a1111ClipEncoder(e.te.tokenizer, e.te.session, rule, { pooled: e.pooled, extraFeeds, embeddings: e.embeddings });
    const { hidden, chunks, width, pooled, embeddings } = await encodeA1111(prompt, { encoders: [enc], syntax });
    return { hidden, chunks, width, pooled, embeddings };
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
): Promise<{ cond: EncodedSide; uncond?: EncodedSide; embeddings: string[] }> {
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
  const embeddings = [...new Set([...conds, ...unconds].flatMap((c) => c.embeddings))]; // textual inversions used
  if (!req.negatives) return { cond, embeddings };
  if (req.zeroNegative) {
    const zeros = { ...cond, hidden: new Float32Array(cond.hidden.length), pooled: cond.pooled && new Float32Array(cond.pooled.length) };
    return { cond, uncond: zeros, embeddings };
  }
  return { cond, uncond: await pad(unconds, true), embeddings };
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
