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
