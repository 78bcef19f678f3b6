// Start-up time of the `reimagine` command: `--version`, `--help` and `info <image>` (a PNG with
// parameters), as wall time of a fresh `node bin/reimagine.js` process, median of N runs, beside a
// bare `node -e 0`. With --before DIR (another checkout with node_modules) the same commands run
// there too, interleaved run by run so machine load hits both alike; ratios are before/after.
//   npx tsx bench/startup.ts [--runs 15] [--before /path/to/old/checkout]
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { encodeImage } from "../src/index.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "15" }, before: { type: "string" } } });
const runs = Number(values.runs);
const after = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const image = join(mkdtempSync(join(tmpdir(), "reimagine-startup-")), "made.png");
const pixels = { width: 64, height: 64, data: new Uint8Array(64 * 64 * 3).fill(120) };
writeFileSync(
  image,
  await encodeImage(pixels, "png", { parameters: "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Model: m, Denoising strength: 0.5" }),
);

const commands: Record<string, string[]> = { "--version": ["--version"], "--help": ["--help"], info: ["info", image] };

/** Wall milliseconds of one process run (exit code checked). */
function time(args: string[], cwd: string): number {
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} in ${cwd} exited ${r.status}: ${r.stderr}`);
  return ms;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const trees = values.before ? { before: resolve(values.before), after } : { after };
const samples: Record<string, number[]> = {};
const record = (key: string, ms: number) => {
  samples[key] ??= [];
  samples[key].push(ms);
};
for (let i = 0; i < runs; i++) {
  record("bare node", time(["-e", "0"], after));
  for (const [name, args] of Object.entries(commands)) {
    for (const [tree, root] of Object.entries(trees)) record(`${tree} ${name}`, time([join(root, "bin", "reimagine.js"), ...args], root));
  }
}
console.log(`startup, median of ${runs} runs (ms):`);
for (const [k, xs] of Object.entries(samples)) console.log(`  ${k.padEnd(20)} ${median(xs).toFixed(0).padStart(6)}`);
if (values.before) {
  for (const name of Object.keys(commands)) {
    const b = median(samples[`before ${name}`]);
    const a = median(samples[`after ${name}`]);
    console.log(`  ${name.padEnd(10)} before/after = ${(b / a).toFixed(1)}x`);
  }
}
