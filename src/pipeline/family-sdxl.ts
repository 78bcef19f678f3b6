// SDXL prompt encoding (step 3 of the pipeline) and its micro-conditioning: both text encoders'
// penultimate hidden states concatenated, the pooled projection of text_encoder_2, zero negatives
// (force_zeros_for_empty_prompt) and add_time_ids. The refiner has only text_encoder_2.
// Ref: diffusers StableDiffusionXLImg2ImgPipeline.encode_prompt, _get_add_time_ids and __call__ step 8.
import { ReimagineError } from "../errors.js";
import type { LoadedTextEncoder, StableDiffusionModel } from "./components.js";
import { batchRows, type Conditioning, EmbeddingCache, type MicroConditioning, type PromptRequest } from "./family.js";
import { hiddenLayer, runTextEncoder } from "./text-encoding.js";

interface Encoded {
  /** [1, L, D1 + D2]: concat of each encoder's hidden_states[-(clip_skip + 2)] */
  embeds: Float32Array;
  /** [1, P]: text_encoder_2's text_embeds */
  pooled: Float32Array;
}

const caches = new WeakMap<StableDiffusionModel, EmbeddingCache<Encoded>>();

/** The encoders in diffusers' order ([text_encoder, text_encoder_2], or the refiner's [text_encoder_2]). */
function encoders(model: StableDiffusionModel): LoadedTextEncoder[] {
  const list = [model.components.text_encoder, model.components.text_encoder_2].filter((e) => e !== undefined);
  if (!model.components.text_encoder_2) {
    throw new ReimagineError(`${model.name}: an SDXL model needs text_encoder_2 (CLIPTextModelWithProjection); the folder is incomplete, download text_encoder_2/ and tokenizer_2/`, "bad_model");
  }
  return list;
}

/** prompts (one per encoder) -> embeddings and the pooled output, for hidden layer `layer` (-2 = penultimate). */
async function encode(model: StableDiffusionModel, prompts: string[], layer: number): Promise<Encoded> {
  let cache = caches.get(model);
  if (!cache) {
    cache = new EmbeddingCache();
    caches.set(model, cache);
  }
  return cache.get(`${layer}\u0000${prompts.join("\u0000")}`, async () => {
    const parts: Float32Array[] = [];
    const widths: number[] = [];
    let pooled: Float32Array | undefined;
    let L = 0;
    const list = encoders(model);
    for (let i = 0; i < list.length; i++) {
      const out = await runTextEncoder(list[i], prompts[i]);
      // diffusers: the pooled output is the first encoder output that is 2-D, i.e. text_encoder_2's text_embeds
      if (!pooled && out.text_embeds) pooled = out.text_embeds.data as Float32Array;
      const h = hiddenLayer(out.hidden_states, layer); // [1, L, D_i], no final_layer_norm
      L = out.hidden_states.dims[2];
      widths.push(out.hidden_states.dims[3]);
      parts.push(h);
    }
    if (!pooled) throw new ReimagineError(`${model.name}: text_encoder_2 has no text_projection, so SDXL's pooled embedding cannot be computed; the weights are not CLIPTextModelWithProjection`, "bad_model");
    const D = widths.reduce((a, b) => a + b, 0);
    const embeds = new Float32Array(L * D); // torch.concat(prompt_embeds_list, dim=-1)
    for (let t = 0; t < L; t++) {
      let o = t * D;
      parts.forEach((p, i) => {
        embeds.set(p.subarray(t * widths[i], (t + 1) * widths[i]), o);
        o += widths[i];
      });
    }
    return { embeds, pooled };
  });
}

/**
 * diffusers `_get_add_time_ids` with __call__'s defaults (sizes default to the output size; the negative
 * ids use the positive crop coordinates unless the refiner's aesthetic-score layout is on).
 */
export function addTimeIds(
  m: MicroConditioning,
  height: number,
  width: number,
  requiresAestheticsScore: boolean,
): { ids: number[]; negIds: number[] } {
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
  throw new ReimagineError(`${model.name}: the UNet's add_embedding takes ${expected} values but ${passed} are made (${nIds} time ids x ${d} + pooled ${projectionDim}); ${fix}`, "bad_model");
}

/**
 * Encode prompt for SDXL: encoder_hidden_states [B, L, D1+D2], text_embeds [B, P], time_ids [B, n]
 * (negative rows first with CFG).
 */
export async function encodePromptSDXL(model: StableDiffusionModel, req: PromptRequest): Promise<Conditioning> {
  const list = encoders(model);
  const layers = Math.min(...list.map((e) => e.config.num_hidden_layers));
  if (!(Number.isInteger(req.clipSkip) && req.clipSkip >= 0 && req.clipSkip + 1 < layers)) {
    throw new ReimagineError(`clip skip must be 0..${layers - 2} for this model (got ${req.clipSkip})`);
  }
  const twoPrompts = (a: string, b: string | undefined) => (list.length === 2 ? [a, b || a] : [b || a]);
  const pos = await encode(model, twoPrompts(req.prompt, req.prompt2), -(req.clipSkip + 2));
  let neg: Encoded | undefined;
  if (req.cfg) {
    if (req.negativePrompt === undefined && model.pipelineConfig.force_zeros_for_empty_prompt) {
      neg = { embeds: new Float32Array(pos.embeds.length), pooled: new Float32Array(pos.pooled.length) }; // zeros_like
    } else {
      // diffusers encodes the negative prompt at hidden_states[-2], whatever clip_skip is
      neg = await encode(model, twoPrompts(req.negativePrompt ?? "", req.negativePrompt2), -2);
    }
  }
  const { ids, negIds } = addTimeIds(req, req.height, req.width, model.pipelineConfig.requires_aesthetics_score);
  checkAddEmbedDim(model, ids.length, pos.pooled.length);
  const n = req.numImages;
  const batch = n * (req.cfg ? 2 : 1);
  const L = list[0].tokenizer.modelMaxLength;
  return {
    batch,
    cfg: req.cfg,
    unetInputs: {
      encoder_hidden_states: { data: batchRows(pos.embeds, n, neg?.embeds), dims: [batch, L, pos.embeds.length / L] },
      text_embeds: { data: batchRows(pos.pooled, n, neg?.pooled), dims: [batch, pos.pooled.length] },
      time_ids: { data: batchRows(Float32Array.from(ids), n, req.cfg ? Float32Array.from(negIds) : undefined), dims: [batch, ids.length] },
    },
  };
}
