// Request validation for both APIs: typed field readers that refuse bad values with a message
// naming the field, the value and the accepted range (HTTP 422). Unknown fields are ignored.
import { findSampler, ReimagineError } from "../index.js";
export { randomSeed } from "../index.js";
import type { SamplerInfo } from "./engine.js";

/** A request field with a bad value; `field` is the wire name (A1111 puts it in `loc`). */
export class ValidationError extends ReimagineError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message, "invalid_input");
  }
}

export type Fields = Record<string, unknown>;

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v) : String(v));

/** Reads a number (JSON number or numeric string from a form); undefined/null/"" -> undefined. */
export function optNumber(body: Fields, key: string, o: { min?: number; max?: number; int?: boolean } = {}): number | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  const range = o.min !== undefined && o.max !== undefined ? ` between ${o.min} and ${o.max}` : o.min !== undefined ? ` >= ${o.min}` : "";
  const what = `${o.int ? "a whole number" : "a number"}${range}`;
  if (!Number.isFinite(n) || (o.int && !Number.isInteger(n))) throw new ValidationError(key, `${key} must be ${what} (got ${show(v)})`);
  if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
    throw new ValidationError(key, `${key} must be ${what} (got ${show(v)})`);
  }
  return n;
}

export function optString(body: Fields, key: string, o: { max?: number } = {}): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new ValidationError(key, `${key} must be a string (got ${show(v)})`);
  const max = o.max ?? 10_000;
  if (v.length > max) throw new ValidationError(key, `${key} is ${v.length} characters long; the limit is ${max}`);
  return v;
}

export function optBoolean(body: Fields, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "1" || v === 1) return true;
  if (v === "false" || v === "0" || v === 0) return false;
  throw new ValidationError(key, `${key} must be true or false (got ${show(v)})`);
}

/** A seed: -1 / absent = random (undefined); otherwise 0..2^64-1 (big values as strings stay exact). */
export function optSeed(body: Fields, key: string): number | bigint | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === "" || v === -1 || v === "-1") return undefined;
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === "string" && /^\d{1,20}$/.test(v.trim())) {
    const b = BigInt(v.trim());
    if (b < 2n ** 64n) return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  throw new ValidationError(key, `${key} must be -1 (random) or a whole number from 0 to 2^64-1 (got ${show(v)})`);
}

/**
 * Finds a sampler by our name or A1111's (case-insensitive); `scheduler` (A1111 >= 1.9 sends it
 * separately, e.g. "karras") is appended when that combination exists. undefined name -> fallback.
 * @example resolveSampler(samplers, "DPM++ 2M", "karras", "euler") // the "DPM++ 2M Karras" entry
 */
export function resolveSampler(samplers: SamplerInfo[], name: string | undefined, scheduler: string | undefined, fallback: string, field = "sampler"): SamplerInfo {
  const find = (n: string) => findSampler(n, samplers);
  if (name && scheduler && !/^(automatic|auto)$/i.test(scheduler)) {
    const combined = find(`${name} ${scheduler}`) ?? find(`${name}-${scheduler}`);
    if (combined) return combined;
  }
  const hit = find(name || fallback);
  if (!hit) {
    throw new ValidationError(field, `unknown sampler ${show(name)}: use one of ${samplers.map((s) => `"${s.a1111Name}"`).join(", ")} (GET /v1/samplers lists them)`);
  }
  return hit;
}
