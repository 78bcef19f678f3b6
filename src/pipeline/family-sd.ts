// SD 1.x / 2.x prompt encoding (step 3 of the pipeline): one CLIP text encoder, last_hidden_state, or
// final_layer_norm(hidden_states[-(clip_skip + 1)]) with clip skip. Ref: diffusers
// StableDiffusionImg2ImgPipeline.encode_prompt.
import { ReimagineError } from "../errors.js";
import type { StableDiffusionModel } from "./components.js";
import { batchRows, type Conditioning, EmbeddingCache, type PromptRequest } from "./family.js";
import { hiddenLayer, runTextEncoder } from "./text-encoding.js";

const caches = new WeakMap<StableDiffusionModel, EmbeddingCache<Float32Array>>();

/** The text encoder, or an error naming what the model lacks. */
function textEncoderOf(model: StableDiffusionModel) {
  const te = model.components.text_encoder;
  if (!te) throw new ReimagineError(`${model.name}: this SD model has no text_encoder; the folder is incomplete`, "bad_model");
  return te;
}

/** prompt -> [1, L, D] embeddings, as diffusers computes prompt_embeds for SD 1.x/2.x. */
async function embed(model: StableDiffusionModel, prompt: string, clipSkip: number): Promise<Float32Array> {
  let cache = caches.get(model);
  if (!cache) {
    cache = new EmbeddingCache();
    caches.set(model, cache);
  }
  return cache.get(`${clipSkip}\u0000${prompt}`, async () => {
    const out = await runTextEncoder(textEncoderOf(model), prompt);
    if (clipSkip === 0) return out.last_hidden_state.data as Float32Array; // [1, L, D]
    return hiddenLayer(out.normed_hidden_states, -(clipSkip + 1)); // final_layer_norm(hidden_states[-(k+1)])
  });
}

/**
 * Encode prompt for SD 1.x/2.x: encoder_hidden_states [B, L, D] (negative rows first with CFG; a missing
 * negative prompt encodes "").
 */
export async function encodePromptSD(model: StableDiffusionModel, req: PromptRequest): Promise<Conditioning> {
  const layers = textEncoderOf(model).config.num_hidden_layers;
  if (!(Number.isInteger(req.clipSkip) && req.clipSkip >= 0 && req.clipSkip < layers)) {
    throw new ReimagineError(`clip skip must be 0..${layers - 1} for this model (got ${req.clipSkip})`);
  }
  const cond = await embed(model, req.prompt, req.clipSkip);
  const uncond = req.cfg ? await embed(model, req.negativePrompt ?? "", req.clipSkip) : undefined;
  const batch = req.numImages * (req.cfg ? 2 : 1);
  const L = model.components.text_encoder!.tokenizer.modelMaxLength;
  const D = cond.length / L;
  return { batch, cfg: req.cfg, unetInputs: { encoder_hidden_states: { data: batchRows(cond, req.numImages, uncond), dims: [batch, L, D] } } };
}
