// End-to-end: the bundled web UI in headless Chromium against `reimagine serve`'s engine (the tiny
// fixture model in a child process, TAESD-tiny decoding live previews). The artist's loop: draw,
// Generate, see progress, previews and the result without scrolling at 1366x768, use the result
// as the input, reload (the gallery stays); Cancel stops a job within one step; a sweep with the
// user's strengths fills the output. REIMAGINE_SCREENSHOT=1 writes docs/ui-1366x768.png and
// docs/ui-390x844.png.
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer } from "../../src/server/app.js";
import { createWorkerEngine } from "../../src/server/worker-engine.js";
import { fixture, haveFixtures } from "../fixtures.js";
import { builtWeb, canvasState, haveChromium, launch, openPage, setValue, shownInViewport, stroke } from "./ui-helpers.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const screenshots = process.env.REIMAGINE_SCREENSHOT === "1";

describe.skipIf(!haveChromium || !haveFixtures("sd-tiny") || !haveFixtures("taesd-tiny"))("web UI in headless Chromium (sd-tiny)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  let page: Page;
  let errors: string[];
  let engine: Awaited<ReturnType<typeof createWorkerEngine>> | undefined;

  beforeAll(async () => {
    // as `reimagine serve` does: the model in a child process, previews every step, a preview VAE
    // (1 ONNX thread leaves CPU for Chromium on small CI machines)
    engine = await createWorkerEngine(fixture("sd-tiny", "model"), { threads: 1, previewVae: fixture("taesd-tiny", "model") });
    server = await startServer({ engine, port: 0, webRoot: await builtWeb(), previewEvery: 1 });
    browser = await launch();
    ({ page, errors } = await openPage(browser, server.url, { width: 1366, height: 768 }));
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await engine?.close();
  });

  /** Records every value the progress bar takes and every preview shown (a MutationObserver in the page). */
  const watchProgress = () =>
    page.evaluate(() => {
      const seen: [number, number][] = [];
      const previews: number[] = [];
      Object.assign(window, { __progress: seen, __previews: previews });
      new MutationObserver(() => {
        const el = document.querySelector('[data-testid="progress"]') as HTMLProgressElement;
        seen.push([el.value, el.max]);
        const p = document.querySelector('[data-testid="preview"]') as HTMLImageElement | null;
        if (p && !p.dataset.watched) {
          p.dataset.watched = "1";
          const record = () => p.naturalWidth && previews.push(p.naturalWidth);
          if (p.complete) record();
          p.addEventListener("load", record); // each new preview (src) of this element
        }
      }).observe(document.body, { attributes: true, subtree: true, childList: true });
    });
  const inViewport = (testid: string) => shownInViewport(page, testid);

  it("draw, Generate: progress moves, TAESD previews show, the result is visible without scrolling at 1366x768", async () => {
    await setValue(page, "width", "128");
    await setValue(page, "height", "128");
    const head = Array.from({ length: 13 }, (_, i) => [0.5 + 0.08 * Math.cos((i * Math.PI) / 6), 0.2 + 0.08 * Math.sin((i * Math.PI) / 6)] as [number, number]);
    await stroke(page, head);
    await stroke(page, [
      [0.5, 0.28],
      [0.5, 0.6],
    ]); // body
    await stroke(page, [
      [0.3, 0.4],
      [0.5, 0.35],
      [0.7, 0.4],
    ]); // arms
    await stroke(page, [
      [0.35, 0.85],
      [0.5, 0.6],
      [0.65, 0.85],
    ]); // legs
    expect((await canvasState(page)).inked).toBeGreaterThan(300);

    await page.getByTestId("prompt").fill("a stick figure knight, ink drawing");
    await page.getByTestId("negative-prompt").fill("blurry");
    await setValue(page, "steps", "12");
    await setValue(page, "strength", "0.5");
    await watchProgress();
    const t0 = performance.now();
    await page.getByTestId("generate").click();
    const result = page.locator('[data-testid="result-image"]');
    await result.waitFor({ state: "visible", timeout: 120_000 });
    await page.waitForFunction(() => (document.querySelector('[data-testid="result-image"]') as HTMLImageElement)?.complete);
    const seen: [number, number][] = await page.evaluate(() => (window as any).__progress);
    const previews: number[] = await page.evaluate(() => (window as any).__previews);
    console.log(
      `[ui] Generate click -> result image: ${(performance.now() - t0).toFixed(0)} ms (sd-tiny, 128x128, 12 steps x strength 0.5); previews ${previews.join(",")}`,
    );
    expect(seen.some(([v, max]) => v > 0 && v < max)).toBe(true); // moved through intermediate steps
    expect(seen.at(-1)).toEqual([seen.at(-1)![1], seen.at(-1)![1]]); // ends full
    expect(previews.length).toBeGreaterThan(0);
    expect(previews.every((w) => w === 64 * 8)).toBe(true); // TAESD-tiny decodes the 64x64 latents 8x up
    expect(await result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([128, 128]);
    expect(await page.getByTestId("status").textContent()).toBe("succeeded");
    expect(await inViewport("result-image")).toBe(true);
    expect(await inViewport("use-result")).toBe(true);
    expect(await inViewport("generate")).toBe(true);
    expect(await page.evaluate(() => document.scrollingElement!.scrollTop)).toBe(0);
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count()).toBe(1);
    if (screenshots) {
      mkdirSync(join(repoRoot, "docs"), { recursive: true });
      await page.screenshot({ path: join(repoRoot, "docs", "ui-1366x768.png") });
    }
  });

  it("use as input: the result goes on the canvas to draw over, with its prompt and seed", async () => {
    const pixels = await page.getByTestId("result-image").evaluate((img: HTMLImageElement) => {
      const c = document.createElement("canvas");
      [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
      c.getContext("2d")!.drawImage(img, 0, 0);
      return Array.from(c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data);
    });
    const seed = await page.getByTestId("seed").inputValue();
    await page.getByTestId("prompt").fill("something else");
    await page.getByTestId("use-result").click();
    await expect.poll(() => page.getByTestId("prompt").inputValue()).toBe("a stick figure knight, ink drawing");
    expect(await page.getByTestId("seed").inputValue()).toBe(seed);
    expect(await page.getByTestId("seed-lock").isChecked()).toBe(true);
    const canvas = await page
      .getByTestId("sketch-canvas")
      .evaluate((c: HTMLCanvasElement) => Array.from(c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data));
    expect(canvas).toEqual(pixels); // exactly the result, strokes cleared (Ctrl+Z brings them back)
    await stroke(page, [
      [0.1, 0.1],
      [0.3, 0.3],
    ]); // draw over it
    await page.keyboard.press("Control+z");
    await page.keyboard.press("Control+z");
    expect((await canvasState(page)).inked).toBeLessThan((128 * 128) / 4); // the white-background sketch again
    await page.keyboard.press("Control+Shift+z");
    expect(
      await page.getByTestId("sketch-canvas").evaluate((c: HTMLCanvasElement) => Array.from(c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data)),
    ).toEqual(pixels);
  });

  it("Cancel stops a running job within one step: no result is added and the server is idle again", async () => {
    await setValue(page, "steps", "150");
    await setValue(page, "strength", "1");
    await watchProgress();
    await page.getByTestId("generate").click();
    // this run's first finished step (the bar still shows the last run's until the first event)
    await page.waitForFunction(() => /^step [1-9]\d*\//.test(document.querySelector('[data-testid="status"]')!.textContent ?? ""), undefined, {
      timeout: 60_000,
    });
    expect(await page.getByTestId("cancel").isEnabled()).toBe(true);
    const job = server.queue.running!;
    let cancelAt = 0; // when the DELETE reached the queue (the browser itself may be slow to click under load)
    const cancel = server.queue.cancel.bind(server.queue);
    server.queue.cancel = (id: string) => {
      cancelAt = performance.now();
      return cancel(id);
    };
    const t0 = performance.now();
    await page.getByTestId("cancel").click();
    await job.done;
    const stopMs = performance.now() - cancelAt;
    const stepMs = (job.finishedAt! - job.startedAt!) / Math.max(1, job.step);
    await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 10_000 }).toBe("cancelled");
    console.log(
      `[ui] Cancel: DELETE -> job stopped ${stopMs.toFixed(0)} ms (one step ~${stepMs.toFixed(0)} ms); click -> UI shows cancelled ${(performance.now() - t0).toFixed(0)} ms`,
    );
    expect(stopMs).toBeLessThan(2 * stepMs + 500); // within about one step
    expect(job.status).toBe("cancelled");
    expect(job.step).toBeLessThan(job.total);
    expect(server.queue.size).toBe(0);
    expect(await page.locator('[data-testid="gallery"] figure').count()).toBe(1);
    expect(await page.getByTestId("generate").isEnabled()).toBe(true);
  });

  it("a strength sweep runs the strengths the user picks (default: around the slider) and fills the output", async () => {
    await setValue(page, "steps", "10");
    await setValue(page, "strength", "0.6");
    expect(await page.getByTestId("sweep-values").inputValue()).toBe("0.4, 0.5, 0.6, 0.7, 0.8");
    await setValue(page, "sweep-values", "0.3, 0.9");
    await page.getByTestId("sweep").click();
    await page.waitForFunction(
      () =>
        document.querySelectorAll('[data-testid="sweep-cell"]').length === 2 &&
        [...document.querySelectorAll('[data-testid="sweep-cell"]')].every((i) => (i as HTMLImageElement).complete),
      undefined,
      { timeout: 120_000 },
    );
    expect(await page.locator('[data-testid="sweep-grid"] figcaption').allTextContents()).toEqual([
      expect.stringMatching(/^input/),
      expect.stringMatching(/^strength 0\.3 · SSIM/),
      expect.stringMatching(/^strength 0\.9 · SSIM/),
    ]);
    const [grid, panel] = await page.evaluate(() => [
      document.querySelector('[data-testid="sweep-grid"]')!.getBoundingClientRect().width,
      document.querySelector("section.output")!.clientWidth,
    ]);
    expect(grid).toBeGreaterThan(0.9 * (panel - 20)); // the cells use the panel's width
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count()).toBe(2);
  });

  it("the gallery survives a reload, with each item's settings, and its items go back on the canvas", async () => {
    await page.reload();
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count()).toBe(2);
    const captions = await page.locator('[data-testid="gallery"] figcaption').allTextContents();
    expect(captions[0]).toMatch(/^sweep · seed \d+/);
    expect(captions[1]).toMatch(/^strength 0\.5 · seed \d+.*a stick figure knight/);
    await page.locator('[data-testid="gallery"] figure').nth(1).locator("img").click();
    await page.getByTestId("result-image").waitFor({ state: "visible" });
    expect(await page.locator(".infotext").textContent()).toMatch(/^a stick figure knight, ink drawing\nNegative prompt: blurry\nSteps: 12, /);
    await page.getByTestId("gallery-use").click();
    await expect.poll(() => page.getByTestId("prompt").inputValue()).toBe("a stick figure knight, ink drawing");
    expect(await canvasState(page)).toMatchObject({ width: 128, height: 128 });
    if (screenshots) {
      const phone = await page.context().newPage(); // same browser storage: the same gallery
      await phone.setViewportSize({ width: 390, height: 844 });
      await phone.goto(server.url);
      await phone.waitForSelector('[data-testid="gallery"] figure');
      await phone.locator('[data-testid="gallery"] figure').nth(1).locator("img").click();
      await phone.getByTestId("result-image").waitFor({ state: "visible" });
      await phone.screenshot({ path: join(repoRoot, "docs", "ui-390x844.png"), fullPage: true });
      await phone.close();
    }
    expect(errors).toEqual([]);
  });
});
