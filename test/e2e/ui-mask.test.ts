// The web UI's inpainting in headless Chromium against `reimagine serve`'s engine (sd-tiny in a child process): a mask
// painted over an uploaded photo repaints only inside it (the result differs from the input only where the mask is,
// shown with the before/after compare); the mask tools (show/hide, invert, clear, undo); inpaint sketch (colour strokes
// over the photo are the new content and the mask). REIMAGINE_SCREENSHOT=1 writes docs/ui-mask-1366x768.png.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer } from "../../src/server/app.js";
import { createWorkerEngine } from "../../src/server/worker-engine.js";
import { fixture, haveFixtures } from "../fixtures.js";
import { builtWeb, haveChromium, launch, openPage, setValue, stroke } from "./ui-helpers.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Pixels of the compare's before and after images, and of the mask as the overlay shows it (alpha > 0 = masked). */
const readResult = (page: Page) =>
  page.evaluate(() => {
    const px = (img: HTMLImageElement) => {
      const c = document.createElement("canvas");
      [c.width, c.height] = [img.naturalWidth, img.naturalHeight];
      c.getContext("2d")!.drawImage(img, 0, 0);
      return c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    };
    const before = px(document.querySelector(".compare .before") as HTMLImageElement);
    const after = px(document.querySelector('[data-testid="result-image"]') as HTMLImageElement);
    const m = document.querySelector('[data-testid="mask-canvas"]') as HTMLCanvasElement;
    const mask = m.getContext("2d")!.getImageData(0, 0, m.width, m.height).data;
    const r = { width: m.width, height: m.height, masked: 0, changedInside: 0, changedOutside: 0 };
    for (let i = 0; i < before.length; i += 4) {
      const changed = before[i] !== after[i] || before[i + 1] !== after[i + 1] || before[i + 2] !== after[i + 2];
      const inside = mask[i + 3] > 0;
      r.masked += inside ? 1 : 0;
      if (changed && inside) r.changedInside++;
      if (changed && !inside) r.changedOutside++;
    }
    return r;
  });

/**
 * Inpaint sketch: the strokes are where the flattened input (the compare's "before") differs from the photo; the
 * result may change there and on the strokes' one-pixel antialiased rim, and nowhere else.
 */
const readSketchResult = (page: Page, photoB64: string) =>
  page.evaluate(async (b64) => {
    const px = (img: CanvasImageSource, w: number, h: number) => {
      const c = document.createElement("canvas");
      [c.width, c.height] = [w, h];
      c.getContext("2d")!.drawImage(img, 0, 0);
      return c.getContext("2d")!.getImageData(0, 0, w, h).data;
    };
    const shown = (sel: string) => {
      const img = document.querySelector(sel) as HTMLImageElement;
      return px(img, img.naturalWidth, img.naturalHeight);
    };
    const before = shown(".compare .before");
    const after = shown('[data-testid="result-image"]');
    const bitmap = await createImageBitmap(new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], { type: "image/png" }));
    const photo = px(bitmap, bitmap.width, bitmap.height);
    const W = Math.round(Math.sqrt(before.length / 4));
    const differs = (a: Uint8ClampedArray, b: Uint8ClampedArray, p: number) =>
      a[4 * p] !== b[4 * p] || a[4 * p + 1] !== b[4 * p + 1] || a[4 * p + 2] !== b[4 * p + 2];
    if (photo.length !== before.length) throw new Error(`the input is ${W}x${W}, the photo ${bitmap.width}x${bitmap.height}`);
    const r = { strokes: 0, changedOnStrokes: 0, changedAway: 0 };
    for (let p = 0; p < W * W; p++) {
      const [x, y] = [p % W, Math.floor(p / W)];
      let near = false;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const [u, v] = [x + dx, y + dy];
          if (u >= 0 && v >= 0 && u < W && v < W && differs(before, photo, v * W + u)) near = true;
        }
      const onStroke = differs(before, photo, p);
      const changed = differs(before, after, p);
      r.strokes += onStroke ? 1 : 0;
      if (changed && onStroke) r.changedOnStrokes++;
      if (changed && !near) r.changedAway++;
    }
    return r;
  }, photoB64);

