// ControlNets loaded for a model, inside the process that runs it: opened (a folder, a .safetensors file, or a Hugging
// Face repo id downloaded like a model component), checked against the model's UNet (family, layout, VAE factor),
// built as an ONNX graph through the model's graph cache and kept loaded per reference for the next runs.
// Ref: diffusers ControlNetModel.from_pretrained / from_single_file; StableDiffusionControlNetImg2ImgPipeline's check
// that the controlnet matches the unet.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ReimagineError } from "../errors.js";
import { buildControlNetModel, type ControlNetConfig, controlNetOutputNames } from "../models/controlnet.js";
import { controlResidualNames } from "../models/unet.js";
import type { StableDiffusionModel } from "../pipeline/components.js";
import type { ModelSession } from "../runtime.js";
import { checkControlNetFits, openControlNet } from "../weights/controlnet.js";
import { downloadComponentRepo, looksLikeRepoId } from "../weights/hub.js";

/** A ControlNet ready to run beside one model's UNet. */
export interface LoadedControlNet {
  /** The reference it was loaded from (absolute path or repo id). */
  ref: string;
  /** For messages and metadata: the folder or file name, or the repo id. */
  name: string;
  config: ControlNetConfig;
  session: ModelSession;
  /** Graph output names, in the UNet's residual order. */
  outputs: { down: string[]; mid: string };
}

const loaded = new WeakMap<StableDiffusionModel, Map<string, Promise<LoadedControlNet>>>();

/** The cache key of a reference: a local path made absolute, a repo id as given. */
export function controlNetKey(ref: string): string {
  return existsSync(ref) ? resolve(ref) : ref;
}

/**
 * Loads (or returns the already loaded) ControlNet `ref` for `model`; refuses one that cannot condition its UNet in one
 * line naming both. A repo id is downloaded into the Hugging Face cache with the model's hub settings.
 *
 * @example const cn = await loadControlNet(pipe.model, "lllyasviel/control_v11p_sd15_scribble");
 */
export function loadControlNet(model: StableDiffusionModel, ref: string): Promise<LoadedControlNet> {
  const forModel = loaded.get(model) ?? new Map<string, Promise<LoadedControlNet>>();
  loaded.set(model, forModel);
  const key = controlNetKey(ref);
  let p = forModel.get(key);
  if (!p) {
    p = open(model, ref, key);
    forModel.set(key, p);
    p.catch(() => forModel.delete(key)); // a failed load is not remembered
  }
  return p;
}

async function open(model: StableDiffusionModel, ref: string, key: string): Promise<LoadedControlNet> {
  let path = ref;
  let name: string | undefined;
  if (!existsSync(ref) && looksLikeRepoId(ref) && !/\.(safetensors|ckpt|pt|pth|bin|pkl)$/i.test(ref)) {
    const { variant: _plain, tokenizerOnly: _no, ...hub } = model.hub ?? {};
    path = await downloadComponentRepo(ref, hub);
    name = ref;
  }
  const cn = openControlNet(path);
  try {
    checkControlNetFits(cn, model.components.unet.config, model.name);
    const config = cn.config;
    // the hint encoder downsamples the control image by 2 per stride-2 conv; the latents are the VAE factor smaller
    const factor = 2 ** (config.conditioning_embedding_out_channels.length - 1);
    if (factor !== model.vaeScaleFactor) {
      throw new ReimagineError(
        `ControlNet '${cn.name}' reads control images at 1/${factor} of the latent resolution but the model '${model.name}' has a VAE factor of ${model.vaeScaleFactor}; use a ControlNet made for this model`,
        "controlnet_mismatch",
      );
    }
    const outputs = controlNetOutputNames(config);
    const inputs = controlResidualNames(model.components.unet.config);
    if (outputs.down.length !== inputs.down.length) {
      throw new ReimagineError(
        `ControlNet '${cn.name}' gives ${outputs.down.length} residuals for the UNet's ${inputs.down.length} skips; use a ControlNet made for this model`,
        "controlnet_mismatch",
      );
    }
    const session = await model.sideSession("controlnet", config, cn.weights, () => buildControlNetModel(cn.weights, config));
    return { ref: key, name: name ?? cn.name, config, session, outputs };
  } finally {
    cn.close(); // the session reads its cached graph; the weights are not needed any more
  }
}

/**
 * Releases the ControlNets loaded for `model` whose reference is not in `keep` (all of them without `keep`), so a
 * model process holds only what its runs use.
 * @example await releaseControlNets(pipe.model);
 */
export async function releaseControlNets(model: StableDiffusionModel, keep: ReadonlySet<string> = new Set()): Promise<void> {
  const forModel = loaded.get(model);
  if (!forModel) return;
  for (const [key, p] of [...forModel]) {
    if (keep.has(key)) continue;
    forModel.delete(key);
    const cn = await p.catch(() => undefined);
    await cn?.session.release();
  }
}
