// The web UI's LoRA picker in headless Chromium against a server on the fast fake engine with a LoRA folder: it lists
// the folder's LoRAs, "Add" writes <lora:name:weight> into the prompt (a second Add of the same LoRA replaces its
// weight), and Generate sends that prompt; a server without LoRA folder shows no picker.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer } from "../../src/server/app.js";
import { createFakeEngine } from "../../src/server/fake-engine.js";
import { writeSafetensors } from "../../src/weights/safetensors.js";
import { builtWeb, haveChromium, launch, openPage, setValue } from "./ui-helpers.js";

describe.skipIf(!haveChromium)("web UI LoRA picker (headless Chromium, fake engine)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-ui-lora-"));
  const engine = createFakeEngine({ stepMs: 2 });
  let browser: Browser;
  let server: Awaited<ReturnType<typeof startServer>>;
  let plain: Awaited<ReturnType<typeof startServer>>;

  beforeAll(async () => {
    mkdirSync(join(dir, "styles"));
    for (const [f, meta] of [
      ["watercolor.safetensors", undefined],
      ["styles/pixel-art.safetensors", { ss_output_name: "pixelart" }],
    ] as const) {
      const t = { dtype: "F32" as const, shape: [1, 1], data: Float32Array.of(1) };
      writeSafetensors(join(dir, f), { "lora_unet_a.lora_down.weight": t, "lora_unet_a.lora_up.weight": t }, meta);
    }
    const webRoot = await builtWeb();
    server = await startServer({ engine, port: 0, webRoot, loraDirs: [dir] });
    plain = await startServer({ engine: createFakeEngine(), port: 0, webRoot });
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await plain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists the LoRAs, inserts the tag with its weight into the prompt, and Generate sends it", async () => {
    const { page, errors } = await openPage(browser, server.url);
    await page.waitForSelector('[data-testid="lora"] option', { state: "attached" });
    expect(await page.$$eval('[data-testid="lora"] option', (o) => o.map((x) => [(x as HTMLOptionElement).value, x.textContent]))).toEqual([
      ["pixel-art", "pixel-art (pixelart)"],
      ["watercolor", "watercolor"],
    ]);
    await setValue(page, "prompt", "a harbour at dawn");
    await setValue(page, "lora", "watercolor");
    await setValue(page, "lora-weight", "0.6");
    await page.getByTestId("lora-add").click();
    expect(await page.getByTestId("prompt").inputValue()).toBe("a harbour at dawn <lora:watercolor:0.6>");
    await setValue(page, "lora-weight", "0.9");
    await page.getByTestId("lora-add").click(); // the same LoRA again: its weight changes, no second tag
    await setValue(page, "lora", "pixel-art");
    await setValue(page, "lora-weight", "-0.5");
    await page.getByTestId("lora-add").click();
    const prompt = "a harbour at dawn <lora:watercolor:0.9> <lora:pixel-art:-0.5>";
    expect(await page.getByTestId("prompt").inputValue()).toBe(prompt);
    const n = engine.runs.length;
    await page.getByTestId("generate").click();
    await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 20_000 }).toBe("succeeded");
    expect(engine.runs[n]).toMatchObject({ prompt, loraDirs: [dir] });
    expect(errors).toEqual([]);
  });

  it("a server without LoRA folder shows no picker", async () => {
    const { page, errors } = await openPage(browser, plain.url);
    await page.waitForSelector('[data-testid="sampler"] option', { state: "attached" });
    expect(await page.getByTestId("lora-picker").count()).toBe(0);
    expect(errors).toEqual([]);
  });
});
