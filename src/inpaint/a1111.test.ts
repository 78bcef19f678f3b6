// A1111 mask handling. Oracles: OpenCV 4.6 cv2.GaussianBlur (bit-exact 8-bit path) for the mask blur, Pillow 12.3 running
// the steps of A1111's masking.fill and img2img.py's inpaint-sketch mask, on v[i] = (i*37 + (i>>3)*11 + 5 + salt) % 256
// reshaped to the named size.
import { describe, expect, it } from "vitest";
import type { DecodedPixels } from "../image-mask.js";
import type { RGBImage } from "../image-sheet.js";
import {
  a1111Fill,
  a1111MaskBlur,
  a1111PrepareMask,
  createBinaryMask,
  inpaintSketch,
  latentNoiseFill,
  latentNothingFill,
  opencvGaussianKernelQ8,
  parseInpaintingFill,
} from "./a1111.js";
import { applyOverlay, getCropRegion } from "./mask-processor.js";
import { gaussianBlur, type GrayImage } from "./pil.js";

// cv2.GaussianBlur(v.reshape(H, W), (k, 1) for "x" / (1, k) for "y", sigma), k = 2*int(2.5*sigma + 0.5) + 1;
// "impulse_s*": a 1 x (4k+1) row, 255 in the middle, blurred along x.
const CV: Record<string, string> = {
  "9x7_s1_x": "202f4f7498af9654357887a6bda4644d6474ced0b27159729abecd2837577da3bfa86443808ea18a4e374f6e7dba9958435c81a6c6d53142678eb3cab16c4b",
  "9x7_s2_y": "587d9e859d6991648b5a7f9d84976a92668d5e8395808871986b916287877e76789f6f95678c747d697da4759a6b90647a6483a9799e6c915e796385ab7a9f",
  "12x5_s4_x": "606064676b6d6f70717072708988898888898989888684838988868483838384848384837c7b7a7979797c7e818486888082828485868687888a8b8c",
  "5x12_s4_y": "868c668d72858e658c74858b688f73858d678e74828b6b9173808b6a91767b896f9573798c6d9474758b719872738d709773728b739a71718e729972",
  "3x4_s4_x": "2a2a2a9999994d494d828282",
  "16x3_s0.6_x": "122a4f7499bdb835375d82a7cbc641307890b5d9d44f4a709cc2bd3833577c94dccb4641658aaeab2d2a4e7398bcb850",
  "7x9_s2.5_y": "163f668db3c9b01941688fb5c6a81f466d94bbba93284f759cc3a47832597fa6cc885e3d6389afd6684a476c91b7de4c3f4d7297bde339394f7499bfe53237",
  impulse_s1: "0000000000000000000000010e3e663e0e010000000000000000000000",
  impulse_s2: "00000000000000000000000000000000000207111f2d342d1f1107020000000000000000000000000000000000",
  impulse_s4:
    "000000000000000000000000000000000000000000000000000000000000000001020405090b101317191a191713100b09050402010000000000000000000000000000000000000000000000000000000000000000",
  "impulse_s0.6": "0000000000000000012aa92a010000000000000000",
  "impulse_s2.5": "000000000000000000000000000000000000000002060b141e262a261e140b06020000000000000000000000000000000000000000",
  impulse_s7:
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000100010202020404050708080b0b0d0d0e0f0e0f0e0d0d0b0b0808070504040202020100010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
};
const FILL_MASK_12x9 =
  "0000050c1010100c0500000000041635474b473516040000010a347ea9b2a97e340a0100010d46a7e0ede0a7460d0100010d46a7e0ede0a7460d0100010a347ea9b2a97e340a010000041635474b4735160400000000040b0f0f0f0b04000000000000010101010100000000"; // Image.new("L", (12, 9)); paste(255, (3, 2, 8, 6)); GaussianBlur(1)
const FILL_12x9 =
  "052a4f7499bee10a395f82a4c6ea1c3e6c8fb1d4f8274c709dc1e50d32577ca1d1f61b40658aafd30629517395afcd1e4a667f99b6d0314f728baac9f22b4e6c9cc1e70c31567ba0cff41a416488a3c11951667483959d576c757c909db74a616e8ba9d5f726476c9bc1e60b30557a9dcaee3350697f90976b757679838388727772808fb5d0323b698cb1d6fb21466b9abfe40f33567a96b7a45b67777f83817478777d8292a05549637ea1c4e71237678cb1d6fa20456b99bdcf213f677b8e96a55b6971808d975352627690accb0836597da1c6ec1136668bb0d4f721486b97b0ce21425c7a93b3cf344c6784a0bef42c4d6d93b6dd0232577ca1c6eb1035658aadd3f622456996b9dc0e2f537699c5eb183c6084a7cefe23486d92b7dc0131567ba0c5ea0f346488add2f71d426796bbe0062b507599caef14395e83a8cdfd22476c"; // masking.fill(RGB(12, 9), that mask)
