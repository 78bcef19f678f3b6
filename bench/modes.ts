// `npx tsx bench/modes.ts`: the opt-in fast modes against exact fp32 on the SD 1.5 architecture with
// seeded random weights (no download): UNet fp32 vs int8 (batch 1 and 2), AutoencoderKL vs TAESD
// (AutoencoderTiny, full-size default config), and an SD-Turbo-style img2img (2 steps x strength 0.5 =
// one UNet call, no CFG) exact vs int8 + TAESD through Img2ImgPipeline. Modes alternate per round.
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { cachedGraph, cacheRoot } from "../src/graph/cache.js";
import type { Graph } from "../src/graph/builder.js";
import { buildTinyDecoder, buildTinyEncoder, resolveTinyVaeConfig } from "../src/models/taesd.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { StableDiffusionModel } from "../src/pipeline/components.js";
import { Img2ImgPipeline } from "../src/pipeline/img2img.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { RandomWeights } from "../src/weights/random.js";
import { writeJson } from "./report.js";
import { fmtMs, log, median, now } from "./measure.js";
import { peakRssMB } from "./usage.js";
import { sd15Graph, SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG, UNET_CONFIG, VAE_CONFIG } from "./sd15.js";
import { standInTokenizer } from "./img2img.js";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "512" },
    runs: { type: "string", default: "3" },
    rounds: { type: "string", default: "1" },
    threads: { type: "string", default: String(availableParallelism()) },
    cache: { type: "string", default: cacheRoot() },
    only: { type: "string", default: "unet,vae,img2img" },
    json: { type: "string" },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);
const rounds = Number(values.rounds);
const threads = Number(values.threads);
const cacheDir = resolve(values.cache!);
const only = values.only!.split(",");
const weights = new RandomWeights(0);
const lat = size / 8;

/** TAESD with diffusers' AutoencoderTiny defaults (madebyollin/taesd's architecture). */
const TAESD_CONFIG = resolveTinyVaeConfig({ _class_name: "AutoencoderTiny" });

function filled(n: number, scale = 1): Float32Array {
  let s = 12345;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s / 2 ** 31 - 1) * scale;
  });
}

async function timeSession(label: string, kind: string, config: unknown, build: () => Graph, feeds: Record<string, TensorData>, extra?: unknown) {
  const { path, built } = cachedGraph({ kind, config, weights, extra }, build, cacheDir);
  let t = now();
  const s = await ModelSession.load(path, { threads });
  const loadMs = now() - t;
  const first = await s.run(feeds); // warm-up
  const out = Object.values(first)[0].data as Float32Array;
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    t = now();
    await s.run(feeds);
    ms.push(now() - t);
  }
  await s.release();
  log(`${label}: ${built ? "built, " : ""}load ${fmtMs(loadMs)}, runs ${ms.map(fmtMs).join(" ")}`);
  return { label, medianMs: median(ms), minMs: Math.min(...ms), runsMs: ms, loadMs, out };
}

/** max and mean |a - b|, and the reference's standard deviation (for relative numbers). */
function difference(a: Float32Array, b: Float32Array) {
  let max = 0;
  let sum = 0;
  let sq = 0;
  let mean = 0;
  for (let i = 0; i < a.length; i++) mean += a[i] / a.length;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
    sq += (a[i] - mean) ** 2;
  }
  return { max, mean: sum / a.length, refStd: Math.sqrt(sq / a.length) };
}
const quality: Record<string, ReturnType<typeof difference>> = {};

const rows: { label: string; medianMs: number; minMs: number; runsMs: number[]; loadMs: number; out?: Float32Array }[] = [];
const unet = resolveUNetConfig(UNET_CONFIG);
const unetFeeds = (B: number) => sd15Graph(B === 1 ? "unet-b1" : "unet-b2", size, weights).feeds();

