// Hub download tests against test/fake-hub.ts (never the real network or ~/.cache): cache layout
// shared with Python huggingface_hub, offline mode, resume, sha256 refusal, file selection, errors.
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { downloadFile, fileDownloadInfo } from "@huggingface/hub";
import { ReimagineError } from "../errors.js";
import { createProgress, downloadProgress } from "../cli/progress.js";
import { fixture, haveFixtures } from "../../test/fixtures.js";
import { startFakeHub, type FakeHub } from "../../test/fake-hub.js";
import { downloadComponentRepo, downloadDiffusersModel, hubCacheDir, looksLikeRepoId, parseRepoRef, selectPipelineFiles } from "./hub.js";

const REPO = "test-org/tiny-sd";
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const STORAGE = "models--test-org--tiny-sd";
const tmp = mkdtempSync(join(tmpdir(), "reimagine-hub-"));
let n = 0;
const freshCache = () => join(tmp, `cache-${n++}`);

/** Deterministic pseudo-random bytes, different per name. */
function bytes(name: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update(name).digest();
  for (let o = 0; o < size; o += 32) {
    block.copy(out, o);
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

const modelIndex = {
  _class_name: "StableDiffusionImg2ImgPipeline",
  _diffusers_version: "0.30.0",
  requires_safety_checker: true,
  scheduler: ["diffusers", "PNDMScheduler"],
  text_encoder: ["transformers", "CLIPTextModel"],
  tokenizer: ["transformers", "CLIPTokenizer"],
  unet: ["diffusers", "UNet2DConditionModel"],
  vae: ["diffusers", "AutoencoderKL"],
  safety_checker: ["stable_diffusion", "StableDiffusionSafetyChecker"],
  feature_extractor: ["transformers", "CLIPImageProcessor"],
  image_encoder: [null, null],
};
const shard = (i: number) => `diffusion_pytorch_model.fp16-0000${i}-of-00002.safetensors`;
const SOURCE: Record<string, Buffer | string> = {
  "model_index.json": JSON.stringify(modelIndex),
  "README.md": "# tiny",
  "v1-5-pruned-emaonly.ckpt": bytes("ckpt", 20_000),
  "scheduler/scheduler_config.json": '{"_class_name":"PNDMScheduler"}',
  "text_encoder/config.json": '{"hidden_size":32}',
  "text_encoder/model.safetensors": bytes("te", 30_000),
  "text_encoder/model.fp16.safetensors": bytes("te16", 15_000),
  "text_encoder/pytorch_model.bin": bytes("tebin", 12_000),
  "text_encoder/model.onnx": bytes("teonnx", 12_000),
  "tokenizer/vocab.json": '{"a":0}',
  "tokenizer/merges.txt": bytes("merges", 12_000).toString("hex"),
  "tokenizer/tokenizer_config.json": "{}",
  "tokenizer/special_tokens_map.json": "{}",
  "unet/config.json": '{"sample_size":8}',
  "unet/diffusion_pytorch_model.safetensors": bytes("unet", 40_000),
  "unet/diffusion_pytorch_model.safetensors.index.fp16.json": JSON.stringify({ weight_map: { a: shard(1), b: shard(2), c: shard(1) } }),
  [`unet/${shard(1)}`]: bytes("s1", 12_000),
  [`unet/${shard(2)}`]: bytes("s2", 12_000),
  "unet/diffusion_pytorch_model.bin": bytes("unetbin", 12_000),
  "unet/diffusion_pytorch_model.fp16.bin": bytes("unetbin16", 12_000),
  "vae/config.json": '{"scaling_factor":0.18215}',
  "vae/diffusion_pytorch_model.safetensors": bytes("vae", 20_000),
  "vae/diffusion_pytorch_model.msgpack": bytes("flax", 12_000),
  "safety_checker/config.json": "{}",
  "safety_checker/model.safetensors": bytes("sc", 12_000),
  "feature_extractor/preprocessor_config.json": "{}",
  "controlnet/config.json": "{}",
};
const COMMON = [
  "model_index.json",
  "scheduler/scheduler_config.json",
  "text_encoder/config.json",
  "tokenizer/vocab.json",
  "tokenizer/merges.txt",
  "tokenizer/tokenizer_config.json",
  "tokenizer/special_tokens_map.json",
  "unet/config.json",
  "vae/config.json",
  "vae/diffusion_pytorch_model.safetensors",
];
const FP16 = [
  ...COMMON,
  "text_encoder/model.fp16.safetensors",
  "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
  `unet/${shard(1)}`,
  `unet/${shard(2)}`,
].sort();
const PLAIN = [...COMMON, "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors"].sort();

const repoDir = join(tmp, "repo");
for (const [p, data] of Object.entries(SOURCE)) {
  mkdirSync(dirname(join(repoDir, p)), { recursive: true });
  writeFileSync(join(repoDir, p), data);
}

/** Files (symlinks or copies) under a snapshot, as posix paths. */
const snapshotFiles = (dir: string) =>
  (readdirSync(dir, { recursive: true }) as string[])
    .filter((p) => !lstatSync(join(dir, p)).isDirectory())
    .map((p) => p.split(sep).join("/"))
    .sort();
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const resolves = (hub: FakeHub) => hub.requests.filter((r) => r.includes("/resolve/") || r.includes("/cdn/"));

let hubs: FakeHub[] = [];
async function hub(opts: Partial<Parameters<typeof startFakeHub>[0]> = {}) {
  const h = await startFakeHub({ repos: { [REPO]: { dir: repoDir, commit: COMMIT } }, ...opts });
  hubs.push(h);
  return h;
}

beforeEach(() => {
  // Keep the developer's own token, endpoint and cache out of the tests.
  for (const k of ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"]) vi.stubEnv(k, undefined);
  vi.stubEnv("HF_HUB_CACHE", join(tmp, "env-cache"));
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await Promise.all(hubs.map((h) => h.close()));
  hubs = [];
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("repo refs and cache folder", () => {
  it("parses org/name@revision and refuses bad ids", () => {
    expect(parseRepoRef("org/name")).toEqual({ repoId: "org/name", revision: "main" });
    expect(parseRepoRef("org/na.me_1@refs/pr/3")).toEqual({ repoId: "org/na.me_1", revision: "refs/pr/3" });
    for (const bad of ["name", "a/b/c", "org/na--me", "org/../x", "org/name@", "org/-x", "or g/name", "org/name@a b"]) {
      expect(() => parseRepoRef(bad), bad).toThrow(ReimagineError);
    }
  });
  it("refuses an HF_ENDPOINT that is not an http(s) URL, naming the fix", async () => {
    await expect(downloadDiffusersModel("org/name", { endpoint: "garbage", localFilesOnly: true, cacheDir: tmpdir() })).rejects.toThrow(
      /HF_ENDPOINT 'garbage' is not an http\(s\) URL: unset it/,
    );
  });

  it("tells repo ids from local paths", () => {
    expect(looksLikeRepoId("org/name")).toBe(true);
    expect(looksLikeRepoId("org/name@v2")).toBe(true);
    expect(looksLikeRepoId(repoDir)).toBe(false);
    mkdirSync(join(tmp, "local", "model"), { recursive: true });
    const cwd = process.cwd();
    process.chdir(tmp);
    try {
      expect(looksLikeRepoId("local/model")).toBe(false); // exists on disk
    } finally {
      process.chdir(cwd);
    }
  });
  it("finds the cache folder like huggingface_hub", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/a", HF_HOME: "/b" })).toBe("/a");
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: "/c", HF_HOME: "/b" })).toBe("/c");
    expect(hubCacheDir({ HF_HOME: "/b", XDG_CACHE_HOME: "/x" })).toBe(join("/b", "hub"));
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x" })).toBe(join("/x", "huggingface", "hub"));
    expect(hubCacheDir({})).toMatch(/\.cache[\\/]huggingface[\\/]hub$/);
  });
});

describe("selectPipelineFiles", () => {
  const have = new Set(Object.keys(SOURCE));
  it("prefers the fp16 variant, else plain; skips safety checker, feature extractor, unlisted folders", () => {
    const fp16 = selectPipelineFiles(have, modelIndex, "fp16");
    expect(fp16.indexes).toEqual(["unet/diffusion_pytorch_model.safetensors.index.fp16.json"]);
    expect(fp16.files.sort()).toEqual(FP16.filter((p) => !p.includes("-of-")));
    expect(selectPipelineFiles(have, modelIndex, "").files.sort()).toEqual(PLAIN);
  });
  it("takes only model_index.json and the tokenizer with tokenizerOnly", () => {
    const t = selectPipelineFiles(have, modelIndex, "fp16", true);
    expect(t.files.sort()).toEqual(COMMON.filter((p) => p === "model_index.json" || p.startsWith("tokenizer/")).sort());
    expect(t.indexes).toEqual([]);
  });
  it("refuses a component with no safetensors", () => {
    const binOnly = new Set([...have].filter((p) => !(p.startsWith("vae/") && p.endsWith(".safetensors"))));
    expect(() => selectPipelineFiles(binOnly, modelIndex, "fp16")).toThrow(/'vae' has no usable \.safetensors.*msgpack/);
  });
});

describe("downloadDiffusersModel against the fake hub", () => {
  it("fills the standard cache layout with the pipeline's files only", async () => {
    const h = await hub({ treePageSize: 4 }); // exercises Link pagination of the tree API
    const cacheDir = freshCache();
    const events: { file: string; loaded: number; total: number; done: boolean }[] = [];
    const snap = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url, onProgress: (e) => events.push(e) });

    const storage = join(cacheDir, STORAGE);
    expect(snap).toBe(join(storage, "snapshots", COMMIT));
    expect(readFileSync(join(storage, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(snapshotFiles(snap)).toEqual(FP16);
    for (const p of FP16) {
      const link = readlinkSync(join(snap, p)); // relative, into ../../blobs like Python writes it
      const data = Buffer.from(SOURCE[p]);
      expect(link).toBe(`${"../".repeat(p.split("/").length + 1)}blobs/${link.split("/").pop()}`);
      expect(readFileSync(join(snap, p)).equals(data), p).toBe(true);
      const isLfs = data.length > 10 * 1024 || p.endsWith(".safetensors");
      const gitOid = createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
      expect(link.split("/").pop(), p).toBe(isLfs ? sha256(data) : gitOid);
    }
    expect(readdirSync(join(storage, "blobs")).filter((b) => b.endsWith(".incomplete"))).toEqual([]);
    expect(h.requests.some((r) => r.includes("cursor="))).toBe(true);
    for (const r of resolves(h))
      expect(r).not.toMatch(
        /\.bin|\.ckpt|\.onnx|\.msgpack|safety_checker|feature_extractor|README|controlnet|\/model\.safetensors|pytorch_model\.safetensors\?/,
      );
    // One GET per distinct blob: the two "{}" tokenizer files share one blob, like git.
    const distinct = new Set(FP16.map((p) => sha256(Buffer.from(SOURCE[p])))).size;
    expect(distinct).toBe(FP16.length - 1);
    expect(resolves(h).filter((r) => r.startsWith("GET") && r.includes("/resolve/")).length).toBe(distinct);
    const done = events.filter((e) => e.done);
    expect(done.map((e) => e.file).sort()).toEqual(FP16);
    for (const e of done) expect(e.loaded).toBe(e.total);

    // A second online run asks for the revision only and downloads nothing.
    const before = h.requests.length;
    expect(await downloadDiffusersModel(`${REPO}@main`, { cacheDir, endpoint: h.url })).toBe(snap);
    expect(h.requests.slice(before)).toEqual([expect.stringMatching(/^GET \/api\/models\/test-org\/tiny-sd\/revision\/main\?/)]);

    // With the hub gone: offline (option or HF_HUB_OFFLINE=1) and online-but-unreachable all use the cache.
    await h.close();
    hubs = [];
    expect(await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url, localFilesOnly: true })).toBe(snap);
    vi.stubEnv("HF_HUB_OFFLINE", "1");
    expect(await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url })).toBe(snap);
    vi.stubEnv("HF_HUB_OFFLINE", undefined);
    expect(await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url })).toBe(snap);
    // An offline snapshot missing a weight file is reported as incomplete.
    rmSync(join(snap, "vae", "diffusion_pytorch_model.safetensors"));
    await expect(downloadDiffusersModel(REPO, { cacheDir, localFilesOnly: true })).rejects.toThrow(/incomplete.*vae/);
  });

  it("takes the plain weights with variant ''", async () => {
    const h = await hub();
    const snap = await downloadDiffusersModel(REPO, { cacheDir: freshCache(), endpoint: h.url, variant: "" });
    expect(snapshotFiles(snap)).toEqual(PLAIN);
  });

  it("fetches the tokenizer alone with tokenizerOnly, and a later full run completes the snapshot", async () => {
    const h = await hub();
    const cacheDir = freshCache();
    const snap = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url, tokenizerOnly: true });
    expect(snapshotFiles(snap)).toEqual(COMMON.filter((p) => p === "model_index.json" || p.startsWith("tokenizer/")).sort());
    expect(await downloadDiffusersModel(REPO, { cacheDir, localFilesOnly: true, tokenizerOnly: true })).toBe(snap);
    await expect(downloadDiffusersModel(REPO, { cacheDir, localFilesOnly: true })).rejects.toThrow(/incomplete/);
    expect(snapshotFiles(await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url }))).toEqual(FP16);
  });

  it("reuses blobs already in the cache (e.g. written by Python) and only links them", async () => {
    const h = await hub();
    const cacheDir = freshCache();
    const blobs = join(cacheDir, STORAGE, "blobs");
    mkdirSync(blobs, { recursive: true });
    const vae = Buffer.from(SOURCE["vae/diffusion_pytorch_model.safetensors"]);
    writeFileSync(join(blobs, sha256(vae)), vae);
    const snap = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url });
    expect(realpathSync(join(snap, "vae/diffusion_pytorch_model.safetensors"))).toBe(realpathSync(join(blobs, sha256(vae))));
    expect(resolves(h).some((r) => r.includes("vae/diffusion_pytorch_model"))).toBe(false);
  });

  it("resumes a cut download with a Range request", async () => {
    const h = await hub({ failAfterBytes: 5000 });
    const snap = await downloadDiffusersModel(REPO, { cacheDir: freshCache(), endpoint: h.url });
    const vae = Buffer.from(SOURCE["vae/diffusion_pytorch_model.safetensors"]);
    expect(h.requests).toContainEqual(expect.stringMatching(new RegExp(`^GET /cdn/${sha256(vae)}\\?.* range=bytes=5000-$`)));
    for (const p of FP16) expect(readFileSync(join(snap, p)).equals(Buffer.from(SOURCE[p])), p).toBe(true);
    // Every cut file was fetched in full once, then only its missing tail.
    const cdn = h.requests.filter((r) => r.startsWith("GET /cdn/"));
    const lfs = FP16.filter((p) => Buffer.from(SOURCE[p]).length > 10 * 1024 || p.endsWith(".safetensors"));
    expect(cdn.filter((r) => !r.includes("range=")).length).toBe(lfs.length);
    expect(cdn.filter((r) => /range=bytes=[1-9]\d*-$/.test(r)).length).toBe(lfs.length);
  });

  it("resumes from a .incomplete left by an earlier run, and refuses a corrupt one", async () => {
    const h = await hub();
    const cacheDir = freshCache();
    const vae = Buffer.from(SOURCE["vae/diffusion_pytorch_model.safetensors"]);
    const incomplete = join(cacheDir, STORAGE, "blobs", `${sha256(vae)}.incomplete`);
    mkdirSync(dirname(incomplete), { recursive: true });
    writeFileSync(incomplete, Buffer.alloc(3000)); // wrong bytes: the sha256 check must catch them
    const err = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url }).catch((e) => e);
    expect(err).toBeInstanceOf(ReimagineError);
    expect(err.code).toBe("download_corrupted");
    expect(err.message).toMatch(/vae\/diffusion_pytorch_model\.safetensors.*corrupted.*run the command again/);
    expect(existsSync(incomplete)).toBe(false);
    expect(existsSync(incomplete.replace(".incomplete", ""))).toBe(false);

    writeFileSync(incomplete, vae.subarray(0, 3000)); // a genuine partial download
    const snap = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url });
    expect(h.requests).toContainEqual(expect.stringMatching(new RegExp(`^GET /cdn/${sha256(vae)}\\?.* range=bytes=3000-$`)));
    expect(readFileSync(join(snap, "vae/diffusion_pytorch_model.safetensors")).equals(vae)).toBe(true);
  });

  it("refuses a file whose sha256 does not match and leaves no blob", async () => {
    const bad = "vae/diffusion_pytorch_model.safetensors";
    const h = await hub({ corruptSha: [bad] });
    const cacheDir = freshCache();
    await expect(downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url })).rejects.toThrow(/corrupted/);
    const blobs = readdirSync(join(cacheDir, STORAGE, "blobs"));
    expect(blobs).not.toContain(sha256(Buffer.from(SOURCE[bad])));
    expect(blobs.filter((b) => b.endsWith(".incomplete"))).toEqual([]);
    expect(blobs.length).toBe(
      blobs.filter((b) =>
        FP16.some(
          (p) =>
            sha256(Buffer.from(SOURCE[p])) === b ||
            createHash("sha1")
              .update(`blob ${Buffer.from(SOURCE[p]).length}\0`)
              .update(Buffer.from(SOURCE[p]))
              .digest("hex") === b,
        ),
      ).length,
    );
    expect(existsSync(join(cacheDir, STORAGE, "snapshots", COMMIT, bad))).toBe(false);
  });

  it("stops on abort and keeps the partial file for a later resume", async () => {
    const h = await hub();
    const cacheDir = freshCache();
    const ac = new AbortController();
    const onProgress = (e: { loaded: number; done: boolean }) => {
      if (e.loaded > 0 && !e.done) ac.abort();
    };
    await expect(downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url, signal: ac.signal, onProgress })).rejects.toMatchObject({ name: "AbortError" });
    const blobs = join(cacheDir, STORAGE, "blobs");
    expect(readdirSync(blobs).filter((b) => b.endsWith(".incomplete")).length).toBe(1);
    const snap = await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url });
    expect(snapshotFiles(snap)).toEqual(FP16);
    expect(readdirSync(blobs).filter((b) => b.endsWith(".incomplete"))).toEqual([]);
  });

  it("explains missing caches, unreachable hubs, auth and not-found errors", async () => {
    const cacheDir = freshCache();
    await expect(downloadDiffusersModel(REPO, { cacheDir, localFilesOnly: true })).rejects.toThrow(
      /test-org\/tiny-sd@main is not in the Hugging Face cache.*run once online.*HF_HUB_OFFLINE/,
    );

    const gone = await hub();
    await gone.close();
    hubs = [];
    await expect(downloadDiffusersModel(REPO, { cacheDir, endpoint: gone.url })).rejects.toMatchObject({
      code: "hub_unreachable",
      message: expect.stringMatching(/Cannot reach.*connection.*HF_HUB_OFFLINE=1/),
    });

    const h = await startFakeHub({ repos: { [REPO]: { dir: repoDir, commit: COMMIT, token: "hf_secret" } } });
    hubs.push(h);
    await expect(downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url })).rejects.toMatchObject({
      code: "hub_unauthorized",
      message: expect.stringMatching(/gated or private.*licence.*HF_TOKEN/),
    });
    await expect(downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url, token: "hf_wrong" })).rejects.toMatchObject({
      code: "hub_unauthorized",
      message: expect.stringMatching(/HTTP 403.*token sent was refused/),
    });
    vi.stubEnv("HF_TOKEN", "hf_secret");
    expect(snapshotFiles(await downloadDiffusersModel(REPO, { cacheDir, endpoint: h.url }))).toEqual(FP16);

    await expect(downloadDiffusersModel("test-org/nope", { cacheDir, endpoint: h.url })).rejects.toMatchObject({
      code: "hub_not_found",
      message: expect.stringMatching(/test-org\/nope not found/),
    });
    await expect(downloadDiffusersModel(`${REPO}@v9`, { cacheDir, endpoint: h.url })).rejects.toMatchObject({
      code: "hub_revision_not_found",
      message: expect.stringMatching(/Revision 'v9' not found/),
    });
  });
});

