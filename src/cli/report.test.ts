// What the CLI writes on stderr while it works: plain "step N/T" lines off a terminal (first, last and
// at most one a second), one JSON object per line with --progress json, nothing with -q or --json.
import { describe, expect, it } from "vitest";
import { checkOutputSize } from "./common.js";
import { createReporter, progressMode } from "./report.js";

const sink = (isTTY = false) => {
  const s = { text: "", isTTY, write: (t: string) => (s.text += t) };
  return s;
};
const flags = { quiet: false, json: false };

describe("progressMode", () => {
  it("auto: a bar on a terminal, lines elsewhere, none for -q and --json unless asked", () => {
    expect(progressMode(flags, sink(true))).toBe("bar");
    expect(progressMode(flags, sink(false))).toBe("lines");
    expect(progressMode({ ...flags, quiet: true }, sink(true))).toBe("none");
    expect(progressMode({ ...flags, json: true }, sink(false))).toBe("none");
    expect(progressMode({ ...flags, json: true, progress: "json" }, sink(false))).toBe("json");
  });
});

describe("createReporter", () => {
  it("lines: the first and last step always, the ones between at most once a second", () => {
    const s = sink();
    const steps = createReporter("lines", s).steps("photo.png");
    for (let i = 1; i <= 25; i++) steps({ step: i, total: 25, elapsedMs: 400 * i });
    expect(s.text).toBe("photo.png: step 1/25 (0.40 s/step, ETA 10 s)\nphoto.png: step 25/25 (0.40 s/step)\n");
  });

  it("json: one object per line for steps, status and downloads (throttled per file, done always)", () => {
    const s = sink();
    const r = createReporter("json", s);
    r.status("loading unet");
    r.steps("")({ step: 3, total: 25, elapsedMs: 1230.4 });
    r.download({ file: "unet/w.safetensors", loaded: 0, total: 10, done: false }); // an announcement: nothing
    r.download({ file: "unet/w.safetensors", loaded: 5, total: 10, done: false });
    r.download({ file: "unet/w.safetensors", loaded: 7, total: 10, done: false }); // within a second: dropped
    r.download({ file: "unet/w.safetensors", loaded: 10, total: 10, done: true });
    expect(
      s.text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    ).toEqual([
      { event: "status", message: "loading unet" },
      { event: "step", step: 3, total: 25, elapsedMs: 1230 },
      { event: "download", file: "unet/w.safetensors", loaded: 5, total: 10, done: false },
      { event: "download", file: "unet/w.safetensors", loaded: 10, total: 10, done: true },
    ]);
  });

  it("status lines only on a terminal or with --verbose; none writes nothing", () => {
    const log = sink();
    createReporter("lines", log).status("loading unet");
    createReporter("lines", log, { verbose: true }).status("loading vae");
    const quiet = sink(true);
    createReporter("none", quiet).status("x");
    createReporter("none", quiet).steps("")({ step: 1, total: 1, elapsedMs: 1 });
    expect([log.text, quiet.text]).toEqual(["loading vae\n", ""]);
  });
});

describe("checkOutputSize", () => {
  it("refuses a size that is not a multiple of the VAE factor, naming the two nearest", () => {
    const f = { overwrite: false, maxPixels: 1e9, quiet: false, verbose: false, json: false };
    expect(() => checkOutputSize({ ...f, width: 100 }, 8)).toThrow("--width 100 is not a multiple of 8 (this model's VAE factor): use --width 96 or 104");
    expect(() => checkOutputSize({ ...f, width: 96, height: 4 }, 8)).toThrow("use --height 8 or 16");
    expect(() => checkOutputSize({ ...f, width: 96, height: 104 }, 8)).not.toThrow();
  });
});
