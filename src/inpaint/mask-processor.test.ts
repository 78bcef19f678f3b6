// diffusers inpaint preprocessing: literal cases (get_crop_region oracles computed by running diffusers' own
// VaeImageProcessor.get_crop_region under Pillow 12.3) and every case of the sd-tiny-inpaint fixture.
import { describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { decodePixels } from "../image-mask.js";
import { loadImage, tensorToImage, resizeImage } from "../image.js";
import type { RGBImage } from "../image-sheet.js";
import { applyOverlay, getCropRegion, maskImage, maskToLatents, preprocessInpaint, preprocessMask } from "./mask-processor.js";
import type { Box, GrayImage } from "./pil.js";

// [W, H, rect of 255 (x1, y1, x2, y2), width, height, pad, diffusers' get_crop_region]
const CROP_ORACLE: [number, number, Box, number, number, number, Box][] = [
  [64, 64, [19, 13, 45, 41], 64, 64, 0, [18, 13, 46, 41]],
  [64, 64, [19, 13, 45, 41], 64, 64, 4, [14, 9, 50, 45]],
  [100, 60, [10, 5, 30, 12], 512, 512, 8, [2, 0, 38, 36]],
  [100, 60, [10, 5, 30, 12], 768, 512, 0, [10, 2, 30, 15]],
  [100, 60, [90, 50, 100, 60], 512, 768, 3, [87, 41, 100, 60]],
  [100, 60, [0, 0, 3, 60], 512, 512, 2, [0, 0, 60, 60]],
  [100, 60, [40, 20, 41, 21], 640, 448, 200, [0, 0, 100, 60]],
  [37, 91, [5, 80, 30, 91], 512, 512, 7, [0, 54, 37, 91]],
  [37, 91, [36, 0, 37, 1], 1024, 576, 1, [34, 0, 37, 2]],
];

function rectMask(w: number, h: number, [x1, y1, x2, y2]: Box): GrayImage {
  const data = new Uint8Array(w * h);
  for (let y = y1; y < y2; y++) data.fill(255, y * w + x1, y * w + x2);
  return { width: w, height: h, data };
}

describe("get_crop_region", () => {
  it.each(CROP_ORACLE)("%ix%i mask, rect %j, processing %ix%i, pad %i", (w, h, rect, width, height, pad, want) => {
    expect(getCropRegion(rectMask(w, h, rect), width, height, pad)).toEqual(want);
  });
  it("an all-black mask has no region (a clear error, not a division by zero)", () => {
    expect(() => getCropRegion({ width: 8, height: 8, data: new Uint8Array(64) }, 8, 8, 2)).toThrow(/nothing to repaint/);
  });
});

describe("mask binarisation and latent mask", () => {
  it("binarises at x/255 >= 0.5 (127 -> 0, 128 -> 1) and keeps RGB masks' luma", async () => {
    const g: GrayImage = { width: 4, height: 1, data: Uint8Array.from([0, 127, 128, 255]) };
    expect(Array.from(await preprocessMask(g, 4, 1))).toEqual([0, 0, 1, 1]);
    const rgb: RGBImage = { width: 2, height: 1, data: Uint8Array.from([255, 0, 0, 0, 255, 0]) }; // red L=76, green L=150
    expect(Array.from(await preprocessMask(rgb, 2, 1))).toEqual([0, 1]);
  });
  it("nearest downsampling takes the top-left pixel of each cell; CFG doubles the batch", () => {
    const m = Float32Array.from([1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]); // 4x4
    expect(Array.from(maskToLatents(m, 4, 4, 2))).toEqual([1, 0, 0, 0]);
    expect(Array.from(maskToLatents(m, 4, 4, 2, { batch: 1, cfg: true }))).toEqual([1, 0, 0, 0, 1, 0, 0, 0]);
    expect(maskToLatents(m, 4, 4, 2, { batch: 3, cfg: true }).length).toBe(24);
  });
  it("masked image zeroes the repainted pixels of every channel", () => {
    const img = Float32Array.from([0.5, -0.5, 0.25, 1, 1, 1]); // [1, 3, 1, 2]
    expect(Array.from(maskImage(img, Float32Array.from([1, 0])))).toEqual([0, -0.5, 0, 1, 0, 1]);
  });
});

describeWithFixtures(
  "inpaint preprocessing vs diffusers (sd-tiny-inpaint)",
  () => {
    const ref = loadReferenceJson("sd-tiny-inpaint");
    const tol = ref.tolerances;
    const dir = (name: string) => fixture("sd-tiny-inpaint", "reference", name);
    const t = (r: { tensor: string }) => referenceTensor(r, "sd-tiny-inpaint");
    const gray = async (name: string): Promise<GrayImage> => {
      const m = await decodePixels(dir(name));
      expect(m.channels).toBe(1);
      return { width: m.width, height: m.height, data: m.data };
    };

    for (const c of ref.pipeline.cases) {
      const inp = c.inputs;
      it(`${c.id}: preprocessed image, mask condition, masked image, mask latents${c.crop_region ? ", crop region" : ""}`, async () => {
        const image = await loadImage(dir(inp.image));
        const mask = await gray(inp.mask_image);
        const pre = await preprocessInpaint(image, mask, { width: inp.width, height: inp.height, paddingMaskCrop: inp.padding_mask_crop ?? undefined });
        if (c.crop_region) expect(pre.cropRegion).toEqual(c.crop_region.box_x1_y1_x2_y2);
        else expect(pre.cropRegion).toBeUndefined();
        expect(maxAbsDiff(pre.initImage, t(c.preprocessed_image).data)).toBeLessThanOrEqual(tol["pipeline.preprocessed_image"].atol);
        expect(maxAbsDiff(pre.maskCondition, t(c.mask_condition).data)).toBe(0); // exact
        expect(maxAbsDiff(pre.maskedImage, t(c.masked_image).data)).toBeLessThanOrEqual(tol["pipeline.masked_image"].atol);
        const f = ref.model.vae_scale_factor;
        const lat = maskToLatents(pre.maskCondition, inp.height, inp.width, f);
        expect(maxAbsDiff(lat, t(c.mask_latents).data)).toBe(0); // exact
        if (c.unet_in_channels === 9) {
          // channel 4 of the first UNet input is the mask, once per CFG half
          const cfg = c.do_classifier_free_guidance;
          const dup = maskToLatents(pre.maskCondition, inp.height, inp.width, f, { batch: inp.num_images_per_prompt, cfg });
          const u = t(c.unet_first_call.latent_model_input);
          const plane = lat.length;
          const fromUnet = new Float32Array(dup.length);
          for (let b = 0; b < dup.length / plane; b++) fromUnet.set(u.data.subarray((b * 9 + 4) * plane, (b * 9 + 5) * plane), b * plane);
          expect(maxAbsDiff(dup, fromUnet)).toBe(0);
        }
      });

      if (c.overlay) {
        it(`${c.id}: generated uint8, resize to the crop box and apply_overlay paste-back equal diffusers' bytes`, async () => {
          const [W, H] = [inp.width, inp.height];
          const generated = tensorToImage(t(c.decoded).data, W, H); // numpy_to_pil(postprocess(decoded))
          const refGenerated = t(c.overlay.generated_uint8).data;
          expect(maxAbsDiff(generated.data, refGenerated)).toBeLessThanOrEqual(tol["pipeline.image_uint8"].atol);
          const gen: RGBImage = { width: W, height: H, data: Uint8Array.from(refGenerated) }; // diffusers' own bytes from here on
          const [x1, y1, x2, y2] = c.crop_region.box_x1_y1_x2_y2;
          const resized = await resizeImage(gen, x2 - x1, y2 - y1, "crop-and-resize");
          expect(maxAbsDiff(resized.data, t(c.overlay.resized_to_crop_box_uint8).data)).toBe(0);
          const maskL = t(c.overlay.mask_L_uint8);
          const mask = await gray(inp.mask_image);
          expect(maxAbsDiff(mask.data, maskL.data)).toBe(0);
          const out = await applyOverlay(mask, await loadImage(dir(inp.image)), gen, c.crop_region.box_x1_y1_x2_y2);
          expect(maxAbsDiff(out.data, t(c.overlay.final_image_uint8).data)).toBe(0);
        });
      }
    }

    it("apply_overlay keeps every pixel outside the mask (mask 0) equal to the input", async () => {
      const image = await loadImage(dir("input.png"));
      const mask = await gray("mask_blurred.png");
      const other: RGBImage = { ...image, data: image.data.map((v) => 255 - v) };
      const out = await applyOverlay(mask, image, other);
      for (let p = 0; p < mask.data.length; p++) {
        const want = mask.data[p] === 0 ? image : mask.data[p] === 255 ? other : undefined;
        if (want) expect(out.data.subarray(3 * p, 3 * p + 3)).toEqual(want.data.subarray(3 * p, 3 * p + 3));
      }
    });
  },
  "sd-tiny-inpaint",
);
