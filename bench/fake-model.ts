// Writes the benchmark's SD 1.5 model (sd15.ts configs, RandomWeights(seed) values) as a diffusers
// folder, and a random TAESD folder beside it, so the real CLI (`reimagine <input> --model <folder>`)
// can be timed one process per image without a download. The tokenizer is a stand-in (every word
// maps to <|endoftext|>): token ids do not change timings.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Graph } from "../src/graph/builder.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "../src/models/clip-text.js";
import { buildTinyDecoder, buildTinyEncoder, resolveTinyVaeConfig } from "../src/models/taesd.js";
import { buildUNet2DConditionModel, resolveUNetConfig } from "../src/models/unet.js";
import { buildVaeDecoder, buildVaeEncoder, resolveVaeConfig } from "../src/models/vae.js";
import { openComponentWeights } from "../src/weights/diffusers.js";
import { RandomWeights } from "../src/weights/random.js";
import { writeSafetensors, type TensorToWrite } from "../src/weights/safetensors.js";
import type { WeightSource } from "../src/weights/source.js";
import { SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG, UNET_CONFIG, VAE_CONFIG } from "./sd15.js";

/** Bumped when the folder's layout or contents change (old folders are rewritten). */
const FORMAT = 1;
/** Shard size: bounds this writer's memory to about one shard of float32 values. */
const SHARD_BYTES = 512 * 2 ** 20;
export const TAESD_CONFIG = { _class_name: "AutoencoderTiny" };

/** RandomWeights that remembers the shape of every key read (to know what a model's files must hold). */
class KeyRecorder implements WeightSource {
  readonly synthetic = true;
  readonly description = "key recorder";
  readonly shapes = new Map<string, number[]>();
  keys = () => [...this.shapes.keys()];
  info = () => undefined;
  fingerprint = () => "recorder";
  read(key: string, shape: readonly number[]): Float32Array {
    this.shapes.set(key, [...shape]);
    return new Float32Array(shape.reduce((a, b) => a * b, 1)); // values unused: only the shape matters
  }
}

/** Every weight key and stored shape the graphs built by `builds` bind. */
function weightShapes(builds: ((w: WeightSource) => Graph)[]): Map<string, number[]> {
  const rec = new KeyRecorder();
  for (const build of builds) for (const p of build(rec).params) p.compute();
  return rec.shapes;
}

/** One component folder: config.json + float32 safetensors (sharded with an index when large). */
function writeComponent(dir: string, configName: string, config: unknown, shapes: Map<string, number[]>, weights: RandomWeights, stem: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, configName), JSON.stringify(config, null, 2));
  const shards: [string, number[]][][] = [[]];
  let bytes = 0;
  for (const entry of [...shapes].sort(([a], [b]) => a.localeCompare(b))) {
    const size = 4 * entry[1].reduce((a, b) => a * b, 1);
    if (bytes > 0 && bytes + size > SHARD_BYTES) {
      shards.push([]);
      bytes = 0;
    }
    shards[shards.length - 1].push(entry);
    bytes += size;
  }
  const names = shards.map((_, i) =>
    shards.length === 1 ? `${stem}.safetensors` : `${stem}-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`,
  );
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [key, shape] of shard) {
      tensors[key] = { dtype: "F32", shape, data: weights.read(key, shape) };
      weightMap[key] = names[i];
    }
    writeSafetensors(join(dir, names[i]), tensors);
  });
  if (shards.length > 1) writeFileSync(join(dir, `${stem}.safetensors.index.json`), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 1));
}

/** A tokenizer folder with only the special tokens (every word is unknown). */
function writeStandInTokenizer(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "vocab.json"), JSON.stringify({ "<|startoftext|>": 49406, "<|endoftext|>": 49407 }));
  writeFileSync(join(dir, "merges.txt"), "#version: 0.2\n");
  const max = TEXT_ENCODER_CONFIG.max_position_embeddings;
  writeFileSync(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({ model_max_length: max, bos_token: "<|startoftext|>", eos_token: "<|endoftext|>", unk_token: "<|endoftext|>", pad_token: "<|endoftext|>" }),
  );
}

