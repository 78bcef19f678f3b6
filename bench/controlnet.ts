// Per-step cost of a ControlNet on the SD 1.5 architecture (seeded random weights, no download): one denoising
// step with the UNet alone vs with the ControlNet run first and its residuals fed to the UNet, at the CFG batch (2)
// and at batch 1 (guess mode's ControlNet call / no CFG), and the memory the ControlNet adds. The configurations
// are timed interleaved, step after step, in one process, so a busy machine slows them alike and the ratio holds.
//   npx tsx bench/controlnet.ts [--size 512] [--runs 3] [--threads N] [--cache DIR]
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { readdirSync, statSync } from "node:fs";
import { cachedGraph } from "../src/graph/cache.js";
import { buildControlNetModel, controlNetOutputNames, controlNetScales, resolveControlNetConfig } from "../src/models/controlnet.js";
import { buildUNet2DConditionModel, controlResidualNames, resolveUNetConfig } from "../src/models/unet.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { shippedControlNetConfig } from "../src/weights/controlnet.js";
import { RandomWeights } from "../src/weights/random.js";
import { fmtMs, log, median } from "./measure.js";
import { UNET_CONFIG } from "./sd15.js";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "512" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: String(availableParallelism()) },
    cache: { type: "string", default: join("/tmp", "reimagine-bench-controlnet") },
  },
});
const size = Number(values.size);
const runs = Number(values.runs);
const threads = Number(values.threads);
const cacheDir = resolve(values.cache!);
const unetConfig = resolveUNetConfig(UNET_CONFIG);
// lllyasviel's SD 1.5 ControlNets: the UNet's encoder + a (16, 32, 96, 256) hint embedding (configs/controlnet/sd1.json)
const cnConfig = resolveControlNetConfig(shippedControlNetConfig("sd1"));
const lat = size / 8;
const L = 77;

function filled(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * scale;
  }
  return out;
}
const unetFeeds = (B: number): Record<string, TensorData> => ({
  sample: { data: filled(B * 4 * lat * lat), dims: [B, 4, lat, lat] },
  timestep: { data: new Float32Array(B).fill(500), dims: [B] },
  encoder_hidden_states: { data: filled(B * L * 768), dims: [B, L, 768] },
});

function graph(kind: "unet-control-residuals" | "controlnet"): string {
  const weights = new RandomWeights(0);
  const config = kind === "controlnet" ? cnConfig : unetConfig;
  const build = () =>
    kind === "controlnet" ? buildControlNetModel(weights, cnConfig) : buildUNet2DConditionModel(weights, unetConfig, { controlResiduals: true });
  const { path, built } = cachedGraph({ kind, config, weights }, build, cacheDir, () => log(`building ${kind} into ${cacheDir}`));
  if (built) log(`${kind} built`);
  return path;
}

const dirMB = (file: string) => {
  const dir = resolve(file, "..");
  return readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0) / 2 ** 20;
};
const rssMB = () => process.memoryUsage().rss / 2 ** 20;
const peakMB = () => process.resourceUsage().maxRSS / 1024;
const now = () => performance.now();

