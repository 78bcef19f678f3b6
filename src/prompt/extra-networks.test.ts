// Extra-network tags: A1111's parse_prompt + ExtraNetworkLora.activate results recorded in the sd-tiny-lora fixture
// (cleaned prompt exact, items and te/unet multipliers exact), plus the bad-input errors.
import { describe, expect, it } from "vitest";
import { haveFixtures, loadReferenceJson } from "../../test/fixtures.js";
import { extractLoraTags, loraTags, parseExtraNetworks, pythonFloat, pythonInt } from "./extra-networks.js";

describe("extra-network tags", () => {
  it("removes tags before emphasis parsing, keeping the spaces around them", () => {
    expect(extractLoraTags("(a <lora:foo:0.6> photo:1.2)")).toEqual({
      prompt: "(a  photo:1.2)",
      loras: [{ name: "foo", te: 0.6, unet: 0.6, text: "<lora:foo:0.6>" }],
      others: [],
    });
  });

  it("reads te/unet/dyn as A1111 (positional, then named overrides; lyco is an alias)", () => {
    const [a, b, c] = extractLoraTags("<lora:a:0.5:0.25:8> <lyco:b:te=0.3:unet=0.9> <lora:c:1:unet=-1:dyn=4>").loras;
    expect(a).toMatchObject({ name: "a", te: 0.5, unet: 0.25, dynDim: 8 });
    expect(b).toMatchObject({ name: "b", te: 0.3, unet: 0.9 });
    expect(c).toMatchObject({ name: "c", te: 1, unet: -1, dynDim: 4 });
    // a=b=c has two '=': positional, as Python's split('=', 2) gives three parts
    expect(parseExtraNetworks("<lora:x:a=b=c>").tags[0].positional).toEqual(["x", "a=b=c"]);
  });

  it("refuses a weight that is not a number, a nameless tag and a bad dyn", () => {
    expect(() => extractLoraTags("a <lora:foo:strong>")).toThrow(/<lora:foo:strong>: the weight 'strong' is not a number/);
    expect(() => extractLoraTags("<lora:foo:te=x>")).toThrow(/te weight 'x' is not a number/);
    expect(() => extractLoraTags("<lora:foo:inf>")).toThrow(/not a number/);
    expect(() => extractLoraTags("<lora:te=1>")).toThrow(/must start with the LoRA's name/);
    expect(() => extractLoraTags("<lora:foo:1:1:0>")).toThrow(/dyn '0'/);
  });

  it("parses numbers as Python's float()/int()", () => {
    expect([" 0.5 ", "1e-1", "+.5", "5.", "1_0.2_5", "-0"].map(pythonFloat)).toEqual([0.5, 0.1, 0.5, 5, 10.25, -0]);
    expect(["", ".", "1__0", "_1", "0x10", "1.2.3"].map(pythonFloat)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(pythonFloat("-Infinity")).toBe(-Infinity);
    expect(Number.isNaN(pythonFloat("nan"))).toBe(true);
    expect([" 8", "1_6", "8.0", "x"].map(pythonInt)).toEqual([8, 16, undefined, undefined]);
  });

  describe.skipIf(!haveFixtures("sd-tiny-lora"))("A1111 results (sd-tiny-lora tag_syntax)", () => {
    const ref = haveFixtures("sd-tiny-lora") ? loadReferenceJson("sd-tiny-lora") : undefined;
    const cases = [...(ref?.tag_syntax.cases ?? []), ref?.tag_syntax.pipeline_case].filter(Boolean) as any[];
    for (const c of cases) {
      const prompt: string = c.prompt ?? c.prompt_with_tags;
      it(JSON.stringify(prompt), () => {
        const parsed = parseExtraNetworks(prompt);
        expect(parsed.prompt).toBe(c.cleaned_prompt);
        expect(parsed.tags.map((t) => ({ type: t.type, items: t.items }))).toEqual(c.extra_networks.map((n: any) => ({ type: n.type, items: n.items })));
        const want = c.extra_networks.filter((n: any) => n.type === "lora").map((n: any) => ({ name: n.name, te: n.te_multiplier, unet: n.unet_multiplier }));
        expect(loraTags(parsed.tags).map(({ name, te, unet }) => ({ name, te, unet }))).toEqual(want);
      });
    }
  });
});
