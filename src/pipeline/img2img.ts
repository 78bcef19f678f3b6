// Img2ImgPipeline: input image + prompt + strength -> image, computed exactly as diffusers'
// StableDiffusionImg2ImgPipeline (Ref: pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py).
// Steps are numbered as in diffusers' __call__. Random draws follow its order on one
// torch-compatible generator: VAE posterior sample, add_noise noise, then one per step.
import { check } from "../errors.js";
import { defaultSize, imageToTensor, latentPreview, loadImage, type ResizeMode, resizeImage, type RGBImage, tensorToImage } from "../image.js";
import { TorchGenerator, normalizeSeed } from "../rng.js";
import { createScheduler, img2imgTimesteps, schedulerForModel } from "../schedulers/index.js";
import type { Scheduler } from "../schedulers/scheduler.js";
import type { StableDiffusionModel } from "./components.js";
import { decodeTiles, encodeTiles, type Tensor4, tiledDecode, tiledEncode, tilingWanted, vaeTilingFor, type VaeTilingMode, VAE_TILING_MODES } from "./vae-tiling.js";

export interface ProgressEvent {
  /** 1-based step just finished, out of `total` denoising steps. */
  step: number;
  total: number;
  timestep: number;
  /** Index of the image batch (several images per prompt run as one batch). */
  elapsedMs: number;
  /** Cheap latent->RGB preview (latent resolution) of the first image. */
  preview: () => RGBImage;
  /** Full-resolution preview of the first image decoded by the tiny VAE (TAESD) when one is loaded,
   *  else the same as preview(). */
  previewDecoded: () => Promise<RGBImage>;
}

export interface Img2ImgOptions {
  /** Input picture: a decoded image, a file path or encoded bytes. */
  image: RGBImage | string | Buffer;
  prompt: string;
  negativePrompt?: string;
  /** Denoising strength in [0, 1]: 0 returns the input, 1 ignores it (text-to-image). Default 0.75. */
  strength?: number;
  /** Scheduler steps for strength 1; img2img runs about steps x strength of them. Default 50. */
  steps?: number;
  /** Classifier-free guidance scale; <= 1 disables the unconditional branch. Default 7.5. */
  guidanceScale?: number;
  /** Seed of the torch-compatible generator; -1/undefined picks a random one (reported in the result). */
  seed?: number | bigint;
  /** Sampler name (`euler-a`, `DPM++ 2M Karras`, ...); default: the model's scheduler_config.json. */
  sampler?: string;
  /** CLIP skip: 0 = last layer (default), 1 = penultimate, ... */
  clipSkip?: number;
  /** Images generated for the prompt (one batch, one generator). Default 1. */
  numImages?: number;
  /** DDIM eta (only DDIM uses it). Default 0. */
  eta?: number;
  /** Output size; default the input size rounded down to multiples of the VAE factor. */
  width?: number;
  height?: number;
  resizeMode?: ResizeMode;
  /** Background for transparent inputs (sketches), default white. */
  background?: string;
  onProgress?: (e: ProgressEvent) => void;
  /** Aborting stops the run within one step with an AbortError; nothing is returned. */
  signal?: AbortSignal;
  /** Test hook: pre-drawn noise tensors replace generator draws, in order. */
  draws?: Float32Array[];
  /** Tiled VAE (diffusers enable_tiling(): overlapping tiles, blended seams) to bound memory on large
   *  images: "auto" (default) tiles above 1024x1024 pixels, "on" always (as diffusers), "off" never. */
  vaeTiling?: VaeTilingMode;
}

export interface Img2ImgResult {
  images: RGBImage[];
  seed: number | bigint;
  width: number;
  height: number;
  /** Denoising steps actually run (about steps x strength). */
  stepsRun: number;
  /** Final latents [N, C, h, w] (before decoding); absent for strength 0. */
  latents?: Float32Array;
  /** Decoded float image NCHW in [-1, 1] before 8-bit conversion; absent for strength 0. */
  decoded?: Float32Array;
  timings: { encodePromptMs: number; encodeImageMs: number; denoiseMs: number; decodeMs: number; totalMs: number };
}

