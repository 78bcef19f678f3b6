// The preview VAE of a model family: the TAESD repo per family, "auto" finds it in the Hugging Face
// cache (filled here through a fake hub) and never downloads, a named one is passed through.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { startFakeHub } from "../../test/fake-hub.js";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { downloadComponentRepo } from "../weights/hub.js";
import { previewVaeFor, tinyVaeRepoFor } from "./preview-vae.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-preview-vae-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

it("maps each family to its TAESD", () => {
  expect([tinyVaeRepoFor("sd"), tinyVaeRepoFor("sdxl"), tinyVaeRepoFor("flux")]).toEqual(["madebyollin/taesd", "madebyollin/taesdxl", undefined]);
});

describeWithFixtures(
  "previewVaeFor (taesd-tiny through a fake hub)",
  () => {
    it("auto: the family's TAESD from the cache, nothing when it is not cached, no download", async () => {
      const cacheDir = join(tmp, "hub");
      const hub = await startFakeHub({ repos: { "madebyollin/taesd": { dir: fixture("taesd-tiny", "model") } } });
      let snapshot: string;
      try {
        expect(await previewVaeFor("sd", "auto", { cacheDir, endpoint: hub.url })).toBeUndefined(); // not cached yet
        expect(hub.requests).toEqual([]); // and nothing was fetched for it
        snapshot = await downloadComponentRepo("madebyollin/taesd", { cacheDir, endpoint: hub.url });
      } finally {
        await hub.close();
      }
      expect(await previewVaeFor("sd", "auto", { cacheDir })).toBe(snapshot);
      expect(await previewVaeFor("sdxl", "auto", { cacheDir })).toBeUndefined(); // taesdxl is not cached
      expect(await previewVaeFor("sd", "my-org/my-taesd", { cacheDir })).toBe("my-org/my-taesd"); // named: loaded like --tiny-vae
    });
  },
  "taesd-tiny",
);
