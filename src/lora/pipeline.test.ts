// LoRAs and A1111 prompt syntax through Img2ImgPipeline.run on sd-tiny, from the seed: every sd-tiny-lora pipeline
// case with both file formats (final latents atol 5e-4, image atol 2e-4: the fixture's pipeline tolerances), the
// <lora:...> tag case, every img2img case of the prompt-syntax fixture; plain runs load no LoRA graph, switching
// LoRAs or weights builds none and a run without LoRA afterwards equals the plain run bit for bit; LCM-LoRA as a
// few-step mode (also from a hub repo on a fake hub); textual inversion from an embedding folder; bad LoRA input as
// one-line errors.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startFakeHub } from "../../test/fake-hub.js";
import { describeWithFixtures, fixture, loadReferenceJson, maxAbsDiff, referenceRunSettings, referenceTensor } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { loadImage, type RGBImage, tensorToFloatHWC } from "../image.js";
import type { Img2ImgPipeline, Img2ImgResult } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { createScheduler, img2imgTimesteps } from "../schedulers/index.js";
import { SafetensorsFile, writeSafetensors } from "../weights/safetensors.js";

const SET = "sd-tiny-lora";

describeWithFixtures(
  "LoRA and prompt syntax in the pipeline (sd-tiny + sd-tiny-lora)",
  () => {
    const ref = loadReferenceJson(SET);
    const tol = ref.tolerances;
    const loraDir = fixture(SET, "lora");
    const files: Record<string, string> = { kohya: join(loraDir, "sd-tiny-lora.safetensors"), diffusers: join(loraDir, "sd-tiny-lora.diffusers.safetensors") };
    const tmp = mkdtempSync(join(tmpdir(), "reimagine-lora-pipe-"));
    const cacheDir = join(tmp, "graphs");
    let pipe: Img2ImgPipeline;
    let image: RGBImage;
    let plain: Img2ImgResult;
    const base = (c: any) => ({ ...referenceRunSettings(c), image });
    const graphFiles = () => readdirSync(cacheDir, { recursive: true }).length;
    const expectCase = (r: Img2ImgResult, c: any, tensor: (t: { tensor: string }) => Float32Array, t = tol) => {
      expect(maxAbsDiff(r.latents!, tensor(c.final_latents))).toBeLessThan(t["pipeline.final_latents"].atol);
      const [, H, W] = c.image.shape;
      expect(maxAbsDiff(tensorToFloatHWC(r.decoded!, W, H, 0), tensor(c.image))).toBeLessThan(t["pipeline.image"].atol);
    };
    const caseById = (id: string) => ref.pipeline.cases.find((c: any) => c.id === id);
    beforeAll(async () => {
      pipe = await loadPipeline(fixture("sd-tiny", "model"), { cacheDir, threads: 1 });
      image = await loadImage(fixture("sd-tiny", "reference", "input.png"));
    });
    afterAll(async () => {
      await pipe?.model.release();
      rmSync(tmp, { recursive: true, force: true });
    });

    it("a run without LoRA keeps the plain graphs", async () => {
      plain = await pipe.run(base(caseById("lora1.0")));
      expect(pipe.model.unetInputNames.some((n) => n.endsWith(".lora_down"))).toBe(false);
      expect(pipe.model.components.text_encoder!.session.inputNames).toEqual(["input_ids"]);
      expect(plain.extraGenerationParams).toBeUndefined();
    });

    for (const c of ref.pipeline.cases as any[]) {
      for (const format of ["kohya", "diffusers"]) {
        it(`case ${c.id} with the ${format} file, from the seed`, async () => {
          const r = await pipe.run({ ...base(c), loras: [{ path: files[format], weight: c.lora.multiplier }] });
          expectCase(r, c, (t) => referenceTensor(t, SET).data);
          expect(r.extraGenerationParams?.["Lora hashes"]).toMatch(
            new RegExp(`^${format === "kohya" ? "sd-tiny-lora" : "sd-tiny-lora\\.diffusers"}: [0-9a-f]{12}$`),
          );
        });
      }
    }

    it("the <lora:sd-tiny-lora:0.8> tag case equals case lora0.8 (name found in the LoRA folder)", async () => {
      const tag = ref.tag_syntax.pipeline_case;
      const c = caseById("lora0.8");
      const r = await pipe.run({ ...base(c), prompt: tag.prompt_with_tags, negativePrompt: tag.negative_prompt, loraDirs: [loraDir] });
      expectCase(r, c, (t) => referenceTensor(t, SET).data);
    });

    it("switching LoRAs and weights builds no graph; a run without LoRA afterwards equals the plain run bit for bit", async () => {
      const before = graphFiles();
      const c = caseById("lora1.0");
      const a = await pipe.run({ ...base(c), loras: [{ path: files.kohya, weight: 0.3 }] });
      const b = await pipe.run({
        ...base(c),
        loras: [
          { path: files.kohya, teWeight: 0.3, unetWeight: -0.5 },
          { path: files.diffusers, weight: 0.2 },
        ],
      });
      const none = await pipe.run(base(c));
      const zero = await pipe.run({ ...base(c), loras: [{ path: files.kohya, weight: 0 }] });
      expect(graphFiles()).toBe(before);
      expect(maxAbsDiff(a.latents!, b.latents!)).toBeGreaterThan(1e-3);
      expect(none.latents).toEqual(plain.latents);
      expect(none.decoded).toEqual(plain.decoded);
      expect(zero.latents).toEqual(plain.latents);
      expect(pipe.model.unetInputNames.some((n) => n.endsWith(".lora_down"))).toBe(true); // the slot graphs stayed
    });

    it("every img2img case of the prompt-syntax fixture, from the seed", async () => {
      const dir = fixture(SET, "prompt-syntax");
      const ps = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8"));
      const tensors = SafetensorsFile.open(join(dir, "tensors.safetensors"));
      try {
        expect(ps.pipeline.cases.length).toBe(3);
        for (const c of ps.pipeline.cases) {
          const s = referenceRunSettings(c);
          const r = await pipe.run({ ...s, image, prompt: c.prompt, negativePrompt: c.negative_prompt });
          expectCase(r, c, (t) => tensors.read(t.tensor), ps.tolerances);
        }
      } finally {
        tensors.close();
      }
    });

    it('prompt syntax "none" keeps brackets and tags as text; unbalanced brackets run as A1111 reads them', async () => {
      const c = caseById("lora1.0");
      const run = (prompt: string, promptSyntax?: "a1111" | "none") => pipe.run({ ...base(c), prompt, promptSyntax, loraDirs: [loraDir] });
      const literal = await run("a (red:1.3) house <lora:nowhere:1>", "none"); // no tag lookup
      const weighted = await run("a (red:1.3) house");
      expect(maxAbsDiff(literal.latents!, weighted.latents!)).toBeGreaterThan(1e-3);
      const unbalanced = await run("a (red house [with a garden");
      expect(unbalanced.latents!.every(Number.isFinite)).toBe(true);
    });

    it("an LCM-LoRA without a sampler runs the LCM sampler with 8 steps and guidance 1", async () => {
      const lcm = join(tmp, "lcm-lora-tiny.safetensors");
      copyFileSync(files.diffusers, lcm);
      const seen: number[] = [];
      const r = await pipe.run({ image, prompt: "a photo", strength: 0.5, seed: 1, loras: [{ path: lcm }], onProgress: (e) => seen.push(e.timestep) });
      const want = img2imgTimesteps(createScheduler("lcm", pipe.model.schedulerConfig), 8, 0.5).timesteps;
      expect(seen).toEqual([...want]);
      expect(r.stepsRun).toBe(4);
      // explicit settings win
      const seen2: number[] = [];
      await pipe.run({
        image,
        prompt: "a photo",
        strength: 0.5,
        seed: 1,
        steps: 4,
        sampler: "ddim",
        loras: [{ path: lcm }],
        onProgress: (e) => seen2.push(e.timestep),
      });
      expect(seen2).toEqual([...img2imgTimesteps(createScheduler("ddim", pipe.model.schedulerConfig), 4, 0.5).timesteps]);
    });

    it("a hub repo holding one LoRA (fake hub on 127.0.0.1) is downloaded once and used as the file", async () => {
      const repo = join(tmp, "repo");
      mkdirSync(repo);
      copyFileSync(files.diffusers, join(repo, "pytorch_lora_weights.safetensors"));
      writeFileSync(join(repo, "README.md"), "# tiny LCM-LoRA\n");
      const hub = await startFakeHub({ repos: { "latent-consistency/lcm-lora-tiny": { dir: repo } } });
      const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE };
      process.env.HF_ENDPOINT = hub.url;
      process.env.HF_HUB_CACHE = join(tmp, "hub");
      try {
        const opts = { image, prompt: "a photo", strength: 0.5, seed: 3 };
        const viaHub = await pipe.run({ ...opts, loras: [{ path: "latent-consistency/lcm-lora-tiny", weight: 0.7 }] });
        const viaFile = await pipe.run({ ...opts, sampler: "lcm", steps: 8, guidanceScale: 1, loras: [{ path: files.diffusers, weight: 0.7 }] });
        expect(viaHub.latents).toEqual(viaFile.latents); // the LCM mode came from the repo's name
        expect(viaHub.extraGenerationParams?.["Lora hashes"]).toBe(
          viaFile.extraGenerationParams?.["Lora hashes"]?.replace("sd-tiny-lora.diffusers", "latent-consistency/lcm-lora-tiny"),
        );
        expect(hub.requests.filter((q) => q.includes("pytorch_lora_weights")).length).toBeGreaterThan(0);
        const requests = hub.requests.length;
        await pipe.run({ ...opts, loras: [{ path: "latent-consistency/lcm-lora-tiny" }] });
        expect(hub.requests.slice(requests).some((q) => q.startsWith("GET /latent-consistency/lcm-lora-tiny/resolve"))).toBe(false); // cached
      } finally {
        await hub.close();
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      }
    });

    it("textual inversion: an embedding in the embedding folder, named in the prompt, encodes as the words it holds", async () => {
      // its vectors are the token embeddings of "cyberpunk version": the same conditioning as those words, bit for bit
      const te = pipe.model.components.text_encoder!;
      const D = te.config.hidden_size;
      const table = te.weights.read("text_model.embeddings.token_embedding.weight", [te.config.vocab_size, D]);
      const ids = te.tokenizer.encode("cyberpunk version");
      const emb = new Float32Array(ids.length * D);
      for (const [i, id] of ids.entries()) emb.set(table.subarray(id * D, (id + 1) * D), i * D);
      const dir = join(tmp, "embeddings");
      mkdirSync(dir);
      writeSafetensors(join(dir, "neonstyle.safetensors"), { emb_params: { dtype: "F32", shape: [ids.length, D], data: emb } });
      writeSafetensors(join(dir, "xl-style.safetensors"), {
        clip_l: { dtype: "F32", shape: [1, 768], data: new Float32Array(768) },
        clip_g: { dtype: "F32", shape: [1, 1280], data: new Float32Array(1280) },
      }); // another family: skipped
      const c = caseById("lora1.0");
      const withTi = await pipe.run({ ...base(c), prompt: "a (neonstyle:1.2) of this photo", embeddingDirs: [dir] });
      const words = await pipe.run({ ...base(c), prompt: "a (cyberpunk version:1.2) of this photo", embeddingDirs: [dir] });
      expect(te.session.inputNames).toContain("extra_token_embeddings");
      expect(withTi.latents).toEqual(words.latents);
      const sha = createHash("sha256")
        .update(readFileSync(join(dir, "neonstyle.safetensors")))
        .digest("hex");
      expect(withTi.extraGenerationParams).toEqual({ "TI hashes": `neonstyle: ${sha.slice(0, 12)}` });
      expect(words.extraGenerationParams).toBeUndefined();
      // "none" reads the name as text
      const literal = await pipe.run({ ...base(c), prompt: "a (neonstyle:1.2) of this photo", embeddingDirs: [dir], promptSyntax: "none" });
      expect(maxAbsDiff(literal.latents!, withTi.latents!)).toBeGreaterThan(1e-4);
    });

    it("bad LoRA input: one-line errors that say what to do", async () => {
      const run = (o: object) => pipe.run({ image, prompt: "a photo", strength: 0.5, steps: 4, seed: 1, loraDirs: [loraDir], ...o });
      const oneLine = async (o: object, re: RegExp) => {
        const e = await run(o).then(
          () => undefined,
          (x) => x,
        );
        expect(e).toBeInstanceOf(ReimagineError);
        expect(e.message).toMatch(re);
        expect(e.message).not.toContain("\n");
      };
      await oneLine({ prompt: "a photo <lora:sd-tiny-lor:0.8>" }, /no LoRA named 'sd-tiny-lor' .*did you mean 'sd-tiny-lora'/);
      await oneLine({ loras: [{ name: "sd-tiny-lora.diffuser" }] }, /did you mean 'sd-tiny-lora\.diffusers'/);
      await oneLine({ prompt: "a photo <lora:sd-tiny-lora:strong>" }, /weight 'strong' is not a number/);
      await oneLine({ loras: [{ path: files.kohya, weight: Number.NaN }] }, /weight must be a number/);
      await oneLine({ loras: [{ path: join(tmp, "missing.safetensors") }] }, /LoRA file not found/);
      const corrupt = join(tmp, "corrupt.safetensors");
      writeFileSync(corrupt, "this is not a safetensors file at all, just text");
      await oneLine({ loras: [{ path: corrupt }] }, /corrupt\.safetensors/);
      const xl = join(tmp, "sdxl-style.safetensors"); // text_encoder_2 keys: an SDXL LoRA
      writeSafetensors(xl, {
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": { dtype: "F32", shape: [2, 1280], data: new Float32Array(2560) },
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": { dtype: "F32", shape: [1280, 2], data: new Float32Array(2560) },
      });
      await oneLine({ loras: [{ path: xl }] }, /made for another model family/);
    });
  },
  SET,
);