/** Draws noise from the generator, or replays injected draws (tests). */
class NoiseSource {
  private next = 0;
  constructor(
    private readonly generator: TorchGenerator,
    private readonly draws?: Float32Array[],
  ) {}
  randn(shape: readonly number[]): Float32Array {
    if (this.draws) {
      const d = this.draws[this.next++];
      if (!d) throw new Error("injected draws exhausted");
      return d;
    }
    return this.generator.randn(shape);
  }
}

function abortIfNeeded(signal?: AbortSignal): void {
  if (signal?.aborted) {
    const e = new Error("generation cancelled");
    e.name = "AbortError";
    throw e;
  }
}

export class Img2ImgPipeline {
  private readonly embedCache = new Map<string, Float32Array>();

  constructor(
    readonly model: StableDiffusionModel,
    /** Defaults for options a run leaves out (steps, guidance, strength). */
    readonly defaults: { steps: number; guidanceScale: number; strength: number } = { steps: 50, guidanceScale: 7.5, strength: 0.8 },
  ) {}

  /**
   * Loads a model (diffusers folder, .safetensors checkpoint or hub repo id).
   * @example const pipe = await Img2ImgPipeline.fromPretrained("stabilityai/sd-turbo");
   */
  static async fromPretrained(ref?: string, opts?: import("./load.js").LoadPipelineOptions): Promise<Img2ImgPipeline> {
    const { loadPipeline } = await import("./load.js");
    return loadPipeline(ref, opts);
  }

  get modelName(): string {
    return this.model.name;
  }
  get modelHash(): string {
    return this.model.hash;
  }

  /** The scheduler a run would use (the model's own, or `sampler` from its config). */
  scheduler(sampler?: string): Scheduler {
    return sampler ? createScheduler(sampler, this.model.schedulerConfig) : schedulerForModel(this.model.schedulerConfig);
  }

