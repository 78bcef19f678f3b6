// `npm run bench`: SD 1.5 architecture speed on this machine against its own MatMul peak.
// Each measurement runs in a forked child (worker.ts) so its peak RSS is its own; this parent
// only schedules them, prints the tables and writes the JSON. Options: see options.ts (--help).
import { fork } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { ReimagineError } from "../src/errors.js";
import { IMG2IMG } from "./img2img.js";
import { parseOptions, HELP, type BenchOptions } from "./options.js";
import { isSkipped, machineInfo, opBreakdown, summaryTable, writeJson, type Row } from "./report.js";
import { sd15Graph } from "./sd15.js";
import type { ComponentName, ComponentResult, PeakResult, Task, WorkerReply } from "./types.js";
import { RandomWeights } from "../src/weights/random.js";

const WORKER = fileURLToPath(new URL("./worker.ts", import.meta.url));

/** Runs one task in a child process (execArgv is inherited, so tsx loads the .ts worker). */
function runChild(task: Task): Promise<WorkerReply> {
  return new Promise((resolve) => {
    const child = fork(WORKER, [JSON.stringify(task)], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let reply: WorkerReply | undefined;
    child.on("message", (m) => (reply = m as WorkerReply));
    child.on("error", (e) => resolve({ ok: false, error: e.message }));
    child.on("exit", (code, signal) =>
      resolve(reply ?? { ok: false, error: `worker exited (code ${code}, signal ${signal}) without a result${signal === "SIGKILL" ? ": out of memory?" : ""}` }),
    );
  });
}

/** img2img FLOPs = 2 text encodes + VAE encode + steps x UNet batch 2 + VAE decode, from the rows measured. */
function img2imgFlops(rows: Row[], steps: number): number | null {
  const flops = (what: ComponentName) => {
    const r = rows.find((x) => x.what === what);
    return r && !isSkipped(r) ? r.flops : null;
  };
  const parts = [flops("text-encoder"), flops("vae-encode"), flops("unet-b2"), flops("vae-decode")];
  if (parts.some((p) => p === null)) return null;
  const [te, enc, unet, dec] = parts as number[];
  return 2 * te + enc + steps * unet + dec;
}

async function main(opts: BenchOptions): Promise<void> {
  const machine = machineInfo(opts.threads);
  console.log(`Reimagine bench: SD 1.5 architecture, ${opts.size}x${opts.size}, random weights (seed ${opts.seed})`);
  console.log(`${machine.cpu}, ${machine.cores} cores, ${machine.totalMemoryGiB} GiB, node ${machine.node}, onnxruntime ${machine.onnxruntime}, ${opts.threads} threads, ${opts.runs} runs + 1 warm-up`);
  const base = { size: opts.size, runs: opts.runs, threads: opts.threads, cacheDir: opts.cacheDir, seed: opts.seed, rebuild: false };
  const errors: { what: string; error: string }[] = [];

  // 1. the MatMul peak, the yardstick for every row (measured again at the end: a busy machine shows as a gap)
  const measurePeak = async (when: string): Promise<PeakResult | undefined> => {
    const reply = await runChild({ ...base, what: "peak" });
    if (!reply.ok) return void errors.push({ what: `peak (${when})`, error: reply.error });
    const p = reply.result as PeakResult;
    console.log(`MatMul peak (${when}): ${p.gflops.toFixed(1)} GFLOP/s (${p.m}^3 fp32, best of ${p.runsMs.length} runs; load average ${loadavg()[0].toFixed(1)})`);
    return p;
  };
  const peakBefore = await measurePeak("start");

  // 2. components, in pipeline order; --rebuild drops each graph kind once (the UNet rows share one)
  const rows: Row[] = [];
  const rebuilt = new Set<string>();
  for (const what of opts.only) {
    const kind = what === "img2img" ? "img2img" : sd15Graph(what, opts.size, new RandomWeights(opts.seed)).kind;
    const rebuild = opts.rebuild && what !== "img2img" && !rebuilt.has(kind);
    rebuilt.add(kind);
    console.log(`\n== ${what}`);
    const reply = await runChild({ ...base, what, rebuild });
    if (!reply.ok) {
      errors.push({ what, error: reply.error });
      rows.push({ what, skipped: `failed: ${reply.error.split("\n")[0]}` });
      continue;
    }
    const row = reply.result as Row;
    if (!isSkipped(row) && row.what === "img2img" && row.stepsRun !== undefined) {
      row.flops = img2imgFlops(rows, row.stepsRun);
      if (row.flops === null) row.note = [row.note, "GFLOP needs the text-encoder, vae-encode, unet-b2 and vae-decode rows"].filter(Boolean).join("; ");
    }
    rows.push(row);
  }

  // 3. report, against the better of the two peaks
  const peakAfter = await measurePeak("end");
  const peak = [peakBefore, peakAfter].reduce((a, b) => (a && b ? (b.gflops > a.gflops ? b : a) : (a ?? b)));
  console.log(`\n${summaryTable(rows, peak)}`);
  for (const r of rows) if (!isSkipped(r) && r.profile) console.log(`\n${opBreakdown(r as ComponentResult)}`);
  for (const e of errors) console.error(`\n${e.what} failed:\n${e.error}`);
  const bench = process.resourceUsage().maxRSS / 1024;
  writeJson(opts.json, {
    schema: "reimagine-bench/1",
    date: new Date().toISOString(),
    model: "SD 1.5 architecture (runwayml/stable-diffusion-v1-5 configs), random weights",
    options: { size: opts.size, runs: opts.runs, threads: opts.threads, seed: opts.seed, cacheDir: opts.cacheDir, only: opts.only },
    img2img: IMG2IMG,
    flopCounting: "2 per multiply-add in Conv, MatMul, Gemm, attention (QK^T + AV) of the ORT-optimised graph; elementwise and norm ops not counted",
    machine,
    peak: peak && { gflops: peak.gflops, start: peakBefore, end: peakAfter },
    components: rows,
    benchParentPeakRssMB: bench,
    errors,
  });
  console.log(`\nresults written to ${opts.json}`);
  if (errors.length) process.exitCode = 1;
}

try {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.help) console.log(HELP);
  else await main(opts);
} catch (e) {
  if (e instanceof ReimagineError) {
    console.error(`bench: ${e.message}`);
    process.exitCode = 2;
  } else throw e;
}