describe("fake hub speaks the hub's download protocol", () => {
  it("answers HEAD like huggingface.co (what hf_hub_download reads) and works with @huggingface/hub", async () => {
    const h = await hub();
    const p = "vae/diffusion_pytorch_model.safetensors";
    const data = Buffer.from(SOURCE[p]);
    const lfs = await fetch(`${h.url}/${REPO}/resolve/main/${p}`, { method: "HEAD", redirect: "manual" });
    expect(lfs.status).toBe(302);
    expect(lfs.headers.get("x-repo-commit")).toBe(COMMIT);
    expect(lfs.headers.get("x-linked-etag")).toBe(`"${sha256(data)}"`);
    expect(lfs.headers.get("x-linked-size")).toBe(String(data.length));
    expect(lfs.headers.get("location")).toMatch(new RegExp(`^${h.url}/cdn/${sha256(data)}\\?`));
    const small = await fetch(`${h.url}/${REPO}/resolve/main/vae/config.json`, { method: "HEAD" });
    expect(small.status).toBe(200);
    expect(small.headers.get("etag")).toMatch(/^"[0-9a-f]{40}"$/);
    expect(small.headers.get("content-length")).toBe(String(Buffer.byteLength(String(SOURCE["vae/config.json"]))));
    const part = await fetch(lfs.headers.get("location")!, { headers: { Range: "bytes=10-19" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("content-range")).toBe(`bytes 10-19/${data.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(10, 20))).toBe(true);

    const info = await fileDownloadInfo({ repo: REPO, path: p, hubUrl: h.url });
    expect(info).toMatchObject({ size: data.length, etag: `"${sha256(data)}"` });
    const blob = await downloadFile({ repo: REPO, path: p, hubUrl: h.url, xet: false });
    expect(Buffer.from(await blob!.arrayBuffer()).equals(data)).toBe(true);
  });
});

describe.skipIf(!haveFixtures("sd-tiny"))("sd-tiny fixture through the fake hub", () => {
  it("downloads every file of the tiny pipeline unchanged", async () => {
    const src = fixture("sd-tiny", "model");
    const h = await startFakeHub({ repos: { "fixtures/sd-tiny": { dir: src } } });
    hubs.push(h);
    const snap = await downloadDiffusersModel("fixtures/sd-tiny", { cacheDir: freshCache(), endpoint: h.url });
    const want = snapshotFiles(src);
    expect(snapshotFiles(snap)).toEqual(want);
    for (const p of want) expect(readFileSync(join(snap, p)).equals(readFileSync(join(src, p))), p).toBe(true);
  });
});

describe("progress bars", () => {
  const fakeStream = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, stream: { isTTY, columns: 100, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream };
  };
  it("prints nothing when the stream is not a TTY", () => {
    const { out, stream } = fakeStream(false);
    const bar = createProgress({ label: "unet", total: 100, unit: "bytes", stream });
    bar.update(50);
    bar.finish();
    downloadProgress({ stream })({ file: "a", loaded: 5, total: 5, done: true });
    expect(out).toEqual([]);
  });
  it("draws in place on a TTY, throttled, and ends the line", () => {
    const { out, stream } = fakeStream(true);
    const bar = createProgress({ label: "unet", total: 2 * 1024 * 1024, unit: "bytes", stream });
    bar.update(1024 * 1024);
    for (let i = 0; i < 50; i++) bar.update(1024 * 1024 + i); // within 100 ms: no redraws
    expect(out.length).toBe(1);
    expect(out[0]).toMatch(/^\runet \[#+\.+\] {2}50% 1\.0 MiB\/2\.0 MiB .*\/s ETA /);
    bar.finish();
    expect(out.at(-2)).toMatch(/ 50% /);
    expect(out.at(-1)).toBe("\n");
  });
  it("sums announced files into one overall bar", () => {
    const { out, stream } = fakeStream(true);
    const cb = downloadProgress({ mode: "overall", stream, label: "model" });
    cb({ file: "model_index.json", loaded: 10, total: 10, done: true }); // planning file: not counted
    cb({ file: "a", loaded: 0, total: 1000, done: false });
    cb({ file: "b", loaded: 0, total: 3000, done: false });
    cb({ file: "a", loaded: 1000, total: 1000, done: true });
    cb({ file: "b", loaded: 3000, total: 3000, done: true });
    expect(out.at(-2)).toMatch(/^\rmodel \[#+\] 100% 3\.9 KiB\/3\.9 KiB/);
    expect(out.at(-1)).toBe("\n");
  });
});

describe("single-component repos (downloadComponentRepo: the same flow as pipelines)", () => {
  const TINY = "test-org/tiny-taesd";
  const tinyDir = join(tmp, "tiny-taesd");
  const TINY_FILES: Record<string, Buffer | string> = {
    "config.json": '{"_class_name":"AutoencoderTiny"}',
    "diffusion_pytorch_model.safetensors": bytes("taesd", 20_000),
    "diffusion_pytorch_model.fp16.safetensors": bytes("taesd16", 10_000),
    "README.md": "# taesd",
  };
  for (const [p, data] of Object.entries(TINY_FILES)) {
    mkdirSync(tinyDir, { recursive: true });
    writeFileSync(join(tinyDir, p), data);
  }
  const tinyHub = () => hub({ repos: { [TINY]: { dir: tinyDir, commit: COMMIT }, [REPO]: { dir: repoDir, commit: COMMIT } } });

  it("fetches config.json and the plain weights, announces them, then serves them from the cache offline and unreachable", async () => {
    const h = await tinyHub();
    const cacheDir = freshCache();
    const announced: string[] = [];
    const snap = await downloadComponentRepo(TINY, { cacheDir, endpoint: h.url, onProgress: (e) => e.loaded === 0 && !e.done && announced.push(e.file) });
    expect(snapshotFiles(snap)).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);
    expect(announced).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);
    expect(readFileSync(join(snap, "diffusion_pytorch_model.safetensors"))).toEqual(TINY_FILES["diffusion_pytorch_model.safetensors"]);
    expect(await downloadComponentRepo(TINY, { cacheDir, endpoint: h.url, variant: "fp16" }).then(snapshotFiles)).toContain(
      "diffusion_pytorch_model.fp16.safetensors",
    );
    await h.close();
    hubs = [];
    expect(await downloadComponentRepo(TINY, { cacheDir, localFilesOnly: true })).toBe(snap);
    expect(await downloadComponentRepo(TINY, { cacheDir, endpoint: h.url })).toBe(snap); // hub unreachable: the cache
    rmSync(join(snap, "diffusion_pytorch_model.safetensors"));
    await expect(downloadComponentRepo(TINY, { cacheDir, localFilesOnly: true })).rejects.toMatchObject({
      code: "not_cached",
      message: expect.stringMatching(/cached copy of test-org\/tiny-taesd .* is incomplete \(Component .* has no usable \.safetensors/),
    });
    await expect(downloadComponentRepo("test-org/never-seen", { cacheDir, localFilesOnly: true })).rejects.toThrow(
      /not in the Hugging Face cache.*localFilesOnly/,
    );
  });

  it("refuses a repo without config.json at its root, naming what it expects", async () => {
    const h = await tinyHub();
    await expect(downloadComponentRepo(REPO, { cacheDir: freshCache(), endpoint: h.url })).rejects.toMatchObject({
      code: "not_diffusers",
      message: expect.stringMatching(/has no config\.json at its root.*madebyollin\/taesd/),
    });
  });
});
