// `npx tsx bench/lora.ts`: what LoRA slots cost on the SD 1.5 architecture (random weights, no download): the plain
// UNet vs the UNet with LoRA slots, fed no LoRA, a random rank-32 LoRA on the attention layers (kohya's default
// targets) and a rank-32 LoCon (attention + resnet/sampler convs); time to switch LoRAs or weights (read + resolve +
// feeds), per-step time at batch 2 (the CFG batch), peak and current RSS. Plain and slots run in separate child
// processes so each peak RSS is its own. A program, not a test: it never fails because the machine is slow.
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cachedGraph, cacheRoot } from "../src/graph/cache.js";
import { type LoraSlot, loraSlotsOf } from "../src/graph/lora-slots.js";
import { loraFeeds } from "../src/lora/feeds.js";
import { readLoraFile } from "../src/lora/file.js";
import { type ModelLayers, resolveLora } from "../src/lora/resolve.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../src/models/clip-text.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { RandomWeights } from "../src/weights/random.js";
import { type TensorToWrite, writeSafetensors } from "../src/weights/safetensors.js";
import { fmtMs, log, median, now, peakRssMB } from "./measure.js";
import { sd15Graph, TEXT_ENCODER_CONFIG, UNET_CONFIG } from "./sd15.js";

const HELP = `npx tsx bench/lora.ts [--size 512] [--runs 3] [--rank 32] [--threads N] [--cache DIR] [--seed 0]
UNet (batch 2) step time plain vs with LoRA slots (no LoRA, rank-R attention LoRA, rank-R LoCon), LoRA switch
time and memory. Graphs go to the graph cache (--cache, default ${cacheRoot()}): ~3.4 GB per UNet graph.`;

interface Options { size: number; runs: number; rank: number; threads: number; cacheDir: string; seed: number }
type Variant = "plain" | "slots";

const rssMB = () => process.memoryUsage().rss / 2 ** 20;

async function timeRuns(label: string, runs: number, fn: () => Promise<unknown>) {
  let t = now();
  await fn();
  const firstMs = now() - t;
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = now();
    await fn();
    runsMs.push(now() - t);
  }
  log(`${label}: first ${fmtMs(firstMs)}, runs ${runsMs.map(fmtMs).join(", ")}`);
  return { firstMs, medianMs: median(runsMs), minMs: Math.min(...runsMs), rssMB: rssMB() };
}

/** A random kohya-format LoRA file (F16, like real ones) over `slots` of the UNet and text encoder. */
function writeRandomLora(path: string, rank: number, unet: LoraSlot[], te: LoraSlot[], seed: number): number {
  let s = seed >>> 0;
  const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1) * scale);
  const tensors: Record<string, TensorToWrite> = {};
  const add = (prefix: string, slot: LoraSlot) => {
    const k = slot.kernel;
    const key = `${prefix}_${slot.module.replace(/\./g, "_")}`;
    const downShape = slot.kind === "conv2d" ? [rank, slot.inF, k, k] : [rank, slot.inF];
    const upShape = slot.kind === "conv2d" ? [slot.outF, rank, 1, 1] : [slot.outF, rank];
    tensors[`${key}.lora_down.weight`] = { dtype: "F16", shape: downShape, data: rand(rank * slot.inF * k * k, 1 / Math.sqrt(slot.inF * k * k)) };
    tensors[`${key}.lora_up.weight`] = { dtype: "F16", shape: upShape, data: rand(slot.outF * rank, 0.01) };
    tensors[`${key}.alpha`] = { dtype: "F32", shape: [], data: Float32Array.of(rank / 2) };
  };
  for (const slot of unet) add("lora_unet", slot);
  for (const slot of te) add("lora_te", slot);
  writeSafetensors(path, tensors, { ss_network_module: "networks.lora" });
  return Object.values(tensors).reduce((n, t) => n + t.data.length * (t.dtype === "F16" ? 2 : 4), 0);
}