// sketch = RGB(10, 8) with rows 2..4 x cols 3..6 set to (250, 10, 20) and pixel (1, 6) to black: [mask, image] per (alpha, blur)
const SKETCH: Record<string, [string, string]> = {
  sketch_a0_b4: [
    "0000000000000000000000000000000000000000000000ffffffff000000000000ffffffff000000000000ffffffff0000000000000000000000000000ff000000000000000000000000000000000000",
    "1530537791b4d7133f627da0c2de23446a8cadcbed2f4d7099b8db18385c7e99c5e823466a84a7ca1032567193b5d116405e80a0bfe120406c8baccff02a4d7195b7db17395d789ac6e126486586a8c51232517393b3d5123c5f829dbfe31d406e88aacee92c506b96b9d5193a587a9ac3e524446685a6c9132e507590b2d6113c607c9dc1dd1f42698aaccaec2b4b6d97b7d91536597c98c3e721436783a5c80e30536f91b3d1123d5c7d9ebee01d3e6a89abcdef284a6f94b6da14365a7698c5e222456384a6c50e2e4f7191b2d40f3a5c7f9cbee21b3d6b87a9cde9294c6a95b7d61536567799c3e520416383a5c8",
  ],
  sketch_a30_b2: [
    "0000000000000000000000000000000000000000000000b2b2b2b2000000000000b2b2b2b2000000000000b2b2b2b20000000000000000000000000000b2000000000000000000000000000000000000",
    "092b507596badd0f3c657e9fc6de21476b8bafceef2b4d709bbfe40f34597d9ecef01f436b84a7cd11315e6f8eb7cb18445e7fa1c1e41a3e6c8db2d7f9254a7196bbde1538677292c8d02856627fa9bd1734517493b6da0a395d81a0c5e71a3e7384a6d0d62d626489bac21e4557769ac0e220426686aacf0c2a4f768fb3d8103b6b7594c2ca21506580acc1e02d4b6d97bade0e32577b99c8eb1e416a81a2ca0f2e5a6d89b4ca13405c7b9fbfe1173b698bafd4f523486e95b9de11335b7696c7e31f456382a7c80a2a4d7092b7db0534597f9ec2e716396989abd1f023496a95badd0e3155779ac9ed183d6185aace",
  ],
  sketch_a0_b0: [
    "0000000000000000000000000000000000000000000000ffffffff000000000000ffffffff000000000000ffffffff0000000000000000000000000000ff000000000000000000000000000000000000",
    "052a4f7499bee308385d82a7ccf1163b6b90b5daff24496e9ec3e80d32577ca1d1f61b40658aafd404294e7398bde207375c81a6cbf0153a6a8fb4d9fe23486d9dc2e70c31fa0a14fa0a14fa0a14fa0a14284d7297bce106365b80a5caef1439698eb3fa0a14fa0a14fa0a14fa0a149fcff4193e6388add202274c7196bbe00535fa0a14fa0a14fa0a14fa0a1421466b9bc0e50a2f54799ecef3183d6287acd101264b7095badf0434597ea3c8ed1237678cb1d6fb2045000000e4092e53789dcdf2173c6186abd000254a6f94b9de0333587da2c7ec1136668bb0d5fa1f446999bee3082d52779cccf1163b6085aacf",
  ],
};

const seq = (n: number, salt = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + (i >> 3) * 11 + 5 + salt) % 256);
const hex = (img: { data: Uint8Array }) => Buffer.from(img.data).toString("hex");

