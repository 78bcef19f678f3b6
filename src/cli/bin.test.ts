// The real executable (bin/reimagine.js, through tsx when dist/ is not built) in a child process:
// --version, one generation with --json, a one-line error, and Ctrl+C (SIGINT) -> exit 130, no file.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fixture, describeWithFixtures } from "../../test/fixtures.js";

const bin = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "reimagine.js");
const dir = mkdtempSync(join(tmpdir(), "reimagine-bin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Exit {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Spawns bin/reimagine.js; `onStderr` sees stderr as it grows (and may signal the child). */
function reimagine(args: string[], onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Exit> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, REIMAGINE_CACHE: join(dir, "cache") }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    child.on("error", fail);
    child.on("close", (code, signal) => done({ code, signal, stdout, stderr }));
  });
}

describe("bin/reimagine.js", () => {
  it("--version prints the package version", async () => {
    const r = await reimagine(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it("no arguments: the usage on stderr, exit 1", async () => {
    const r = await reimagine([]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^reimagine \d+\.\d+\.\d+: image-to-image Stable Diffusion[\s\S]*\nUsage:\n {2}reimagine <input> --prompt TEXT/);
  });

  it("a bad input is one line on stderr with exit 1", async () => {
    const r = await reimagine([join(dir, "missing.png"), "-p", "x"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^reimagine: Cannot read image '.*missing\.png': file not found; check the path\n$/);
  });
});

describeWithFixtures("bin/reimagine.js (sd-tiny)", () => {
  const model = fixture("sd-tiny", "model");
  const input = join(dir, "photo.png");
  copyFileSync(fixture("sd-tiny", "reference", "input.png"), input);
  const batchIn = join(dir, "batch-in");
  mkdirSync(batchIn);
  copyFileSync(input, join(batchIn, "a.png"));

  it("generates an image and prints a JSON result", async () => {
    const r = await reimagine([input, "--model", model, "-p", "a lighthouse", "--steps", "4", "--strength", "0.5", "--seed", "8", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res).toMatchObject({ outputs: [join(dir, "photo-reimagined.png")], seed: 8, strength: 0.5, steps: 4, width: 64, height: 64 });
    expect(existsSync(res.outputs[0])).toBe(true);
  });

  // 256x256 on the tiny model: attention over 128x128 latents makes one UNet step take seconds, so
  // the signal lands while ONNX Runtime computes (before the first step line), not between steps
  const slow = ["--width", "256", "--height", "256", "--steps", "2", "--strength", "1", "-g", "1", "--verbose", "--progress", "lines"];
  for (const [sig, args] of [
    ["SIGINT", (out: string) => [input, "--model", model, "-p", "x", ...slow, "-o", out]],
    ["SIGTERM", (out: string) => [input, "--model", model, "-p", "x", ...slow, "-o", out]],
    ["SIGINT", (out: string) => ["batch", batchIn, out, "--model", model, "-p", "x", ...slow]],
  ] as const) {
    const what = args("x")[0] === "batch" ? "batch" : "a run";
    it(`${sig} while ONNX Runtime computes ${what}: exit 130 within 2 s, nothing written`, async () => {
      const output = join(dir, `interrupted-${sig}-${what.replace(" ", "-")}${what === "batch" ? "" : ".png"}`);
      let sentAt = 0;
      let before = "";
      const r = await reimagine([...args(output)], (text, child) => {
        if (!sentAt && /(loading|building) vae-decoder/.test(text)) {
          sentAt = -1;
          setTimeout(() => {
            before = text;
            sentAt = performance.now();
            child.kill(sig);
          }, 1500);
        }
      });
      const stopMs = performance.now() - sentAt;
      console.log(`[bin] ${sig} during ${what} (sd-tiny 256x256) -> exit ${r.code} in ${stopMs.toFixed(0)} ms`);
      expect(sentAt).toBeGreaterThan(0);
      expect(before).not.toMatch(/step 1\/2/); // the signal came while the first step (or the VAE encode) computed
      expect(r.code, r.stderr).toBe(130);
      expect(r.signal).toBe(null);
      expect(r.stderr).not.toMatch(/terminate called|Napi::Error/);
      expect(r.stderr).toMatch(/reimagine: interrupted; nothing was written\n$/);
      expect(stopMs).toBeLessThan(2000);
      expect(readdirSync(dir).filter((n) => n.startsWith("interrupted") && !statSync(join(dir, n)).isDirectory())).toEqual([]);
      if (what === "batch") expect(readdirSync(output)).toEqual([]);
    });
  }
});
