// ssim() against scikit-image: structural_similarity(gaussian_weights=True, sigma=1.5,
// use_sample_covariance=False, data_range=255) on the luminance of small integer-formula images;
// the numbers come from test/goldens/ssim_skimage.py (scikit-image 0.26, numpy 2.4).
import { describe, expect, it } from "vitest";
import { type RGBImage, ssim } from "./image-sheet.js";

/** An image whose R, G, B at (x, y) are given by formulas (integers 0..255). */
function rgb(w: number, h: number, r: (x: number, y: number) => number, g = r, b = r): RGBImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([r(x, y), g(x, y), b(x, y)], (y * w + x) * 3);
  return { width: w, height: h, data };
}

describe("ssim vs scikit-image structural_similarity", () => {
  const ramp = rgb(16, 12, (x, y) => (x * 13 + y * 7) % 256);
  const wavy = rgb(16, 12, (x, y) => (x * 13 + y * 7 + ((x * y) % 23)) % 256);
  const flat = rgb(16, 12, () => 128);
  const checker = rgb(13, 11, (x, y) => 40 + 170 * ((Math.floor(x / 2) + Math.floor(y / 2)) % 2));
  const softer = rgb(13, 11, (x, y) => 90 + 60 * ((Math.floor(x / 2) + Math.floor(y / 2)) % 2));

  it.each([
    ["a ramp and a perturbed ramp", ramp, wavy, 0.9450934881877147],
    ["a ramp and flat grey", ramp, flat, 0.10525341216784673],
    ["a checkerboard and a lower-contrast one (13x11: a valid region of 3x1 windows)", checker, softer, 0.6298148883851195],
  ])("%s", (_, a, b, golden) => {
    expect(ssim(a, b)).toBeCloseTo(golden, 12);
    expect(ssim(b, a)).toBeCloseTo(golden, 12); // symmetric
  });

  it("compares colour images through BT.601 luminance", () => {
    const a = rgb(
      12,
      12,
      (x) => (x * 20) % 256,
      (_, y) => (y * 20) % 256,
      (x, y) => ((x + y) * 10) % 256,
    );
    const b = rgb(
      12,
      12,
      (x) => (x * 20 + 15) % 256,
      (_, y) => (y * 18) % 256,
      (x, y) => (x * y) % 256,
    );
    expect(ssim(a, b)).toBeCloseTo(0.9868170522326644, 12);
  });

  it("is exactly 1 for identical images", () => {
    expect(ssim(wavy, wavy)).toBe(1);
  });
});
