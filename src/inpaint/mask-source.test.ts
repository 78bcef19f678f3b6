// Mask sources and the user-facing checks: literal pixels for every source kind, invert, a mask of another size,
// empty masks, and the overlay that leaves every pixel outside the mask unchanged.
import { describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import type { DecodedPixels } from "../image-mask.js";
import type { RGBImage } from "../image-sheet.js";
import { blurMask, emptyMaskReason, fitMask, maskFromSource, overlayOriginal } from "./mask-source.js";
import type { GrayImage } from "./pil.js";

const px = (channels: 1 | 2 | 3 | 4, data: number[], width = data.length / channels): DecodedPixels => ({
  width,
  height: data.length / channels / width,
  channels,
  data: Uint8Array.from(data),
});
const gray = (data: number[], width = data.length): GrayImage => ({ width, height: data.length / width, data: Uint8Array.from(data) });

describe("maskFromSource", () => {
  it("file: white = repaint (luma); --mask-invert swaps", () => {
    expect(Array.from(maskFromSource({ kind: "file", pixels: px(1, [0, 255, 90]) }).mask.data)).toEqual([0, 255, 90]);
    expect(Array.from(maskFromSource({ kind: "file", pixels: px(3, [255, 255, 255, 0, 0, 0]) }, { invert: true }).mask.data)).toEqual([0, 255]);
  });
  it("file with transparency: the alpha is the mask (opaque strokes = repaint, as A1111)", () => {
    const m = maskFromSource({ kind: "file", pixels: px(4, [0, 0, 0, 0, 255, 255, 255, 200]) }).mask;
    expect(Array.from(m.data)).toEqual([0, 255]);
  });
  it("the picture's alpha: transparent = repaint, partly transparent = partly; an opaque picture is refused", () => {
    expect(Array.from(maskFromSource({ kind: "alpha", pixels: px(4, [9, 9, 9, 0, 9, 9, 9, 255, 9, 9, 9, 100]) }).mask.data)).toEqual([255, 0, 155]);
    expect(Array.from(maskFromSource({ kind: "alpha", pixels: px(2, [9, 0, 9, 255]) }).mask.data)).toEqual([255, 0]);
    expect(() => maskFromSource({ kind: "alpha", pixels: px(4, [9, 9, 9, 255]) })).toThrow(/fully opaque: erase the area/);
    expect(() => maskFromSource({ kind: "alpha", pixels: px(3, [9, 9, 9]) })).toThrow(/no alpha channel/);
  });
  it("OpenAI edits mask: only fully transparent pixels are edited; a mask without alpha is refused", () => {
    expect(Array.from(maskFromSource({ kind: "openai", pixels: px(4, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 255]) }).mask.data)).toEqual([255, 0, 0]);
    const e = (() => {
      try {
        maskFromSource({ kind: "openai", pixels: px(1, [0]) });
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(ReimagineError);
    expect((e as Error).message).toMatch(/the mask has no alpha channel/);
  });
  it("sketch: changed pixels are the mask, and the picture comes back with the strokes", () => {
    const original: RGBImage = { width: 2, height: 1, data: Uint8Array.from([10, 10, 10, 20, 20, 20]) };
    const sketch: RGBImage = { width: 2, height: 1, data: Uint8Array.from([10, 10, 10, 200, 0, 0]) };
    const { mask, image } = maskFromSource({ kind: "sketch", original, sketch, maskBlur: 0 });
    expect(Array.from(mask.data)).toEqual([0, 255]);
    expect(Array.from(image!.data)).toEqual([10, 10, 10, 200, 0, 0]);
  });
});

describe("a mask of another size", () => {
  it("same aspect ratio (within one mask pixel): resized, with a note", async () => {
    const { mask, note } = await fitMask(gray(Array(8 * 6).fill(255), 8), 16, 12);
    expect([mask.width, mask.height]).toEqual([16, 12]);
    expect(mask.data.every((v) => v === 255)).toBe(true);
    expect(note).toMatch(/8x6.*16x12.*resized/);
    expect((await fitMask(gray(Array(9 * 6).fill(0), 9), 16, 12)).mask.width).toBe(16); // 9x6 ~ 16x10.7: within a mask pixel
  });
  it("another aspect ratio is refused unless stretching is asked for (A1111 compatibility)", async () => {
    await expect(fitMask(gray(Array(8 * 8).fill(0), 8), 16, 9)).rejects.toThrow(/another aspect ratio/);
    expect((await fitMask(gray(Array(8 * 8).fill(0), 8), 16, 9, { stretch: true })).mask.height).toBe(9);
  });
  it("the same size is returned as is, without a note", async () => {
    const m = gray([1, 2, 3, 4], 2);
    expect(await fitMask(m, 2, 2)).toEqual({ mask: m });
  });
});

describe("empty masks and blur", () => {
  it("all black: nothing to repaint, the caller returns the input", () => {
    expect(emptyMaskReason(gray([0, 0, 0, 0]))).toMatch(/all black.*returned unchanged/);
    expect(emptyMaskReason(gray([0, 128]))).toBeUndefined();
  });
  it("strokes blurred below 50 % and masks that are only faint gray get their own reasons", () => {
    const line = gray([0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0]);
    const blurred = blurMask(line, 4);
    expect(Math.max(...blurred.data)).toBeLessThan(128);
    expect(emptyMaskReason(blurred, line)).toMatch(/lower the mask blur or paint wider/);
    expect(emptyMaskReason(gray([0, 100]))).toMatch(/at least 50% white/);
  });
  it("blur 0 is no blur; a negative blur is refused", () => {
    const m = gray([0, 255, 0]);
    expect(blurMask(m, 0)).toBe(m);
    expect(() => blurMask(m, -2)).toThrow(/mask blur must be/);
  });
});

describe("overlayOriginal", () => {
  it("every pixel where the mask is 0 is the original's, every pixel where it is 255 the generated one's", async () => {
    const w = 8;
    const original: RGBImage = { width: w, height: w, data: Uint8Array.from({ length: w * w * 3 }, (_, i) => (i * 7) % 256) };
    const generated: RGBImage = { width: w, height: w, data: Uint8Array.from({ length: w * w * 3 }, (_, i) => (i * 13 + 5) % 256) };
    const mask = blurMask(
      gray(
        Array.from({ length: w * w }, (_, p) => (p % w >= 4 ? 255 : 0)),
        w,
      ),
      1,
    );
    const out = await overlayOriginal(generated, original, mask);
    let zero = 0;
    let full = 0;
    for (let p = 0; p < w * w; p++) {
      const want = mask.data[p] === 0 ? original : mask.data[p] === 255 ? generated : undefined;
      if (!want) continue;
      mask.data[p] === 0 ? zero++ : full++;
      expect(Array.from(out.data.subarray(3 * p, 3 * p + 3))).toEqual(Array.from(want.data.subarray(3 * p, 3 * p + 3)));
    }
    expect(zero).toBeGreaterThan(0);
    expect(full).toBeGreaterThan(0);
  });
  it("resizes the original and mask to the generated size when they differ", async () => {
    const original: RGBImage = { width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(50) };
    const generated: RGBImage = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(200) };
    const out = await overlayOriginal(generated, original, gray(Array(256).fill(0), 16));
    expect([out.width, out.height]).toEqual([8, 8]);
    expect(out.data.every((v) => v === 50)).toBe(true);
  });
});
