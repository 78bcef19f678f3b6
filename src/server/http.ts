// HTTP plumbing shared by the native and A1111 routes: uploads (base64 / data URL, raster formats
// only, size read from the header; the decode itself happens inside the queue under a time limit),
// output-size checks, JSON bodies with bounded nesting, error -> status mapping (user errors 4xx with
// their message, anything else 500 without a stack), and JSON-safe seeds.
import type { Context } from "hono";
import { imageHeader, loadImage, ReimagineError, type RGBImage } from "../index.js";
import { UnavailableError } from "./jobs.js";
import { MAX_JSON_DEPTH, type ServerLimits } from "./limits.js";
import { QueueFullError, type Reservation } from "./queue.js";
import { ValidationError } from "./validate.js";

export type Limits = ServerLimits;

/** An upload checked from its header (format, size); `load` decodes it (run inside the queue). */
export interface Upload {
  width: number;
  height: number;
  load(): Promise<RGBImage>;
  /** What `load` is made from, as data: a queue worker in another process rebuilds it (uploadFrom). */
  source?: UploadSource;
}

/** An upload as data: the bytes as sent with their decode settings, or a canvas of one grey level. */
export type UploadSource = { bytes: Buffer; field: string; background?: string; maxPixels: number; decodeTimeoutS: number } | { fill: number };

/**
 * The Upload of a source (inspectUpload and blankUpload build theirs with it; a queue worker rebuilds
 * a job's uploads with it).
 * @example const input = uploadFrom(512, 512, { fill: 128 }); await input.load();
 */
export function uploadFrom(width: number, height: number, source: UploadSource): Upload {
  const load = async (): Promise<RGBImage> => {
    if ("fill" in source) return { width, height, data: new Uint8Array(width * height * 3).fill(source.fill) };
    try {
      return await loadImage(source.bytes, { maxPixels: source.maxPixels, background: source.background, timeoutS: source.decodeTimeoutS });
    } catch (e) {
      if (e instanceof ReimagineError && ["invalid_image", "image_timeout"].includes(e.code))
        throw new ValidationError(source.field, `${source.field}: ${e.message}`, e.code);
      throw e;
    }
  };
  return { width, height, load, source };
}

/** The formats the server accepts, by magic bytes (the documented list; no SVG or other vector/document formats). */
export function sniffFormat(b: Buffer): "png" | "jpeg" | "webp" | undefined {
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 12 && b.toString("latin1", 0, 4) === "RIFF" && b.toString("latin1", 8, 12) === "WEBP") return "webp";
  return undefined;
}

/** Bytes of a base64 image, with or without a `data:image/...;base64,` prefix. */
export function decodeBase64Image(value: unknown, field: string): Buffer {
  if (typeof value !== "string" || value.trim() === "")
    throw new ValidationError(field, `${field} must be a base64-encoded image (PNG, JPEG or WebP), optionally as a data: URL`);
  let s = value.trim();
  const comma = s.startsWith("data:") ? s.indexOf(",") : -1;
  if (s.startsWith("data:")) {
    if (comma < 0 || !/;base64$/i.test(s.slice(0, comma)))
      throw new ValidationError(field, `${field} is a data: URL without ';base64,': send base64-encoded image bytes`);
    s = s.slice(comma + 1);
  }
  s = s.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new ValidationError(field, `${field} is not valid base64: send the image bytes base64-encoded`);
  return Buffer.from(s, "base64");
}

/**
 * Checks an upload without decoding it: a PNG, JPEG or WebP by its magic bytes (anything else, SVG
 * included, is a 415 before any decoder sees it), its size from the header within the pixel limit.
 * The returned `load` decodes it (transparent pixels onto `background`) under the decode time limit.
 */
