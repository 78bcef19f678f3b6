// Command-line tokens -> option values, on node:util parseArgs' own tokenizer (no argv rewriting).
// Strict mode refuses every value that starts with '-' ("ambiguous"), which would turn away
// `--seed -1`, `-s -0.5` and `-o -1.png`; here such a value is taken when it cannot be an option
// (a '-' followed by a digit or '.'), and anything that looks like an option is refused by name.
import { parseArgs } from "node:util";
import { ReimagineError } from "../index.js";

export type OptionSpec = Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>;
export type OptionValues<T extends OptionSpec> = {
  [K in keyof T]?: T[K]["type"] extends "string" ? (T[K]["multiple"] extends true ? string[] : string) : boolean;
};

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/** "unknown option '--promt': did you mean --prompt? see reimagine --help" */
export function unknownOption(raw: string, known: readonly string[]): ReimagineError {
  const name = raw.replace(/^-+/, "");
  const best = known.map((k) => ({ k, d: distance(name, k) })).sort((x, y) => x.d - y.d)[0];
  const hint = best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? `did you mean --${best.k}? ` : "";
  return new ReimagineError(`unknown option '${raw}': ${hint}see reimagine --help`, "usage");
}

/** A value that cannot be an option: a negative number or a name like "-1.png". */
const NOT_AN_OPTION = /^-[\d.]/;

/**
 * Parses `args` against `options` like parseArgs in strict mode, except for values starting with '-'.
 * @example parseTokens(["in.png", "--seed", "-1", "-o", "-1.png"], { seed: { type: "string" }, output: { type: "string", short: "o" } })
 *   // { values: { seed: "-1", output: "-1.png" }, positionals: ["in.png"] }
 */
export function parseTokens<T extends OptionSpec>(args: string[], options: T): { values: OptionValues<T>; positionals: string[] } {
  const { tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  const values: Record<string, string | boolean | string[]> = {};
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === "positional") positionals.push(t.value);
    if (t.kind !== "option") continue;
    const spec = options[t.name];
    if (!spec) throw unknownOption(t.rawName, Object.keys(options));
    const long = `--${t.name}`;
    if (spec.type === "boolean") {
      if (t.value !== undefined) throw new ReimagineError(`option ${long} takes no value (got '${t.rawName}=${t.value}')`, "usage");
      values[t.name] = true;
      continue;
    }
    const v = t.value;
    if (v === undefined)
      throw new ReimagineError(`option ${long} needs a value, e.g. ${long} VALUE (a value starting with '-' is written ${long}=-VALUE)`, "usage");
    if (t.inlineValue && !t.rawName.startsWith("--") && v.startsWith("=")) {
      // POSIX reads `-o=x.png` as the value "=x.png": almost always a slip
      throw new ReimagineError(`'${t.rawName}${v}' would set ${long} to '${v}': write ${t.rawName} ${v.slice(1)} or ${long}${v}`, "usage");
    }
    if (!t.inlineValue && v.startsWith("-") && !NOT_AN_OPTION.test(v)) {
      throw new ReimagineError(
        `option ${t.rawName} is followed by '${v}', which looks like an option: give ${t.rawName} a value, or write ${long}=${v} if that is the value`,
        "usage",
      );
    }
    if (spec.multiple) values[t.name] = [...((values[t.name] as string[] | undefined) ?? []), v]; // repeatable (--lora A --lora B)
    else values[t.name] = v;
  }
  return { values: values as OptionValues<T>, positionals };
}
