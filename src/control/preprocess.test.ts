// Preprocessors on small drawn inputs with literal expected outputs. The inputs were drawn with OpenCV (cv2.line,
// cv2.rectangle, LINE_AA strokes) and every expected canny / scribble mask was computed by OpenCV 4.6.0 (Debian's
// python3-opencv): cv2.Canny(rgb, low, high), and for scribble cv2.GaussianBlur(ink, (0, 0), sigma) then > 4 -> 255
// with ink = min(R, G, B) < 127, the A1111 extension's rule. "#" = 255, "." = 0.
import { describe, expect, it } from "vitest";
import type { RGBImage } from "../image.js";
import { canny } from "./canny.js";
import { gaussianBlur8, parsePreprocessor, PREPROCESSORS, preprocessControlImage } from "./preprocess.js";

const W = 16;
const H = 12;
const G = {
  line: {
    gray: [
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255,
    ],
    canny: [
      "................",
      "..............#.",
      "............##..",
      "..........##....",
      "........##..##..",
      "......##..##....",
      "....##..##......",
      "..##..##........",
      "....##..........",
      "#.##............",
      "................",
      "................",
    ],
    scribbleSigma1: [
      ".............###",
      "...........#####",
      ".........#######",
      ".......#########",
      ".....###########",
      "...############.",
      ".############...",
      "###########.....",
      "#########.......",
      "#######.........",
      "#####...........",
      "###.............",
    ],
  },
  filledShape: {
    gray: [
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255, 255, 255, 255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255, 255, 255, 255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 40, 40, 40, 40, 40, 40, 40, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    ],
    canny: [
      "................",
      "................",
      ".....#####......",
      "....#.....#.....",
      "...#......#.....",
      "...#......#.....",
      "...#......#.....",
      "...#......#.....",
      "....#######.....",
      "................",
      "................",
      "................",
    ],
    scribbleSigma1: [
      "................",
      "....#######.....",
      "...#########....",
      "..###########...",
      "..###########...",
      "..###########...",
      "..###########...",
      "..###########...",
      "..###########...",
      "...#########....",
      "....#######.....",
      "................",
    ],
  },
  antiAliased: {
    gray: [
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 247, 225, 247, 255, 255, 255, 237, 243, 255, 255, 255, 255, 255, 255, 255, 213, 131, 131, 129, 209, 255,
      255, 60, 86, 135, 203, 240, 255, 255, 255, 198, 128, 192, 223, 190, 128, 198, 255, 60, 60, 60, 60, 84, 135, 203, 218, 133, 198, 255, 255, 255, 198, 133,
      231, 60, 60, 60, 60, 60, 60, 60, 88, 114, 183, 240, 255, 255, 224, 135, 224, 228, 137, 84, 60, 60, 60, 60, 68, 102, 80, 84, 135, 203, 187, 133, 233, 255,
      255, 240, 203, 135, 84, 60, 60, 80, 103, 82, 72, 82, 107, 125, 220, 255, 255, 255, 255, 255, 240, 203, 135, 84, 75, 103, 102, 103, 76, 60, 60, 255, 255,
      255, 255, 255, 255, 255, 255, 240, 203, 133, 89, 62, 60, 60, 60, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 240, 203, 133, 82, 60, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 241, 237, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    ],
    canny: [
      ".........#####..",
      "#.......##...##.",
      ".###...##..#..##",
      "....####.......#",
      "........###..#.#",
      "###........##..#",
      "...###........##",
      "......##........",
      "........###.....",
      "...........####.",
      "...............#",
      "................",
    ],
    scribbleSigma1: [
      "###.............",
      "######..........",
      "##########......",
      "############....",
      "################",
      "################",
      "################",
      ".###############",
      "....############",
      ".......#########",
      "..........######",
      ".............###",
    ],
  },
  colour: {
    rgb: [
      159, 111, 115, 164, 125, 95, 120, 108, 101, 111, 99, 123, 146, 127, 155, 150, 109, 157, 123, 112, 166, 102, 126, 182, 151, 106, 100, 163, 109, 87, 129,
      93, 97, 106, 100, 109, 134, 113, 129, 150, 93, 131, 148, 90, 172, 132, 101, 197, 132, 106, 101, 146, 95, 97, 129, 83, 121, 108, 103, 126, 128, 96, 109,
      149, 83, 109, 161, 68, 166, 163, 62, 187, 111, 102, 101, 121, 104, 104, 140, 93, 132, 144, 93, 164, 128, 99, 150, 123, 95, 128, 135, 82, 133, 148, 71,
      134, 153, 90, 61, 143, 94, 74, 135, 98, 126, 134, 101, 183, 118, 99, 188, 127, 96, 147, 128, 109, 108, 125, 108, 107, 163, 107, 40, 154, 114, 53, 127,
      117, 103, 100, 104, 147, 107, 95, 157, 160, 116, 125, 162, 142, 103, 154, 146, 112, 156, 113, 63, 147, 121, 72, 112, 119, 102, 96, 106, 124, 101, 111,
      137, 154, 129, 148, 149, 118, 123, 143, 103, 102, 144, 132, 88, 140, 133, 98, 105, 114, 117, 106, 106, 140, 103, 110, 156, 140, 108, 172, 135, 84, 132,
      136, 69, 92,
    ],
    canny50_150: ["...##...", "#.#..#..", "#.....#.", "..###..#", "###..##.", "..##.#..", "##....##", "..#.#.#."],
  },
};

