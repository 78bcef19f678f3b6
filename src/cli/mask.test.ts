// Inpainting from the command line: flag parsing and errors (no model), then on the sd-tiny-inpaint fixture every
// diffusers reference case through `reimagine <input> --mask ...` (written PNG within 1/255, the padding_mask_crop
// cases' pasted-back picture), metadata and `--from`, strength sweeps and batch folders with name.mask.png.
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { capture } from "../../test/capture.js";
import { runCli } from "../../test/cli.js";
import { useTempCache } from "../../test/temp-cache.js";
import { describeWithFixtures, fixture, loadReferenceJson, referenceSampler, referenceTensor } from "../../test/fixtures.js";
import { loadImage, readImageParameters, type RGBImage } from "../image.js";
import { decodePixels, encodeMaskPng } from "../image-mask.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { parseGenerateArgs } from "./args.js";
import { main } from "./main.js";
import { isMaskFile } from "./mask.js";

describe("inpainting flags", () => {
  const parse = (...a: string[]) => parseGenerateArgs(["in.png", "-p", "x", ...a]).flags.mask;
  it("parse into one mask record; none given -> undefined", () => {
    expect(parse()).toBeUndefined();
    expect(
      parse(
        "--mask",
        "m.png",
        "--mask-blur",
        "8",
        "--inpaint-area",
        "masked",
        "--inpaint-padding",
        "16",
        "--mask-invert",
        "--fill",
        "latent-noise",
        "--no-overlay",
      ),
    ).toEqual({
      file: "m.png",
      fromAlpha: undefined,
      sketch: undefined,
      blur: 8,
      area: "masked",
      padding: 16,
      invert: true,
      fill: "latent noise",
      overlay: false,
    });
    expect(parse("--mask-from-alpha")?.fromAlpha).toBe(true);
  });
  it("bad values are one-line usage errors naming the flag", () => {
    expect(() => parse("--mask", "m.png", "--mask-blur", "-1")).toThrow(/--mask-blur expects a number of pixels/);
    expect(() => parse("--mask", "m.png", "--inpaint-area", "face")).toThrow(/--inpaint-area must be whole or masked/);
    expect(() => parse("--mask", "m.png", "--inpaint-padding", "2.5")).toThrow(/--inpaint-padding expects a whole number/);
    expect(() => parse("--mask", "m.png", "--fill", "blue")).toThrow(/--fill must be one of original, fill, latent-noise, latent-nothing/);
    expect(() => parse("--mask", "m.png", "--mask-from-alpha")).toThrow(/one mask source/);
  });
  it("batch never takes name.mask.png for an input", () => {
    expect(["a.mask.png", "a.MASK.jpg", "a.png", "mask.png", "a-mask.png"].map(isMaskFile)).toEqual([true, true, false, false, false]);
  });
});

const SET = "sd-tiny-inpaint";

/** Largest |a - round(255 x)| over a float [0, 1] reference. */
function maxLsb(img: RGBImage, ref: Float32Array): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(img.data[i] - Math.round(255 * ref[i])));
  return m;
}

function unchangedOutside(a: RGBImage, b: RGBImage, mask: { data: Uint8Array }): boolean {
  for (let p = 0; p < a.width * a.height; p++) {
    if (mask.data[p] !== 0) continue;
    for (let k = 0; k < 3; k++) if (a.data[3 * p + k] !== b.data[3 * p + k]) return false;
  }
  return true;
}

