// `npx tsx bench/lora.ts`: what LoRA slots cost on the SD 1.5 architecture (random weights, no download): the plain
// UNet vs the UNet with LoRA slots, fed no LoRA, a random rank-32 LoRA on the attention layers (kohya's default
// targets) and a rank-32 LoCon (attention + resnet/sampler convs); time to switch LoRAs or weights (read + resolve +
// feeds), per-step time at batch 2 (the CFG batch, variants alternating in one process), peak RSS (plain and slots
// each in its own child process). A program, not a test: it never fails because the machine is slow.
import { fork } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { cachedGraph, cacheRoot } from "../src/graph/cache.js";
import { readProfile, summarizeProfile } from "../src/graph/flops.js";
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

const HELP = `npx tsx bench/lora.ts [--size 512] [--runs 3] [--rank 32] [--threads N] [--cache DIR] [--seed 0] [--only plain,slots,steps]
UNet (batch 2) step time plain vs with LoRA slots (no LoRA, rank-R attention LoRA, rank-R LoCon), LoRA switch
time and memory. Graphs go to the graph cache (--cache, default ${cacheRoot()}): ~3.4 GB per UNet graph.`;

interface Options {
  size: number;
  runs: number;
  rank: number;
  threads: number;
  cacheDir: string;
  seed: number;
}
type Variant = "plain" | "slots" | "steps";

const rssMB = () => process.memoryUsage().rss / 2 ** 20;

/** A random kohya-format LoRA file (F16, like real ones) over `slots` of the UNet and text encoder. */
function writeRandomLora(path: string, rank: number, unet: LoraSlot[], te: LoraSlot[], seed: number): number {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
  const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => next() * scale);
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

/** The LoRA setup of the slots variants: slot layouts, two random rank-R files, a switch function. */
function loraSetup(o: Options, weights: RandomWeights, dir: string) {
  const unetConfig = resolveUNetConfig(UNET_CONFIG);
  const g = buildUNet2DConditionModel(weights, unetConfig, { loraSlots: true }); // in memory: cheap, gives the slot layout
  const unetSlots = loraSlotsOf(g);
  const teSlots = loraSlotsOf(buildCLIPTextModel(weights, resolveCLIPTextConfig(TEXT_ENCODER_CONFIG), { loraSlots: true }));
  const attention = unetSlots.filter((s) => s.module.includes(".attentions."));
  const locon = unetSlots.filter((s) => /\.(attentions|resnets|downsamplers|upsamplers)\./.test(s.module));
  const files = {
    lora: { path: join(dir, "attn.safetensors"), bytes: writeRandomLora(join(dir, "attn.safetensors"), o.rank, attention, teSlots, 1) },
    locon: { path: join(dir, "locon.safetensors"), bytes: writeRandomLora(join(dir, "locon.safetensors"), o.rank, locon, teSlots, 2) },
  };
  const model: ModelLayers = { unet: layersOf(unetSlots), text_encoder: layersOf(teSlots) };
  /** LoRA switch: read + resolve the file, then the UNet and text-encoder feeds. */
  const switchTo = (file: string, multiplier: number) => {
    const t0 = now();
    const lora = resolveLora(readLoraFile(file), model);
    const t1 = now();
    const unetFeeds = loraFeeds(unetSlots, "unet", [{ lora, multiplier }]);
    const teFeeds = loraFeeds(teSlots, "text_encoder", [{ lora, multiplier }]);
    return { lora, unetFeeds, teFeeds, readResolveMs: t1 - t0, feedsMs: now() - t1 };
  };
  const graph = () => cachedGraph({ kind: "unet", config: unetConfig, weights, extra: { loraSlots: true } }, () => g, o.cacheDir);
  const session = async () => {
    const { path, built } = graph();
    return { built, session: await ModelSession.load(path, { threads: o.threads }) };
  };
  return { unetSlots, teSlots, files, switchTo, graph, session, none: () => loraFeeds(unetSlots, "unet", []) };
}

function plainGraph(o: Options, weights: RandomWeights) {
  const unetConfig = resolveUNetConfig(UNET_CONFIG);
  return cachedGraph({ kind: "unet", config: unetConfig, weights }, () => buildUNet2DConditionModel(weights, unetConfig), o.cacheDir);
}

async function plainSession(o: Options, weights: RandomWeights) {
  const { path, built } = plainGraph(o, weights);
  return { built, session: await ModelSession.load(path, { threads: o.threads }) };
}