/**
 * Writes (once) `<root>/sd15-random-<seed>/` (diffusers layout) and `<root>/taesd-random-<seed>/` and
 * returns their paths. About 4.3 GB of float32 weights; a finished folder is reused.
 *
 * @example const { model, tinyVae } = writeRandomModels("/tmp/bench-models", 0);
 */
export function writeRandomModels(root: string, seed: number, log: (m: string) => void = () => undefined): { model: string; tinyVae: string } {
  const model = join(root, `sd15-random-${seed}-v${FORMAT}`);
  const tinyVae = join(root, `taesd-random-${seed}-v${FORMAT}`);
  const weights = new RandomWeights(seed);
  const once = (dir: string, write: (tmp: string) => void) => {
    if (existsSync(dir)) return;
    log(`writing ${dir}`);
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    write(tmp);
    renameSync(tmp, dir);
  };
  once(model, (tmp) => {
    const unet = resolveUNetConfig(UNET_CONFIG);
    const vae = resolveVaeConfig(VAE_CONFIG);
    const te = resolveCLIPTextConfig(TEXT_ENCODER_CONFIG);
    writeComponent(
      join(tmp, "unet"),
      "config.json",
      UNET_CONFIG,
      weightShapes([(w) => buildUNet2DConditionModel(w, unet)]),
      weights,
      "diffusion_pytorch_model",
    );
    writeComponent(
      join(tmp, "vae"),
      "config.json",
      VAE_CONFIG,
      weightShapes([(w) => buildVaeEncoder(w, vae), (w) => buildVaeDecoder(w, vae)]),
      weights,
      "diffusion_pytorch_model",
    );
    writeComponent(join(tmp, "text_encoder"), "config.json", TEXT_ENCODER_CONFIG, weightShapes([(w) => buildCLIPTextModel(w, te)]), weights, "model");
    mkdirSync(join(tmp, "scheduler"));
    writeFileSync(join(tmp, "scheduler", "scheduler_config.json"), JSON.stringify(SCHEDULER_CONFIG, null, 2));
    writeStandInTokenizer(join(tmp, "tokenizer"));
    writeFileSync(
      join(tmp, "model_index.json"),
      JSON.stringify({
        _class_name: "StableDiffusionPipeline",
        _diffusers_version: "0.6.0",
        scheduler: ["diffusers", "PNDMScheduler"],
        text_encoder: ["transformers", "CLIPTextModel"],
        tokenizer: ["transformers", "CLIPTokenizer"],
        unet: ["diffusers", "UNet2DConditionModel"],
        vae: ["diffusers", "AutoencoderKL"],
      }),
    );
  });
  once(tinyVae, (tmp) => {
    const cfg = resolveTinyVaeConfig(TAESD_CONFIG);
    writeComponent(
      tmp,
      "config.json",
      TAESD_CONFIG,
      weightShapes([(w) => buildTinyEncoder(w, cfg), (w) => buildTinyDecoder(w, cfg)]),
      weights,
      "diffusion_pytorch_model",
    );
  });
  return { model, tinyVae };
}

/** The benchmark model's weight sources, read from the folders writeRandomModels writes (so every row,
 *  the CLI included, uses the same files and the same cached graphs). */
export interface BenchWeights {
  folders: { model: string; tinyVae: string };
  unet: WeightSource;
  vae: WeightSource;
  text_encoder: WeightSource;
  taesd: WeightSource;
}

/** Writes the bench model under `<cacheDir>/bench-models` when absent and opens its weights. */
export function benchWeights(cacheDir: string, seed: number, log?: (m: string) => void): BenchWeights {
  const folders = writeRandomModels(join(cacheDir, "bench-models"), seed, log);
  const c = (name: string) => openComponentWeights(join(folders.model, name));
  return { folders, unet: c("unet"), vae: c("vae"), text_encoder: c("text_encoder"), taesd: openComponentWeights(folders.tinyVae) };
}
