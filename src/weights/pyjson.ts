// JSON as Python's `json` module writes and reads it: standard JSON plus the bare constants `NaN`,
// `Infinity` and `-Infinity` (json.dumps' allow_nan default). diffusers saves float('-inf') that way,
// e.g. every DPMSolverMultistepScheduler config's `"lambda_min_clipped": -Infinity`.
// Ref: CPython Lib/json/scanner.py (py_make_scanner: 'NaN', 'Infinity', '-Infinity' -> parse_constant).
// Hand-written rather than JSON5: JSON5 also accepts comments, single quotes and trailing commas,
// which Python refuses; here only Python's three constants are added to JSON.parse.
import { randomBytes } from "node:crypto";

const CONSTANTS: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
const CONSTANT_AT = /-Infinity|Infinity|NaN/y;

/** Error from parsePythonJson: the text is not JSON even with Python's constants. */
export class PythonJsonError extends SyntaxError {}

/**
 * Parses JSON text as Python's json.loads does (NaN, Infinity, -Infinity allowed outside strings).
 * @example parsePythonJson('{"lambda_min_clipped": -Infinity}') // { lambda_min_clipped: -Infinity }
 */
export function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text); // the common case: plain JSON, native speed
  } catch (e) {
    const replaced = replaceConstants(text);
    if (!replaced) throw new PythonJsonError((e as Error).message);
    try {
      return JSON.parse(replaced.text, (_k, v) => (typeof v === "string" && v.startsWith(replaced.tag) ? CONSTANTS[v.slice(replaced.tag.length)] : v));
    } catch (e2) {
      throw new PythonJsonError((e2 as Error).message);
    }
  }
}

/** The text with each bare constant outside strings turned into a tagged string; undefined when there is none. */
function replaceConstants(text: string): { text: string; tag: string } | undefined {
  const nonce = `pyjson-${randomBytes(6).toString("hex")}:`;
  const tag = `\u0000${nonce}`; // what JSON.parse makes of the escaped "\\u0000..." written below
  let out = "";
  let last = 0;
  let found = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      // skip the string, honouring backslash escapes
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      continue;
    }
    if (c !== "N" && c !== "I" && c !== "-") continue;
    CONSTANT_AT.lastIndex = i;
    const m = CONSTANT_AT.exec(text);
    if (!m) continue;
    out += `${text.slice(last, i)}"\\u0000${nonce}${m[0]}"`;
    i += m[0].length - 1;
    last = i + 1;
    found = true;
  }
  return found ? { text: out + text.slice(last), tag } : undefined;
}
