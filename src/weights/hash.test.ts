// Weight identity is content: two safetensors files with the same header and size but different
// numbers get different fingerprints and graph-cache keys; hashes are remembered across runs and
// re-verified (a rewrite that keeps size and mtime is caught); A1111's Model hash = sha256(file)[:10].
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, openSync, closeSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempCache } from "../../test/temp-cache.js";
import { describeWithFixtures, fixture, haveFixtures, loadReferenceJson, referenceRunSettings } from "../../test/fixtures.js";
import { graphHash } from "../graph/cache.js";
import { loadImage } from "../image.js";
import { loadPipeline } from "../pipeline/load.js";
import { clearHashMemo, fileSha256, hashesComputed } from "./hash.js";
import { SafetensorsFile, writeSafetensors } from "./safetensors.js";

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

const dir = useTempCache("reimagine-hash-"); // hash records of this file's weights go to dir/cache

describe("content fingerprints", () => {
  // two "fine-tunes" saved by the same tool: same keys, shapes and dtypes -> byte-identical headers and sizes
  const tensors = (v: number) => ({ "conv.weight": { dtype: "F32" as const, shape: [4, 4], data: new Float32Array(16).fill(v) } });
  const a = join(dir, "a.safetensors");
  const b = join(dir, "b.safetensors");
  writeSafetensors(a, tensors(0.5));
  writeSafetensors(b, tensors(0.25));

  it("two files with equal headers and sizes but different numbers differ, in the fingerprint and the graph key", () => {
    const [ra, rb] = [readFileSync(a), readFileSync(b)];
    const headerLen = 8 + Number(ra.readBigUInt64LE(0));
    expect(ra.length).toBe(rb.length);
    expect(ra.subarray(0, headerLen).equals(rb.subarray(0, headerLen))).toBe(true);
    const [fa, fb] = [SafetensorsFile.open(a), SafetensorsFile.open(b)];
    try {
      expect(fa.fingerprint()).toBe(sha256(a));
      expect(fb.fingerprint()).toBe(sha256(b));
      expect(fa.fingerprint()).not.toBe(fb.fingerprint());
      const key = { kind: "unet", config: { in_channels: 4 } };
      const structure = "same-graph"; // both files build the same graph: only the weights term differs
      expect(graphHash({ ...key, weights: fa }, structure)).not.toBe(graphHash({ ...key, weights: fb }, structure));
    } finally {
      fa.close();
      fb.close();
    }
  });

  it("is hashed once, then read from its record; a same-size rewrite with the old mtime is re-hashed", () => {
    const root = join(dir, "records");
    const c = join(dir, "c.safetensors");
    copyFileSync(a, c);
    const hash = () => {
      const fd = openSync(c, "r");
      try {
        return fileSha256(fd, c, root);
      } finally {
        closeSync(fd);
      }
    };
    const n0 = hashesComputed;
    expect(hash()).toBe(sha256(a));
    clearHashMemo();
    expect(hash()).toBe(sha256(a)); // from the record
    expect(hashesComputed - n0).toBe(1);
    const { atime, mtime } = statSync(c);
    writeFileSync(c, readFileSync(b)); // same size, same header, other numbers
    utimesSync(c, atime, mtime); // and the old mtime back
    clearHashMemo();
    expect(hash()).toBe(sha256(b));
    expect(hashesComputed - n0).toBe(2);
  });
});

describeWithFixtures("model identity (sd-tiny)", () => {
  const ref = haveFixtures() ? loadReferenceJson() : undefined;

  it("a fine-tune with the same header and size does not get the first model's graphs, images or Model hash", async () => {
    // model B = sd-tiny with the UNet numbers changed in place (header and file size unchanged)
    const modelB = join(dir, "tuned");
    mkdirSync(join(modelB, "unet"), { recursive: true });
    for (const part of ["model_index.json", "scheduler", "vae", "text_encoder", "tokenizer"])
      symlinkSync(fixture("sd-tiny", "model", part), join(modelB, part));
    symlinkSync(fixture("sd-tiny", "model", "unet", "config.json"), join(modelB, "unet", "config.json"));
    const unetA = fixture("sd-tiny", "model", "unet", "diffusion_pytorch_model.safetensors");
    const bytes = readFileSync(unetA);
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
    const f32 = new Float32Array(bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + bytes.length));
    for (let i = 0; i < f32.length; i++) f32[i] *= 1.5;
    const unetB = join(modelB, "unet", "diffusion_pytorch_model.safetensors");
    writeFileSync(unetB, Buffer.concat([bytes.subarray(0, dataStart), Buffer.from(f32.buffer)]));
    expect(statSync(unetB).size).toBe(bytes.length);

    const c = ref.pipeline.cases[0];
    const opts = { ...referenceRunSettings(c), image: await loadImage(fixture("sd-tiny", "reference", c.inputs.image)) };
    const cacheDir = join(dir, "graphs"); // one graph cache for both, as on a user's machine
    const run = async (model: string) => {
      const pipe = await loadPipeline(model, { cacheDir, threads: 1 });
      try {
        return { hash: pipe.modelHash, latents: (await pipe.run(opts)).latents! };
      } finally {
        await pipe.model.release();
      }
    };
    const A = await run(fixture("sd-tiny", "model"));
    const B = await run(modelB);
    expect(A.hash).toBe(sha256(unetA).slice(0, 10));
    expect(B.hash).toBe(sha256(unetB).slice(0, 10));
    expect(B.hash).not.toBe(A.hash);
    expect(Buffer.from(B.latents.buffer).equals(Buffer.from(A.latents.buffer))).toBe(false);
  });

  it("a single-file checkpoint's Model hash is A1111's: sha256 of the file, first 10 hex", async () => {
    const single = fixture("sd-tiny", "single-file", "sd-tiny.safetensors");
    const pipe = await loadPipeline(single, { cacheDir: join(dir, "graphs"), threads: 1, configFrom: fixture("sd-tiny", "model") });
    try {
      expect(pipe.modelHash).toBe(sha256(single).slice(0, 10));
    } finally {
      await pipe.model.release();
    }
  });
});
