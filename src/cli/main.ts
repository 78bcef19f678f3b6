// Entry of the `reimagine` command: dispatches to img2img (default), batch, info, serve and worker, and turns
// errors into one line on stderr (`reimagine: <message>`, exit 1; stack only with --verbose).
// Exit codes: 0 ok, 1 error, 2 batch with failures, 130 interrupted (Ctrl+C). Commands load lazily,
// so --version, --help and info never load ONNX Runtime.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { CliIO } from "./args.js";

/** The package version (package.json is two folders up from src/cli and dist/cli). */
export function version(): string {
  try {
    return JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

const defaultIO = (): CliIO => ({ stdout: process.stdout, stderr: process.stderr });

/**
 * Runs the CLI in-process and returns the exit code (it never calls process.exit itself).
 * @example const code = await main(["photo.png", "--prompt", "oil painting", "--seed", "1"]);
 */
export async function main(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  const verbose = argv.includes("--verbose");
  const json = argv.includes("--json");
  try {
    const [cmd, ...rest] = argv;
    if (cmd === "--version" || cmd === "-V") {
      io.stdout.write(`${version()}\n`);
      return 0;
    }
    if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
      const { mainHelp } = await import("./args.js");
      // no arguments at all: the usage, as an error (a script that lost its input should not pass)
      (cmd === undefined ? io.stderr : io.stdout).write(mainHelp(version()));
      return cmd === undefined ? 1 : 0;
    }
    if (cmd === "serve") {
      const { serveMain } = await import("./serve.js");
      return await serveMain(rest);
    }
    if (cmd === "worker") return await (await import("./worker.js")).workerMain(rest);
    if (cmd === "info") return await (await import("./info.js")).infoMain(rest, io);
    if (cmd === "batch") return await (await import("./batch.js")).batchMain(rest, io);
    const { img2imgMain } = await import("./img2img.js");
    return await img2imgMain(cmd === "img2img" ? rest : argv, io, version());
  } catch (e) {
    // the library's error rules, loaded now (--version and --help never need them)
    const { isAbortError, ReimagineError } = await import("../index.js");
    if (isAbortError(e)) {
      io.stderr.write("reimagine: interrupted; nothing was written\n");
      return 130;
    }
    const known = e instanceof ReimagineError;
    const message = String((e as Error)?.message ?? e).split("\n")[0];
    const hint = known || verbose ? "" : " (unexpected error: run again with --verbose for the details)";
    io.stderr.write(`reimagine: ${message}${hint}\n`);
    if (verbose) io.stderr.write(`${(e as Error)?.stack ?? e}\n`);
    if (json) io.stdout.write(`${JSON.stringify({ error: message, code: known ? e.code : "internal" })}\n`);
    return 1;
  }
}

// `tsx src/cli/main.ts ...` or `node dist/cli/main.js ...` run the CLI directly.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
