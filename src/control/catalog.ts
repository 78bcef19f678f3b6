// The ControlNets a front end offers by name: the .safetensors files and ControlNet folders of one directory (by
// default `controlnet/` beside the model), as A1111's ControlNet extension lists its models folder. A name resolves to
// its path; a path or a Hugging Face repo id is taken as it is. Listing reads names only (no file is opened).
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ReimagineError } from "../errors.js";
import { openControlNet } from "../weights/controlnet.js";
import { looksLikeRepoId } from "../weights/hub.js";

export interface ControlNetEntry {
  /** The file name without .safetensors, or the folder name (what A1111's model_list shows and clients send back). */
  name: string;
  path: string;
}

const PICKLE = /\.(ckpt|pt|pth|bin|pkl)$/i;
const isDir = (p: string) => statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;

/**
 * The ControlNets in `dir`: `*.safetensors` files and folders holding config.json (or a pipeline's controlnet/),
 * sorted by name; an absent folder lists nothing. Pickle files (.pth, .ckpt) are left out: they are refused when loaded.
 * @example listControlNets("models/controlnet") // [{ name: "control_v11p_sd15_scribble", path: ".../control_v11p_sd15_scribble.safetensors" }]
 */
export function listControlNets(dir: string | undefined): ControlNetEntry[] {
  if (!dir || !isDir(dir)) return [];
  const out: ControlNetEntry[] = [];
  for (const f of readdirSync(dir).sort()) {
    const path = join(dir, f);
    if (/\.safetensors$/i.test(f) && !isDir(path)) out.push({ name: f.replace(/\.safetensors$/i, ""), path });
    else if (isDir(path) && (existsSync(join(path, "config.json")) || existsSync(join(path, "controlnet", "config.json")))) out.push({ name: f, path });
  }
  return out;
}

/**
 * Where ControlNets are looked up by default: `controlnet/` beside a local model (a sibling of its file or folder);
 * none for a Hugging Face repo id.
 * @example defaultControlNetDir("models/dreamshaper_8.safetensors") // "models/controlnet"
 */
export function defaultControlNetDir(modelRef: string | undefined): string | undefined {
  if (!modelRef || !existsSync(modelRef)) return undefined;
  return join(dirname(resolve(modelRef)), "controlnet");
}

/**
 * A ControlNet reference as the front ends take it: an existing path as is, a name listed in `dir` ("name" or
 * A1111's "name [hash]") as its path, a Hugging Face repo id as is (downloaded when the run loads it).
 * @example resolveControlNetRef("control_v11p_sd15_scribble [d4ba51ff]", "models/controlnet")
 */
export function resolveControlNetRef(ref: string, dir: string | undefined): string {
  if (PICKLE.test(ref)) openControlNet(ref); // throws: pickle files are refused, found or not
  if (existsSync(ref)) return ref;
  const name = ref.replace(/\s*\[[0-9a-fA-F]+\]$/, "");
  const found = listControlNets(dir).find((e) => e.name === name || e.name === basename(name).replace(/\.safetensors$/i, ""));
  if (found) return found.path;
  if (looksLikeRepoId(name)) return name;
  const have = listControlNets(dir).map((e) => e.name);
  const where = dir ? (have.length ? ` (${dir} has: ${have.join(", ")})` : ` (${dir} has none)`) : "";
  throw new ReimagineError(
    `ControlNet '${ref}' not found: give a ControlNet folder, a .safetensors file, a Hugging Face repo id, or the name of one in the ControlNet folder${where}`,
    "not_found",
  );
}
