#!/usr/bin/env node
// The `reimagine` executable. It runs the compiled dist/cli/main.js: always in an installed package
// (which ships no sources), and in a source checkout while dist/ is at least as new as every file
// in src/ (`npm run build`, which `npm install` runs). A checkout with newer sources runs them
// through tsx instead, so the CLI is never a stale build (slower to start: it compiles on the fly).
import { existsSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";

// onnxruntime-node's telemetry crashes (SIGSEGV) on command lines over ~29 kB, e.g. a long --prompt:
// opt out before any ONNX session exists, here on the main thread because worker threads cannot
// change the real environment (same list as src/ort-env.ts; docs/upstream/onnxruntime-node-long-argv.md)
for (const k of ["ORT_TELEMETRY_DISABLED", "ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS"]) process.env[k] ??= "1";

const root = new URL("..", import.meta.url);
const compiled = new URL("dist/cli/main.js", root);
const sources = fileURLToPath(new URL("src", root));

/** Newest modification time under `dir` (files only), or 0. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) t = Math.max(t, statSync(`${e.parentPath ?? e.path}/${e.name}`).mtimeMs);
  }
  return t;
}

const stamp = fileURLToPath(new URL("dist/.build-stamp", root));
const fresh = existsSync(fileURLToPath(compiled)) && (!existsSync(sources) || (existsSync(stamp) && statSync(stamp).mtimeMs >= newest(sources)));
let cli;
if (fresh) {
  cli = await import(compiled.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import(new URL("src/cli/main.ts", root).href);
}
process.exit(await cli.main(process.argv.slice(2)));
