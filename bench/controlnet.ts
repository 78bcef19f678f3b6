// Per-step cost of a ControlNet on the SD 1.5 architecture (seeded random weights, no download): the plain UNet
// vs the ControlNet + the UNet with residual inputs, at the CFG batch (2) and at batch 1 (guess mode / no CFG),
// and the memory each needs. Each configuration runs in its own child process so its peak RSS is its own.
//   npx tsx bench/controlnet.ts [--size 512] [--runs 3] [--threads N] [--cache DIR]
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { statSync, readdirSync } from "node:fs";
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
    child: { type: "string" },
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
  for (let i = 0; i < n; i++) out[i] = (((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 31) - 1) * scale;
  return out;
}
const unetFeeds = (B: number): Record<string, TensorData> => ({
  sample: { data: filled(B * 4 * lat * lat), dims: [B, 4, lat, lat] },
  timestep: { data: new Float32Array(B).fill(500), dims: [B] },
  encoder_hidden_states: { data: filled(B * L * 768), dims: [B, L, 768] },
});

function graph(kind: "unet" | "unet-control-residuals" | "controlnet"): string {
  const weights = new RandomWeights(0);
  const config = kind === "controlnet" ? cnConfig : unetConfig;
  const { path, built } = cachedGraph({ kind, config, weights }, () => {
    log(`building ${kind} into ${cacheDir}`);
    return kind === "controlnet" ? buildControlNetModel(weights, cnConfig) : buildUNet2DConditionModel(weights, unetConfig, { controlResiduals: kind !== "unet" });
  }, cacheDir);
  if (built) log(`${kind} built`);
  return path;
}

const dirMB = (file: string) => {
  const dir = resolve(file, "..");
  return readdirSync(dir).reduce((a, f) => a + statSync(join(dir, f)).size, 0) / 2 ** 20;
};
const rssMB = () => process.memoryUsage().rss / 2 ** 20;
const peakMB = () => process.resourceUsage().maxRSS / 1024;

async function time(label: string, fn: () => Promise<unknown>): Promise<number[]> {
  await fn(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
    log(`${label} run ${i + 1}/${runs}: ${fmtMs(ms[i])}`);
  }
  return ms;
}

/** One configuration, in this (child) process; prints one JSON line. */
async function child(mode: string): Promise<void> {
  const base = rssMB();
  const result: Record<string, unknown> = { mode };
  if (mode === "unet") {
    const s = await ModelSession.load(graph("unet"), { threads });
    result.graphMB = dirMB(graph("unet"));
    for (const B of [2, 1]) result[`unet_b${B}_ms`] = await time(`unet b${B}`, () => s.run(unetFeeds(B)));
    await s.release();
  } else {
    const unet = await ModelSession.load(graph("unet-control-residuals"), { threads });
    const cn = await ModelSession.load(graph("controlnet"), { threads });
    result.graphMB = dirMB(graph("unet-control-residuals"));
    result.controlnetGraphMB = dirMB(graph("controlnet"));
    const names = controlNetOutputNames(cnConfig);
    const inputs = controlResidualNames(unetConfig);
    for (const B of [2, 1]) {
      const feeds = unetFeeds(B);
      const cnFeeds = {
        ...feeds,
        controlnet_cond: { data: filled(B * 3 * size * size, 0.5).map((v) => v + 0.5), dims: [B, 3, size, size] },
        conditioning_scales: { data: controlNetScales(names.down.length, 1, false), dims: [names.down.length + 1] },
      };
      const cnMs: number[] = [];
      const step = async () => {
        const t = performance.now();
        const r = await cn.run(cnFeeds);
        cnMs.push(performance.now() - t);
        const uf: Record<string, TensorData> = { ...feeds };
        inputs.down.forEach((n, i) => (uf[n] = r[names.down[i]]));
        uf[inputs.mid] = r[names.mid];
        return unet.run(uf);
      };
      result[`step_b${B}_ms`] = await time(`controlnet + unet b${B}`, step);
      result[`controlnet_b${B}_ms`] = cnMs.slice(1); // without the warm-up
    }
    await unet.release();
    await cn.release();
  }
  result.baseRssMB = base;
  result.peakRssMB = peakMB();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function main(): Promise<void> {
  if (values.child) return child(values.child);
  const self = fileURLToPath(import.meta.url);
  const out: Record<string, any> = {};
  for (const mode of ["unet", "controlnet"]) {
    const args = [...process.execArgv, self, "--child", mode, "--size", String(size), "--runs", String(runs), "--threads", String(threads), "--cache", cacheDir];
    const r = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`bench child '${mode}' failed (exit ${r.status})`);
    out[mode] = JSON.parse(r.stdout.trim().split("\n").pop()!);
  }
  const u = out.unet, c = out.controlnet;
  const row = (label: string, ms: number[]) => `  ${label.padEnd(44)} median ${fmtMs(median(ms)).padStart(8)}   min ${fmtMs(Math.min(...ms)).padStart(8)}`;
  console.log(`ControlNet per-step cost, SD 1.5 architecture, random weights, ${size}x${size} (latent ${lat}x${lat}), ${threads} threads, ${runs} runs after 1 warm-up`);
  for (const B of [2, 1]) {
    const plain = median(u[`unet_b${B}_ms`]);
    const step = median(c[`step_b${B}_ms`]);
    console.log(`batch ${B}${B === 2 ? " (CFG)" : " (no CFG; guess mode's ControlNet call)"}:`);
    console.log(row("UNet alone", u[`unet_b${B}_ms`]));
    console.log(row("ControlNet + UNet with residuals", c[`step_b${B}_ms`]));
    console.log(row("  of which the ControlNet", c[`controlnet_b${B}_ms`]));
    console.log(`  ${"step / UNet alone".padEnd(44)} x${(step / plain).toFixed(2)}`);
  }
  console.log(`memory: graphs UNet ${u.graphMB.toFixed(0)} MiB, ControlNet ${c.controlnetGraphMB.toFixed(0)} MiB; peak RSS UNet alone ${u.peakRssMB.toFixed(0)} MiB, ControlNet + UNet ${c.peakRssMB.toFixed(0)} MiB (+${(c.peakRssMB - u.peakRssMB).toFixed(0)} MiB)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
