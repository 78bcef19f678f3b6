// The CLI as a careless user meets it: 64 kB prompts through argv (onnxruntime-node's telemetry used
// to SIGSEGV above ~29 kB of command line) and through --prompt-file; negative values after short
// options; sizes, steps and models refused clearly before loading; SVG refused; --provider cuda
// without CUDA in one line.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { capture } from "../../test/capture.js";
import { describeWithFixtures, fixture } from "../../test/fixtures.js";
import { Graph } from "../graph/builder.js";
import { encodeImage, readImageParameters } from "../image.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { MemoryWeights } from "../weights/memory.js";
import { main } from "./main.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const launcher = resolve(repoRoot, "bin", "reimagine.js");
const dir = mkdtempSync(join(tmpdir(), "reimagine-cli-hard-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LONG_PROMPT = Array.from({ length: 8192 }, (_, i) => `word${i % 97}`)
  .join(" ")
  .slice(0, 65536); // 64 kB

describe("long command lines (onnxruntime-node telemetry SIGSEGV)", () => {
  it("a session is created and run from a process whose command line is 64 kB (and 200 kB)", () => {
    const g = new Graph(new MemoryWeights(), "relu");
    g.output(g.op("Relu", [g.input("x", "float32", [1])]), "y");
    const model = g.save(join(dir, "relu"));
    // one line: the crashing regex stops at the first newline of the command line, so a newline
    // in the script before the padding would hide the crash
    const script = [
      `const { ModelSession } = await import(${JSON.stringify(resolve(repoRoot, "src/runtime.ts"))});`,
      `const s = await ModelSession.load(${JSON.stringify(model)}, { reuseOptimized: false });`,
      `const out = await s.run({ x: { data: new Float32Array([-2]), dims: [1] } });`,
      `console.log("ran", out.y.data[0], (await import("node:fs")).readFileSync("/proc/self/cmdline").length);`,
    ].join(" ");
    for (const size of [65536, 200_000]) {
      const pad = Array.from({ length: Math.ceil(size / 60000) }, () => "a".repeat(60000)); // one argument may hold 128 kB on Linux
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, "--", ...pad], { cwd: repoRoot, encoding: "utf8" });
      expect(r.signal, r.stderr).toBeNull();
      expect(r.status, r.stderr).toBe(0);
      expect(Number(/^ran 0 (\d+)/.exec(r.stdout)?.[1])).toBeGreaterThan(size);
    }
  });
});

describeWithFixtures("long prompts through the launcher (sd-tiny)", () => {
  const input = fixture("sd-tiny", "reference", "input.png");
  const model = fixture("sd-tiny", "model");
  const env = { ...process.env, REIMAGINE_CACHE: join(dir, "cache") };
  const run = (args: string[]) =>
    spawnSync(process.execPath, [launcher, input, "-m", model, "--steps", "2", "--strength", "0.5", "--seed", "3", "--threads", "1", "-q", ...args], {
      env,
      encoding: "utf8",
    });

  it.each([
    ["through argv (-p)", (out: string) => ["-p", LONG_PROMPT, "-o", out]],
    [
      "through --prompt-file",
      (out: string) => {
        writeFileSync(`${out}.txt`, `${LONG_PROMPT}\n`);
        return ["--prompt-file", `${out}.txt`, "-o", out];
      },
    ],
    [
      "through -p @FILE",
      (out: string) => {
        writeFileSync(`${out}.txt`, LONG_PROMPT);
        return ["-p", `@${out}.txt`, "-o", out];
      },
    ],
  ])("a 64 kB prompt %s: exit 0, image written with the prompt in its metadata", async (name, args) => {
    const out = join(dir, `long-${name.replace(/\W+/g, "-")}.png`);
    const r = run(args(out));
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(parseInfotext((await readImageParameters(out))!).prompt).toBe(LONG_PROMPT);
  });

  it("--provider cuda without CUDA: one clean line, not ONNX Runtime's raw log", () => {
    const r = run(["-p", "x", "-o", join(dir, "cuda.png"), "--provider", "cuda"]);
    if (r.status === 0) return; // a machine with the CUDA provider installed
    expect(r.stderr).toMatch(/^reimagine: [^\n]*execution provider 'cuda'[^\n]*\n$/);
    expect(r.stderr).not.toMatch(/\[E:onnxruntime/);
  });

  it("-p -1 and -o -1.png mean the prompt '-1' and the file '-1.png' (no '=' added)", async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const { out, io } = capture();
      const code = await main([input, "-m", model, "-p", "-1", "-o", "-1.png", "-s", "0.5", "--steps", "2", "--threads", "1", "-q"], io);
      expect(code, out.stderr).toBe(0);
    } finally {
      process.chdir(cwd);
    }
    expect(existsSync(join(dir, "-1.png"))).toBe(true);
    expect(existsSync(join(dir, "=-1.png"))).toBe(false);
    expect(parseInfotext((await readImageParameters(join(dir, "-1.png")))!).prompt).toBe("-1");
  });
});

describe("refused before the model loads, in one line", () => {
  const png = join(dir, "in.png");
  const fromPng = join(dir, "from.png");
  const svg = join(dir, "sketch.svg");
  const setup = (async () => {
    writeFileSync(png, await encodeImage({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(9) }, "png"));
    const params = "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 100000x100000, Denoising strength: 0.5";
    writeFileSync(fromPng, await encodeImage({ width: 16, height: 16, data: new Uint8Array(16 * 16 * 3).fill(9) }, "png", { parameters: params }));
    writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>');
  })();

  it.each([
    [
      "--width/--height 100000",
      () => [png, "-p", "x", "--width", "100000", "--height", "100000"],
      /--width\/--height ask for 100000x100000 = 10000000000 pixels, over --max-pixels 64000000/,
    ],
    [
      "a --from image asking for 100000x100000",
      () => [png, "--from", fromPng, "-o", join(dir, "o.png")],
      /the settings of --from '.*from\.png' ask for 100000x100000 = 10000000000 pixels, over --max-pixels/,
    ],
    ["--steps 1e9", () => [png, "-p", "x", "--steps", "1e9"], /--steps expects a whole number from 1 to 1000 \(got '1e9'\)/],
    ["-m /etc/passwd", () => [png, "-p", "x", "-m", "/etc/passwd", "-o", join(dir, "p.png")], /'\/etc\/passwd' is not a model: give a diffusers folder/],
    [
      "an SVG input",
      () => [svg, "-p", "x", "-o", join(dir, "s.png")],
      /Cannot read image '.*sketch\.svg': SVG \(a vector format\) is not supported; convert it to PNG, JPEG or WebP first/,
    ],
  ])("%s", async (_name, args, msg) => {
    await setup;
    const { out, io } = capture();
    const t0 = performance.now();
    expect(await main(args(), io)).toBe(1);
    expect(out.stderr).toMatch(/^reimagine: [^\n]+\n$/);
    expect(out.stderr).toMatch(msg);
    expect(performance.now() - t0).toBeLessThan(10_000); // no model was loaded (or downloaded)
  });

  it("the help says which input formats are read and that SVG is not", () => {
    const { out, io } = capture();
    return main(["--help"], io).then(() => expect(out.stdout).toMatch(/SVG is not supported/));
  });
});
