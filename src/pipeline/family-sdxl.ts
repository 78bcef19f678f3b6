// SDXL prompt encoding (step 3 of the pipeline) and its micro-conditioning: both text encoders'
// penultimate hidden states concatenated, the pooled projection of text_encoder_2, zero negatives
// (force_zeros_for_empty_prompt) and add_time_ids; A1111 prompt syntax, textual inversion and LoRAs through
// prompt-encoding.ts.
// The refiner has only text_encoder_2.
// Ref: diffusers StableDiffusionXLImg2ImgPipeline.encode_prompt, _get_add_time_ids and __call__ step 8.
import { ReimagineError } from "../errors.js";
import type { LoadedTextEncoder, StableDiffusionModel } from "./components.js";
import { checkPromptSyntax } from "../lora/spec.js";
import { batchRows, type Conditioning, type MicroConditioning, type PromptRequest } from "./family.js";
import { type EncoderPart, encodeTextPair, textEncoderRuns } from "./prompt-encoding.js";

/** The encoders in diffusers' order ([text_encoder, text_encoder_2], or the refiner's [text_encoder_2]). */
function encoders(model: StableDiffusionModel): { name: "text_encoder" | "text_encoder_2"; te: LoadedTextEncoder }[] {
  const c = model.components;
  if (!c.text_encoder_2) {
    throw new ReimagineError(
      `${model.name}: an SDXL model needs text_encoder_2 (CLIPTextModelWithProjection); the folder is incomplete, download text_encoder_2/ and tokenizer_2/`,
      "bad_model",
    );
  }
  return [...(c.text_encoder ? [{ name: "text_encoder" as const, te: c.text_encoder }] : []), { name: "text_encoder_2" as const, te: c.text_encoder_2 }];
}

/**
 * diffusers `_get_add_time_ids` with __call__'s defaults (sizes default to the output size; the negative
 * ids use the positive crop coordinates unless the refiner's aesthetic-score layout is on).
 */
export function addTimeIds(m: MicroConditioning, height: number, width: number, requiresAestheticsScore: boolean): { ids: number[]; negIds: number[] } {
  const original = m.originalSize ?? [height, width];
  const target = m.targetSize ?? [height, width];
  const crops = m.cropsCoordsTopLeft ?? [0, 0];
  const negOriginal = m.negativeOriginalSize ?? original;
  const negTarget = m.negativeTargetSize ?? target;
  const negCrops = m.negativeCropsCoordsTopLeft ?? [0, 0];
  if (requiresAestheticsScore) {
    return { ids: [...original, ...crops, m.aestheticScore ?? 6.0], negIds: [...negOriginal, ...negCrops, m.negativeAestheticScore ?? 2.5] };
  }
  return { ids: [...original, ...crops, ...target], negIds: [...negOriginal, ...crops, ...negTarget] };
}

/** diffusers' check that the UNet's add_embedding takes as many time ids as the pipeline config makes. */
function checkAddEmbedDim(model: StableDiffusionModel, nIds: number, projectionDim: number): void {
  const u = model.components.unet.config;
  const expected = u.projection_class_embeddings_input_dim ?? 0;
  const passed = (u.addition_time_embed_dim ?? 0) * nIds + projectionDim;
  if (expected === passed) return;
  const d = u.addition_time_embed_dim ?? 0;
  const fix =
    expected - passed === d
      ? "the UNet expects the refiner's aesthetic-score time ids: set requires_aesthetics_score true in model_index.json"
      : passed - expected === d
        ? "the UNet expects the base model's target-size time ids: set requires_aesthetics_score false in model_index.json"
        : "the UNet and text_encoder_2 do not belong together";
  throw new ReimagineError(
    `${model.name}: the UNet's add_embedding takes ${expected} values but ${passed} are made (${nIds} time ids x ${d} + pooled ${projectionDim}); ${fix}`,
    "bad_model",
  );
}

/**
 * Encode prompt for SDXL: encoder_hidden_states [B, L, D1+D2], text_embeds [B, P], time_ids [B, n]
 * (negative rows first with CFG).
 */
export async function encodePromptSDXL(model: StableDiffusionModel, req: PromptRequest): Promise<Conditioning> {
  const list = encoders(model);
  const layers = Math.min(...list.map((e) => e.te.config.num_hidden_layers));
  if (!(Number.isInteger(req.clipSkip) && req.clipSkip >= 0 && req.clipSkip + 1 < layers)) {
    throw new ReimagineError(`clip skip must be 0..${layers - 2} for this model (got ${req.clipSkip})`);
  }
  const twoPrompts = (a: string, b: string | undefined) => (list.length === 2 ? [a, b || a] : [b || a]);
  // diffusers: hidden_states[-(clip_skip + 2)] of each encoder (no final norm), the negative at -2 whatever clip_skip;
  // the pooled output is text_encoder_2's text_embeds (A1111: both penultimate, the pooled of the first chunk)
  const parts: EncoderPart[] = list.map(({ name, te }) => ({
    name,
    te,
    rule: { output: "hidden_states", fromEnd: req.clipSkip + 2 },
    negativeRule: { output: "hidden_states", fromEnd: 2 },
    pooled: name === "text_encoder_2" && te.session.outputNames.includes("text_embeds"),
  }));
  const { prompt, prompt2, runs, tiHashes } = await textEncoderRuns(model, req, parts);
  const {
    cond: pos,
    uncond: neg,
    embeddings,
  } = await encodeTextPair(model, runs, {
    prompts: twoPrompts(prompt, prompt2),
    negatives: req.cfg ? twoPrompts(req.negativePrompt ?? "", req.negativePrompt2) : undefined,
    zeroNegative: req.negativePrompt === undefined && model.pipelineConfig.force_zeros_for_empty_prompt, // zeros_like
    syntax: checkPromptSyntax(req.promptSyntax),
  });
  if (!pos.pooled) {
    throw new ReimagineError(
      `${model.name}: text_encoder_2 has no text_projection, so SDXL's pooled embedding cannot be computed; the weights are not CLIPTextModelWithProjection`,
      "bad_model",
    );
  }
  const { ids, negIds } = addTimeIds(req, req.height, req.width, model.pipelineConfig.requires_aesthetics_score);
  checkAddEmbedDim(model, ids.length, pos.pooled.length);
  const n = req.numImages;
  const batch = n * (req.cfg ? 2 : 1);
  return {
    batch,
    cfg: req.cfg,
    unetInputs: {
      encoder_hidden_states: { data: batchRows(pos.hidden, n, neg?.hidden), dims: [batch, pos.tokens, pos.width] },
      text_embeds: { data: batchRows(pos.pooled, n, neg?.pooled), dims: [batch, pos.pooled.length] },
      time_ids: { data: batchRows(Float32Array.from(ids), n, req.cfg ? Float32Array.from(negIds) : undefined), dims: [batch, ids.length] },
    },
    ...(embeddings.length ? { infotext: { "TI hashes": tiHashes(embeddings) } } : {}),
  };
}
