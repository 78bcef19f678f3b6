// Pillow-exactness of the byte operations in pil.ts. Oracles: Pillow 12.3.0 (the fixtures' version) on inputs
// v[i] = (i*37 + (i>>3)*11 + 5 + salt) % 256, reshaped to the named size; e.g. for "blurL_9x7_r1.5":
//   Image.fromarray(v(63).reshape(7, 9), "L").filter(ImageFilter.GaussianBlur(1.5)).tobytes().hex()
// and likewise convert / paste(src, xy, mask) / alpha_composite / composite / ImageEnhance.Brightness / crop / invert.
import { describe, expect, it } from "vitest";
import { fixture } from "../../test/fixtures.js";
import { describeWithFixtures } from "../../test/fixtures.js";
import { decodePixels } from "../image-mask.js";
import type { RGBImage } from "../image-sheet.js";
import {
  alphaComposite,
  brightness,
  composite,
  crop,
  gaussianBlur,
  gaussianBoxRadius,
  getbbox,
  invert,
  paste,
  premultiply,
  toGray,
  unpremultiply,
  type GrayImage,
  type RGBAImage,
} from "./pil.js";

const ORACLE: Record<string, string | number[]> = {
  "blurL_9x7_r1.5": "586576868b897d736c646f7b8689867f7a7670777e848483828281767a7d7e7f81848788727476797e83888a8a6b6d7178828a8e8d8a65686e798791948e89",
  blurL_5x4_r10: "6c6d6d6d6e6c6d6d6d6e6d6e6e6e6f6d6e6e6e6f",
  "blurL_9x7_r2x0.6": "3a495e728082796a5f7b848a8c87817b78789e9a938c8789939fa7535d6b798588857d777a7978736f6d71787f867e7673788595a5ae4e5a6d82919893877d",
  "blurRGB_6x5_r0.7":
    "37577c6d6c93a54c727a7a7c97b1597176777a96bb696a8f7f7c9a5c7477828689b35b78717a9c93517186737a8496587878819690b258727589798caf6a698a7b7d9959766a6f939abd41748e6c9197416176787780a034567a",
  blurRGBa_7x6_r3:
    "282e3570282f356e292f346d292e336a292e3268292e3266292d3163292e346f292f346e2a2f346c292f336a292f3368292e3266292e31642b2d336d2b2e336c2a2e336b2a2e3369292f3368282e3267282e32652e2d326b2c2e326b2c2e336a2a2e3369292f3368282e3367272e3266302c316a2e2d316a2c2d32692b2e3268292e3369272e3367262e3366312c30692f2d30682d2d32682b2e3268282e3268272d3367252e3366",
  L_of_RGB_6x5: "23924f7bcd61d342bc2b9b6183466cbe55c434ad69935274d15db046b52c",
  RGBa_of_RGBA_7x6:
    "0213247405060708253d55a72f38053b5b7b9bda6e101f6e080a0c0d20374ea1343e0740547391d40212237304050607243c54a62e37053a5a7a99d96d0f1f6d07090b0c1f364da0333d063f537190d30112227204040506233b53a52d350439597898d86b0e1e6c07080a0b1e354c9f323b063e52708ed20111227103040405223a52a42c340438587796d76a0e1d6b0608090a1d344b9e313a063d506f8dd10011217002030304",
  RGBA_of_RGBa_7x6:
    "04294f749fbfdf08385d81a7cbf2153b6a8fb5daff25476e9cc4eb0d32577ba1cff71b40658aaed404274d7391b6da07375c81a6caf1153a698fb3d9ff23486d94bfe90c31567aa0cef6183f6488aed302284c72aaaad406365b80a5c9ed1139698db3d8fc21466ca2b9e70b3055799fcdf2183e6388acd202264c7199cccc05345a7fa4c8ec1238688db1d7fc21456b99cce50a2e53799eccf2193d6187acd100264b707fbfbf04",
  unpremul_raw_7x6:
    "0a5cad74ffffff08558ec6a7ffff5f3b7da8d3daff53a96effffff0d4f89c4a1ffff6b4079a5d2d4085aac73ffffff07548dc6a6ffff5c3a7ca8d3d9ff51a86dffffff0c4e89c4a0ffff693f78a5d2d30659ac72ffffff06538cc5a5ffff59397ba7d3d8ff50a76cffffff0b4c88c39fffff663e78a5d2d20458ab71ffffff05528bc5a4ffff56387ba7d3d7ff4ea66bffffff0a4b87c39effff643d77a4d1d10256aa70ffffff04",
  paste_RGBA_mask_7x6:
    "0e33587da1c6eb103e6388add1f61b406f94b9de02274c71a0c5ea0f3b6085aad8fd22476b90b5da092e53789cc1e60b3a5f84a9ccf1163b7297bce1432a4f74a3c8ed12355a7fa4d3f81d42668bb0d50c31567b9fc4e90e3d6287accff4193e6d92b7dcc7254a6f9ec3e80d385d82a7d6fb2045698eb3d8072c51769abfe409375c81a6caef14397095badf46284d72a1c6eb1034597ea3d1f61b406489aed30a2f54799dc2e70c",
  paste_RGB_offset_9x7:
    "072c51769bc0e50a3a5f84a9cef3183d6d92b7dc01264b70a0c5ea0f34597ea3d3f81d42678cb1d6062b50759abfe409395e83a8cdf2173c6c91b6db00254a6f9fc4e90e33587da2d2f71c41668bb0d5052a4f7499bee308385d82a7ccf1163b6b90b5daff24496e9ec3e80d32577ca1d1f61b40658aafd404294e7398bde207375c81a6cbf0153a6a8fb4d9fe23486d9dc2e70c31567ba0d0e91b40688db2da062f4d7297bce106365b80a5caef1439698eb3d8e1a82b4a7a9fbdce07",
  alpha_composite_7x6:
    "0b3055b99fc4e91a3e6388e4d2f71c717297bcfb052a4fb3a4c9ee24385d82e0d7fc21786c91b6f90a2f54b89ec3e8183d6287e4d1f61b6f7196bbfb04294eb2a3c8ed22375c81e0d6fb20776b90b5f9092e53b79dc2e7163c6186e3d0f51a6e7095bafb03284db0a2c7ec20365b80dfd5fa1f756a8fb4f9082d52b69cc1e6153b6085e2cff4196c6f94b9fa02274cafa1c6eb1e355a7fded4f91e74698eb3f9072c51b59bc0e513",
  composite_RGB_6x5:
    "072c51769bc0e50a3a5f84a9cdf2173c6c91b6db00264b70a0c5ea0f34597da2d2f71c41668bb0d5052a50759abfe409395e83a7ccf1163b6b90b5da02254a6f9fc4e90e33587da2d1f61b40658aafd4042a4f7499bee308385d",
  "brightness_0.0":
    "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
  "brightness_0.37":
    "010f1d2a384653021422303d4b590815273542505e0d1b283a48550412202d3b4d5b09172533404e010f1c2a3845530214222f3d4b580715273442505d0c1a283a475504121f2d3b4c5a09172532404e010e1c2a3745530213212f3d4a5807152634424f5d0c1a2739475504111f2d3a4c5a09162432404d000e1c293745520113212e3c4a5807142634414f5d0c192739475403111f2c3a4c59081624313f4d000e1b293744520113202e3c4a5706142633414f5c0b192738465403111e2c3a4b59081623313f4c000d1b293644520112202e3b495706132533414e5c0b192638465302101e2c394b59081523313e4c5e0d1b283644510012202d3b49560513",
  "brightness_0.5":
    "0215273a4c5f71041c2e415366780b1d35485a6d7f1224374f617406192b3e50687b0d203245576a021427394c5e71031b2e405365780a1d35475a6c7f1124364e617306182b3d50687a0d1f32445769011426394b5e70031b2d405265770a1c3447596c7e1123364e607305182a3d4f677a0c1f31445669011326384b5d70021a2d3f526477091c3446596b7e1023354d607205172a3c4f67790c1e31435668001325384a5d6f021a2c3f516476091b3346586b7d1022354d5f720417293c4e66790b1e30435568001225374a5c6f01192c3e516376081b3345586a7d0f22344c5f710416293b4e66780b1d304255677f122437495c6e01192b3e506375081a",
  "brightness_0.999":
    "04294e7398bde207375c81a6cbf0153a6a8fb4d9fe23486d9dc2e70c31567ba0d0f51a3f6489aed303284d7297bce106365b80a5caef1439698eb3d8fd22476c9cc1e60b30557a9fcff4193e6388add202274c7196bbe005355a7fa4c9ee1338688db2d7fc21466b9bc0e50a2f54799ecef3183d6287acd101264b7095badf0434597ea3c8ed1237678cb1d6fb20456a9abfe4092e53789dcdf2173c6186abd000254a6f94b9de0333587da2c7ec1136668bb0d5fa1f446999bee3082d52779cccf1163b6085aacf0024496e93b8dd0232577ca1c6eb1035658aafd4f91e436898bde2072c51769bcbf0153a5f84a9cefe23486d92b7dc0131567ba0c5ea0f34",
  "brightness_1.0":
    "052a4f7499bee308385d82a7ccf1163b6b90b5daff24496e9ec3e80d32577ca1d1f61b40658aafd404294e7398bde207375c81a6cbf0153a6a8fb4d9fe23486d9dc2e70c31567ba0d0f51a3f6489aed303284d7297bce106365b80a5caef1439698eb3d8fd22476c9cc1e60b30557a9fcff4193e6388add202274c7196bbe005355a7fa4c9ee1338688db2d7fc21466b9bc0e50a2f54799ecef3183d6287acd101264b7095badf0434597ea3c8ed1237678cb1d6fb20456a9abfe4092e53789dcdf2173c6186abd000254a6f94b9de0333587da2c7ec1136668bb0d5fa1f446999bee3082d52779cccf1163b6085aacfff24496e93b8dd0232577ca1c6eb1035",
  crop_9x7_box: "00000d32577ca10000658aafd4040000bde207375c0000153a6a8fb40000000000000000000000000000",
  getbbox: [2, 1, 7, 6],
  invert: "fad5b08b66411cf7c7a27d58330ee9c4946f4a2500dbb691613c17f2cda8",
};

