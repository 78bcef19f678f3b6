// Model defaults by family and name: SD 1.x/2.x and SDXL base settings, few-step distilled models.
import { describe, expect, it } from "vitest";
import { defaultsFor, fewStepName } from "./load.js";

describe("defaultsFor", () => {
  it("SD and SDXL base models: 30 steps, CFG 7.5 / 7", () => {
    expect(defaultsFor("stable-diffusion-v1-5/stable-diffusion-v1-5", {})).toEqual({ steps: 30, guidanceScale: 7.5, strength: 0.6 });
    expect(defaultsFor("stabilityai/stable-diffusion-xl-base-1.0", {}, "sdxl")).toEqual({ steps: 30, guidanceScale: 7, strength: 0.6 });
  });
  it("Turbo: 2 steps without guidance; Lightning/Hyper: 4; LCM: 8 at CFG 1", () => {
    expect(defaultsFor("stabilityai/sdxl-turbo", {}, "sdxl")).toEqual({ steps: 2, guidanceScale: 0, strength: 0.5 });
    expect(defaultsFor("sdxl_lightning_4step.safetensors", {}, "sdxl")).toMatchObject({ steps: 4, guidanceScale: 0 });
    expect(defaultsFor("any", { _class_name: "LCMScheduler" })).toMatchObject({ steps: 8, guidanceScale: 1 });
  });
  it("few-step names get trailing timesteps for single files", () => {
    expect(["sd_xl_turbo_1.0_fp16", "juggernautXL_lightning", "Hyper-SDXL-8steps"].every(fewStepName)).toBe(true);
    expect(fewStepName("illustriousXL_v01")).toBe(false);
  });
});
