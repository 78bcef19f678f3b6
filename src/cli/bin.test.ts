// The real executable (bin/reimagine.js, through tsx when dist/ is not built) in a child process:
// --version, one generation with --json, a one-line error, and Ctrl+C (SIGINT) -> exit 130, no file.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { fixture, describeWithFixtures } from "../../test/fixtures.js";

const bin = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "reimagine.js");
const dir = mkdtempSync(join(tmpdir(), "reimagine-bin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Exit { code: number | null; signal: string | null; stdout: string; stderr: string }

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

  it("generates an image and prints a JSON result", async () => {
    const r = await reimagine([input, "--model", model, "-p", "a lighthouse", "--steps", "4", "--strength", "0.5", "--seed", "8", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res).toMatchObject({ outputs: [join(dir, "photo-reimagined.png")], seed: 8, strength: 0.5, steps: 4, width: 64, height: 64 });
    expect(existsSync(res.outputs[0])).toBe(true);
  });

  it("Ctrl+C during generation exits 130 and writes nothing", async () => {
    const output = join(dir, "interrupted.png");
    let sent = false;
    const r = await reimagine([input, "--model", model, "-p", "x", "--steps", "500", "--strength", "1", "--verbose", "-o", output], (text, child) => {
      if (!sent && /(loading|building) vae-decoder/.test(text)) {
        sent = true;
        setTimeout(() => child.kill("SIGINT"), 1500); // well into the 500-step denoising loop
      }
    });
    expect(sent).toBe(true);
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/reimagine: interrupted; nothing was written\n$/);
    expect(existsSync(output)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes("interrupted"))).toEqual([]);
  });
});
