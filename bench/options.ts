// Command-line options of `npm run bench` (see HELP), checked with messages that say what to pass.
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { ReimagineError } from "../src/errors.js";
import { cacheRoot } from "../src/graph/cache.js";
import { ARCHS, type Arch, archComponents, GRAPH_COMPONENTS } from "./sd15.js";
import type { ComponentName } from "./types.js";

export const COMPONENTS: readonly ComponentName[] = [...GRAPH_COMPONENTS, "img2img", "img2img-cli", "img2img-turbo-cli"];

/** What `npm run bench` measures by default for each architecture (SDXL: no CLI rows, see --arch). */
export const archDefaults = (arch: Arch): readonly ComponentName[] =>
  arch === "sdxl" ? [...archComponents("sdxl"), "img2img"] : COMPONENTS.filter((c) => c !== "text-encoder-2");

export const HELP = `npm run bench -- [options]

Builds the Stable Diffusion 1.5 (or, with --arch sdxl, SDXL) architecture with seeded random weights (no download), measures this
machine's fp32 peak through ONNX Runtime (MatMuls and 3x3 convs, several sizes, best of N), then
times each component in fresh child processes: the first run (what a one-image CLI process pays)
beside the steady state (median/min), with CPU time, page faults, GFLOP/s, % of peak and peak RSS,
and per-op profiles of a first and a steady run. End-to-end rows: img2img in one warm process, and
through the CLI (one process per image) on the same model written as a diffusers folder. The
components summed as their yardstick are measured again after them (sd15): the sum uses both passes.

  --arch A        sd15 (default) or sdxl: SDXL base (both text encoders, UNet with text_time) on seeded
                  random weights in memory, at --size 1024 (default for sdxl; the batch-1 UNet row runs at
                  half the size, 512) with an 8-step x 0.5 img2img row; about 14 GB of graphs plus the
                  optimised copies, ~30 GB of disk
  --only LIST     components, comma-separated (default: all of the architecture's):
                  ${COMPONENTS.join(", ")}
                  ("unet" = both UNet batches; img2img-turbo-cli = 1 step, --quantize int8-conv --tiny-vae)
  --runs N        steady-state runs per component after the first (default 3); CLI rows: processes
  --threads N     ONNX Runtime intra-op threads (default: all cores, ${availableParallelism()} here)
  --size S        image side in pixels: 512 or 768 for sd15 (default 512), 1024 or 512 for sdxl; latent is S/8
  --cache DIR     graph cache root (default ${cacheRoot()}); the first build writes ~4.3 GB, the CLI
                  rows another ~4.3 GB of model files (DIR/bench-models) and their graphs
  --rebuild       drop the cached graphs first, so the build is measured from scratch
  --no-profile    skip the profiled runs (faster; no GFLOP/s)
  --json PATH     where to write the results (default bench/results/bench-<size>.json)
  --seed N        random-weights seed (default 0)
  --help          this text`;

export interface BenchOptions {
  arch: Arch;
  only: ComponentName[];
  runs: number;
  threads: number;
  size: number;
  cacheDir: string;
  rebuild: boolean;
  profile: boolean;
  json: string;
  seed: number;
  help: boolean;
}

const bad = (msg: string) => new ReimagineError(`${msg} (see npm run bench -- --help)`);

function positiveInt(name: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw bad(`--${name} must be a whole number >= 1, got '${v}'`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        arch: { type: "string" },
        only: { type: "string" },
        runs: { type: "string" },
        threads: { type: "string" },
        size: { type: "string" },
        cache: { type: "string" },
        rebuild: { type: "boolean" },
        "no-profile": { type: "boolean" },
        json: { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw bad((e as Error).message);
  }
  const arch = (values.arch ?? "sd15") as Arch;
  if (!ARCHS.includes(arch)) throw bad(`--arch must be one of ${ARCHS.join(", ")}, got '${values.arch}'`);
  const size = positiveInt("size", values.size, arch === "sdxl" ? 1024 : 512);
  const sizes = arch === "sdxl" ? [1024, 512] : [512, 768];
  if (!sizes.includes(size)) throw bad(`--size must be ${sizes.join(" or ")} for --arch ${arch}, got ${size}`);
  const allowed = archDefaults(arch);
  const only: ComponentName[] = [];
  for (const name of (values.only ?? allowed.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const names = name === "unet" ? (["unet-b1", "unet-b2"] as const) : [name];
    for (const n of names) {
      if (!allowed.includes(n as ComponentName)) throw bad(`--only: unknown component '${n}' for --arch ${arch}; use ${allowed.join(", ")}`);
      if (!only.includes(n as ComponentName)) only.push(n as ComponentName);
    }
  }
  const seed = Number(values.seed ?? 0);
  if (!Number.isSafeInteger(seed)) throw bad(`--seed must be an integer, got '${values.seed}'`);
  const benchDir = fileURLToPath(new URL(".", import.meta.url));
  return {
    arch,
    only: COMPONENTS.filter((c) => only.includes(c)), // always in pipeline order
    runs: positiveInt("runs", values.runs, 3),
    threads: positiveInt("threads", values.threads, availableParallelism()),
    size,
    cacheDir: resolve(values.cache ?? cacheRoot()),
    rebuild: values.rebuild ?? false,
    profile: !(values["no-profile"] ?? false),
    json: resolve(values.json ?? resolve(benchDir, "results", arch === "sdxl" ? `bench-sdxl-${size}.json` : `bench-${size}.json`)),
    seed,
    help: values.help ?? false,
  };
}
