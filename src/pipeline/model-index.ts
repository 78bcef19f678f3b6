// Finds the model an image was made with, from the name and hash in its A1111 metadata: the
// Hugging Face hub cache (repo folders; LFS blobs are named by their sha256, so an A1111 sha256
// "Model hash" finds its file without hashing anything) and Reimagine's own list of the models it
// has loaded (<cache>/models.json: hash -> reference), which covers local folders and files.
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join, sep } from "node:path";
import { cacheRoot } from "../graph/cache.js";
import { hubCacheDir, parseRepoRef, repoFolderName } from "../weights/hub.js";

export interface KnownModel {
  /** As shown in metadata ("Model: ..."). */
  name: string;
  /** As shown in metadata ("Model hash: ..."). */
  hash: string;
  /** What loads it again: a hub repo id, or an absolute folder / file path. */
  ref: string;
  usedAt?: string;
}

export interface FoundModel {
  ref: string;
  /** Where it was found, for the status line. */
  where: string;
}

const MAX_ENTRIES = 500;
const listPath = (cacheDir?: string) => join(cacheDir ?? cacheRoot(), "models.json");

function readList(cacheDir?: string): KnownModel[] {
  try {
    const list = JSON.parse(readFileSync(listPath(cacheDir), "utf8"));
    return Array.isArray(list) ? list.filter((m) => typeof m?.ref === "string" && typeof m?.hash === "string") : [];
  } catch {
    return []; // absent or unreadable: an empty list (it is only a lookup aid)
  }
}

/**
 * Records a loaded model so `--from` can find it by hash later. Never throws (a read-only cache
 * only loses the lookup).
 * @example rememberModel({ name: "dreamshaper_8", hash: "879db523c3", ref: "/models/dreamshaper_8.safetensors" })
 */
export function rememberModel(m: KnownModel, cacheDir?: string): void {
  if (!m.hash) return;
  try {
    const list = readList(cacheDir).filter((x) => !(x.hash === m.hash && x.ref === m.ref));
    list.unshift({ name: m.name, hash: m.hash, ref: m.ref, usedAt: new Date().toISOString() });
    const path = listPath(cacheDir);
    mkdirSync(join(path, ".."), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(list.slice(0, MAX_ENTRIES), null, 1)}\n`);
    renameSync(tmp, path); // atomic: a reader never sees half a list
  } catch {
    /* read-only or full cache folder: the lookup is best effort */
  }
}

/** The hub-cache snapshot folder of a repo at a revision (a branch name through refs/, or a commit). */
function snapshotOf(hub: string, repoId: string, revision: string): string | undefined {
  const storage = join(hub, repoFolderName(repoId));
  const refFile = join(storage, "refs", ...revision.split("/"));
  const commit = existsSync(refFile) ? readFileSync(refFile, "utf8").trim() : revision;
  const dir = join(storage, "snapshots", commit);
  return /^[0-9a-f]{40}$/.test(commit) && existsSync(dir) ? dir : undefined;
}

function isRepoId(s: string): boolean {
  try {
    parseRepoRef(s);
    return true;
  } catch {
    return false;
  }
}

/** Files under `dir` (recursively) whose real path is `target`. */
function linksTo(dir: string, target: string): string[] {
  const out: string[] = [];
  for (const rel of readdirSync(dir, { recursive: true }) as string[]) {
    const p = join(dir, rel);
    try {
      if (statSync(p).isFile() && realpathSync(p) === target) out.push(p);
    } catch {
      /* dangling link */
    }
  }
  return out;
}

/** A hub-cache blob whose sha256 starts with `hash`, as a loadable reference. */
function findBlob(hub: string, hash: string): FoundModel | undefined {
  if (!/^[0-9a-f]{8,64}$/.test(hash) || !existsSync(hub)) return undefined;
  for (const folder of readdirSync(hub).filter((f) => f.startsWith("models--"))) {
    const storage = join(hub, folder);
    const blobs = join(storage, "blobs");
    const blob = existsSync(blobs) ? readdirSync(blobs).find((b) => b.startsWith(hash) && /^[0-9a-f]{64}$/.test(b)) : undefined;
    if (!blob) continue;
    const repoId = folder.slice("models--".length).split("--").join("/");
    const snapshots = join(storage, "snapshots");
    for (const commit of existsSync(snapshots) ? readdirSync(snapshots) : []) {
      const snap = join(snapshots, commit);
      const file = linksTo(snap, realpathSync(join(blobs, blob)))[0];
      if (!file) continue;
      const main = snapshotOf(hub, repoId, "main") === snap;
      if (existsSync(join(snap, "model_index.json")))
        return {
          ref: main ? repoId : `${repoId}@${commit}`,
          where: `the Hugging Face cache (${file
            .slice(snap.length + 1)
            .split(sep)
            .join("/")})`,
        };
      if (file.endsWith(".safetensors")) return { ref: file, where: "the Hugging Face cache" };
    }
  }
  return undefined;
}

/**
 * Where the model named in an image's metadata is on this machine, or undefined. Tries, in order:
 * a hub repo id already in the hub cache, a model Reimagine has loaded with that hash, a hub-cache
 * file with that sha256 prefix, and (for images without a hash) a model Reimagine has loaded by that name.
 * @example findModel({ name: "stabilityai/sd-turbo", hash: "e2f0c7f5a1" }) // { ref: "stabilityai/sd-turbo", where: "the Hugging Face cache" }
 */
export function findModel(q: { name?: string; hash?: string }, opts: { cacheDir?: string; hubCache?: string } = {}): FoundModel | undefined {
  const hub = opts.hubCache ?? hubCacheDir();
  if (q.name && isRepoId(q.name)) {
    const { repoId, revision } = parseRepoRef(q.name);
    if (snapshotOf(hub, repoId, revision)) return { ref: q.name, where: "the Hugging Face cache" };
  }
  const usable = (m: KnownModel) => isRepoId(m.ref) || existsSync(m.ref);
  const known = readList(opts.cacheDir);
  const hash = q.hash?.toLowerCase();
  const byHash = hash ? known.find((m) => m.hash.toLowerCase() === hash && usable(m)) : undefined;
  if (byHash) return { ref: byHash.ref, where: "the models Reimagine has loaded" };
  const blob = hash ? findBlob(hub, hash) : undefined;
  if (blob) return blob;
  // by name only when the image has no hash: the same name with another hash is another file
  const byName = q.name && !hash ? known.find((m) => m.name === q.name && usable(m)) : undefined;
  return byName ? { ref: byName.ref, where: "the models Reimagine has loaded" } : undefined;
}