for (let round = 0; round < rounds; round++) {
  if (only.includes("unet")) {
    for (const B of [1, 2]) {
      const fp32 = await timeSession(`unet-b${B} fp32`, "unet", unet, () => buildUNet2DConditionModel(weights, unet), unetFeeds(B));
      const int8 = await timeSession(`unet-b${B} int8`, "unet", unet, () => buildUNet2DConditionModel(weights, unet, { quantize: "int8" }), unetFeeds(B), { quantize: "int8" });
      rows.push(fp32, int8);
      quality[`unet-b${B} int8 vs fp32`] = difference(fp32.out, int8.out);
    }
  }
  if (only.includes("vae")) {
    const enc = sd15Graph("vae-encode", size, weights);
    const dec = sd15Graph("vae-decode", size, weights);
    rows.push(await timeSession("vae-encode KL", enc.kind, enc.config, enc.build, enc.feeds()));
    rows.push(await timeSession("vae-encode TAESD", "taesd-encoder", TAESD_CONFIG, () => buildTinyEncoder(weights, TAESD_CONFIG), { sample: { data: filled(3 * size * size), dims: [1, 3, size, size] } }));
    rows.push(await timeSession("vae-decode KL", dec.kind, dec.config, dec.build, dec.feeds()));
    rows.push(await timeSession("vae-decode TAESD", "taesd-decoder", TAESD_CONFIG, () => buildTinyDecoder(weights, TAESD_CONFIG), { latent: { data: filled(4 * lat * lat, 5), dims: [1, 4, lat, lat] } }));
  }
  if (only.includes("img2img")) {
    for (const fast of [false, true]) {
      const tokenizer = standInTokenizer();
      const parts = {
        name: "SD 1.5 architecture, random weights",
        configs: { unet: UNET_CONFIG, vae: VAE_CONFIG, text_encoder: TEXT_ENCODER_CONFIG, scheduler: SCHEDULER_CONFIG },
        weights: { unet: weights, vae: weights, text_encoder: weights },
        tokenizer,
        tinyVae: fast ? { name: "taesd (random)", config: { _class_name: "AutoencoderTiny" }, weights } : undefined,
      };
      let t = now();
      const model = await StableDiffusionModel.load(parts, { threads, cacheDir, quantize: fast ? "int8" : undefined });
      const loadMs = now() - t;
      const pipe = new Img2ImgPipeline(model);
      const image = { width: size, height: size, data: new Uint8Array(size * size * 3).map((_, i) => (i * 37) % 256) };
      // Euler, as SD-Turbo's own scheduler: 2 steps x 0.5 = one UNet call (PNDM's PLMS schedule would make two)
      const opts = { image, prompt: "a photo of a cat", seed: 1, steps: 2, strength: 0.5, guidanceScale: 0, sampler: "euler" };
      const warm = await pipe.run(opts); // warm-up (also caches the prompt embedding, as a warm server would)
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) {
        t = now();
        const r = await pipe.run(opts);
        ms.push(now() - t);
        log(`img2img ${fast ? "int8+TAESD" : "exact"}: ${fmtMs(ms[i])} (encode ${fmtMs(r.timings.encodeImageMs)}, denoise ${fmtMs(r.timings.denoiseMs)}, decode ${fmtMs(r.timings.decodeMs)})`);
      }
      await model.release();
      rows.push({ label: `img2img turbo ${fast ? "int8+TAESD" : "exact"}`, medianMs: median(ms), minMs: Math.min(...ms), runsMs: ms, loadMs, out: warm.decoded });
    }
  }
}

console.log(`\nSD 1.5 architecture ${size}x${size}, ${threads} threads, ${runs} runs + 1 warm-up per row, ${rounds} round(s)`);
console.log(["row".padEnd(26), "median ms".padStart(10), "min ms".padStart(10), "load ms".padStart(9)].join("  "));
for (const r of rows) console.log([r.label.padEnd(26), r.medianMs.toFixed(0).padStart(10), r.minMs.toFixed(0).padStart(10), r.loadMs.toFixed(0).padStart(9)].join("  "));
for (const [k, q] of Object.entries(quality)) console.log(`${k}: max |diff| ${q.max.toExponential(2)}, mean ${q.mean.toExponential(2)} (fp32 output std ${q.refStd.toExponential(2)})`);
console.log(`peak RSS ${peakRssMB().toFixed(0)} MB`);
const plain = rows.map(({ out: _out, ...r }) => r);
if (values.json) writeJson(resolve(values.json), { size, threads, runs, rounds, rows: plain, quality, date: new Date().toISOString() });
