// Broken copies of the sd-tiny fixture for tests: the same folder (symlinked parts) with one float32
// weight of one component set to NaN, as a damaged or badly merged checkpoint would have it.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fixture } from "./fixtures.js";

const PARTS = ["model_index.json", "scheduler", "unet", "vae", "text_encoder", "tokenizer"];

/**
 * Writes <dir> as sd-tiny with `key` of `component` (e.g. "unet", "conv_out.bias") poisoned with NaN.
 * @example const model = nanModel(tmp, "vae", "decoder.conv_out.bias");
 */
export function nanModel(dir: string, component: "unet" | "vae", key: string): string {
  const src = fixture("sd-tiny", "model");
  mkdirSync(join(dir, component), { recursive: true });
  for (const part of PARTS) if (part !== component) symlinkSync(join(src, part), join(dir, part));
  symlinkSync(join(src, component, "config.json"), join(dir, component, "config.json"));
  const file = "diffusion_pytorch_model.safetensors";
  const bytes = Buffer.from(readFileSync(join(src, component, file)));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.toString("utf8", 8, 8 + headerLength));
  const entry = header[key];
  if (entry?.dtype !== "F32") throw new Error(`nanModel: no float32 tensor '${key}' in ${component}`);
  bytes.writeFloatLE(NaN, 8 + headerLength + entry.data_offsets[0]);
  writeFileSync(join(dir, component, file), bytes);
  return dir;
}
