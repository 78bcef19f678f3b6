// CLI option parsing and output naming, without a model: values, one-line usage errors, file names.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { listSamplers } from "../schedulers/index.js";
import { mainHelp, MAX_PROMPT_FILE_BYTES, parseGenerateArgs, parseSeed, parseStrengths } from "./args.js";
import { batchOutputs, listBatchInputs, promptFor } from "./batch.js";
import { checkOutputs, outputFormat, outputPaths } from "./common.js";
import { main } from "./main.js";

const flagsOf = (...args: string[]) => parseGenerateArgs(["in.png", ...args]).flags;
const errorOf = (f: () => unknown): ReimagineError => {
  try {
    f();
  } catch (e) {
    return e as ReimagineError;
  }
  throw new Error("expected an error");
};

const dir = mkdtempSync(join(tmpdir(), "reimagine-args-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("parseGenerateArgs", () => {
  it("reads every option, leaving absent ones undefined for model defaults", () => {
    const f = flagsOf(
      "-p",
      "a cat",
      "--negative-prompt",
      "blurry",
      "--strength",
      "0.3",
      "--steps",
      "20",
      "--guidance-scale",
      "5",
      "--seed",
      "42",
      "--sampler",
      "Euler a",
      "--clip-skip",
      "1",
      "--num-images",
      "2",
      "--width",
      "512",
      "--height",
      "256",
      "--resize-mode",
      "crop-and-resize",
      "--format",
      "jpg",
      "--threads",
      "4",
      "--provider",
      "cpu",
      "--max-pixels",
      "1000000",
      "--overwrite",
      "--json",
    );
    expect(f).toMatchObject({
      prompt: "a cat",
      negativePrompt: "blurry",
      strengths: [0.3],
      steps: 20,
      guidanceScale: 5,
      seed: 42,
      sampler: "Euler a",
      clipSkip: 1,
      numImages: 2,
      width: 512,
      height: 256,
      resizeMode: "crop-and-resize",
      format: "jpeg",
      threads: 4,
      provider: "cpu",
      maxPixels: 1000000,
      overwrite: true,
      json: true,
      quiet: false,
    });
    const d = flagsOf("-p", "x");
    expect([d.steps, d.guidanceScale, d.strengths, d.seed, d.sampler, d.model]).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
    expect(d.maxPixels).toBe(64_000_000);
  });

  it("parses strength lists and seeds", () => {
    expect(parseStrengths("0.2, 0.4,0.6")).toEqual([0.2, 0.4, 0.6]);
    expect(parseStrengths("0")).toEqual([0]);
    expect(parseSeed("-1")).toBeUndefined();
    expect(flagsOf("--seed", "-1", "-p", "x").seed).toBeUndefined(); // not read as an option
    expect(flagsOf("--seed", "7", "-p", "x").seed).toBe(7);
    expect(parseSeed("18446744073709551615")).toBe(18446744073709551615n);
    expect(parseSeed("9007199254740993")).toBe(9007199254740993n);
    expect(() => parseSeed("1.5")).toThrow(/whole number/);
    expect(() => parseSeed(String(2n ** 64n))).toThrow(/below 2\^64/);
  });

  it.each([
    [["--strength", "1.5"], /strength must be between 0 and 1 \(got 1\.5\).*0\.2-0\.4/],
    [["--strength", "-0.2"], /between 0 and 1/],
    [["--strength", "0.2,,0.4"], /--strength expects/],
    [["--strength", "0.05", "--steps", "10"], /10 x 0\.05 leaves no denoising step: raise --strength to at least 0\.1 or --steps to at least 20/],
    [["--steps", "0"], /--steps expects a whole number from 1 to 1000/],
    [["--steps", "2.5"], /--steps expects/],
    [["--sampler", "eulerr"], /unknown sampler 'eulerr'; use one of: ddim/],
    [["--promt", "x"], /unknown option '--promt': did you mean --prompt\?/],
    [["--bogus"], /unknown option '--bogus': see reimagine --help/],
    [["--prompt"], /option --prompt needs a value/],
    [["--format", "gif"], /--format must be one of png, jpeg, webp/],
    [["--resize-mode", "stretch"], /--resize-mode must be one of/],
    [["--prediction-type", "x"], /--prediction-type must be one of epsilon, v_prediction/],
    [["--num-images", "100"], /--num-images expects a whole number from 1 to 64/],
  ])("refuses %j with one line", (args, msg) => {
    const e = errorOf(() => flagsOf(...args));
    expect(e).toBeInstanceOf(ReimagineError);
    expect(e.message).toMatch(msg);
    expect(e.message).not.toContain("\n");
  });

  it("takes values that start with '-' after short and long options as they are (no '=' added)", () => {
    expect(flagsOf("-p", "-1").prompt).toBe("-1");
    expect(flagsOf("-p", "x", "-o", "-1.png").output).toBe("-1.png");
    expect(errorOf(() => flagsOf("-p", "x", "-s", "-0.5")).message).toMatch(/strength must be between 0 and 1 \(got -0\.5\)/);
    expect(flagsOf("-p", "x", "-s", "-.5", "--strength", "0.5").strengths).toEqual([0.5]);
    expect(flagsOf("-p", "x", "-g", "-0").guidanceScale).toBe(-0);
    expect(flagsOf("-n", "-2", "-p", "x").negativePrompt).toBe("-2");
    expect(flagsOf("--prompt=-1").prompt).toBe("-1");
    expect(flagsOf("-p-1").prompt).toBe("-1");
  });

  it.each([
    [["-p", "--seed", "3"], /option -p is followed by '--seed', which looks like an option.*--prompt=--seed/],
    [["-p", "-q"], /option -p is followed by '-q'/],
    [["-p=-1"], /'-p=-1' would set --prompt to '=-1': write -p -1 or --prompt=-1/],
    [["-o=x.png", "-p", "x"], /'-o=x\.png' would set --output to '=x\.png'/],
    [["-p", "x", "--quiet=yes"], /option --quiet takes no value/],
    [["-p", "x", "-z"], /unknown option '-z'/],
    [["--steps", "1e9", "-p", "x"], /--steps expects a whole number from 1 to 1000 \(got '1e9'\)/],
    [["-p", "x", "--width", "100000", "--height", "100000"], /--width\/--height ask for 100000x100000 = 10000000000 pixels, over --max-pixels 64000000/],
  ])("refuses %j clearly", (args, msg) => {
    const e = errorOf(() => flagsOf(...args));
    expect(e).toBeInstanceOf(ReimagineError);
    expect(e.message).toMatch(msg);
  });

  it("reads long prompts from --prompt-file or -p @FILE (64 kB), and @@ keeps a literal @", () => {
    const long = "a castle, ".repeat(6554); // 65,540 characters
    const file = join(dir, "prompt.txt");
    writeFileSync(file, `\uFEFF${long}\n`);
    expect(flagsOf("--prompt-file", file).prompt).toBe(long);
    expect(flagsOf("-p", `@${file}`).prompt).toBe(long);
    expect(flagsOf("-n", `@${file}`, "-p", "x").negativePrompt).toBe(long);
    expect(flagsOf("-p", "@@home").prompt).toBe("@home");
    expect(errorOf(() => flagsOf("-p", "x", "--prompt-file", file)).message).toMatch(/give the prompt once/);
    expect(errorOf(() => flagsOf("-p", `@${join(dir, "missing.txt")}`)).message).toMatch(/--prompt @FILE '.*missing\.txt': file not found/);
    writeFileSync(join(dir, "huge.txt"), Buffer.alloc(MAX_PROMPT_FILE_BYTES + 1, 97));
    expect(errorOf(() => flagsOf("--prompt-file", join(dir, "huge.txt"))).message).toMatch(/is 1048577 bytes; the limit for a prompt is 1048576 bytes/);
  });

  it("reads the speed options and refuses unknown modes", () => {
    const f = parseGenerateArgs(["in.png", "-p", "x", "--quantize", "int8", "--tiny-vae", "madebyollin/taesd", "--vae-tiling", "off"]).flags;
    expect([f.quantize, f.tinyVae, f.vaeTiling]).toEqual(["int8", "madebyollin/taesd", "off"]);
    expect(() => parseGenerateArgs(["in.png", "-p", "x", "--quantize", "int4"])).toThrow(/--quantize must be one of int8, int8-conv \(got 'int4'\)/);
    expect(parseGenerateArgs(["in.png", "-p", "x", "--quantize", "int8-conv"]).flags.quantize).toBe("int8-conv");
    expect(() => parseGenerateArgs(["in.png", "-p", "x", "--vae-tiling", "maybe"])).toThrow(/--vae-tiling must be one of auto, on, off/);
  });

  it("accepts sampler names of every style", () => {
    for (const s of listSamplers()) {
      for (const name of [s.name, s.a1111Name, s.className]) expect(flagsOf("--sampler", name).sampler).toBe(name);
    }
  });
});

