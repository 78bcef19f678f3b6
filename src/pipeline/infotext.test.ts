import { describe, expect, it } from "vitest";
import { formatInfotext, parseInfotext } from "./infotext.js";

describe("A1111 infotext", () => {
  const settings = {
    prompt: "a cyberpunk city, neon",
    negativePrompt: "blurry, low quality",
    steps: 20,
    sampler: "DPM++ 2M Karras",
    cfgScale: 7.5,
    seed: 1234567890123,
    width: 512,
    height: 768,
    model: "stabilityai/sd-turbo",
    modelHash: "0123456789",
    denoisingStrength: 0.55,
    clipSkip: 1,
  };

  it("writes A1111's layout", () => {
    expect(formatInfotext(settings)).toBe(
      "a cyberpunk city, neon\nNegative prompt: blurry, low quality\n" +
        "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234567890123, Size: 512x768, " +
        "Model hash: 0123456789, Model: stabilityai/sd-turbo, Denoising strength: 0.55, Clip skip: 2",
    );
  });

  it("round-trips through parse", () => {
    const p = parseInfotext(formatInfotext(settings));
    const { pairs, ...rest } = p;
    expect(rest).toEqual(settings);
    expect(pairs.get("Sampler")).toBe("DPM++ 2M Karras");
  });

  it("parses a multi-line prompt, a quoted value and a huge seed", () => {
    const p = parseInfotext(
      'line one\nline two\nSteps: 5, Sampler: Euler a, CFG scale: 1, Seed: 18446744073709551615, Size: 64x64, Lora hashes: "a: 1, b: 2", Denoising strength: 0.3',
    );
    expect(p.prompt).toBe("line one\nline two");
    expect(p.negativePrompt).toBeUndefined();
    expect(p.seed).toBe(18446744073709551615n);
    expect(p.pairs.get("Lora hashes")).toBe("a: 1, b: 2");
    expect(p.denoisingStrength).toBe(0.3);
  });
});
