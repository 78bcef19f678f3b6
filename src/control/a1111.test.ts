// The A1111 ControlNet extension's names (modules, resize and control modes) and its `ControlNet N` infotext: written
// as the extension writes it, read back (ours and the extension's own), refused where we cannot do what it asks.
import { describe, expect, it } from "vitest";
import { formatInfotext, parseInfotext } from "../pipeline/infotext.js";
import { controlNetDisplayName, controlNetInfotext, controlNetsFromInfotext, guessModeFromA1111, preprocessorFromA1111, resizeModeFromA1111 } from "./a1111.js";

describe("A1111 ControlNet names", () => {
  it("maps modules, resize modes (ints, names, aliases) and control modes", () => {
    expect(preprocessorFromA1111("invert (from white bg & black line)")).toBe("invert");
    expect(preprocessorFromA1111("Canny")).toBe("canny");
    expect(preprocessorFromA1111("depth_midas")).toBeUndefined();
    expect([0, 1, 2, 3].map(resizeModeFromA1111)).toEqual(["just-resize", "crop-and-resize", "resize-and-fill", "just-resize"]);
    expect(resizeModeFromA1111("Envelope (Outer Fit)")).toBe("resize-and-fill");
    expect(resizeModeFromA1111("Crop and Resize")).toBe("crop-and-resize");
    expect(resizeModeFromA1111(4)).toBeUndefined();
    expect(resizeModeFromA1111("Stretch")).toBeUndefined();
    expect([0, 1, 2].map(guessModeFromA1111)).toEqual([false, undefined, true]);
    expect(guessModeFromA1111("ControlNet is more important")).toBe(true);
    expect(guessModeFromA1111("Balanced")).toBe(false);
  });

  it("shows a reference as A1111 names models: file or folder name, or a repo id", () => {
    expect(controlNetDisplayName("/m/controlnet/control_v11p_sd15_scribble.safetensors")).toBe("control_v11p_sd15_scribble");
    expect(controlNetDisplayName("lllyasviel/control_v11p_sd15_scribble")).toBe("lllyasviel/control_v11p_sd15_scribble");
    expect(controlNetDisplayName("./controlnet/")).toBe("controlnet");
    expect(controlNetDisplayName("/m/a,b:c.safetensors")).toBe("a_b_c");
  });
});

describe("ControlNet infotext", () => {
  const units = [
    { model: "/m/control_v11p_sd15_scribble.safetensors", preprocessor: "scribble", scale: 0.8 },
    {
      model: "lllyasviel/control_v11p_sd15_canny",
      preprocessor: "canny",
      preprocessorOptions: { lowThreshold: 50, highThreshold: 150 },
      start: 0.1,
      end: 0.6,
      guessMode: true,
      resizeMode: "crop-and-resize" as const,
    },
  ];

  it("writes the extension's fields in its order and format", () => {
    const pairs = controlNetInfotext(units, { width: 768, height: 512 });
    expect(pairs["ControlNet 0"]).toBe(
      "Module: scribble, Model: control_v11p_sd15_scribble, Weight: 0.8, Resize Mode: Just Resize, Processor Res: 512, Threshold A: -1, Threshold B: -1, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced",
    );
    expect(pairs["ControlNet 1"]).toBe(
      "Module: canny, Model: lllyasviel/control_v11p_sd15_canny, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 50, Threshold B: 150, Guidance Start: 0.1, Guidance End: 0.6, Pixel Perfect: True, Control Mode: ControlNet is more important",
    );
  });

  it("round-trips through a whole infotext (values quoted as A1111 quotes them)", () => {
    const text = formatInfotext({
      prompt: "a castle",
      steps: 20,
      sampler: "Euler",
      cfgScale: 7,
      seed: 1,
      width: 768,
      height: 512,
      denoisingStrength: 1,
      extra: controlNetInfotext(units, { width: 768, height: 512 }),
    });
    expect(text).toContain(`ControlNet 0: "Module: scribble, Model: control_v11p_sd15_scribble, Weight: 0.8,`);
    const back = controlNetsFromInfotext(parseInfotext(text).pairs);
    expect(back).toEqual([
      {
        model: "control_v11p_sd15_scribble",
        preprocessor: "scribble",
        preprocessorOptions: undefined,
        scale: 0.8,
        start: 0,
        end: 1,
        guessMode: false,
        resizeMode: "just-resize",
      },
      {
        model: "lllyasviel/control_v11p_sd15_canny",
        preprocessor: "canny",
        preprocessorOptions: { lowThreshold: 50, highThreshold: 150 },
        scale: 1,
        start: 0.1,
        end: 0.6,
        guessMode: true,
        resizeMode: "crop-and-resize",
      },
    ]);
  });

  it("reads the extension's own infotext (model hash dropped); refuses what we cannot re-run", () => {
    const a1111 =
      'a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, Denoising strength: 0.75, ControlNet 0: "Module: invert (from white bg & black line), Model: control_v11p_sd15_lineart [43d4be0d], Weight: 1, Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: -1, Threshold B: -1, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced, Save Detected Map: True"';
    expect(controlNetsFromInfotext(parseInfotext(a1111).pairs)).toMatchObject([
      { model: "control_v11p_sd15_lineart", preprocessor: "invert", scale: 1, resizeMode: "crop-and-resize", guessMode: false },
    ]);
    const depth = a1111.replace("invert (from white bg & black line)", "depth_midas");
    expect(() => controlNetsFromInfotext(parseInfotext(depth).pairs)).toThrow(
      /^'ControlNet 0' in the image's parameters: preprocessor 'depth_midas' is not one of ours/,
    );
    const prompt = a1111.replace("Control Mode: Balanced", "Control Mode: My prompt is more important");
    expect(() => controlNetsFromInfotext(parseInfotext(prompt).pairs)).toThrow(/control mode 'My prompt is more important' is not supported/);
    expect(controlNetsFromInfotext(parseInfotext("a cat\nSteps: 20, Seed: 1").pairs)).toEqual([]);
  });
});
