// "No sampler" means the model's own scheduler on every front end. A copy of the sd-tiny model whose
// scheduler_config.json is a Karras sde-dpmsolver++ DPMSolverMultistepScheduler runs through the
// library, the CLI and the server (native and A1111 routes) without a sampler: all give the same
// pixels and name the same sampler, and that image is not plain DPM++ 2M (what the server used to run).
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { encodeImage, loadImage, loadPipeline, parseInfotext, readImageParameters, type RGBImage } from "../src/index.js";
import { main } from "../src/cli/main.js";
import { createApp } from "../src/server/app.js";
import { engineFromPipeline } from "../src/server/engine.js";
import { capture } from "./capture.js";
import { describeWithFixtures, fixture } from "./fixtures.js";
import { useTempCache } from "./temp-cache.js";

describeWithFixtures("the model's own scheduler is the default on every front end", () => {
  const dir = useTempCache("reimagine-default-sampler-");

  // sd-tiny's components, with the scheduler config swapped for a Karras SDE DPM++ one
  const model = join(dir, "sd-tiny-sde-karras");
  mkdirSync(join(model, "scheduler"), { recursive: true });
  for (const part of ["model_index.json", "unet", "vae", "text_encoder", "tokenizer"]) symlinkSync(fixture("sd-tiny", "model", part), join(model, part));
  const pndm = JSON.parse(readFileSync(fixture("sd-tiny", "model", "scheduler", "scheduler_config.json"), "utf8"));
  const schedulerConfig = { ...pndm, _class_name: "DPMSolverMultistepScheduler", algorithm_type: "sde-dpmsolver++", solver_order: 2, use_karras_sigmas: true };
  writeFileSync(join(model, "scheduler", "scheduler_config.json"), JSON.stringify(schedulerConfig));

  const input = fixture("sd-tiny", "reference", "input.png");
  const settings = { prompt: "a red fox", strength: 0.6, steps: 6, guidanceScale: 7.5, seed: 7 };
  const same = (a: RGBImage, b: RGBImage) => a.width === b.width && a.height === b.height && Buffer.from(a.data).equals(Buffer.from(b.data));

  it("library, CLI, native API and A1111 API run the same scheduler and give the same image", async () => {
    const pipe = await loadPipeline(model, { threads: 1 });
    const image = await loadImage(input);
    const library = (await pipe.run({ ...settings, image })).images[0];
    // control: plain DPM++ 2M (what the server's default used to be) is a different picture
    const plain = (await pipe.run({ ...settings, image, sampler: "dpmpp-2m" })).images[0];
    expect(same(library, plain)).toBe(false);

    // CLI, no --sampler
    const out = join(dir, "cli.png");
    const { out: text, io } = capture();
    const args = [input, "--model", model, "-p", settings.prompt, "--strength", "0.6", "--steps", "6", "-g", "7.5", "--seed", "7", "-o", out, "--threads", "1"];
    expect(await main(args, io), text.stderr).toBe(0);
    expect(same(await loadImage(out), library)).toBe(true);
    expect(parseInfotext((await readImageParameters(out))!).sampler).toBe("DPM++ 2M SDE Karras");

    // server (the engine the worker wraps), no sampler on either API
    const engine = engineFromPipeline(pipe);
    expect(engine.samplers().find((s) => s.name === engine.defaults.sampler)).toEqual({
      name: "default",
      a1111Name: "DPM++ 2M SDE Karras",
      className: "DPMSolverMultistepScheduler",
    });
    const { app, queue } = createApp(engine, { webRoot: "/nonexistent" });
    const post = (path: string, body: unknown) =>
      app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const b64 = (await encodeImage(image, "png")).toString("base64");

    const job = (await (await post("/v1/img2img", { ...settings, image: b64 })).json()) as { id: string };
    await queue.idle();
    const view = (await (await app.request(`/v1/jobs/${job.id}`)).json()) as { status: string; settings: { sampler: string; samplerA1111: string } };
    expect(view.status).toBe("succeeded");
    expect(view.settings).toMatchObject({ sampler: "default", samplerA1111: "DPM++ 2M SDE Karras" });
    const png = Buffer.from(await (await app.request(`/v1/jobs/${job.id}/images/0`)).arrayBuffer());
    expect(same(await loadImage(png), library)).toBe(true);

    const a1111 = (await (
      await post("/sdapi/v1/img2img", {
        init_images: [b64],
        prompt: settings.prompt,
        denoising_strength: 0.6,
        steps: 6,
        cfg_scale: 7.5,
        seed: 7,
        width: 64,
        height: 64,
      })
    ).json()) as { images: string[]; info: string };
    expect(same(await loadImage(Buffer.from(a1111.images[0], "base64")), library)).toBe(true);
    expect(JSON.parse(a1111.info).sampler_name).toBe("DPM++ 2M SDE Karras");
    await pipe.model.release();
  });
});
