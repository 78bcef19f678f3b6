// Pillow's BICUBIC resize (its default filter) on literal pixels: the edge bands of resize-and-fill.
// Expected values from Pillow 12.3: Image.fromarray(a).resize(size, box=...) with no resample argument.
import { describe, expect, it } from "vitest";
import { resampleBicubic } from "./image.js";

const a = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 7) % 256); // 5x4 RGB
const img = { width: 5, height: 4, data: a };

describe("resampleBicubic (Pillow BICUBIC, a = -0.5)", () => {
  it("top band: zero-height box at the top edge to 9x3", () => {
    const row = [0, 0, 0, 0, 0, 6, 5, 12, 19, 17, 24, 31, 29, 36, 43, 41, 48, 55, 53, 60, 67, 66, 73, 80, 73, 80, 87];
    expect(Array.from(resampleBicubic(img, 9, 3, [0, 0, 5, 0]).data)).toEqual([...row, ...row, ...row]);
  });
  it("bottom band to 9x2 and left band to 3x7", () => {
    const row = [38, 45, 52, 45, 51, 58, 58, 64, 71, 68, 91, 98, 82, 121, 128, 112, 135, 142, 140, 145, 152, 152, 158, 165, 158, 165, 172];
    expect(Array.from(resampleBicubic(img, 9, 2, [0, 4, 5, 4]).data)).toEqual([...row, ...row]);
    const cols = [
      [0, 0, 3],
      [27, 32, 39],
      [94, 101, 108],
      [170, 178, 185],
      [203, 210, 217],
      [106, 113, 120],
      [44, 51, 58],
    ];
    expect(Array.from(resampleBicubic(img, 3, 7, [0, 0, 0, 4]).data)).toEqual(cols.flatMap((p) => [...p, ...p, ...p]));
  });
});
