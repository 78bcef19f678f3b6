// A single-file LDM checkpoint gives the same image as the diffusers folder it was converted
// from (sd-tiny: the same weights under the original key names), through the library and the CLI.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { main } from "../cli/main.js";
import { loadImage, tensorToFloatHWC } from "../image.js";
import type { Img2ImgPipeline } from "./img2img.js";
import { loadPipeline } from "./load.js";

describe.skipIf(!haveFixtures())("single-file checkpoint = diffusers folder (sd-tiny)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-single-"));
  const folder = fixture("sd-tiny", "model");
  const single = fixture("sd-tiny", "single-file", "sd-tiny.safetensors");
  let fromFolder: Img2ImgPipeline;
  let fromFile: Img2ImgPipeline;
  beforeAll(async () => {
    fromFolder = await loadPipeline(folder, { cacheDir: dir, threads: 1 });
    fromFile = await loadPipeline(single, { cacheDir: dir, threads: 1, configFrom: folder });
  });
  afterAll(async () => {
    await fromFolder?.model.release();
    await fromFile?.model.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reproduces reference case 0 and equals the folder's result exactly", async () => {
    const ref = loadReferenceJson();
    const c = ref.pipeline.cases[0];
    const opts = { ...referenceRunSettings(c), image: await loadImage(fixture("sd-tiny", "reference", c.inputs.image)) };
    const a = await fromFolder.run(opts);
    const b = await fromFile.run(opts);
    expect(maxAbsDiff(b.latents!, a.latents!)).toBe(0);
    expect(Buffer.from(b.images[0].data).equals(Buffer.from(a.images[0].data))).toBe(true);
    const img = referenceTensor(c.image);
    const [, H, W] = img.shape;
    expect(maxAbsDiff(tensorToFloatHWC(b.decoded!, W, H, 0), img.data)).toBeLessThan(ref.tolerances["pipeline.image"].atol);
  });

  it("the CLI writes the same PNG pixels from the checkpoint as from the folder", async () => {
    const input = fixture("sd-tiny", "reference", "input.png");
    const common = [input, "-p", "a cyberpunk version of this photo", "--steps", "4", "--strength", "0.5", "--seed", "7", "-q"];
    const io = { stdout: { write: () => true }, stderr: { write: () => true } } as never;
    const env = process.env.REIMAGINE_CACHE;
    process.env.REIMAGINE_CACHE = dir;
    try {
      expect(await main([...common, "--model", folder, "-o", join(dir, "a.png")], io)).toBe(0);
      expect(await main([...common, "--model", single, "--config-from", folder, "-o", join(dir, "b.png")], io)).toBe(0);
    } finally {
      if (env === undefined) delete process.env.REIMAGINE_CACHE;
      else process.env.REIMAGINE_CACHE = env;
    }
    const [a, b] = await Promise.all([loadImage(readFileSync(join(dir, "a.png"))), loadImage(readFileSync(join(dir, "b.png")))]);
    expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);
  });
});
