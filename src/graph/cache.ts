// On-disk cache of built graphs: <root>/graphs/<kind>-<hash>/{model.onnx,weights.bin}, keyed by
// the graph's structure hash (nodes, attributes, parameter names/shapes/derivations: no weights) +
// model kind + config + weights fingerprint, so any change to the model code rebuilds the cache by
// itself. A build goes to a temporary folder renamed into place when complete, so an interrupted
// build never leaves a half graph.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { WeightSource } from "../weights/source.js";
import { type Graph, removeDir } from "./builder.js";

/** Root of Reimagine's caches: REIMAGINE_CACHE, else $XDG_CACHE_HOME/reimagine, else ~/.cache/reimagine. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REIMAGINE_CACHE) return env.REIMAGINE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "reimagine");
}

export interface GraphKey {
  /** Model kind, e.g. "unet", "vae-encoder". */
  kind: string;
  config: unknown;
  weights: WeightSource;
  /** Anything else that changes the graph (build options). */
  extra?: unknown;
}

/** The cache key of `key` built as a graph with structure hash `structure` (Graph.structureHash()). */
export function graphHash(key: GraphKey, structure: string): string {
  return createHash("sha256")
    .update(JSON.stringify([structure, key.kind, key.config, key.weights.fingerprint(), key.extra ?? null]))
    .digest("hex")
    .slice(0, 20);
}

/**
 * Returns the path of the cached `model.onnx` for `key`. `build` always runs (it only lays out nodes and
 * binds weight keys, ~0.1 s for the SD 1.5 UNet: no weight is read) so its structure hash is part of the
 * key; the graph is saved (weights read, transformed and written: the slow part, announced by
 * `onSave`) only when the cache lacks it. `root` defaults to cacheRoot().
 */
export function cachedGraph(key: GraphKey, build: () => Graph, root = cacheRoot(), onSave?: () => void): { path: string; built: boolean } {
  const graph = build();
  const dir = join(root, "graphs", `${key.kind}-${graphHash(key, graph.structureHash())}`);
  const path = join(dir, "model.onnx");
  if (existsSync(path)) return { path, built: false };
  onSave?.();
  mkdirSync(join(root, "graphs"), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    graph.save(tmp, { metadata: { kind: key.kind } });
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
