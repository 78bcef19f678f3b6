// Tests for image.ts / image-metadata.ts / image-sheet.ts: decoding edge cases (built in memory with sharp),
// diffusers resize modes and normalisation, A1111-compatible parameter metadata, atomic writes, SSIM, sheets.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp, { type Sharp } from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../test/fixtures.js";
import { ReimagineError } from "./errors.js";
import { crc32, exifWithUserComment, pngChunks, readExifUserComment } from "./image-metadata.js";
import { SHEET_GAP, SHEET_LABEL_HEIGHT } from "./image-sheet.js";
import {
  contactSheet,
  defaultSize,
  encodeImage,
  formatFromPath,
  imageToTensor,
  latentPreview,
  loadImage,
  readImageParameters,
  resampleLanczos,
  resizeImage,
  ssim,
  ssimResized,
  tensorToFloatHWC,
  tensorToImage,
  upscaleNearest,
  writeFileAtomic,
  type RGBImage,
} from "./image.js";

const solid = (width: number, height: number, rgb: [number, number, number]): RGBImage => {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = rgb[i % 3];
  return { width, height, data };
};
const px = (img: RGBImage, x: number, y: number) => Array.from(img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
const near = (a: number[], b: number[], tol: number) => a.every((v, i) => Math.abs(v - b[i]) <= tol);
/** Deterministic pseudo-random image (xorshift). */
const noise = (width: number, height: number, seed = 1): RGBImage => {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < data.length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    data[i] = s & 255;
  }
  return { width, height, data };
};
const rawSharp = (img: RGBImage) => sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } });
const expectError = async (p: Promise<unknown>, pattern: RegExp) => {
  const e = await p.then(
    () => undefined,
    (err) => err,
  );
  expect(e).toBeInstanceOf(ReimagineError);
  expect((e as Error).message).toMatch(pattern);
  expect((e as Error).message).not.toContain("\n");
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reimagine-image-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("loadImage", () => {
  it("applies EXIF orientation 6 (rotate 90° clockwise)", async () => {
    // stored 40x20: left half red, right half blue; displayed 20x40 with red on top
    const img = solid(40, 20, [0, 0, 255]);
    for (let y = 0; y < 20; y++) for (let x = 0; x < 20; x++) img.data.set([255, 0, 0], (y * 40 + x) * 3);
    const jpeg = await rawSharp(img).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(6);
    const out = await loadImage(jpeg);
    expect([out.width, out.height]).toEqual([20, 40]);
    expect(near(px(out, 10, 5), [255, 0, 0], 12)).toBe(true);
    expect(near(px(out, 10, 34), [0, 0, 255], 12)).toBe(true);
  });

  it("flattens transparent pixels onto the background colour", async () => {
    const rgba = Buffer.alloc(4 * 4 * 4);
    for (let i = 0; i < 16; i++) rgba.set(i < 8 ? [10, 20, 30, 255] : [200, 0, 0, 0], i * 4); // top half opaque
    const png = await sharp(rgba, { raw: { width: 4, height: 4, channels: 4 } })
      .png()
      .toBuffer();
    const white = await loadImage(png);
    expect(white.data.length).toBe(4 * 4 * 3);
    expect(px(white, 1, 0)).toEqual([10, 20, 30]);
    expect(px(white, 1, 3)).toEqual([255, 255, 255]);
    const custom = await loadImage(png, { background: "#00ff00" });
    expect(px(custom, 2, 3)).toEqual([0, 255, 0]);
    await expectError(loadImage(png, { background: "not-a-colour" }), /background colour/);
  });

  it("reads the first frame of an animated GIF", async () => {
    const frames = Buffer.concat([Buffer.from(solid(8, 8, [255, 0, 0]).data), Buffer.from(solid(8, 8, [0, 0, 255]).data)]);
    const gif = await sharp(frames, { raw: { width: 8, height: 16, channels: 3, pageHeight: 8 } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(2);
    const out = await loadImage(gif);
    expect([out.width, out.height]).toEqual([8, 8]);
    expect(near(px(out, 4, 4), [255, 0, 0], 8)).toBe(true);
  });

  it.each([
    ["webp", (s: Sharp) => s.webp({ lossless: true })],
    ["avif", (s: Sharp) => s.avif({ lossless: true })],
    ["tiff", (s: Sharp) => s.tiff({ compression: "lzw" })],
  ])("decodes %s", async (_name, enc) => {
    const src = noise(16, 12, 7);
    const out = await loadImage(await enc(rawSharp(src)).toBuffer());
    expect([out.width, out.height]).toEqual([16, 12]);
    expect(maxAbsDiff(out.data, src.data)).toBeLessThanOrEqual(_name === "avif" ? 8 : 0);
  });

  it("expands greyscale and 16-bit PNGs to 8-bit RGB", async () => {
    const grey = await sharp(Buffer.from([0, 128, 255, 64]), { raw: { width: 2, height: 2, channels: 1 } })
      .png()
      .toBuffer();
    const g = await loadImage(grey);
    expect(px(g, 1, 0)).toEqual([128, 128, 128]);
    const deep = await rawSharp(solid(2, 2, [255, 128, 0]))
      .toColourspace("rgb16")
      .png()
      .toBuffer();
    expect((await sharp(deep).metadata()).depth).toBe("ushort");
    expect(near(px(await loadImage(deep), 0, 0), [255, 128, 0], 1)).toBe(true);
  });

  it("ignores embedded ICC profiles, returning the stored values as PIL (and so diffusers) does", async () => {
    const p3 = await rawSharp(solid(2, 2, [200, 30, 60]))
      .withIccProfile("p3")
      .png()
      .toBuffer();
    const stored = await sharp(p3, { ignoreIcc: true }).raw().toBuffer();
    expect(px(await loadImage(p3), 0, 0)).toEqual(Array.from(stored.subarray(0, 3)));
    expect(Array.from(stored.subarray(0, 3))).not.toEqual([200, 30, 60]); // the profile really changed the numbers
  });

  it("reads a file path", async () => {
    const path = join(dir, "in.png");
    await writeFile(
      path,
      await rawSharp(solid(3, 2, [1, 2, 3]))
        .png()
        .toBuffer(),
    );
    expect(await loadImage(path)).toEqual({ width: 3, height: 2, data: solid(3, 2, [1, 2, 3]).data });
  });

  it("gives one-line errors naming the file for missing, truncated, non-image and oversized inputs", async () => {
    await expectError(loadImage(join(dir, "nope.png")), /nope\.png.*not found/);
    const png = await rawSharp(noise(64, 64)).png().toBuffer();
    const cut = join(dir, "cut.png");
    await writeFile(cut, png.subarray(0, png.length >> 1));
    await expectError(loadImage(cut), /cut\.png.*damaged/);
    const txt = join(dir, "notes.png");
    await writeFile(txt, "this is text, not pixels\n");
    await expectError(loadImage(txt), /notes\.png.*not a supported image/);
    // a valid header claiming 100000 x 100000 pixels: refused from metadata, nothing is decoded
    const bomb = Buffer.from(png);
    const ihdr = pngChunks(bomb).find((c) => c.type === "IHDR")!;
    bomb.writeUInt32BE(100_000, ihdr.offset + 8);
    bomb.writeUInt32BE(100_000, ihdr.offset + 12);
    bomb.writeUInt32BE(crc32(bomb.subarray(ihdr.offset + 4, ihdr.offset + 8 + 13)), ihdr.offset + 8 + 13);
    await expectError(loadImage(bomb), /100000x100000 .*over the limit/);
    await expectError(loadImage(png, { maxPixels: 1000 }), /over the limit/);
  });
});

describe("sizes and resize modes", () => {
  it("defaultSize rounds down to the multiple and refuses tiny images", () => {
    expect(defaultSize(1023, 769, 8)).toEqual({ width: 1016, height: 768 });
    expect(defaultSize(64, 64, 8)).toEqual({ width: 64, height: 64 });
    expect(() => defaultSize(7, 100, 8)).toThrow(ReimagineError);
  });

  it("returns an unresampled copy when the size does not change", async () => {
    const src = noise(20, 10);
    for (const mode of ["just-resize", "crop-and-resize", "resize-and-fill"] as const) {
      const out = await resizeImage(src, 20, 10, mode);
      expect(out.data).toEqual(src.data);
      expect(out.data).not.toBe(src.data);
    }
  });

  it("implements Pillow LANCZOS: constant stays constant, weights are the a=3 Lanczos kernel", () => {
    expect(maxAbsDiff(resampleLanczos(solid(37, 23, [9, 130, 250]), 64, 11).data, solid(64, 11, [9, 130, 250]).data)).toBe(0);
    // 2x upscale of a single bright column: output taps follow the Lanczos kernel in 22-bit fixed point
    const line = solid(8, 1, [0, 0, 0]);
    line.data.set([200, 200, 200], 4 * 3);
    const up = resampleLanczos(line, 16, 1);
    const sinc = (x: number) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
    const L = (x: number) => sinc(x) * sinc(x / 3);
    // output 8 has centre 4.25 in source coordinates: source pixel 4 sits at distance 0.25
    const taps = [-2.25, -1.25, -0.25, 0.75, 1.75, 2.75].map((d) => L(d)); // pixels 2..7 relative to centre
    const expected = (200 * taps[2]) / taps.reduce((a, b) => a + b);
    expect(Math.abs(up.data[8 * 3] - expected)).toBeLessThanOrEqual(1);
    // close to libvips lanczos3 on a smooth image (different implementation, so only approximately)
    return (async () => {
      const smooth = solid(48, 32, [0, 0, 0]);
      for (let y = 0; y < 32; y++) for (let x = 0; x < 48; x++) smooth.data.set([x * 5, y * 7, 128], (y * 48 + x) * 3);
      const ours = resampleLanczos(smooth, 30, 20);
      const vips = await rawSharp(smooth).resize(30, 20, { fit: "fill", kernel: "lanczos3" }).raw().toBuffer();
      expect(maxAbsDiff(ours.data, vips)).toBeLessThanOrEqual(6);
    })();
  });

  // Golden values from Pillow's own suite (Tests/test_image_resample.py, TestImagingCoreResampleAccuracy):
  // two bright and two dark squares resized with LANCZOS; `quarter` is the top-left quarter of the result.
  it.each([
    ["reduce 16->8", 16, 8, "e1 e0 e4 d7 e0 df e3 d6 e4 e3 e7 da d7 d6 d9 ce"],
    ["enlarge 6->12", 6, 12, "e1 e0 db ed f5 b8 e0 df da ec f3 b7 db db d6 e7 ee b5 ed ec e6 fb ff bf f5 f4 ee ff ff c4 b8 b7 b4 bf c4 a0"],
  ])("matches Pillow LANCZOS bit for bit (%s)", (_name, size, out, quarter) => {
    const c = 0xe1;
    const img = solid(size, size, [255 - c, 255 - c, 255 - c]);
    const h = size / 2;
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) if (x < h === y < h) img.data.fill(c, (y * size + x) * 3, (y * size + x) * 3 + 3);
    const q = quarter.split(" ").map((v) => parseInt(v, 16));
    const res = resampleLanczos(img, out, out);
    const o = out / 2;
    for (let y = 0; y < o; y++) {
      for (let x = 0; x < o; x++) {
        const v = q[y * o + x];
        for (const [xx, yy, e] of [
          [x, y, v],
          [out - 1 - x, out - 1 - y, v],
          [x, out - 1 - y, 255 - v],
          [out - 1 - x, y, 255 - v],
        ]) {
          expect(px(res, xx, yy)).toEqual([e, e, e]);
        }
      }
    }
  });

  it("just-resize stretches to the exact size", async () => {
    const out = await resizeImage(noise(50, 20), 32, 48, "just-resize");
    expect([out.width, out.height, out.data.length]).toEqual([32, 48, 32 * 48 * 3]);
  });

  it("crop-and-resize covers the target and crops the centre", async () => {
    // 60x20: red 20-px side bars, green centre square; to 16x16 only the green centre remains
    const src = solid(60, 20, [255, 0, 0]);
    for (let y = 0; y < 20; y++) for (let x = 20; x < 40; x++) src.data.set([0, 255, 0], (y * 60 + x) * 3);
    const out = await resizeImage(src, 16, 16, "crop-and-resize");
    expect([out.width, out.height]).toEqual([16, 16]);
    for (const [x, y] of [
      [2, 8],
      [13, 8],
      [8, 0],
      [8, 15],
    ])
      expect(near(px(out, x, y), [0, 255, 0], 30)).toBe(true);
  });

  it("resize-and-fill fits the image and fills the borders from its edge rows (diffusers 'fill')", async () => {
    // 32x16 source: top rows blue, bottom rows yellow, middle grey; to 32x32 -> image in rows 8..23, bands above/below
    const src = solid(32, 16, [128, 128, 128]);
    for (let x = 0; x < 32; x++) for (const y of [0, 1, 2]) src.data.set([0, 0, 255], (y * 32 + x) * 3);
    for (let x = 0; x < 32; x++) for (const y of [13, 14, 15]) src.data.set([255, 255, 0], (y * 32 + x) * 3);
    const out = await resizeImage(src, 32, 32, "resize-and-fill");
    expect([out.width, out.height]).toEqual([32, 32]);
    for (const y of [0, 7]) expect(px(out, 5, y)).toEqual([0, 0, 255]);
    for (const y of [24, 31]) expect(px(out, 5, y)).toEqual([255, 255, 0]);
    expect(px(out, 5, 16)).toEqual([128, 128, 128]);
    // the band is Pillow's default-filter (bicubic, a = -0.5) resample of a zero-height box at the edge: a
    // blend of the first two rows with weights B(0.5) = 0.5625, B(1.5) = -0.0625, not a copy of the edge row
    const rows = solid(32, 16, [90, 90, 90]);
    for (const [y, v] of [100, 200, 50].entries()) rows.data.fill(v, y * 32 * 3, (y + 1) * 32 * 3);
    const blend = (100 * 0.5625 + 200 * -0.0625) / (0.5625 - 0.0625); // 87.5
    const banded = await resizeImage(rows, 32, 32, "resize-and-fill");
    expect(Math.abs(px(banded, 3, 4)[0] - blend)).toBeLessThanOrEqual(1);
    expect(px(banded, 3, 8)).toEqual([100, 100, 100]); // first row of the pasted image
    // left/right fill for a tall source: bands are the stretched edge columns
    const tall = solid(8, 32, [50, 50, 50]);
    for (let y = 0; y < 32; y++) {
      tall.data.set([255, 0, 0], y * 8 * 3);
      tall.data.set([0, 0, 255], (y * 8 + 7) * 3);
    }
    const wide = await resizeImage(tall, 32, 32, "resize-and-fill");
    const inner = await resizeImage(tall, 8, 32, "just-resize");
    expect(px(wide, 0, 10)).toEqual(px(wide, 11, 10)); // whole left band = one value per row
    expect(px(wide, 12, 10)).toEqual(px(inner, 0, 10)); // image pasted at x = 16 - 4
    expect(px(wide, 31, 10)[2]).toBeGreaterThan(200);
  });
});

describe("tensors", () => {
  it("imageToTensor is NCHW x/255*2-1 in float32", () => {
    const img = { width: 2, height: 1, data: Uint8Array.from([0, 51, 255, 128, 7, 1]) };
    const t = imageToTensor(img);
    const f = (v: number) => Math.fround(2 * Math.fround(v / 255) - 1);
    expect(Array.from(t)).toEqual([f(0), f(128), f(51), f(7), f(255), f(1)]); // [R0 R1 G0 G1 B0 B1]
    expect(t[0]).toBe(-1);
    expect(t[4]).toBe(1);
  });

  it("tensorToImage inverts imageToTensor for every byte value and rounds half to even", () => {
    const img = noise(256, 3);
    for (let i = 0; i < 256; i++) img.data[i] = i;
    expect(tensorToImage(imageToTensor(img), 256, 3).data).toEqual(img.data);
    // x (found with numpy) whose float32 (x/2+0.5)*255 is exactly 130.5: numpy.round gives 130 (ties to even)
    const x = 0.023529410362243652;
    expect(Math.fround(Math.fround(Math.fround(x * 0.5) + 0.5) * 255)).toBe(130.5);
    const planes = new Float32Array(12); // [1, 3, 1, 4]: R plane only
    planes.set([x, 3, -3, NaN]);
    const out = tensorToImage(planes, 4, 1).data;
    expect([out[0], out[3], out[6], out[9]]).toEqual([130, 255, 0, 0]); // R of each pixel
  });

  it("tensorToImage reads one image of a batch at `offset`; tensorToFloatHWC is (x/2+0.5).clamp(0,1) in HWC", () => {
    const batch = new Float32Array(2 * 3 * 2); // [2, 3, 1, 2]
    batch.set([1, -1, 0, 0.5, -2, 2], 6);
    expect(Array.from(tensorToImage(batch, 2, 1, 6).data)).toEqual([255, 128, 0, 0, 191, 255]);
    expect(Array.from(tensorToFloatHWC(batch, 2, 1, 6))).toEqual([1, 0.5, 0, 0, 0.75, 1]);
    expect(() => tensorToImage(batch, 2, 1, 7)).toThrow(ReimagineError);
  });
});

describe.skipIf(!haveFixtures("sd-tiny"))("diffusers parity (sd-tiny fixtures)", () => {
  it("imageToTensor(loadImage(input.png)) equals the pipeline's preprocessed_image", async () => {
    const ref = loadReferenceJson("sd-tiny");
    const pre = referenceTensor(ref.pipeline.cases[0].preprocessed_image, "sd-tiny");
    const img = await loadImage(fixture("sd-tiny", "reference", "input.png"));
    const size = defaultSize(img.width, img.height, ref.model.vae_scale_factor);
    const resized = await resizeImage(img, size.width, size.height, "just-resize");
    expect(pre.shape).toEqual([1, 3, resized.height, resized.width]);
    expect(maxAbsDiff(imageToTensor(resized), pre.data)).toBeLessThanOrEqual(ref.tolerances["pipeline.preprocessed_image"].atol);
  });
});

describe("parameters metadata", () => {
  const latin = "a castle, highly detailed\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 8x8";
  const unicode = "大きな城 – ünïcödé 🏰\nSteps: 20, Seed: 1";

  it.each([
    ["tEXt", latin],
    ["iTXt", unicode],
  ])("PNG stores a %s chunk with keyword 'parameters' and reads it back", async (type, text) => {
    const png = await encodeImage(noise(8, 8), "png", { parameters: text });
    const chunks = pngChunks(png);
    const idat = chunks.findIndex((c) => c.type === "IDAT");
    const idx = chunks.findIndex((c) => c.type === type);
    expect(idx).toBeGreaterThan(0);
    expect(idx).toBeLessThan(idat);
    const { data, offset } = chunks[idx];
    expect(data.toString("latin1", 0, 11)).toBe("parameters\0");
    expect(png.readUInt32BE(offset + 8 + data.length)).toBe(crc32(png.subarray(offset + 4, offset + 8 + data.length)));
    if (type === "tEXt") expect(data.toString("latin1", 11)).toBe(text);
    else expect(data.subarray(11, 15)).toEqual(Buffer.from([0, 0, 0, 0])); // uncompressed, no language / translated keyword
    expect(await readImageParameters(png)).toBe(text);
    expect((await loadImage(png)).width).toBe(8); // still a valid PNG
  });

  it.each(["jpeg", "webp"] as const)("%s stores EXIF UserComment (UNICODE, UTF-16BE as piexif) and reads it back", async (format) => {
    for (const text of [latin, unicode]) {
      const buf = await encodeImage(noise(8, 8), format, { parameters: text, quality: 90 });
      expect(await readImageParameters(buf)).toBe(text);
      const meta = await sharp(buf).metadata(); // libvips still parses the file and the EXIF block
      expect(meta.format).toBe(format);
      expect(meta.exif).toBeDefined();
      expect(meta.exif!.includes(Buffer.from("UNICODE\0", "latin1"))).toBe(true);
      expect((await loadImage(buf)).width).toBe(8);
    }
    expect(await readImageParameters(await encodeImage(noise(8, 8), format))).toBeUndefined();
  });

  it("reads UTF-16LE UserComments written by other tools", () => {
    const be = exifWithUserComment("Steps: 30");
    const le = Buffer.from(be);
    for (let i = be.length - 18; i < be.length; i += 2) [le[i], le[i + 1]] = [be[i + 1], be[i]];
    expect(readExifUserComment(be)).toBe("Steps: 30");
    expect(readExifUserComment(le)).toBe("Steps: 30");
  });

  it("formatFromPath maps extensions and refuses others", () => {
    expect(formatFromPath("a/b.PNG")).toBe("png");
    expect(formatFromPath("x.jpg")).toBe("jpeg");
    expect(formatFromPath("x.jpeg")).toBe("jpeg");
    expect(formatFromPath("x.webp")).toBe("webp");
    expect(() => formatFromPath("x.bmp")).toThrow(/\.png, \.jpg or \.webp/);
  });
});

describe("writeFileAtomic", () => {
  it("writes, refuses to overwrite without the flag, overwrites with it, and leaves no temp files", async () => {
    const sub = await mkdtemp(join(dir, "w-"));
    const path = join(sub, "out.png");
    await writeFileAtomic(path, Buffer.from("one"));
    await expectError(writeFileAtomic(path, Buffer.from("two")), /already exists.*--overwrite/);
    expect(await readFile(path, "utf8")).toBe("one");
    await writeFileAtomic(path, Buffer.from("three"), { overwrite: true });
    expect(await readFile(path, "utf8")).toBe("three");
    await expectError(writeFileAtomic(join(sub, "missing", "x.png"), Buffer.from("x")), /does not exist/);
    expect(await readdir(sub)).toEqual(["out.png"]);
  });
});

describe("ssim, previews and contact sheets", () => {
  it("ssim is 1 for identical images and lower for noisier ones", () => {
    const a = noise(32, 32, 3);
    expect(ssim(a, a)).toBeCloseTo(1, 12);
    const slightly = { ...a, data: a.data.map((v, i) => Math.min(255, Math.max(0, v + ((i * 7919) % 21) - 10))) };
    const very = noise(32, 32, 99);
    const s1 = ssim(a, slightly);
    const s2 = ssim(a, very);
    expect(s1).toBeLessThan(1);
    expect(s2).toBeLessThan(s1);
    expect(s2).toBeLessThan(0.2);
    expect(() => ssim(a, noise(16, 16))).toThrow(/same size/);
  });

  it("ssimResized resizes the second image first", async () => {
    const a = solid(32, 32, [100, 100, 100]);
    for (let y = 0; y < 32; y++) for (let x = 0; x < 16; x++) a.data.set([200, 200, 200], (y * 32 + x) * 3);
    const half = await resizeImage(a, 16, 16, "just-resize");
    expect(await ssimResized(a, half)).toBeGreaterThan(0.8);
  });

  it("latentPreview applies the SD1 factors; upscaleNearest repeats pixels", () => {
    const lat = new Float32Array(2 * 4 * 1 * 2); // [2, 4, 1, 2]
    lat.set([1, 0, 0, 0, 0, 0, 0, 0], 8); // second image: channel 0 = [1, 0]
    const p = latentPreview(lat, [2, 4, 1, 2], 1);
    expect([p.width, p.height]).toEqual([2, 1]);
    expect(Array.from(p.data)).toEqual([
      Math.round(((1 + 0.298) / 2) * 255),
      Math.round(((1 + 0.207) / 2) * 255),
      Math.round(((1 + 0.208) / 2) * 255),
      128,
      128,
      128,
    ]);
    const big = upscaleNearest(p, 3);
    expect([big.width, big.height]).toEqual([6, 3]);
    expect(px(big, 2, 2)).toEqual(px(p, 0, 0));
    expect(px(big, 3, 0)).toEqual(px(p, 1, 0));
    expect(latentPreview(new Float32Array(16 * 4), [1, 16, 2, 2]).data.length).toBe(12);
    expect(() => latentPreview(lat, [2, 4, 1, 2], 2)).toThrow(ReimagineError);
  });

  it("contactSheet lays out labelled cells on a grid of the documented size", async () => {
    const cells = [
      { image: noise(64, 32), label: "input" },
      { image: solid(64, 64, [255, 0, 0]), label: "strength 0.40 · SSIM 0.83" },
      { image: solid(32, 32, [0, 0, 255]), label: "<&> escaped" },
    ];
    const sheet = await contactSheet(cells, { cellWidth: 48, columns: 2 });
    const cellH = 48; // tallest scaled image (square)
    expect(sheet.width).toBe(SHEET_GAP + 2 * (48 + SHEET_GAP));
    expect(sheet.height).toBe(SHEET_GAP + 2 * (cellH + SHEET_LABEL_HEIGHT + SHEET_GAP));
    expect(sheet.data.length).toBe(sheet.width * sheet.height * 3);
    expect(near(px(sheet, SHEET_GAP + 48 + SHEET_GAP + 24, SHEET_GAP + 24), [255, 0, 0], 2)).toBe(true); // 2nd cell
    expect(near(px(sheet, SHEET_GAP + 24, SHEET_GAP + cellH + SHEET_LABEL_HEIGHT + SHEET_GAP + 24), [0, 0, 255], 2)).toBe(true);
  });
});
