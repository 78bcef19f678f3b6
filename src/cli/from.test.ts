// `--from IMAGE` restores the model as well as the settings: a hub model is found in the Hugging Face
// cache (offline, through a fake hub that filled it), a local model through the list of models
// reimagine has loaded, a missing one is named with the fix; findModel also matches LFS blobs by hash.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { runCli } from "../../test/cli.js";
import { startFakeHub } from "../../test/fake-hub.js";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { encodeImage, readImageParameters } from "../image.js";
import { findModel, rememberModel } from "../pipeline/model-index.js";
import { parseInfotext } from "../pipeline/infotext.js";

const tmp = mkdtempSync(join(tmpdir(), "reimagine-from-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(() => vi.unstubAllEnvs());

const run = runCli;

describeWithFixtures("--from restores the model (sd-tiny)", () => {
  const input = join(tmp, "input.png");
  copyFileSync(fixture("sd-tiny", "reference", "input.png"), input);
  const hubCache = join(tmp, "hub");
  const settings = ["-p", "a lighthouse at dusk", "--steps", "4", "--strength", "0.5", "--seed", "5", "--threads", "1"];

  it("a hub model: found in the Hugging Face cache offline, same image again", async () => {
    const hub = await startFakeHub({ repos: { "tiny-org/sd-tiny": { dir: fixture("sd-tiny", "model") } } });
    vi.stubEnv("HF_HUB_CACHE", hubCache);
    vi.stubEnv("HF_ENDPOINT", hub.url);
    vi.stubEnv("REIMAGINE_CACHE", join(tmp, "cache-a"));
    const first = join(tmp, "first.png");
    try {
      await run([input, "--model", "tiny-org/sd-tiny", ...settings, "-o", first]);
    } finally {
      await hub.close();
    }
    const p = parseInfotext((await readImageParameters(first))!);
    expect(p.model).toBe("tiny-org/sd-tiny");
    expect(p.modelHash).toMatch(/^[0-9a-f]{10}$/);

    // offline, and a fresh reimagine cache: only the hub cache can say where the model is
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    vi.stubEnv("REIMAGINE_CACHE", join(tmp, "cache-b"));
    const again = join(tmp, "again.png");
    const out = await run([input, "--from", first, "--verbose", "-o", again]);
    expect(out.stderr).toMatch(/--from: model tiny-org\/sd-tiny \[[0-9a-f]{10}\] is tiny-org\/sd-tiny \(found in the Hugging Face cache\)/);
    expect(readFileSync(again)).toEqual(readFileSync(first));
  });

  it("a local folder: found by hash among the models reimagine has loaded", async () => {
    vi.stubEnv("HF_HUB_CACHE", join(tmp, "empty-hub"));
    vi.stubEnv("REIMAGINE_CACHE", join(tmp, "cache-c"));
    const first = join(tmp, "local.png");
    await run([input, "--model", fixture("sd-tiny", "model"), ...settings, "-o", first]);
    const again = join(tmp, "local-again.png");
    const out = await run([input, "--from", first, "--verbose", "-o", again]);
    expect(out.stderr).toContain(`is ${fixture("sd-tiny", "model")} (found in the models Reimagine has loaded)`);
    expect(readFileSync(again)).toEqual(readFileSync(first));
  });

  it("a model that is nowhere: one line naming it and --model", async () => {
    vi.stubEnv("HF_HUB_CACHE", join(tmp, "empty-hub"));
    vi.stubEnv("REIMAGINE_CACHE", join(tmp, "cache-d"));
    const img = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3) };
    const made = join(tmp, "a1111.png");
    writeFileSync(
      made,
      await encodeImage(img, "png", {
        parameters:
          "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 8x8, Model hash: 879db523c3, Model: dreamshaper_8, Denoising strength: 0.5",
      }),
    );
    const out = await run([input, "--from", made, "-o", join(tmp, "never.png")], 1);
    expect(out.stderr).toMatch(
      /^reimagine: --from '.*a1111\.png' was made with model dreamshaper_8 \[879db523c3\], which is neither in the Hugging Face cache \(.*empty-hub\) nor among the models reimagine has loaded: pass --model with its file, folder or repo id\n$/,
    );
  });
});

