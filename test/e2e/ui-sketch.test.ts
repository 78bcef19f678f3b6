// The web UI's input canvas in headless Chromium, against a server on the fast fake engine: a
// drawing survives size changes (scaled or re-framed, undoable), uploads and size changes after
// them, Ctrl+Z / Ctrl+Shift+Z, paste, PNG-info drop restoring settings, the size the UI shows is
// the size it sends, and a wrong API key gets a visible message.
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeImage } from "../../src/image.js";
import { startServer } from "../../src/server/app.js";
import { createFakeEngine } from "../../src/server/fake-engine.js";
import { builtWeb, canvasState, dropFile, haveChromium, launch, openPage, pasteFile, setValue, shownSize, stroke } from "./ui-helpers.js";

/** A w x h PNG: a dark square on light grey (so "inked" pixels can be counted), with optional parameters. */
async function picture(w: number, h: number, parameters?: string): Promise<Buffer> {
  const data = new Uint8Array(w * h * 3).fill(200);
  for (let y = Math.floor(h / 4); y < Math.floor((3 * h) / 4); y++)
    for (let x = Math.floor(w / 4); x < Math.floor((3 * w) / 4); x++) data.fill(30, 3 * (y * w + x), 3 * (y * w + x) + 3);
  return encodeImage({ width: w, height: h, data }, "png", { parameters });
}

describe.skipIf(!haveChromium)("web UI input canvas (headless Chromium, fake engine)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  const engine = createFakeEngine({ stepMs: 5 }); // records what each run received
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    server = await startServer({ engine, port: 0, webRoot: await builtWeb() });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });
  const fresh = async () => {
    ({ page, errors } = await openPage(browser, server.url));
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
  };
  /** Generate, and what the engine received from it (the decoded input image and the settings). */
  const generateAndCapture = async () => {
    const n = engine.runs.length;
    await page.getByTestId("generate").click();
    await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 20_000 }).toBe("succeeded");
    expect(engine.runs.length).toBe(n + 1);
    const run = engine.runs[n];
    return { ...run, image: { width: run.image.width, height: run.image.height } };
  };

  it("a size change after drawing scales the drawing, is undoable, and what is shown is what is sent", async () => {
    await fresh();
    await stroke(page, [
      [0.2, 0.2],
      [0.8, 0.8],
    ]);
    await stroke(page, [
      [0.8, 0.2],
      [0.2, 0.8],
    ]);
    const drawn = await canvasState(page);
    expect(drawn).toMatchObject({ width: 512, height: 512 });
    expect(drawn.inked).toBeGreaterThan(2000);

    // the sequence that used to stretch, then erase the sketch, and send 512x512 while showing 64x64
    await setValue(page, "width", "256");
    await setValue(page, "height", "64");
    const small = await canvasState(page);
    expect(small).toMatchObject({ width: 256, height: 64 });
    expect(small.inked).toBeGreaterThan(((drawn.inked * (256 * 64)) / (512 * 512)) * 0.5); // scaled, not erased
    expect(await shownSize(page)).toEqual({ width: 256, height: 64 });
    const sent = await generateAndCapture();
    expect([sent.width, sent.height]).toEqual([256, 64]);
    expect(sent.image).toEqual({ width: 256, height: 64 });

    // two size changes, two undo steps: back to the drawing as it was, pixel for pixel
    await page.keyboard.press("Control+z");
    expect(await shownSize(page)).toEqual({ width: 256, height: 512 });
    await page.keyboard.press("Control+z");
    expect(await canvasState(page)).toEqual(drawn);
    expect(await shownSize(page)).toEqual({ width: 512, height: 512 });
    await page.keyboard.press("Control+Shift+z");
    await page.keyboard.press("Control+Shift+z");
    expect(await canvasState(page)).toEqual(small);
    expect(errors).toEqual([]);
  });

  it("re-framing keeps the drawing's scale: a smaller size crops it, a larger one extends it", async () => {
    await fresh();
    await setValue(page, "resize-mode", "reframe");
    await stroke(page, [
      [0.45, 0.5],
      [0.55, 0.5],
    ]); // a short line in the middle
    const before = await canvasState(page);
    await setValue(page, "width", "1024");
    const wider = await canvasState(page);
    expect(wider.width).toBe(1024);
    expect(wider.inked).toBe(before.inked); // same pixels, centred, nothing stretched
    await setValue(page, "width", "256");
    expect((await canvasState(page)).inked).toBe(before.inked); // the middle survives the crop
    expect(errors).toEqual([]);
  });

  it("an uploaded picture sets a size with its aspect; a size change after it keeps it; sent = shown", async () => {
    await fresh();
    await page.getByTestId("image-input").setInputFiles({ name: "photo.png", mimeType: "image/png", buffer: await picture(300, 200) });
    await expect.poll(() => shownSize(page)).toEqual({ width: 320, height: 192 }); // 300x200 -> multiples of 64
    const up = await canvasState(page);
    expect(up.inked).toBeGreaterThan(0.2 * 320 * 192); // the dark square and the grey around it
    await setValue(page, "height", "320");
    const after = await canvasState(page);
    expect(after).toMatchObject({ width: 320, height: 320 });
    expect(after.inked).toBeGreaterThan(0.2 * 320 * 320);
    const sent = await generateAndCapture();
    expect(sent.image).toEqual({ width: 320, height: 320 });
    expect([sent.width, sent.height]).toEqual([320, 320]);
    await page.keyboard.press("Control+z"); // back to the upload's own size
    expect(await canvasState(page)).toEqual(up);
    expect(errors).toEqual([]);
  });

  it("Ctrl+Z / Ctrl+Shift+Z undo and redo strokes; in a text field Ctrl+Z stays the field's own", async () => {
    await fresh();
    await stroke(page, [
      [0.1, 0.1],
      [0.9, 0.1],
    ]);
    const one = await canvasState(page);
    await stroke(page, [
      [0.1, 0.9],
      [0.9, 0.9],
    ]);
    const two = await canvasState(page);
    expect(two.inked).toBeGreaterThan(one.inked);
    await page.getByTestId("prompt").fill("a harbour");
    await page.getByTestId("prompt").press("Control+z");
    expect(await canvasState(page)).toEqual(two); // the canvas did not undo
    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("Control+z");
    expect(await canvasState(page)).toEqual(one);
    await page.keyboard.press("Control+Shift+z");
    expect(await canvasState(page)).toEqual(two);
    await page.getByTestId("undo").click();
    expect(await canvasState(page)).toEqual(one);
    expect(errors).toEqual([]);
  });

  it("pasting an image puts it on the canvas", async () => {
    await fresh();
    await pasteFile(page, await picture(128, 256), "clipboard.png");
    await expect.poll(() => shownSize(page)).toEqual({ width: 128, height: 256 });
    expect((await canvasState(page)).inked).toBeGreaterThan(0.2 * 128 * 256);
    expect(errors).toEqual([]);
  });

  it("dropping a PNG made by Reimagine or A1111 restores its settings (PNG info)", async () => {
    await fresh();
    // A1111's infotext, written as PIL writes it (tEXt); the prompt has a non-Latin-1 character, so iTXt
    const text =
      "a red barn in snow, café ☕\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, CFG scale: 3.5, Seed: 1234, Size: 192x128, Model hash: 0f0f0f0f0f, Model: fake-model, Denoising strength: 0.45";
    await dropFile(page, ".canvas-wrap", await picture(192, 128, text), "made-by-a1111.png");
    await expect.poll(() => page.getByTestId("prompt").inputValue()).toBe("a red barn in snow, café ☕");
    expect(await page.getByTestId("negative-prompt").inputValue()).toBe("blurry");
    expect(await page.getByTestId("steps").inputValue()).toBe("7");
    expect(await page.getByTestId("guidance").inputValue()).toBe("3.5");
    expect(await page.getByTestId("seed").inputValue()).toBe("1234");
    expect(await page.getByTestId("seed-lock").isChecked()).toBe(true);
    expect(await page.getByTestId("sampler").inputValue()).toBe("euler-a");
    expect(await page.getByTestId("strength-value").textContent()).toBe("0.45");
    expect(await shownSize(page)).toEqual({ width: 192, height: 128 });
    expect(await page.getByTestId("notice").textContent()).toMatch(/Settings restored from made-by-a1111\.png \(seed 1234\)/);
    const sent = await generateAndCapture(); // and they are what the next run sends
    expect(sent).toMatchObject({
      prompt: "a red barn in snow, café ☕",
      negativePrompt: "blurry",
      steps: 7,
      guidanceScale: 3.5,
      seed: 1234,
      sampler: "euler-a",
      strength: 0.45,
      width: 192,
      height: 128,
      image: { width: 192, height: 128 },
    });

    // a Latin-1 text is a plain tEXt chunk (A1111's usual case); a Reimagine result reads the same
    await dropFile(
      page,
      ".canvas-wrap",
      await picture(64, 64, "a blue boat\nSteps: 9, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 77, Size: 64x64, Denoising strength: 0.3"),
      "boat.png",
    );
    await expect.poll(() => page.getByTestId("prompt").inputValue()).toBe("a blue boat");
    expect([
      await page.getByTestId("sampler").inputValue(),
      await page.getByTestId("seed").inputValue(),
      await page.getByTestId("negative-prompt").inputValue(),
    ]).toEqual(["dpmpp-2m-karras", "77", ""]);
    expect(errors).toEqual([]);
  });
});

