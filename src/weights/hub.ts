// Hugging Face Hub download into the standard cache: the only module doing network access.
// Ref: huggingface_hub snapshot_download / hf_hub_download (cache layout, refs, HF_* variables,
// offline rules) and diffusers DiffusionPipeline.download (which files a pipeline needs, variants).
// Notation: blob = content file named by its etag (sha256 for LFS, git blob sha1 otherwise).
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readdirSync, statSync } from "node:fs";
import { copyFile, mkdir, open, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative, sep } from "node:path";
import type { ListFileEntry } from "@huggingface/hub";
import { ReimagineError } from "../errors.js";
import { parsePythonJson } from "./pyjson.js";

export interface HubProgressEvent {
  file: string;
  loaded: number;
  total: number;
  done: boolean;
}
export interface HubOptions {
  revision?: string;
  cacheDir?: string;
  token?: string;
  endpoint?: string;
  localFilesOnly?: boolean;
  /** Weights variant preferred when a component ships it (default "fp16"); "" = plain files only. */
  variant?: string;
  /** Fetch model_index.json and the tokenizer folders only (the CLIP vocabulary for single-file checkpoints). */
  tokenizerOnly?: boolean;
  onProgress?: (e: HubProgressEvent) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/** @huggingface/hub, loaded when the hub is first asked (importing the library should not load it). */
const hubClient = () => import("@huggingface/hub");

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;
const COMMIT = /^[0-9a-f]{40}$/;
const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Split "org/name@rev" (revision default "main"). Example: parseRepoRef("a/b@v1") -> {repoId:"a/b", revision:"v1"}. */
export function parseRepoRef(ref: string): { repoId: string; revision: string } {
  const at = ref.indexOf("@");
  const repoId = at < 0 ? ref : ref.slice(0, at);
  const revision = at < 0 ? "main" : ref.slice(at + 1);
  // Same rules as huggingface_hub validate_repo_id, with the org required.
  const ok = REPO_ID.test(repoId) && repoId.length <= 96 && !/--|\.\./.test(repoId) && !/(^|\/)[.-]|[.-](\/|$)/.test(repoId);
  if (!ok) {
    throw new ReimagineError(
      `'${ref}' is not a Hugging Face repo id: expected "org/name" or "org/name@revision" ` +
        `(letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters).`,
    );
  }
  if (!revision || /\s|\.\./.test(revision) || revision.startsWith("/") || revision.endsWith("/")) {
    throw new ReimagineError(`'${ref}' has an invalid revision '${revision}': after '@' give a branch, tag or commit hash.`);
  }
  return { repoId, revision };
}

/** True for "org/name" (optionally "@rev") that is not an existing local path. */
export function looksLikeRepoId(s: string): boolean {
  if (existsSync(s)) return false;
  try {
    parseRepoRef(s);
    return true;
  } catch {
    return false;
  }
}

const expandHome = (p: string) => (p === "~" || p.startsWith("~/") ? join(homedir(), p.slice(1)) : p);
const isTrue = (v: string | undefined) => ["1", "ON", "YES", "TRUE"].includes((v ?? "").toUpperCase());

/** The hub cache folder, by huggingface_hub's rules: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
 *  XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. (@huggingface/hub's getHFHubCachePath
 *  reads process.env only, so it cannot take `env`.) */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const hub = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  if (hub) return expandHome(hub);
  const home = env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "huggingface");
  return join(expandHome(home), "hub");
}

/** A model repo's folder in the hub cache (huggingface_hub repo_folder_name): "org/name" -> "models--org--name". */
export function repoFolderName(repoId: string): string {
  return `models--${repoId.split("/").join("--")}`;
}

// ---- which files a diffusers img2img pipeline needs (ref: diffusers pipeline_loading_utils) ----

