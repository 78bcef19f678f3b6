// The HTTP server: one Hono app holding the native API (/v1), the AUTOMATIC1111 subset
// (/sdapi/v1), operations (/healthz, /readyz, /metrics) and the web UI (/), all over one job backend
// (jobs.ts): the embedded queue over one loaded Engine (default), or the Redis queue (`--queue`).
// Security (docs/security.md): loopback by default, Host allow-list, optional API key on every API
// route, body / pixel / compute / decode-time / retained-bytes limits, request timeouts, graceful stop.
import { timingSafeEqual } from "node:crypto";
import type { AddressInfo } from "node:net";
import { hostname, networkInterfaces } from "node:os";
import { serve, type ServerType } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { secureHeaders } from "hono/secure-headers";
import { ReimagineError } from "../index.js";
import { a1111Routes, fail as failA1111 } from "./a1111.js";
import type { ControlNetCatalog } from "./controlnet-fields.js";
import { controlNetRoutes } from "./controlnet-routes.js";
import type { Engine } from "./engine.js";
import { prepareError } from "./http.js";
import type { Jobs } from "./jobs.js";
import { MemoryJobs } from "./jobs-memory.js";
import { DEFAULT_LIMITS, type ServerLimits } from "./limits.js";
import { createMetrics } from "./metrics.js";
import { nativeRoutes } from "./native.js";
import { openaiRoutes } from "./openai.js";
import type { JobQueue } from "./queue.js";
import { defaultWebRoot, staticRoutes } from "./static.js";

export interface AppOptions extends Partial<ServerLimits> {
  /** When set, every API route needs `Authorization: Bearer KEY` (or HTTP Basic with KEY as password). */
  apiKey?: string;
  /** Jobs waiting or running at once; more get 429 + Retry-After. Default 8. */
  queueSize?: number;
  /** Folder of the built UI; default dist/web. */
  webRoot?: string;
  /** Preview every N steps on the native event stream. Default 2. */
  previewEvery?: number;
  /** Finished jobs kept for polling. Default 50. */
  keepFinished?: number;
  /** Host names (or addresses) requests may be addressed to, besides the loopback names; ["*"] = any. */
  allowedHosts?: string[];
  /** Only loopback Host names (the default of a server bound to 127.0.0.1). */
  loopbackOnly?: boolean;
  /** Folders of the LoRAs requests may name (GET /sdapi/v1/loras lists them). Default none. */
  loraDirs?: string[];
  /** Folders of the textual-inversion embeddings prompts may name (GET /sdapi/v1/embeddings). Default none. */
  embeddingDirs?: string[];
  /** The folder of ControlNets requests may name (reimagine serve --controlnet-dir). */
  controlnetDir?: string;
}

export const DEFAULT_SERVER_MAX_PIXELS = DEFAULT_LIMITS.maxPixels;
export const DEFAULT_MAX_BODY_BYTES = DEFAULT_LIMITS.maxBodyBytes;

/** Headers on every response (hono's secureHeaders): no framing (clickjacking), no MIME sniffing, and a
 *  CSP that lets the UI load only its own scripts and styles (previews are data: URLs, sketches blob:). */
const securityHeaders = () =>
  secureHeaders({
    xFrameOptions: "DENY",
    strictTransportSecurity: false, // plain HTTP on a LAN or loopback; a TLS proxy in front sets its own
    contentSecurityPolicy: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      styleSrc: ["'self'"],
      imgSrc: ["'self'", "data:", "blob:"],
      connectSrc: ["'self'"],
      objectSrc: ["'none'"],
      baseUri: ["'none'"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
    },
  });

const GENERATE_ROUTES = new Set(["/v1/img2img", "/v1/sweep", "/v1/images/edits", "/sdapi/v1/img2img", "/sdapi/v1/txt2img"]);

const isApi = (path: string) => path.startsWith("/v1/") || path.startsWith("/sdapi/") || path.startsWith("/controlnet/") || path === "/metrics";

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

