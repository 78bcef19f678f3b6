// `npx tsx bench/modes.ts`: the opt-in fast modes against exact fp32 on the bench's SD 1.5 model
// (fake-model.ts: seeded random weights written as a diffusers folder, no download): one 3x3 conv fp32 vs
// int8 (im2col) at the UNet's and TAESD's shapes, UNet fp32 vs int8 vs int8-conv (batch 1 and 2), text encoder fp32 vs int8, AutoencoderKL vs TAESD, and an
// SD-Turbo-style img2img (2 steps x strength 0.5 = one UNet call, no CFG) in one warm process.
// Rows of one table come from one run, modes alternating; each row gives its first run and best run.
// --profile adds each row's per-op times (a first and a steady run, ORT profiling).
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Graph } from "../src/graph/builder.js";
import { cachedGraph, cacheRoot } from "../src/graph/cache.js";
import { conv2d } from "../src/graph/layers.js";
import { quantizeCacheKey, type QuantizeMode, useInt8Conv } from "../src/graph/quantize.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../src/models/clip-text.js";
import { buildTinyDecoder, buildTinyEncoder, resolveTinyVaeConfig } from "../src/models/taesd.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { openDiffusersFolder, openTinyVaeFolder, StableDiffusionModel } from "../src/pipeline/components.js";
import { Img2ImgPipeline } from "../src/pipeline/img2img.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { MemoryWeights } from "../src/weights/memory.js";
import { benchWeights, TAESD_CONFIG } from "./fake-model.js";
import { testImage } from "./img2img.js";
import { fmtMs, log, profiledRuns } from "./measure.js";
import { machineInfo, profileTable, writeJson } from "./report.js";
import { sd15Graph, TEXT_ENCODER_CONFIG, UNET_CONFIG } from "./sd15.js";
import { measured, median, peakRssMB } from "./usage.js";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "512" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: String(availableParallelism()) },
    cache: { type: "string", default: cacheRoot() },
    only: { type: "string", default: "conv,unet,text-encoder,vae,img2img" },
    json: { type: "string" },
    profile: { type: "boolean", default: false },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);
const threads = Number(values.threads);
const cacheDir = resolve(values.cache!);
const only = values.only!.split(",");
const bw = benchWeights(cacheDir, 0, log);
const lat = size / 8;
const taesd = resolveTinyVaeConfig(TAESD_CONFIG);

function filled(n: number, scale = 1): Float32Array {
  let s = 12345;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s / 2 ** 31 - 1) * scale;
  });
}

interface Row {
  label: string;
  firstMs: number;
  medianMs: number;
  minMs: number;
  runsMs: number[];
  loadMs: number;
  out?: Float32Array;
}
const rows: Row[] = [];