/**
 * "plain" / "slots": one process per graph so that its peak RSS is its own (load, switch costs, one step with the
 * LoCon). "steps": both graphs in one process, runs alternating plain / no LoRA / LoRA / LoCon, so a busy machine
 * slows every variant alike and the per-step ratios stay meaningful.
 */
async function child(variant: Variant, o: Options) {
  const weights = new RandomWeights(o.seed);
  const feeds = sd15Graph("unet-b2", o.size, weights).feeds();
  const result: Record<string, unknown> = { variant };
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-lora-"));
  try {
    let t = now();
    if (variant === "plain") {
      const { built, session } = await plainSession(o, weights);
      result.loadMs = now() - t;
      result.built = built;
      t = now();
      await session.run(feeds);
      result.stepMs = now() - t;
      result.peakRssMB = peakRssMB();
      return result;
    }
    const setup = loraSetup(o, weights, dir);
    result.slots = { unet: setup.unetSlots.length, textEncoder: setup.teSlots.length };
    if (variant === "slots") {
      const { built, session } = await setup.session();
      result.loadMs = now() - t;
      result.built = built;
      t = now();
      const none = setup.none();
      result.noneFeedsMs = now() - t;
      await session.run({ ...feeds, ...none });
      for (const [name, file] of Object.entries(setup.files)) {
        const sw = setup.switchTo(file.path, 1);
        t = now();
        loraFeeds(setup.unetSlots, "unet", [{ lora: sw.lora, multiplier: 0.5 }]); // a new weight: feeds only
        const reweightMs = now() - t;
        t = now();
        await session.run({ ...feeds, ...sw.unetFeeds });
        const stepMs = now() - t;
        result[name] = {
          fileMB: file.bytes / 2 ** 20,
          readResolveMs: sw.readResolveMs,
          feedsMs: sw.feedsMs,
          reweightMs,
          stepMs,
          unetFeedMB: feedMB(sw.unetFeeds),
          teFeedMB: feedMB(sw.teFeeds),
          rssMB: rssMB(),
        };
      }
      result.peakRssMB = peakRssMB();
      return result;
    }
    // steps: alternate the variants
    const plain = (await plainSession(o, weights)).session;
    const slotted = (await setup.session()).session;
    const variants: Record<string, () => Promise<unknown>> = {
      plain: () => plain.run(feeds),
      none: (
        (f) => () =>
          slotted.run({ ...feeds, ...f })
      )(setup.none()),
      lora: (
        (f) => () =>
          slotted.run({ ...feeds, ...f })
      )(setup.switchTo(setup.files.lora.path, 1).unetFeeds),
      locon: (
        (f) => () =>
          slotted.run({ ...feeds, ...f })
      )(setup.switchTo(setup.files.locon.path, 1).unetFeeds),
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
    const cpu: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
    for (const run of Object.values(variants)) await run(); // first runs (ORT plans the shapes)
    for (let i = 0; i < o.runs; i++) {
      for (const [k, run] of Object.entries(variants)) {
        t = now();
        const c = process.cpuUsage();
        await run();
        const used = process.cpuUsage(c);
        times[k].push(now() - t);
        cpu[k].push((used.user + used.system) / 1000);
      }
      log(
        `round ${i + 1}/${o.runs}: ${Object.keys(times)
          .map((k) => `${k} ${fmtMs(times[k][i])} (cpu ${fmtMs(cpu[k][i])})`)
          .join(", ")}`,
      );
    }
    for (const k of Object.keys(times)) {
      const ratio = (xs: number[], base: number[]) => median(xs.map((x, i) => x / base[i]));
      result[k] = {
        medianMs: median(times[k]),
        minMs: Math.min(...times[k]),
        ratioVsPlain: ratio(times[k], times.plain),
        cpuMedianMs: median(cpu[k]),
        cpuRatioVsPlain: ratio(cpu[k], cpu.plain),
      };
    }
    await Promise.all([plain.release(), slotted.release()]);
    // FLOPs of the optimised graphs ORT ran, one profiled run per variant (deterministic, unlike time on a busy box)
    const plainPath = plainGraph(o, weights).path;
    const slotPath = setup.graph().path;
    const extraFeeds: Record<string, Record<string, TensorData>> = {
      plain: {},
      none: setup.none(),
      lora: setup.switchTo(setup.files.lora.path, 1).unetFeeds,
      locon: setup.switchTo(setup.files.locon.path, 1).unetFeeds,
    };
    for (const [k, extra] of Object.entries(extraFeeds)) {
      const profileDir = mkdtempSync(join(dir, "profile-"));
      const s = await ModelSession.load(k === "plain" ? plainPath : slotPath, { threads: o.threads, profileFilePrefix: join(profileDir, "ort") });
      await s.run({ ...feeds, ...extra });
      await s.release();
      const summary = summarizeProfile(readProfile(join(profileDir, readdirSync(profileDir).find((f) => f.endsWith(".json"))!)));
      (result[k] as Record<string, unknown>).gflop = summary.flops / 1e9;
      log(`${k}: ${(summary.flops / 1e9).toFixed(1)} GFLOP per step`);
    }
    result.peakRssMB = peakRssMB();
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parse(argv: string[]): Options & { child?: Variant; only: Variant[]; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: "string" },
      runs: { type: "string" },
      rank: { type: "string" },
      threads: { type: "string" },
      cache: { type: "string" },
      seed: { type: "string" },
      child: { type: "string" },
      only: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const int = (v: string | undefined, d: number, name: string) => {
    const n = Number(v ?? d);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got '${v}'`);
    return n;
  };
  return {
    size: int(values.size, 512, "size"),
    runs: int(values.runs, 3, "runs"),
    rank: int(values.rank, 32, "rank"),
    threads: int(values.threads, availableParallelism(), "threads"),
    seed: int(values.seed, 0, "seed"),
    cacheDir: resolve(values.cache ?? cacheRoot()),
    child: values.child as Variant | undefined,
    help: values.help ?? false,
    only: (values.only ?? "plain,slots,steps").split(",") as Variant[],
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
  console.log(`LoRA slots on SD 1.5 (random weights), ${o.size}x${o.size}, UNet batch 2, ${o.threads} threads, ${o.runs} alternating rounds, rank ${o.rank}`);
  const argv = process.argv.slice(2);
  const child = async (v: Variant) => (o.only.includes(v) ? runChild(v, argv) : undefined);
  const plain = await child("plain");
  const slots = await child("slots");
  const steps = await child("steps");
  console.log(JSON.stringify({ plain, slots, steps }, null, 2));
  report(o, plain, slots, steps);
}

function report(o: Options, plain?: Record<string, unknown>, slots?: Record<string, unknown>, steps?: Record<string, unknown>) {
  if (steps) {
    const pct = (r: number) => `${r >= 1 ? "+" : ""}${((r - 1) * 100).toFixed(1)} %`;
    const base = steps.plain as { gflop: number };
    console.log("UNet batch 2 per step        wall median (vs plain)   CPU time median (vs plain)   GFLOP (vs plain)");
    for (const k of ["plain", "none", "lora", "locon"]) {
      const r = steps[k] as { medianMs: number; ratioVsPlain: number; cpuMedianMs: number; cpuRatioVsPlain: number; gflop: number };
      const label = { plain: "plain UNet", none: "slots, no LoRA", lora: `slots, LoRA r${o.rank} (attention)`, locon: `slots, LoCon r${o.rank}` }[k]!;
      console.log(
        `${label.padEnd(29)}${fmtMs(r.medianMs).padStart(8)} (${pct(r.ratioVsPlain).padStart(8)})    ${fmtMs(r.cpuMedianMs).padStart(8)} (${pct(r.cpuRatioVsPlain).padStart(8)})      ${r.gflop.toFixed(1).padStart(7)} (${pct(r.gflop / base.gflop)})`,
      );
    }
  }
  if (slots)
    for (const k of ["lora", "locon"]) {
      const r = slots[k] as Record<string, number>;
      console.log(
        `${k}: file ${r.fileMB.toFixed(1)} MB; switch = read + resolve ${fmtMs(r.readResolveMs)} + feeds ${fmtMs(r.feedsMs)}; new weight ${fmtMs(r.reweightMs)}; feeds UNet ${r.unetFeedMB.toFixed(1)} MB + TE ${r.teFeedMB.toFixed(1)} MB; RSS ${r.rssMB.toFixed(0)} MB`,
      );
    }
  if (plain && slots)
    console.log(
      `peak RSS: plain ${(plain.peakRssMB as number).toFixed(0)} MB, slots with LoRA and LoCon loaded ${(slots.peakRssMB as number).toFixed(0)} MB; session load plain ${fmtMs(plain.loadMs as number)}, slots ${fmtMs(slots.loadMs as number)} (${plain.built || slots.built ? "includes a graph build" : "cached graphs"})`,
    );
}