export async function inspectUpload(bytes: Buffer, field: string, limits: Limits, background?: string): Promise<Upload> {
  if (bytes.length === 0) throw new ValidationError(field, `${field} is empty: send an image`);
  const format = sniffFormat(bytes);
  if (!format) {
    const what = /^\s*(<\?xml|<svg)/i.test(bytes.toString("latin1", 0, 256)) ? "an SVG" : "not a PNG, JPEG or WebP file";
    throw new ValidationError(field, `${field} is ${what}: this server accepts PNG, JPEG and WebP images only`, "unsupported_format");
  }
  let header: { width: number; height: number };
  try {
    header = await imageHeader(bytes);
  } catch (e) {
    throw new ValidationError(
      field,
      `${field}: not a readable ${format.toUpperCase()} image (the file is damaged): ${String((e as Error).message).split("\n")[0]}`,
      "invalid_image",
    );
  }
  if (header.width * header.height > limits.maxPixels) {
    throw new ReimagineError(
      `${field} is ${header.width}x${header.height}, over the server's limit of ${limits.maxPixels} pixels: send a smaller image`,
      "image_too_large",
    );
  }
  return uploadFrom(header.width, header.height, { bytes, field, background, maxPixels: limits.maxPixels, decodeTimeoutS: limits.decodeTimeoutS });
}

/** Checks a requested output size: positive multiples of the VAE factor within the pixel limit. */
export function checkOutputSize(width: number | undefined, height: number | undefined, factor: number, limits: Limits): void {
  for (const [k, v] of [
    ["width", width],
    ["height", height],
  ] as const) {
    if (v !== undefined && (v % factor !== 0 || v < factor))
      throw new ValidationError(k, `${k} must be a positive multiple of ${factor} for this model (got ${v})`);
  }
  if (width !== undefined && height !== undefined && width * height > limits.maxPixels) {
    throw new ReimagineError(`${width}x${height} is over the server's limit of ${limits.maxPixels} pixels: ask for a smaller size`, "image_too_large");
  }
}

/** HTTP status for an error: user errors are 4xx, a shutdown or an unavailable queue 503, anything else a 500. */
export function errorStatus(e: unknown): 404 | 413 | 415 | 422 | 429 | 500 | 503 {
  if (e instanceof QueueFullError) return 429;
  if (!(e instanceof ReimagineError)) return 500;
  if (e.code === "image_too_large" || e.code === "body_too_large") return 413;
  if (e.code === "unsupported_format") return 415;
  if (e.code === "shutting_down" || e.code === "unavailable") return 503;
  if (e.code === "not_found") return 404;
  return 422;
}

/** Sets Retry-After for a full queue; logs unexpected errors (their text never reaches the client). */
export function prepareError(c: Context, e: unknown): { status: ReturnType<typeof errorStatus>; message: string; code: string; field?: string } {
  const status = errorStatus(e);
  if (e instanceof QueueFullError || e instanceof UnavailableError) c.header("Retry-After", String(e.retryAfterS));
  if (status === 500) {
    console.error(`${c.req.method} ${c.req.path} failed:`, e);
    return { status, message: "internal server error; see the server log", code: "internal_error" };
  }
  const err = e as ReimagineError;
  return { status, message: err.message, code: err.code, field: e instanceof ValidationError ? e.field : undefined };
}

/** The queue slot app.ts reserved for this request before its body was read (undefined outside the app). */
export const slotOf = (c: Context): Reservation | undefined => (c.var as Record<string, unknown>).slot as Reservation | undefined;

/** Seeds above 2^53 are sent as strings so JSON keeps every digit. */
export const seedJson = (s: number | bigint): number | string => (typeof s === "bigint" ? s.toString() : s);

/** Reads the body; a client that stops sending (timeout) or hangs up is its own error, not a server fault. */
export async function readBody<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof ReimagineError) throw e; // e.g. the body limit
    throw new ReimagineError(`the request body was cut off before it was complete (${(e as Error).message})`, "body_incomplete");
  }
}

/** True when `text` nests arrays/objects deeper than `max` (a linear scan, strings skipped, before any parse). */
export function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // jump to the closing quote: one not preceded by an odd number of backslashes
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return false; // unterminated string: JSON.parse reports it
        let k = i - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((i - 1 - k) % 2 === 0) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Parses a JSON body; a malformed or too deeply nested one is a 422 naming the problem (before anything runs). */
export async function readJson(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  const text = await readBody(() => c.req.text());
  if (jsonTooDeep(text, MAX_JSON_DEPTH)) {
    throw new ValidationError("body", `the request body nests arrays/objects deeper than ${MAX_JSON_DEPTH} levels: send a flat JSON object`);
  }
  try {
    body = JSON.parse(text);
  } catch {
    throw new ValidationError("body", "the request body is not valid JSON: send Content-Type: application/json with a JSON object");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ValidationError("body", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}
