#!/usr/bin/env node
// The `reimagine` executable. In a source checkout it runs src/cli/main.ts through tsx (so the CLI is
// never a stale build); an installed package ships only dist/ and runs the compiled dist/cli/main.js.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

// onnxruntime-node's telemetry crashes (SIGSEGV) on command lines over ~29 kB, e.g. a long --prompt:
// opt out before any ONNX session exists, here on the main thread because worker threads cannot
// change the real environment (same list as src/ort-env.ts; docs/upstream/onnxruntime-node-long-argv.md)
for (const k of ["ORT_TELEMETRY_DISABLED", "ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS"]) process.env[k] ??= "1";

const source = new URL("../src/cli/main.ts", import.meta.url);
let cli;
if (existsSync(fileURLToPath(source))) {
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL("../dist/cli/main.js", import.meta.url).href);
}
process.exit(await cli.main(process.argv.slice(2)));