describeWithFixtures(
  "reimagine <input> --mask (sd-tiny-inpaint)",
  () => {
    const dir = useTempCache("reimagine-cli-mask-");
    const R = loadReferenceJson(SET);
    const refFile = (f: string) => fixture(SET, "reference", f);
    const models: Record<string, string> = { model: fixture(SET, "model"), base: fixture("sd-tiny", "model") };

    for (const c of R.pipeline.cases) {
      it(`${c.id}: the written PNG matches diffusers`, async () => {
        const inp = c.inputs;
        const crop = inp.padding_mask_crop !== null;
        const output = join(dir, `${c.id}.png`);
        const sampler = referenceSampler(c);
        await runCli([
          refFile(inp.image),
          ...["--model", models[c.model], "-p", inp.prompt, "-n", inp.negative_prompt, "--strength", String(inp.strength)],
          ...["--steps", String(inp.num_inference_steps), "-g", String(inp.guidance_scale), "--seed", String(inp.generator.seed)],
          ...["--mask", refFile(inp.mask_image), "--mask-blur", "0", "-o", output, "-q"],
          ...(crop ? ["--inpaint-area", "masked", "--inpaint-padding", String(inp.padding_mask_crop)] : ["--no-overlay"]),
          ...(sampler ? ["--sampler", sampler] : []),
        ]);
        const out = await loadImage(output);
        if (crop) {
          const final = referenceTensor(c.overlay.final_image_uint8, SET).data;
          let m = 0;
          for (let i = 0; i < final.length; i++) m = Math.max(m, Math.abs(out.data[i] - final[i]));
          expect(m).toBeLessThanOrEqual(R.tolerances["pipeline.image_uint8"].atol);
        } else {
          expect(maxLsb(out, referenceTensor(c.image, SET).data)).toBeLessThanOrEqual(1);
        }
        const p = parseInfotext((await readImageParameters(output))!);
        expect(p.pairs.get("Mask blur")).toBe("0");
        if (crop) expect([p.pairs.get("Inpaint area"), p.pairs.get("Masked area padding")]).toEqual(["Only masked", String(inp.padding_mask_crop)]);
        else expect(p.pairs.get("Mask overlay")).toBe("False");
      });
    }

    it("--from re-runs the mask settings (given --mask again) and says the mask is needed without it", async () => {
      const c = R.pipeline.cases.find((x: any) => x.id.includes("padcrop") && x.model === "model");
      const first = join(dir, `${c.id}.png`);
      const again = join(dir, "again.png");
      await runCli([refFile("input.png"), "--from", first, "--model", models.model, "--mask", refFile(c.inputs.mask_image), "-o", again, "-q"]);
      const [a, b] = [await loadImage(first), await loadImage(again)];
      expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
      const { out, io } = capture();
      expect(await main([refFile("input.png"), "--from", first, "--model", models.model, "-o", join(dir, "nomask.png"), "--verbose"], io)).toBe(0);
      expect(out.stderr).toMatch(/its mask is not stored in the metadata, so pass --mask FILE/);
    });

    it("a strength sweep with a mask keeps the unmasked pixels in every image; notes are printed", async () => {
      const input = join(dir, "photo.png");
      copyFileSync(refFile("input.png"), input);
      const { out, io } = capture();
      const args = [input, "--model", models.base, "-p", "a fox", "--steps", "4", "--seed", "3", "--strength", "0.5,1", "--mask", refFile("mask_hard.png")];
      expect(await main([...args, "--mask-blur", "0", "-o", join(dir, "sweep.png")], io)).toBe(0);
      const photo = await loadImage(input);
      const mask = await decodePixels(refFile("mask_hard.png"));
      for (const s of ["0.50", "1.00"]) expect(unchangedOutside(await loadImage(join(dir, `sweep-s${s}.png`)), photo, mask)).toBe(true);
      const small = join(dir, "small-mask.png");
      writeFileSync(small, await encodeMaskPng({ width: 32, height: 32, data: new Uint8Array(32 * 32).fill(255) }));
      const r2 = capture();
      expect(
        await main([input, "--model", models.base, "-p", "a fox", "--steps", "2", "--strength", "0.5", "--mask", small, "-o", join(dir, "small.png")], r2.io),
      ).toBe(0);
      expect(r2.out.stderr).toMatch(/note: the mask is 32x32, the picture 64x64: the mask was resized/);
      expect(out.stdout).toMatch(/sweep\.png/);
    });

    it("batch: name.mask.png inpaints name.png (with the mask flags), images without one are plain img2img, masks are not inputs", async () => {
      const inDir = join(dir, "in");
      const outDir = join(dir, "out");
      mkdirSync(inDir);
      copyFileSync(refFile("input.png"), join(inDir, "a.png"));
      copyFileSync(refFile("mask_hard.png"), join(inDir, "a.mask.png"));
      copyFileSync(refFile("input.png"), join(inDir, "b.png"));
      await runCli([
        "batch",
        inDir,
        outDir,
        "--model",
        models.base,
        "-p",
        "a fox",
        "--steps",
        "4",
        "--strength",
        "0.6",
        "--seed",
        "1",
        "--mask-blur",
        "0",
        "-q",
      ]);
      expect(readdirSync(outDir).sort()).toEqual(["a.png", "b.png"]);
      const photo = await loadImage(refFile("input.png"));
      const mask = await decodePixels(refFile("mask_hard.png")); // --mask-blur 0 applies to the images with a mask
      expect(unchangedOutside(await loadImage(join(outDir, "a.png")), photo, mask)).toBe(true);
      expect(unchangedOutside(await loadImage(join(outDir, "b.png")), photo, mask)).toBe(false);
      expect(parseInfotext((await readImageParameters(join(outDir, "a.png")))!).pairs.get("Mask blur")).toBe("0");
      expect(parseInfotext((await readImageParameters(join(outDir, "b.png")))!).pairs.has("Mask blur")).toBe(false);
    });

    it("a missing or damaged mask fails before the model loads, naming the mask", async () => {
      const r = capture();
      expect(await main([refFile("input.png"), "-p", "x", "--model", models.base, "--mask", join(dir, "nope.png"), "-o", join(dir, "x.png")], r.io)).not.toBe(
        0,
      );
      expect(r.out.stderr).toMatch(/mask '.*nope\.png'/);
      expect(r.out.stderr).not.toMatch(/loading model/);
    });
  },
  SET,
);
