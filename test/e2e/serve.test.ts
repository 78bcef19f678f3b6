// `reimagine serve` as a process: loads the tiny model, prints its URL, answers both APIs, stops on SIGINT.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { serveMain } from "../../src/cli/serve.js";
import { fixture, haveFixtures } from "../fixtures.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** `reimagine serve` on sd-tiny as a child process (the real launcher, so signals reach it as they would). */
async function serve() {
  const child = spawn(
    process.execPath,
    [resolve(repoRoot, "bin/reimagine.js"), "serve", "--model", fixture("sd-tiny", "model"), "--port", "0", "--threads", "1"],
    { cwd: repoRoot },
  );
  let out = "";
  child.stderr.on("data", (d) => (out += d));
  const url = await new Promise<string>((ok, fail) => {
    child.stdout.on("data", (d) => {
      out += d;
      const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) ok(m[1]);
    });
    child.on("exit", (c) => fail(new Error(`serve exited early (${c}): ${out}`)));
  });
  return { child, url, output: () => out };
}

describe("serveMain", () => {
  it("refuses bad options with exit code 1 or 2 and a message", async () => {
    const err: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => {
      err.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await serveMain(["--port", "http"])).toBe(1);
      expect(await serveMain(["--bogus"])).toBe(2);
      expect(await serveMain(["--refiner", "./no-such-refiner"])).toBe(1); // refused before any model loads
    } finally {
      process.stderr.write = write;
    }
    expect(err.join("")).toMatch(/--port must be a whole number from 0 to 65535 \(got 'http'\)/);
    expect(err.join("")).toMatch(/Usage: reimagine serve/);
    expect(err.join("")).toMatch(/--refiner \.\/no-such-refiner: no such file or folder, nor a Hugging Face repo id/);
  });

  it.skipIf(!haveFixtures("sd-tiny"))("serves the tiny model until SIGINT", async () => {
    const { child, url } = await serve();
    const models = (await (await fetch(`${url}v1/models`)).json()) as any[];
    expect(models[0].vaeScaleFactor).toBe(2);
    expect((await fetch(`${url}sdapi/v1/options`)).status).toBe(200);
    const exited = new Promise<number | null>((r) => child.on("exit", r));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
  });

  it.skipIf(!haveFixtures("sd-tiny"))("SIGTERM during a running job: the job is cancelled, its waiting client answered, exit 0 (not 134)", async () => {
    const { child, url, output } = await serve();
    const image = readFileSync(fixture("sd-tiny", "reference", "input.png")).toString("base64");
    const waiting = fetch(`${url}sdapi/v1/img2img`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ init_images: [image], steps: 150, denoising_strength: 1, width: 64, height: 64 }),
    });
    for (;;) {
      const p = (await (await fetch(`${url}sdapi/v1/progress?skip_current_image=true`)).json()) as any;
      if (p.state.sampling_step >= 1) break; // a model call is in flight or about to be
      await new Promise((r) => setTimeout(r, 50));
    }
    const exited = new Promise<[number | null, string | null]>((r) => child.on("exit", (code, signal) => r([code, signal])));
    child.kill("SIGTERM");
    const res = await waiting;
    expect(res.status).toBe(409);
    expect(((await res.json()) as any).error).toBe("Interrupted");
    expect(await exited).toEqual([0, null]);
    expect(output()).toMatch(/stopping: no new jobs; the running job is cancelled/);
    expect(output()).not.toMatch(/terminate called|Napi::Error/);
  });
});
