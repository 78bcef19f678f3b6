// The tiny VAE (TAESD, Ref: madebyollin/taesd and diffusers AutoencoderTiny) that decodes live
// previews for a model family, found in the Hugging Face cache like any model, or downloaded when
// asked for by name. Without one, previews are the cheap linear latent->RGB projection.
import { ReimagineError } from "../errors.js";
import { downloadComponentRepo, type HubOptions } from "../weights/hub.js";

/** TAESD repo per model family: SD 1.x and 2.x share a latent space; SDXL has its own. */
export const TINY_VAE_REPOS: Readonly<Record<string, string>> = {
  sd: "madebyollin/taesd",
  sdxl: "madebyollin/taesdxl",
};

/**
 * The TAESD repo that decodes latents of a model family, or undefined when none is known.
 * @example tinyVaeRepoFor("sdxl") // "madebyollin/taesdxl"
 */
export function tinyVaeRepoFor(family: string): string | undefined {
  return TINY_VAE_REPOS[family];
}

/**
 * Resolves the preview VAE for `family`. "auto": the family's TAESD when the Hugging Face cache
 * already has it (never downloads; undefined otherwise). Any other value is a repo id or folder
 * returned as is (the loader opens it like --tiny-vae, downloading a repo if needed).
 * @example const ref = await previewVaeFor("sd", "auto"); // snapshot folder of madebyollin/taesd, or undefined
 */
export async function previewVaeFor(family: string, want: string, hub: HubOptions = {}): Promise<string | undefined> {
  if (want !== "auto") return want;
  const repo = tinyVaeRepoFor(family);
  if (!repo) return undefined;
  try {
    return await downloadComponentRepo(repo, { ...hub, localFilesOnly: true, onProgress: undefined });
  } catch (e) {
    if (e instanceof ReimagineError && e.code === "not_cached") return undefined;
    throw e;
  }
}
