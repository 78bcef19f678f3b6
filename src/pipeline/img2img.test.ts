// End-to-end parity: StableDiffusionImg2ImgPipeline cases of the sd-tiny reference,
// reproduced from the seed (the generator draws, not injected noise).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { loadImage, tensorToFloatHWC } from "../image.js";
import type { Img2ImgPipeline } from "./img2img.js";
import { loadPipeline } from "./load.js";

describe.skipIf(!haveFixtures())("Img2ImgPipeline parity (sd-tiny)", () => {
  const cache = mkdtempSync(join(tmpdir(), "reimagine-pipe-"));
  let pipe: Img2ImgPipeline;
  let ref: any;
  beforeAll(async () => {
    ref = loadReferenceJson();
    pipe = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir: cache, threads: 1 });
  });
  afterAll(async () => {
    await pipe?.model.release();
    rmSync(cache, { recursive: true, force: true });
  });

  it("has five public cases", () => expect(ref.pipeline.cases.length).toBe(5));

  for (let i = 0; i < 5; i++) {
    it(`case ${i} from the seed`, async () => {
      const c = ref.pipeline.cases[i];
      const seen: number[] = [];
      const result = await pipe.run({
        ...referenceRunSettings(c),
        image: await loadImage(fixture("sd-tiny", "reference", c.inputs.image)),
        onProgress: (e) => seen.push(e.timestep),
      });
      expect(seen).toEqual(JSON.parse(JSON.stringify(c.unet_call_timesteps)));
      const lat = referenceTensor(c.final_latents);
      expect(maxAbsDiff(result.latents!, lat.data)).toBeLessThan(ref.tolerances["pipeline.final_latents"].atol);
      const img = referenceTensor(c.image); // [1, H, W, 3] in [0, 1]
      const [, H, W] = img.shape;
      const ours = tensorToFloatHWC(result.decoded!, W, H, 0);
      expect(maxAbsDiff(ours, img.data)).toBeLessThan(ref.tolerances["pipeline.image"].atol);
    });
  }
});