const seq = (n: number, salt = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + (i >> 3) * 11 + 5 + salt) % 256);
const L = (w: number, h: number, salt = 0): GrayImage => ({ width: w, height: h, data: seq(w * h, salt) });
const RGB = (w: number, h: number, salt = 0): RGBImage => ({ width: w, height: h, data: seq(w * h * 3, salt) });
const RGBA = (w: number, h: number, salt = 0): RGBAImage => ({ width: w, height: h, data: seq(w * h * 4, salt) });
const hex = (img: { data: Uint8Array }) => Buffer.from(img.data).toString("hex");

describe("Pillow GaussianBlur (3 extended box passes)", () => {
  it("matches Pillow on gray images, incl. a radius larger than the image and different x / y radii", () => {
    expect(hex(gaussianBlur(L(9, 7), 1.5))).toBe(ORACLE["blurL_9x7_r1.5"]);
    expect(hex(gaussianBlur(L(5, 4), 10))).toBe(ORACLE.blurL_5x4_r10);
    expect(hex(gaussianBlur(L(9, 7), [2, 0.6]))).toBe(ORACLE["blurL_9x7_r2x0.6"]);
  });
  it("matches Pillow on RGB and premultiplied RGBa (each channel alone)", () => {
    expect(hex(gaussianBlur(RGB(6, 5), 0.7))).toBe(ORACLE["blurRGB_6x5_r0.7"]);
    expect(hex(gaussianBlur(premultiply(RGBA(7, 6)), 3))).toBe(ORACLE.blurRGBa_7x6_r3);
  });
  it("radius 0 is a copy; a negative radius is refused", () => {
    const img = L(9, 7);
    expect(gaussianBlur(img, 0).data).toEqual(img.data);
    expect(() => gaussianBlur(img, -1)).toThrow(/radius/);
  });
  it("box radius of Gwosdek's extended box: sigma 4 -> l = floor((sqrt(65) - 1) / 2) = 3, a = 7 * (12 - 16/3 * 3) / (6 * (16/3 - 16)) = 0.4375", () => {
    expect(gaussianBoxRadius(4)).toBe(3.4375);
    expect(gaussianBoxRadius(0)).toBe(0);
  });
});