describe.skipIf(!haveChromium || !haveFixtures("sd-tiny"))("web UI inpainting in headless Chromium (sd-tiny)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  let engine: Awaited<ReturnType<typeof createWorkerEngine>> | undefined;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    engine = await createWorkerEngine(fixture("sd-tiny", "model"), { threads: 1 });
    server = await startServer({ engine, port: 0, webRoot: await builtWeb() });
    browser = await launch();
    ({ page, errors } = await openPage(browser, server.url));
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await engine?.close();
  });

  const generate = async () => {
    const n = await page.locator('[data-testid="gallery"] figure').count();
    await page.getByTestId("generate").click();
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count(), { timeout: 120_000 }).toBe(n + 1);
    expect(await page.getByTestId("status").textContent()).toBe("succeeded");
    await page.waitForFunction(() => (document.querySelector('[data-testid="result-image"]') as HTMLImageElement)?.complete);
  };

  it("a mask painted over a photo: the result differs from the input only inside the mask", async () => {
    await page.getByTestId("image-input").setInputFiles(fixture("sd-tiny", "reference", "input.png"));
    await expect.poll(() => page.getByTestId("width").inputValue()).toBe("64");
    await expect.poll(() => page.getByTestId("mask-coverage").textContent()).toMatch(/no mask/);
    await page.getByTestId("mask-mode").click();
    await setValue(page, "mask-size", "80");
    await setValue(page, "mask-blur", "0");
    await stroke(page, [
      [0.3, 0.45],
      [0.7, 0.55],
    ]);
    await expect.poll(() => page.getByTestId("mask-coverage").textContent()).toMatch(/% masked/);

    // tools: hide / show, invert, undo, clear, undo
    const coverage = await page.getByTestId("mask-coverage").textContent();
    await page.getByTestId("mask-shown").uncheck();
    expect(await page.getByTestId("mask-canvas").evaluate((c) => getComputedStyle(c).opacity)).toBe("0");
    await page.getByTestId("mask-shown").check();
    await page.getByTestId("mask-invert").click();
    expect(await page.getByTestId("mask-coverage").textContent()).not.toBe(coverage);
    await page.keyboard.press("Control+z");
    expect(await page.getByTestId("mask-coverage").textContent()).toBe(coverage);
    await page.getByTestId("mask-clear").click();
    await expect.poll(() => page.getByTestId("mask-coverage").textContent()).toMatch(/no mask/);
    await page.keyboard.press("Control+z");
    expect(await page.getByTestId("mask-coverage").textContent()).toBe(coverage);

    await page.getByTestId("prompt").fill("a red flower");
    await setValue(page, "steps", "6");
    await setValue(page, "strength", "0.9");
    await generate();
    const r = await readResult(page);
    expect([r.width, r.height]).toEqual([64, 64]);
    expect(r.masked).toBeGreaterThan(200);
    expect(r.masked).toBeLessThan(64 * 64 * 0.5);
    expect(r.changedOutside).toBe(0);
    expect(r.changedInside).toBeGreaterThan(r.masked * 0.3);
    expect(errors).toEqual([]);
    if (process.env.REIMAGINE_SCREENSHOT === "1") await page.screenshot({ path: join(repoRoot, "docs", "ui-mask-1366x768.png") });
  });

  it("inpaint sketch: colour strokes over the photo are the new content and the mask; nothing else changes", async () => {
    await page.getByTestId("mask-clear").click();
    await page.getByTestId("mask-mode").click(); // back to drawing
    await page.getByTestId("mask-sketch").check();
    await page.getByLabel("colour #1e88e5").click();
    await setValue(page, "brush-size", "40");
    await stroke(page, [
      [0.2, 0.2],
      [0.4, 0.3],
    ]);
    await expect.poll(() => page.getByTestId("mask-coverage").textContent()).toMatch(/% masked/);
    await generate();
    const r = await readSketchResult(page, readFileSync(fixture("sd-tiny", "reference", "input.png")).toString("base64"));
    expect(r.strokes).toBeGreaterThan(50);
    expect(r.changedOnStrokes).toBeGreaterThan(r.strokes * 0.3);
    expect(r.changedAway).toBe(0);
    expect(errors).toEqual([]);
  });
});