  /**
   * Runs img2img.
   * @example
   * const pipe = await Img2ImgPipeline.fromPretrained("stabilityai/sd-turbo");
   * const { images, seed } = await pipe.run({ image: "photo.png", prompt: "a watercolor painting", strength: 0.5, steps: 2, guidanceScale: 0 });
   */
  async run(opts: Img2ImgOptions): Promise<Img2ImgResult> {
    const t0 = performance.now();
    const strength = opts.strength ?? this.defaults.strength;
    const steps = opts.steps ?? this.defaults.steps;
    const guidance = opts.guidanceScale ?? this.defaults.guidanceScale;
    const numImages = opts.numImages ?? 1;
    const clipSkip = opts.clipSkip ?? 0;
    // 1. check inputs
    check(Number.isFinite(strength) && strength >= 0 && strength <= 1, `strength must be between 0 and 1 (got ${strength}): use e.g. --strength 0.5`);
    check(Number.isInteger(steps) && steps >= 1, `steps must be a whole number >= 1 (got ${steps})`);
    check(Number.isFinite(guidance), `guidance scale must be a number (got ${guidance})`);
    check(Number.isInteger(numImages) && numImages >= 1 && numImages <= 64, `number of images must be 1..64 (got ${numImages})`);
    check(Number.isInteger(clipSkip) && clipSkip >= 0 && clipSkip < this.model.textEncoderConfig.num_hidden_layers, `clip skip must be 0..${this.model.textEncoderConfig.num_hidden_layers - 1} (got ${clipSkip})`);
    const tilingMode = opts.vaeTiling ?? "auto";
    check(VAE_TILING_MODES.includes(tilingMode), `vaeTiling must be one of ${VAE_TILING_MODES.join(", ")} (got ${tilingMode})`);
    const seed = normalizeSeed(opts.seed);
    const scheduler = this.scheduler(opts.sampler); // validates the sampler name early

    // preprocess the image (VaeImageProcessor): load, resize, normalise to [-1, 1]
    let input = typeof opts.image === "string" || Buffer.isBuffer(opts.image) ? await loadImage(opts.image, { background: opts.background }) : opts.image;
    const f = this.model.vaeScaleFactor;
    // diffusers' get_default_height_width: requested (or input) size rounded down to multiples of f
    const size = defaultSize(opts.width ?? input.width, opts.height ?? input.height, f);
    input = await resizeImage(input, size.width, size.height, opts.resizeMode ?? "just-resize");
    const timings = { encodePromptMs: 0, encodeImageMs: 0, denoiseMs: 0, decodeMs: 0, totalMs: 0 };

    // strength 0: the input, unchanged (no VAE round trip)
    if (strength === 0) {
      timings.totalMs = performance.now() - t0;
      return { images: Array.from({ length: numImages }, () => ({ ...input, data: input.data.slice() })), seed, width: input.width, height: input.height, stepsRun: 0, timings };
    }

    // 4. timesteps, truncated by strength (throws naming the fix when steps x strength < 1)
    const { timesteps } = img2imgTimesteps(scheduler, steps, strength);
    abortIfNeeded(opts.signal);

    // 3. encode the prompt (and the negative prompt for classifier-free guidance)
    let t = performance.now();
    const cfg = guidance > 1;
    const cond = await this.encodePrompt(opts.prompt, clipSkip); // [1, L, D]
    const uncond = cfg ? await this.encodePrompt(opts.negativePrompt ?? "", clipSkip) : undefined;
    const L = this.model.tokenizer.modelMaxLength;
    const D = cond.length / L;
    const unetBatch = numImages * (cfg ? 2 : 1);
    const hidden = new Float32Array(unetBatch * L * D); // [unetBatch, L, D]: uncond rows first
    for (let i = 0; i < numImages; i++) {
      if (uncond) hidden.set(uncond, i * L * D);
      hidden.set(cond, ((cfg ? numImages : 0) + i) * L * D);
    }
    timings.encodePromptMs = performance.now() - t;
    abortIfNeeded(opts.signal);

    // 5. prepare latents: posterior sample of the encoded image, scaled, then noised to t_start
    t = performance.now();
    const noise = new NoiseSource(new TorchGenerator(seed), opts.draws);
    const pixels = imageToTensor(input); // [1, 3, H, W]
    const tiling = tilingWanted(tilingMode, input.height, input.width);
    const tiny = this.model.tinyVae?.use === "all" ? this.model.tinyVae : undefined;
    const sf = Math.fround(tiny ? tiny.config.scaling_factor : this.model.vaeConfig.scaling_factor); // torch multiplies float32 by float32(scalar)
    let one: Float32Array; // [1, C, h, w] init_latents
    let latentShape: number[];
    if (tiny) {
      // AutoencoderTiny: retrieve_latents returns .latents (no distribution, no draw)
      const enc = await tiny.encoder.run({ sample: { data: pixels, dims: [1, 3, input.height, input.width] } });
      const lat = enc.latent.data as Float32Array;
      latentShape = [...enc.latent.dims];
      one = lat.map((v) => Math.fround(sf * v));
    } else {
      const { mean, std, dims } = await this.encodeMoments({ data: pixels, dims: [1, 3, input.height, input.width] }, tiling);
      latentShape = dims;
      const eps = noise.randn(latentShape);
      one = new Float32Array(mean.length); // scaling_factor * (mean + std * eps)
      for (let i = 0; i < one.length; i++) one[i] = Math.fround(sf * Math.fround(mean[i] + Math.fround(std[i] * eps[i])));
    }
    const n = one.length;
    const shape = [numImages, latentShape[1], latentShape[2], latentShape[3]]; // [N, C, h, w]
    let latents = new Float32Array(numImages * n);
    for (let i = 0; i < numImages; i++) latents.set(one, i * n);
    const addNoise = noise.randn(shape);
    latents = scheduler.addNoise(latents, addNoise, timesteps[0]) as Float32Array<ArrayBuffer>;
    timings.encodeImageMs = performance.now() - t;

    // 7. denoising loop
    t = performance.now();
    const [, C, h, w] = shape;
    for (let s = 0; s < timesteps.length; s++) {
      // let pending events in first (a cancel that arrived during the last step, over IPC or HTTP),
      // so the run stops before the next UNet call rather than after it
      await new Promise<void>((resolve) => setImmediate(resolve));
      abortIfNeeded(opts.signal);
      const ts = timesteps[s];
      const modelIn = cfg ? concat(latents, latents) : latents; // [unetBatch, C, h, w]
      const scaled = scheduler.scaleModelInput(modelIn, ts);
      const out = await this.model.unet.run({
        sample: { data: scaled, dims: [unetBatch, C, h, w] },
        timestep: { data: new Float32Array(unetBatch).fill(ts), dims: [unetBatch] },
        encoder_hidden_states: { data: hidden, dims: [unetBatch, L, D] },
      });
      let pred = out.out_sample.data as Float32Array;
      if (cfg) {
        // noise_pred = uncond + guidance * (text - uncond)
        const half = latents.length;
        const g32 = Math.fround(guidance);
        const guided = new Float32Array(half);
        for (let i = 0; i < half; i++) {
          const u = pred[i];
          guided[i] = Math.fround(u + Math.fround(g32 * Math.fround(pred[half + i] - u)));
        }
        pred = guided;
      }
      latents = scheduler.step(pred, ts, latents, { generator: noise, shape, eta: opts.eta }).prevSample as Float32Array<ArrayBuffer>;
      const current = latents;
      opts.onProgress?.({
        step: s + 1,
        total: timesteps.length,
        timestep: ts,
        elapsedMs: performance.now() - t0,
        preview: () => latentPreview(current, shape, 0),
        previewDecoded: () => this.previewDecoded(current, shape),
      });
    }
    timings.denoiseMs = performance.now() - t;
    abortIfNeeded(opts.signal);

    // 8. decode: vae.decode(latents / scaling_factor)
    t = performance.now();
    const unscaled = new Float32Array(latents.length);
    for (let i = 0; i < unscaled.length; i++) unscaled[i] = Math.fround(latents[i] / sf);
    const dec = await this.decodeLatents({ data: unscaled, dims: shape as Tensor4["dims"] }, tiling);
    const decoded = dec.data; // [N, 3, H, W]
    const [, , H, W] = dec.dims;
    const images = Array.from({ length: numImages }, (_, i) => tensorToImage(decoded, W, H, i * 3 * H * W));
    timings.decodeMs = performance.now() - t;
    timings.totalMs = performance.now() - t0;
    return { images, seed, width: W, height: H, stepsRun: timesteps.length, latents, decoded, timings };
  }

