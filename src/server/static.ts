// Serves the bundled web UI (dist/web, built by web/build.ts at install time). Only the files
// found in that folder at startup are served, by exact name: no client-supplied path reaches the disk.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json",
};

/** dist/web beside the compiled server (dist/server) or, when run from source, <repo>/dist/web. */
export function defaultWebRoot(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  return [resolve(here, "..", "web"), resolve(here, "..", "..", "dist", "web")].find((d) => existsSync(join(d, "index.html")));
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Reimagine</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>Reimagine server is running</h1>
<p>The web UI is not built. Build it with <code>npx tsx web/build.ts</code> (npm install does this for you),
then reload. The APIs work without it: <code>/v1/*</code> and <code>/sdapi/v1/*</code>.</p></body>`;

/**
 * Routes for the UI: GET / and GET /<file> for each file in `root`.
 * @example app.route("/", staticRoutes(defaultWebRoot()))
 */
export function staticRoutes(root: string | undefined): Hono {
  const app = new Hono();
  const files = new Map<string, { body: Buffer; type: string }>();
  if (root && existsSync(root)) {
    for (const name of readdirSync(root)) {
      const p = join(root, name);
      if (statSync(p).isFile() && TYPES[extname(name)]) files.set(name, { body: readFileSync(p), type: TYPES[extname(name)] });
    }
  }
  const send = (name: string) => {
    const f = files.get(name);
    if (!f) return undefined;
    return new Response(new Uint8Array(f.body), {
      headers: { "Content-Type": f.type, "Cache-Control": name === "index.html" ? "no-cache" : "public, max-age=300", "X-Content-Type-Options": "nosniff" },
    });
  };
  app.get("/", (c) => send("index.html") ?? c.html(NOT_BUILT));
  app.get("/:file", (c, next) => send(c.req.param("file")) ?? next());
  return app;
}
