// Tests for image-mask.ts: masks decoded with the file's own channels (built in memory with sharp), and the one-line
// errors for missing, non-image, damaged or oversized masks.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReimagineError } from "./errors.js";
import { decodePixels, encodeMaskPng } from "./image-mask.js";

const raw = (data: number[], width: number, height: number, channels: 1 | 2 | 3 | 4) => sharp(Buffer.from(data), { raw: { width, height, channels } });

async function expectError(p: Promise<unknown>, pattern: RegExp, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err) => err,
  );
  expect(e).toBeInstanceOf(ReimagineError);
  expect((e as ReimagineError).code).toBe(code);
  expect((e as Error).message).toMatch(pattern);
  expect((e as Error).message).not.toContain("\n");
}

describe("decodePixels keeps the channels that carry the mask", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "reimagine-mask-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("gray PNG -> 1 channel, values exact", async () => {
    const png = await raw([0, 127, 128, 255], 2, 2, 1).toColourspace("b-w").png().toBuffer();
    expect(await decodePixels(png)).toEqual({ width: 2, height: 2, channels: 1, data: Uint8Array.from([0, 127, 128, 255]) });
  });
  it("gray + alpha PNG -> 2 channels; RGBA -> 4; RGB -> 3", async () => {
    const la = await raw([10, 0, 20, 255], 2, 1, 2).toColourspace("b-w").png().toBuffer();
    expect(Array.from((await decodePixels(la)).data)).toEqual([10, 0, 20, 255]);
    expect((await decodePixels(la)).channels).toBe(2);
    const rgba = await raw([1, 2, 3, 0, 4, 5, 6, 255], 2, 1, 4).png().toBuffer();
    const d = await decodePixels(rgba);
    expect(d.channels).toBe(4);
    expect(Array.from(d.data.subarray(4))).toEqual([4, 5, 6, 255]);
    expect((await decodePixels(await raw([9, 8, 7], 1, 1, 3).png().toBuffer())).channels).toBe(3);
  });
  it("a palette PNG with transparency expands to RGBA; a 16-bit gray PNG is scaled to 8 bits", async () => {
    const pal = await raw([255, 255, 255, 255, 0, 0, 0, 0], 2, 1, 4).png({ palette: true }).toBuffer();
    const d = await decodePixels(pal);
    expect(d.channels).toBe(4);
    expect([d.data[3], d.data[7]]).toEqual([255, 0]);
    const g16 = await raw([0, 255], 2, 1, 1).toColourspace("grey16").png().toBuffer();
    expect(Array.from((await decodePixels(g16)).data)).toEqual([0, 255]);
  });
  it("a file path works; EXIF orientation is applied", async () => {
    const p = join(dir, "m.jpg");
    await writeFile(
      p,
      await raw(Array(6 * 4 * 3).fill(200), 6, 4, 3)
        .jpeg()
        .withMetadata({ orientation: 6 })
        .toBuffer(),
    );
    const d = await decodePixels(p);
    expect([d.width, d.height]).toEqual([4, 6]);
  });
  it("missing file, folder, non-image, damaged PNG and oversized mask: one-line errors that say what to do", async () => {
    await expectError(decodePixels(join(dir, "nope.png")), /mask '.*nope\.png'.*file not found/, "not_found");
    await expectError(decodePixels(dir), /it is a folder/, "not_found");
    await expectError(decodePixels(Buffer.from("this is not an image")), /Cannot read mask data: not a supported image.*use a PNG/, "invalid_image");
    const png = await raw(Array(64 * 64).fill(255), 64, 64, 1)
      .png({ compressionLevel: 0 })
      .toBuffer();
    await expectError(decodePixels(png.subarray(0, png.length >> 1)), /damaged/, "invalid_image");
    await expectError(decodePixels(png, "mask", 100), /over the limit/, "image_too_large");
  });
  it("encodeMaskPng writes a gray PNG that decodes to the same bytes", async () => {
    const m = { width: 3, height: 1, data: Uint8Array.from([0, 100, 255]) };
    expect(await decodePixels(await encodeMaskPng(m))).toEqual({ ...m, channels: 1 });
  });
});
