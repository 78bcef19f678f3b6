// Textual-inversion embeddings of a run: the .safetensors files of the embedding folders (A1111's `embeddings/`),
// named by file name, read once per file content, those that fit the model's text encoders in one set; whether a
// prompt mentions one; A1111's `TI hashes` infotext value. Ref: AUTOMATIC1111 modules/textual_inversion/
// textual_inversion.py (EmbeddingDatabase.load_from_dir, shorthash), sd_hijack_clip.py (TI hashes).
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { loraHashesInfotext } from "../lora/catalog.js";
import { foldersFor } from "../lora/spec.js";
import { readTextualInversion, type TextualInversion, TextualInversionSet } from "./embeddings.js";

/** A text encoder an embedding must fit: its vectors for `index` (SD: 0, SDXL: clip_l 0, clip_g 1) are `dim` wide. */
export interface EncoderShape {
  index: number;
  dim: number;
}

interface Loaded {
  ti: TextualInversion;
  hash: string;
}

const files = new Map<string, Loaded>();
const KEEP = 256;

/** The folders of REIMAGINE_EMBEDDING_DIR (a path list). */
export const envEmbeddingDirs = (env: NodeJS.ProcessEnv = process.env): string[] => (env.REIMAGINE_EMBEDDING_DIR ?? "").split(delimiter).filter(Boolean);

/**
 * The embedding folders a front end searches: REIMAGINE_EMBEDDING_DIR, then the folders given (--embedding-dir), else
 * an `embeddings/` folder beside the model (as A1111's `embeddings/`).
 * @example embeddingDirsFor("/models/sd15") // ["/models/embeddings"]
 */
export function embeddingDirsFor(modelRef: string | undefined, given?: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  return foldersFor(modelRef, "embeddings", given, envEmbeddingDirs(env), env);
}

/** Every .safetensors file under the folders (recursively, sorted); missing folders are skipped. */
export function embeddingFiles(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    if (!existsSync(d) || !statSync(d).isDirectory()) continue;
    out.push(
      ...(readdirSync(d, { recursive: true }) as string[])
        .filter((f) => /\.safetensors$/i.test(f))
        .sort()
        .map((f) => join(d, f)),
    );
  }
  return out;
}

function load(path: string): Loaded {
  const st = statSync(path);
  const key = `${path}\u0000${st.size}\u0000${st.mtimeMs}`;
  let hit = files.get(key);
  if (!hit) {
    hit = { ti: readTextualInversion(path), hash: sha256(path).slice(0, 12) };
    files.set(key, hit);
    if (files.size > KEEP) files.delete(files.keys().next().value!);
  }
  return hit;
}

function sha256(path: string): string {
  const h = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(1 << 20);
    for (let pos = 0; ; ) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** The embeddings of a run and how to name them in metadata. */
export interface RunEmbeddings {
  set: TextualInversionSet;
  /** Identity of the set (files and contents), for embedding caches. */
  key: string;
  /** Files that are not embeddings for this model (another family's width, unreadable), with why. */
  skipped: { path: string; why: string }[];
  hashes: Map<string, string>;
}

/**
 * The embeddings of the folders that fit every encoder of the model (others are skipped, as A1111 skips them); undefined
 * when the folders hold none.
 *
 * @example runEmbeddings(["embeddings"], 49408, [{ index: 0, dim: 768 }])?.set.lookup((t) => tok.encode(t))
 */
export function runEmbeddings(dirs: readonly string[], vocabSize: number, encoders: readonly EncoderShape[]): RunEmbeddings | undefined {
  const paths = embeddingFiles(dirs);
  if (paths.length === 0) return undefined;
  const fit: Loaded[] = [];
  const skipped: { path: string; why: string }[] = [];
  for (const p of paths) {
    let l: Loaded;
    try {
      l = load(p);
    } catch (e) {
      skipped.push({ path: p, why: (e as Error).message });
      continue;
    }
    const bad = encoders.find((e) => l.ti.vectors[e.index]?.dim !== e.dim);
    if (bad) skipped.push({ path: p, why: `its vectors are ${l.ti.vectors.map((v) => v.dim).join(" + ")} wide, not ${bad.dim}: another model family` });
    else fit.push(l);
  }
  if (fit.length === 0) return undefined;
  return {
    set: new TextualInversionSet(
      vocabSize,
      fit.map((l) => l.ti),
    ),
    key: fit.map((l) => `${l.ti.name}=${l.hash}`).join(","),
    skipped,
    hashes: new Map(fit.map((l) => [l.ti.name, l.hash])),
  };
}

/** Whether any text mentions an embedding's name (as tokens; a cheap test before a text encoder switches graphs). */
export function mentionsEmbedding(set: TextualInversionSet, tokenize: (t: string) => number[], texts: readonly string[]): boolean {
  const lookup = set.lookup(tokenize);
  return texts.some((t) => {
    const ids = tokenize(t);
    return ids.some((_, i) => lookup(ids, i) !== undefined);
  });
}

/**
 * A1111's `TI hashes` value: `name: hash` (sha256 of the file, 12 hex digits) per embedding used.
 * @example tiHashes(run, ["easynegative"]) // "easynegative: 3f1a2b4c5d6e"
 */
export function tiHashes(run: RunEmbeddings, used: Iterable<string>): string {
  return loraHashesInfotext([...new Set(used)].map((name) => ({ name, hash: run.hashes.get(name) ?? "" })));
}
