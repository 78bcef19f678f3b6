// A real redis-server for the queue-mode tests (the Debian package; .ci/run installs it): started on a
// free loopback port with a throwaway data folder (append-only file on, so a stop and start keeps the
// data, as a production Redis with persistence does), stopped and removed after.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** True when redis-server is installed; otherwise prints why the Redis tests skip. In CI
 *  (REIMAGINE_REQUIRE_REDIS=1, set by .ci/run) a missing redis-server is an error, never a skip. */
export function haveRedis(): boolean {
  const ok = spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
  if (!ok && process.env.REIMAGINE_REQUIRE_REDIS === "1") {
    throw new Error("redis-server is not installed but REIMAGINE_REQUIRE_REDIS=1: apt-get install redis-server");
  }
  if (!ok) console.warn("[skip] redis-server is not installed (apt-get install redis-server; .ci/run installs it): queue-mode tests skipped");
  return ok;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

export interface RedisServer {
  url: string;
  port: number;
  /** Stops it (SIGTERM: the data is flushed to disk) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data folder. */
  start(): Promise<void>;
  /** Stops it and removes its data. */
  close(): Promise<void>;
}

/**
 * @example const redis = await startRedis(); ...; await redis.close();
 */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "reimagine-redis-"));
  let child: ChildProcess | undefined;
  const start = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"];
    const c = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    child = c;
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        out += d;
        if (/Ready to accept connections/.test(out)) resolve();
      };
      c.stdout!.on("data", onData);
      c.stderr!.on("data", onData);
      c.once("exit", (code) => reject(new Error(`redis-server exited (${code}): ${out.slice(-500)}`)));
    });
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    stop,
    start,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