const LOOPBACK_NAME = /^(localhost|127\.\d+\.\d+\.\d+|::1)$/i;

/** The host name of a Host header, lower-case, without port or IPv6 brackets ("" when malformed). */
export function hostOf(header: string | undefined): string {
  const h = (header ?? "").trim().toLowerCase();
  const m = /^\[([0-9a-f:.]+)\](:\d+)?$/.exec(h) ?? /^([^:[\]]+)(:\d+)?$/.exec(h);
  return m ? m[1] : "";
}

/**
 * Host names a server bound to `bindHost` answers by default (loopback names are always allowed): the
 * bound address; for 0.0.0.0 / :: every local interface address and the machine's name.
 * @example defaultAllowedHosts("192.168.1.5") // ["192.168.1.5"]
 */
export function defaultAllowedHosts(bindHost: string): string[] {
  const h = hostOf(bindHost.includes(":") && !bindHost.startsWith("[") ? `[${bindHost}]` : bindHost);
  if (LOOPBACK_NAME.test(h)) return [];
  if (h !== "0.0.0.0" && h !== "::") return [h];
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.toLowerCase().replace(/%.*$/, "")));
  const name = hostname().toLowerCase();
  return [...new Set([...addresses, name, `${name}.local`])];
}

export interface CreatedApp {
  app: Hono;
  jobs: Jobs;
  /** The embedded mode's in-process queue (tests read it). */
  queue?: JobQueue;
  inflight: () => number;
  /** Marks the app as stopping (/readyz answers 503) and stops its metrics. */
  stopping(): void;
}

const isJobs = (x: Engine | Jobs): x is Jobs => "submit" in x;

/**
 * Builds the app over a loaded Engine (the embedded queue; `queue` is exposed for tests and shutdown) or
 * over a job backend (`jobs`, e.g. RedisJobs: the options' queueSize and keepFinished are then its own).
 * @example
 * const { app, queue } = createApp(engine, { apiKey: "secret", queueSize: 8 });
 * const res = await app.request("/v1/models", { headers: { Authorization: "Bearer secret" } });
 */
