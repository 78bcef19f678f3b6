// roundHalfEven against numpy: np.round([...]).tolist() printed by numpy 2.4 (ties go to the even neighbour).
import { expect, it } from "vitest";
import { roundHalfEven } from "./numeric.js";

it("rounds ties to even like np.round, everything else to nearest", () => {
  const x = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 2.4999999, 2.5000001, 254.5, 255.5, 4503599627370495.5];
  const numpy = [0, 2, 2, 4, -0, -2, -2, 2, 3, 254, 256, 4503599627370496];
  expect(x.map(roundHalfEven)).toEqual(numpy);
  expect(Object.is(roundHalfEven(-0.5), -0)).toBe(true);
});
