// `reimagine serve`: loads one model (in a child process), then serves the web UI, the native API and the
// AUTOMATIC1111-compatible API until SIGINT/SIGTERM, which stops it gracefully: no new jobs, the running
// job cancelled at its next step, waiting clients answered, exit 0.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  DEFAULT_MODEL,
  defaultControlNetDir,
  embeddingDirsFor,
  listControlNets,
  loraDirsFor,
  parseRepoRef,
  QUANTIZE_MODES,
  type QuantizeMode,
  ReimagineError,
} from "../index.js";
import { startServer } from "../server/app.js";
import { DEFAULT_LIMITS } from "../server/limits.js";
import { createWorkerEngine } from "../server/worker-engine.js";
import { parseServeQueue, SERVE_QUEUE_HELP, SERVE_QUEUE_OPTIONS } from "./args-queue.js";

export const SERVE_HELP = `Usage: reimagine serve [options]

Serves the web UI at / , the native API at /v1 and an AUTOMATIC1111-compatible API at /sdapi/v1.

Options:
  --model M          diffusers folder, .safetensors file or Hugging Face repo id (default: stabilityai/sd-turbo)
  --host H           address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = the network)
  --port N           port (default 7860, as AUTOMATIC1111)
  --api-key KEY      require "Authorization: Bearer KEY" on every API route (or set REIMAGINE_API_KEY)
  --queue-size N     jobs waiting or running at once; more get HTTP 429 (default 8)
  --max-pixels N     largest input/output image in pixels (default ${DEFAULT_LIMITS.maxPixels})
  --max-body-mb N    largest request body in MiB (default ${DEFAULT_LIMITS.maxBodyBytes / 1024 / 1024})
  --max-job-mpx-steps N  most work per job: width x height x images x steps, in millions (default ${DEFAULT_LIMITS.maxJobPixelSteps / 1e6})
  --keep-results-mb N    finished jobs' images kept for download, in MiB; oldest dropped first (default ${DEFAULT_LIMITS.maxResultBytes / 1024 / 1024})
  --decode-timeout-s N   longest an upload may take to decode (default ${DEFAULT_LIMITS.decodeTimeoutS})
  --request-timeout-s N  a request's headers and body must arrive within N s, else 408 (default ${DEFAULT_LIMITS.requestTimeoutS})
  --allowed-hosts LIST   Host names the server answers besides localhost, comma-separated; * = any
                     (default: the --host address; for 0.0.0.0 this machine's addresses and name)
  --lora-dir DIR     folder of LoRA .safetensors files requests may name (repeatable; default: loras/ beside
                     the model; plus REIMAGINE_LORA_DIR): <lora:name:0.8> in prompts, GET /sdapi/v1/loras
  --embedding-dir DIR  folder of textual-inversion embeddings prompts may name (repeatable; default:
                     embeddings/ beside the model; plus REIMAGINE_EMBEDDING_DIR); GET /sdapi/v1/embeddings
  --threads N        CPU threads for ONNX Runtime (default: all cores)
  --quantize M       int8 or int8-conv: int8 linear layers (and the UNet's convs: fastest), approximate
  --refiner REF      an SDXL refiner requests may hand over to (native 'refiner', A1111 'refiner_checkpoint');
                     repeatable; loaded in the model process on first use and kept (its weights count too)
  --tiny-vae REF     TAESD (e.g. madebyollin/taesd) for fast encode/decode and live previews (approximate)
  --preview-vae REF  tiny VAE that decodes live previews only (results stay exact): auto (default: the
                     model family's TAESD when the Hugging Face cache has it), a repo id or folder
                     (downloaded like a model), or none (latent previews)
  --controlnet-dir DIR   ControlNets requests may name (.safetensors files and diffusers folders; default:
                     controlnet/ beside a local --model); listed at /controlnet/model_list and /v1/controlnets
${SERVE_QUEUE_HELP}  -h, --help         show this help
`;

function intOption(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new ReimagineError(`--${name} must be a whole number from ${min} to ${max} (got '${v}')`);
  return n;
}

/**
 * Runs the server until SIGINT/SIGTERM; returns the exit code.
 * @example process.exitCode = await serveMain(["--model", "stabilityai/sd-turbo", "--port", "7860"]);
 */
