// End-to-end rows through the command line as users run it: one `reimagine` process per image
// (bin/reimagine.js, started as an executable so its #! line applies) on the benchmark's SD 1.5 model
// written as a diffusers folder (fake-model.ts).
// GNU time reports each whole process: wall, user and system CPU, minor/major faults, peak RSS.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeImage } from "../src/image.js";
import { writeRandomModels } from "./fake-model.js";
import { IMG2IMG, testImage } from "./img2img.js";
import { fmtMs, log, now } from "./measure.js";
import type { CliResult, Task } from "./types.js";
import { median } from "./usage.js";

export const BIN = fileURLToPath(new URL("../bin/reimagine.js", import.meta.url));
const TIME = "/usr/bin/time";

/** The two CLI rows: the default exact img2img and the SD-Turbo-style fast mode (item 4 of issue 12: the fastest int8 mode and TAESD). */
export const CLI_ROWS = {
  "img2img-cli": (m: { model: string }) => [
    "--steps",
    String(IMG2IMG.steps),
    "--strength",
    String(IMG2IMG.strength),
    "-g",
    String(IMG2IMG.guidanceScale),
    "--sampler",
    IMG2IMG.sampler,
    "-m",
    m.model,
  ],
  "img2img-turbo-cli": (m: { model: string; tinyVae: string }) => [
    "--steps",
    "2",
    "--strength",
    "0.5",
    "-g",
    "0",
    "--sampler",
    "euler",
    "--quantize",
    "int8-conv",
    "--tiny-vae",
    m.tinyVae,
    "-m",
    m.model,
  ],
} as const;

export interface ProcessStats {
  wallMs: number;
  userMs: number;
  systemMs: number;
  minorFaults: number;
  majorFaults: number;
  peakRssMB: number;
  stdout: string;
}

/** Runs `args` (an executable and its arguments) under GNU time; throws with the process's stderr when it fails. */
export function timedProcess(args: string[], env: NodeJS.ProcessEnv, dir: string): ProcessStats {
  const stats = join(dir, "time.txt");
  const t = now();
  const p = spawnSync(TIME, ["-f", "%e %U %S %R %F %M", "-o", stats, ...args], { env, encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  const wallMs = now() - t;
  if (p.status !== 0) throw new Error(`${args.join(" ")} exited with ${p.status}: ${(p.stderr ?? "").trim().split("\n").slice(-5).join("\n")}`);
  const [, user, sys, minor, major, rssKB] = readFileSync(stats, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  return { wallMs, userMs: user * 1000, systemMs: sys * 1000, minorFaults: minor, majorFaults: major, peakRssMB: rssKB / 1024, stdout: p.stdout };
}

/** Writes the input picture (async: sharp encodes it). */
export async function writeInput(path: string, size: number): Promise<void> {
  writeFileSync(path, await encodeImage(testImage(size), "png"));
}

/** The command line of a CLI row, its environment and scratch folder (the input picture is written). */
export async function cliCommand(what: CliResult["what"], task: Pick<Task, "cacheDir" | "seed" | "size" | "threads">) {
  const models = writeRandomModels(join(task.cacheDir, "bench-models"), task.seed, log);
  const dir = join(task.cacheDir, "bench-cli");
  mkdirSync(dir, { recursive: true });
  const input = join(dir, `input-${task.size}.png`);
  await writeInput(input, task.size);
  const env = { ...process.env, REIMAGINE_CACHE: task.cacheDir, HF_HUB_OFFLINE: "1" };
  const out = join(dir, `${what}.png`);
  const args = [
    BIN,
    input,
    "-p",
    "a photo of a cat",
    "-n",
    "",
    "--seed",
    "1",
    "--threads",
    String(task.threads),
    "-o",
    out,
    "--overwrite",
    "--json",
    ...CLI_ROWS[what](models),
  ];
  return { args, env, dir, out };
}

/** The pipeline's phase timings from the CLI's --json line (undefined when missing). */
export function cliTimings(stdout: string): Record<string, number> | undefined {
  try {
    return (JSON.parse(stdout.trim().split("\n").pop()!) as { timings?: Record<string, number> }).timings;
  } catch {
    return undefined; // --json output missing: the wall time still counts
  }
}

export async function measureCliRow(what: CliResult["what"], task: Task): Promise<CliResult> {
  const { args, env, dir, out } = await cliCommand(what, task);

  const startupMs = timedProcess([BIN, "--version"], env, dir).wallMs;
  // an untimed first run builds the folder's graphs when the cache lacks them
  const t = now();
  timedProcess(args, env, dir);
  const prepareMs = now() - t;
  log(`${what}: prepared in ${fmtMs(prepareMs)}`);
  const runs: CliResult["runs"] = [];
  for (let i = 0; i < task.runs; i++) {
    const { stdout, ...s } = timedProcess(args, env, dir);
    runs.push({ ...s, timings: cliTimings(stdout) });
    log(
      `${what}: process ${i + 1}/${task.runs} ${fmtMs(s.wallMs)} (user ${fmtMs(s.userMs)}, sys ${fmtMs(s.systemMs)}, ${(s.minorFaults / 1000).toFixed(0)}k minor faults, peak RSS ${s.peakRssMB.toFixed(0)} MiB)`,
    );
  }
  rmSync(out, { force: true });
  const ms = runs.map((r) => r.wallMs);
  return { what, command: ["reimagine", ...args.slice(1)], runs, medianMs: median(ms), minMs: Math.min(...ms), startupMs, prepareMs };
}
