// SD 1.x / 2.x prompt encoding (step 3 of the pipeline): one CLIP text encoder, last_hidden_state, or
// final_layer_norm(hidden_states[-(clip_skip + 1)]) with clip skip; AUTOMATIC1111 prompt syntax (emphasis, BREAK,
// 75-token chunks), textual inversion and the text-encoder part of LoRAs through prompt-encoding.ts.
// Ref: diffusers StableDiffusionImg2ImgPipeline.encode_prompt; A1111 sd_hijack_clip.py (same layer rule for SD 1.x).
import { ReimagineError } from "../errors.js";
import type { HiddenRule } from "../prompt/clip-layers.js";
import { checkPromptSyntax } from "../lora/spec.js";
import type { StableDiffusionModel } from "./components.js";
import { batchRows, type Conditioning, type PromptRequest } from "./family.js";
import { encodeTextPair, textEncoderRuns } from "./prompt-encoding.js";

/** The text encoder, or an error naming what the model lacks. */
function textEncoderOf(model: StableDiffusionModel) {
  const te = model.components.text_encoder;
  if (!te) throw new ReimagineError(`${model.name}: this SD model has no text_encoder; the folder is incomplete`, "bad_model");
  return te;
}

/**
 * Encode prompt for SD 1.x/2.x: encoder_hidden_states [B, 77 * chunks, D] (negative rows first with CFG; a missing
 * negative prompt encodes "").
 */
export async function encodePromptSD(model: StableDiffusionModel, req: PromptRequest): Promise<Conditioning> {
  const te = textEncoderOf(model);
  const layers = te.config.num_hidden_layers;
  if (!(Number.isInteger(req.clipSkip) && req.clipSkip >= 0 && req.clipSkip < layers)) {
    throw new ReimagineError(`clip skip must be 0..${layers - 1} for this model (got ${req.clipSkip})`);
  }
  // diffusers: last_hidden_state, or final_layer_norm(hidden_states[-(k+1)]) (A1111's "Clip skip: k+1" on SD 1.x)
  const rule: HiddenRule = req.clipSkip === 0 ? { output: "last_hidden_state" } : { output: "normed_hidden_states", fromEnd: req.clipSkip + 1 };
  const { prompt, runs, tiHashes } = await textEncoderRuns(model, req, [{ name: "text_encoder", te, rule, negativeRule: rule, pooled: false }]);
  const { cond, uncond, embeddings } = await encodeTextPair(model, runs, {
    prompts: [prompt],
    negatives: req.cfg ? [req.negativePrompt ?? ""] : undefined,
    syntax: checkPromptSyntax(req.promptSyntax),
  });
  const batch = req.numImages * (req.cfg ? 2 : 1);
  return {
    batch,
    cfg: req.cfg,
    unetInputs: { encoder_hidden_states: { data: batchRows(cond.hidden, req.numImages, uncond?.hidden), dims: [batch, cond.tokens, cond.width] } },
    ...(embeddings.length ? { infotext: { "TI hashes": tiHashes(embeddings) } } : {}),
  };
}
