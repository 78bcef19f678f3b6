// The HTTP server: one Hono app holding the native API (/v1), the AUTOMATIC1111 subset
// (/sdapi/v1) and the web UI (/), all sharing one JobQueue over one loaded Engine.
// Security: loopback by default, optional API key on every API route, body and pixel limits.
import { timingSafeEqual } from "node:crypto";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ReimagineError } from "../index.js";
import { a1111Routes } from "./a1111.js";
import type { Engine } from "./engine.js";
import { nativeRoutes } from "./native.js";
import { JobQueue } from "./queue.js";
import { defaultWebRoot, staticRoutes } from "./static.js";

export interface AppOptions {
  /** When set, every API route needs `Authorization: Bearer KEY` (or HTTP Basic with KEY as password). */
  apiKey?: string;
  /** Jobs waiting or running at once; more get 429 + Retry-After. Default 8. */
  queueSize?: number;
  /** Largest input image and output, in pixels. Default 16 megapixels. */
  maxPixels?: number;
  /** Largest request body. Default 64 MiB (a base64 16-megapixel PNG fits). */
  maxBodyBytes?: number;
  /** Folder of the built UI; default dist/web. */
  webRoot?: string;
  /** Preview every N steps on the native event stream. Default 2. */
  previewEvery?: number;
  /** Finished jobs kept for polling. Default 50. */
  keepFinished?: number;
}

export const DEFAULT_SERVER_MAX_PIXELS = 16 * 1024 * 1024;
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

const isApi = (path: string) => path.startsWith("/v1/") || path.startsWith("/sdapi/");

/** Constant-time check of Bearer KEY, or Basic user:KEY (A1111 clients such as SillyTavern send Basic). */
function authorized(header: string | undefined, key: string): boolean {
  if (!header) return false;
  const [scheme, value = ""] = header.trim().split(/\s+/, 2);
  let given = "";
  if (/^bearer$/i.test(scheme)) given = value;
  else if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(value, "base64").toString("utf8");
    given = decoded.slice(decoded.indexOf(":") + 1);
  } else return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

const LOOPBACK_HOST = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;

/**
 * Builds the app; `queue` is exposed for tests and shutdown.
 * @example
 * const { app, queue } = createApp(engine, { apiKey: "secret", queueSize: 8 });
 * const res = await app.request("/v1/models", { headers: { Authorization: "Bearer secret" } });
 */
export function createApp(engine: Engine, opts: AppOptions & { loopbackOnly?: boolean } = {}): { app: Hono; queue: JobQueue } {
  const limits = { maxPixels: opts.maxPixels ?? DEFAULT_SERVER_MAX_PIXELS, maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES };
  if (opts.apiKey !== undefined && opts.apiKey.length < 1) throw new ReimagineError("the API key is empty: pass a non-empty --api-key or leave it out");
  const queue = new JobQueue({ maxSize: opts.queueSize ?? 8, keepFinished: opts.keepFinished });
  const app = new Hono();

  // DNS-rebinding and cross-site form guard: a loopback server only answers loopback Host names,
  // and refuses POST/DELETE whose Origin is another site (browsers send Origin on those).
  app.use("*", async (c, next) => {
    if (opts.loopbackOnly && !LOOPBACK_HOST.test(c.req.header("host") ?? "")) {
      return c.json({ error: { code: "forbidden_host", message: "this server only answers requests addressed to localhost / 127.0.0.1" } }, 403);
    }
    const origin = c.req.header("origin");
    if (origin && c.req.method !== "GET" && c.req.method !== "HEAD") {
      let host = "";
      try {
        host = new URL(origin).host;
      } catch {
        /* "null" origin */
      }
      if (host !== c.req.header("host")) return c.json({ error: { code: "forbidden_origin", message: `requests from ${origin} are not allowed` } }, 403);
    }
    await next();
  });

  if (opts.apiKey) {
    const key = opts.apiKey;
    app.use("*", async (c, next) => {
      if (isApi(c.req.path) && !authorized(c.req.header("authorization"), key)) {
        c.header("WWW-Authenticate", 'Bearer realm="reimagine"');
        const message = "this server needs an API key: send the header 'Authorization: Bearer <key>' (the key given to reimagine serve --api-key)";
        return c.req.path.startsWith("/sdapi/") ? c.json({ detail: message }, 401) : c.json({ error: { code: "unauthorized", message } }, 401);
      }
      await next();
    });
  }

  app.use(
    "*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: (c: Context) =>
        c.json({ error: { code: "body_too_large", message: `the request body is over the limit of ${limits.maxBodyBytes} bytes: send a smaller image` }, detail: "Request body too large" }, 413),
    }),
  );

  app.route("/", nativeRoutes(engine, queue, { ...limits, previewEvery: opts.previewEvery }));
  app.route("/", a1111Routes(engine, queue, limits));
  app.route("/", staticRoutes(opts.webRoot ?? defaultWebRoot()));

  app.notFound((c) => c.json({ error: { code: "not_found", message: `no route ${c.req.method} ${c.req.path}` } }, 404));
  app.onError((e, c) => {
    if (e instanceof ReimagineError) return c.json({ error: { code: e.code, message: e.message } }, 422);
    console.error(`${c.req.method} ${c.req.path} failed:`, e);
    return c.json({ error: { code: "internal_error", message: "internal server error; see the server log" } }, 500);
  });
  return { app, queue };
}

export interface StartServerOptions extends AppOptions {
  engine: Engine;
  /** Default 127.0.0.1 (this machine only); "0.0.0.0" exposes the server to the network. */
  host?: string;
  /** Default 7860 (AUTOMATIC1111's port); 0 picks a free one. */
  port?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  server: ServerType;
  queue: JobQueue;
  /** Cancels all jobs and stops listening. */
  close(): Promise<void>;
}

/**
 * Starts listening.
 * @example const srv = await startServer({ engine, port: 7860 }); console.log(srv.url); await srv.close();
 */
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const host = opts.host ?? "127.0.0.1";
  const loopbackOnly = host === "127.0.0.1" || host === "localhost" || host === "::1";
  const { app, queue } = createApp(opts.engine, { ...opts, loopbackOnly });
  const server = await new Promise<ServerType>((resolvePromise, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? 7860 }, () => resolvePromise(s));
    s.once("error", (e: NodeJS.ErrnoException) => {
      const why = e.code === "EADDRINUSE" ? `port ${opts.port ?? 7860} is in use: pass --port <another>` : e.code === "EACCES" ? `no permission to listen on port ${opts.port}: use a port above 1024` : e.message;
      reject(new ReimagineError(`cannot start the server on ${host}: ${why}`, "server_error", { cause: e }));
    });
  });
  // A1111 requests block until their job is done: no request timeout
  if ("requestTimeout" in server) (server as { requestTimeout: number }).requestTimeout = 0;
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    server,
    queue,
    close: () =>
      new Promise<void>((r) => {
        queue.close();
        server.close(() => r());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}
