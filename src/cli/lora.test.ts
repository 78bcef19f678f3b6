// The CLI's LoRA and prompt-syntax options: --lora FILE[:WEIGHT] parsing and errors; on the fixtures, every
// sd-tiny-lora case (both file formats, each scale) and the tag case through `reimagine` (written PNG within 1/255 of
// diffusers), the prompt-syntax img2img cases, `Lora hashes` as A1111 writes it, `--from` re-applying the LoRAs (by
// name, by hash, or saying which one is missing), and an LCM-LoRA as a few-step mode.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { capture } from "../../test/capture.js";
import { runCli } from "../../test/cli.js";
import { describeWithFixtures, fixture, loadReferenceJson, referenceRunSettings } from "../../test/fixtures.js";
import { useTempCache } from "../../test/temp-cache.js";
import { loadImage, readImageParameters } from "../image.js";
import { parseInfotext } from "../pipeline/infotext.js";
import { SafetensorsFile } from "../weights/safetensors.js";
import { parseGenerateArgs } from "./args.js";
import { loraRunOptions, parseLoraArg } from "./lora.js";
import { main } from "./main.js";

describe("--lora, --lora-dir, --prompt-syntax", () => {
  it("parses FILE[:WEIGHT], names and repo ids; repeatable", () => {
    expect(parseLoraArg("style.safetensors")).toEqual({ path: "style.safetensors" });
    expect(parseLoraArg("loras/style.safetensors:0.7")).toEqual({ path: "loras/style.safetensors", weight: 0.7 });
    expect(parseLoraArg("watercolor:-0.5")).toEqual({ name: "watercolor", weight: -0.5 });
    expect(parseLoraArg("latent-consistency/lcm-lora-sdv1-5")).toEqual({ path: "latent-consistency/lcm-lora-sdv1-5" });
    expect(parseLoraArg("C:\\loras\\a.safetensors")).toEqual({ path: "C:\\loras\\a.safetensors" });
    const f = parseGenerateArgs([
      "in.png",
      "--lora",
      "a:0.5",
      "--lora",
      "b.safetensors",
      "--lora-dir",
      "x",
      "--lora-dir",
      "y",
      "--prompt-syntax",
      "none",
      "--embedding-dir",
      "e",
    ]).flags;
    expect(f.loras).toEqual([{ name: "a", weight: 0.5 }, { path: "b.safetensors" }]);
    expect(f.loraDirs).toEqual(["x", "y"]);
    expect(f.embeddingDirs).toEqual(["e"]);
    expect(f.promptSyntax).toBe("none");
  });

  it("run options: the LoRA and embedding folders default to loras/ and embeddings/ beside the model, plus the env lists", () => {
    const dir = mkdtempSync(join(tmpdir(), "reimagine-cli-dirs-"));
    const saved = { l: process.env.REIMAGINE_LORA_DIR, e: process.env.REIMAGINE_EMBEDDING_DIR };
    try {
      mkdirSync(join(dir, "sd15"));
      process.env.REIMAGINE_LORA_DIR = join(dir, "env-loras");
      process.env.REIMAGINE_EMBEDDING_DIR = join(dir, "env-emb");
      const o = loraRunOptions({ model: join(dir, "sd15") }, "a cat");
      expect(o.loraDirs).toEqual([join(dir, "env-loras"), join(dir, "loras")]);
      expect(o.embeddingDirs).toEqual([join(dir, "env-emb"), join(dir, "embeddings")]);
      const given = loraRunOptions({ model: join(dir, "sd15"), loraDirs: ["x"], embeddingDirs: ["y"] }, "a cat");
      expect([given.loraDirs, given.embeddingDirs]).toEqual([
        [join(dir, "env-loras"), "x"],
        [join(dir, "env-emb"), "y"],
      ]);
    } finally {
      for (const [k, v] of [
        ["REIMAGINE_LORA_DIR", saved.l],
        ["REIMAGINE_EMBEDDING_DIR", saved.e],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a weight that is not a number and an unknown syntax, in one line", () => {
    expect(() => parseLoraArg("style.safetensors:strong")).toThrow(
      /^--lora 'style.safetensors:strong': the weight 'strong' is not a number; write --lora FILE:0.8/,
    );
    expect(() => parseGenerateArgs(["in.png", "--prompt-syntax", "compel"])).toThrow(/--prompt-syntax must be one of a1111, none \(got 'compel'\)/);
  });
});

describeWithFixtures(
  "reimagine --lora (sd-tiny + sd-tiny-lora)",
  () => {
    const SET = "sd-tiny-lora";
    const ref = loadReferenceJson(SET);
    const tmp = useTempCache("reimagine-cli-lora-"); // graphs built once for this file
    const model = fixture("sd-tiny", "model");
    const input = fixture("sd-tiny", "reference", "input.png");
    const loraDir = fixture(SET, "lora");
    const args = (s: ReturnType<typeof referenceRunSettings>, out: string) => [
      input,
      "--model",
      model,
      "--prompt",
      s.prompt,
      "--negative-prompt",
      s.negativePrompt ?? "",
      "--strength",
      String(s.strength),
      "--steps",
      String(s.steps),
      "--guidance-scale",
      String(s.guidanceScale),
      "--seed",
      String(s.seed),
      "--threads",
      "1",
      "-o",
      out,
      ...(s.sampler ? ["--sampler", s.sampler] : []),
    ];
    /** Worst |ours - round(255 * diffusers)| over the written PNG. */
    const worst = async (png: string, want: Float32Array) => {
      const ours = await loadImage(png);
      let w = 0;
      for (let k = 0; k < want.length; k++) w = Math.max(w, Math.abs(ours.data[k] - Math.round(want[k] * 255)));
      return w;
    };
    const refImage = (c: any) => {
      const f = SafetensorsFile.open(fixture(SET, "reference", "tensors.safetensors"));
      try {
        return f.read(c.image.tensor);
      } finally {
        f.close();
      }
    };
    const files = ["sd-tiny-lora.diffusers.safetensors", "sd-tiny-lora.safetensors"];

    for (const [i, c] of (ref.pipeline.cases as any[]).entries()) {
      const file = files[i % 2];
      it(`case ${c.id} with --lora ${file}:${c.lora.multiplier}: PNG within 1/255 of diffusers, Lora hashes recorded`, async () => {
        const out = join(tmp, `${c.id}.png`);
        await runCli([...args(referenceRunSettings(c), out), "--lora", `${join(loraDir, file)}:${c.lora.multiplier}`]);
        expect(await worst(out, refImage(c))).toBeLessThanOrEqual(1);
        const p = parseInfotext((await readImageParameters(out))!);
        const name = file.replace(/\.safetensors$/, "");
        expect(p.prompt).toBe(`${c.inputs.prompt} <lora:${name}:${c.lora.multiplier}>`);
        expect(p.pairs.get("Lora hashes")).toMatch(new RegExp(`^${name.replace(/\./g, "\\.")}: [0-9a-f]{12}$`));
      });
    }

    it("the <lora:sd-tiny-lora:0.8> tag case (found with --lora-dir) equals case lora0.8; --from re-applies it", async () => {
      const tag = ref.tag_syntax.pipeline_case;
      const c = ref.pipeline.cases.find((x: any) => x.id === "lora0.8");
      const out = join(tmp, "tag.png");
      await runCli([...args({ ...referenceRunSettings(c), prompt: tag.prompt_with_tags }, out), "--lora-dir", loraDir]);
      expect(await worst(out, refImage(c))).toBeLessThanOrEqual(1);
      const text = (await readImageParameters(out))!;
      expect(text.split("\n")[0]).toBe(tag.prompt_with_tags);
      expect(text).toMatch(/, Lora hashes: "sd-tiny-lora: [0-9a-f]{12}"(,|$)/); // A1111 quotes values with ':' and ','
      const again = join(tmp, "tag-again.png");
      await runCli([input, "--from", out, "--model", model, "--lora-dir", loraDir, "--threads", "1", "-o", again]);
      expect(readFileSync(again)).toEqual(readFileSync(out));
    });

    it("--from finds a renamed LoRA by its hash and names a missing one", async () => {
      const renamed = join(tmp, "renamed");
      mkdirSync(renamed);
      copyFileSync(join(loraDir, "sd-tiny-lora.safetensors"), join(renamed, "my-copy.safetensors"));
      const first = join(tmp, "tag.png");
      const again = join(tmp, "by-hash.png");
      const out = await runCli([input, "--from", first, "--model", model, "--lora-dir", renamed, "--threads", "1", "--verbose", "-o", again]);
      expect(out.stderr).toMatch(/--from: LoRA 'sd-tiny-lora' \[[0-9a-f]{12}\] is .*my-copy\.safetensors \(found by its hash\)/);
      expect((await loadImage(again)).data).toEqual((await loadImage(first)).data);
      const empty = join(tmp, "empty");
      mkdirSync(empty);
      const { out: o, io } = capture();
      expect(await main([input, "--from", first, "--model", model, "--lora-dir", empty, "-o", join(tmp, "never.png")], io)).toBe(1);
      expect(o.stderr).toMatch(
        /^reimagine: --from: the image was made with LoRA 'sd-tiny-lora' \[[0-9a-f]{12}\], which is in none of the LoRA folders \(.*empty\): put the file there/,
      );
    });

    it("the prompt-syntax img2img cases through the CLI: PNG within 1/255 of diffusers", async () => {
      const dir = fixture(SET, "prompt-syntax");
      const ps = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
      const tensors = SafetensorsFile.open(join(dir, "tensors.safetensors"));
      try {
        for (const c of ps.pipeline.cases) {
          const out = join(tmp, `ps-${c.id}.png`);
          await runCli(args({ ...referenceRunSettings(c), prompt: c.prompt, negativePrompt: c.negative_prompt }, out));
          expect(await worst(out, tensors.read(c.image.tensor))).toBeLessThanOrEqual(1);
        }
      } finally {
        tensors.close();
      }
    });

    it("an LCM-LoRA runs the LCM sampler with 8 steps and guidance 1 (metadata says so)", async () => {
      const lcm = join(tmp, "lcm-lora-tiny.safetensors");
      copyFileSync(join(loraDir, "sd-tiny-lora.diffusers.safetensors"), lcm);
      const out = join(tmp, "lcm.png");
      const r = await runCli([
        input,
        "--model",
        model,
        "-p",
        "a photo",
        "--strength",
        "0.5",
        "--seed",
        "1",
        "--threads",
        "1",
        "--lora",
        lcm,
        "--json",
        "-o",
        out,
      ]);
      expect(JSON.parse(r.stdout)).toMatchObject({ stepsRun: 4, steps: 8, guidanceScale: 1, sampler: "LCM" });
      expect(parseInfotext((await readImageParameters(out))!)).toMatchObject({
        sampler: "LCM",
        steps: 8,
        cfgScale: 1,
        prompt: "a photo <lora:lcm-lora-tiny:1>",
      });
    });
  },
  "sd-tiny-lora",
);
