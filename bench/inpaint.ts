// Per-step cost of inpainting on the SD 1.5 architecture (seeded random weights, no download): one UNet call of the
// 9-channel inpainting UNet (in_channels 9: latents + mask + masked-image latents) vs the ordinary 4-channel UNet, timed
// interleaved step after step in one process (a busy machine slows both alike, so the ratio holds), plus the per-step
// JavaScript work of each path: the 9-channel input concat (inpaintModelInput) and the 4-channel latent blend with the
// re-noised original (legacyInpaintBlend = add_noise + blend). Ref: diffusers StableDiffusionInpaintPipeline's loop.
//   npx tsx bench/inpaint.ts [--size 512] [--batch 1] [--runs 2] [--threads N] [--cache DIR]
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cachedGraph } from "../src/graph/cache.js";
import { inpaintModelInput, legacyInpaintBlend } from "../src/inpaint/latents.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { createScheduler } from "../src/schedulers/index.js";
import { RandomWeights } from "../src/weights/random.js";
import { fmtMs, log, median } from "./measure.js";
import { filled, SCHEDULER_CONFIG, UNET_CONFIG } from "./sd15.js";

const { values } = parseArgs({
  options: {
    size: { type: "string", default: "512" },
    batch: { type: "string", default: "1" },
    runs: { type: "string", default: "2" },
    threads: { type: "string", default: String(availableParallelism()) },
    cache: { type: "string", default: join("/tmp", "reimagine-bench-inpaint") },
  },
});
const size = Number(values.size);
const B = Number(values.batch);
const runs = Number(values.runs);
const threads = Number(values.threads);
const cacheDir = resolve(values.cache!);
const lat = size / 8;
const plane = lat * lat;
const L = 77;
const now = () => performance.now();

/** The SD 1.5 UNet graph with `inChannels` input channels (9 = sd-v1-5-inpainting's conv_in), cached on disk. */
function graph(inChannels: number): string {
  const config = resolveUNetConfig({ ...UNET_CONFIG, in_channels: inChannels });
  const weights = new RandomWeights(0);
  const { path, built } = cachedGraph(
    { kind: `unet-${inChannels}ch`, config, weights },
    () => buildUNet2DConditionModel(weights, config),
    cacheDir,
    () => log(`building the ${inChannels}-channel UNet into ${cacheDir}`),
  );
  if (built) log(`${inChannels}-channel UNet built`);
  return path;
}

const feeds = (channels: number): Record<string, TensorData> => ({
  sample: { data: filled(B * channels * plane), dims: [B, channels, lat, lat] },
  timestep: { data: new Float32Array(B).fill(500), dims: [B] },
  encoder_hidden_states: { data: filled(B * L * 768), dims: [B, L, 768] },
});

/** Median time of `fn` over `n` calls after 3 warm-up calls. */
function timeJs(fn: () => unknown, n: number): number {
  for (let i = 0; i < 3; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = now();
    fn();
    t.push(now() - t0);
  }
  return median(t);
}

async function main(): Promise<void> {
  // the per-step JavaScript of each path, at the UNet batch B (CFG doubles it; the blend runs on the N images)
  const latents = filled(B * 4 * plane);
  const mask = filled(B * plane, 0.5).map((v) => (v > 0 ? 1 : 0));
  const masked = filled(B * 4 * plane);
  const scheduler = createScheduler("euler", SCHEDULER_CONFIG);
  scheduler.setTimesteps(20);
  const timesteps = [...scheduler.timesteps];
  const concatMs = timeJs(() => inpaintModelInput(latents, mask, masked, [B, 4, lat, lat]), 200);
  const blendMs = timeJs(
    () => legacyInpaintBlend(scheduler, { latents, imageLatents: masked, noise: latents, mask, shape: [B, 4, lat, lat], timesteps, i: 3 }),
    200,
  );

  const unet4 = await ModelSession.load(graph(4), { threads });
  const unet9 = await ModelSession.load(graph(9), { threads });
  const f4 = feeds(4);
  const f9 = feeds(9);
  const t4: number[] = [];
  const t9: number[] = [];
  for (let i = 0; i <= runs; i++) {
    let t = now();
    await unet4.run(f4);
    const a = now() - t;
    t = now();
    await unet9.run(f9);
    const b = now() - t;
    log(`step ${i === 0 ? "warm-up" : i}: 4-channel UNet ${fmtMs(a)}, 9-channel UNet ${fmtMs(b)}`);
    if (i === 0) continue;
    t4.push(a);
    t9.push(b);
  }
  const m4 = median(t4);
  const m9 = median(t9);
  const row = (label: string, ms: number[]) => `  ${label.padEnd(44)} median ${fmtMs(median(ms)).padStart(8)}   min ${fmtMs(Math.min(...ms)).padStart(8)}`;
  console.log(
    `Inpainting per-step cost, SD 1.5 architecture, random weights, ${size}x${size} (latent ${lat}x${lat}), UNet batch ${B}, ${threads} threads, ${runs} interleaved steps after 1 warm-up`,
  );
  console.log(row("UNet, 4 input channels (img2img / blend path)", t4));
  console.log(row("UNet, 9 input channels (inpainting model)", t9));
  console.log(
    `  9-channel / 4-channel UNet call             x${(m9 / m4).toFixed(3)} (${(((m9 - m4) / m4) * 100).toFixed(1)}%; conv_in is the only difference)`,
  );
  console.log(`  9-channel input concat per step (JS)        ${concatMs.toFixed(3)} ms = ${((concatMs / m4) * 100).toFixed(4)}% of a UNet call`);
  console.log(`  4-channel blend per step (add_noise + blend) ${blendMs.toFixed(3)} ms = ${((blendMs / m4) * 100).toFixed(4)}% of a UNet call`);
  await unet4.release();
  await unet9.release();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
