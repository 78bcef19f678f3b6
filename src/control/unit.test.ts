// ControlNet units: defaults and refusals, the guidance window (controlnet_keep), the control image a unit reads (the
// same function the pipeline and the front ends call), and the catalog of a ControlNet folder.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { RGBImage } from "../image.js";
import { defaultControlNetDir, listControlNets, resolveControlNetRef } from "./catalog.js";
import { controlCond, controlNetKeep, resolveUnit, unitControlImage, withControlScale } from "./unit.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-cn-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("ControlNet units", () => {
  it("fill diffusers' defaults", () => {
    expect(resolveUnit({ model: "cn" }, 0)).toEqual({
      model: "cn",
      image: undefined,
      preprocessor: "none",
      preprocessorOptions: undefined,
      scale: 1,
      start: 0,
      end: 1,
      guessMode: false,
      resizeMode: "just-resize",
    });
  });

  it("refuse bad fields in one line naming controlnets[i].field", () => {
    const bad: [object, RegExp][] = [
      [{}, /^controlnets\[2\]\.model is missing/],
      [{ model: "cn", scale: Number.NaN }, /^controlnets\[2\]\.scale must be a number >= 0/],
      [{ model: "cn", start: 1.5 }, /^controlnets\[2\]\.start must be between 0 and 1/],
      [{ model: "cn", start: 0.5, end: 0.5 }, /^controlnets\[2\]\.start \(0\.5\) must be below end \(0\.5\)/],
      [{ model: "cn", resizeMode: "stretch" }, /^controlnets\[2\]\.resizeMode must be one of just-resize, crop-and-resize, resize-and-fill/],
      [{ model: "cn", preprocessor: "openpose" }, /^controlnets\[2\]\.preprocessor: unknown preprocessor 'openpose'/],
    ];
    for (const [u, re] of bad) expect(() => resolveUnit(u as never, 2)).toThrow(re);
  });

  it("keep is diffusers' 1 - (i / n < start or (i + 1) / n > end) over the steps after strength truncation", () => {
    const keeps = (n: number, s: number, e: number) => Array.from({ length: n }, (_, i) => controlNetKeep(i, n, s, e));
    expect(keeps(7, 0, 0.5)).toEqual([1, 1, 1, 0, 0, 0, 0]); // the fixture's Euler a window case
    expect(keeps(4, 0.25, 1)).toEqual([0, 1, 1, 1]);
    expect(keeps(3, 0, 1)).toEqual([1, 1, 1]);
  });

  it("a scale sweep sets every unit's scale; controlnet_cond repeats one image per row", () => {
    expect(withControlScale([{ model: "a", scale: 1 }, { model: "b" }], 0.4)).toEqual([
      { model: "a", scale: 0.4 },
      { model: "b", scale: 0.4 },
    ]);
    const img: RGBImage = { width: 2, height: 1, data: Uint8Array.from([255, 0, 51, 0, 255, 102]) };
    const c = controlCond(img, 2);
    expect(c.dims).toEqual([2, 3, 1, 2]);
    const one = [1, 0, 0, 1, 0.2, 0.4].map(Math.fround);
    expect([...c.data]).toEqual([...one, ...one]);
  });

  it("reads the run's input (fitted as the run fits it) unless it has its own image, then preprocesses", async () => {
    // 4x2 input: a dark left half on white
    const input: RGBImage = { width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => (Math.floor(i / 3) % 4 < 2 ? 0 : 255)) };
    const scribble = resolveUnit({ model: "cn", preprocessor: "scribble", preprocessorOptions: { sigma: 0 } }, 0);
    const map = await unitControlImage(scribble, { input, width: 4, height: 2 });
    expect([...map.data].filter((_, i) => i % 3 === 0)).toEqual([255, 255, 0, 0, 255, 255, 0, 0]);
    const own: RGBImage = { width: 2, height: 2, data: new Uint8Array(12).fill(255) };
    const inverted = await unitControlImage(resolveUnit({ model: "cn", image: own, preprocessor: "invert" }, 0), { input, width: 4, height: 2 });
    expect([inverted.width, inverted.height]).toEqual([4, 2]);
    expect(inverted.data.every((v) => v === 0)).toBe(true);
    await expect(unitControlImage(scribble, { width: 4, height: 2 })).rejects.toThrow(/needs a control image when the run's input is latents/);
  });
});

describe("ControlNet catalog", () => {
  const dir = join(tmp, "controlnet");
  mkdirSync(join(dir, "scribble-folder"), { recursive: true });
  writeFileSync(join(dir, "scribble-folder", "config.json"), "{}");
  writeFileSync(join(dir, "control_v11p_sd15_canny.safetensors"), "");
  writeFileSync(join(dir, "old.pth"), "");
  mkdirSync(join(dir, "empty-folder"));

  it("lists .safetensors files and ControlNet folders by name, not pickle files", () => {
    expect(listControlNets(dir).map((e) => e.name)).toEqual(["control_v11p_sd15_canny", "scribble-folder"]);
    expect(listControlNets(join(tmp, "absent"))).toEqual([]);
  });

  it("resolves names (with A1111's [hash]), paths and repo ids; refuses pickle files and unknown names", () => {
    expect(resolveControlNetRef("control_v11p_sd15_canny [d14c016b]", dir)).toBe(join(dir, "control_v11p_sd15_canny.safetensors"));
    expect(resolveControlNetRef("scribble-folder", dir)).toBe(join(dir, "scribble-folder"));
    expect(resolveControlNetRef(join(dir, "scribble-folder"), undefined)).toBe(join(dir, "scribble-folder"));
    expect(resolveControlNetRef("lllyasviel/control_v11p_sd15_scribble", dir)).toBe("lllyasviel/control_v11p_sd15_scribble");
    expect(() => resolveControlNetRef(join(dir, "old.pth"), dir)).toThrow(/pickle files .* are refused/);
    expect(() => resolveControlNetRef("depth", dir)).toThrow(
      /ControlNet 'depth' not found: .* \(.*controlnet has: control_v11p_sd15_canny, scribble-folder\)$/,
    );
  });

  it("defaults to controlnet/ beside a local model", () => {
    writeFileSync(join(tmp, "model.safetensors"), "");
    expect(defaultControlNetDir(join(tmp, "model.safetensors"))).toBe(dir);
    expect(defaultControlNetDir("stabilityai/sd-turbo")).toBeUndefined();
  });
});