const CONFIG_FILES = ["config.json", "scheduler_config.json"];
const TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"];
const WEIGHT_COMPONENTS = new Set(["unet", "vae", "text_encoder", "text_encoder_2"]);
const SKIPPED_COMPONENTS = new Set(["safety_checker", "feature_extractor"]);
const WEIGHT_STEMS = ["diffusion_pytorch_model", "model"];

/** Files to fetch given the repo's paths and model_index.json. Sharded weights appear as their
 *  index json in `indexes` (the shards are read from its weight_map with `shardFiles`). */
export function selectPipelineFiles(have: Set<string>, modelIndex: Record<string, unknown>, variant: string, tokenizerOnly = false) {
  const files = ["model_index.json"];
  const indexes: string[] = [];
  for (const [comp, value] of Object.entries(modelIndex)) {
    if (comp.startsWith("_") || !Array.isArray(value) || value[0] == null || value[1] == null) continue;
    if (SKIPPED_COMPONENTS.has(comp) || (tokenizerOnly && !comp.startsWith("tokenizer"))) continue;
    const wanted = [...CONFIG_FILES, ...(comp.startsWith("tokenizer") ? TOKENIZER_FILES : [])];
    files.push(...wanted.map((f) => `${comp}/${f}`).filter((p) => have.has(p)));
    if (!WEIGHT_COMPONENTS.has(comp)) continue;
    const w = pickWeights(comp, have, variant);
    files.push(w);
    if (w.endsWith(".json")) indexes.push(w);
  }
  return { files, indexes };
}

/** Variant first (single file, then sharded index), else the plain weights; never .bin/.ckpt/flax/onnx. */
function pickWeights(comp: string, have: Set<string>, variant: string): string {
  const dir = comp ? `${comp}/` : ""; // "" = a single-component repo (weights at the root)
  for (const v of variant ? [variant, ""] : [""]) {
    for (const stem of WEIGHT_STEMS) {
      const single = `${dir}${stem}${v ? `.${v}` : ""}.safetensors`;
      const index = `${dir}${stem}.safetensors.index${v ? `.${v}` : ""}.json`;
      if (have.has(single)) return single;
      if (have.has(index)) return index;
    }
  }
  const found = [...have].filter((p) => p.startsWith(dir) && !p.endsWith(".json"));
  throw new ReimagineError(
    `Component '${comp || "(repo root)"}' has no usable .safetensors weights (variant '${variant || "none"}' ` +
      `or plain); found: ${found.join(", ") || "nothing"}. Use a repo that ships safetensors` +
      `${found.some((p) => p.endsWith(".safetensors")) ? " or pick the variant it ships" : ""}.`,
    "missing_weights",
  );
}

/** Shard paths listed in a sharded-weights index json (weight_map values, relative to its folder). */
export function shardFiles(indexPath: string, indexJson: string): string[] {
  const map = (parsePythonJson(indexJson) as { weight_map?: Record<string, string> }).weight_map ?? {};
  const names = [...new Set(Object.values(map))];
  if (!names.length || names.some((n) => n.includes("/") || n.includes("\\") || n.startsWith("."))) {
    throw new ReimagineError(`${indexPath} has an invalid weight_map (no shards, or shard names with folders).`, "missing_weights");
  }
  return names.map((n) => `${dirname(indexPath)}/${n}`);
}

// ---- HTTP: one wrapped fetch adds auth and turns failures into ReimagineErrors ----

interface Ctx {
  repoId: string;
  revision: string;
  storage: string;
  endpoint: string;
  variant: string;
  tokenizerOnly: boolean;
  token?: string;
  signal?: AbortSignal;
  onProgress?: (e: HubProgressEvent) => void;
  fetch: typeof fetch;
}

