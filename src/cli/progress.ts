// Terminal progress bars without dependencies: bar, done/total, speed, ETA, redrawn in place on a
// TTY at most ~10 times a second, and silent when the stream is not a TTY (CI, pipes, logs).
// downloadProgress() adapts them to the hub's onProgress events (one bar per file, or one overall).

export interface ProgressOptions {
  label: string;
  total: number;
  unit: "bytes" | "steps";
  stream?: NodeJS.WriteStream;
}
export interface Progress {
  update(done: number): void;
  finish(): void;
}

const REDRAW_MS = 100;

/** "1.5 MiB" style sizes (binary units, like `du -h`). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "--:--";
  s = Math.round(s);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/**
 * A one-line progress bar.
 * @example const bar = createProgress({ label: "unet", total: 3.4e9, unit: "bytes" }); bar.update(1e9); bar.finish();
 */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  if (!stream.isTTY) return { update() {}, finish() {} }; // quiet in CI and pipes
  const start = Date.now();
  let done = 0;
  let lastDraw = 0;
  let finished = false;
  const fmt = (n: number) => (opts.unit === "bytes" ? formatBytes(n) : String(Math.round(n)));

  const draw = () => {
    const total = Math.max(opts.total, done);
    const secs = (Date.now() - start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const speed = opts.unit === "bytes" ? `${formatBytes(rate)}/s` : `${rate.toFixed(2)} it/s`;
    const eta = rate > 0 ? formatDuration((total - done) / rate) : "--:--";
    const pct = total > 0 ? Math.floor((100 * done) / total) : 0;
    const right = ` ${String(pct).padStart(3)}% ${fmt(done)}/${fmt(total)} ${speed} ETA ${eta}`;
    const cols = stream.columns || 80;
    const label = opts.label.length > 30 ? `…${opts.label.slice(-29)}` : opts.label;
    const width = Math.max(10, cols - label.length - right.length - 4);
    const fill = total > 0 ? Math.round((width * done) / total) : 0;
    const line = `${label} [${"#".repeat(fill)}${".".repeat(width - fill)}]${right}`;
    stream.write(`\r${line.slice(0, cols - 1)}\x1b[K`);
  };

  return {
    update(n: number) {
      if (finished) return;
      done = n;
      const now = Date.now();
      if (now - lastDraw >= REDRAW_MS) {
        lastDraw = now;
        draw();
      }
    },
    finish() {
      if (finished) return;
      finished = true;
      draw();
      stream.write("\n");
    },
  };
}

/** onProgress callback for downloadDiffusersModel: one bar per file (default) or one overall bar.
 *  The hub announces every file it will fetch (loaded 0) before the first byte, so the overall bar
 *  counts the announced files only (model_index.json and shard indexes, read while planning, are not). */
export function downloadProgress(
  opts: { mode?: "per-file" | "overall"; stream?: NodeJS.WriteStream; label?: string } = {},
): (e: { file: string; loaded: number; total: number; done: boolean }) => void {
  const bars = new Map<string, Progress>();
  const announced = new Map<string, { loaded: number; total: number; done: boolean }>();
  let overall: Progress | undefined;

  return (e) => {
    if (opts.mode === "overall") {
      const f = announced.get(e.file);
      if (!f) {
        if (e.loaded !== 0 || e.done) return; // not announced: a planning file
        announced.set(e.file, { loaded: 0, total: e.total, done: false });
        return;
      }
      if (f.done) return;
      Object.assign(f, { loaded: e.loaded, total: e.total, done: e.done });
      const all = [...announced.values()];
      const total = all.reduce((a, x) => a + x.total, 0);
      overall ??= createProgress({ label: opts.label ?? `${all.length} files`, total, unit: "bytes", stream: opts.stream });
      overall.update(all.reduce((a, x) => a + x.loaded, 0));
      if (all.every((x) => x.done)) overall.finish();
      return;
    }
    let bar = bars.get(e.file);
    if (!bar) {
      if (e.loaded === 0 && !e.done) return; // an announcement: draw once bytes flow
      bar = createProgress({ label: e.file, total: e.total, unit: "bytes", stream: opts.stream });
      bars.set(e.file, bar);
    }
    bar.update(e.loaded);
    if (e.done) bar.finish(); // finish() is idempotent, later events for the file are ignored
  };
}
