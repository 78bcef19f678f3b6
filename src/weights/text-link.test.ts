// Symlinks stored as text files are followed by every model file reader (configs, weights, tokenizers);
// the inpaint and ControlNet fixture folders share sd-tiny's components this way.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { openComponentWeights, readJson } from "./diffusers.js";
import { resolveTextLink } from "./text-link.js";

const root = mkdtempSync(join(tmpdir(), "reimagine-link-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("resolveTextLink", () => {
  it("follows relative links (and chains), leaves real files and dangling links alone", () => {
    mkdirSync(join(root, "a"));
    mkdirSync(join(root, "b"));
    writeFileSync(join(root, "a", "config.json"), '{"x": 1}');
    writeFileSync(join(root, "b", "config.json"), "../a/config.json\n");
    writeFileSync(join(root, "b", "twice.json"), "config.json");
    writeFileSync(join(root, "b", "dangling.json"), "../nope/config.json");
    expect(resolveTextLink(join(root, "b", "config.json"))).toBe(join(root, "a", "config.json"));
    expect(resolveTextLink(join(root, "b", "twice.json"))).toBe(join(root, "a", "config.json"));
    expect(resolveTextLink(join(root, "a", "config.json"))).toBe(join(root, "a", "config.json"));
    expect(resolveTextLink(join(root, "b", "dangling.json"))).toBe(join(root, "b", "dangling.json"));
    expect(readJson(join(root, "b", "config.json"), "config")).toEqual({ x: 1 });
  });
});

describeWithFixtures(
  "fixture folders that link to sd-tiny's components",
  () => {
    it("the inpaint model's vae/ and text_encoder/ (text links) open as sd-tiny's", () => {
      for (const c of ["vae", "text_encoder"]) {
        const linked = openComponentWeights(fixture("sd-tiny-inpaint", "model", c));
        const real = openComponentWeights(fixture("sd-tiny", "model", c));
        expect(linked.keys().sort()).toEqual(real.keys().sort());
        expect(linked.fingerprint()).toBe(real.fingerprint());
      }
    });
  },
  "sd-tiny-inpaint",
);
