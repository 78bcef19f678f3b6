// The LoRAs of one run on a loaded model: requests (src/lora/spec.ts) found in the LoRA folders, as files or hub
// repos, read and matched to the model once per file content, the model switched to its LoRA-slot graphs (once: it
// stays there, rank 0 = the plain graphs bit for bit, so later runs with or without LoRA load nothing), and the slot
// feeds of each component. Switching LoRAs or weights changes feeds only. Ref: docs/lora-and-prompts.md.
import { existsSync, statSync } from "node:fs";
import { ReimagineError } from "../errors.js";
import { type LoraSlot, slotsFromInputs } from "../graph/lora-slots.js";
import type { StableDiffusionModel } from "../pipeline/components.js";
import { downloadLoraRepo, looksLikeRepoId } from "../weights/hub.js";
import { findLora, listLoras, loraHashesInfotext, loraShortHash } from "./catalog.js";
import { type FeedTensor, loraFeeds } from "./feeds.js";
import { type LoraComponent, readLoraFile } from "./file.js";
import { modelModules } from "./names.js";
import { type ModelLayers, type ResolvedLora, resolveLora } from "./resolve.js";
import { checkLoraDirs, envLoraDirs, type LoraRequest, type LoraRunOptions, loraRequests } from "./spec.js";

/** A LoRA of a run, read and matched to the model. */
export interface RunLora {
  /** As mentioned (tag or option): the name `Lora hashes` records. */
  name: string;
  path: string;
  lora: ResolvedLora;
  te: number;
  unet: number;
  dynDim?: number;
}

/** A run's LoRAs and its prompts without tags. */
export interface RunLoras {
  prompt: string;
  prompt2?: string;
  loras: RunLora[];
}

interface ModelState {
  /** Resolved files by path + size + mtime (a few, most recent last). */
  files: Map<string, ResolvedLora>;
  layers?: ModelLayers;
  /** Switched to the LoRA-slot graphs. */
  slots: boolean;
  /** Text encoders take textual-inversion rows (`extra_token_embeddings`). */
  extraTokens: boolean;
  unetFeeds?: { key: string; feeds: Record<string, FeedTensor> };
}

const states = new WeakMap<StableDiffusionModel, ModelState>();
const state = (model: StableDiffusionModel): ModelState => {
  let s = states.get(model);
  if (!s) {
    s = { files: new Map(), slots: false, extraTokens: false };
    states.set(model, s);
  }
  return s;
};

/** Resolved files kept per model (a server switching among a few LoRAs reads each once). */
const KEEP_FILES = 8;

/** The model's Linear/Conv2d layers per component, for matching LoRA modules. */
function modelLayers(model: StableDiffusionModel): ModelLayers {
  const s = state(model);
  if (!s.layers) {
    const c = model.components;
    s.layers = {
      unet: modelModules(model.unetWeights),
      ...(c.text_encoder ? { text_encoder: modelModules(c.text_encoder.weights) } : {}),
      ...(c.text_encoder_2 ? { text_encoder_2: modelModules(c.text_encoder_2.weights) } : {}),
    };
  }
  return s.layers;
}

const repoFiles = new Map<string, string>();

/** The file a request names: in the LoRA folders by name, else the file, else a hub repo's LoRA. */
async function locate(r: LoraRequest, dirs: readonly string[]): Promise<string> {
  if ("name" in r.from) {
    checkLoraDirs(dirs);
    return findLora(r.from.name, listLoras(dirs)).path;
  }
  const p = r.from.path;
  if (existsSync(p)) {
    if (!statSync(p).isFile()) throw new ReimagineError(`LoRA '${p}' is a folder: give a .safetensors file`, "invalid_input");
    return p;
  }
  if (looksLikeRepoId(p) && !/\.safetensors$/i.test(p)) {
    // the hub is asked once per process and repo (its commit for the revision), as a model is asked once per load
    let file = repoFiles.get(p);
    if (!file) {
      file = await downloadLoraRepo(p);
      repoFiles.set(p, file);
    }
    return file;
  }
  throw new ReimagineError(`LoRA file not found: ${p} (give a .safetensors file, a name in the LoRA folders, or a Hugging Face repo id)`, "not_found");
}

function resolved(model: StableDiffusionModel, path: string): ResolvedLora {
  const st = statSync(path);
  const key = `${path}\u0000${st.size}\u0000${st.mtimeMs}`;
  const files = state(model).files;
  let lora = files.get(key);
  if (lora) files.delete(key);
  else lora = resolveLora(readLoraFile(path), modelLayers(model));
  files.set(key, lora);
  if (files.size > KEEP_FILES) files.delete(files.keys().next().value!);
  return lora;
}

/**
 * A run's LoRAs resolved against the model. Missing names (with close matches), files of another family, corrupt
 * files and bad weights are ReimagineErrors.
 *
 * @example const { prompt, loras } = await runLoras(model, { prompt: "a cat <lora:watercolor:0.8>", loraDirs: ["loras"] });
 */
