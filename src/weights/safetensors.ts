// Safetensors reader (validated header, lazy per-tensor reads, exact dtype -> float32) and writer.
// Ref: huggingface/safetensors format spec (8-byte LE header length, JSON header, raw LE data) and
// the Rust crate's header validation (`Metadata::validate`). Never reads the whole file into memory.
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { endianness } from "node:os";
import { ReimagineError } from "../errors.js";
import { fileSha256 } from "./hash.js";
import type { TensorInfo, WeightSource } from "./source.js";

/** Bytes per element for every dtype we accept in a header. */
const DTYPE_SIZE: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};
const MAX_HEADER_BYTES = 100 * 1024 * 1024; // real headers are a few MiB at most
const MAX_READ_CHUNK = 1 << 30; // fs.readSync caps one call below 2 GiB

interface Entry extends TensorInfo {
  begin: number; // byte offsets relative to the data section
  end: number;
}

/**
 * One `.safetensors` file, opened lazily: the header is read and validated at `open`, each tensor
 * is read from disk only when asked for. `read` converts to float32: F32 copies, F16/BF16/F8/F64
 * convert exactly (F64 rounds to nearest float32); integer and BOOL tensors convert by value
 * (I64/U64 beyond 2^24 lose precision, as any float32 cast does).
 *
 * @example
 *   const f = SafetensorsFile.open("unet/diffusion_pytorch_model.safetensors");
 *   const w = f.read("conv_in.weight"); // Float32Array, shape f.info("conv_in.weight")!.shape
 *   f.close();
 */
export class SafetensorsFile implements WeightSource {
  readonly description: string;
  /** The `__metadata__` entry (string -> string), empty when absent. */
  readonly metadata: Record<string, string>;
  private fd: number | undefined;
  private readonly entries: Map<string, Entry>;
  private readonly dataStart: number; // absolute file offset of the data section
  private contentHash: string | undefined;

  private constructor(path: string, fd: number, entries: Map<string, Entry>, metadata: Record<string, string>, dataStart: number) {
    this.description = path;
    this.fd = fd;
    this.entries = entries;
    this.metadata = metadata;
    this.dataStart = dataStart;
  }

  /** Opens and validates `path` (header only); throws ReimagineError naming the file on any defect. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be opened (${(e as Error).message})`;
      throw new ReimagineError(`${path}: safetensors file ${why}; check the path or re-download the weights`, "not_found", { cause: e });
    }
    try {
      const fileSize = fstatSync(fd).size;
      const { entries, metadata, headerLength } = readHeader(path, fd, fileSize);
      return new SafetensorsFile(path, fd, entries, metadata, 8 + headerLength);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  info(key: string): TensorInfo | undefined {
    const e = this.entries.get(key);
    return e && { dtype: e.dtype, shape: [...e.shape] };
  }

  /** The tensor as a fresh float32 array (row-major, `info(key).shape`). `shape` is ignored. */
  read(key: string, _shape?: readonly number[]): Float32Array {
    const e = this.entry(key);
    const n = (e.end - e.begin) / DTYPE_SIZE[e.dtype];
    if (e.dtype === "F32") {
      const out = new Float32Array(n);
      this.readInto(e, new Uint8Array(out.buffer));
      return out;
    }
    const raw = new Uint8Array(e.end - e.begin); // offset 0 of its own buffer: aligned for any view
    this.readInto(e, raw);
    return toFloat32(raw, e.dtype, n);
  }

  /** The tensor's stored bytes (little-endian), unconverted. */
  readRaw(key: string): Buffer {
    const e = this.entry(key);
    const out = Buffer.alloc(e.end - e.begin);
    this.readInto(e, out);
    return out;
  }

