// NaN / Inf guard for the pipeline's tensors: a model with non-finite weights (a damaged, badly
// merged or badly converted checkpoint) otherwise decodes to a black image that looks like success.
// Ref: AUTOMATIC1111 modules/devices.py test_for_nans (NansException naming "Unet" or "VAE").
import { ReimagineError } from "../errors.js";

/** Where a tensor came from, as named in the error. */
export type FiniteStage = "VAE encoder" | "UNet" | "VAE decoder" | "tiny VAE encoder" | "tiny VAE decoder";

const CAUSE: Record<FiniteStage, string> = {
  "VAE encoder": "the VAE weights likely contain NaN or Inf (a damaged or badly converted file): try the model's original VAE or re-download it",
  UNet: "the UNet weights likely contain NaN or Inf (a damaged, badly merged or badly converted checkpoint): try another copy of the model",
  "VAE decoder": "the VAE weights likely contain NaN or Inf (a damaged or badly converted file): try the model's original VAE or re-download it",
  "tiny VAE encoder": "the tiny VAE's weights likely contain NaN or Inf: re-download it or drop --tiny-vae",
  "tiny VAE decoder": "the tiny VAE's weights likely contain NaN or Inf: re-download it or drop --tiny-vae",
};

/** Index of the first NaN or ±Inf in `data`, or -1. One pass; x - x is NaN exactly for non-finite x. */
export function firstNonFinite(data: Float32Array): number {
  let acc = 0;
  for (let i = 0; i < data.length; i++) acc += data[i] - data[i];
  if (acc === 0) return -1;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

/**
 * Throws a one-line ReimagineError naming the component and the likely cause when `data` holds
 * a NaN or an infinity (never returns a black image as success).
 * @example checkFinite(latents, "UNet", "step 3 of 10")
 */
export function checkFinite(data: Float32Array, stage: FiniteStage, when?: string): void {
  const i = firstNonFinite(data);
  if (i < 0) return;
  let bad = 0;
  for (let j = i; j < data.length; j++) if (!Number.isFinite(data[j])) bad++;
  throw new ReimagineError(
    `the ${stage} produced ${bad} of ${data.length} values that are NaN or infinite${when ? ` (${when})` : ""}, so the image would be black: ${CAUSE[stage]}`,
    "non_finite",
  );
}
