// `reimagine serve`: loads one model, then serves the web UI, the native API and the
// AUTOMATIC1111-compatible API from one process until Ctrl+C.
import { parseArgs } from "node:util";
import { ReimagineError } from "../errors.js";
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_SERVER_MAX_PIXELS, startServer } from "../server/app.js";
import { createWorkerEngine } from "../server/worker-engine.js";
import { QUANTIZE_MODES, type QuantizeMode } from "../graph/quantize.js";

export const SERVE_HELP = `Usage: reimagine serve [options]

Serves the web UI at / , the native API at /v1 and an AUTOMATIC1111-compatible API at /sdapi/v1.

Options:
  --model M          diffusers folder, .safetensors file or Hugging Face repo id (default: stabilityai/sd-turbo)
  --host H           address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = the network)
  --port N           port (default 7860, as AUTOMATIC1111)
  --api-key KEY      require "Authorization: Bearer KEY" on every API route (or set REIMAGINE_API_KEY)
  --queue-size N     jobs waiting or running at once; more get HTTP 429 (default 8)
  --max-pixels N     largest input/output image in pixels (default ${DEFAULT_SERVER_MAX_PIXELS})
  --max-body-mb N    largest request body in MiB (default ${DEFAULT_MAX_BODY_BYTES / 1024 / 1024})
  --threads N        CPU threads for ONNX Runtime (default: all cores)
  --quantize M       int8 or int8-conv: int8 linear layers (and 1x1 convs), faster, approximate
  --tiny-vae REF     TAESD (e.g. madebyollin/taesd) for fast encode/decode and live previews (approximate)
  -h, --help         show this help
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
        threads: { type: "string" },
        quantize: { type: "string" },
        "tiny-vae": { type: "string" },
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
    const threads = intOption(values.threads, "threads", 1, 1024);
    const quantize = values.quantize;
    if (quantize !== undefined && !(QUANTIZE_MODES as readonly string[]).includes(quantize)) {
      throw new ReimagineError(`--quantize must be one of ${QUANTIZE_MODES.join(", ")} (got '${quantize}')`);
    }
    const apiKey = values["api-key"] ?? (process.env.REIMAGINE_API_KEY || undefined);
    const host = values.host!;
    const loopback = ["127.0.0.1", "localhost", "::1"].includes(host);
    if (!loopback && !apiKey) {
      process.stderr.write(`warning: listening on ${host} without --api-key: anyone on the network can use this server\n`);
    }

    process.stderr.write(`loading ${values.model ?? "the default model"}…\n`);
    const t0 = performance.now();
    // the model runs in a worker thread so HTTP stays responsive during each model call
    const engine = await createWorkerEngine(values.model, { threads, prepack: true, quantize: quantize as QuantizeMode | undefined, tinyVae: values["tiny-vae"] }, (m) => process.stderr.write(`  ${m}\n`));
    process.stderr.write(`loaded ${engine.modelName} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

    let srv;
    try {
      srv = await startServer({ engine, host, port, apiKey, queueSize, maxPixels, maxBodyBytes: maxBodyMb ? maxBodyMb * 1024 * 1024 : undefined });
    } catch (e) {
      await engine.close(); // let the process exit
      throw e;
    }
    process.stdout.write(`Reimagine is serving ${engine.modelName} at ${srv.url}\n`);
    process.stdout.write(`  web UI ${srv.url}   native API ${srv.url}v1/   AUTOMATIC1111 API ${srv.url}sdapi/v1/\n`);
    if (apiKey) process.stdout.write(`  API routes need: Authorization: Bearer <your key>\n`);
    process.stdout.write(`Press Ctrl+C to stop.\n`);

    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        process.stderr.write("\nstopping…\n");
        void srv!
          .close()
          .then(() => engine.close())
          .then(resolve);
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
