// Untrusted PNG text chunks: a zTXt/iTXt "parameters" chunk that inflates to hundreds of MB (a zlib
// bomb in a small file) is refused after MAX_PNG_TEXT_BYTES with one line, through the library and
// `reimagine info`; other compressed chunks are never inflated.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { capture } from "../test/capture.js";
import { main } from "./cli/main.js";
import { encodeImage, readImageParameters } from "./image.js";
import { MAX_PNG_TEXT_BYTES, pngChunk, pngChunks, pngText } from "./image-metadata.js";

const chunk = pngChunk;

/** `png` with extra chunks inserted before the first IDAT. */
function withChunks(png: Buffer, extra: Buffer[]): Buffer {
  const idat = pngChunks(png).find((c) => c.type === "IDAT")!;
  return Buffer.concat([png.subarray(0, idat.offset), ...extra, png.subarray(idat.offset)]);
}

const zTXt = (keyword: string, z: Buffer) => chunk("zTXt", Buffer.concat([Buffer.from(`${keyword}\0\0`, "latin1"), z]));
const iTXt = (keyword: string, z: Buffer) => chunk("iTXt", Buffer.concat([Buffer.from(`${keyword}\0\x01\0\0\0`, "latin1"), z]));

describe("PNG text chunks from untrusted files", async () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-meta-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = await encodeImage({ width: 2, height: 2, data: new Uint8Array(12) }, "png");
  const bomb = deflateSync(Buffer.alloc(256 << 20, 0x41)); // 256 MiB of "A" deflate to ~250 kB

  it.each([
    ["zTXt", zTXt],
    ["iTXt", iTXt],
  ])("a %s 'parameters' bomb is refused with one line, without inflating it", async (_type, make) => {
    const png = withChunks(base, [make("parameters", bomb)]);
    expect(png.length).toBeLessThan(1 << 20);
    const before = process.memoryUsage().arrayBuffers;
    const e = await readImageParameters(png).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(e?.message).toMatch(new RegExp(`'parameters' inflates to more than ${MAX_PNG_TEXT_BYTES} bytes.*damaged or crafted`));
    expect(e?.message).not.toContain("\n");
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 << 20); // never the 256 MiB
  });

  it("compressed chunks under other keywords are skipped, not inflated; a normal zTXt still reads", () => {
    const png = withChunks(base, [zTXt("workflow", bomb), zTXt("parameters", deflateSync("a cat\nSteps: 2"))]);
    expect(pngText(png, "parameters")).toBe("a cat\nSteps: 2");
    expect(pngText(png, "missing")).toBeUndefined();
  });

  it("corrupt zlib data is a one-line image error", () => {
    const png = withChunks(base, [chunk("zTXt", Buffer.from("parameters\0\0not zlib", "latin1"))]);
    expect(() => pngText(png, "parameters")).toThrow(/'parameters' is not valid zlib data.*damaged/);
  });

  it("reimagine info on a metadata bomb: exit 1, one line", async () => {
    const path = join(dir, "bomb.png");
    writeFileSync(path, withChunks(base, [zTXt("parameters", bomb)]));
    const { out, io } = capture();
    expect(await main(["info", path], io)).toBe(1);
    expect(out.stderr).toMatch(/^reimagine: Cannot read parameters from '.*bomb\.png': PNG text chunk 'parameters' inflates to more than \d+ bytes[^\n]*\n$/);
  });
});
