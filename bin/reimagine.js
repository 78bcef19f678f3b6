#!/usr/bin/env node
// The `reimagine` executable: runs the compiled CLI (dist/cli/main.js) when the package is built,
// else the TypeScript sources through tsx, so `npx reimagine` works right after `npm install` in a clone.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const built = new URL("../dist/cli/main.js", import.meta.url);
let cli;
if (existsSync(fileURLToPath(built))) {
  cli = await import(built.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
process.exit(await cli.main(process.argv.slice(2)));