/** The download context: cache folder, endpoint (checked), token and the wrapped fetch. */
function makeContext(repoId: string, revision: string, opts: HubOptions, what: { variant: string; tokenizerOnly: boolean }): Ctx {
  const env = process.env;
  const endpoint = (opts.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(endpoint) || !URL.canParse(endpoint)) {
    throw new ReimagineError(`HF_ENDPOINT '${endpoint}' is not an http(s) URL: unset it, or use one such as ${DEFAULT_ENDPOINT}`);
  }
  const ctx: Ctx = {
    repoId,
    revision,
    ...what,
    signal: opts.signal,
    onProgress: opts.onProgress,
    storage: join(opts.cacheDir ?? hubCacheDir(env), repoFolderName(repoId)),
    endpoint,
    token: opts.token ?? (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined),
    fetch,
  };
  ctx.fetch = hubFetch(ctx, opts.fetch ?? fetch);
  return ctx;
}

function hubFetch(ctx: Ctx, base: typeof fetch): typeof fetch {
  const origin = new URL(ctx.endpoint).origin;
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(input instanceof Request ? input.url : input.toString());
    const headers = new Headers(init.headers);
    // The token goes to the hub only, never to a CDN (fetch also drops it on cross-origin redirects).
    if (ctx.token && url.origin === origin) headers.set("Authorization", `Bearer ${ctx.token}`);
    let res: Response;
    try {
      res = await base(url, { ...init, headers, signal: ctx.signal });
    } catch (e) {
      ctx.signal?.throwIfAborted();
      throw unreachable(ctx, e);
    }
    if (res.status >= 400) throw await httpError(ctx, res);
    return res;
  }) as typeof fetch;
}

function unreachable(ctx: Ctx, e: unknown): ReimagineError {
  const c = (e as { cause?: { code?: string; message?: string } }).cause;
  const why = c?.code ?? c?.message ?? (e as Error).message;
  return new ReimagineError(
    `Cannot reach ${ctx.endpoint} to download ${ctx.repoId} (${why}): check the internet ` +
      `connection (and HF_ENDPOINT), or set HF_HUB_OFFLINE=1 to use a model already in the cache.`,
    "hub_unreachable",
    { cause: e },
  );
}

async function httpError(ctx: Ctx, res: Response): Promise<ReimagineError> {
  await res.body?.cancel().catch(() => undefined);
  const code = res.headers.get("x-error-code");
  const { repoId, revision, endpoint } = ctx;
  if (code === "RevisionNotFound") {
    return new ReimagineError(
      `Revision '${revision}' not found in ${repoId} on ${endpoint}: check the branch, tag ` + `or commit after '@'.`,
      "hub_revision_not_found",
    );
  }
  if (code === "RepoNotFound") {
    return new ReimagineError(
      `Repository ${repoId} not found on ${endpoint}: check the name (it is case-sensitive); ` + `if it is private, set HF_TOKEN to a token that can read it.`,
      "hub_not_found",
    );
  }
  if (res.status === 401 || res.status === 403 || code === "GatedRepo") {
    return new ReimagineError(
      `Access to ${repoId} was refused (HTTP ${res.status}): the model is gated or private. ` +
        `Accept its licence at ${endpoint}/${repoId} and set HF_TOKEN to an access token of that account` +
        `${ctx.token ? " (the token sent was refused)" : ""}.`,
      "hub_unauthorized",
    );
  }
  if (res.status === 404) {
    return new ReimagineError(
      `${repoId}@${revision}: ${new URL(res.url || endpoint).pathname} was not found on ` +
        `${endpoint} (repository, revision or file): check the repo id and revision.`,
      "hub_not_found",
    );
  }
  return new ReimagineError(
    `${endpoint} answered HTTP ${res.status} while downloading ${repoId}: try again later, ` + `or set HF_HUB_OFFLINE=1 to use a model already in the cache.`,
    "hub_http_error",
  );
}

// ---- the cache (layout shared with Python's huggingface_hub) ----

/**
 * What one kind of repo needs: the files to fetch, from the repo's file list (`have`) and the text of
 * files already needed (`read`: from the snapshot offline, downloaded first online). Throws naming what
 * the repo lacks. The two kinds: a diffusers pipeline (pipelineFiles) and one component (componentFiles).
 */