const layersOf = (slots: LoraSlot[]) => new Map(slots.map((s) => [s.module, s.kind === "conv2d" ? [s.outF, s.inF, s.kernel, s.kernel] : [s.outF, s.inF]]));
const feedMB = (feeds: Record<string, TensorData>) => Object.values(feeds).reduce((n, t) => n + t.data.byteLength, 0) / 2 ** 20;

async function child(variant: Variant, o: Options) {
  const weights = new RandomWeights(o.seed);
  const unetConfig = resolveUNetConfig(UNET_CONFIG);
  const feeds = sd15Graph("unet-b2", o.size, weights).feeds();
  const result: Record<string, unknown> = { variant };
  let t = now();
  if (variant === "plain") {
    const { path, built } = cachedGraph({ kind: "unet", config: unetConfig, weights }, () => buildUNet2DConditionModel(weights, unetConfig), o.cacheDir);
    result.buildMs = built ? now() - t : null;
    t = now();
    const unet = await ModelSession.load(path, { threads: o.threads });
    result.loadMs = now() - t;
    result.none = await timeRuns("plain", o.runs, () => unet.run(feeds));
    result.peakRssMB = peakRssMB();
    return result;
  }
  // slots: graphs built in memory first (cheap) to read the slot layout, saved only when the cache lacks them
  const g = buildUNet2DConditionModel(weights, unetConfig, { loraSlots: true });
  const unetSlots = loraSlotsOf(g);
  const teConfig = resolveCLIPTextConfig(TEXT_ENCODER_CONFIG);
  const teSlots = loraSlotsOf(buildCLIPTextModel(weights, teConfig, { loraSlots: true }));
  const { path, built } = cachedGraph({ kind: "unet", config: unetConfig, weights, extra: { loraSlots: true } }, () => g, o.cacheDir);
  result.buildMs = built ? now() - t : null;
  t = now();
  const unet = await ModelSession.load(path, { threads: o.threads });
  result.loadMs = now() - t;
  result.slots = { unet: unetSlots.length, textEncoder: teSlots.length };

  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-lora-"));
  try {
    const attention = unetSlots.filter((s) => s.module.includes(".attentions."));
    const locon = unetSlots.filter((s) => /\.(attentions|resnets|downsamplers|upsamplers)\./.test(s.module));
    const files = {
      lora: { path: join(dir, "attn-r.safetensors"), bytes: writeRandomLora(join(dir, "attn-r.safetensors"), o.rank, attention, teSlots, 1) },
      locon: { path: join(dir, "locon-r.safetensors"), bytes: writeRandomLora(join(dir, "locon-r.safetensors"), o.rank, locon, teSlots, 2) },
    };
    const model: ModelLayers = { unet: layersOf(unetSlots), text_encoder: layersOf(teSlots) };
    const switchTo = (file: string, multiplier: number) => {
      const t0 = now();
      const lora = resolveLora(readLoraFile(file), model);
      const t1 = now();
      const unetFeeds = loraFeeds(unetSlots, "unet", [{ lora, multiplier }]);
      const teFeeds = loraFeeds(teSlots, "text_encoder", [{ lora, multiplier }]);
      const t2 = now();
      return { lora, unetFeeds, teFeeds, readResolveMs: t1 - t0, feedsMs: t2 - t1 };
    };
    t = now();
    const none = loraFeeds(unetSlots, "unet", []);
    result.noneFeedsMs = now() - t;
    result.none = await timeRuns("slots, no LoRA", o.runs, () => unet.run({ ...feeds, ...none }));
    for (const [name, file] of Object.entries(files)) {
      const sw = switchTo(file.path, 1);
      const runs = await timeRuns(`slots, ${name} rank ${o.rank}`, o.runs, () => unet.run({ ...feeds, ...sw.unetFeeds }));
      t = now();
      const reweighted = loraFeeds(unetSlots, "unet", [{ lora: sw.lora, multiplier: 0.5 }]);
      const reweightMs = now() - t;
      t = now();
      await unet.run({ ...feeds, ...reweighted });
      const afterReweightMs = now() - t;
      result[name] = { fileMB: file.bytes / 2 ** 20, readResolveMs: sw.readResolveMs, feedsMs: sw.feedsMs, reweightMs, afterReweightMs, unetFeedMB: feedMB(sw.unetFeeds), teFeedMB: feedMB(sw.teFeeds), ...runs };
    }
    t = now();
    await unet.run({ ...feeds, ...none });
    result.backToNoneMs = now() - t;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  result.peakRssMB = peakRssMB();
  return result;
}

function parse(argv: string[]): Options & { child?: Variant; help: boolean } {
  const { values } = parseArgs({ args: argv, options: {
    size: { type: "string" }, runs: { type: "string" }, rank: { type: "string" }, threads: { type: "string" }, cache: { type: "string" }, seed: { type: "string" }, child: { type: "string" }, help: { type: "boolean", short: "h" },
  } });
  const int = (v: string | undefined, d: number, name: string) => {
    const n = Number(v ?? d);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got '${v}'`);
    return n;
  };
  return {
    size: int(values.size, 512, "size"), runs: int(values.runs, 3, "runs"), rank: int(values.rank, 32, "rank"),
    threads: int(values.threads, availableParallelism(), "threads"), seed: int(values.seed, 0, "seed"),
    cacheDir: resolve(values.cache ?? cacheRoot()), child: values.child as Variant | undefined, help: values.help ?? false,
  };
}

function runChild(variant: Variant, argv: string[]): Promise<Record<string, unknown>> {
  return new Promise((res, rej) => {
    const c = fork(fileURLToPath(import.meta.url), [...argv, "--child", variant], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let reply: Record<string, unknown> | undefined;
    c.on("message", (m) => (reply = m as Record<string, unknown>));
    c.on("exit", (code, signal) => (reply ? res(reply) : rej(new Error(`${variant} child exited (code ${code}, signal ${signal})`))));
  });
}

const o = parse(process.argv.slice(2));
if (o.help) console.log(HELP);
else if (o.child) {
  const r = await child(o.child, o);
  process.send!(r, () => process.exit(0));
} else {
  console.log(`LoRA slots on SD 1.5 (random weights), ${o.size}x${o.size}, UNet batch 2, ${o.threads} threads, ${o.runs} runs after 1 first run, rank ${o.rank}`);
  const plain = await runChild("plain", process.argv.slice(2));
  const slots = await runChild("slots", process.argv.slice(2));
  console.log(JSON.stringify({ plain, slots }, null, 2));
  const p = plain.none as { medianMs: number };
  const row = (name: string, r: { medianMs: number; minMs: number }) =>
    console.log(`${name.padEnd(28)} median ${fmtMs(r.medianMs).padStart(8)}  min ${fmtMs(r.minMs).padStart(8)}  ${(((r.medianMs / p.medianMs) - 1) * 100).toFixed(1).padStart(6)} % vs plain`);
  row("plain UNet", p as { medianMs: number; minMs: number });
  for (const k of ["none", "lora", "locon"]) row(`slots, ${k === "none" ? "no LoRA" : `${k} r${o.rank}`}`, slots[k] as { medianMs: number; minMs: number });
  for (const k of ["lora", "locon"]) {
    const r = slots[k] as Record<string, number>;
    console.log(`${k}: file ${r.fileMB.toFixed(1)} MB, switch = read+resolve ${fmtMs(r.readResolveMs)} + feeds ${fmtMs(r.feedsMs)}, reweight ${fmtMs(r.reweightMs)}, first step after switch ${fmtMs(r.firstMs)}, feeds UNet ${r.unetFeedMB.toFixed(1)} MB + TE ${r.teFeedMB.toFixed(1)} MB`);
  }
  console.log(`peak RSS: plain ${(plain.peakRssMB as number).toFixed(0)} MB, slots (all phases) ${(slots.peakRssMB as number).toFixed(0)} MB; session load plain ${fmtMs(plain.loadMs as number)}, slots ${fmtMs(slots.loadMs as number)}`);
}
