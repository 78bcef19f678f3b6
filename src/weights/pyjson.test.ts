// Configs as Python writes them: bare NaN / Infinity / -Infinity parse (outside strings only), plain
// JSON errors still fail with a message that does not blame the download, and a model whose
// scheduler_config.json says `"lambda_min_clipped": -Infinity` (diffusers' DPMSolverMultistepScheduler)
// loads and reproduces the diffusers reference run.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { loadImage, tensorToFloatHWC } from "../image.js";
import { loadPipeline } from "../pipeline/load.js";
import { readJson } from "./diffusers.js";
import { parsePythonJson, PythonJsonError } from "./pyjson.js";

describe("parsePythonJson", () => {
  it.each([
    ['{"a": -Infinity, "b": Infinity, "c": NaN}', { a: -Infinity, b: Infinity, c: NaN }],
    ["[NaN, -Infinity, 1e3, -1]", [NaN, -Infinity, 1000, -1]],
    ['{"s": "NaN -Infinity", "t": "a\\"Infinity"}', { s: "NaN -Infinity", t: 'a"Infinity' }],
    ['{"x": [1, {"y": -Infinity}]}', { x: [1, { y: -Infinity }] }],
    ['{"plain": [1, "two", null, true]}', { plain: [1, "two", null, true] }],
  ])("%s", (text, expected) => {
    expect(parsePythonJson(text)).toEqual(expected);
  });

  it.each(['{"a": -Inf}', '{"a": Infinityy}', '{"a": nan}', '{"a": 1,}', "{'a': 1}", '{"a": NaN'])("refuses %s like Python", (text) => {
    expect(() => parsePythonJson(text)).toThrow(PythonJsonError);
  });

  const dir = mkdtempSync(join(tmpdir(), "reimagine-pyjson-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("readJson takes a diffusers config with -Infinity; a real syntax error does not blame the download alone", () => {
    writeFileSync(join(dir, "ok.json"), '{\n  "_class_name": "DPMSolverMultistepScheduler",\n  "lambda_min_clipped": -Infinity\n}\n');
    expect(readJson(join(dir, "ok.json"), "scheduler config").lambda_min_clipped).toBe(-Infinity);
    writeFileSync(join(dir, "bad.json"), '{"a": 1,,}');
    expect(() => readJson(join(dir, "bad.json"), "UNet config")).toThrow(
      /UNet config at .*bad\.json is not valid JSON \(.*\): fix the file, or download it again if it came from a model repository/,
    );
  });
});

describeWithFixtures("a scheduler_config.json with -Infinity (sd-tiny)", () => {
  const ref = loadReferenceJson();
  const c = ref.pipeline.cases.find((x: any) => x.scheduler.class === "DPMSolverMultistepScheduler");
  const dir = mkdtempSync(join(tmpdir(), "reimagine-pyjson-model-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("loads and runs as diffusers does (the reference DPM++ 2M Karras case, from the model's own scheduler)", async () => {
    const model = join(dir, "model");
    mkdirSync(join(model, "scheduler"), { recursive: true });
    for (const part of ["model_index.json", "unet", "vae", "text_encoder", "tokenizer"]) symlinkSync(fixture("sd-tiny", "model", part), join(model, part));
    // as diffusers' save_pretrained writes it: json.dumps(indent=2, sort_keys=True) -> bare -Infinity
    const text = JSON.stringify(c.scheduler.config, Object.keys(c.scheduler.config).sort(), 2).replace('"-Infinity"', "-Infinity");
    expect(text).toContain('"lambda_min_clipped": -Infinity');
    expect(() => JSON.parse(text)).toThrow(); // the case JSON.parse alone cannot read
    writeFileSync(join(model, "scheduler", "scheduler_config.json"), `${text}\n`);

    const pipe = await loadPipeline(model, { cacheDir: join(dir, "cache"), threads: 1 });
    try {
      expect(pipe.model.schedulerConfig.lambda_min_clipped).toBe(-Infinity);
      const { sampler: _ours, ...settings } = referenceRunSettings(c); // the model's own scheduler, not a --sampler
      const r = await pipe.run({ ...settings, image: await loadImage(fixture("sd-tiny", "reference", c.inputs.image)) });
      expect(maxAbsDiff(r.latents!, referenceTensor(c.final_latents).data)).toBeLessThan(ref.tolerances["pipeline.final_latents"].atol);
      const img = referenceTensor(c.image);
      const [, H, W] = img.shape;
      expect(maxAbsDiff(tensorToFloatHWC(r.decoded!, W, H, 0), img.data)).toBeLessThan(ref.tolerances["pipeline.image"].atol);
    } finally {
      await pipe.model.release();
    }
  });
});
