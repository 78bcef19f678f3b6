// Img2ImgPipeline: input image + prompt + strength -> image, computed exactly as diffusers'
// StableDiffusionImg2ImgPipeline and StableDiffusionXLImg2ImgPipeline (Ref: pipelines/stable_diffusion/
// pipeline_stable_diffusion_img2img.py, stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py).
// One denoise loop for every family and conditioning: steps are numbered as in diffusers' __call__; a family
// supplies step 3 (family.ts), a conditioning supplies step implementations (extension.ts). Random draws
// follow diffusers' order on one torch-compatible generator: VAE posterior sample, add_noise noise, then
// one per step for ancestral samplers.
import { controlNetExtension } from "../control/extension.js";
import type { ControlNetUnit } from "../control/unit.js";
import { check, ReimagineError, throwIfAborted } from "../errors.js";
import { defaultSize, imageToTensor, latentPreview, loadImage, type ResizeMode, resizeImage, type RGBImage, tensorToImage } from "../image.js";
import { inpaintExtension } from "../inpaint/extension.js";
import type { MaskOptions } from "../inpaint/options.js";
import { normalizeSeed, TorchGenerator } from "../rng.js";
import { createScheduler, type DenoisingWindow, img2imgTimesteps, noDenoisingStepReason, noStepError, schedulerForModel } from "../schedulers/index.js";
import type { Scheduler } from "../schedulers/scheduler.js";
import type { StableDiffusionModel } from "./components.js";
import type { NoiseSource, PipelineExtension, RunState, StepState, Tensor4 } from "./extension.js";
import { type Conditioning, FAMILIES, type MicroConditioning, type PipelineDefaults, type PromptRequest } from "./family.js";
import { checkFinite } from "./finite.js";
import { loraExtension } from "../lora/extension.js";
import { type LoraSpec, loraRunDefaults } from "../lora/spec.js";
import type { PromptSyntax } from "../prompt/encode.js";
import { type RefinerSpec, runWithRefiner } from "./refiner.js";
import { decodeTiles, encodeTiles, tiledDecode, tiledEncode, tilingWanted, vaeTilingFor, type VaeTilingMode, VAE_TILING_MODES } from "./vae-tiling.js";

export interface ProgressEvent {
  /** 1-based step just finished, out of `total` denoising steps. */
  step: number;
  total: number;
  timestep: number;
  /** Milliseconds since the run started. */
  elapsedMs: number;
  /** Cheap latent->RGB preview (latent resolution) of the first image. */
  preview: () => RGBImage;
  /** Full-resolution preview of the first image decoded by the tiny VAE (TAESD) when one is loaded,
   *  else the same as preview(). */
  previewDecoded: () => Promise<RGBImage>;
}

/** Latents as the input of a run (SDXL base -> refiner hand-over): [N, C, h, w], already scaled. */
export interface LatentInput {
  latents: Float32Array;
  dims: [number, number, number, number];
}