export function createApp(engine: Engine, opts?: AppOptions): CreatedApp & { queue: JobQueue };
export function createApp(backend: Engine | Jobs, opts?: AppOptions): CreatedApp;
export function createApp(backend: Engine | Jobs, opts: AppOptions = {}): CreatedApp {
  const limits: ServerLimits = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as (keyof ServerLimits)[]) if (opts[k] !== undefined) limits[k] = opts[k]!;
  if (opts.apiKey !== undefined && opts.apiKey.length < 1) throw new ReimagineError("the API key is empty: pass a non-empty --api-key or leave it out");
  const memory = isJobs(backend)
    ? undefined
    : new MemoryJobs(backend, { maxSize: opts.queueSize ?? 8, keepFinished: opts.keepFinished, maxResultBytes: limits.maxResultBytes });
  const jobs: Jobs = memory ?? (backend as Jobs);
  const metrics = createMetrics(jobs);
  let stopping = false;
  const app = new Hono();
  const allowed = opts.allowedHosts ?? (opts.loopbackOnly ? [] : ["*"]);
  const anyHost = allowed.includes("*");
  const allowedSet = new Set(allowed.map((h) => hostOf(h.includes(":") && !h.startsWith("[") ? `[${h}]` : h)));

  let inflight = 0; // handlers still computing their response (shutdown waits for them)
  app.use("*", async (_c, next) => {
    inflight++;
    try {
      await next();
    } finally {
      inflight--;
    }
  });
  app.use("*", securityHeaders());

  // DNS-rebinding and cross-site form guard: only Host names on the allow-list (loopback names always),
  // and no POST/DELETE whose Origin is another site (browsers send Origin on those).
  app.use("*", async (c, next) => {
    const host = hostOf(c.req.header("host"));
    if (!anyHost && !LOOPBACK_NAME.test(host) && !allowedSet.has(host)) {
      const message = `this server does not answer requests addressed to '${host || "(no Host)"}': allowed are the loopback names${allowed.length ? ` and ${allowed.join(", ")}` : ""} (reimagine serve --allowed-hosts)`;
      return c.json({ error: { code: "forbidden_host", message } }, 403);
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
        return c.req.path.startsWith("/sdapi/") || c.req.path.startsWith("/controlnet/")
          ? c.json({ detail: message }, 401)
          : c.json({ error: { code: "unauthorized", message } }, 401);
      }
      await next();
    });
  }

  // Operations: liveness, readiness (the backend reachable and not stopping), Prometheus metrics.
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const health = jobs.health();
    const reason = stopping ? "the server is shutting down" : health.reason;
    if (stopping || !health.ok) return c.json({ status: "unavailable", queue: jobs.name, reason }, 503);
    return c.json({ status: "ready", queue: jobs.name, models: (await jobs.models().catch(() => [])).map((m) => m.modelName) });
  });
  app.get("/metrics", async (c) => {
    c.header("Content-Type", metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });

  // The backend cannot take or show jobs (Redis down): API requests get 503 with the reason at once.
  app.use("*", async (c, next) => {
    if (!isApi(c.req.path) || c.req.path === "/metrics") return next();
    const health = jobs.health();
    if (health.ok) return next();
    c.header("Retry-After", "1");
    const message = health.reason ?? "the job queue is unavailable";
    return c.req.path.startsWith("/sdapi/")
      ? c.json({ error: "HTTPException", detail: message, body: "", errors: "" }, 503)
      : c.json({ error: { code: "unavailable", message } }, 503);
  });

  // Generation requests hold a queue slot before their body is read (bodyLimit below reads chunked
  // bodies): a full queue answers 429 at once, and at most queueSize bodies are in memory together.
  app.use("*", async (c, next) => {
    if (c.req.method !== "POST" || !GENERATE_ROUTES.has(c.req.path)) return next();
    let slot;
    try {
      slot = await jobs.reserve();
    } catch (e) {
      if (c.req.path.startsWith("/sdapi/")) return failA1111(c, e);
      const p = prepareError(c, e);
      return c.json({ error: { code: p.code, message: p.message } }, p.status);
    }
    c.set("slot" as never, slot as never);
    try {
      await next();
    } finally {
      slot.release(); // no-op once submit() took it
    }
  });

  app.use(
    "*",
    bodyLimit({
      maxSize: limits.maxBodyBytes,
      onError: (c: Context) =>
        c.json(
          {
            error: { code: "body_too_large", message: `the request body is over the limit of ${limits.maxBodyBytes} bytes: send a smaller image` },
            detail: "Request body too large",
          },
          413,
        ),
    }),
  );

  const folders = { loraDirs: opts.loraDirs ?? [], embeddingDirs: opts.embeddingDirs ?? [] };
  // ControlNets are files this process names by path: queue workers (other machines) cannot load them
  const controlnets: ControlNetCatalog = memory
    ? { dir: opts.controlnetDir }
    : { unavailable: "ControlNets are not available in queue mode yet (queue workers load no ControlNet): serve without --queue to use them" };
  app.route("/", nativeRoutes(jobs, { ...limits, previewEvery: opts.previewEvery, folders, controlnets }));
  app.route("/", a1111Routes(jobs, limits, folders, controlnets));
  app.route("/", controlNetRoutes(controlnets, limits));
  app.route("/", openaiRoutes(jobs, limits));
  app.route("/", staticRoutes(opts.webRoot ?? defaultWebRoot()));

  app.notFound((c) => c.json({ error: { code: "not_found", message: `no route ${c.req.method} ${c.req.path}` } }, 404));
  app.onError((e, c) => {
    if (e instanceof ReimagineError) return c.json({ error: { code: e.code, message: e.message } }, 422);
    console.error(`${c.req.method} ${c.req.path} failed:`, e);
    return c.json({ error: { code: "internal_error", message: "internal server error; see the server log" } }, 500);
  });
  return {
    app,
    jobs,
    queue: memory?.queue,
    inflight: () => inflight,
    stopping: () => {
      stopping = true;
      metrics.dispose();
    },
  };
}

