// Control image preparation: diffusers' control_image_processor output on the sd-tiny-controlnet fixture (x / 255,
// not normalised), and A1111's resize modes for a control image of another size, applied before preprocessing.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { loadImage, type RGBImage } from "../image.js";
import { controlImageToTensor, prepareControlImage } from "./control-image.js";

const SET = "sd-tiny-controlnet";

describeWithFixtures(
  "control image as diffusers' control_image_processor gives it (sd-tiny-controlnet)",
  () => {
    const ref = loadReferenceJson(SET);
    it("control.png at the output size -> RGB x / 255 within tolerances.pipeline.control_image", async () => {
      const img = await loadImage(join(fixture(SET, "reference"), ref.control_image.file));
      expect([img.width, img.height]).toEqual(ref.control_image.size_wh);
      const cs = ref.pipeline.cases[0];
      const control = await prepareControlImage(img, { width: 64, height: 64 }); // same size: not resampled
      const got = controlImageToTensor(control);
      const want = referenceTensor(cs.control_image_preprocessed, SET);
      expect(want.shape).toEqual([1, 3, 64, 64]);
      expect(maxAbsDiff(got, want.data)).toBeLessThanOrEqual(ref.tolerances["pipeline.control_image"].atol);
      expect(got.some((v) => v > 0 && v < 1)).toBe(true); // the blurred strokes' greys survive as fractions
    });
  },
  SET,
);

describe("prepareControlImage resize modes (a control image of another size)", () => {
  // 8x4: the left half black, the right half white
  const half: RGBImage = { width: 8, height: 4, data: Uint8Array.from({ length: 8 * 4 * 3 }, (_, i) => (Math.floor(i / 3) % 8 < 4 ? 0 : 255)) };
  const row = (img: RGBImage, y: number) => Array.from({ length: img.width }, (_, x) => img.data[(y * img.width + x) * 3]);

  it("crop-and-resize to 4x4 keeps the centre (no resampling needed), then inverts", async () => {
    const out = await prepareControlImage(half, { width: 4, height: 4, resizeMode: "crop-and-resize", preprocessor: "invert" });
    for (let y = 0; y < 4; y++) expect(row(out, y)).toEqual([255, 255, 0, 0]);
  });

  it("just-resize squeezes the whole width (Lanczos), and the scribble is binary at the target size", async () => {
    const out = await prepareControlImage(half, { width: 4, height: 4, resizeMode: "just-resize", preprocessor: "scribble", sigma: 0 });
    for (let y = 0; y < 4; y++) expect(row(out, y)).toEqual([255, 255, 0, 0]);
  });

  it("resize-and-fill fits the image and repeats its edge rows into the bands", async () => {
    const out = await prepareControlImage(half, { width: 4, height: 8, resizeMode: "resize-and-fill" });
    expect([out.width, out.height]).toEqual([4, 8]);
    expect(row(out, 0)).toEqual(row(out, 3));
    expect(row(out, 7)).toEqual(row(out, 4));
    expect(row(out, 0)[0]).toBeLessThan(40);
    expect(row(out, 0)[3]).toBeGreaterThan(215);
  });

  it("refuses an unknown preprocessor", async () => {
    await expect(prepareControlImage(half, { width: 8, height: 4, preprocessor: "depth" })).rejects.toThrow(/unknown preprocessor 'depth'/);
  });
});
