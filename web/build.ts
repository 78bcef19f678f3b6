// Bundles the web UI (Preact + CSS) with esbuild into dist/web: index.html, main.js, main.css.
// Runs at install/build time (`npx tsx web/build.ts [outDir]`); users never run a dev server.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Builds the UI into `outDir` (default <repo>/dist/web).
 * @example await buildWeb("/tmp/web") // then createApp(engine, { webRoot: "/tmp/web" })
 */
export async function buildWeb(outDir = resolve(here, "..", "dist", "web")): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: [join(here, "src", "main.tsx")],
    outdir: outDir,
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022", "chrome110", "firefox110", "safari16"],
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(here, "index.html"), join(outDir, "index.html"));
  return outDir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildWeb(process.argv[2] ? resolve(process.argv[2]) : undefined);
  console.log(`web UI built into ${out}`);
}
