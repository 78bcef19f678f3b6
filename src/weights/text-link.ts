// Symlinks stored as text files: git without symlink support (Windows checkouts, some archive tools)
// writes a link as a small file whose whole content is the relative target path. Model folders that share
// components this way (SDXL's tokenizer_2 -> ../tokenizer, an inpainting folder reusing another's VAE)
// must still load: every model file read follows such a link.
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/** Links are tiny; a real config or weight file never is a single relative path line. */
const MAX_LINK_BYTES = 1024;

/**
 * The file `path` stands for: itself, or the target of a text-stored symlink (followed up to 8 hops,
 * only to an existing file).
 * @example resolveTextLink("model/vae/config.json") // ".../sd-tiny/model/vae/config.json"
 */
export function resolveTextLink(path: string): string {
  let current = path;
  for (let hop = 0; hop < 8; hop++) {
    let st;
    try {
      st = statSync(current);
    } catch {
      return current;
    }
    if (!st.isFile() || st.size === 0 || st.size > MAX_LINK_BYTES) return current;
    const text = readFileSync(current, "utf8").trim();
    if (!/^\.{0,2}[^\n{#\0]*$/.test(text) || text.startsWith("/") || !/[\\/]|\./.test(text)) return current;
    const target = resolve(dirname(current), text);
    if (target === current || !existsSync(target) || !statSync(target).isFile()) return current;
    current = target;
  }
  return current;
}
