// The steps x strength rule: the step count diffusers' get_timesteps keeps, and the refusal whose
// suggested fixes (smallest strength, fewest steps) really do run one step.
import { describe, expect, it } from "vitest";
import { denoisingSteps, noDenoisingStepReason } from "./strength.js";

describe("steps x strength", () => {
  it("keeps min(int(steps * strength), steps) steps, as get_timesteps", () => {
    expect(denoisingSteps(20, 0.75)).toBe(15);
    expect(denoisingSteps(50, 0.8)).toBe(40);
    expect(denoisingSteps(4, 0.3)).toBe(1); // int(1.2)
    expect(denoisingSteps(3, 0.3)).toBe(0); // int(0.9)
    expect(denoisingSteps(10, 1)).toBe(10);
    expect(denoisingSteps(7, 0)).toBe(0);
  });

  it("accepts every setting that runs a step, and strength 0 (the input is returned)", () => {
    expect(noDenoisingStepReason(20, 0.05)).toBeUndefined();
    expect(noDenoisingStepReason(1, 1)).toBeUndefined();
    expect(noDenoisingStepReason(30, 0)).toBeUndefined();
  });

  it("names both fixes with the caller's names", () => {
    expect(noDenoisingStepReason(10, 0.05, { strength: "--strength", steps: "--steps" })).toBe(
      "steps x strength = 10 x 0.05 leaves no denoising step: raise --strength to at least 0.1 or --steps to at least 20",
    );
    expect(noDenoisingStepReason(2, 0.3)).toBe("steps x strength = 2 x 0.3 leaves no denoising step: raise strength to at least 0.5 or steps to at least 4");
  });

  it("suggests values that do run a step, even where 1/steps is not exact in floating point", () => {
    // 3 x 0.333 = 0.999: the fix must say 0.334; 0.7 needs 2 steps, 0.1 needs 10 (10 x 0.1 = 1 exactly)
    expect(noDenoisingStepReason(3, 0.2)).toMatch(/at least 0\.334 or steps to at least 5$/);
    expect(noDenoisingStepReason(1, 0.7)).toMatch(/or steps to at least 2$/);
    expect(noDenoisingStepReason(9, 0.1)).toMatch(/at least 0\.112 or steps to at least 10$/);
    for (const steps of [1, 2, 3, 6, 7, 9, 11, 13, 30, 49, 150]) {
      for (const strength of [0.001, 0.01, 0.03, 0.07, 0.1, 0.13, 0.3, 0.33, 0.7]) {
        const why = noDenoisingStepReason(steps, strength);
        expect(why === undefined, `${steps} x ${strength}`).toBe(denoisingSteps(steps, strength) >= 1);
        if (!why) continue;
        const [, minStrength, minSteps] = why.match(/at least ([\d.]+) or steps to at least (\d+)$/)!.map(Number);
        expect(denoisingSteps(steps, minStrength)).toBe(1);
        expect(denoisingSteps(steps, minStrength - 0.001)).toBe(0); // the smallest such 3-decimal strength
        expect(denoisingSteps(minSteps, strength)).toBe(1);
        expect(denoisingSteps(minSteps - 1, strength)).toBe(0); // and the fewest steps
      }
    }
  });
});