describe.skipIf(!haveChromium)("web UI with an API key (headless Chromium, fake engine)", () => {
  it("a wrong key gets a visible message; the right one opens the UI", async () => {
    const server = await startServer({ engine: createFakeEngine(), port: 0, webRoot: await builtWeb(), apiKey: "s3cret" });
    const browser = await launch();
    try {
      const { page, errors } = await openPage(browser, server.url);
      await page.getByTestId("api-key").fill("wrong");
      await page.getByRole("button", { name: "Use key" }).click();
      await expect.poll(() => page.getByTestId("key-error").isVisible()).toBe(true);
      expect(await page.getByTestId("key-error").textContent()).toMatch(/refused this key/);
      await page.getByTestId("api-key").fill("s3cret");
      await page.getByRole("button", { name: "Use key" }).click();
      await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
      expect(await page.getByTestId("key-error").count()).toBe(0);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await server.close();
    }
  });
});

describe.skipIf(!haveChromium)("web UI sizes follow the loaded model (headless Chromium, SDXL-like fake engine)", () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  const engine = createFakeEngine({ stepMs: 5, nativeSize: 1024, family: "sdxl" });
  beforeAll(async () => {
    server = await startServer({ engine, port: 0, webRoot: await builtWeb() });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("a blank canvas starts at the model's 1024x1024, the size choices reach 2048, and 1024 is what is sent", async () => {
    const { page } = await openPage(browser, server.url);
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
    await expect.poll(() => shownSize(page)).toEqual({ width: 1024, height: 1024 });
    expect(await canvasState(page)).toMatchObject({ width: 1024, height: 1024 });
    const widths = await page.getByTestId("width").locator("option").allTextContents();
    expect(widths.map(Number)).toContain(2048);
    await page.getByTestId("generate").click();
    await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 20_000 }).toBe("succeeded");
    expect(engine.runs.at(-1)).toMatchObject({ width: 1024, height: 1024 });
    await page.close();
  });
});