export async function serveMain(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "7860" },
        "api-key": { type: "string" },
        "queue-size": { type: "string", default: "8" },
        "max-pixels": { type: "string" },
        "max-body-mb": { type: "string" },
        "max-job-mpx-steps": { type: "string" },
        "keep-results-mb": { type: "string" },
        "decode-timeout-s": { type: "string" },
        "request-timeout-s": { type: "string" },
        "allowed-hosts": { type: "string" },
        "lora-dir": { type: "string", multiple: true },
        "embedding-dir": { type: "string", multiple: true },
        threads: { type: "string" },
        quantize: { type: "string" },
        "tiny-vae": { type: "string" },
        refiner: { type: "string", multiple: true },
        "preview-vae": { type: "string", default: "auto" },
        "controlnet-dir": { type: "string" },
        ...SERVE_QUEUE_OPTIONS,
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`reimagine serve: ${(e as Error).message}\n\n${SERVE_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  try {
    const port = intOption(values.port, "port", 0, 65535)!;
    const queueSize = intOption(values["queue-size"], "queue-size", 1, 1000)!;
    const maxPixels = intOption(values["max-pixels"], "max-pixels", 64 * 64, 1 << 30);
    const maxBodyMb = intOption(values["max-body-mb"], "max-body-mb", 1, 4096);
    const maxJobMpxSteps = intOption(values["max-job-mpx-steps"], "max-job-mpx-steps", 1, 1e9);
    const keepResultsMb = intOption(values["keep-results-mb"], "keep-results-mb", 1, 1 << 20);
    const decodeTimeoutS = intOption(values["decode-timeout-s"], "decode-timeout-s", 1, 3600);
    const requestTimeoutS = intOption(values["request-timeout-s"], "request-timeout-s", 1, 3600);
    const allowedHosts = values["allowed-hosts"]
      ?.split(",")
      .map((h) => h.trim())
      .filter(Boolean);
    const threads = intOption(values.threads, "threads", 1, 1024);
    const quantize = values.quantize;
    if (quantize !== undefined && !(QUANTIZE_MODES as readonly string[]).includes(quantize)) {
      throw new ReimagineError(`--quantize must be one of ${QUANTIZE_MODES.join(", ")} (got '${quantize}')`);
    }
    // as the model loader reads a reference: a path when it exists, else a hub repo id
    for (const r of values.refiner ?? []) {
      if (existsSync(r)) continue;
      try {
        parseRepoRef(r);
      } catch {
        throw new ReimagineError(
          `--refiner ${r}: no such file or folder, nor a Hugging Face repo id (give an SDXL refiner folder, .safetensors file or org/name)`,
        );
      }
    }
    const apiKey = values["api-key"] ?? (process.env.REIMAGINE_API_KEY || undefined);
    const host = values.host!;
    const loopback = ["127.0.0.1", "localhost", "::1"].includes(host);
    if (!loopback && !apiKey) {
      process.stderr.write(`warning: listening on ${host} without --api-key: anyone on the network can use this server\n`);
    }

    const queue = parseServeQueue(values, args);
    if (queue) {
      const { serveQueue } = await import("./serve-queue.js");
      const limits = { maxPixels, maxBodyBytes: maxBodyMb && maxBodyMb * 1024 * 1024, maxJobPixelSteps: maxJobMpxSteps && maxJobMpxSteps * 1e6 };
      return await serveQueue({
        ...queue,
        model: values.model,
        host,
        port,
        apiKey,
        queueSize,
        ...limits,
        decodeTimeoutS,
        requestTimeoutS,
        allowedHosts,
        previewEvery: 1,
      });
    }

    process.stderr.write(`loading ${values.model ?? "the default model"}…\n`);
    const t0 = performance.now();
    // the model runs in a child process so HTTP stays responsive during each model call
    const previewVae = values["preview-vae"] === "none" ? undefined : values["preview-vae"];
    const engine = await createWorkerEngine(
      values.model,
      { threads, quantize: quantize as QuantizeMode | undefined, tinyVae: values["tiny-vae"], previewVae },
      (m) => process.stderr.write(`  ${m}\n`),
      { refiners: values.refiner },
    );
    process.stderr.write(`loaded ${engine.modelName} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    const controlnetDir = values["controlnet-dir"] ?? defaultControlNetDir(values.model);
    if (controlnetDir)
      process.stderr.write(
        `ControlNets in ${controlnetDir}: ${
          listControlNets(controlnetDir)
            .map((e) => e.name)
            .join(", ") || "none"
        }\n`,
      );

    let srv;
    try {
      // a preview every step: the model process decodes them only as often as they stay cheap
      srv = await startServer({
        engine,
        host,
        port,
        apiKey,
        queueSize,
        maxPixels,
        maxBodyBytes: maxBodyMb && maxBodyMb * 1024 * 1024,
        maxJobPixelSteps: maxJobMpxSteps && maxJobMpxSteps * 1e6,
        maxResultBytes: keepResultsMb && keepResultsMb * 1024 * 1024,
        decodeTimeoutS,
        requestTimeoutS,
        allowedHosts,
        loraDirs: loraDirsFor(values.model ?? DEFAULT_MODEL, values["lora-dir"]),
        embeddingDirs: embeddingDirsFor(values.model ?? DEFAULT_MODEL, values["embedding-dir"]),
        previewEvery: 1,
        controlnetDir,
      });
    } catch (e) {
      await engine.close(); // let the process exit
      throw e;
    }
    process.stdout.write(`Reimagine is serving ${engine.modelName} at ${srv.url}\n`);
    process.stdout.write(`  web UI ${srv.url}   native API ${srv.url}v1/   AUTOMATIC1111 API ${srv.url}sdapi/v1/\n`);
    if (apiKey) process.stdout.write(`  API routes need: Authorization: Bearer <your key>\n`);
    process.stdout.write(`Press Ctrl+C to stop.\n`);

    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = () => {
        if (stopping) {
          // process.exit would wait for the worker's model call to return; SIGKILL does not wait
          process.stderr.write("reimagine serve: quitting at once (the running job is lost)\n");
          process.kill(process.pid, "SIGKILL");
        }
        stopping = true;
        const running = srv!.queue.running ? "; the running job is cancelled and ends after its current step" : "";
        process.stderr.write(`\nstopping: no new jobs${running} (Ctrl+C again to quit at once)\n`);
        void srv!
          .close()
          .then(() => engine.close()) // the worker releases its sessions and ends by itself
          .then(() => {
            process.off("SIGINT", stop);
            process.off("SIGTERM", stop);
            process.stderr.write("stopped\n");
            resolve();
          });
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    return 0;
  } catch (e) {
    if (e instanceof ReimagineError) {
      process.stderr.write(`reimagine serve: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