describe("A1111 mask blur = OpenCV GaussianBlur, 8-bit fixed point", () => {
  it("Q8 kernels: OpenCV's error-diffused taps sum to 256", () => {
    expect(opencvGaussianKernelQ8(7, 2)).toEqual([18, 34, 48, 56, 48, 34, 18]); // OpenCV 4.x, also quoted by ports of it
    for (const s of [0.6, 1, 2.5, 4, 7]) {
      const n = 2 * Math.trunc(2.5 * s + 0.5) + 1;
      expect(opencvGaussianKernelQ8(n, s).reduce((a, b) => a + b, 0)).toBe(256);
    }
  });
  it.each([1, 2, 4, 0.6, 2.5, 7])("impulse response matches cv2 (sigma %s)", (s) => {
    const n = 2 * Math.trunc(2.5 * s + 0.5) + 1;
    const row: GrayImage = { width: 4 * n + 1, height: 1, data: new Uint8Array(4 * n + 1) };
    row.data[2 * n] = 255;
    expect(hex(a1111MaskBlur(row, s, "x"))).toBe(CV[`impulse_s${s}`]);
  });
  it.each([
    [9, 7, 1, "x"],
    [9, 7, 2, "y"],
    [12, 5, 4, "x"],
    [5, 12, 4, "y"],
    [3, 4, 4, "x"],
    [16, 3, 0.6, "x"],
    [7, 9, 2.5, "y"],
  ] as const)("%ix%i, sigma %s along %s (reflect-101 borders, kernels wider than the image)", (w, h, s, axis) => {
    expect(hex(a1111MaskBlur({ width: w, height: h, data: seq(w * h) }, s, axis))).toBe(CV[`${w}x${h}_s${s}_${axis}`]);
  });
});

describe("A1111 create_binary_mask", () => {
  const px = (channels: 1 | 2 | 3 | 4, data: number[]): DecodedPixels => ({ width: data.length / channels, height: 1, channels, data: Uint8Array.from(data) });
  it("an RGBA mask with transparency is read from its alpha: opaque = repaint, > 128 with mask_round", () => {
    const m = px(4, [0, 0, 0, 255, 255, 255, 255, 0, 9, 9, 9, 129, 9, 9, 9, 128]);
    expect(Array.from(createBinaryMask(m).data)).toEqual([255, 0, 255, 0]);
    expect(Array.from(createBinaryMask(m, false).data)).toEqual([255, 0, 129, 128]);
  });
  it("an opaque RGBA, RGB, gray or gray+alpha mask is its luma (white = repaint)", () => {
    expect(Array.from(createBinaryMask(px(4, [255, 255, 255, 255, 0, 0, 0, 255])).data)).toEqual([255, 0]);
    expect(Array.from(createBinaryMask(px(3, [255, 0, 0, 0, 255, 0])).data)).toEqual([76, 150]);
    expect(Array.from(createBinaryMask(px(1, [7, 200])).data)).toEqual([7, 200]);
    expect(Array.from(createBinaryMask(px(2, [7, 0, 200, 255])).data)).toEqual([7, 200]);
  });
});

describe("A1111 inpainting_fill", () => {
  it("fill: masked pixels take the blurred colours around them (Pillow oracle of masking.fill)", () => {
    const img: RGBImage = { width: 12, height: 9, data: seq(12 * 9 * 3) };
    const mask = gaussianBlur(rectMask(12, 9, 3, 2, 8, 6), 1);
    expect(hex(mask)).toBe(FILL_MASK_12x9);
    expect(hex(a1111Fill(img, mask))).toBe(FILL_12x9);
  });
  it("latent noise / latent nothing replace the masked latents, keep the rest", () => {
    const init = Float32Array.from([1, 2, 3, 4]); // [1, 2, 1, 2]
    const mask = Float32Array.from([0, 1]);
    expect(Array.from(latentNoiseFill(init, mask, Float32Array.from([9, 9, 9, 9]), [1, 2, 1, 2]))).toEqual([1, 9, 3, 9]);
    expect(Array.from(latentNothingFill(init, mask, [1, 2, 1, 2]))).toEqual([1, 0, 3, 0]);
  });
  it("parses 0..3 and the UI names; refuses anything else", () => {
    expect(parseInpaintingFill(0)).toBe("fill");
    expect(parseInpaintingFill(3)).toBe("latent nothing");
    expect(parseInpaintingFill("Latent Noise")).toBe("latent noise");
    expect(() => parseInpaintingFill(4)).toThrow(/inpainting_fill must be/);
  });
});

function rectMask(w: number, h: number, x1: number, y1: number, x2: number, y2: number): GrayImage {
  const data = new Uint8Array(w * h);
  for (let y = y1; y < y2; y++) data.fill(255, y * w + x1, y * w + x2);
  return { width: w, height: h, data };
}

