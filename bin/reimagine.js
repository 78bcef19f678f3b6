#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node
// The `reimagine` executable. In a source checkout it runs src/cli/main.ts through tsx (so the CLI is
// never a stale build); an installed package ships only dist/ and runs the compiled dist/cli/main.js.
// The #! line asks glibc for transparent huge pages on large allocations (ONNX Runtime's arenas): a
// first run then faults in 2 MiB pages instead of 4 KiB ones (docs/performance.md); other C libraries
// and systems without THP ignore it.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

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