describe("output names", () => {
  const f = (...a: string[]) => flagsOf("-p", "x", ...a);
  it("defaults beside the input, numbered for several images, -sNN and -sweep for sweeps", () => {
    expect(outputPaths("dir/photo.jpg", f(), "png", 1)).toEqual({ images: ["dir/photo-reimagined.png"] });
    expect(outputPaths("dir/photo.jpg", f(), "webp", 2).images).toEqual(["dir/photo-reimagined-1.webp", "dir/photo-reimagined-2.webp"]);
    expect(outputPaths("dir/photo.jpg", f("-o", "o/x.png"), "png", 2).images).toEqual(["o/x-1.png", "o/x-2.png"]);
    expect(outputPaths("dir/photo.jpg", f(), "png", 1, [0.2, 0.75])).toEqual({
      images: ["dir/photo-s0.20.png", "dir/photo-s0.75.png"],
      sheet: "dir/photo-sweep.png",
    });
    expect(outputPaths("photo.png", f("-o", "out.jpg"), "jpeg", 1, [0.5, 1]).sheet).toBe("out-sweep.jpg");
  });

  it("takes the format from --format or --output and refuses a contradiction", () => {
    expect(outputFormat(f())).toBe("png");
    expect(outputFormat(f("-o", "a.JPG"))).toBe("jpeg");
    expect(outputFormat(f("--format", "webp"))).toBe("webp");
    expect(outputFormat(f("-o", "a.out", "--format", "png"))).toBe("png");
    expect(() => outputFormat(f("-o", "a.jpg", "--format", "png"))).toThrow(/make them agree/);
    expect(() => outputFormat(f("-o", "a.bmp"))).toThrow(/\.png, \.jpg or \.webp/);
  });

  it("refuses existing outputs and missing folders before any work", () => {
    writeFileSync(join(dir, "taken.png"), "x");
    expect(() => checkOutputs([join(dir, "free.png"), join(dir, "taken.png")], false)).toThrow(/already exists: pass --overwrite/);
    expect(() => checkOutputs([join(dir, "taken.png")], true)).not.toThrow();
    expect(() => checkOutputs([join(dir, "nope", "a.png")], true)).toThrow(/output folder .* does not exist/);
  });

  it("lists batch inputs sorted, skips other files, names outputs and reads sidecar prompts", () => {
    for (const n of ["b.png", "a.JPG", "a.webp", "c.tiff", "notes.txt", ".hidden.png", "a.txt", "d.gif", "e.avif"]) writeFileSync(join(dir, n), "x");
    const names = listBatchInputs(dir).filter((n) => n !== "taken.png");
    expect(names).toEqual(["a.JPG", "a.webp", "b.png", "c.tiff", "d.gif", "e.avif"]);
    writeFileSync(join(dir, "a.txt"), "  a sidecar prompt\n");
    const outs = batchOutputs(names, "out", "png", 1);
    expect(outs.get("a.JPG")).toEqual([join("out", "a-jpg.png")]); // two inputs share the stem "a"
    expect(outs.get("b.png")).toEqual([join("out", "b.png")]);
    expect(batchOutputs(["b.png"], "out", "jpeg", 2).get("b.png")).toEqual([join("out", "b-1.jpg"), join("out", "b-2.jpg")]);
    expect(promptFor(dir, "a.JPG", "default")).toBe("a sidecar prompt");
    expect(promptFor(dir, "b.png", "default")).toBe("default");
    expect(() => promptFor(dir, "b.png", undefined)).toThrow(/add b\.txt beside the image or pass --prompt/);
  });
});

