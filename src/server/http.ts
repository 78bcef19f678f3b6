// HTTP plumbing shared by the native and A1111 routes: base64 / data-URL image decoding under
// the pixel limit, output-size checks, error -> status mapping (user errors 4xx with their message,
// anything else 500 without a stack), and JSON-safe seeds.
import type { Context } from "hono";
import { loadImage, ReimagineError, type RGBImage } from "../index.js";
import { QueueFullError } from "./queue.js";
import { ValidationError } from "./validate.js";

export interface Limits {
  /** Largest input image and largest output, in pixels. */
  maxPixels: number;
  /** Largest request body in bytes. */
  maxBodyBytes: number;
}

/** Bytes of a base64 image, with or without a `data:image/...;base64,` prefix. */
export function decodeBase64Image(value: unknown, field: string): Buffer {
  if (typeof value !== "string" || value.trim() === "") throw new ValidationError(field, `${field} must be a base64-encoded image (PNG, JPEG or WebP), optionally as a data: URL`);
  let s = value.trim();
  const comma = s.startsWith("data:") ? s.indexOf(",") : -1;
  if (s.startsWith("data:")) {
    if (comma < 0 || !/;base64$/i.test(s.slice(0, comma))) throw new ValidationError(field, `${field} is a data: URL without ';base64,': send base64-encoded image bytes`);
    s = s.slice(comma + 1);
  }
  s = s.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new ValidationError(field, `${field} is not valid base64: send the image bytes base64-encoded`);
  return Buffer.from(s, "base64");
}

/** Decodes an uploaded image to RGB (transparent pixels onto `background`) within the pixel limit. */
export async function decodeInput(bytes: Buffer, field: string, limits: Limits, background?: string): Promise<RGBImage> {
  if (bytes.length === 0) throw new ValidationError(field, `${field} is empty: send an image`);
  try {
    return await loadImage(bytes, { maxPixels: limits.maxPixels, background });
  } catch (e) {
    if (e instanceof ReimagineError && e.code === "invalid_image") throw new ValidationError(field, `${field}: ${e.message}`);
    throw e;
  }
}

/** Checks a requested output size: positive multiples of the VAE factor within the pixel limit. */
export function checkOutputSize(width: number | undefined, height: number | undefined, factor: number, limits: Limits): void {
  for (const [k, v] of [["width", width], ["height", height]] as const) {
    if (v !== undefined && (v % factor !== 0 || v < factor)) throw new ValidationError(k, `${k} must be a positive multiple of ${factor} for this model (got ${v})`);
  }
  if (width !== undefined && height !== undefined && width * height > limits.maxPixels) {
    throw new ReimagineError(`${width}x${height} is over the server's limit of ${limits.maxPixels} pixels: ask for a smaller size`, "image_too_large");
  }
}

/** HTTP status for an error: user errors are 4xx, anything else is a 500. */
export function errorStatus(e: unknown): 404 | 413 | 422 | 429 | 500 {
  if (e instanceof QueueFullError) return 429;
  if (!(e instanceof ReimagineError)) return 500;
  if (e.code === "image_too_large" || e.code === "body_too_large") return 413;
  if (e.code === "not_found") return 404;
  return 422;
}

/** Sets Retry-After for a full queue; logs unexpected errors (their text never reaches the client). */
export function prepareError(c: Context, e: unknown): { status: ReturnType<typeof errorStatus>; message: string; code: string; field?: string } {
  const status = errorStatus(e);
  if (e instanceof QueueFullError) c.header("Retry-After", String(e.retryAfterS));
  if (status === 500) {
    console.error(`${c.req.method} ${c.req.path} failed:`, e);
    return { status, message: "internal server error; see the server log", code: "internal_error" };
  }
  const err = e as ReimagineError;
  return { status, message: err.message, code: err.code, field: e instanceof ValidationError ? e.field : undefined };
}

/** Seeds above 2^53 are sent as strings so JSON keeps every digit. */
export const seedJson = (s: number | bigint): number | string => (typeof s === "bigint" ? s.toString() : s);

/** Parses a JSON body; a malformed one is a 422 naming the problem. */
export async function readJson(c: Context): Promise<Record<string, unknown>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    throw new ValidationError("body", "the request body is not valid JSON: send Content-Type: application/json with a JSON object");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new ValidationError("body", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}
