// Helpers for the web UI's browser tests: headless Debian Chromium through playwright-core, a
// server with the bundled UI, and page actions a user performs (strokes, drops, pastes) plus
// readers of what the page shows and what it sends.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { buildWeb } from "../../web/build.js";

export const CHROMIUM = process.env.REIMAGINE_CHROMIUM ?? "/usr/bin/chromium";
export const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`[skip] UI end-to-end tests: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set REIMAGINE_CHROMIUM)`);

let webRoot: Promise<string> | undefined;
/** The bundled UI, built once per test file into a temporary folder. */
export const builtWeb = () => (webRoot ??= buildWeb(mkdtempSync(join(tmpdir(), "reimagine-web-"))));

export async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A page that fails the test on any page error. */
export async function openPage(browser: Browser, url: string, viewport = { width: 1366, height: 768 }): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  return { page, errors };
}

/** Sets an <input>/<select> the way a user would (Preact listens to input/change events). */
export const setValue = (page: Page, testid: string, value: string) =>
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

/** A stroke through points given as fractions of the canvas. */
export async function stroke(page: Page, points: [number, number][]): Promise<void> {
  const box = (await page.getByTestId("sketch-canvas").boundingBox())!;
  const at = (x: number, y: number) => [box.x + x * box.width, box.y + y * box.height] as const;
  await page.mouse.move(...at(...points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...at(...p), { steps: 4 });
  await page.mouse.up();
}

/** The canvas as the page shows it: its pixel size and how many pixels are not white. */
export const canvasState = (page: Page) =>
  page.getByTestId("sketch-canvas").evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 0; i < d.length; i += 4) inked += d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250 ? 1 : 0;
    return { width: c.width, height: c.height, inked };
  });

/** Whether the first element with this test id is on screen whole (no scrolling needed to see it). */
export const shownInViewport = (page: Page, testid: string) =>
  page
    .getByTestId(testid)
    .first()
    .evaluate((el) => {
      const r = el.getBoundingClientRect();
      return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth && r.width > 0;
    });

/** What the size selects show. */
export const shownSize = async (page: Page) => ({
  width: Number(await page.getByTestId("width").inputValue()),
  height: Number(await page.getByTestId("height").inputValue()),
});

/** A file (bytes from Node) dropped on the element matching `selector`, as a drag and drop does. */
export const dropFile = (page: Page, selector: string, bytes: Buffer, name: string, type = "image/png") =>
  page.$eval(
    selector,
    (el, { b64, name, type }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bin], name, { type }));
      el.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    },
    { b64: bytes.toString("base64"), name, type },
  );

/** A file pasted into the page (a paste event carrying it, as Ctrl+V with a copied image does). */
export const pasteFile = (page: Page, bytes: Buffer, name: string, type = "image/png") =>
  page.evaluate(
    ({ b64, name, type }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bin], name, { type }));
      document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    },
    { b64: bytes.toString("base64"), name, type },
  );
