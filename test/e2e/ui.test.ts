// End-to-end: the bundled web UI in real headless Chromium (Debian's chromium driven by
// playwright-core) against the server running the tiny fixture model. Draws a stick figure,
// generates, watches the progress bar move and the result appear; cancels a running job.
// REIMAGINE_SCREENSHOT=1 also writes docs/ui.png.
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildWeb } from "../../web/build.js";
import { fixture, haveFixtures } from "../fixtures.js";

const CHROMIUM = process.env.REIMAGINE_CHROMIUM ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`[skip] UI end-to-end tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set REIMAGINE_CHROMIUM)`);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

describe.skipIf(!haveChromium || !haveFixtures("sd-tiny"))("web UI in headless Chromium (sd-tiny)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof import("../../src/server/app.js").startServer>>;
  let page: Page;
  let engine: (import("../../src/server/engine.js").Engine & { close(): Promise<void> }) | undefined;

  beforeAll(async () => {
    const webRoot = await buildWeb(mkdtempSync(join(tmpdir(), "reimagine-web-")));
    const { createWorkerEngine } = await import("../../src/server/worker-engine.js");
    const { startServer } = await import("../../src/server/app.js");
    // as `reimagine serve` does: the model in a worker thread (1 ONNX thread leaves CPU for Chromium on small CI machines)
    engine = await createWorkerEngine(fixture("sd-tiny", "model"), { threads: 1 });
    server = await startServer({ engine, port: 0, webRoot });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => console.error("page error:", e));
    await page.goto(server.url);
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" }); // models and samplers loaded
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await engine?.close();
  });

  /** Sets an <input>/<select> the way a user would (Preact listens to input/change events). */
  const setValue = (testid: string, value: string) =>
    page.$eval(
      `[data-testid="${testid}"]`,
      (el, v) => {
        const input = el as HTMLInputElement;
        input.value = v;
        input.dispatchEvent(new Event("input", { bubbles: true }));
        input.dispatchEvent(new Event("change", { bubbles: true }));
      },
      value,
    );

  /** Records every value the progress bar takes (a MutationObserver in the page). */
  const watchProgress = () =>
    page.evaluate(() => {
      const el = document.querySelector('[data-testid="progress"]') as HTMLProgressElement;
      const seen: [number, number][] = [];
      (window as any).__progress = seen;
      new MutationObserver(() => seen.push([el.value, el.max])).observe(el, { attributes: true });
    });

  it("draw a stick figure, type a prompt, Generate: the progress bar moves and the result appears", async () => {
    await setValue("width", "64");
    await setValue("height", "64");
    const canvas = page.getByTestId("sketch-canvas");
    const box = (await canvas.boundingBox())!;
    const at = (x: number, y: number) => [box.x + x * box.width, box.y + y * box.height] as const;
    const stroke = async (points: [number, number][]) => {
      await page.mouse.move(...at(...points[0]));
      await page.mouse.down();
      for (const p of points.slice(1)) await page.mouse.move(...at(...p), { steps: 4 });
      await page.mouse.up();
    };
    const head = Array.from({ length: 13 }, (_, i) => [0.5 + 0.08 * Math.cos((i * Math.PI) / 6), 0.2 + 0.08 * Math.sin((i * Math.PI) / 6)] as [number, number]);
    await stroke(head);
    await stroke([[0.5, 0.28], [0.5, 0.6]]); // body
    await stroke([[0.3, 0.4], [0.5, 0.35], [0.7, 0.4]]); // arms
    await stroke([[0.35, 0.85], [0.5, 0.6], [0.65, 0.85]]); // legs
    const inked = await canvas.evaluate((c: HTMLCanvasElement) => {
      const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) n += d[i] > 0 ? 1 : 0;
      return n;
    });
    expect(inked).toBeGreaterThan(50);

    await page.getByTestId("prompt").fill("a stick figure knight, ink drawing");
    await page.getByTestId("negative-prompt").fill("blurry");
    await setValue("steps", "12");
    await setValue("strength", "0.5");
    await expect.poll(() => page.getByTestId("strength").inputValue()).toBe("0.5");
    await watchProgress();

    const t0 = performance.now();
    await page.getByTestId("generate").click();
    const result = page.getByTestId("result-image");
    await result.waitFor({ state: "visible", timeout: 90_000 });
    await page.waitForFunction(() => (document.querySelector('[data-testid="result-image"]') as HTMLImageElement)?.complete);
    const ms = performance.now() - t0;
    const seen: [number, number][] = await page.evaluate(() => (window as any).__progress);
    console.log(`[ui] Generate click -> result image: ${ms.toFixed(0)} ms (sd-tiny, 64x64, 12 steps x strength 0.5, ${seen.at(-1)![1]} denoising steps)`);
    expect(seen.some(([v, max]) => v > 0 && v < max)).toBe(true); // moved through intermediate steps
    const [last, max] = seen.at(-1)!;
    expect(last).toBe(max); // the bar ends full
    expect(max).toBeGreaterThanOrEqual(6); // ~12 x 0.5 denoising steps (PLMS adds one)
    expect(await result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([64, 64]);
    expect(await page.getByTestId("status").textContent()).toBe("succeeded");
    expect(await page.getByTestId("download").getAttribute("download")).toMatch(/^reimagine-\d+\.png$/);
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count()).toBe(1);

    if (process.env.REIMAGINE_SCREENSHOT === "1") {
      mkdirSync(join(repoRoot, "docs"), { recursive: true });
      await page.screenshot({ path: join(repoRoot, "docs", "ui.png"), fullPage: true });
    }
  });

  it("Cancel stops a running job: no result is added and the server is idle again", async () => {
    await setValue("steps", "150");
    await setValue("strength", "1");
    await watchProgress();
    await page.getByTestId("generate").click();
    await page.waitForFunction(() => ((window as any).__progress as [number, number][]).some(([v]) => v >= 1), undefined, { timeout: 60_000 });
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
    console.log(`[ui] Cancel: DELETE -> job stopped ${stopMs.toFixed(0)} ms (one step ~${stepMs.toFixed(0)} ms); click -> DELETE ${(cancelAt - t0).toFixed(0)} ms; click -> UI shows cancelled ${(performance.now() - t0).toFixed(0)} ms`);
    expect(stopMs).toBeLessThan(2 * stepMs + 500); // within about one step
    expect(job.status).toBe("cancelled");
    expect(job.step).toBeLessThan(job.total);
    expect(server.queue.size).toBe(0);
    expect(await page.locator('[data-testid="gallery"] figure').count()).toBe(1);
    expect(await page.getByTestId("generate").isEnabled()).toBe(true);
  });
  it("Strength sweep shows the labelled grid (input + one cell per strength)", async () => {
    await setValue("steps", "8");
    await page.getByTestId("sweep").click();
    await page.waitForFunction(() => {
      const img = document.querySelector('img.sheet[data-testid="result-image"]') as HTMLImageElement | null;
      return img?.complete && img.naturalWidth > 0;
    }, undefined, { timeout: 90_000 });
    const [w, h] = await page.locator("img.sheet").evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
    expect(w).toBeGreaterThan(4 * 64); // input + 4 strengths, each cell scaled to the sheet's cell width
    expect(h).toBeGreaterThan(64);
    await expect.poll(() => page.locator('[data-testid="gallery"] figure').count()).toBe(2);
  });
});
