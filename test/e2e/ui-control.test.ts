// The web UI's "keep my sketch's layout" in headless Chromium against the real engine: sd-tiny-controlnet's model in a
// child process and its (fully random) ControlNet offered from a --controlnet-dir folder. Draw a stick figure, turn
// the layout toggle on (strength goes to 1), see the scribble preview the server makes of the drawing, generate: the
// request carries the scribble ControlNet, the result's infotext names it (A1111's "ControlNet 0"), and the picture
// differs from the same run without it. Off again: strength comes back, nothing is sent. REIMAGINE_SCREENSHOT=1 writes
// docs/ui-control-1366x768.png.
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { preprocessControlImage } from "../../src/control/preprocess.js";
import { loadImage, readImageParameters } from "../../src/image.js";
import type { EngineRunOptions } from "../../src/server/engine.js";
import { startServer } from "../../src/server/app.js";
import { createWorkerEngine } from "../../src/server/worker-engine.js";
import { fixture, haveFixtures } from "../fixtures.js";
import { builtWeb, canvasState, haveChromium, launch, openPage, setValue, shownInViewport, stroke } from "./ui-helpers.js";

const CN_NAME = "control_sd_tiny_scribble";
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe.skipIf(!haveChromium || !haveFixtures("sd-tiny-controlnet"))("web UI: keep my sketch's layout (headless Chromium, sd-tiny-controlnet)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  let engine: Awaited<ReturnType<typeof createWorkerEngine>> | undefined;
  let page: Page;
  let errors: string[];
  const tmp = mkdtempSync(join(tmpdir(), "reimagine-ui-cn-"));
  const runs: EngineRunOptions[] = []; // what each generation asked the engine for

  beforeAll(async () => {
    symlinkSync(fixture("sd-tiny-controlnet", "model", "controlnet"), join(tmp, CN_NAME)); // a ControlNet folder by name
    engine = await createWorkerEngine(fixture("sd-tiny-controlnet", "model"), { threads: 1 });
    const run = engine.run.bind(engine);
    engine.run = (opts) => {
      runs.push(opts);
      return run(opts);
    };
    server = await startServer({ engine, port: 0, webRoot: await builtWeb(), controlnetDir: tmp });
    browser = await launch();
    ({ page, errors } = await openPage(browser, server.url, { width: 1366, height: 768 }));
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await engine?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** The preview image's pixels: how many are bright (strokes) and how many dark (background). */
  const previewPixels = () =>
    page.getByTestId("control-preview").evaluate((img: HTMLImageElement) => {
      const c = document.createElement("canvas");
      [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
      c.getContext("2d")!.drawImage(img, 0, 0);
      const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      let bright = 0;
      let dark = 0;
      for (let i = 0; i < d.length; i += 4) {
        const v = (d[i] + d[i + 1] + d[i + 2]) / 3;
        if (v > 200) bright++;
        else if (v < 30) dark++;
      }
      return { width: c.width, height: c.height, bright, dark };
    });
  /** The preview's RGB bytes, and the scribble the library makes of the canvas as the page shows it. */
  const previewVsLibrary = async () => {
    const [preview, canvasPng] = await Promise.all([
      page.getByTestId("control-preview").evaluate((img: HTMLImageElement) => {
        const c = document.createElement("canvas");
        [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
        c.getContext("2d")!.drawImage(img, 0, 0);
        const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
        return Array.from(d).filter((_, i) => i % 4 !== 3);
      }),
      page.getByTestId("sketch-canvas").evaluate((c: HTMLCanvasElement) => c.toDataURL("image/png").split(",")[1]),
    ]);
    const expected = preprocessControlImage(await loadImage(Buffer.from(canvasPng, "base64")), "scribble");
    return { preview, expected: Array.from(expected.data) };
  };
  const generate = async () => {
    const n = runs.length;
    const before = await page.locator('[data-testid="gallery"] figure').count();
    await page.getByTestId("generate").click();
    // a new gallery entry marks this run's result (the status still says the last run's "succeeded" at first)
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count(), { timeout: 120_000 }).toBe(before + 1);
    expect(await page.getByTestId("status").textContent()).toBe("succeeded");
    expect(runs.length).toBe(n + 1);
    return runs[n];
  };
  const inViewport = (testid: string) => shownInViewport(page, testid);
  /** The shown result's pixels and the infotext the page shows with it. */
  const shownResult = () =>
    page.evaluate(async () => {
      const img = document.querySelector('[data-testid="result-image"]') as HTMLImageElement;
      await img.decode();
      const c = document.createElement("canvas");
      [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
      c.getContext("2d")!.drawImage(img, 0, 0);
      const pixels = Array.from(c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data);
      const shownText = document.querySelector(".infotext")!.textContent ?? "";
      return { width: c.width, height: c.height, pixels, shownText };
    });
  /** The `parameters` text stored in the PNG that "download PNG" saves. */
  const downloadedText = async () => {
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByTestId("download").click()]);
    return (await readImageParameters(readFileSync((await download.path())!))) ?? "";
  };

  it("draw, toggle on: strength 1, the scribble preview of the drawing; generate: the ControlNet is sent and named in the infotext", async () => {
    await setValue(page, "width", "128");
    await setValue(page, "height", "128");
    const head = Array.from({ length: 13 }, (_, i) => [0.5 + 0.1 * Math.cos((i * Math.PI) / 6), 0.2 + 0.1 * Math.sin((i * Math.PI) / 6)] as [number, number]);
    await stroke(page, head);
    await stroke(page, [
      [0.5, 0.3],
      [0.5, 0.6],
    ]);
    await stroke(page, [
      [0.3, 0.4],
      [0.7, 0.4],
    ]);
    await stroke(page, [
      [0.35, 0.85],
      [0.5, 0.6],
      [0.65, 0.85],
    ]);
    expect((await canvasState(page)).inked).toBeGreaterThan(300);
    await page.getByTestId("prompt").fill("a knight in a field, oil painting");
    await setValue(page, "steps", "6");
    await setValue(page, "strength", "0.45");
    await setValue(page, "seed", "1234");
    await page.getByTestId("seed-lock").check();

    // the server offers one ControlNet: the toggle is enabled, off by default, no preview yet
    const toggle = page.getByTestId("keep-layout");
    await expect.poll(() => toggle.isEnabled()).toBe(true);
    expect(await toggle.isChecked()).toBe(false);
    expect(await page.getByTestId("control-preview").count()).toBe(0);

    await toggle.check();
    expect(await page.getByTestId("strength-value").textContent()).toBe("1.00");
    await page.getByTestId("control-preview").waitFor({ state: "visible", timeout: 20_000 });
    await page.waitForFunction(() => (document.querySelector('[data-testid="control-preview"]') as HTMLImageElement).naturalWidth > 0);
    const shown = await previewPixels();
    expect([shown.width, shown.height]).toEqual([128, 128]); // the output size, as the ControlNet reads it
    expect(shown.bright).toBeGreaterThan(100); // the strokes, white (thickened)
    expect(shown.dark).toBeGreaterThan(0.6 * 128 * 128); // on black
    const previewBefore = shown.bright;
    await stroke(page, [
      [0.1, 0.95],
      [0.9, 0.95],
    ]); // the ground: the preview follows the drawing
    await expect.poll(async () => (await previewPixels()).bright, { timeout: 20_000 }).toBeGreaterThan(previewBefore + 50);

    // what is shown is what the ControlNet reads: the library's scribble of the drawing, byte for byte
    await expect
      .poll(
        async () => {
          const v = await previewVsLibrary();
          return v.preview.length === v.expected.length && v.preview.every((x, i) => x === v.expected[i]);
        },
        { timeout: 20_000 },
      )
      .toBe(true);

    await setValue(page, "control-scale", "0.6");
    expect(await page.getByTestId("control-scale-value").textContent()).toBe("0.60");

    const sent = await generate();
    expect(sent.strength).toBe(1); // sketch-to-image
    expect(sent.controlnets).toHaveLength(1);
    const unit = sent.controlnets![0];
    expect(unit).toMatchObject({ scale: 0.6, preprocessor: "scribble" });
    expect(String(unit.model)).toContain(CN_NAME);
    expect(unit.image).toBeUndefined(); // no image of its own: the drawing (the input picture) is the control image
    expect([sent.image.width, sent.image.height]).toEqual([128, 128]);

    const withCn = await shownResult();
    expect([withCn.width, withCn.height]).toEqual([128, 128]);
    expect(withCn.shownText).toMatch(new RegExp(`ControlNet 0: "Module: scribble, Model: ${CN_NAME}[^"]*Weight: 0\\.6`));
    expect(withCn.shownText).toMatch(/Denoising strength: 1\b/);
    expect(await downloadedText()).toBe(withCn.shownText);
    for (const id of ["keep-layout", "control-scale", "control-preview", "result-image", "generate"]) expect(await inViewport(id), id).toBe(true);
    expect(await page.evaluate(() => document.scrollingElement!.scrollTop)).toBe(0); // all of it at 1366x768, no scrolling
    if (process.env.REIMAGINE_SCREENSHOT === "1") await page.screenshot({ path: join(repoRoot, "docs", "ui-control-1366x768.png") }); // the downloaded PNG carries the same infotext
    expect(errors).toEqual([]);

    // the same run without the ControlNet: toggle off brings the strength back and sends none; the picture differs
    await page.getByTestId("keep-layout").uncheck();
    expect(await page.getByTestId("strength-value").textContent()).toBe("0.45");
    expect(await page.getByTestId("control-preview").count()).toBe(0);
    await setValue(page, "strength", "1");
    const plain = await generate();
    expect(plain.controlnets ?? []).toEqual([]);
    expect(plain.seed).toBe(sent.seed);
    const without = await shownResult();
    expect(without.shownText).not.toMatch(/ControlNet/);
    let diff = 0;
    for (let i = 0; i < without.pixels.length; i++) diff = Math.max(diff, Math.abs(without.pixels[i] - withCn.pixels[i]));
    console.log(`[ui-control] result with vs. without the ControlNet: max pixel difference ${diff}/255`);
    expect(diff).toBeGreaterThan(10); // the ControlNet changed the picture (random fixture weights: a strong effect)
    expect(errors).toEqual([]);
  });
});