  /**
   * sha256 (hex) of the whole file, as `sha256sum` prints it: two files differing in any byte differ
   * here. Hashed once per file and remembered across runs (weights/hash.ts); the first 10 digits are
   * A1111's "Model hash" of a single-file checkpoint.
   */
  fingerprint(): string {
    if (this.contentHash) return this.contentHash;
    if (this.fd === undefined) throw new ReimagineError(`${this.description}: file was closed; reopen it with SafetensorsFile.open`, "internal");
    this.contentHash = fileSha256(this.fd, this.description);
    return this.contentHash;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private entry(key: string): Entry {
    const e = this.entries.get(key);
    if (!e)
      throw new ReimagineError(
        `${this.description}: no tensor named '${key}'; the file does not match the model it is loaded into (wrong component or architecture?)`,
        "weights",
      );
    if (LITTLE_ENDIAN === false)
      throw new ReimagineError(`${this.description}: big-endian hosts are not supported; run on a little-endian machine`, "unsupported");
    return e;
  }

  private readInto(e: Entry, dst: Uint8Array): void {
    if (this.fd === undefined) throw new ReimagineError(`${this.description}: file was closed; reopen it with SafetensorsFile.open`, "internal");
    let done = 0;
    while (done < dst.length) {
      const want = Math.min(dst.length - done, MAX_READ_CHUNK);
      const got = readSync(this.fd, dst, done, want, this.dataStart + e.begin + done);
      if (got === 0) throw truncated(this.description, "ends before the data of its tensors");
      done += got;
    }
  }
}

const LITTLE_ENDIAN = endianness() === "LE";

function truncated(path: string, what: string): ReimagineError {
  return new ReimagineError(`${path}: safetensors file is truncated or corrupt (${what}); delete it and download it again`, "corrupt_weights");
}

function bad(path: string, what: string): ReimagineError {
  return new ReimagineError(
    `${path}: invalid safetensors header: ${what}; the file is corrupt or not a safetensors file, re-download or re-export it`,
    "corrupt_weights",
  );
}

/** Reads and validates the header. All structural checks happen here, before any tensor read. */
function readHeader(path: string, fd: number, fileSize: number) {
  if (fileSize < 8) throw truncated(path, `${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const declared = lenBuf.readBigUInt64LE(0);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw bad(path, `header length ${declared} bytes is above the ${MAX_HEADER_BYTES}-byte limit (file is ${fileSize} bytes)`);
  }
  const headerLength = Number(declared);
  if (headerLength > fileSize - 8) throw truncated(path, `header length ${headerLength} exceeds the file size ${fileSize}`);
  const headerBytes = Buffer.alloc(headerLength);
  if (readSync(fd, headerBytes, 0, headerLength, 8) !== headerLength) throw truncated(path, "header cut short");

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw bad(path, `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw bad(path, "header is not a JSON object");

  const dataSize = fileSize - 8 - headerLength;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(json)) {
    if (key === "__metadata__") {
      metadata = parseMetadata(path, value);
      continue;
    }
    const e = parseEntry(path, key, value);
    if (e.end > dataSize) throw truncated(path, `tensor '${key}' data_offsets [${e.begin}, ${e.end}] run past the ${dataSize}-byte data section`);
    entries.set(key, e);
  }

  // Overlap: sorted by begin, each tensor must start at or after the previous one's end.
  const sorted = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  for (let i = 1; i < sorted.length; i++) {
    const [pk, p] = sorted[i - 1];
    const [k, e] = sorted[i];
    if (e.begin < p.end) throw bad(path, `tensors '${pk}' [${p.begin}, ${p.end}] and '${k}' [${e.begin}, ${e.end}] overlap`);
  }
  return { entries, metadata, headerLength };
}

function parseMetadata(path: string, value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(path, "__metadata__ is not an object");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") throw bad(path, `__metadata__ value '${k}' is not a string`);
    out[k] = v;
  }
  return out;
}

const isCount = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

function parseEntry(path: string, key: string, value: unknown): Entry {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad(path, `entry '${key}' is not an object`);
  const { dtype, shape, data_offsets } = value as Record<string, unknown>;
  if (typeof dtype !== "string") throw bad(path, `tensor '${key}' has no dtype string`);
  if (!Object.hasOwn(DTYPE_SIZE, dtype)) {
    throw bad(path, `tensor '${key}' has unknown dtype '${dtype}' (supported: ${Object.keys(DTYPE_SIZE).join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount))
    throw bad(path, `tensor '${key}' shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isCount)) {
    throw bad(path, `tensor '${key}' data_offsets must be two non-negative integers, got ${JSON.stringify(data_offsets)}`);
  }
  const [begin, end] = data_offsets as [number, number];
  if (begin > end) throw bad(path, `tensor '${key}' data_offsets [${begin}, ${end}] begin after end`);
  let bytes = DTYPE_SIZE[dtype];
  for (const d of shape as number[]) {
    bytes *= d;
    if (!Number.isSafeInteger(bytes)) throw bad(path, `tensor '${key}' shape ${JSON.stringify(shape)} is impossibly large`);
  }
  if (end - begin !== bytes) {
    throw bad(path, `tensor '${key}' dtype size mismatch: ${dtype} shape ${JSON.stringify(shape)} needs ${bytes} bytes but data_offsets span ${end - begin}`);
  }
  return { dtype, shape: shape as number[], begin, end };
}

// ---- dtype conversion (all exact except F64 -> F32 rounding and large integers) ----

let f16Table: Uint32Array | undefined; // float32 bit pattern for every float16 bit pattern

function halfTable(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0x1f)
      t[h] = sign | 0x7f800000 | (mant << 13); // inf / NaN (payload kept)
    else if (exp !== 0)
      t[h] = sign | ((exp + 112) << 23) | (mant << 13); // rebias 15 -> 127
    else {
      f[0] = mant * 2 ** -24; // zero or subnormal: exact in float32
      t[h] = sign | u[0];
    }
  }
  f16Table = t;
  return t;
}