export interface Img2ImgOptions extends MicroConditioning, DenoisingWindow {
  /** Input picture: a decoded image, a file path or encoded bytes; or latents (a base model's output for a refiner). */
  image: RGBImage | string | Buffer | LatentInput;
  prompt: string;
  /** What to avoid. SDXL base models: leaving it out gives zero embeddings (diffusers), "" encodes "". */
  negativePrompt?: string;
  /** SDXL: the prompt for text_encoder_2 (default: prompt). */
  prompt2?: string;
  negativePrompt2?: string;
  /** Denoising strength in [0, 1]: 0 returns the input, 1 ignores it (text-to-image). Default: the model's (0.6; turbo 0.5). */
  strength?: number;
  /** Scheduler steps for strength 1; img2img runs about steps x strength of them. Default: the model's (30; turbo 2). */
  steps?: number;
  /** Classifier-free guidance scale; <= 1 disables the unconditional branch. Default: the model's (7.5, SDXL 7; turbo 0). */
  guidanceScale?: number;
  /** diffusers guidance_rescale (A1111 "CFG Rescale"): 0..1, for zero-terminal-SNR v-prediction models. Default 0. */
  guidanceRescale?: number;
  /** Seed of the torch-compatible generator; -1/undefined picks a random one (reported in the result). */
  seed?: number | bigint;
  /** Sampler name (`euler-a`, `DPM++ 2M Karras`, ...); default: the model's scheduler_config.json. */
  sampler?: string;
  /** CLIP skip: 0 = the family's usual layer (default), 1 = one layer earlier, ... */
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
  /** "latent" stops before decoding (result.latents; images empty): the hand-over to a refiner. Default "image". */
  outputType?: "image" | "latent";
  onProgress?: (e: ProgressEvent) => void;
  /** Aborting stops the run within one step with an AbortError; nothing is returned. */
  signal?: AbortSignal;
  /** Tiled VAE (diffusers enable_tiling(): overlapping tiles, blended seams) to bound memory on large
   *  images: "auto" (default) tiles above 1024x1024 pixels, "on" always (as diffusers), "off" never. */
  vaeTiling?: VaeTilingMode;
  /** Inpainting: repaint only the masked area (see MaskOptions). 9-channel inpainting models without it repaint everything. */
  mask?: MaskOptions;
  /** "a1111" (default): AUTOMATIC1111's emphasis `(x:1.2)`, BREAK, 75-token chunks and `<lora:name:w>` tags;
   *  "none": the prompt is literal text, truncated at 77 tokens (diffusers). A plain prompt encodes the same in both. */
  promptSyntax?: PromptSyntax;
  /** LoRAs to apply (besides the prompt's tags). An LCM-LoRA without a sampler runs the LCM sampler (8 steps, guidance 1). */
  loras?: LoraSpec[];
  /** Folders searched for LoRA names (tags, `loras` by name); default REIMAGINE_LORA_DIR. */
  loraDirs?: string[];
  /** Folders of textual-inversion embeddings (A1111 `embeddings/`: a prompt names one by its file name); default
   *  REIMAGINE_EMBEDDING_DIR. Used with syntax "a1111". */
  embeddingDirs?: string[];
  /** ControlNets conditioning the run (StableDiffusionControlNetImg2ImgPipeline): residuals summed in order, each
   *  with its own control image, scale and guidance window. */
  controlnets?: ControlNetUnit[];
  /** SDXL: hand over to a refiner model at `switchAt` (runWithRefiner; the refiner is loaded on first use with this
   *  pipeline's load options and kept). */
  refiner?: RefinerSpec;
  /** Extra conditionings (step implementations) for library users; built-in ones come from options. */
  extensions?: PipelineExtension[];
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
  latentDims?: [number, number, number, number];
  /** Decoded float image NCHW in [-1, 1] before 8-bit conversion; absent for strength 0 and latent output. */
  decoded?: Float32Array;
  /** What the caller should know about how the run was done (e.g. "the mask was resized to fit"). */
  notes?: string[];
  timings: { encodePromptMs: number; encodeImageMs: number; denoiseMs: number; decodeMs: number; totalMs: number };
  /** Infotext pairs of the run's conditionings (e.g. "Lora hashes"); metadata writers add them. */
  extraGenerationParams?: Record<string, string>;
}

const isLatentInput = (x: unknown): x is LatentInput => typeof x === "object" && x !== null && "latents" in x && "dims" in x;

/**
 * A built-in conditioning: turns its (plain-data) run options into step implementations, or undefined when the
 * run does not use it. Options stay plain data because runs cross process boundaries (src/worker).
 */
export type ExtensionFactory = (pipe: Img2ImgPipeline, opts: Img2ImgOptions) => Promise<PipelineExtension | undefined>;

/** Built-in conditionings in hook order (e.g. ControlNet residuals before inpainting's extra channels). */
const BUILT_IN: ExtensionFactory[] = [loraExtension, controlNetExtension, inpaintExtension];

async function builtInExtensions(pipe: Img2ImgPipeline, opts: Img2ImgOptions): Promise<PipelineExtension[]> {
  const out: PipelineExtension[] = [];
  for (const make of BUILT_IN) {
    const x = await make(pipe, opts);
    if (x) out.push(x);
  }
  return out;
}

