// Bad input through `reimagine <input>`: every case is ONE line on stderr naming the fix, a non-zero exit,
// no stack trace and no output file; input/flag problems are refused before the model loads.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, expect, it, vi } from "vitest";
import { fixture, describeWithFixtures } from "../../test/fixtures.js";
import { PipelineWorker } from "../worker/pipeline-worker.js";
import { main } from "./main.js";
import { capture } from "../../test/capture.js";

describeWithFixtures("reimagine: bad input", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bad-"));
  const outDir = join(dir, "out");
  mkdirSync(outDir);
  const saved = { ...process.env };
  process.env.REIMAGINE_CACHE = join(dir, "cache");
  const model = fixture("sd-tiny", "model");
  const input = join(dir, "input.png");
  copyFileSync(fixture("sd-tiny", "reference", "input.png"), input);
  const loads = vi.spyOn(PipelineWorker, "start"); // the model loads in a child process, once per start
  beforeEach(() => {
    loads.mockClear();
  });
  afterAll(() => {
    process.env = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  // a truncated PNG, a text file posing as a PNG
  const bytes = readFileSync(input);
  writeFileSync(join(dir, "truncated.png"), bytes.subarray(0, Math.floor(bytes.length / 2)));
  writeFileSync(join(dir, "text.png"), "hello, not a picture\n");

  // model folders: one without vae/, one whose UNet weights are cut short
  const noVae = join(dir, "no-vae");
  const cut = join(dir, "cut-unet");
  for (const m of [noVae, cut]) {
    mkdirSync(m);
    for (const part of ["model_index.json", "scheduler", "text_encoder", "tokenizer"]) symlinkSync(join(model, part), join(m, part));
  }
  symlinkSync(join(model, "unet"), join(noVae, "unet"));
  symlinkSync(join(model, "vae"), join(cut, "vae"));
  mkdirSync(join(cut, "unet"));
  symlinkSync(join(model, "unet", "config.json"), join(cut, "unet", "config.json"));
  const weights = readFileSync(join(model, "unet", "diffusion_pytorch_model.safetensors"));
  writeFileSync(join(cut, "unet", "diffusion_pytorch_model.safetensors"), weights.subarray(0, Math.floor(weights.length * 0.6)));

  const out = join(outDir, "result.png");
  const ok = ["--model", model, "-p", "a cat", "-o", out, "--steps", "4"];
  const cases: { name: string; args: string[]; msg: RegExp; instant: boolean; env?: Record<string, string> }[] = [
    { name: "missing input file", args: [join(dir, "nope.png"), ...ok], msg: /Cannot read image '.*nope\.png': file not found; check the path/, instant: true },
    { name: "truncated image", args: [join(dir, "truncated.png"), ...ok], msg: /not a supported image or the file is damaged.*use a PNG, JPEG/, instant: true },
    { name: "not an image", args: [join(dir, "text.png"), ...ok], msg: /not a supported image or the file is damaged/, instant: true },
    {
      name: "image over --max-pixels",
      args: [input, ...ok, "--max-pixels", "1000"],
      msg: /too large \(64x64 = 4096 pixels\).*raise --max-pixels/,
      instant: true,
    },
    { name: "strength above 1", args: [input, ...ok, "--strength", "1.5"], msg: /strength must be between 0 and 1/, instant: true },
    { name: "strength below 0", args: [input, ...ok, "--strength", "-0.5"], msg: /strength must be between 0 and 1/, instant: true },
    {
      name: "strength list item outside [0, 1]",
      args: [input, ...ok, "--strength", "0.2,1.2"],
      msg: /strength must be between 0 and 1 \(got 1\.2\)/,
      instant: true,
    },
    { name: "steps x strength < 1", args: [input, ...ok, "--strength", "0.2"], msg: /4 x 0\.2 leaves no denoising step.*--steps to at least 5/, instant: true },
    {
      name: "steps x strength < 1 with model default steps",
      args: [input, "--model", model, "-p", "x", "-o", out, "--strength", "0.01"],
      msg: /30 x 0\.01 leaves no denoising step/,
      instant: false,
    },
    { name: "unknown sampler", args: [input, ...ok, "--sampler", "heun"], msg: /unknown sampler 'heun'; use one of: ddim, pndm/, instant: true },
    { name: "unknown option", args: [input, ...ok, "--strenght", "0.5"], msg: /unknown option '--strenght': did you mean --strength\?/, instant: true },
    { name: "missing prompt", args: [input, "--model", model, "-o", out], msg: /--prompt is required/, instant: true },
    { name: "model folder missing a component", args: [input, ...ok, "--model", noVae], msg: /has no 'vae\/' component/, instant: false },
    { name: "truncated safetensors", args: [input, ...ok, "--model", cut], msg: /safetensors file is truncated or corrupt.*download it again/, instant: false },
    {
      name: "offline with an empty hub cache",
      args: [input, "-p", "x", "-o", out],
      msg: /stabilityai\/sd-turbo@main is not in the Hugging Face cache .*HF_HUB_OFFLINE=1/,
      instant: false,
      env: { HF_HUB_OFFLINE: "1", HF_HUB_CACHE: join(dir, "empty-hub") },
    },
    {
      name: "a width the model cannot make",
      args: [input, ...ok, "--width", "101"],
      msg: /--width 101 is not a multiple of 2 \(this model's VAE factor\): use --width 100 or 102/,
      instant: false,
    },
    { name: "output folder missing", args: [input, ...ok, "-o", join(dir, "no-such-dir", "x.png")], msg: /output folder .* does not exist/, instant: true },
  ];

  for (const c of cases) {
    it(`${c.name}: one line, exit 1, nothing written`, async () => {
      const env = { ...process.env };
      Object.assign(process.env, c.env ?? {});
      if (c.env) mkdirSync(c.env.HF_HUB_CACHE, { recursive: true });
      const { out: o, io } = capture();
      let code: number;
      try {
        code = await main(c.args, io);
      } finally {
        process.env = env;
      }
      expect(code).toBe(1);
      expect(o.stderr).toMatch(/^reimagine: [^\n]+\n$/); // one line, so no stack trace
      expect(o.stderr).toMatch(c.msg);
      expect(o.stdout).toBe("");
      expect(readdirSync(outDir)).toEqual([]);
      if (c.instant) expect(loads).not.toHaveBeenCalled();
    });
  }

  it("an existing output is refused before the model loads and kept; --verbose shows the stack", async () => {
    writeFileSync(out, "precious");
    const { out: o, io } = capture();
    expect(await main([input, ...ok, "--verbose"], io)).toBe(1);
    expect(o.stderr).toMatch(/^reimagine: '.*result\.png' already exists: pass --overwrite to replace it/);
    expect(o.stderr).toMatch(/\n\s+at /); // the stack, only because of --verbose
    expect(loads).not.toHaveBeenCalled();
    expect(readFileSync(out, "utf8")).toBe("precious");
    rmSync(out);
  });
});
