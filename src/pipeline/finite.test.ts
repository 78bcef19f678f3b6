// NaN / Inf never becomes a black "success": literal checks, then sd-tiny with a NaN weight in the
// UNet, the VAE decoder or the VAE encoder fails with one line naming that component, in the library
// and through the CLI (exit 1, no file written).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { capture } from "../../test/capture.js";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { nanModel } from "../../test/nan-model.js";
import { useTempCache } from "../../test/temp-cache.js";
import { main } from "../cli/main.js";
import { ReimagineError } from "../errors.js";
import { checkFinite, firstNonFinite } from "./finite.js";
import { loadPipeline } from "./load.js";

describe("checkFinite", () => {
  it("finds NaN and both infinities, passes finite data (zeros, extremes)", () => {
    expect(firstNonFinite(new Float32Array([0, -0, 3.4e38, -3.4e38, 1e-45]))).toBe(-1);
    expect(firstNonFinite(new Float32Array([1, 2, NaN, 4]))).toBe(2);
    expect(firstNonFinite(new Float32Array([Infinity]))).toBe(0);
    expect(firstNonFinite(new Float32Array([1, -Infinity]))).toBe(1);
    expect(firstNonFinite(new Float32Array(0))).toBe(-1);
  });

  it("throws one line naming the component, the count and the likely cause", () => {
    expect(() => checkFinite(new Float32Array([1, NaN, Infinity, 2]), "UNet", "step 3 of 10")).toThrow(
      /^the UNet produced 2 of 4 values that are NaN or infinite \(step 3 of 10\), so the image would be black: the UNet weights likely contain NaN or Inf/,
    );
    try {
      checkFinite(new Float32Array([NaN]), "VAE decoder");
    } catch (e) {
      expect(e).toBeInstanceOf(ReimagineError);
      expect((e as ReimagineError).code).toBe("non_finite");
      expect((e as Error).message).not.toContain("\n");
    }
  });
});

describeWithFixtures("a model with NaN weights (sd-tiny)", () => {
  const dir = useTempCache("reimagine-nan-");
  const input = fixture("sd-tiny", "reference", "input.png");

  it.each([
    ["unet", "conv_out.bias", /^the UNet produced \d+ of \d+ values that are NaN or infinite \(step 1 of \d+\)/],
    ["vae", "decoder.conv_out.bias", /^the VAE decoder produced \d+ of \d+ values that are NaN or infinite, so the image would be black/],
    ["vae", "encoder.conv_out.bias", /^the VAE encoder produced/],
  ] as const)("%s %s -> the library throws naming the component", async (component, key, msg) => {
    const model = nanModel(join(dir, `${component}-${key}`), component, key);
    const pipe = await loadPipeline(model, { cacheDir: join(dir, "cache"), threads: 1 });
    try {
      await expect(pipe.run({ image: input, prompt: "a cat", strength: 0.5, steps: 8, guidanceScale: 7.5, seed: 1 })).rejects.toThrow(msg);
    } finally {
      await pipe.model.release();
    }
  });

  it("the CLI exits 1 with one line and writes no file", async () => {
    const model = nanModel(join(dir, "cli-unet"), "unet", "conv_out.bias");
    const out = join(dir, "out.png");
    const { out: o, io } = capture();
    const code = await main([input, "--model", model, "-p", "a cat", "--steps", "4", "--strength", "0.5", "--seed", "1", "-o", out, "--threads", "1"], io);
    expect(code).toBe(1);
    expect(o.stderr).toMatch(/^reimagine: the UNet produced \d+ of \d+ values that are NaN or infinite \(step 1 of \d+\)[^\n]*\n$/);
    expect(existsSync(out)).toBe(false);
    expect(o.stdout).toBe("");
  });
});