async function main(): Promise<void> {
  const names = controlNetOutputNames(cnConfig);
  const inputs = controlResidualNames(unetConfig);
  const unetPath = graph("unet-control-residuals");
  const cnPath = graph("controlnet");
  const base = rssMB();

  // "UNet alone" is the same graph with zero residuals: 13 element-wise adds (~7M values per image) on top of
  // ~0.8 TFLOP, so it times the plain UNet while sharing its weights with the ControlNet step
  const unet = await ModelSession.load(unetPath, { threads });
  const plainFeeds = (B: number, r?: Record<string, TensorData>): Record<string, TensorData> => {
    const f = unetFeeds(B);
    inputs.down.forEach((n, i) => {
      f[n] = r?.[names.down[i]] ?? zeros(B, i);
    });
    f[inputs.mid] = r?.[names.mid] ?? zeros(B, names.down.length);
    return f;
  };
  const shapes = residualShapes();
  const zeros = (B: number, i: number): TensorData => ({ data: new Float32Array(B * shapes[i].reduce((a, b) => a * b, 1)), dims: [B, ...shapes[i]] });
  await unet.run(plainFeeds(1));
  const unetRss = rssMB();
  const unetPeak = peakMB();
  const cn = await ModelSession.load(cnPath, { threads });
  const cnFeeds = (B: number): Record<string, TensorData> => ({
    ...unetFeeds(B),
    controlnet_cond: { data: filled(B * 3 * size * size, 0.5).map((v) => v + 0.5), dims: [B, 3, size, size] },
    conditioning_scales: { data: controlNetScales(names.down.length, 1, false), dims: [names.down.length + 1] },
  });
  await cn.run(cnFeeds(1));
  const bothRss = rssMB();

  console.log(
    `ControlNet per-step cost, SD 1.5 architecture (lllyasviel-style ControlNet), random weights, ${size}x${size} (latent ${lat}x${lat}), ${threads} threads, ${runs} interleaved steps after 1 warm-up`,
  );
  const row = (label: string, ms: number[]) => `  ${label.padEnd(38)} median ${fmtMs(median(ms)).padStart(8)}   min ${fmtMs(Math.min(...ms)).padStart(8)}`;
  for (const B of [2, 1]) {
    const plain: number[] = [],
      control: number[] = [],
      withRes: number[] = [];
    const pf = plainFeeds(B),
      cf = cnFeeds(B);
    for (let i = 0; i <= runs; i++) {
      let t = now();
      await unet.run(pf);
      const a = now() - t;
      t = now();
      const r = await cn.run(cf);
      const b = now() - t;
      t = now();
      await unet.run(plainFeeds(B, r));
      const c = now() - t;
      log(`batch ${B} step ${i === 0 ? "warm-up" : i}: UNet ${fmtMs(a)}, ControlNet ${fmtMs(b)} + UNet ${fmtMs(c)}`);
      if (i === 0) continue;
      plain.push(a);
      control.push(b);
      withRes.push(c);
    }
    const steps = control.map((b, i) => b + withRes[i]);
    console.log(`batch ${B}${B === 2 ? " (CFG)" : " (no CFG, or guess mode's ControlNet call)"}:`);
    console.log(row("UNet alone", plain));
    console.log(row("ControlNet", control));
    console.log(row("ControlNet + UNet (one step)", steps));
    console.log(
      `  ${"step with ControlNet / UNet alone".padEnd(38)} x${(median(steps) / median(plain)).toFixed(2)} (ControlNet = ${((100 * median(control)) / median(plain)).toFixed(0)}% of a UNet call)`,
    );
  }
  console.log(
    `memory: graph files UNet ${dirMB(unetPath).toFixed(0)} MiB, ControlNet ${dirMB(cnPath).toFixed(0)} MiB; RSS ${base.toFixed(0)} MiB at start, ${unetRss.toFixed(0)} MiB with the UNet loaded and run (peak ${unetPeak.toFixed(0)}), ${bothRss.toFixed(0)} MiB with the ControlNet too (+${(bothRss - unetRss).toFixed(0)} MiB); peak RSS at the end ${peakMB().toFixed(0)} MiB`,
  );
  await cn.release();
  await unet.release();
}

/** [C, h, w] of each UNet skip (conv_in, every resnet/attention, every downsampler) and, last, of the mid block. */
function residualShapes(): number[][] {
  const boc = unetConfig.block_out_channels;
  const out: number[][] = [[boc[0], lat, lat]];
  let side = lat;
  boc.forEach((c, i) => {
    for (let j = 0; j < (unetConfig.layers_per_block as number); j++) out.push([c, side, side]);
    if (i < boc.length - 1) {
      side /= 2;
      out.push([c, side, side]);
    }
  });
  out.push([boc[boc.length - 1], side, side]);
  return out;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