  /**
   * AutoencoderKL encode of [1, 3, H, W] pixels -> posterior mean and std [1, L, h, w]; tiled (diffusers
   * tiled_encode: moments blended, then logvar -> std) when `tiling` and the image exceeds one tile.
   */
  private async encodeMoments(x: Tensor4, tiling: boolean): Promise<{ mean: Float32Array; std: Float32Array; dims: number[] }> {
    const t = vaeTilingFor(this.model.vaeConfig);
    const run = async (tile: Tensor4) => this.model.vaeEncoder.run({ sample: tile });
    if (!tiling || !encodeTiles(t, x.dims[2], x.dims[3])) {
      const enc = await run(x);
      return { mean: enc.mean.data as Float32Array, std: enc.std.data as Float32Array, dims: [...enc.mean.dims] };
    }
    const moments = await tiledEncode(x, async (tile) => {
      const enc = await run(tile);
      const [n, c, h, w] = enc.mean.dims;
      const m = new Float32Array(2 * n * c * h * w); // [n, 2c, h, w] = cat([mean, logvar], dim=1)
      for (let b = 0; b < n; b++) {
        m.set((enc.mean.data as Float32Array).subarray(b * c * h * w, (b + 1) * c * h * w), 2 * b * c * h * w);
        m.set((enc.logvar.data as Float32Array).subarray(b * c * h * w, (b + 1) * c * h * w), (2 * b + 1) * c * h * w);
      }
      return { data: m, dims: [n, 2 * c, h, w] };
    }, t);
    // DiagonalGaussianDistribution of the blended moments: std = exp(0.5 * clamp(logvar, -30, 20))
    const [n, c2, h, w] = moments.dims;
    const c = c2 / 2;
    const plane = c * h * w;
    const mean = new Float32Array(n * plane);
    const std = new Float32Array(n * plane);
    for (let b = 0; b < n; b++) {
      mean.set(moments.data.subarray(2 * b * plane, (2 * b + 1) * plane), b * plane);
      for (let i = 0; i < plane; i++) {
        const lv = Math.min(20, Math.max(-30, moments.data[(2 * b + 1) * plane + i]));
        std[b * plane + i] = Math.fround(Math.exp(Math.fround(0.5 * lv)));
      }
    }
    return { mean, std, dims: [n, c, h, w] };
  }

