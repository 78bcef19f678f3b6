// `reimagine serve` as a process: loads the tiny model, prints its URL, answers both APIs, stops on SIGINT.
import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { serveMain } from "../../src/cli/serve.js";
import { fixture, haveFixtures } from "../fixtures.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

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
    } finally {
      process.stderr.write = write;
    }
    expect(err.join("")).toMatch(/--port must be a whole number from 0 to 65535 \(got 'http'\)/);
    expect(err.join("")).toMatch(/Usage: reimagine serve/);
  });

  it.skipIf(!haveFixtures("sd-tiny"))("serves the tiny model until SIGINT", async () => {
    const code = `import(${JSON.stringify(resolve(repoRoot, "src/cli/serve.ts"))}).then((m) => m.serveMain(process.argv.slice(1))).then((c) => process.exit(c))`;
    const child = spawn(process.execPath, ["--import", "tsx", "-e", code, "--", "--model", fixture("sd-tiny", "model"), "--port", "0", "--threads", "1"], { cwd: repoRoot });
    let out = "";
    const url = await new Promise<string>((ok, fail) => {
      child.stdout.on("data", (d) => {
        out += d;
        const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
        if (m) ok(m[1]);
      });
      child.on("exit", (c) => fail(new Error(`serve exited early (${c}): ${out}`)));
    });
    const models = (await (await fetch(`${url}v1/models`)).json()) as any[];
    expect(models[0].vaeScaleFactor).toBe(2);
    expect((await fetch(`${url}sdapi/v1/options`)).status).toBe(200);
    const exited = new Promise<number | null>((r) => child.on("exit", r));
    child.kill("SIGINT");
    expect(await exited).toBe(0);
  });
});