export class Img2ImgPipeline {
  /** Loads refiner models (set by loadPipeline with its own load options); refiners stay loaded once used. */
  private refinerLoader?: (ref: string) => Promise<Img2ImgPipeline>;
  private readonly refiners = new Map<string, Promise<Img2ImgPipeline>>();

  constructor(
    readonly model: StableDiffusionModel,
    /** Defaults for options a run leaves out (steps, guidance, strength). */
    readonly defaults: PipelineDefaults = FAMILIES[model.family].defaults(model.name, model.schedulerConfig),
  ) {}

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

  /** How `refiner` models are loaded (loadPipeline sets it to load them like this model). */
  useRefinerLoader(load: (ref: string) => Promise<Img2ImgPipeline>): void {
    this.refinerLoader = load;
  }

  private refinerFor(ref: string): Promise<Img2ImgPipeline> {
    if (!this.refinerLoader)
      throw new ReimagineError("this pipeline cannot load a refiner: create it with loadPipeline, or call runWithRefiner with both pipelines", "usage");
    let p = this.refiners.get(ref);
    if (!p) {
      p = this.refinerLoader(ref);
      p.catch(() => this.refiners.delete(ref));
      this.refiners.set(ref, p);
    }
    return p;
  }

  /** Releases this model's sessions and those of any refiner it loaded. */
  async release(): Promise<void> {
    const refiners = await Promise.allSettled([...this.refiners.values()]);
    this.refiners.clear();
    await Promise.all([this.model.release(), ...refiners.map((r) => (r.status === "fulfilled" ? r.value.release() : undefined))]);
  }

  /** 3. Encode the prompt into the conditioning record (the family's implementation). */
  encodePrompt(req: PromptRequest): Promise<Conditioning> {
    return FAMILIES[this.model.family].encodePrompt(this.model, req);
  }

