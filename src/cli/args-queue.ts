// Command-line options of the queue mode (docs/scale-out.md): the `--queue` fragment of `reimagine serve`
// and the whole `reimagine worker` command (option table, parsing with one-line errors, help text).
import { parseArgs } from "node:util";
import { PROVIDERS, type Provider, QUANTIZE_MODES, type QuantizeMode, ReimagineError } from "../index.js";
import { parseQueueUrl } from "../server/redis-connect.js";

/** Options `reimagine serve` gains for the queue mode (spread into its table). */
export const SERVE_QUEUE_OPTIONS = {
  queue: { type: "string" },
  "result-ttl-s": { type: "string" },
} as const;

export const SERVE_QUEUE_HELP = `  --queue URL        serve through a job queue on Redis (redis://HOST:PORT[/DB]): load no model here;
                     \`reimagine worker\` processes run the jobs (docs/scale-out.md). --model then names
                     the default model of requests that name none; --queue-size bounds the whole queue
  --result-ttl-s N   with --queue: finished jobs and their images are kept N s, then removed (default 3600)
`;

/** Flags that load a model: with --queue they belong to `reimagine worker`. */
const MODEL_FLAGS = ["--threads", "--quantize", "--tiny-vae", "--preview-vae", "--keep-results-mb"];

function number(flag: string, v: string | undefined, min: number, max: number, integer = true): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw new ReimagineError(`--${flag} must be ${integer ? "a whole number" : "a number"} from ${min} to ${max} (got '${v}')`, "usage");
  }
  return n;
}

export interface ServeQueue {
  url: string;
  resultTtlS?: number;
}

/**
 * The queue settings of `reimagine serve`, or undefined without --queue.
 * @example parseServeQueue({ queue: "redis://127.0.0.1:6379" }, args) // { url: "redis://127.0.0.1:6379" }
 */
export function parseServeQueue(values: { queue?: string; "result-ttl-s"?: string }, args: string[]): ServeQueue | undefined {
  const resultTtlS = number("result-ttl-s", values["result-ttl-s"], 1, 30 * 24 * 3600);
  if (values.queue === undefined) {
    if (resultTtlS !== undefined)
      throw new ReimagineError("--result-ttl-s applies with --queue (the embedded queue keeps results within --keep-results-mb)", "usage");
    return undefined;
  }
  parseQueueUrl(values.queue);
  const misplaced = MODEL_FLAGS.find((f) => args.some((a) => a === f || a.startsWith(`${f}=`)));
  if (misplaced === "--keep-results-mb")
    throw new ReimagineError("--keep-results-mb is for the embedded queue: with --queue, results are kept --result-ttl-s seconds", "usage");
  if (misplaced) throw new ReimagineError(`${misplaced} loads a model: with --queue this process loads none; pass it to reimagine worker`, "usage");
  if (args.some((a) => a === "--refiner" || a.startsWith("--refiner=")))
    throw new ReimagineError("--refiner is not available with --queue yet: queue workers load no SDXL refiner (serve without --queue to use one)", "usage");
  if (args.some((a) => a === "--controlnet-dir" || a.startsWith("--controlnet-dir=")))
    throw new ReimagineError(
      "--controlnet-dir is not available with --queue yet: queue workers load no ControlNet (serve without --queue to use them)",
      "usage",
    );
  return { url: values.queue, resultTtlS };
}

const WORKER_OPTIONS = {
  queue: { type: "string" },
  model: { type: "string", short: "m" },
  concurrency: { type: "string" },
  provider: { type: "string" },
  threads: { type: "string" },
  quantize: { type: "string" },
  "tiny-vae": { type: "string" },
  "preview-vae": { type: "string" },
  "lock-s": { type: "string" },
  "stalled-check-s": { type: "string" },
  name: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export const WORKER_HELP = `Usage: reimagine worker --queue redis://HOST:PORT[/DB] --model M [options]

Loads a model and runs the jobs that \`reimagine serve --queue\` processes put on the Redis queue for it
(docs/scale-out.md). Start any number, on any machines that reach Redis. Logs are JSON lines on stdout.
SIGTERM or Ctrl+C: takes no new job, finishes the running ones, exits 0. A second signal quits at once:
the running jobs go back to the queue when their locks expire (--lock-s) and other workers run them.

Options:
  --queue URL           the Redis of the API processes (required)
  -m, --model M         diffusers folder, .safetensors file or Hugging Face repo id (default: stabilityai/sd-turbo)
  --concurrency N       jobs at once, each on its own copy of the model in its own process (default 1)
  --provider P          execution provider: ${PROVIDERS.join(", ")} (default cpu)
  --threads N           CPU threads per model copy (default: the cores divided by --concurrency)
  --quantize int8       faster UNet with int8 linear layers (approximate)
  --tiny-vae REF        TAESD for fast encode/decode and live previews (approximate)
  --preview-vae REF     tiny VAE for live previews only: auto (default), a repo id or folder, or none
  --lock-s S            a job whose worker stops renewing its lock for S seconds goes to another worker (default 10)
  --stalled-check-s S   how often this worker looks for such jobs (default 5)
  --name ID             worker id in logs and /v1/queue (default HOST-PID)
  -h, --help            show this help
`;

export interface WorkerFlags {
  queue: string;
  model?: string;
  concurrency: number;
  provider?: Provider;
  threads?: number;
  quantize?: QuantizeMode;
  tinyVae?: string;
  /** undefined: latent previews only. */
  previewVae?: string;
  lockMs: number;
  stalledCheckMs: number;
  name?: string;
  help: boolean;
}

/**
 * @example parseWorkerArgs(["--queue", "redis://127.0.0.1:6379", "--model", "stabilityai/sd-turbo"]).concurrency // 1
 */
export function parseWorkerArgs(args: string[]): WorkerFlags {
  let values;
  try {
    ({ values } = parseArgs({ args, options: WORKER_OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new ReimagineError(`${String((e as Error).message).split("\n")[0]}: see reimagine worker --help`, "usage");
  }
  const help = values.help ?? false;
  if (values.queue === undefined && !help)
    throw new ReimagineError("--queue is required: the Redis of the API processes, e.g. --queue redis://127.0.0.1:6379", "usage");
  if (values.queue !== undefined) parseQueueUrl(values.queue);
  const oneOf = <T extends string>(flag: string, v: string | undefined, allowed: readonly T[]) => {
    if (v !== undefined && !allowed.includes(v as T)) throw new ReimagineError(`--${flag} must be one of ${allowed.join(", ")} (got '${v}')`, "usage");
    return v as T | undefined;
  };
  const preview = values["preview-vae"] ?? "auto";
  return {
    queue: values.queue ?? "",
    model: values.model,
    concurrency: number("concurrency", values.concurrency, 1, 64) ?? 1,
    provider: oneOf("provider", values.provider, PROVIDERS),
    threads: number("threads", values.threads, 1, 1024),
    quantize: oneOf("quantize", values.quantize, QUANTIZE_MODES),
    tinyVae: values["tiny-vae"],
    previewVae: preview === "none" ? undefined : preview,
    lockMs: (number("lock-s", values["lock-s"], 0.5, 3600, false) ?? 10) * 1000,
    stalledCheckMs: (number("stalled-check-s", values["stalled-check-s"], 0.2, 3600, false) ?? 5) * 1000,
    name: values.name,
    help,
  };
}