export async function runLoras(model: StableDiffusionModel, opts: LoraRunOptions): Promise<RunLoras> {
  const { prompt, prompt2, requests } = loraRequests(opts);
  const dirs = opts.loraDirs ?? envLoraDirs();
  const loras: RunLora[] = [];
  for (const r of requests) {
    const path = await locate(r, dirs);
    loras.push({ name: r.name, path, lora: resolved(model, path), te: r.te, unet: r.unet, dynDim: r.dynDim });
  }
  return { prompt, prompt2, loras };
}

/**
 * runLoras, then the model's switch to its LoRA-slot text encoders when the run has LoRAs (the UNet variant
 * follows through the extension's unetOptions). Returns whether the model now runs slot graphs.
 */
export async function prepareRunLoras(model: StableDiffusionModel, opts: LoraRunOptions): Promise<RunLoras & { slots: boolean }> {
  const run = await runLoras(model, opts);
  if (run.loras.length > 0) await useTextInputs(model, { loraSlots: true });
  return { ...run, slots: state(model).slots };
}

/**
 * Switches the text encoders to the graph variant with these extra inputs (LoRA slots, textual-inversion rows). The
 * switch is one-way: inputs once added stay (fed rank 0 / a zero row they give the plain bits), so later runs load nothing.
 */
export async function useTextInputs(model: StableDiffusionModel, want: { loraSlots?: boolean; extraTokens?: boolean }): Promise<void> {
  const s = state(model);
  const next = { loraSlots: s.slots || want.loraSlots === true, extraTokens: s.extraTokens || want.extraTokens === true };
  if (next.loraSlots === s.slots && next.extraTokens === s.extraTokens) return;
  await model.useTextEncoderVariant(next);
  s.slots = next.loraSlots;
  s.extraTokens = next.extraTokens;
}

const slotCache = new WeakMap<object, LoraSlot[]>();
function slotsOf(inputNames: readonly string[], shape: (k: string) => readonly number[] | undefined, owner: object): LoraSlot[] {
  let slots = slotCache.get(owner);
  if (!slots) {
    slots = slotsFromInputs(inputNames, shape);
    slotCache.set(owner, slots);
  }
  return slots;
}

/** Identity of a component's LoRA feeds (files and multipliers); "" without LoRA. */
export function feedsKey(loras: readonly RunLora[], part: "te" | "unet"): string {
  return loras
    .filter((l) => l[part] !== 0)
    .map((l) => `${l.lora.fingerprint}*${l[part]}*${l.dynDim ?? ""}`)
    .join("+");
}

/** A text encoder's slot feeds for the LoRAs' text-encoder multipliers (rank 0 without LoRA); {} for a plain graph. */
export function textEncoderFeeds(model: StableDiffusionModel, name: "text_encoder" | "text_encoder_2", loras: readonly RunLora[]): Record<string, FeedTensor> {
  const te = model.components[name];
  if (!te?.session.inputNames.some((n) => n.endsWith(".lora_down"))) return {};
  const slots = slotsOf(te.session.inputNames, (k) => te.weights.info(k)?.shape, te.session);
  return loraFeeds(
    slots,
    name satisfies LoraComponent,
    loras.map((l) => ({ lora: l.lora, multiplier: l.te, dynDim: l.dynDim })),
  );
}

/** The loaded UNet's slot feeds for the LoRAs' UNet multipliers (the last set is kept: repeated runs reuse it). */
export function unetFeeds(model: StableDiffusionModel, loras: readonly RunLora[]): Record<string, FeedTensor> {
  const names = model.unetInputNames;
  const s = state(model);
  const key = `${names.length}\u0000${feedsKey(loras, "unet")}`;
  if (s.unetFeeds?.key === key) return s.unetFeeds.feeds;
  s.unetFeeds = undefined; // drop the old feeds before building new ones (memory)
  const slots = slotsFromInputs(names, (k) => model.unetWeights.info(k)?.shape);
  const feeds = loraFeeds(
    slots,
    "unet",
    loras.map((l) => ({ lora: l.lora, multiplier: l.unet, dynDim: l.dynDim })),
  );
  s.unetFeeds = { key, feeds };
  return feeds;
}

const hashes = new Map<string, string>();
/**
 * A1111's `Lora hashes` infotext value of a run's LoRAs (short hashes cached per file content).
 * @example loraHashes(run.loras) // "watercolor: 3f1a2b4c5d6e"
 */
export function loraHashes(loras: readonly RunLora[]): string {
  const byName = new Map<string, string>(); // A1111 keeps one entry per mentioned name (a dict)
  for (const l of loras) {
    let hash = hashes.get(l.lora.fingerprint);
    if (hash === undefined) {
      hash = loraShortHash(l.path);
      hashes.set(l.lora.fingerprint, hash);
    }
    byName.set(l.name, hash);
  }
  return loraHashesInfotext([...byName].map(([name, hash]) => ({ name, hash })));
}
