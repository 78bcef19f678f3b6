// What a download of the SDXL repos fetches: the file lists below are those of
// stabilityai/stable-diffusion-xl-base-1.0, -refiner-1.0 and sdxl-turbo (model_index.json components,
// fp32 + fp16 safetensors, plus the single-file checkpoints, ONNX/OpenVINO exports and extra VAEs the repos
// also hold). Only model_index.json, configs, tokenizers and the fp16 weights of listed components come down.
import { describe, expect, it } from "vitest";
import { selectPipelineFiles } from "./hub.js";

const component = (c: string, stem: string) => [
  `${c}/config.json`,
  `${c}/${stem}.safetensors`,
  `${c}/${stem}.fp16.safetensors`,
  `${c}/${stem}.bin`,
  `${c}/model.onnx`,
  `${c}/openvino_model.xml`,
];
const tokenizer = (c: string) => ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"].map((f) => `${c}/${f}`);

const base = new Set([
  "model_index.json",
  "README.md",
  "sd_xl_base_1.0.safetensors",
  "sd_xl_base_1.0_0.9vae.safetensors",
  "sd_xl_offset_example-lora_1.0.safetensors",
  ...component("unet", "diffusion_pytorch_model"),
  ...component("vae", "diffusion_pytorch_model"),
  ...component("vae_1_0", "diffusion_pytorch_model"),
  ...component("text_encoder", "model"),
  ...component("text_encoder_2", "model"),
  ...tokenizer("tokenizer"),
  ...tokenizer("tokenizer_2"),
  "scheduler/scheduler_config.json",
  "vae_decoder/model.onnx",
  "vae_encoder/model.onnx",
]);
const baseIndex = {
  _class_name: "StableDiffusionXLPipeline",
  force_zeros_for_empty_prompt: true,
  scheduler: ["diffusers", "EulerDiscreteScheduler"],
  text_encoder: ["transformers", "CLIPTextModel"],
  text_encoder_2: ["transformers", "CLIPTextModelWithProjection"],
  tokenizer: ["transformers", "CLIPTokenizer"],
  tokenizer_2: ["transformers", "CLIPTokenizer"],
  unet: ["diffusers", "UNet2DConditionModel"],
  vae: ["diffusers", "AutoencoderKL"],
};

describe("SDXL hub downloads select only what the pipeline needs", () => {
  it("base: fp16 weights of unet, vae, both text encoders; configs; both tokenizers; nothing else", () => {
    const { files, indexes } = selectPipelineFiles(base, baseIndex, "fp16");
    expect(indexes).toEqual([]);
    expect(files.sort()).toEqual(
      [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model.fp16.safetensors",
        ...tokenizer("tokenizer"),
        ...tokenizer("tokenizer_2"),
      ].sort(),
    );
  });

  it("refiner: no text_encoder or tokenizer (model_index.json lists them as null)", () => {
    const have = new Set([...base].filter((f) => !f.startsWith("text_encoder/") && !f.startsWith("tokenizer/")));
    const index = {
      ...baseIndex,
      _class_name: "StableDiffusionXLImg2ImgPipeline",
      requires_aesthetics_score: true,
      text_encoder: [null, null],
      tokenizer: [null, null],
    };
    const { files } = selectPipelineFiles(have, index, "fp16");
    expect(files.some((f) => f.startsWith("text_encoder/") || f.startsWith("tokenizer/"))).toBe(false);
    expect(files).toContain("text_encoder_2/model.fp16.safetensors");
  });

  it("tokenizer-only (single-file SDXL checkpoints): both tokenizers and no weights", () => {
    const { files } = selectPipelineFiles(base, baseIndex, "fp16", true);
    expect(files.sort()).toEqual(["model_index.json", ...tokenizer("tokenizer"), ...tokenizer("tokenizer_2")].sort());
  });
});
