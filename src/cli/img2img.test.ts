// `reimagine <input>` end to end on the sd-tiny fixture model, in-process: the five diffusers reference
// cases through the CLI (written PNG within 1/255), strength 0, sweeps, metadata, `info` and `--from`.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, expect, it, vi } from "vitest";
import { fixture, loadReferenceJson, referenceTensor, referenceSampler, describeWithFixtures } from "../../test/fixtures.js";
import { loadImage, readImageParameters } from "../image.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { loadPipeline } from "../pipeline/load.js";
import { encodeResult } from "../pipeline/metadata.js";
import { PipelineWorker } from "../worker/pipeline-worker.js";
import { main } from "./main.js";
import { capture } from "../../test/capture.js";
import { runCli } from "../../test/cli.js";

const run = runCli;

describeWithFixtures("reimagine <input> (sd-tiny)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-cli-"));
  const saved = process.env.REIMAGINE_CACHE;
  process.env.REIMAGINE_CACHE = join(dir, "cache"); // graphs built once for this file
  const model = fixture("sd-tiny", "model");
  const input = join(dir, "input.png");
  copyFileSync(fixture("sd-tiny", "reference", "input.png"), input);
  const loads = vi.spyOn(PipelineWorker, "start"); // the model loads in a child process, once per start
  beforeEach(() => {
    loads.mockClear(); // (a returned function would be run as a cleanup hook)
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.REIMAGINE_CACHE;
    else process.env.REIMAGINE_CACHE = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  const ref = loadReferenceJson();
  for (let i = 0; i < ref.pipeline.cases.length; i++) {
    const c = ref.pipeline.cases[i];
    it(`reference case ${c.id}: written PNG within 1/255 of diffusers`, async () => {
      const inp = c.inputs;
      const sampler = referenceSampler(c);
      const output = join(dir, `case-${i}.png`);
      const args = [
        fixture("sd-tiny", "reference", inp.image),
        "--model",
        model,
        "--prompt",
        inp.prompt,
        "--negative-prompt",
        inp.negative_prompt,
        "--strength",
        String(inp.strength),
        "--steps",
        String(inp.num_inference_steps),
        "--guidance-scale",
        String(inp.guidance_scale),
        "--seed",
        String(inp.generator.seed),
        "--output",
        output,
        "--threads",
        "1",
        ...(sampler ? ["--sampler", sampler] : []),
      ];
      const out = await run(args);
      expect(out.stdout).toBe(`${output}\nseed ${inp.generator.seed}\n`);
      const img = referenceTensor(c.image); // [1, H, W, 3] in [0, 1]
      const ours = await loadImage(output);
      expect([ours.height, ours.width]).toEqual(img.shape.slice(1, 3));
      let worst = 0;
      for (let k = 0; k < img.data.length; k++) worst = Math.max(worst, Math.abs(ours.data[k] - Math.round(img.data[k] * 255)));
      expect(worst).toBeLessThanOrEqual(1);
      // A1111 metadata records what was run
      const p = parseInfotext((await readImageParameters(output))!);
      expect(p).toMatchObject({
        prompt: inp.prompt,
        negativePrompt: inp.negative_prompt,
        steps: inp.num_inference_steps,
        cfgScale: inp.guidance_scale,
        seed: inp.generator.seed,
        width: ours.width,
        height: ours.height,
        denoisingStrength: inp.strength,
        model: "model",
      });
      expect(p.sampler).toBe({ ddim: "DDIM", "euler-a": "Euler a", "dpmpp-2m-karras": "DPM++ 2M Karras", none: "PLMS" }[sampler ?? "none"]);
      expect(p.modelHash).toMatch(/^[0-9a-f]{10}$/);
    });
  }

  it("strength 0 gives back the input pixels exactly, named <stem>-reimagined.png beside the input", async () => {
    const out = await run([input, "--model", model, "-p", "anything", "--strength", "0"]);
    const written = join(dir, "input-reimagined.png");
    expect(out.stdout).toMatch(new RegExp(`^${written.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\nseed \\d+\n$`));
    const [a, b] = [await loadImage(input), await loadImage(written)];
    expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);
    // an existing output is refused instantly (before the model loads) and left alone
    const before = readFileSync(written);
    loads.mockClear();
    const again = capture();
    expect(await main([input, "--model", model, "-p", "x", "--strength", "0.5"], again.io)).toBe(1);
    expect(again.out.stderr).toMatch(/^reimagine: '.*input-reimagined\.png' already exists: pass --overwrite[^\n]*\n$/);
    expect(loads).not.toHaveBeenCalled();
    expect(readFileSync(written).equals(before)).toBe(true);
    // --overwrite replaces it
    await run([input, "--model", model, "-p", "x", "--strength", "0.5", "--steps", "4", "--guidance-scale", "1", "--seed", "3", "--overwrite"]);
    expect(readFileSync(written).equals(before)).toBe(false);
  });

  it("a sweep loads the model once and writes one image per strength (same seed) plus the sheet", async () => {
    const out = await run([
      input,
      "--model",
      model,
      "-p",
      "a city",
      "--strength",
      "0.25,0.5,1",
      "--steps",
      "4",
      "--guidance-scale",
      "1",
      "--seed",
      "77",
      "--json",
    ]);
    expect(loads).toHaveBeenCalledTimes(1);
    const res = JSON.parse(out.stdout);
    const names = ["input-s0.25.png", "input-s0.50.png", "input-s1.00.png"].map((n) => join(dir, n));
    expect(res.outputs).toEqual(names);
    expect(res.sheet).toBe(join(dir, "input-sweep.png"));
    expect(res.seed).toBe(77);
    for (const [k, p] of names.entries()) {
      const meta = parseInfotext((await readImageParameters(p))!);
      expect(meta.seed).toBe(77);
      expect(meta.denoisingStrength).toBe([0.25, 0.5, 1][k]);
      expect(res.results[k].ssim).toBeGreaterThan(-1);
      expect(res.results[k].ssim).toBeLessThan(1);
    }
    // the sweep's 0.5 image is the single run at 0.5 with that seed
    const single = join(dir, "single-0.5.png");
    await run([input, "--model", model, "-p", "a city", "--strength", "0.5", "--steps", "4", "--guidance-scale", "1", "--seed", "77", "-o", single]);
    expect((await loadImage(single)).data).toEqual((await loadImage(names[1])).data);
    const sheet = await loadImage(res.sheet);
    const first = await loadImage(input);
    expect(sheet.width).toBeGreaterThanOrEqual(4 * Math.min(first.width, 256)); // input + 3 cells
  });

  it("info prints the written parameters and --from reproduces the same bytes", async () => {
    const first = join(dir, "first.png");
    await run([
      input,
      "--model",
      model,
      "-p",
      "a red barn, oil",
      "-n",
      "people",
      "--strength",
      "0.6",
      "--steps",
      "5",
      "--guidance-scale",
      "3",
      "--sampler",
      "euler-a",
      "--seed",
      "1234",
      "--clip-skip",
      "1",
      "-o",
      first,
    ]);
    const info = await run(["info", first]);
    const text = (await readImageParameters(first))!;
    expect(info.stdout).toBe(`${text}\n`);
    expect(info.stdout).toMatch(
      /^a red barn, oil\nNegative prompt: people\nSteps: 5, Sampler: Euler a, CFG scale: 3, Seed: 1234, Size: 64x64, Model hash: [0-9a-f]{10}, Model: model, Denoising strength: 0\.6, Clip skip: 2\n$/,
    );
    const json = JSON.parse((await run(["info", first, "--json"])).stdout);
    expect(json).toMatchObject({ prompt: "a red barn, oil", seed: 1234, steps: 5, sampler: "Euler a", denoisingStrength: 0.6 });

    const again = join(dir, "again.png");
    await run([input, "--model", model, "--from", first, "-o", again]);
    expect(readFileSync(again).equals(readFileSync(first))).toBe(true);
    // the library writes the same file: pipeline + encodeResult (the helper the README shows)
    const pipe = await loadPipeline(model, { threads: 1 });
    try {
      const settings = {
        image: input,
        prompt: "a red barn, oil",
        negativePrompt: "people",
        strength: 0.6,
        steps: 5,
        guidanceScale: 3,
        sampler: "euler-a",
        seed: 1234,
        clipSkip: 1,
      };
      expect((await encodeResult(pipe, settings, await pipe.run(settings))).equals(readFileSync(first))).toBe(true);
    } finally {
      await pipe.model.release();
    }
    // explicit flags override the stored settings
    const other = join(dir, "other.png");
    await run([input, "--model", model, "--from", first, "--seed", "99", "-o", other]);
    const p = parseInfotext((await readImageParameters(other))!);
    expect(p).toMatchObject({ seed: 99, prompt: "a red barn, oil", steps: 5, sampler: "Euler a", denoisingStrength: 0.6 });
    expect(readFileSync(other).equals(readFileSync(first))).toBe(false);

    const plain = capture();
    expect(await main(["info", input], plain.io)).toBe(0);
    expect(plain.out.stdout).toMatch(/no generation parameters/);
    const missing = capture();
    expect(await main(["info", join(dir, "missing.png")], missing.io)).toBe(1);
    expect(missing.out.stderr).toMatch(/^reimagine: .*not found[^\n]*\n$/);
    const broken = capture();
    expect(await main(["info", join(dir, "cache")], broken.io)).toBe(1);
    const noParams = capture();
    expect(await main([input, "--model", model, "--from", input, "-o", join(dir, "x.png")], noParams.io)).toBe(1);
    expect(noParams.out.stderr).toMatch(/has no generation parameters/);
  });

  it("several images get -1, -2 names and JPEG/WebP keep the metadata", async () => {
    const out = await run([
      input,
      "--model",
      model,
      "-p",
      "two",
      "--num-images",
      "2",
      "--steps",
      "4",
      "--strength",
      "0.5",
      "--guidance-scale",
      "1",
      "--seed",
      "5",
      "-o",
      join(dir, "multi.webp"),
    ]);
    expect(out.stdout).toBe(`${join(dir, "multi-1.webp")}\n${join(dir, "multi-2.webp")}\nseed 5\n`);
    const p = parseInfotext((await readImageParameters(join(dir, "multi-2.webp")))!);
    expect(p).toMatchObject({ prompt: "two", seed: 5 });
    expect(p.pairs.get("Batch pos")).toBe("1");
    await run([input, "--model", model, "-p", "jpeg", "--steps", "4", "--strength", "0.5", "--seed", "5", "-o", join(dir, "one.jpg")]);
    expect(parseInfotext((await readImageParameters(join(dir, "one.jpg")))!).prompt).toBe("jpeg");
    expect(readdirSync(dir).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    expect(existsSync(join(dir, "multi-3.webp"))).toBe(false);
  });
});
