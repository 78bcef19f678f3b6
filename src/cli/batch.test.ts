// `reimagine batch` on the sd-tiny model: one broken input is reported and skipped (exit 2), a rerun
// resumes (done outputs skipped, nothing rewritten), sidecar prompts land in the metadata, one model load.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, expect, it, vi } from "vitest";
import { fixture, describeWithFixtures } from "../../test/fixtures.js";
import { loadImage, readImageParameters } from "../image.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { PipelineWorker } from "../worker/pipeline-worker.js";
import { main } from "./main.js";
import { capture } from "../../test/capture.js";

describeWithFixtures("reimagine batch (sd-tiny)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-batch-"));
  const saved = process.env.REIMAGINE_CACHE;
  process.env.REIMAGINE_CACHE = join(dir, "cache");
  const model = fixture("sd-tiny", "model");
  const inDir = join(dir, "in");
  const outDir = join(dir, "out");
  mkdirSync(inDir);
  const src = fixture("sd-tiny", "reference", "input.png");
  copyFileSync(src, join(inDir, "a.png"));
  writeFileSync(join(inDir, "b.png"), readFileSync(src).subarray(0, 300)); // broken
  copyFileSync(src, join(inDir, "c.png"));
  writeFileSync(join(inDir, "c.txt"), "a sidecar prompt for c\n");
  writeFileSync(join(inDir, "notes.md"), "not an image");
  const loads = vi.spyOn(PipelineWorker, "start"); // the model loads in a child process, once per start
  beforeEach(() => {
    loads.mockClear();
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.REIMAGINE_CACHE;
    else process.env.REIMAGINE_CACHE = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  const args = ["batch", inDir, outDir, "--model", model, "-p", "the default prompt", "--steps", "4", "--strength", "0.5", "--seed", "21"];

  it("writes the good images, reports the broken one and exits 2", async () => {
    const { out, io } = capture();
    expect(await main(args, io)).toBe(2);
    expect(loads).toHaveBeenCalledTimes(1);
    expect(readdirSync(outDir).sort()).toEqual(["a.png", "c.png"]); // no partial or temp files
    expect(out.stdout).toBe(`${join(outDir, "a.png")}\n${join(outDir, "c.png")}\n`);
    expect(out.stderr).toMatch(/^\[1\/3\] a\.png\n/);
    expect(out.stderr).toMatch(/\[2\/3\] b\.png: failed: Cannot read image .*b\.png.*damaged/);
    expect(out.stderr).toMatch(/\[3\/3\] c\.png: done \(seed 21\)/);
    expect(out.stderr).toMatch(/batch: 2 written, 0 already done, 1 failed \(b\.png\)\n$/);
    const a = parseInfotext((await readImageParameters(join(outDir, "a.png")))!);
    const c = parseInfotext((await readImageParameters(join(outDir, "c.png")))!);
    expect(a).toMatchObject({ prompt: "the default prompt", seed: 21, steps: 4, denoisingStrength: 0.5 });
    expect(c.prompt).toBe("a sidecar prompt for c");
    // same seed and input, different prompt -> different pictures
    expect(Buffer.from((await loadImage(join(outDir, "a.png"))).data).equals(Buffer.from((await loadImage(join(outDir, "c.png"))).data))).toBe(false);
  });

  it("a rerun skips what is done and leaves it untouched", async () => {
    const before = statSync(join(outDir, "a.png")).mtimeMs;
    const { out, io } = capture();
    expect(await main(args, io)).toBe(2); // b.png still fails
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(/\[1\/3\] a\.png: already done, skipped/);
    expect(out.stderr).toMatch(/batch: 0 written, 2 already done, 1 failed/);
    expect(loads).not.toHaveBeenCalled(); // only a broken input was left: no model needed
    expect(statSync(join(outDir, "a.png")).mtimeMs).toBe(before);
  });

  it("resumes after an interruption: only the missing output is made, exit 0 once all succeed", async () => {
    rmSync(join(inDir, "b.png"));
    rmSync(join(outDir, "c.png"));
    const { out, io } = capture();
    expect(await main([...args, "--json"], io)).toBe(0);
    const res = JSON.parse(out.stdout);
    expect(res).toMatchObject({ written: [join(outDir, "c.png")], skipped: [join(outDir, "a.png")], failed: [] });
    expect(parseInfotext((await readImageParameters(join(outDir, "c.png")))!).prompt).toBe("a sidecar prompt for c");
  });

  it("refuses bad folder arguments with one line", async () => {
    for (const [a, msg] of [
      [["batch", inDir], /needs two folders/],
      [["batch", join(dir, "nope"), outDir, "-p", "x"], /input folder .* not found/],
      [["batch", inDir, inDir, "-p", "x"], /must differ/],
      [["batch", inDir, outDir, "-p", "x", "--strength", "0.2,0.4"], /batch takes one strength/],
      [["batch", join(dir, "cache"), join(dir, "o2"), "-p", "x"], /no images in/],
    ] as [string[], RegExp][]) {
      const { out, io } = capture();
      expect(await main(a, io)).toBe(1);
      expect(out.stderr).toMatch(/^reimagine: [^\n]+\n$/);
      expect(out.stderr).toMatch(msg);
    }
  });
});