type RepoPlan = (ctx: Ctx, have: Set<string>, read: (path: string) => Promise<string>) => Promise<string[]>;

/** model_index.json -> components -> files; shard lists come from the index jsons. */
const pipelineFiles: RepoPlan = async (ctx, have, read) => {
  if (!have.has("model_index.json")) {
    throw new ReimagineError(`${ctx.repoId} has no model_index.json: it is not a diffusers pipeline repo (use a diffusers-format model).`, "not_diffusers");
  }
  const plan = selectPipelineFiles(have, parsePythonJson(await read("model_index.json")) as Record<string, unknown>, ctx.variant, ctx.tokenizerOnly);
  const files = [...plan.files];
  for (const ix of plan.indexes) {
    const shards = shardFiles(ix, await read(ix));
    const absent = shards.filter((s) => !have.has(s));
    if (absent.length) throw new ReimagineError(`${ctx.repoId}: ${ix} lists shards missing from the repo: ${absent.join(", ")}.`, "missing_weights");
    files.push(...shards);
  }
  return files;
};

/** config.json and one weights file at the repo root (an AutoencoderTiny such as madebyollin/taesd). */
const componentFiles: RepoPlan = async (ctx, have) => {
  if (!have.has("config.json")) {
    throw new ReimagineError(
      `${ctx.repoId} has no config.json at its root: it is not a single-component diffusers repo (such as madebyollin/taesd).`,
      "not_diffusers",
    );
  }
  const weights = pickWeights("", have, ctx.variant);
  if (weights.endsWith(".json")) throw new ReimagineError(`${ctx.repoId}: sharded weights are not supported for a single-component repo.`, "missing_weights");
  return ["config.json", weights];
};

/** The LoRA of a LoRA repo (latent-consistency/lcm-lora-sdv1-5): its one root .safetensors, or diffusers' pytorch_lora_weights.safetensors. */
const loraFiles: RepoPlan = async (ctx, have) => {
  const files = [...have].filter((p) => !p.includes("/") && p.endsWith(".safetensors")).sort();
  if (files.length === 1) return files;
  if (files.includes("pytorch_lora_weights.safetensors")) return ["pytorch_lora_weights.safetensors"];
  const what = files.length ? `${files.length} .safetensors files (${files.slice(0, 4).join(", ")})` : "no .safetensors file at its root";
  throw new ReimagineError(`${ctx.repoId} has ${what}: a LoRA repo holds one; download the file you want and give its path`, "not_lora_repo");
};

/** Offline resolution: refs/<revision> -> snapshots/<commit>, checked to hold every file the plan needs. */
async function cachedSnapshot(ctx: Ctx, plan: RepoPlan): Promise<string | undefined> {
  const refPath = join(ctx.storage, "refs", ...ctx.revision.split("/"));
  const commit = COMMIT.test(ctx.revision) ? ctx.revision : existsSync(refPath) ? (await readFile(refPath, "utf8")).trim() : undefined;
  const snapshot = commit && join(ctx.storage, "snapshots", commit);
  if (!snapshot || !existsSync(snapshot)) return undefined;
  // statSync follows the symlinks: a pointer to a missing blob does not count.
  const have = new Set(
    (readdirSync(snapshot, { recursive: true }) as string[])
      .filter((p) => statSync(join(snapshot, p), { throwIfNoEntry: false })?.isFile())
      .map((p) => p.split(sep).join("/")),
  );
  try {
    const missing = (await plan(ctx, have, (p) => readFile(join(snapshot, ...p.split("/")), "utf8"))).filter((p) => !have.has(p));
    if (missing.length) throw new ReimagineError(`missing ${missing.join(", ")}`);
  } catch (e) {
    throw new ReimagineError(
      `The cached copy of ${ctx.repoId} at ${snapshot} is incomplete (${(e as Error).message}): ` +
        `run once online to finish the download, or unset HF_HUB_OFFLINE.`,
      "not_cached",
      { cause: e },
    );
  }
  return snapshot;
}

