// Running a CLIP text encoder on a prompt as diffusers' encode_prompt does: tokenize to the tokenizer's
// model_max_length (padding "max_length", truncation), one row per call, every hidden state returned.
import type { TensorData } from "../runtime.js";
import type { LoadedTextEncoder } from "./components.js";

/** Outputs of buildCLIPTextModel for one prompt: last_hidden_state, hidden_states [N+1, 1, L, D], ... */
export type TextEncoderOutputs = Record<string, TensorData>;

/**
 * tokenizer(prompt, padding="max_length", max_length=model_max_length, truncation=True) -> text encoder.
 * @example const out = await runTextEncoder(model.components.text_encoder!, "a castle"); out.last_hidden_state.dims // [1, 77, 768]
 */
export async function runTextEncoder(te: LoadedTextEncoder, prompt: string): Promise<TextEncoderOutputs> {
  const tok = te.tokenizer;
  const { inputIds } = tok.call(prompt, { maxLength: tok.modelMaxLength, padding: "max_length", truncation: true });
  const ids = BigInt64Array.from(inputIds, (x) => BigInt(x));
  return te.session.run({ input_ids: { data: ids, dims: [1, ids.length] } });
}

/** Entry `index` of a stacked [N+1, 1, L, D] hidden-state output (negative counts from the end, as Python). */
export function hiddenLayer(stacked: TensorData, index: number): Float32Array {
  const n = stacked.dims[0];
  const i = index < 0 ? n + index : index;
  const per = stacked.data.length / n;
  return (stacked.data as Float32Array).slice(i * per, (i + 1) * per);
}