const fromGray = (gray: number[], w = W, h = H): RGBImage => ({ width: w, height: h, data: Uint8Array.from(gray.flatMap((v) => [v, v, v])) });
/** One row string per image row from an RGB (grey) output: "#" for 255, "." for 0, "?" for anything else. */
const rows = (img: RGBImage): string[] =>
  Array.from({ length: img.height }, (_, y) =>
    Array.from({ length: img.width }, (_, x) => {
      const p = (y * img.width + x) * 3;
      const v = img.data[p];
      if (img.data[p + 1] !== v || img.data[p + 2] !== v) return "?";
      return v === 255 ? "#" : v === 0 ? "." : "?";
    }).join(""),
  );

describe("canny (cv2.Canny, L1, aperture 3)", () => {
  for (const name of ["line", "filledShape", "antiAliased"] as const) {
    it(`${name}: equals OpenCV at the A1111 defaults (100, 200)`, () => {
      expect(rows(preprocessControlImage(fromGray(G[name].gray), "canny"))).toEqual(G[name].canny);
    });
  }
  it("a colour image: the channel with the largest gradient decides (thresholds 50, 150)", () => {
    const img: RGBImage = { width: 8, height: 8, data: Uint8Array.from(G.colour.rgb) };
    expect(rows(preprocessControlImage(img, "canny", { lowThreshold: 50, highThreshold: 150 }))).toEqual(G.colour.canny50_150);
  });
  it("swaps thresholds given the wrong way round, as OpenCV does; a flat image has no edges", () => {
    const img = fromGray(G.antiAliased.gray);
    expect(rows(preprocessControlImage(img, "canny", { lowThreshold: 200, highThreshold: 100 }))).toEqual(G.antiAliased.canny);
    expect(canny(new Uint8Array(W * H).fill(77), W, H, 1, 10, 20).every((v) => v === 0)).toBe(true);
  });
});

describe("scribble: dark strokes -> thickened white strokes on black", () => {
  for (const name of ["line", "filledShape", "antiAliased"] as const) {
    it(`${name}: ink = min(RGB) < 127, GaussianBlur(sigma 1) > 4, as OpenCV computes it`, () => {
      expect(rows(preprocessControlImage(fromGray(G[name].gray), "scribble", { sigma: 1 }))).toEqual(G[name].scribbleSigma1);
    });
  }
  it("sigma 0 keeps the strokes as drawn; the default sigma scales with size (3 px at 512, ~0.1 px here)", () => {
    const ink = G.line.gray.map((v) => (v < 127 ? "#" : "."));
    const asRows = Array.from({ length: H }, (_, y) => ink.slice(y * W, (y + 1) * W).join(""));
    expect(rows(preprocessControlImage(fromGray(G.line.gray), "scribble", { sigma: 0 }))).toEqual(asRows);
    expect(rows(preprocessControlImage(fromGray(G.line.gray), "scribble"))).toEqual(asRows);
  });
  it("a coloured stroke counts as ink when any channel is dark; a light one does not", () => {
    const img: RGBImage = { width: 3, height: 1, data: Uint8Array.from([255, 0, 0, 200, 200, 200, 255, 255, 255]) };
    expect(rows(preprocessControlImage(img, "scribble", { sigma: 0 }))).toEqual(["#.."]);
    expect(rows(preprocessControlImage(img, "scribble", { sigma: 0, threshold: 201 }))).toEqual(["##."]);
  });
  it("the blur is OpenCV's 8-bit fixed-point one (a lone 255 pixel spreads to these bytes at sigma 3)", () => {
    const src = new Uint8Array(41);
    src[20] = 255;
    const row = [...gaussianBlur8(src, 41, 1, 3).slice(11, 30)]; // cv2.GaussianBlur of a 1x41 row, OpenCV 4.6
    expect(row).toEqual([0, 1, 3, 4, 9, 14, 20, 28, 32, 34, 32, 28, 20, 14, 9, 4, 3, 1, 0]);
  });
});

describe("none, invert and the registry", () => {
  const img: RGBImage = { width: 2, height: 1, data: Uint8Array.from([0, 10, 255, 128, 127, 1]) };
  it("none copies; invert is 255 - x", () => {
    const none = preprocessControlImage(img, "none");
    expect([...none.data]).toEqual([...img.data]);
    expect(none.data).not.toBe(img.data);
    expect([...preprocessControlImage(img, "invert").data]).toEqual([255, 245, 0, 127, 128, 254]);
  });
  it("an unknown preprocessor is a one-line error listing the valid ones", () => {
    expect(Object.keys(PREPROCESSORS)).toEqual(["none", "invert", "scribble", "canny"]);
    expect(parsePreprocessor("canny")).toBe("canny");
    expect(() => preprocessControlImage(img, "hed")).toThrow(/^unknown preprocessor 'hed': use one of none, invert, scribble, canny$/);
    expect(() => parsePreprocessor("toString")).toThrow(/unknown preprocessor 'toString'/);
  });
  it("refuses bad options", () => {
    expect(() => preprocessControlImage(img, "canny", { lowThreshold: Number.NaN })).toThrow(/lowThreshold/);
    expect(() => preprocessControlImage(img, "scribble", { sigma: -1 })).toThrow(/sigma/);
  });
});
