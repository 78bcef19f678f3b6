// The img2img steps x strength rule, in one place for the library and every front end: diffusers'
// get_timesteps runs min(int(steps·strength), steps) of the schedule's steps, so a non-zero strength
// must leave at least one. Ref: diffusers StableDiffusionImg2ImgPipeline.get_timesteps.

/**
 * Denoising steps img2img runs for `steps` at `strength`: min(floor(steps·strength), steps).
 * @example denoisingSteps(20, 0.75) // 15
 */
export function denoisingSteps(steps: number, strength: number): number {
  return Math.min(Math.floor(steps * strength), steps);
}

/** How the fix names the two settings (CLI flags, API fields); default "strength" and "steps". */
export interface StepsStrengthNames {
  strength: string;
  steps: string;
}

/**
 * Why `steps` at `strength` runs no denoising step, naming the fix; undefined when it runs at least one.
 * Strength 0 is fine (img2img then returns the input unchanged).
 * @example noDenoisingStepReason(10, 0.05, { strength: "--strength", steps: "--steps" })
 * // "steps x strength = 10 x 0.05 leaves no denoising step: raise --strength to at least 0.1 or --steps to at least 20"
 */
export function noDenoisingStepReason(
  steps: number,
  strength: number,
  names: StepsStrengthNames = { strength: "strength", steps: "steps" },
): string | undefined {
  if (strength === 0 || denoisingSteps(steps, strength) >= 1) return undefined;
  // the smallest 3-decimal strength and the smallest step count that run one step (float products checked)
  let minStrength = Math.ceil(1000 / steps) / 1000;
  while (denoisingSteps(steps, minStrength) < 1) minStrength = +(minStrength + 0.001).toFixed(3);
  let minSteps = Math.ceil(1 / strength);
  while (denoisingSteps(minSteps, strength) < 1) minSteps++;
  return `steps x strength = ${steps} x ${strength} leaves no denoising step: raise ${names.strength} to at least ${minStrength} or ${names.steps} to at least ${minSteps}`;
}