describe("findModel", () => {
  /** A hub-cache repo folder by huggingface_hub's layout: blobs named by sha256, snapshot links, refs/main. */
  function cachedRepo(hub: string, repoId: string, files: Record<string, Buffer>): string {
    const storage = join(hub, `models--${repoId.replace("/", "--")}`);
    const commit = "a".repeat(40);
    mkdirSync(join(storage, "blobs"), { recursive: true });
    mkdirSync(join(storage, "refs"), { recursive: true });
    writeFileSync(join(storage, "refs", "main"), commit);
    for (const [path, data] of Object.entries(files)) {
      const sha = createHash("sha256").update(data).digest("hex");
      writeFileSync(join(storage, "blobs", sha), data);
      const link = join(storage, "snapshots", commit, path);
      mkdirSync(join(link, ".."), { recursive: true });
      symlinkSync(join(storage, "blobs", sha), link);
    }
    return join(storage, "snapshots", commit);
  }
  const sha10 = (b: Buffer) => createHash("sha256").update(b).digest("hex").slice(0, 10);

  it("finds a file by the sha256 prefix its hub-cache blob is named by", () => {
    const hub = join(tmp, "blob-hub");
    const unet = Buffer.from("unet weights");
    cachedRepo(hub, "org/diffusers-model", { "model_index.json": Buffer.from("{}"), "unet/diffusion_pytorch_model.safetensors": unet });
    const ckpt = Buffer.from("a single-file checkpoint");
    const snap = cachedRepo(hub, "org/checkpoints", { "dreamshaper_8.safetensors": ckpt });
    expect(findModel({ name: "anything", hash: sha10(unet) }, { hubCache: hub, cacheDir: join(tmp, "none") })).toEqual({
      ref: "org/diffusers-model",
      where: "the Hugging Face cache (unet/diffusion_pytorch_model.safetensors)",
    });
    expect(findModel({ name: "dreamshaper_8", hash: sha10(ckpt).toUpperCase() }, { hubCache: hub, cacheDir: join(tmp, "none") })).toEqual({
      ref: join(snap, "dreamshaper_8.safetensors"),
      where: "the Hugging Face cache",
    });
    expect(findModel({ name: "dreamshaper_8", hash: "0000000000" }, { hubCache: hub, cacheDir: join(tmp, "none") })).toBeUndefined();
  });

  it("a repo id in the cache wins; the loaded-models list matches by hash, by name only without one", () => {
    const hub = join(tmp, "list-hub");
    cachedRepo(hub, "org/m", { "model_index.json": Buffer.from("{}") });
    const cacheDir = join(tmp, "list-cache");
    expect(findModel({ name: "org/m", hash: "1234567890" }, { hubCache: hub, cacheDir })?.ref).toBe("org/m");
    const folder = join(tmp, "my-model");
    mkdirSync(folder);
    rememberModel({ name: "my-model", hash: "abcdef0123", ref: folder }, cacheDir);
    expect(findModel({ name: "renamed", hash: "abcdef0123" }, { hubCache: hub, cacheDir })).toEqual({ ref: folder, where: "the models Reimagine has loaded" });
    expect(findModel({ name: "my-model" }, { hubCache: hub, cacheDir })?.ref).toBe(folder);
    expect(findModel({ name: "my-model", hash: "ffffffffff" }, { hubCache: hub, cacheDir })).toBeUndefined(); // same name, other file
    rmSync(folder, { recursive: true });
    expect(findModel({ name: "my-model", hash: "abcdef0123" }, { hubCache: hub, cacheDir })).toBeUndefined(); // gone from disk
  });
});
