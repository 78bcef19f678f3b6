// The package as users get it: `npm pack` (which builds dist/ through `prepare`) in a copy of this
// checkout, the tarball installed into a fresh ES-module project and a fresh CommonJS project, and
// README.md's library snippets (ESM and CommonJS) run there on the tiny model; the installed
// `reimagine` command answers and reads the metadata the library wrote.
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { loadImage, readImageParameters } from "../../src/image.js";
import { parseInfotext } from "../../src/pipeline/infotext.js";
import { describeWithFixtures, fixture } from "../fixtures.js";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "reimagine-pack-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The code blocks of README.md's Library section that use the package (ESM and CommonJS). */
function readmeSnippets(): { esm: string; cjs: string } {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const esm = blocks.find((b) => b.includes('from "reimagine"'));
  const cjs = blocks.find((b) => b.includes('require("reimagine")'));
  if (!esm || !cjs) throw new Error("README.md lost its library snippets (```js blocks importing and requiring reimagine)");
  return { esm, cjs };
}

/** The snippet on the tiny model and a local input instead of sd-turbo and sketch.png. */
const onTinyModel = (code: string) =>
  code
    .replaceAll('"stabilityai/sd-turbo"', JSON.stringify(fixture("sd-tiny", "model")))
    .replaceAll('"sketch.png"', JSON.stringify(fixture("sd-tiny", "reference", "input.png")));

/** The checkout's files as git sees them (tracked and new, not ignored): what a clone would have. */
async function copyCheckout(to: string): Promise<void> {
  const { stdout } = await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot });
  for (const f of stdout.split("\0").filter(Boolean)) {
    if (!existsSync(join(repoRoot, f))) continue; // deleted, not yet committed
    mkdirSync(dirname(join(to, f)), { recursive: true });
    copyFileSync(join(repoRoot, f), join(to, f));
  }
  symlinkSync(join(repoRoot, "node_modules"), join(to, "node_modules"));
}

// ONNXRUNTIME_NODE_INSTALL=skip: as the README tells users (onnxruntime-node's postinstall would
// download CUDA libraries; the CPU runtime ships in its npm package)
const npmEnv = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", npm_config_update_notifier: "false" };

describeWithFixtures("npm pack -> install -> README snippet (sd-tiny)", () => {
  it("packs a working package, installable into ESM and CommonJS projects, whose README snippets run", async () => {
    const checkout = join(tmp, "checkout");
    await copyCheckout(checkout);
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: checkout, env: npmEnv, maxBuffer: 64 << 20 });
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("[")));
    const files = (packed.files as { path: string }[]).map((f) => f.path);
    for (const f of [
      "bin/reimagine.js",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/cli/main.js",
      "dist/worker/child.js",
      "dist/web/index.html",
      "dist/web/main.js",
      "dist/weights/configs/sd1/unet.json",
      "README.md",
    ]) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => f.startsWith("src/") || f.endsWith(".map") || f.includes(".test."))).toEqual([]);
    const tarball = join(tmp, packed.filename);

    const { esm, cjs } = readmeSnippets();
    const projects = [
      { name: "esm-app", type: "module", code: esm },
      { name: "cjs-app", type: "commonjs", code: cjs },
    ];
    await Promise.all(
      projects.map(async (p) => {
        const dir = join(tmp, p.name);
        mkdirSync(dir);
        writeFileSync(join(dir, "package.json"), JSON.stringify({ name: p.name, version: "1.0.0", private: true, type: p.type }));
        await run("npm", ["install", tarball, "--prefer-offline", "--no-audit", "--no-fund"], { cwd: dir, env: npmEnv, maxBuffer: 64 << 20 });
        writeFileSync(join(dir, "app.js"), onTinyModel(p.code));
        await run(process.execPath, ["app.js"], { cwd: dir, env: { ...process.env, REIMAGINE_CACHE: join(tmp, "cache") }, maxBuffer: 64 << 20 });
      }),
    );

    for (const p of projects) {
      const out = join(tmp, p.name, "castle.png");
      const meta = parseInfotext((await readImageParameters(out))!);
      expect(meta, p.name).toMatchObject({
        prompt: "a castle on a hill, detailed matte painting",
        seed: 42,
        denoisingStrength: 0.8,
        model: "model",
        width: 64,
        height: 64,
      });
      expect(meta.modelHash).toMatch(/^[0-9a-f]{10}$/);
      expect([(await loadImage(out)).width, meta.sampler]).toEqual([64, "PLMS"]);
    }
    // both projects ran the same settings on the same model: the same image
    expect(readFileSync(join(tmp, "esm-app", "castle.png"))).toEqual(readFileSync(join(tmp, "cjs-app", "castle.png")));

    // the installed command: compiled JavaScript, no npm warnings, reads what the library wrote
    const dir = join(tmp, "esm-app");
    const version = await run("npx", ["reimagine", "--version"], { cwd: dir, env: npmEnv });
    expect(version.stdout).toBe(`${JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")).version}\n`);
    expect(version.stderr).toBe("");
    const info = await run("npx", ["reimagine", "info", "castle.png"], { cwd: dir, env: npmEnv });
    expect(info.stdout).toBe(`${await readImageParameters(join(dir, "castle.png"))}\n`);
  }, 900_000); // a build, two installs and two runs
});