async function writeRef(ctx: Ctx, commit: string) {
  if (ctx.revision === commit) return;
  const refPath = join(ctx.storage, "refs", ...ctx.revision.split("/"));
  if (existsSync(refPath) && (await readFile(refPath, "utf8")) === commit) return;
  await mkdir(dirname(refPath), { recursive: true });
  const tmp = `${refPath}.${process.pid}.tmp`;
  await writeFile(tmp, commit);
  await rename(tmp, refPath); // atomic: readers never see a half-written ref
}

/** Relative symlink snapshots/<commit>/<path> -> ../../blobs/<etag> (a copy where symlinks fail, as Python). */
async function linkPointer(blob: string, pointer: string) {
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch {
    await copyFile(blob, pointer);
  }
}

/** What the blob is named and must hash to. From the tree listing (one request for all files);
 *  Xet-only entries without `lfs` fall back to a HEAD like hf_hub_download (X-Linked-Etag). */
async function blobMeta(ctx: Ctx, entry: ListFileEntry, url: string): Promise<{ etag: string; size: number }> {
  if (entry.lfs) return { etag: entry.lfs.oid, size: entry.lfs.size };
  if (!entry.xetHash && entry.oid) return { etag: entry.oid, size: entry.size };
  const res = await ctx.fetch(url, { method: "HEAD", redirect: "manual", headers: { "Accept-Encoding": "identity" } });
  const etag = (res.headers.get("x-linked-etag") ?? res.headers.get("etag") ?? "").replace(/^W\//, "").replace(/"/g, "");
  const size = Number(res.headers.get("x-linked-size") ?? res.headers.get("content-length"));
  if (!etag || !Number.isFinite(size)) {
    throw new ReimagineError(`${ctx.endpoint} gave no ETag/size for ${entry.path}: check HF_ENDPOINT points at a Hugging Face hub.`, "hub_http_error");
  }
  return { etag, size };
}

async function hashFile(path: string, algo: "sha256" | "sha1", prefix = ""): Promise<string> {
  const h = createHash(algo).update(prefix);
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Checks size and hash (sha256 for LFS etags, git blob sha1 for git etags); deletes a bad file. */
async function verify(ctx: Ctx, file: string, path: string, etag: string, size: number) {
  const got = (await stat(file)).size;
  const hash =
    got !== size
      ? `${got} bytes`
      : /^[0-9a-f]{64}$/.test(etag)
        ? await hashFile(file, "sha256")
        : COMMIT.test(etag)
          ? await hashFile(file, "sha1", `blob ${size}\0`)
          : etag;
  if (hash === etag) return;
  await rm(file, { force: true });
  throw new ReimagineError(
    `The download of ${path} from ${ctx.repoId} was corrupted (got ${hash}, expected ` +
      `${got !== size ? `${size} bytes` : etag}); the bad file was deleted: run the command again.`,
    "download_corrupted",
  );
}

/** GET into `<blob>.incomplete`, resuming with a Range request after a cut (5 tries without progress,
 *  as huggingface_hub http_get) and from a `.incomplete` left by an earlier run. @huggingface/hub's downloadFileToCacheDir has no resume, no hash
 *  check, no progress and no abort, hence this code. */
async function download(ctx: Ctx, url: string, file: string, path: string, total: number) {
  let tries = 5;
  for (;;) {
    let have = existsSync(file) ? (await stat(file)).size : 0;
    if (have >= total) return; // complete (or too long: verify() refuses it)
    const headers: Record<string, string> = { "Accept-Encoding": "identity" };
    if (have > 0) headers.Range = `bytes=${have}-`;
    const res = await ctx.fetch(url, { headers, redirect: "follow" });
    const resumed = res.status === 206 && (res.headers.get("content-range") ?? "").startsWith(`bytes ${have}-`);
    if (!resumed) have = 0; // the server ignored the Range: start over
    const out = await open(file, have > 0 ? "a" : "w");
    let cut: unknown;
    try {
      const reader = res.body!.getReader();
      for (let loaded = have; ; ) {
        // Only network reads are retried; a failing disk write (full disk...) is thrown as is.
        const chunk = await reader.read().catch((e: unknown) => ({ error: e }));
        if ("error" in chunk) {
          cut = chunk.error;
          break;
        }
        if (chunk.done) break;
        await out.write(chunk.value);
        loaded += chunk.value.length;
        tries = 5; // data arrived: reset the retry budget
        ctx.onProgress?.({ file: path, loaded, total, done: false });
      }
    } finally {
      await out.close();
    }
    if (cut === undefined) return; // a complete response: verify() checks size and hash
    ctx.signal?.throwIfAborted();
    if (--tries < 0) throw unreachable(ctx, cut);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Makes snapshots/<commit>/<path> exist, downloading the blob only when the cache lacks it. */
async function ensureFile(ctx: Ctx, commit: string, entry: ListFileEntry | undefined, path: string) {
  const pointer = join(ctx.storage, "snapshots", commit, ...path.split("/"));
  if (existsSync(pointer)) return pointer;
  if (!entry) throw new ReimagineError(`${ctx.repoId}@${commit} lists ${path} but the tree has no such file.`, "hub_not_found");
  const url = `${ctx.endpoint}/${ctx.repoId}/resolve/${commit}/${path.split("/").map(encodeURIComponent).join("/")}`;
  const { etag, size } = await blobMeta(ctx, entry, url);
  const blob = join(ctx.storage, "blobs", etag);
  if (!existsSync(blob)) {
    await mkdir(dirname(blob), { recursive: true });
    const incomplete = `${blob}.incomplete`;
    await download(ctx, url, incomplete, path, size);
    await verify(ctx, incomplete, path, etag, size);
    await rename(incomplete, blob);
  }
  await linkPointer(blob, pointer);
  ctx.onProgress?.({ file: path, loaded: size, total: size, done: true });
  return pointer;
}

/**
 * Download (or find in the cache) what a diffusers img2img pipeline needs; returns the snapshot folder.
 * @example const dir = await downloadDiffusersModel("stable-diffusion-v1-5/stable-diffusion-v1-5@main");
 */
export async function downloadDiffusersModel(repoRef: string, opts: HubOptions = {}): Promise<string> {
  return downloadRepo(repoRef, opts, { variant: opts.variant ?? "fp16", tokenizerOnly: opts.tokenizerOnly ?? false }, pipelineFiles);
}

/**
 * Download (or find in the cache) a single-component diffusers repo, config.json and weights at its root
 * (an AutoencoderTiny such as madebyollin/taesd); returns the snapshot folder. Same cache, offline rules,
 * resume and checks as downloadDiffusersModel; `variant` defaults to none (plain weights).
 * @example const dir = await downloadComponentRepo("madebyollin/taesd");
 */
export async function downloadComponentRepo(repoRef: string, opts: HubOptions = {}): Promise<string> {
  return downloadRepo(repoRef, opts, { variant: opts.variant ?? "", tokenizerOnly: false }, componentFiles);
}

/**
 * Download (or find in the cache) the LoRA file of a LoRA repo (one .safetensors at its root, or diffusers'
 * pytorch_lora_weights.safetensors); returns the file's path in the snapshot. Same cache and offline rules as models.
 * @example const file = await downloadLoraRepo("latent-consistency/lcm-lora-sdv1-5");
 */
export async function downloadLoraRepo(repoRef: string, opts: HubOptions = {}): Promise<string> {
  let chosen = "";
  const pick: RepoPlan = async (ctx, have, read) => {
    const files = await loraFiles(ctx, have, read);
    chosen = files[0];
    return files;
  };
  const snapshot = await downloadRepo(repoRef, opts, { variant: "", tokenizerOnly: false }, pick);
  return join(snapshot, chosen);
}

/** The one download flow: offline -> the cache; online -> revision to commit, the plan's files, fetch what is missing. */
async function downloadRepo(repoRef: string, opts: HubOptions, what: { variant: string; tokenizerOnly: boolean }, plan: RepoPlan): Promise<string> {
  const ref = parseRepoRef(repoRef);
  if (opts.revision && repoRef.includes("@") && opts.revision !== ref.revision) {
    throw new ReimagineError(`Two revisions given for ${ref.repoId}: '@${ref.revision}' and revision '${opts.revision}': keep one.`);
  }
  const revision = repoRef.includes("@") ? ref.revision : (opts.revision ?? "main");
  if (opts.revision) parseRepoRef(`${ref.repoId}@${revision}`); // validates the revision
  const ctx = makeContext(ref.repoId, revision, opts, what);

  if (opts.localFilesOnly ?? isTrue(process.env.HF_HUB_OFFLINE)) {
    const found = await cachedSnapshot(ctx, plan);
    if (found) return found;
    throw new ReimagineError(
      `${ctx.repoId}@${revision} is not in the Hugging Face cache (${dirname(ctx.storage)}) and downloads are ` +
        `off (${opts.localFilesOnly ? "localFilesOnly" : "HF_HUB_OFFLINE=1"}): run once online to download it, or unset HF_HUB_OFFLINE.`,
      "not_cached",
    );
  }

  // 1. revision -> commit and file list (the cache is the fallback when the hub can't be asked, as in Python)
  let info: { sha?: string; filePaths: string[] };
  try {
    info = await (await hubClient()).modelInfo({ name: ctx.repoId, revision, hubUrl: ctx.endpoint, fetch: ctx.fetch, additionalFields: ["sha", "filePaths"] });
  } catch (e) {
    ctx.signal?.throwIfAborted();
    if ((e as ReimagineError).code === "hub_revision_not_found") throw e;
    const found = await cachedSnapshot(ctx, plan).catch(() => undefined);
    if (found) return found;
    throw e;
  }
  const commit = info.sha ?? "";
  if (!COMMIT.test(commit)) throw new ReimagineError(`${ctx.endpoint} gave no commit for ${ctx.repoId}@${revision}: check HF_ENDPOINT.`, "hub_http_error");
  await writeRef(ctx, commit);
  const snapshot = join(ctx.storage, "snapshots", commit);

  // 2. the tree listing (sizes, sha256) is fetched only if some file is missing from the snapshot
  let tree: Map<string, ListFileEntry> | undefined;
  const entry = async (path: string) => {
    if (!tree && !existsSync(join(snapshot, ...path.split("/")))) {
      tree = new Map();
      for await (const e of (await hubClient()).listFiles({ repo: ctx.repoId, revision: commit, recursive: true, hubUrl: ctx.endpoint, fetch: ctx.fetch })) {
        if (e.type === "file") tree.set(e.path, e);
      }
    }
    return tree?.get(path);
  };
  const ensure = async (path: string) => ensureFile(ctx, commit, await entry(path), path);

  // 3. the files this kind of repo needs (what the plan reads is fetched first)
  const files = await plan(ctx, new Set(info.filePaths), async (p) => readFile(await ensure(p), "utf8"));

  // 4. announce what will be downloaded (so an overall bar knows its total), then fetch it
  const todo = files.filter((p) => !existsSync(join(snapshot, ...p.split("/"))));
  for (const p of todo) {
    const e = await entry(p);
    ctx.onProgress?.({ file: p, loaded: 0, total: e?.lfs?.size ?? e?.size ?? 0, done: false });
  }
  for (const p of todo) await ensure(p);
  return snapshot;
}
