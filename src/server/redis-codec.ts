// Jobs and results as they cross Redis: JSON (readable with redis-cli and BullMQ tools) whose binary
// parts (image bytes) are taken out into separate blobs stored as raw bytes. Generic over the run
// options: any plain data passes (fields other features add included); bigint seeds are tagged, and an
// upload travels as its source (bytes + decode settings) and is rebuilt on the other side.
import { type Upload, type UploadSource, uploadFrom } from "./http.js";

/** A value as JSON plus the byte strings it referenced ({ $bytes: i } = blobs[i]). */
export interface Packed {
  json: unknown;
  blobs: Buffer[];
}

const TAGS = ["$bytes", "$typed", "$bigint", "$upload"];

/** Typed arrays other than bytes keep their type ({ $typed: [blob, "Float32Array"] }). */
const TYPED = { Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, Uint8ClampedArray };
type TypedName = keyof typeof TYPED;

const isUpload = (v: object): v is Upload => typeof (v as Upload).load === "function";

const isPlain = (v: object) => {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * Splits a value into JSON and blobs.
 * @example const { json, blobs } = pack({ seed: 2n ** 60n, image: pngBytes }); // json.image = { $bytes: 0 }
 */
export function pack(value: unknown): Packed {
  const blobs: Buffer[] = [];
  const walk = (v: unknown, path: string): unknown => {
    const refuse = (why: string): never => {
      throw new TypeError(`job field '${path || "(root)"}' cannot be sent to a queue worker: ${why}`);
    };
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (v === undefined) return undefined;
    if (typeof v === "number") return Number.isFinite(v) ? v : refuse(`${v} is not a finite number`);
    if (typeof v === "bigint") return { $bigint: v.toString() };
    if (typeof v !== "object") return refuse(`a ${typeof v} is not data`);
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      blobs.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      if (v instanceof Uint8Array && !(v instanceof Uint8ClampedArray)) return { $bytes: blobs.length - 1 };
      const type = v.constructor.name;
      if (!(type in TYPED)) refuse(`a ${type} is not a supported typed array`);
      return { $typed: [blobs.length - 1, type] };
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, `${path}[${i}]`));
    if (isUpload(v)) {
      if (!v.source) refuse("an upload without a source (build uploads with inspectUpload or uploadFrom)");
      return { $upload: { width: v.width, height: v.height, source: walk(v.source, `${path}.source`) } };
    }
    if (!isPlain(v)) refuse(`a ${v.constructor?.name ?? "class"} instance is not plain data`);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith("$")) refuse(`key '${k}' (keys starting with $ are reserved for the codec)`);
      if (typeof x === "function") refuse(`'${k}' is a function`);
      out[k] = walk(x, path ? `${path}.${k}` : k);
    }
    return out;
  };
  return { json: walk(value, ""), blobs };
}

/**
 * Rebuilds a packed value (uploads get their `load` back).
 * @example const request = unpack(json, blobs) as GenerationRequest;
 */
export function unpack(json: unknown, blobs: Buffer[]): unknown {
  const walk = (v: unknown): unknown => {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map(walk);
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && TAGS.includes(keys[0])) {
      if ("$bigint" in o) return BigInt(o.$bigint as string);
      const blob = (i: number) => {
        const b = blobs[i];
        if (!b) throw new Error(`packed value refers to blob ${i}, but only ${blobs.length} came with it`);
        return b;
      };
      if ("$bytes" in o) return blob(o.$bytes as number);
      if ("$typed" in o) {
        const [i, type] = o.$typed as [number, TypedName];
        const b = blob(i);
        return new TYPED[type](new Uint8Array(b).buffer); // a copy: aligned for the element size
      }
      const u = o.$upload as { width: number; height: number; source: unknown };
      return uploadFrom(u.width, u.height, walk(u.source) as UploadSource);
    }
    return Object.fromEntries(keys.map((k) => [k, walk(o[k])]));
  };
  return walk(json);
}
