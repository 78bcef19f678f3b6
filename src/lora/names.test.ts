// Module-name resolution: the UNet's LDM/SGM names against the diffusers conversion tables recorded in the sd-tiny
// and sdxl-tiny single-file fixtures (every UNet Linear/Conv2d weight, exact), and "_"-joined kohya names.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { ldmUnetNames, ModuleNameTable } from "./names.js";

describe("LoRA module names", () => {
  it("resolves '_'-joined kohya names by matching the model's modules (underscores inside names stay)", () => {
    const t = new ModuleNameTable(["down_blocks.0.resnets.0.conv_shortcut", "down_blocks.0.resnets.0.time_emb_proj", "a.to_q"], { ldmUnet: true });
    expect(t.resolve("down_blocks_0_resnets_0_conv_shortcut")).toBe("down_blocks.0.resnets.0.conv_shortcut");
    expect(t.resolve("down_blocks.0.resnets.0.time_emb_proj")).toBe("down_blocks.0.resnets.0.time_emb_proj");
    expect(t.resolve("input_blocks_1_0_skip_connection")).toBe("down_blocks.0.resnets.0.conv_shortcut");
    expect(t.resolve("a_to_q")).toBe("a.to_q");
    expect(t.resolve("down_blocks_0_resnets_0_conv")).toBeUndefined();
  });

  it("refuses to guess when two modules share an underscored name", () => {
    const t = new ModuleNameTable(["a.b_c", "a_b.c"]);
    expect(t.resolve("a_b_c")).toBeUndefined();
    expect(t.resolve("a.b_c")).toBe("a.b_c");
  });

  for (const set of ["sd-tiny", "sdxl-tiny"]) {
    it.skipIf(!haveFixtures(set))(`gives the LDM name of every ${set} UNet layer as diffusers' conversion does`, () => {
      const map = JSON.parse(readFileSync(fixture(set, "single-file", "key_map.json"), "utf8"));
      const layers = (map.keys as any[]).filter(
        (k) => k.component === "unet" && k.diffusers_key.endsWith(".weight") && [2, 4].includes(k.diffusers_shape.length),
      );
      const modules = layers.map((k) => k.diffusers_key.slice(0, -7));
      const ldm = ldmUnetNames(modules);
      const want = Object.fromEntries(layers.map((k) => [k.diffusers_key.slice(0, -7), k.ldm_key.slice("model.diffusion_model.".length, -7)]));
      expect(Object.fromEntries(modules.map((m) => [m, ldm.get(m)]))).toEqual(want);
      expect(modules.length).toBeGreaterThan(40);
    });
  }
});
