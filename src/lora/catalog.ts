// Finding LoRAs by the names prompts use, as AUTOMATIC1111: every .safetensors under the LoRA folders (recursively),
// named by file name without extension and by its `ss_output_name` alias; a missing name lists close matches.
// The short hash A1111 writes as `Lora hashes`: metadata `sshs_model_hash`, else the "addnet" sha256 of the file's
// data section, first 12 hex digits. Ref: AUTOMATIC1111 extensions-builtin/Lora/networks.py (list_available_networks),
// network.py (NetworkOnDisk), modules/hashes.py (addnet_hash_safetensors), extra_networks_lora.py (Lora hashes).
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readSync } from "node:fs";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import { SafetensorsFile } from "../weights/safetensors.js";

export interface LoraEntry {
  /** File name without extension (what `<lora:name:...>` usually names). */
  name: string;
  /** `ss_output_name` from the file's metadata, else `name`. */
  alias: string;
  path: string;
  /** The file's safetensors `__metadata__` (training settings; A1111's API lists it). */
  metadata?: Record<string, string>;
}

/**
 * Every `.safetensors` file under `dirs` (recursively, sorted), with its name and alias. Missing folders are skipped.
 *
 * @example listLoras(["models/loras"]) // [{ name: "watercolor", alias: "watercolor_v2", path: "models/loras/style/watercolor.safetensors" }]
 */
export function listLoras(dirs: readonly string[]): LoraEntry[] {
  const out: LoraEntry[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.safetensors$/i.test(f)).sort();
    for (const f of files) {
      const path = join(dir, f);
      const name = (f.split(/[\\/]/).pop() ?? f).replace(/\.safetensors$/i, "");
      let alias = name;
      let metadata: Record<string, string> | undefined;
      try {
        const file = SafetensorsFile.open(path);
        metadata = file.metadata;
        alias = metadata.ss_output_name || name;
        file.close();
      } catch {
        // unreadable headers are reported when the LoRA is used
      }
      out.push({ name, alias, path, metadata });
    }
  }
  return out;
}

/**
 * The LoRA a prompt names: by name or alias (a later file wins, as in A1111's alias table). A name that matches
 * nothing is a ReimagineError listing up to three close names.
 *
 * @example findLora("watercolor", listLoras(dirs)).path
 */
export function findLora(name: string, entries: readonly LoraEntry[]): LoraEntry {
  const byName = new Map<string, LoraEntry>();
  for (const e of entries) byName.set(e.name, e).set(e.alias, e);
  const hit = byName.get(name);
  if (hit) return hit;
  const close = [...byName.keys()]
    .map((k) => ({ k, d: editDistance(k.toLowerCase(), name.toLowerCase()) }))
    .filter(({ k, d }) => d <= Math.max(2, Math.floor(name.length / 3)) || k.toLowerCase().includes(name.toLowerCase()))
    .sort((a, b) => a.d - b.d || a.k.localeCompare(b.k))
    .slice(0, 3)
    .map(({ k }) => k);
  const hint = close.length ? `did you mean ${close.map((k) => `'${k}'`).join(", ")}?` : `${entries.length} LoRA file(s) are available`;
  throw new ReimagineError(`no LoRA named '${name}' in the LoRA folders: ${hint} (names are file names without .safetensors)`, "not_found");
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/**
 * A1111's short hash of a LoRA file: the metadata's `sshs_model_hash`, else sha256 of everything after the
 * safetensors header ("addnet" hash), first 12 hex digits.
 *
 * @example loraShortHash("loras/watercolor.safetensors") // "3f1a2b4c5d6e"
 */
export function loraShortHash(path: string): string {
  const file = SafetensorsFile.open(path);
  const stored = file.metadata.sshs_model_hash;
  file.close();
  if (stored) return stored.slice(0, 12);
  const fd = openSync(path, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    let pos = 8 + Number(len.readBigUInt64LE(0));
    const h = createHash("sha256");
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
    return h.digest("hex").slice(0, 12);
  } finally {
    closeSync(fd);
  }
}

/**
 * The `Lora hashes` infotext value: `name: hash` per LoRA as named in the prompt, ":" and "," removed from names.
 *
 * @example loraHashesInfotext([{ name: "watercolor", hash: "3f1a2b4c5d6e" }]) // "watercolor: 3f1a2b4c5d6e"
 */
export function loraHashesInfotext(used: readonly { name: string; hash: string }[]): string {
  return used
    .filter((u) => u.hash)
    .map((u) => `${u.name.replace(/[:,]/g, "")}: ${u.hash}`)
    .join(", ");
}