describeWithFixtures(
  "Pillow GaussianBlur vs the inpaint fixture",
  () => {
    it("blur(mask_hard, 4) equals mask_blurred.png byte for byte (diffusers mask_processor.blur)", async () => {
      const hard = await decodePixels(fixture("sd-tiny-inpaint", "reference", "mask_hard.png"));
      const blurred = await decodePixels(fixture("sd-tiny-inpaint", "reference", "mask_blurred.png"));
      expect(hard.channels).toBe(1);
      const ours = gaussianBlur({ width: hard.width, height: hard.height, data: hard.data }, 4);
      expect(Buffer.from(ours.data).equals(Buffer.from(blurred.data))).toBe(true);
    });
  },
  "sd-tiny-inpaint",
);

describe("Pillow conversions and compositing", () => {
  it("convert('L') of RGB uses the L24 luma", () => {
    expect(hex(toGray(RGB(6, 5)))).toBe(ORACLE.L_of_RGB_6x5);
  });
  it("RGBA <-> RGBa (premultiply, then un-premultiply with integer division)", () => {
    expect(hex(premultiply(RGBA(7, 6)))).toBe(ORACLE.RGBa_of_RGBA_7x6);
    expect(hex(unpremultiply(premultiply(RGBA(7, 6))))).toBe(ORACLE.RGBA_of_RGBa_7x6);
    expect(hex(unpremultiply(RGBA(7, 6)))).toBe(ORACLE.unpremul_raw_7x6);
  });
  it("paste with an L mask (BLEND per channel), also clipped at an offset", () => {
    expect(hex(paste(RGBA(7, 6, 9), RGBA(7, 6, 1), 0, 0, L(7, 6, 3)))).toBe(ORACLE.paste_RGBA_mask_7x6);
    expect(hex(paste(RGB(9, 7, 2), RGB(4, 3, 5), 6, 5, L(4, 3, 8)))).toBe(ORACLE.paste_RGB_offset_9x7);
  });
  it("alpha_composite and composite", () => {
    expect(hex(alphaComposite(RGBA(7, 6, 4), RGBA(7, 6, 7)))).toBe(ORACLE.alpha_composite_7x6);
    expect(hex(composite(RGB(6, 5, 1), RGB(6, 5, 2), L(6, 5, 3)))).toBe(ORACLE.composite_RGB_6x5);
  });
  it("ImageEnhance.Brightness truncates a float32 blend with black", () => {
    for (const f of [0, 0.37, 0.5, 0.999, 1]) {
      const key = `brightness_${f === 0 ? "0.0" : f === 1 ? "1.0" : f}`;
      expect(hex(brightness(L(16, 16), f)), key).toBe(ORACLE[key]);
    }
  });
  it("crop fills outside pixels with 0; getbbox; invert", () => {
    expect(hex(crop(L(9, 7), [-2, 3, 5, 9]))).toBe(ORACLE.crop_9x7_box);
    const g = { width: 9, height: 7, data: new Uint8Array(63) };
    expect(getbbox(g)).toBeUndefined();
    g.data[5 * 9 + 2] = 3;
    g.data[1 * 9 + 6] = 200;
    expect(getbbox(g)).toEqual(ORACLE.getbbox);
    expect(hex(invert(L(6, 5)))).toBe(ORACLE.invert);
  });
});
