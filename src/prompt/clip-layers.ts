// Which hidden state of each text encoder AUTOMATIC1111 conditions on, per model family, and how to take it from
// our CLIPTextModel graph's outputs (src/models/clip-text.ts: last_hidden_state, hidden_states, normed_hidden_states,
// text_embeds). Ref: AUTOMATIC1111 sd_hijack_clip.py (encode_with_transformers: CLIP_stop_at_last_layers),
// sd_hijack_open_clip.py (SD 2.x ignores clip skip), FrozenCLIPEmbedderForSDXLWithCustomWords (layer "hidden").

/** Model families with different A1111 text-conditioning rules. */
export type TextFamily = "sd1" | "sd2" | "sdxl";

/**
 * The A1111 text family of a model: SDXL, else SD 2.x when the text encoder is an OpenCLIP tower (exact GELU; A1111
 * drives it with its OpenCLIP embedder), else SD 1.x (OpenAI CLIP, quick_gelu).
 *
 * @example textFamily("sd", model.components.text_encoder!.config) // "sd1" for runwayml/stable-diffusion-v1-5
 */
export function textFamily(modelFamily: "sd" | "sdxl", textEncoderConfig: { hidden_act: string }): TextFamily {
  if (modelFamily === "sdxl") return "sdxl";
  return textEncoderConfig.hidden_act === "gelu" ? "sd2" : "sd1";
}

/** A hidden state of the encoder: the final one, or the `fromEnd`-th from the end of the stacked per-layer states. */
export type HiddenRule = { output: "last_hidden_state" } | { output: "normed_hidden_states" | "hidden_states"; fromEnd: number };

/**
 * A1111's rule per encoder. `clipSkip` counts skipped layers as the pipeline does (0 = last layer; A1111's
 * "Clip skip: 2" = 1). SD 1.x: `final_layer_norm(hidden_states[-(clipSkip+1)])` (the last_hidden_state at 0).
 * SD 2.x: A1111's OpenCLIP path ignores clip skip (the diffusers SD2 encoder already ends at the penultimate
 * layer). SDXL: both encoders' penultimate layer without the final norm; A1111 ignores clip skip there by default.
 *
 * @example a1111HiddenRules("sd1", 1) // [{ output: "normed_hidden_states", fromEnd: 2 }]
 */
export function a1111HiddenRules(family: TextFamily, clipSkip = 0): HiddenRule[] {
  switch (family) {
    case "sd1":
      return [clipSkip === 0 ? { output: "last_hidden_state" } : { output: "normed_hidden_states", fromEnd: clipSkip + 1 }];
    case "sd2":
      return [{ output: "last_hidden_state" }];
    case "sdxl":
      return [
        { output: "hidden_states", fromEnd: 2 },
        { output: "hidden_states", fromEnd: 2 },
      ];
  }
}

/** A named graph output as plain data (what ModelSession.run returns). */
export interface OutputTensor {
  data: Float32Array | BigInt64Array | Int32Array;
  dims: readonly number[];
}

/**
 * The hidden state a rule selects, as a fresh [B * L * D] array. Stacked outputs are [N+1, B, L, D].
 *
 * @example pickHidden(await textEncoder.run({ input_ids }), { output: "hidden_states", fromEnd: 2 })
 */
export function pickHidden(outputs: Record<string, OutputTensor>, rule: HiddenRule): Float32Array {
  const t = outputs[rule.output];
  if (!t) throw new Error(`text encoder has no output '${rule.output}'`);
  const data = t.data as Float32Array;
  if (rule.output === "last_hidden_state") return data.slice();
  const layers = t.dims[0];
  if (rule.fromEnd < 1 || rule.fromEnd > layers) throw new Error(`hidden state -${rule.fromEnd} of ${layers}`);
  const per = data.length / layers;
  const idx = layers - rule.fromEnd;
  return data.slice(idx * per, (idx + 1) * per);
}
