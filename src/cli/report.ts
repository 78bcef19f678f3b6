// What the CLI tells a person or a script while it works, on stderr (stdout carries results):
// bars redrawn in place on a terminal, plain lines in logs and CI ("step 3/25 (0.41 s/step, ETA
// 9 s)"), one JSON object per line for scripts (--progress json), or nothing (--quiet).
import type { OutStream } from "./args.js";
import { createProgress, downloadProgress, formatBytes, type Progress } from "./progress.js";

export type ProgressMode = "bar" | "lines" | "json" | "none";
export const PROGRESS_MODES: readonly string[] = ["auto", "bar", "lines", "json", "none"];

export interface StepEvent {
  step: number;
  total: number;
  elapsedMs: number;
}
export interface DownloadEvent {
  file: string;
  loaded: number;
  total: number;
  done: boolean;
}

export interface Reporter {
  readonly mode: ProgressMode;
  /** A status line (model loading): on a terminal, or anywhere with --verbose; an event in json mode. */
  status(message: string): void;
  /** A denoising-steps reporter for one run; `label` names the run (a file, a strength). */
  steps(label: string): (e: StepEvent) => void;
  download(e: DownloadEvent): void;
}

/** How often plain lines are written at most (the last step and finished downloads always are). */
const LINE_EVERY_MS = 1000;

/**
 * The mode for --progress (auto: bars on a terminal, lines elsewhere; --quiet and --json mean none
 * unless --progress is given).
 * @example progressMode({ progress: "auto", quiet: false, json: false }, process.stderr) // "bar" on a terminal
 */
export function progressMode(flags: { progress?: string; quiet: boolean; json: boolean; verbose?: boolean }, stream: OutStream): ProgressMode {
  const asked = flags.progress ?? "auto";
  if (asked !== "auto") return asked as ProgressMode;
  if (flags.quiet || flags.json) return "none";
  return stream.isTTY ? "bar" : "lines";
}

/**
 * A Reporter writing to `stream` in `mode`.
 * @example const r = createReporter("lines", process.stderr); r.steps("photo.png")({ step: 3, total: 25, elapsedMs: 1200 });
 */
export function createReporter(mode: ProgressMode, stream: OutStream, opts: { verbose?: boolean } = {}): Reporter {
  const write = (s: string) => stream.write(s);
  const json = (o: Record<string, unknown>) => write(`${JSON.stringify(o)}\n`);
  const bars = mode === "bar" ? downloadProgress({ stream: stream as NodeJS.WriteStream }) : undefined;
  const lastLine = new Map<string, number>();
  const due = (key: string, final: boolean) => {
    const now = Date.now();
    if (!final && now - (lastLine.get(key) ?? 0) < LINE_EVERY_MS) return false;
    lastLine.set(key, now);
    return true;
  };
  return {
    mode,
    status(message) {
      if (mode === "json") json({ event: "status", message });
      else if (mode !== "none" && (stream.isTTY || opts.verbose)) write(`${message}\n`);
    },
    steps(label) {
      let bar: Progress | undefined;
      return (e) => {
        if (mode === "json") return json({ event: "step", ...(label ? { label } : {}), step: e.step, total: e.total, elapsedMs: Math.round(e.elapsedMs) });
        if (mode === "bar") {
          bar ??= createProgress({ label: label || "denoising", total: e.total, unit: "steps", stream: stream as NodeJS.WriteStream });
          bar.update(e.step);
          if (e.step === e.total) bar.finish();
          return;
        }
        if (mode !== "lines" || !due(`steps:${label}`, e.step === e.total || e.step === 1)) return;
        const per = e.elapsedMs / e.step / 1000;
        const eta = Math.round(per * (e.total - e.step));
        write(`${label ? `${label}: ` : ""}step ${e.step}/${e.total} (${per.toFixed(2)} s/step${e.step < e.total ? `, ETA ${eta} s` : ""})\n`);
      };
    },
    download(e) {
      if (mode === "bar") return bars!(e);
      if (e.loaded === 0 && !e.done) return; // an announcement before the first byte
      if (mode === "json") {
        if (due(`dl:${e.file}`, e.done)) json({ event: "download", file: e.file, loaded: e.loaded, total: e.total, done: e.done });
      } else if (mode === "lines" && due(`dl:${e.file}`, e.done)) {
        write(`download ${e.file}: ${formatBytes(e.loaded)} of ${formatBytes(e.total)}${e.done ? " (done)" : ""}\n`);
      }
    },
  };
}