/** Loads a graph (the pipeline's cache key), runs it once (first run) and `runs` times more. */
async function timeSession(
  label: string,
  key: { kind: string; config: unknown; weights: typeof bw.unet; extra?: unknown },
  build: () => Graph,
  feeds: Record<string, TensorData>,
): Promise<Row> {
  const { path } = cachedGraph(key, build, cacheDir);
  const { value: s, usage: load } = await measured(() => ModelSession.load(path, { threads }));
  const { value: first, usage } = await measured(() => s.run(feeds));
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) ms.push((await measured(() => s.run(feeds))).usage.wallMs);
  await s.release();
  log(`${label}: load ${fmtMs(load.wallMs)}, first ${fmtMs(usage.wallMs)}, runs ${ms.map(fmtMs).join(" ")} (load average ${loadavg()[0].toFixed(1)})`);
  if (values.profile) {
    // per-op times of a first and a steady run, in a session of their own (profiling slows the runs it records)
    const dir = mkdtempSync(join(tmpdir(), "reimagine-modes-profile-"));
    try {
      const profiled = await ModelSession.load(path, { threads, profileFilePrefix: join(dir, "ort") });
      console.log(`\n${profileTable(label, await profiledRuns(profiled, dir, feeds))}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const row = {
    label,
    firstMs: usage.wallMs,
    medianMs: median(ms),
    minMs: Math.min(...ms),
    runsMs: ms,
    loadMs: load.wallMs,
    out: Object.values(first)[0].data as Float32Array,
  };
  rows.push(row);
  return row;
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
const modes: (QuantizeMode | undefined)[] = [undefined, "int8", "int8-conv"];

if (only.includes("conv")) {
  // one 3x3 conv (stride 1, padding 1, batch 1) at the UNet's shapes (SD 1.x at 512: 320 ch at 64x64 ... 1280 at
  // 16x16) and TAESD's (64 ch at 256x256): ONNX Conv (NCHWc) against int8-conv's uint8 im2col + MatMulIntegerToFloat
  const dir = mkdtempSync(join(tmpdir(), "reimagine-modes-conv-"));
  try {
    for (const [C, H] of [
      [320, 64],
      [640, 32],
      [1280, 16],
      [64, 256],
    ]) {
      const weights = new MemoryWeights({
        "c.weight": { shape: [C, C, 3, 3], data: filled(C * C * 9, Math.sqrt(1 / (9 * C))) },
        "c.bias": { shape: [C], data: filled(C, 0.1) },
      });
      const feeds = { x: { data: filled(C * H * H), dims: [1, C, H, H] } };
      const out: Record<string, Float32Array> = {};
      for (const int8 of [false, true]) {
        const g = new Graph(weights, "conv");
        if (int8) useInt8Conv(g, () => true);
        g.output(conv2d(g, "c", g.input("x", "float32", [1, C, H, H]), C, C, 3, { padding: 1 }), "y");
        const label = `conv3x3-${C}x${H}x${H} ${int8 ? "int8" : "fp32"}`;
        const { value: s, usage: load } = await measured(() => ModelSession.load(g.save(join(dir, label.replace(/ /g, "-"))), { threads }));
        const { value: first, usage } = await measured(() => s.run(feeds));
        const ms: number[] = [];
        for (let i = 0; i < Math.max(runs, 5); i++) ms.push((await measured(() => s.run(feeds))).usage.wallMs);
        await s.release();
        const gflop = (2 * C * C * 9 * H * H) / 1e9;
        log(`${label}: best ${fmtMs(Math.min(...ms))} = ${(gflop / (Math.min(...ms) / 1000)).toFixed(0)} GFLOP/s (load average ${loadavg()[0].toFixed(1)})`);
        rows.push({ label, firstMs: usage.wallMs, medianMs: median(ms), minMs: Math.min(...ms), runsMs: ms, loadMs: load.wallMs });
        out[int8 ? "int8" : "fp32"] = first.y.data as Float32Array;
      }
      quality[`conv3x3-${C}x${H}x${H} int8 vs fp32`] = difference(out.fp32, out.int8);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
if (only.includes("unet")) {
  const unet = resolveUNetConfig(UNET_CONFIG);
  for (const B of [1, 2]) {
    const feeds = sd15Graph(B === 1 ? "unet-b1" : "unet-b2", size, bw.unet).feeds();
    const out: Record<string, Float32Array> = {};
    for (const q of modes) {
      const r = await timeSession(
        `unet-b${B} ${q ?? "fp32"}`,
        { kind: "unet", config: unet, weights: bw.unet, extra: q && quantizeCacheKey(q) },
        () => buildUNet2DConditionModel(bw.unet, unet, { quantize: q }),
        feeds,
      );
      out[q ?? "fp32"] = r.out!;
    }
    for (const q of ["int8", "int8-conv"]) quality[`unet-b${B} ${q} vs fp32`] = difference(out.fp32, out[q]);
  }
}
if (only.includes("text-encoder")) {
  const te = resolveCLIPTextConfig(TEXT_ENCODER_CONFIG);
  const feeds = sd15Graph("text-encoder", size, bw.text_encoder).feeds();
  const fp32 = await timeSession(
    "text-encoder fp32",
    { kind: "text-encoder", config: te, weights: bw.text_encoder },
    () => buildCLIPTextModel(bw.text_encoder, te),
    feeds,
  );
  const int8 = await timeSession(
    "text-encoder int8",
    { kind: "text-encoder", config: te, weights: bw.text_encoder, extra: quantizeCacheKey("int8") },
    () => buildCLIPTextModel(bw.text_encoder, te, { quantize: "int8" }),
    feeds,
  );
  quality["text-encoder int8 vs fp32"] = difference(fp32.out!, int8.out!);
}
if (only.includes("vae")) {
  const enc = sd15Graph("vae-encode", size, bw.vae);
  const dec = sd15Graph("vae-decode", size, bw.vae);
  await timeSession("vae-encode KL", { kind: enc.kind, config: enc.config, weights: bw.vae }, enc.build, enc.feeds());
  await timeSession("vae-encode TAESD", { kind: "taesd-encoder", config: taesd, weights: bw.taesd }, () => buildTinyEncoder(bw.taesd, taesd), {
    sample: { data: filled(3 * size * size), dims: [1, 3, size, size] },
  });
  await timeSession("vae-decode KL", { kind: dec.kind, config: dec.config, weights: bw.vae }, dec.build, dec.feeds());
  await timeSession("vae-decode TAESD", { kind: "taesd-decoder", config: taesd, weights: bw.taesd }, () => buildTinyDecoder(bw.taesd, taesd), {
    latent: { data: filled(4 * lat * lat, 5), dims: [1, 4, lat, lat] },
  });
}
if (only.includes("img2img")) {
  for (const q of modes) {
    const parts = { ...openDiffusersFolder(bw.folders.model), tinyVae: q ? openTinyVaeFolder(bw.folders.tinyVae) : undefined };
    const { value: model, usage: load } = await measured(() => StableDiffusionModel.load(parts, { threads, cacheDir, quantize: q }));
    // Euler, as SD-Turbo's own scheduler: 2 steps x 0.5 = one UNet call (PNDM's PLMS schedule would make two)
    const opts = { image: testImage(size), prompt: "a photo of a cat", seed: 1, steps: 2, strength: 0.5, guidanceScale: 0, sampler: "euler" };
    const ms: number[] = [];
    let firstMs = 0;
    for (let i = 0; i <= runs; i++) {
      // a new pipeline each run: the prompt embedding is computed every time, as in a one-image CLI run
      const { value: r, usage } = await measured(() => new Img2ImgPipeline(model).run(opts));
      if (i === 0) firstMs = usage.wallMs;
      else ms.push(usage.wallMs);
      const t = r.timings;
      log(
        `img2img ${q ? `${q}+TAESD` : "exact"}: ${i === 0 ? "first " : ""}${fmtMs(usage.wallMs)} (prompt ${fmtMs(t.encodePromptMs)}, encode ${fmtMs(t.encodeImageMs)}, denoise ${fmtMs(t.denoiseMs)}, decode ${fmtMs(t.decodeMs)})`,
      );
    }
    await model.release();
    rows.push({ label: `img2img turbo ${q ? `${q}+TAESD` : "exact"}`, firstMs, medianMs: median(ms), minMs: Math.min(...ms), runsMs: ms, loadMs: load.wallMs });
  }
}

console.log(`\nSD 1.5 architecture ${size}x${size}, ${threads} threads, first run + ${runs} runs per row`);
console.log(["row".padEnd(28), "first ms".padStart(9), "median ms".padStart(10), "min ms".padStart(9), "load ms".padStart(8)].join("  "));
for (const r of rows)
  console.log(
    [
      r.label.padEnd(28),
      r.firstMs.toFixed(0).padStart(9),
      r.medianMs.toFixed(0).padStart(10),
      r.minMs.toFixed(0).padStart(9),
      r.loadMs.toFixed(0).padStart(8),
    ].join("  "),
  );
for (const [k, q] of Object.entries(quality))
  console.log(`${k}: max |diff| ${q.max.toExponential(2)}, mean ${q.mean.toExponential(2)} (fp32 output std ${q.refStd.toExponential(2)})`);
console.log(
  `peak RSS ${peakRssMB().toFixed(0)} MB, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")}`,
);
if (values.json)
  writeJson(resolve(values.json), {
    schema: "reimagine-modes/2",
    machine: machineInfo(threads),
    size,
    threads,
    runs,
    rows: rows.map(({ out: _o, ...r }) => r),
    quality,
    date: new Date().toISOString(),
  });
