// classifier-free guidance and diffusers' rescale_noise_cfg on literal arrays (formulas from
// pipeline_stable_diffusion_xl_img2img.py: std over each sample, torch.std's unbiased estimate).
import { describe, expect, it } from "vitest";
import { classifierFreeGuidance } from "./img2img.js";

describe("classifierFreeGuidance", () => {
  const uncond = [0, 1, 2, 3];
  const text = [1, 1, 4, 0];
  const pred = Float32Array.from([...uncond, ...text]);
  it("uncond + g (text - uncond)", () => {
    expect(Array.from(classifierFreeGuidance(pred, 2))).toEqual([2, 1, 6, -3]);
  });
  it("rescale 1 scales the guided sample to the text prediction's std; 0.5 blends", () => {
    const guided = [2, 1, 6, -3];
    const std = (x: number[]) => {
      const m = x.reduce((a, b) => a + b, 0) / x.length;
      return Math.sqrt(x.reduce((a, b) => a + (b - m) ** 2, 0) / (x.length - 1));
    };
    const ratio = std(text) / std(guided); // 1.7321 / 3.7417
    const full = Array.from(classifierFreeGuidance(pred, 2, 1));
    full.forEach((v, i) => {
      expect(v).toBeCloseTo(guided[i] * ratio, 5);
    });
    const half = Array.from(classifierFreeGuidance(pred, 2, 0.5));
    half.forEach((v, i) => {
      expect(v).toBeCloseTo(0.5 * guided[i] * ratio + 0.5 * guided[i], 5);
    });
  });
  it("rescales each sample of a batch on its own", () => {
    const two = Float32Array.from([...uncond, ...uncond.map((x) => 10 * x), ...text, ...text.map((x) => 10 * x)]);
    const out = classifierFreeGuidance(two, 2, 1, 2);
    const one = classifierFreeGuidance(pred, 2, 1);
    for (let i = 0; i < 4; i++) {
      expect(out[i]).toBeCloseTo(one[i], 5);
      expect(out[4 + i]).toBeCloseTo(10 * one[i], 4);
    }
  });
});
