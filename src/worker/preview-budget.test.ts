// The preview budget on a made-up clock: every step when decoding is cheap, every few when it is not.
import { describe, expect, it } from "vitest";
import { previewBudget } from "./preview-budget.js";

/** Steps of `stepMs`, each decoded preview costing `decodeMs`: which steps got one. */
function simulate(stepMs: number, decodeMs: number, steps: number): number[] {
  let t = 0;
  const b = previewBudget(0.25, () => t);
  const got: number[] = [];
  for (let s = 1; s <= steps; s++) {
    t += stepMs;
    if (b.due()) {
      got.push(s);
      t += decodeMs;
      b.spent(decodeMs);
    }
  }
  return got;
}

describe("previewBudget", () => {
  it("decodes every step when a decode costs under a quarter of a step", () => {
    expect(simulate(1000, 100, 6)).toEqual([1, 2, 3, 4, 5, 6]);
  });
  it("spaces decodes out when they cost as much as a step (about one in four)", () => {
    expect(simulate(1000, 1000, 12)).toEqual([1, 5, 9]);
  });
});