describe("A1111 inpaint sketch", () => {
  const orig: RGBImage = { width: 10, height: 8, data: seq(10 * 8 * 3) };
  const sketch: RGBImage = { ...orig, data: orig.data.slice() };
  for (let y = 2; y < 5; y++) for (let x = 3; x < 7; x++) sketch.data.set([250, 10, 20], (y * 10 + x) * 3);
  sketch.data.set([0, 0, 0], (6 * 10 + 1) * 3);
  it.each([
    [0, 4],
    [30, 2],
    [0, 0],
  ])("mask = pixels that differ, dimmed by alpha %i; picture = blurred sketch over the original (blur %i)", (alpha, blur) => {
    const { image, mask } = inpaintSketch(orig, sketch, { maskAlpha: alpha, maskBlur: blur });
    const [wantMask, wantImage] = SKETCH[`sketch_a${alpha}_b${blur}`];
    expect(hex(mask)).toBe(wantMask);
    expect(hex(image)).toBe(wantImage);
  });
  it("a sketch of another size is refused", () => {
    expect(() => inpaintSketch(orig, { width: 9, height: 8, data: new Uint8Array(9 * 8 * 3) })).toThrow(/draw on the picture itself/);
  });
});

describe("A1111 mask preparation", () => {
  const gray = (g: GrayImage): DecodedPixels => ({ ...g, channels: 1 });
  it("only masked: the crop region comes from the BLURRED mask and equals diffusers' get_crop_region on it", async () => {
    const m = rectMask(64, 48, 20, 10, 30, 18);
    const r = await a1111PrepareMask(gray(m), 32, 32, { maskBlurX: 4, maskBlurY: 4, fullRes: true, fullResPadding: 2 });
    const blurred = a1111MaskBlur(a1111MaskBlur(m, 4, "x"), 4, "y");
    expect(r.maskForOverlay.data).toEqual(blurred.data);
    expect(r.cropRegion).toEqual(getCropRegion(blurred, 32, 32, 2));
    const [x1, y1, x2, y2] = r.cropRegion!;
    expect(x1).toBeLessThan(20);
    expect(x2).toBeGreaterThan(30);
    expect(x2 - x1).toBe(y2 - y1); // square like 32x32
    expect([r.mask.width, r.mask.height]).toEqual([32, 32]);
  });
  it("whole picture: the mask is resized like the picture and the overlay mask doubled (clipped at 255)", async () => {
    const m = rectMask(16, 16, 4, 4, 12, 12);
    const r = await a1111PrepareMask(gray(m), 16, 16, { maskBlurX: 1, maskBlurY: 1, fullRes: false });
    expect(r.cropRegion).toBeUndefined();
    r.mask.data.forEach((v, i) => {
      expect(r.maskForOverlay.data[i]).toBe(Math.min(255, 2 * v));
    });
  });
  it("invert, and an all-black mask with 'only masked': no region, a black mask and a note (never a whole-picture repaint)", async () => {
    const black: GrayImage = { width: 8, height: 8, data: new Uint8Array(64) };
    const inv = await a1111PrepareMask(gray(black), 8, 8, { invert: true, maskBlurX: 0, maskBlurY: 0, fullRes: false });
    expect(inv.mask.data.every((v) => v === 255)).toBe(true);
    const r = await a1111PrepareMask(gray(black), 8, 8, { maskBlurX: 0, maskBlurY: 0, fullRes: true });
    expect(r.cropRegion).toBeUndefined();
    expect(r.mask.data.every((v) => v === 0)).toBe(true);
    expect(r.note).toMatch(/mask is blank.*nothing to repaint/);
  });
  it("refuses a blur that is not a whole number of pixels in 0..64", async () => {
    await expect(a1111PrepareMask(gray(rectMask(8, 8, 1, 1, 4, 4)), 8, 8, { maskBlurX: -1 })).rejects.toThrow(/mask_blur_x/);
  });
});

describe("A1111 overlay with the whole picture (mask doubled)", () => {
  it("keeps pixels the blurred mask leaves at 0, takes the generated ones where the blurred mask is >= 128", async () => {
    const w = 24;
    const original: RGBImage = { width: w, height: w, data: seq(w * w * 3) };
    const generated: RGBImage = { width: w, height: w, data: seq(w * w * 3, 101) };
    const r = await a1111PrepareMask({ ...rectMask(w, w, 8, 8, 16, 16), channels: 1 }, w, w, { fullRes: false, maskBlurX: 2, maskBlurY: 2 });
    const out = await applyOverlay(r.maskForOverlay, original, generated);
    let [kept, taken, blended] = [0, 0, 0];
    for (let p = 0; p < w * w; p++) {
      const m = r.mask.data[p];
      const got = Array.from(out.data.subarray(3 * p, 3 * p + 3));
      if (m === 0) {
        kept++;
        expect(got).toEqual(Array.from(original.data.subarray(3 * p, 3 * p + 3)));
      } else if (m >= 128) {
        taken++;
        expect(got).toEqual(Array.from(generated.data.subarray(3 * p, 3 * p + 3)));
      } else blended++;
    }
    expect([kept > 0, taken > 0, blended > 0]).toEqual([true, true, true]);
  });
});