export interface StartServerOptions extends AppOptions {
  /** The loaded model of the embedded queue; or give `jobs`. */
  engine?: Engine;
  /** A job backend (e.g. RedisJobs for `reimagine serve --queue`); or give `engine`. */
  jobs?: Jobs;
  /** Default 127.0.0.1 (this machine only); "0.0.0.0" exposes the server to the network. */
  host?: string;
  /** Default 7860 (AUTOMATIC1111's port); 0 picks a free one. */
  port?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  server: ServerType;
  jobs: Jobs;
  /** The embedded queue (absent with a job backend such as Redis). */
  queue?: JobQueue;
  /**
   * Graceful stop: refuses new jobs (503). Embedded: cancels queued jobs and lets the running one stop
   * at its next denoising step (interrupted: nothing saved). Redis: queued and running jobs stay in the
   * cluster, only the jobs of A1111 requests waiting here are cancelled. Answers the waiting requests,
   * then closes.
   */
  close(): Promise<void>;
}

/**
 * Starts listening.
 * @example const srv = await startServer({ engine, port: 7860 }); console.log(srv.url); await srv.close();
 */
export async function startServer(opts: StartServerOptions & { jobs: Jobs; engine?: undefined }): Promise<RunningServer>;
export async function startServer(opts: StartServerOptions & { engine: Engine }): Promise<RunningServer & { queue: JobQueue }>;
export async function startServer(opts: StartServerOptions): Promise<RunningServer> {
  const host = opts.host ?? "127.0.0.1";
  const allowedHosts = opts.allowedHosts ?? defaultAllowedHosts(host);
  const backend = opts.jobs ?? opts.engine;
  if (!backend || (opts.jobs && opts.engine)) throw new ReimagineError("startServer needs either an engine or a job backend (jobs), not both");
  const { app, jobs, queue, inflight, stopping } = createApp(backend, { ...opts, allowedHosts });
  const requestTimeoutMs = (opts.requestTimeoutS ?? DEFAULT_LIMITS.requestTimeoutS) * 1000;
  // A request (headers + body) must arrive within requestTimeout: a slow or stalled upload gets 408.
  // It does not limit responses, so A1111 requests may wait for their job and SSE streams stay open.
  const serverOptions = {
    requestTimeout: requestTimeoutMs,
    headersTimeout: Math.min(requestTimeoutMs, 30_000),
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: Math.min(1_000, requestTimeoutMs), // how soon an expired request is noticed
  };
  const server = await new Promise<ServerType>((resolvePromise, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? 7860, serverOptions }, () => resolvePromise(s));
    s.once("error", (e: NodeJS.ErrnoException) => {
      const why =
        e.code === "EADDRINUSE"
          ? `port ${opts.port ?? 7860} is in use: pass --port <another>`
          : e.code === "EACCES"
            ? `no permission to listen on port ${opts.port}: use a port above 1024`
            : e.message;
      reject(new ReimagineError(`cannot start the server on ${host}: ${why}`, "server_error", { cause: e }));
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host;
  const http = server as ServerType & { closeAllConnections?: () => void; closeIdleConnections?: () => void };
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${port}/`,
    port,
    server,
    jobs,
    queue,
    close: () =>
      (closing ??= (async () => {
        stopping();
        const jobsClosed = jobs.close(); // new jobs: 503; embedded: queued cancelled, running aborted at its next step
        const closed = new Promise<void>((r) => server.close(() => r()));
        http.closeIdleConnections?.();
        await jobsClosed;
        // let A1111 requests waiting on a job and SSE streams send their answer (at most 2 s)
        for (let t = 0; inflight() > 0 && t < 200; t++) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 50));
        http.closeAllConnections?.();
        await closed;
        await jobs.dispose();
      })()),
  };
}
