// The queue-mode topology as real processes for tests and bench/queue.ts: `reimagine serve --queue` (API)
// and `reimagine worker` processes started through the real launcher (bin/reimagine.js), their JSON log
// lines captured, on a redis-server from test/redis-server.ts.
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface Proc {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Its JSON log lines so far (other lines skipped). */
  logs(): Record<string, any>[];
  /** Resolves with the first match of `re` in its output (rejects when it exits first or after `timeoutMs`). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** [exit code, signal] once it has exited. */
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** SIGTERM (or `signal`) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<[number | null, NodeJS.Signals | null]>;
}

/** Runs `reimagine ARGS` as a child process. */
export function spawnCli(args: string[]): Proc {
  const child = spawn(process.execPath, [resolve(repoRoot, "bin/reimagine.js"), ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const waiters = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d;
    for (const w of waiters) w();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once("exit", (code, signal) => r([code, signal])));
  let done = false;
  void exited.then(() => {
    done = true;
    for (const w of waiters) w();
  });
  const proc: Proc = {
    child,
    output: () => out,
    logs: () =>
      out
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .flatMap((l) => {
          try {
            return [JSON.parse(l)];
          } catch {
            return [];
          }
        }),
    waitFor: (re, timeoutMs = 90_000) =>
      new Promise((ok, fail) => {
        const timer = setTimeout(() => finish(new Error(`timed out waiting for ${re} in: ${out.slice(-2000)}`)), timeoutMs);
        const finish = (e?: Error, m?: RegExpExecArray) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (m) ok(m);
          else fail(e);
        };
        const check = () => {
          const m = re.exec(out);
          if (m) finish(undefined, m);
          else if (done) finish(new Error(`reimagine ${args[0]} exited before printing ${re}: ${out.slice(-2000)}`));
        };
        waiters.add(check);
        check();
      }),
    exited,
    stop: (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  return proc;
}

/** `reimagine serve --queue URL --port 0 ...`, once it listens; `url` ends with "/". */
export async function startApi(queue: string, extra: string[] = []): Promise<Proc & { url: string }> {
  const p = spawnCli(["serve", "--queue", queue, "--port", "0", ...extra]);
  const m = await p.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+\/)"/);
  return Object.assign(p, { url: m[1] });
}

/** Worker settings for tests: one thread, short job locks so a killed worker's job moves on in seconds. */
export const TEST_WORKER_FLAGS = ["--threads", "1", "--lock-s", "4", "--stalled-check-s", "1", "--preview-vae", "none"];

/** `reimagine worker --queue URL --model MODEL --name NAME ...`, once it takes jobs. */
export async function startWorker(queue: string, model: string, name: string, extra: string[] = TEST_WORKER_FLAGS): Promise<Proc> {
  const p = spawnCli(["worker", "--queue", queue, "--model", model, "--name", name, ...extra]);
  await p.waitFor(/"msg":"worker taking jobs"/);
  return p;
}

/** Job ids of the worker's log lines with message `msg` (e.g. "job succeeded"). */
export const jobIdsLogged = (p: Proc, msg: string): string[] => p.logs().flatMap((l) => (l.msg === msg && l.jobId ? [String(l.jobId)] : []));
