// parsePromptAttention against A1111's own outputs (parse_prompt_attention exec'd unchanged on every string of
// the sd-tiny-lora/prompt-syntax fixture) and A1111's doctests; weights compared exactly (same float64 products).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { parsePromptAttention } from "./attention.js";

describe("parsePromptAttention", () => {
  it("reproduces A1111's doctests", () => {
    expect(parsePromptAttention("normal text")).toEqual([["normal text", 1.0]]);
    expect(parsePromptAttention("an (important) word")).toEqual([
      ["an ", 1.0],
      ["important", 1.1],
      [" word", 1.0],
    ]);
    expect(parsePromptAttention("(unbalanced")).toEqual([["unbalanced", 1.1]]);
    expect(parsePromptAttention("\\(literal\\]")).toEqual([["(literal]", 1.0]]);
    expect(parsePromptAttention("(unnecessary)(parens)")).toEqual([["unnecessaryparens", 1.1]]);
    expect(parsePromptAttention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")).toEqual([
      ["a ", 1.0],
      ["house", 1.5730000000000004],
      [" ", 1.1],
      ["on", 1.0],
      [" a ", 1.1],
      ["hill", 0.55],
      [", sun, ", 1.1],
      ["sky", 1.4641000000000006],
      [".", 1.1],
    ]);
  });

  it("splits BREAK as a whole, case-sensitive word with the whitespace around it", () => {
    expect(parsePromptAttention("a  BREAK\n b")).toEqual([
      ["a", 1],
      ["BREAK", -1],
      ["b", 1],
    ]);
    expect(parsePromptAttention("break BREAKS xBREAK")).toEqual([["break BREAKS xBREAK", 1]]);
    expect(parsePromptAttention("éBREAK")).toEqual([["éBREAK", 1]]); // Python's \b is Unicode-aware
  });

  it("uses Python's whitespace and digits in weights", () => {
    expect(parsePromptAttention("(a:\u00a01.5\u3000)")).toEqual([["a", 1.5]]);
    expect(parsePromptAttention("(a:\u0661.\u0665)")).toEqual([["a", 1.5]]); // Arabic-Indic digits, as Python's float()
    expect(parsePromptAttention("(a:\ufeff1.5)")).toEqual([["a:\ufeff1.5", 1.1]]); // U+FEFF is no space to Python
  });

  it("refuses a weight Python's float() rejects (A1111 raises) with a clear error", () => {
    expect(() => parsePromptAttention("(a:1.2.3)")).toThrow(ReimagineError);
    expect(() => parsePromptAttention("(a:.)")).toThrow(/weight '\.' .* not a number/);
    // without an open bracket the same text is plain text, as in A1111
    expect(parsePromptAttention("a:1.2.3)")).toEqual([["a:1.2.3)", 1]]);
  });

  describe.skipIf(!haveFixtures("sd-tiny-lora"))("A1111 outputs (sd-tiny-lora/prompt-syntax)", () => {
    const ref = haveFixtures("sd-tiny-lora") ? JSON.parse(readFileSync(fixture("sd-tiny-lora", "prompt-syntax", "reference.json"), "utf8")) : undefined;
    it("covers the fixture's strings", () => expect(ref.parse_prompt_attention.length).toBeGreaterThanOrEqual(29));
    for (const c of (ref?.parse_prompt_attention ?? []) as { input: string; output: [string, number][] }[]) {
      it(JSON.stringify(c.input), () => expect(parsePromptAttention(c.input)).toEqual(c.output));
    }
  });
});