  /** Unscaled latents [N, L, h, w] -> pixels [N, 3, H, W] in about [-1, 1]: tiny VAE, tiled or whole. */
  private async decodeLatents(z: Tensor4, tiling: boolean): Promise<Tensor4> {
    const tiny = this.model.tinyVae?.use === "all" ? this.model.tinyVae : undefined;
    const session = tiny ? tiny.decoder : this.model.vaeDecoder;
    const run = async (tile: Tensor4): Promise<Tensor4> => {
      const out = (await session.run({ latent: tile })).sample;
      return { data: out.data as Float32Array, dims: [...out.dims] as Tensor4["dims"] };
    };
    if (tiny || !tiling) return run(z);
    const t = vaeTilingFor(this.model.vaeConfig);
    return decodeTiles(t, z.dims[2], z.dims[3]) ? tiledDecode(z, run, t) : run(z);
  }

  /** The first image's current latents decoded by the tiny VAE (else the linear latent preview). */
  private async previewDecoded(latents: Float32Array, shape: number[]): Promise<RGBImage> {
    const tiny = this.model.tinyVae;
    if (!tiny) return latentPreview(latents, shape, 0);
    const [, C, h, w] = shape;
    const first = new Float32Array(C * h * w);
    // the tiny VAE decodes latents in the UNet's space divided by its own scaling_factor
    const tsf = Math.fround(tiny.config.scaling_factor);
    for (let i = 0; i < first.length; i++) first[i] = Math.fround(latents[i] / tsf);
    const out = (await tiny.decoder.run({ latent: { data: first, dims: [1, C, h, w] } })).sample;
    return tensorToImage(out.data as Float32Array, out.dims[3], out.dims[2], 0);
  }

  /** prompt -> [1, L, D] embeddings (cached per prompt and clip skip). */
  async encodePrompt(prompt: string, clipSkip = 0): Promise<Float32Array> {
    const key = `${clipSkip}\u0000${prompt}`;
    const hit = this.embedCache.get(key);
    if (hit) return hit;
    const tok = this.model.tokenizer;
    const { inputIds } = tok.call(prompt, { maxLength: tok.modelMaxLength, padding: "max_length", truncation: true });
    const ids = BigInt64Array.from(inputIds, (x) => BigInt(x));
    const out = await this.model.textEncoder.run({ input_ids: { data: ids, dims: [1, ids.length] } });
    let emb: Float32Array;
    if (clipSkip === 0) {
      emb = out.last_hidden_state.data as Float32Array;
    } else {
      // diffusers: final_layer_norm(hidden_states[-(clip_skip + 1)])
      const hs = out.normed_hidden_states;
      const per = hs.data.length / hs.dims[0];
      const idx = hs.dims[0] - 1 - clipSkip;
      emb = (hs.data as Float32Array).slice(idx * per, (idx + 1) * per);
    }
    if (this.embedCache.size > 64) this.embedCache.clear();
    this.embedCache.set(key, emb);
    return emb;
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

