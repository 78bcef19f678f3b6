// On-disk cache of built graphs: <root>/graphs/<kind>-<hash>/{model.onnx,weights.bin}, keyed by
// builder version + model kind + config + the weights' content hash (sha256 of the files, computed
// once per file and remembered: weights/hash.ts). A build goes to a temporary
// folder renamed into place when complete, so an interrupted build never leaves a half graph.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { cacheRoot } from "../cache-root.js";
import type { WeightSource } from "../weights/source.js";
import { BUILDER_VERSION, type Graph, removeDir } from "./builder.js";

export { cacheRoot };

export interface GraphKey {
  /** Model kind, e.g. "unet", "vae-encoder". */
  kind: string;
  config: unknown;
  weights: WeightSource;
  /** Anything else that changes the graph (build options). */
  extra?: unknown;
}

export function graphHash(key: GraphKey): string {
  return createHash("sha256")
    // weights: fingerprint() is a content hash, so two files with equal headers and sizes never share an entry
    .update(JSON.stringify([BUILDER_VERSION, key.kind, key.config, key.weights.fingerprint(), key.extra ?? null]))
    .digest("hex")
    .slice(0, 20);
}

/**
 * Returns the path of the cached `model.onnx` for `key`, building it with `build` first
 * when absent. `root` defaults to cacheRoot().
 */
export function cachedGraph(key: GraphKey, build: () => Graph, root = cacheRoot()): { path: string; built: boolean } {
  const dir = join(root, "graphs", `${key.kind}-${graphHash(key)}`);
  const path = join(dir, "model.onnx");
  if (existsSync(path)) return { path, built: false };
  mkdirSync(join(root, "graphs"), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    build().save(tmp, { metadata: { kind: key.kind } });
    if (existsSync(dir) && !existsSync(path)) removeDir(dir); // leftover of a broken cache entry
    try {
      renameSync(tmp, dir);
    } catch (e) {
      // another process finished the same graph first: keep theirs
      if (!existsSync(path)) throw e;
    }
  } finally {
    removeDir(tmp);
  }
  return { path, built: true };
}
