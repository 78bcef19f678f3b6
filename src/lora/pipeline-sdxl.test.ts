// LoRAs and A1111 prompt syntax through the SDXL pipeline on sdxl-tiny (no reference numbers for them there): plain
// prompts give diffusers' encode_prompt bits (both encoders' hidden_states[-(k+2)] side by side, text_encoder_2's
// pooled text_embeds, zeros or "" for the negative) before and after the switch to LoRA-slot graphs; a random LoRA
// (UNet + both text encoders) at weight 0 equals no LoRA bit for bit and changes the image at 0.8; an emphasised and a
// two-chunk prompt run; with a refiner the LoRA applies to the base run only and its hashes stay; a textual-inversion embedding (clip_l + clip_g) encodes as the words it holds.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithFixtures, fixture, maxAbsDiff } from "../../test/fixtures.js";
import { loadImage, type RGBImage } from "../image.js";
import type { Img2ImgPipeline, Img2ImgResult } from "../pipeline/img2img.js";
import { loadPipeline } from "../pipeline/load.js";
import { runWithRefiner } from "../pipeline/refiner.js";
import { hiddenLayer, runTextEncoder } from "../pipeline/text-encoding.js";
import { type TensorToWrite, writeSafetensors } from "../weights/safetensors.js";
import { LORA_COMPONENTS } from "./file.js";
import { modelModules } from "./names.js";

const SET = "sdxl-tiny";

