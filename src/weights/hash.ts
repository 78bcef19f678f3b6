// sha256 of weight files, computed once and remembered: the graph cache key depends on the weights'
// content through it, and A1111's "Model hash" is its first 10 hex digits (Ref: A1111
// modules/hashes.py sha256 + the short hash shown in infotexts; Civitai's "AutoV2" is the same value).
// Records live in <cacheRoot>/hashes/<dev>-<ino>.json and are trusted only while the file's size,
// mtime and ctime (nanoseconds) and a sample of its first and last bytes are unchanged.
import { createHash } from "node:crypto";
import { fstatSync, mkdirSync, readFileSync, readSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cacheRoot } from "../cache-root.js";

const CHUNK = 8 << 20; // read size while hashing
const SAMPLE = 64 << 10; // bytes hashed from each end to re-verify a record cheaply

interface HashRecord {
  path: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  sample: string;
  sha256: string;
}

const memo = new Map<string, string>(); // identity -> sha256, for this process

/** Number of full-file hashes this process computed (tests and benchmarks read it). */
export let hashesComputed = 0;

/** Forgets this process's memo, so the next call consults the on-disk records (tests, benchmarks). */
export function clearHashMemo(): void {
  memo.clear();
}

function readAt(fd: number, buf: Buffer, length: number, position: number): number {
  let done = 0;
  while (done < length) {
    const got = readSync(fd, buf, done, length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/** sha256 (hex) of the whole file behind `fd`, read from the start. */
function hashWhole(fd: number, size: number): string {
  const h = createHash("sha256");
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, size)));
  for (let pos = 0; pos < size; ) {
    const got = readAt(fd, buf, Math.min(buf.length, size - pos), pos);
    if (got === 0) break;
    h.update(buf.subarray(0, got));
    pos += got;
  }
  hashesComputed++;
  return h.digest("hex");
}

/** sha256 of the first and last SAMPLE bytes: catches a rewrite that kept size and times. */
function sampleHash(fd: number, size: number): string {
  const n = Math.min(SAMPLE, size);
  const buf = Buffer.alloc(2 * n);
  readAt(fd, buf.subarray(0, n), n, 0);
  readAt(fd, buf.subarray(n), n, size - n);
  return createHash("sha256").update(buf).update(`\0${size}`).digest("hex");
}

/**
 * sha256 (hex) of an open file's content: from this process's memo, else a cached record that still
 * matches the file, else hashed now (about 1-2 s per GB) and recorded for next time.
 * @example
 *   const fd = openSync("model.safetensors", "r");
 *   fileSha256(fd, "model.safetensors").slice(0, 10) // A1111's "Model hash"
 */
export function fileSha256(fd: number, path: string, root: string = cacheRoot()): string {
  const st = fstatSync(fd, { bigint: true });
  const identity = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const known = memo.get(identity);
  if (known) return known;
  const size = Number(st.size);
  const recordPath = join(root, "hashes", `${st.dev}-${st.ino}.json`);
  const sample = sampleHash(fd, size);
  let sha: string | undefined;
  try {
    const r = JSON.parse(readFileSync(recordPath, "utf8")) as HashRecord;
    const same = r.size === String(st.size) && r.mtimeNs === String(st.mtimeNs) && r.ctimeNs === String(st.ctimeNs) && r.sample === sample;
    if (same && /^[0-9a-f]{64}$/.test(r.sha256)) sha = r.sha256;
  } catch {
    // no record yet (or an unreadable one): hash below
  }
  if (!sha) {
    sha = hashWhole(fd, size);
    const record: HashRecord = { path, size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), sample, sha256: sha };
    try {
      mkdirSync(join(root, "hashes"), { recursive: true });
      const tmp = `${recordPath}.tmp-${process.pid}`;
      writeFileSync(tmp, `${JSON.stringify(record)}\n`);
      renameSync(tmp, recordPath);
    } catch {
      // a read-only cache only costs the hash again next time
    }
  }
  memo.set(identity, sha);
  return sha;
}