/** float32 value of each F8_E4M3 (e4m3fn: bias 7, no inf, S.1111.111 = NaN) byte. */
function e4m3Table(): Float32Array {
  const t = new Float32Array(256);
  for (let b = 0; b < 256; b++) {
    const s = b & 0x80 ? -1 : 1;
    const exp = (b >>> 3) & 0xf;
    const mant = b & 7;
    if (exp === 0xf && mant === 7) t[b] = NaN;
    else t[b] = s * (exp === 0 ? mant * 2 ** -9 : (1 + mant / 8) * 2 ** (exp - 7));
  }
  return t;
}

function toFloat32(raw: Uint8Array, dtype: string, n: number): Float32Array {
  const out = new Float32Array(n);
  const buf = raw.buffer;
  switch (dtype) {
    case "F16": {
      const t = halfTable(),
        src = new Uint16Array(buf, 0, n),
        dst = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = t[src[i]];
      break;
    }
    case "BF16": {
      const src = new Uint16Array(buf, 0, n),
        dst = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
      break;
    }
    case "F8_E5M2": {
      // the top byte of a float16
      const t = halfTable(),
        dst = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = t[raw[i] << 8];
      break;
    }
    case "F8_E4M3": {
      const t = e4m3Table();
      for (let i = 0; i < n; i++) out[i] = t[raw[i]];
      break;
    }
    case "F64":
      out.set(new Float64Array(buf, 0, n));
      break;
    case "I64": {
      const s = new BigInt64Array(buf, 0, n);
      for (let i = 0; i < n; i++) out[i] = Number(s[i]);
      break;
    }
    case "U64": {
      const s = new BigUint64Array(buf, 0, n);
      for (let i = 0; i < n; i++) out[i] = Number(s[i]);
      break;
    }
    case "I32":
      out.set(new Int32Array(buf, 0, n));
      break;
    case "U32":
      out.set(new Uint32Array(buf, 0, n));
      break;
    case "I16":
      out.set(new Int16Array(buf, 0, n));
      break;
    case "U16":
      out.set(new Uint16Array(buf, 0, n));
      break;
    case "I8":
      out.set(new Int8Array(buf, 0, n));
      break;
    case "U8":
    case "BOOL":
      out.set(raw.subarray(0, n));
      break;
    default:
      throw new ReimagineError(`safetensors dtype '${dtype}' cannot be converted to float32`, "internal");
  }
  return out;
}

/** float32 -> float16 bits, round to nearest even (overflow -> inf, NaN stays NaN). */
export function float32ToFloat16Bits(x: number): number {
  F32[0] = x;
  const bits = U32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // float16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // float16 subnormal or zero: m = full * 2^(e - 14) in units of 2^-24
    if (e < -10) return sign;
    const full = mant | 0x800000,
      shift = 14 - e;
    let m = full >>> shift;
    const rem = full & ((1 << shift) - 1),
      half = 1 << (shift - 1);
    if (rem > half || (rem === half && m & 1)) m++;
    return sign | m; // m = 0x400 carries into the smallest normal
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // carry may reach 0x7c00 = inf, as it should
  return sign | h;
}
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** A tensor to write: float32 data stored as F32 or (rounded to nearest even) F16. */
export interface TensorToWrite {
  dtype: "F32" | "F16";
  shape: number[];
  data: Float32Array;
}

/**
 * Writes a safetensors file atomically (temp file in the same folder, then rename).
 *
 * @example
 *   writeSafetensors("/tmp/w.safetensors", { "a.weight": { dtype: "F16", shape: [2], data: new Float32Array([1, 2]) } });
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [key, t] of Object.entries(tensors)) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length)
      throw new ReimagineError(`writeSafetensors ${path}: tensor '${key}' has ${t.data.length} values but shape ${JSON.stringify(t.shape)} needs ${count}`);
    const bytes = count * DTYPE_SIZE[t.dtype];
    header[key] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // pad so the data section is 8-aligned
  const headerBytes = Buffer.from(json, "utf8");
  const lenBytes = Buffer.alloc(8);
  lenBytes.writeBigUInt64LE(BigInt(headerBytes.length));

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, lenBytes);
    writeSync(fd, headerBytes);
    for (const t of Object.values(tensors)) writeSync(fd, encode(t));
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw e;
  }
}

function encode(t: TensorToWrite): Uint8Array {
  if (t.dtype === "F32") return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const h = new Uint16Array(t.data.length);
  for (let i = 0; i < h.length; i++) h[i] = float32ToFloat16Bits(t.data[i]);
  return new Uint8Array(h.buffer);
}