describeWithFixtures(
  "LoRA and prompt syntax in the SDXL pipeline (sdxl-tiny)",
  () => {
    const tmp = mkdtempSync(join(tmpdir(), "reimagine-lora-xl-pipe-"));
    const loraPath = join(tmp, "xl-random.safetensors");
    let pipe: Img2ImgPipeline;
    let image: RGBImage;
    let plain: Img2ImgResult;
    const settings = { prompt: "a cyberpunk version of this photo", negativePrompt: "blurry", strength: 0.6, steps: 10, guidanceScale: 5, seed: 42 };

    /** diffusers' SDXL encode_prompt for one prompt pair (what step 3 computed before prompt syntax existed). */
    const diffusersEncode = async (prompt: string, layer: number) => {
      const parts: Float32Array[] = [];
      let pooled: Float32Array | undefined;
      for (const name of ["text_encoder", "text_encoder_2"] as const) {
        const te = pipe.model.components[name]!;
        const out = await (te.session.inputNames.length > 1
          ? te.session.run({
              input_ids: {
                data: BigInt64Array.from(te.tokenizer.call(prompt, { maxLength: 77, padding: "max_length", truncation: true }).inputIds, BigInt),
                dims: [1, 77],
              },
              ...rank0(name),
            })
          : runTextEncoder(te, prompt));
        if (out.text_embeds) pooled = out.text_embeds.data as Float32Array;
        parts.push(hiddenLayer(out.hidden_states, layer));
      }
      const [a, b] = parts;
      const [D1, D2] = [a.length / 77, b.length / 77];
      const embeds = new Float32Array(77 * (D1 + D2)); // torch.concat(prompt_embeds_list, dim=-1)
      for (let t = 0; t < 77; t++) {
        embeds.set(a.subarray(t * D1, (t + 1) * D1), t * (D1 + D2));
        embeds.set(b.subarray(t * D2, (t + 1) * D2), t * (D1 + D2) + D1);
      }
      return { embeds, pooled: pooled! };
    };
    /** Rank-0 slot feeds of a text encoder built with LoRA slots (its inputs say which ones). */
    const rank0 = (name: "text_encoder" | "text_encoder_2") => {
      const te = pipe.model.components[name]!;
      const feeds: Record<string, { data: Float32Array; dims: number[] }> = {};
      for (const n of te.session.inputNames.filter((x) => x.endsWith(".lora_down"))) {
        const module = n.slice(0, -".lora_down".length);
        const [out, inF] = te.weights.info(`${module}.weight`)!.shape;
        feeds[n] = { data: new Float32Array(0), dims: [inF, 0] };
        feeds[`${module}.lora_up`] = { data: new Float32Array(0), dims: [0, out] };
      }
      return feeds;
    };
    const checkPlainPrompts = async () => {
      for (const promptSyntax of ["a1111", "none"] as const) {
        for (const clipSkip of [0, 1]) {
          for (const negativePrompt of [undefined, "", "blurry, low quality"]) {
            const c = await pipe.encodePrompt({
              prompt: settings.prompt,
              negativePrompt,
              clipSkip,
              cfg: true,
              numImages: 1,
              height: 64,
              width: 64,
              promptSyntax,
            });
            const pos = await diffusersEncode(settings.prompt, -(clipSkip + 2));
            const neg = negativePrompt === undefined ? undefined : await diffusersEncode(negativePrompt, -2);
            const ehs = c.unetInputs.encoder_hidden_states as { data: Float32Array; dims: number[] };
            expect(ehs.dims).toEqual([2, 77, pos.embeds.length / 77]);
            expect(Array.from(ehs.data.subarray(pos.embeds.length))).toEqual(Array.from(pos.embeds));
            expect(Array.from(ehs.data.subarray(0, pos.embeds.length))).toEqual(Array.from(neg?.embeds ?? new Float32Array(pos.embeds.length)));
            const pooled = c.unetInputs.text_embeds.data as Float32Array;
            expect(Array.from(pooled.subarray(pos.pooled.length))).toEqual(Array.from(pos.pooled));
            expect(Array.from(pooled.subarray(0, pos.pooled.length))).toEqual(Array.from(neg?.pooled ?? new Float32Array(pos.pooled.length)));
          }
        }
      }
    };

    beforeAll(async () => {
      pipe = await loadPipeline(fixture(SET, "model"), { cacheDir: join(tmp, "graphs"), threads: 1 });
      image = await loadImage(fixture(SET, "reference", "input.png"));
      // a random diffusers-format LoRA: attention/resnet layers of the UNet, every encoder layer of both text encoders
      let seed = 11;
      const next = () => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        return seed / 2 ** 31 - 1;
      };
      const tensors: Record<string, TensorToWrite> = {};
      const weights = {
        unet: pipe.model.unetWeights,
        text_encoder: pipe.model.components.text_encoder!.weights,
        text_encoder_2: pipe.model.components.text_encoder_2!.weights,
      };
      for (const c of LORA_COMPONENTS) {
        for (const [m, shape] of modelModules(weights[c])) {
          if (!(c === "unet" ? /\.(attentions|resnets)\./.test(m) : m.includes(".encoder.layers."))) continue;
          const [out, inF] = shape;
          const k = shape.length === 4 ? shape[2] : 1;
          const rank = 2;
          const down = Float32Array.from({ length: rank * inF * k * k }, () => next() / Math.sqrt(inF * k * k));
          const up = Float32Array.from({ length: out * rank }, () => next() * 0.5);
          tensors[`${c}.${m}.lora_A.weight`] = { dtype: "F32", shape: shape.length === 4 ? [rank, inF, k, k] : [rank, inF], data: down };
          tensors[`${c}.${m}.lora_B.weight`] = { dtype: "F32", shape: shape.length === 4 ? [out, rank, 1, 1] : [out, rank], data: up };
        }
      }
      writeSafetensors(loraPath, tensors);
    });
    afterAll(async () => {
      await pipe?.model.release();
      rmSync(tmp, { recursive: true, force: true });
    });

    it("plain prompts give diffusers' encode_prompt bits (either syntax, clip skip 0 and 1, every negative)", async () => {
      plain = await pipe.run({ ...settings, image });
      await checkPlainPrompts();
    });

    it("a LoRA at weight 0 equals no LoRA bit for bit; at 0.8 it changes the image; without it again: the plain bits", async () => {
      const zero = await pipe.run({ ...settings, image, loras: [{ path: loraPath, weight: 0 }] });
      expect(pipe.model.unetInputNames.some((n) => n.endsWith(".lora_down"))).toBe(true);
      expect(pipe.model.components.text_encoder_2!.session.inputNames.some((n) => n.endsWith(".lora_down"))).toBe(true);
      expect(zero.latents).toEqual(plain.latents);
      expect(zero.decoded).toEqual(plain.decoded);
      const on = await pipe.run({ ...settings, image, loras: [{ path: loraPath, weight: 0.8 }] });
      expect(maxAbsDiff(on.latents!, plain.latents!)).toBeGreaterThan(1e-3);
      expect(on.extraGenerationParams?.["Lora hashes"]).toMatch(/^xl-random: [0-9a-f]{12}$/);
      const teOnly = await pipe.run({ ...settings, image, loras: [{ path: loraPath, teWeight: 0.8, unetWeight: 0 }] });
      expect(maxAbsDiff(teOnly.latents!, plain.latents!)).toBeGreaterThan(1e-4);
      expect((await pipe.run({ ...settings, image })).latents).toEqual(plain.latents);
      await checkPlainPrompts(); // the slot text encoders at rank 0
    });

    it("an emphasised prompt and a two-chunk prompt (with a tag) run; emphasis changes the conditioning", async () => {
      const emph = await pipe.run({ ...settings, image, prompt: "a (cyberpunk:1.4) version of this [photo]" });
      expect(maxAbsDiff(emph.latents!, plain.latents!)).toBeGreaterThan(1e-4);
      const long = `${Array.from({ length: 90 }, (_, i) => ["cat", "dog", "tree", "house", "red", "blue", "sky"][i % 7]).join(" ")} <lora:xl-random:0.5>`;
      const c = await pipe.encodePrompt({ prompt: long, clipSkip: 0, cfg: true, numImages: 1, height: 64, width: 64, loraDirs: [tmp] });
      expect(c.unetInputs.encoder_hidden_states.dims.slice(0, 2)).toEqual([2, 154]); // negative zeros padded to the prompt's 2 chunks
      const r = await pipe.run({ ...settings, image, prompt: long, loraDirs: [tmp] });
      expect(r.latents!.every(Number.isFinite)).toBe(true);
      expect(r.extraGenerationParams?.["Lora hashes"]).toMatch(/^xl-random: /);
    });

    it("with a refiner the LoRAs (tags and options) apply to the base run only; Lora hashes are kept", async () => {
      const tagged = { ...settings, image, prompt: `${settings.prompt} <lora:xl-random:0.8>`, loraDirs: [tmp] };
      const split = await runWithRefiner(pipe, pipe, tagged, 0.5);
      const first = await pipe.run({ ...tagged, denoisingEnd: 0.5, outputType: "latent" });
      const second = await pipe.run({
        ...settings,
        prompt: `${settings.prompt} `,
        image: { latents: first.latents!, dims: first.latentDims! },
        denoisingStart: 0.5,
      });
      expect(split.latents).toEqual(second.latents);
      const unLora = await pipe.run({ ...tagged, image: { latents: first.latents!, dims: first.latentDims! }, denoisingStart: 0.5 });
      expect(maxAbsDiff(unLora.latents!, second.latents!)).toBeGreaterThan(1e-4); // the LoRA would have changed it
      expect(split.extraGenerationParams?.["Lora hashes"]).toMatch(/^xl-random: [0-9a-f]{12}$/);
    });

    it("textual inversion: an SDXL embedding (clip_l, clip_g) named in the prompt encodes as the words it holds", async () => {
      // its vectors are each encoder's token embeddings of "cyberpunk version": the same conditioning as those words
      const words = "cyberpunk version";
      const vectors = (name: "text_encoder" | "text_encoder_2") => {
        const te = pipe.model.components[name]!;
        const D = te.config.hidden_size;
        const table = te.weights.read("text_model.embeddings.token_embedding.weight", [te.config.vocab_size, D]);
        const ids = te.tokenizer.encode(words);
        const data = new Float32Array(ids.length * D);
        for (const [i, id] of ids.entries()) data.set(table.subarray(id * D, (id + 1) * D), i * D);
        return { dtype: "F32" as const, shape: [ids.length, D], data };
      };
      const dir = join(tmp, "embeddings");
      mkdirSync(dir);
      writeSafetensors(join(dir, "neonstyle.safetensors"), { clip_l: vectors("text_encoder"), clip_g: vectors("text_encoder_2") });
      writeSafetensors(join(dir, "sd15-style.safetensors"), { emb_params: { dtype: "F32", shape: [1, 768], data: new Float32Array(768) } }); // skipped
      const withTi = await pipe.run({ ...settings, image, prompt: "a (neonstyle:1.2) of this photo", embeddingDirs: [dir] });
      const asWords = await pipe.run({ ...settings, image, prompt: `a (${words}:1.2) of this photo`, embeddingDirs: [dir] });
      for (const name of ["text_encoder", "text_encoder_2"] as const) {
        expect(pipe.model.components[name]!.session.inputNames).toContain("extra_token_embeddings");
      }
      expect(withTi.latents).toEqual(asWords.latents);
      expect(withTi.extraGenerationParams?.["TI hashes"]).toMatch(/^neonstyle: [0-9a-f]{12}$/);
      expect(maxAbsDiff(withTi.latents!, plain.latents!)).toBeGreaterThan(1e-4);
      // the switched encoders (LoRA slots and extra rows) still give the plain bits for a plain prompt
      expect((await pipe.run({ ...settings, image, embeddingDirs: [dir] })).latents).toEqual(plain.latents);
    });
  },
  SET,
);
