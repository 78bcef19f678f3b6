// The CLI's ControlNet flags: parsing and refusals (no model), then on the sd-tiny-controlnet fixture through the whole
// CLI (model in a child process, PNG written): every pipeline case of the diffusers references (within 1/255) through
// the CLI (sketch-to-image at strength 1, the --control form, separate flags with a guidance window and CFG off, and
// the scale sweep's 1.0 image), the ControlNet N metadata and `--from` re-running it, --preview-control, and a ControlNet
// scale sweep on one contact sheet.
import { copyFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../../test/cli.js";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceSampler, referenceTensor } from "../../test/fixtures.js";
import { useTempCache } from "../../test/temp-cache.js";
import { resolveUnit, unitControlImage } from "../control/unit.js";
import { loadImage, readImageParameters } from "../image.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { parseGenerateArgs } from "./args.js";
import { parseControlSpec } from "./args-control.js";

const flags = (...args: string[]) => parseGenerateArgs(["in.png", ...args]).flags;

describe("ControlNet flags", () => {
  it("--controlnet alone conditions on the input with scribble; --control-image switches the default to none", () => {
    expect(flags("--controlnet", "cn", "--control-scale", "0.8").control).toEqual({
      units: [
        {
          model: "cn",
          image: undefined,
          scale: 0.8,
          start: undefined,
          end: undefined,
          guessMode: false,
          preprocessorOptions: undefined,
          preprocessor: "scribble",
        },
      ],
      sweep: undefined,
      preview: false,
      preprocessor: undefined,
      cannyThresholds: undefined,
      dir: undefined,
    });
    expect(flags("--controlnet", "cn", "--control-image", "map.png").control!.units[0]).toMatchObject({ image: "map.png", preprocessor: "none" });
    expect(flags("--controlnet", "cn", "--preprocess", "canny", "--canny-low", "50", "--canny-high", "150", "--guess-mode").control!.units[0]).toMatchObject({
      preprocessor: "canny",
      preprocessorOptions: { lowThreshold: 50, highThreshold: 150 },
      guessMode: true,
    });
    expect(flags("--controlnet", "cn", "--control-scale", "0.4,0.7,1").control!.sweep).toEqual([0.4, 0.7, 1]);
    expect(flags("--prompt", "x").control).toBeUndefined();
  });

  it("--control FILE[:MODEL[:SCALE[:START:END]]] is repeatable; MODEL defaults to --controlnet", () => {
    expect(parseControlSpec("a.png:cn:0.8:0.1:0.6")).toEqual({ file: "a.png", model: "cn", scale: 0.8, start: 0.1, end: 0.6 });
    expect(parseControlSpec("a.png")).toEqual({ file: "a.png", model: undefined, scale: undefined, start: undefined, end: undefined });
    const c = flags("--control", "a.png:one:0.5", "--control", "b.png", "--controlnet", "two", "--control-end", "0.8").control!;
    expect(c.units.map((u) => [u.image, u.model, u.scale, u.end, u.preprocessor])).toEqual([
      ["a.png", "one", 0.5, 0.8, "none"],
      ["b.png", "two", undefined, 0.8, "none"],
    ]);
  });

  it("refuses what it cannot do, naming the flag and the fix", () => {
    const bad: [string[], RegExp][] = [
      [["--control-scale", "0.5"], /^--control-scale needs a ControlNet: add --controlnet MODEL/],
      [["--controlnet", "cn", "--preprocess", "depth"], /^--preprocess must be one of none, invert, scribble, canny \(got 'depth'\)/],
      [["--controlnet", "cn", "--control-scale", "-1"], /--control-scale expects a ControlNet scale >= 0/],
      [["--controlnet", "cn", "--control-start", "0.7", "--control-end", "0.2"], /start \(0\.7\) must be below its end \(0\.2\)/],
      [["--control", "a.png"], /--control a\.png names no ControlNet/],
      [["--control", "a.png:cn:1:0.5"], /--control FILE\[:MODEL\[:SCALE\[:START:END\]\]\] expects/],
      [["--control", "a.png:cn", "--control-image", "b.png"], /--control-image goes with --controlnet alone/],
      [["--controlnet", "cn", "--canny-low", "10"], /add --preprocess canny/],
      [["--controlnet", "cn", "--control-scale", "0.5,0.5"], /lists a value twice/],
    ];
    for (const [args, re] of bad) expect(() => flags(...args), args.join(" ")).toThrow(re);
  });
});

describeWithFixtures(
  "reimagine <input> with ControlNets (sd-tiny-controlnet)",
  () => {
    const SET = "sd-tiny-controlnet";
    const dir = useTempCache("reimagine-cli-cn-");
    const R = loadReferenceJson(SET);
    const model = fixture(SET, "model");
    const cn = fixture(SET, "model", "controlnet");
    const sketch = join(dir, "sketch.png");
    copyFileSync(fixture(SET, "reference", "control.png"), sketch);
    const settings = (c: any) => {
      const i = c.inputs;
      return [
        "-p",
        i.prompt,
        "-n",
        i.negative_prompt,
        "--steps",
        String(i.num_inference_steps),
        "-g",
        String(i.guidance_scale),
        "--seed",
        String(i.generator.seed),
        "-q",
      ];
    };
    /** The written PNG within 1/255 of the reference image (float NHWC in [0, 1]). */
    const expectImage = async (path: string, c: any) => {
      const img = await loadImage(readFileSync(path));
      expect(
        maxAbsDiff(
          Array.from(img.data, (v) => v / 255),
          referenceTensor(c.image, SET).data,
        ),
      ).toBeLessThanOrEqual(1 / 255 + 1e-6);
    };

    it("sketch-to-image: --controlnet on the input picture, strength 1 by default, equals diffusers", async () => {
      const c = R.pipeline.cases.find((x: any) => x.id.endsWith("sketch_to_image"));
      const out = join(dir, "sketch-out.png");
      const { stdout } = await runCli([sketch, "--model", model, "--controlnet", cn, "--preprocess", "none", ...settings(c), "-o", out, "--json"]);
      expect(JSON.parse(stdout)).toMatchObject({
        strength: 1,
        controlnets: [{ model: "controlnet", preprocessor: "none", scale: 1, start: 0, end: 1, guessMode: false }],
      });
      await expectImage(out, c);
      const p = parseInfotext((await readImageParameters(out))!);
      expect(p.denoisingStrength).toBe(1);
      expect(p.pairs.get("ControlNet 0")).toBe(
        "Module: none, Model: controlnet, Weight: 1.0, Resize Mode: Just Resize, Processor Res: 64, Threshold A: -1, Threshold B: -1, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced",
      );

      // --from re-runs it: the ControlNet found by its name in --controlnet-dir, same bytes
      const again = join(dir, "sketch-again.png");
      await runCli([sketch, "--from", out, "--model", model, "--controlnet-dir", model, "-q", "-o", again]);
      expect(readFileSync(again).equals(readFileSync(out))).toBe(true);
      // without a place to find it, --from names what is missing
      const e = await runCli([sketch, "--from", out, "--model", model, "-o", join(dir, "x.png")], 1);
      expect(e.stderr).toMatch(/ControlNet 'controlnet' not found/);
    });

    it("--control FILE:MODEL:SCALE with guess mode and another sampler (DDIM, scale 0.6) equals diffusers", async () => {
      for (const id of ["cn_ddim_cfg7.5_s0.6_scale0.6", "cn_pndm_default_cfg7.5_s0.8_scale1.0_guess_mode"]) {
        const c = R.pipeline.cases.find((x: any) => x.id === id);
        const i = c.inputs;
        const out = join(dir, `${id}.png`);
        const extra = [...(c.scheduler.class === "DDIMScheduler" ? ["--sampler", "ddim"] : []), ...(i.guess_mode ? ["--guess-mode"] : [])];
        const spec = `${fixture(SET, "reference", i.control_image)}:${cn}:${i.controlnet_conditioning_scale}`;
        await runCli([
          fixture(SET, "reference", i.image),
          "--model",
          model,
          "--control",
          spec,
          "--strength",
          String(i.strength),
          ...extra,
          ...settings(c),
          "-o",
          out,
        ]);
        await expectImage(out, c);
      }
    });

    it("separate flags: a guidance window with Euler a (--control-end 0.5) and CFG off (-g 1, DDIM) equal diffusers", async () => {
      for (const id of ["cn_euler_a_cfg7.5_s0.75_scale1.0_window0.0-0.5", "cn_ddim_nocfg_gs1.0_s0.7_scale1.0"]) {
        const c = R.pipeline.cases.find((x: any) => x.id === id);
        const i = c.inputs;
        const out = join(dir, `${id}.png`);
        const control = [
          "--controlnet",
          cn,
          "--control-image",
          fixture(SET, "reference", i.control_image),
          "--control-scale",
          String(i.controlnet_conditioning_scale),
        ];
        const window = ["--control-start", String(i.control_guidance_start), "--control-end", String(i.control_guidance_end)];
        await runCli([
          fixture(SET, "reference", i.image),
          "--model",
          model,
          ...control,
          ...window,
          "--strength",
          String(i.strength),
          "--sampler",
          referenceSampler(c)!,
          ...settings(c),
          "-o",
          out,
        ]);
        await expectImage(out, c);
      }
    });

    it("--preview-control writes the preprocessed control image without loading a model", async () => {
      const out = join(dir, "preview.png");
      const { stdout } = await runCli([sketch, "--preprocess", "invert", "--preview-control", "-o", out]);
      const path = join(dir, "preview-control.png");
      expect(stdout.trim()).toBe(path);
      const want = await unitControlImage(resolveUnit({ model: "-", preprocessor: "invert" }, 0), { input: await loadImage(sketch), width: 64, height: 64 });
      expect(Buffer.from((await loadImage(path)).data).equals(Buffer.from(want.data))).toBe(true);
      expect(existsSync(out)).toBe(false);
      await runCli([
        sketch,
        "--control",
        `${sketch}:${cn}`,
        "--control",
        `${sketch}:${cn}:0.5`,
        "--preview-control",
        "--width",
        "32",
        "--height",
        "32",
        "-o",
        join(dir, "two.png"),
      ]);
      expect((await loadImage(join(dir, "two-control-1.png"))).width).toBe(32);
      expect((await loadImage(join(dir, "two-control-2.png"))).height).toBe(32);
    });

    it("a ControlNet scale sweep: one image per scale (same seed) and a contact sheet labelled with scale and SSIM", async () => {
      const c = R.pipeline.cases[0];
      const i = c.inputs;
      const out = join(dir, "sweep.png");
      const args = [fixture(SET, "reference", i.image), "--model", model, "--controlnet", cn, "--control-image", fixture(SET, "reference", i.control_image)];
      const { stdout } = await runCli([
        ...args,
        "--control-scale",
        "0.5,1",
        "--strength",
        String(i.strength),
        ...settings(c).filter((x) => x !== "-q"),
        "-o",
        out,
      ]);
      expect(stdout).toMatch(/sweep-c0\.50\.png {2}strength 0\.80 · control 0\.50 · SSIM \d\.\d\d/);
      await expectImage(join(dir, "sweep-c1.00.png"), c);
      expect(existsSync(join(dir, "sweep-sweep.png"))).toBe(true);
      expect(parseInfotext((await readImageParameters(join(dir, "sweep-c0.50.png")))!).pairs.get("ControlNet 0")).toMatch(/Weight: 0\.5,/);
    });

    it("refuses a .pth ControlNet and a ControlNet of another architecture in one line", async () => {
      const pth = await runCli([sketch, "--model", model, "--controlnet", join(dir, "control_sd15_scribble.pth"), "-p", "x", "-o", join(dir, "p.png")], 1);
      expect(pth.stderr).toMatch(/^reimagine: .*control_sd15_scribble\.pth: pickle files .* are refused/);
      const other = await runCli([sketch, "--model", fixture("sdxl-tiny", "model"), "--controlnet", cn, "-p", "x", "-o", join(dir, "o.png")], 1);
      expect(other.stderr).toMatch(/^reimagine: ControlNet 'controlnet' is for .* but the model '.*' is .*\n$/);
    });
  },
  "sd-tiny-controlnet",
);
