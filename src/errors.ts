// User-facing errors: one line that names the problem and the fix. Front ends print
// `message` alone (no stack) unless --verbose; anything else is a bug and shows its stack.

export class ReimagineError extends Error {
  /** Machine-readable category for front ends (HTTP status, exit code). */
  readonly code: string;
  constructor(message: string, code = "invalid_input", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ReimagineError";
    this.code = code;
  }
}

/** Throws a ReimagineError unless `cond` holds. */
export function check(cond: unknown, message: string, code?: string): asserts cond {
  if (!cond) throw new ReimagineError(message, code);
}

/**
 * The error a cancelled run rejects with: an Error named "AbortError", as fetch and AbortSignal use.
 * @example ac.abort(abortError("interrupted"))
 */
export function abortError(message = "generation cancelled"): Error {
  const e = new Error(message);
  e.name = "AbortError";
  return e;
}

/** Throws abortError() when `signal` has been aborted (checked between steps). */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError();
}

/** True for a cancellation: our abortError(), fetch's, or an AbortSignal's DOMException. */
export function isAbortError(e: unknown): boolean {
  return (e as Error | undefined)?.name === "AbortError";
}