describe("main", () => {
  const capture = () => {
    const out = { stdout: "", stderr: "" };
    return { out, io: { stdout: { write: (s: string) => (out.stdout += s) }, stderr: { write: (s: string) => (out.stderr += s) } } };
  };

  it("--version prints package.json's version", async () => {
    const { out, io } = capture();
    expect(await main(["--version"], io)).toBe(0);
    expect(out.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("--help explains strength ranges, sketches and lists samplers with A1111 names", async () => {
    const { out, io } = capture();
    expect(await main(["--help"], io)).toBe(0);
    expect(out.stdout).toMatch(/0\.2-0\.4 +subtle/);
    expect(out.stdout).toMatch(/0\.5-0\.7 +restyle/);
    expect(out.stdout).toMatch(/0\.8-1\.0 +reimagine/);
    expect(out.stdout).toMatch(/Sketch/);
    for (const s of listSamplers()) expect(out.stdout).toContain(`"${s.a1111Name}"`);
    expect(mainHelp("1")).toContain("reimagine batch");
  });

  it("routes `img2img` (alias), `info` and `batch` to their commands", async () => {
    const a = capture();
    expect(await main(["img2img", "/nonexistent/in.png", "-p", "x"], a.io)).toBe(1);
    expect(a.out.stderr).toMatch(/^reimagine: Cannot read image '\/nonexistent\/in\.png': file not found/);
    const b = capture();
    expect(await main(["info", "--help"], b.io)).toBe(0);
    expect(b.out.stdout).toMatch(/^Usage: reimagine info <image>/);
    const c = capture();
    expect(await main(["batch", "--help"], c.io)).toBe(0);
    expect(c.out.stdout).toMatch(/sidecar <name>\.txt/);
  });

  it("usage errors are one line, exit 1; --verbose adds the stack", async () => {
    const a = capture();
    expect(await main(["in.png", "--bogus"], a.io)).toBe(1);
    expect(a.out.stderr).toMatch(/^reimagine: unknown option '--bogus'[^\n]*\n$/);
    const b = capture();
    expect(await main([], b.io)).toBe(1);
    expect(b.out.stderr).toMatch(/^reimagine \d+\.\d+\.\d+: image-to-image[\s\S]*\nUsage:\n/); // no arguments: the usage
    const c = capture();
    expect(await main(["in.png", "--bogus", "--verbose"], c.io)).toBe(1);
    expect(c.out.stderr).toMatch(/\n\s+at /);
    const d = capture();
    expect(await main(["in.png", "--strength", "2", "--json"], d.io)).toBe(1);
    expect(JSON.parse(d.out.stdout)).toMatchObject({ code: "usage" });
  });
});