  /**
   * Runs img2img.
   * @example
   * const pipe = await loadPipeline("stabilityai/sd-turbo");
   * const { images, seed } = await pipe.run({ image: "photo.png", prompt: "a watercolor painting", strength: 0.5, steps: 2, guidanceScale: 0 });
   */
  async run(opts: Img2ImgOptions): Promise<Img2ImgResult> {
    if (opts.refiner) {
      const { refiner, ...rest } = opts;
      check(typeof refiner.model === "string" && refiner.model !== "", "refiner.model must name a model (hub repo, folder or .safetensors file)");
      check(
        !rest.mask,
        "inpainting with a refiner hand-over is not supported: leave out the refiner, or inpaint with the base model and refine the result as img2img",
      );
      return runWithRefiner(this, () => this.refinerFor(refiner.model), rest, refiner.switchAt);
    }
    const t0 = performance.now();
    opts = { ...opts, ...loraRunDefaults(opts) }; // an LCM-LoRA: the LCM sampler's few-step defaults
    const timings = { encodePromptMs: 0, encodeImageMs: 0, denoiseMs: 0, decodeMs: 0, totalMs: 0 };
    const strength = opts.strength ?? this.defaults.strength;
    const steps = opts.steps ?? this.defaults.steps;
    const guidance = opts.guidanceScale ?? this.defaults.guidanceScale;
    const guidanceRescale = opts.guidanceRescale ?? 0;
    const numImages = opts.numImages ?? 1;
    const clipSkip = opts.clipSkip ?? 0;
    const tilingMode = opts.vaeTiling ?? "auto";
    const windowed = opts.denoisingStart !== undefined && opts.denoisingStart > 0 && opts.denoisingStart < 1;

    // 1. check inputs
    check(Number.isFinite(strength) && strength >= 0 && strength <= 1, `strength must be between 0 and 1 (got ${strength}): use e.g. --strength 0.5`);
    check(Number.isInteger(steps) && steps >= 1, `steps must be a whole number >= 1 (got ${steps})`);
    if (!windowed && noDenoisingStepReason(steps, strength)) throw noStepError(steps, strength);
    check(Number.isFinite(guidance), `guidance scale must be a number (got ${guidance})`);
    check(
      Number.isFinite(guidanceRescale) && guidanceRescale >= 0 && guidanceRescale <= 1,
      `guidance rescale must be between 0 and 1 (got ${guidanceRescale})`,
    );
    check(Number.isInteger(numImages) && numImages >= 1 && numImages <= 64, `number of images must be 1..64 (got ${numImages})`);
    check(VAE_TILING_MODES.includes(tilingMode), `vaeTiling must be one of ${VAE_TILING_MODES.join(", ")} (got ${tilingMode})`);
    for (const d of [opts.denoisingStart, opts.denoisingEnd])
      check(d === undefined || (Number.isFinite(d) && d >= 0 && d <= 1), `denoising start/end must be between 0 and 1 (got ${d})`);
    const seed = normalizeSeed(opts.seed);
    const scheduler = this.scheduler(opts.sampler); // validates the sampler name early
    const extensions = [...(await builtInExtensions(this, opts)), ...(opts.extensions ?? [])];
    // infotext pairs of the conditionings and of step 3 (A1111 extra_generation_params: "Lora hashes", "TI hashes")
    const params: Record<string, string> = Object.assign({}, ...extensions.map((x) => x.infotext?.() ?? {}));
    const extraGenerationParams = () => (Object.keys(params).length ? { extraGenerationParams: params } : {});

    // 2. define call parameters; 4. preprocess the image (VaeImageProcessor: resize, normalise to [-1, 1])
    const f = this.model.vaeScaleFactor;
    let input: RGBImage | undefined;
    let original: RGBImage | undefined;
    let size: { width: number; height: number };
    const notes: string[] = [];
    if (isLatentInput(opts.image)) {
      const [n, c, h, w] = opts.image.dims;
      const inC = this.model.components.unet.config.in_channels;
      check(
        (n === 1 || n === numImages) && c === inC && opts.image.latents.length === n * c * h * w,
        `latent input must be [1 or ${numImages}, ${inC}, h, w] (got [${opts.image.dims}])`,
      );
      size = { width: w * f, height: h * f };
    } else {
      input = original =
        typeof opts.image === "string" || Buffer.isBuffer(opts.image) ? await loadImage(opts.image, { background: opts.background }) : opts.image;
      // diffusers' get_default_height_width: requested (or input) size rounded down to multiples of f
      size = defaultSize(opts.width ?? input.width, opts.height ?? input.height, f);
      input = await resizeImage(input, size.width, size.height, opts.resizeMode ?? "just-resize");
      // strength 0: the input, unchanged (no VAE round trip)
      if (strength === 0 && !windowed) {
        timings.totalMs = performance.now() - t0;
        const copies = Array.from({ length: numImages }, () => ({ ...input!, data: input!.data.slice() }));
        return { images: copies, seed, width: input.width, height: input.height, stepsRun: 0, timings, ...extraGenerationParams() };
      }
      for (const x of extensions) {
        const r = await x.prepareInput?.({ original, image: input });
        notes.push(...(r?.notes ?? []));
        if (r?.unchanged) {
          notes.push(r.unchanged);
          timings.totalMs = performance.now() - t0;
          const copies = Array.from({ length: numImages }, () => ({ ...input!, data: input!.data.slice() }));
          return { images: copies, seed, width: input.width, height: input.height, stepsRun: 0, notes, timings, ...extraGenerationParams() };
        }
      }
    }
    const cfg = guidance > 1;
    throwIfAborted(opts.signal);

    // 3. encode the prompt (and the negative prompt for classifier-free guidance) -> the conditioning record
    let t = performance.now();
    const conditioning = await this.encodePrompt({ ...opts, prompt: opts.prompt, clipSkip, cfg, numImages, height: size.height, width: size.width });
    timings.encodePromptMs = performance.now() - t;
    Object.assign(params, conditioning.infotext);
    throwIfAborted(opts.signal);

    // 5. set timesteps, truncated by strength (or by SDXL's denoising window)
    const { timesteps } = img2imgTimesteps(scheduler, steps, strength, opts);

    // 6. prepare latents: posterior sample of the encoded image, scaled, then noised to the first timestep
    t = performance.now();
    const tiling = input ? tilingWanted(tilingMode, input.height, input.width) : false;
    const noise: NoiseSource = new TorchGenerator(seed);
    const run: RunState = {
      model: this.model,
      originalImage: original,
      encodePixels: (pixels, H, W) => this.encodePixels(pixels, H, W, noise, tiling),
      scheduler,
      noise,
      conditioning,
      timesteps,
      numImages,
      strength,
      seed,
      image: input,
      pixels: input ? imageToTensor(input) : undefined, // [1, 3, H, W]
      shape: [numImages, 0, 0, 0],
      latents: new Float32Array(0),
    };
    const prepare = extensions.find((x) => x.prepareLatents);
    if (prepare) await prepare.prepareLatents!(run);
    else await this.prepareLatents(run, opts, !windowed);
    timings.encodeImageMs = performance.now() - t;

    // 7. prepare extra step kwargs (eta, generator): passed to scheduler.step below
    // 8. denoising loop
    t = performance.now();
    const unetOptions = Object.assign({}, ...extensions.map((x) => x.unetOptions ?? {}));
    const unet = await this.model.unetSession(unetOptions);
    const B = conditioning.batch;
    for (let s = 0; s < timesteps.length; s++) {
      // let pending events in first (a cancel that arrived during the last step, over IPC or HTTP),
      // so the run stops before the next UNet call rather than after it
      await new Promise<void>((resolve) => setImmediate(resolve));
      throwIfAborted(opts.signal);
      const ts = timesteps[s];
      const [, C, h, w] = run.shape;
      const latentModelInput = cfg ? concat(run.latents, run.latents) : run.latents; // [B, C, h, w]
      const step: StepState = {
        index: s,
        t: ts,
        latentModelInput,
        unetFeeds: {
          sample: { data: scheduler.scaleModelInput(latentModelInput, ts), dims: [B, C, h, w] },
          timestep: { data: new Float32Array(B).fill(ts), dims: [B] },
          ...conditioning.unetInputs,
        },
      };
      for (const x of extensions) await x.beforeUnet?.(run, step);
      const out = await unet.run(step.unetFeeds);
      let pred = out.out_sample.data as Float32Array;
      if (cfg) pred = classifierFreeGuidance(pred, guidance, guidanceRescale, numImages);
      run.latents = scheduler.step(pred, ts, run.latents, { generator: run.noise, shape: run.shape, eta: opts.eta }).prevSample as Float32Array<ArrayBuffer>;
      checkFinite(run.latents, "UNet", `step ${s + 1} of ${timesteps.length}`);
      for (const x of extensions) await x.afterStep?.(run, step);
      const current = run.latents;
      const shape = run.shape;
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
    throwIfAborted(opts.signal);
    const result = {
      seed,
      stepsRun: timesteps.length,
      latents: run.latents,
      latentDims: run.shape,
      timings,
      ...extraGenerationParams(),
      ...(notes.length ? { notes } : {}),
    };
    if (opts.outputType === "latent") {
      timings.totalMs = performance.now() - t0;
      return { ...result, images: [], width: size.width, height: size.height };
    }

    // 9. decode: vae.decode(latents / scaling_factor), then post-process to 8-bit pictures
    t = performance.now();
    const sf = this.latentScale();
    const unscaled = new Float32Array(run.latents.length);
    for (let i = 0; i < unscaled.length; i++) unscaled[i] = Math.fround(run.latents[i] / sf);
    const dec = await this.decodeLatents({ data: unscaled, dims: run.shape }, tiling);
    const decoded = dec.data; // [N, 3, H, W]
    checkFinite(decoded, this.model.tinyVae?.use === "all" ? "tiny VAE decoder" : "VAE decoder");
    const [, , H, W] = dec.dims;
    let images = Array.from({ length: numImages }, (_, i) => tensorToImage(decoded, W, H, i * 3 * H * W));
    for (const x of extensions) if (x.afterDecode) images = await x.afterDecode(run, images);
    timings.decodeMs = performance.now() - t;
    timings.totalMs = performance.now() - t0;
    return { ...result, images, width: images[0]?.width ?? W, height: images[0]?.height ?? H, decoded };
  }

  /** The VAE's scaling_factor as float32 (torch multiplies float32 by float32(scalar)); the tiny VAE's when it encodes. */
  private latentScale(): number {
    const tiny = this.model.tinyVae?.use === "all" ? this.model.tinyVae : undefined;
    return Math.fround(tiny ? tiny.config.scaling_factor : this.model.components.vae.config.scaling_factor);
  }

  /**
   * 6. The default prepare latents (diffusers prepare_latents): scaling_factor x posterior sample of the
   * picture, one copy per image, then scheduler.add_noise at the first timestep. Latent input (SDXL's
   * denoising_start hand-over) is taken as is, without noise.
   */
  private async prepareLatents(run: RunState, opts: Img2ImgOptions, addNoise: boolean): Promise<void> {
    let one: Float32Array; // [1, C, h, w] init_latents
    let dims: number[];
    if (isLatentInput(opts.image)) {
      one = opts.image.latents;
      dims = opts.image.dims;
    } else {
      ({ latents: one, dims } = await run.encodePixels(run.pixels!, run.image!.height, run.image!.width));
    }
    run.shape = [run.numImages, dims[1], dims[2], dims[3]];
    const n = dims[1] * dims[2] * dims[3];
    run.imageLatents = one.subarray(0, n);
    const latents = new Float32Array(run.numImages * n);
    if (one.length === latents.length)
      latents.set(one); // a batch of latents (refiner hand-over)
    else for (let i = 0; i < run.numImages; i++) latents.set(one, i * n);
    if (!addNoise) {
      run.latents = latents;
      return;
    }
    run.addedNoise = run.noise.randn(run.shape);
    run.latents = run.scheduler.addNoise(latents, run.addedNoise, run.timesteps[0]) as Float32Array<ArrayBuffer>;
  }

  /** scaling_factor x (posterior sample of the VAE encoder, or the tiny VAE's latents) of [1, 3, H, W] pixels. */
  private async encodePixels(
    pixels: Float32Array,
    H: number,
    W: number,
    noise: NoiseSource,
    tiling: boolean,
  ): Promise<{ latents: Float32Array; dims: [number, number, number, number] }> {
    const sf = this.latentScale();
    const tiny = this.model.tinyVae?.use === "all" ? this.model.tinyVae : undefined;
    if (tiny) {
      // AutoencoderTiny: retrieve_latents returns .latents (no distribution, no draw)
      const enc = await tiny.encoder.run({ sample: { data: pixels, dims: [1, 3, H, W] } });
      const latents = (enc.latent.data as Float32Array).map((v) => Math.fround(sf * v));
      checkFinite(latents, "tiny VAE encoder");
      return { latents, dims: [...enc.latent.dims] as Tensor4["dims"] };
    }
    const { mean, std, dims } = await this.encodeMoments({ data: pixels, dims: [1, 3, H, W] }, tiling);
    const eps = noise.randn(dims);
    const latents = new Float32Array(mean.length); // scaling_factor * (mean + std * eps)
    for (let i = 0; i < latents.length; i++) latents[i] = Math.fround(sf * Math.fround(mean[i] + Math.fround(std[i] * eps[i])));
    checkFinite(latents, "VAE encoder");
    return { latents, dims: dims as Tensor4["dims"] };
  }

  /**
   * AutoencoderKL encode of [1, 3, H, W] pixels -> posterior mean and std [1, L, h, w]; tiled (diffusers
   * tiled_encode: moments blended, then logvar -> std) when `tiling` and the image exceeds one tile.
   */
  private async encodeMoments(x: Tensor4, tiling: boolean): Promise<{ mean: Float32Array; std: Float32Array; dims: number[] }> {
    const vae = this.model.components.vae;
    const t = vaeTilingFor(vae.config);
    const run = async (tile: Tensor4) => vae.encoder.run({ sample: tile });
    if (!tiling || !encodeTiles(t, x.dims[2], x.dims[3])) {
      const enc = await run(x);
      return { mean: enc.mean.data as Float32Array, std: enc.std.data as Float32Array, dims: [...enc.mean.dims] };
    }
    const moments = await tiledEncode(
      x,
      async (tile) => {
        const enc = await run(tile);
        const [n, c, h, w] = enc.mean.dims;
        const m = new Float32Array(2 * n * c * h * w); // [n, 2c, h, w] = cat([mean, logvar], dim=1)
        for (let b = 0; b < n; b++) {
          m.set((enc.mean.data as Float32Array).subarray(b * c * h * w, (b + 1) * c * h * w), 2 * b * c * h * w);
          m.set((enc.logvar.data as Float32Array).subarray(b * c * h * w, (b + 1) * c * h * w), (2 * b + 1) * c * h * w);
        }
        return { data: m, dims: [n, 2 * c, h, w] };
      },
      t,
    );
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
    const vae = this.model.components.vae;
    const session = tiny ? tiny.decoder : vae.decoder;
    const run = async (tile: Tensor4): Promise<Tensor4> => {
      const out = (await session.run({ latent: tile })).sample;
      return { data: out.data as Float32Array, dims: [...out.dims] as Tensor4["dims"] };
    };
    if (tiny || !tiling) return run(z);
    const t = vaeTilingFor(vae.config);
    return decodeTiles(t, z.dims[2], z.dims[3]) ? tiledDecode(z, run, t) : run(z);
  }

  /** The first image's current latents decoded by the tiny VAE (else the linear latent preview). */
  private async previewDecoded(latents: Float32Array, shape: readonly number[]): Promise<RGBImage> {
    const tiny = this.model.tinyVae;
    if (!tiny) return latentPreview(latents, shape as number[], 0);
    const [, C, h, w] = shape;
    const first = new Float32Array(C * h * w);
    // the tiny VAE decodes latents in the UNet's space divided by its own scaling_factor
    const tsf = Math.fround(tiny.config.scaling_factor);
    for (let i = 0; i < first.length; i++) first[i] = Math.fround(latents[i] / tsf);
    const out = (await tiny.decoder.run({ latent: { data: first, dims: [1, C, h, w] } })).sample;
    return tensorToImage(out.data as Float32Array, out.dims[3], out.dims[2], 0);
  }
}

/**
 * noise_pred = uncond + g * (text - uncond) over a [2N, ...] UNet output (uncond rows first), then diffusers'
 * rescale_noise_cfg when `rescale` > 0 (Lin et al. 2023, 3.4): std over each sample, unbiased as torch.std.
 */
export function classifierFreeGuidance(pred: Float32Array, guidance: number, rescale = 0, samples = 1): Float32Array {
  const half = pred.length / 2;
  const g32 = Math.fround(guidance);
  const guided = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const u = pred[i];
    guided[i] = Math.fround(u + Math.fround(g32 * Math.fround(pred[half + i] - u)));
  }
  if (rescale <= 0) return guided;
  const per = half / samples;
  const std = (x: Float32Array) => {
    let mean = 0;
    for (let i = 0; i < x.length; i++) mean += x[i];
    mean /= x.length;
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += (x[i] - mean) ** 2;
    return Math.sqrt(ss / (x.length - 1));
  };
  for (let b = 0; b < samples; b++) {
    const cfgPart = guided.subarray(b * per, (b + 1) * per);
    // noise_cfg * (std_text / std_cfg), then phi * rescaled + (1 - phi) * noise_cfg
    const ratio = Math.fround(std(pred.subarray(half + b * per, half + (b + 1) * per)) / std(cfgPart));
    for (let i = 0; i < per; i++) cfgPart[i] = Math.fround(Math.fround(rescale * Math.fround(cfgPart[i] * ratio)) + Math.fround((1 - rescale) * cfgPart[i]));
  }
  return guided;
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
