// AUTOMATIC1111 emphasis syntax: `(text)` x1.1, `[text]` /1.1, `(text:1.3)`, `\(` escapes, BREAK.
// Ref: AUTOMATIC1111 modules/prompt_parser.py (re_attention, re_break, parse_prompt_attention, v1.10).
// Python's regex classes are Unicode-aware (\s, \w, \d), so they are spelled out here to match exactly.
import { ReimagineError } from "../errors.js";

/** One parsed piece: its text and weight. A BREAK is `["BREAK", -1]` (times any enclosing brackets). */
export type PromptPiece = [text: string, weight: number];

/** Python's `\s` on str: str.isspace() (JS \s adds U+FEFF and lacks U+001C..U+001F, U+0085). */
export const PY_SPACE = "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/** Python's `\w` on str: letters, numbers and underscore (JS \w is ASCII only). */
const PY_WORD = "[\\p{L}\\p{N}_]";

// Alternatives in A1111's order (the first that matches at a position wins, as in Python's re).
const RE_ATTENTION = new RegExp(
  [
    "\\\\\\(", // \(
    "\\\\\\)", // \)
    "\\\\\\[", // \[
    "\\\\\\]", // \]
    "\\\\\\\\", // \\
    "\\\\", // a lone backslash
    "\\(",
    "\\[",
    `:${PY_SPACE}*([+-]?[.\\p{Nd}]+)${PY_SPACE}*\\)`, // :1.3)  closes a round bracket with a weight
    "\\)",
    "\\]",
    "[^\\\\()\\[\\]:]+", // plain text
    ":",
  ].join("|"),
  "gu",
);
const RE_BREAK = new RegExp(`${PY_SPACE}*(?<!${PY_WORD})BREAK(?!${PY_WORD})${PY_SPACE}*`, "u");

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/**
 * Python's float() on the digits A1111's weight pattern captures (`[+-]?[.\d]+`, Unicode digits
 * included). Anything float() rejects ("1.2.3", ".") makes A1111 raise; here it is a clear error.
 */
function weightValue(s: string, where: string): number {
  const ascii = s.replace(/\p{Nd}/gu, (d) => String(unicodeDigit(d)));
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(ascii)) {
    throw new ReimagineError(`prompt: the weight '${s}' in '${where}' is not a number; write it like (text:1.2)`, "invalid_prompt");
  }
  return Number(ascii);
}

/** The value of a Unicode decimal digit: Nd characters come in runs of ten, 0 to 9. */
function unicodeDigit(d: string): number {
  let cp = d.codePointAt(0)!;
  let n = 0;
  while (/\p{Nd}/u.test(String.fromCodePoint(cp - 1))) {
    cp--;
    n++;
  }
  return n % 10;
}

/**
 * Parses A1111 emphasis syntax into `[text, weight]` pieces, exactly as parse_prompt_attention:
 * unbalanced brackets are closed at the end, runs of equal weight are merged, BREAK (whole word,
 * case-sensitive) becomes `["BREAK", -1]`. Never throws for brackets; a weight that is not a number
 * (`(a:1.2.3)`, where A1111 raises) is a ReimagineError.
 *
 * @example
 *   parsePromptAttention("a (red:1.3) house"); // [["a ", 1], ["red", 1.3], [" house", 1]]
 */
export function parsePromptAttention(text: string): PromptPiece[] {
  const res: PromptPiece[] = [];
  const round: number[] = [];
  const square: number[] = [];
  const multiplyRange = (start: number, m: number) => {
    for (let p = start; p < res.length; p++) res[p][1] *= m;
  };

  for (const match of text.matchAll(RE_ATTENTION)) {
    const t = match[0];
    const weight = match[1];
    if (t.startsWith("\\")) res.push([t.slice(1), 1.0]);
    else if (t === "(") round.push(res.length);
    else if (t === "[") square.push(res.length);
    else if (weight !== undefined && round.length) multiplyRange(round.pop()!, weightValue(weight, t));
    else if (t === ")" && round.length) multiplyRange(round.pop()!, ROUND);
    else if (t === "]" && square.length) multiplyRange(square.pop()!, SQUARE);
    else {
      t.split(RE_BREAK).forEach((part, i) => {
        if (i > 0) res.push(["BREAK", -1]);
        res.push([part, 1.0]);
      });
    }
  }
  for (const pos of round) multiplyRange(pos, ROUND);
  for (const pos of square) multiplyRange(pos, SQUARE);
  if (res.length === 0) res.push(["", 1.0]);

  // merge runs of identical weights
  let i = 0;
  while (i + 1 < res.length) {
    if (res[i][1] === res[i + 1][1]) {
      res[i][0] += res[i + 1][0];
      res.splice(i + 1, 1);
    } else i++;
  }
  return res;
}

/** True for the piece A1111's chunker treats as a BREAK (weight exactly -1; bracketed BREAKs are text). */
export const isBreak = ([text, weight]: PromptPiece): boolean => text === "BREAK" && weight === -1;
