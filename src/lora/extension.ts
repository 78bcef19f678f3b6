// LoRA as a built-in conditioning of the pipeline (src/pipeline/img2img.ts BUILT_IN): the run's LoRAs resolved in
// step 1 (errors before any work), the UNet built with LoRA slots (`unetOptions`), the UNet slot feeds added before
// each UNet call, and `Lora hashes` for the metadata. The text encoders get their feeds in step 3
// (src/pipeline/prompt-encoding.ts through the families).
import type { ExtensionFactory } from "../pipeline/img2img.js";
import { loraHashes, prepareRunLoras, unetFeeds } from "./run.js";

/**
 * The LoRA step implementations of a run, or undefined when neither this run nor an earlier one on the model used a
 * LoRA (the plain graphs then stay loaded: plain runs cost nothing extra).
 */
export const loraExtension: ExtensionFactory = async (pipe, opts) => {
  const model = pipe.model;
  const run = await prepareRunLoras(model, opts);
  if (!run.slots) return undefined;
  const hashes = run.loras.length ? loraHashes(run.loras) : "";
  return {
    name: "lora",
    unetOptions: { loraSlots: true },
    async beforeUnet(_run, step) {
      Object.assign(step.unetFeeds, unetFeeds(model, run.loras)); // rank 0 for layers (or runs) without LoRA
    },
    infotext: (): Record<string, string> => (hashes ? { "Lora hashes": hashes } : {}),
  };
};
