// The txt2img body SillyTavern forwards to an AUTOMATIC1111 server (its src/endpoints/stable-diffusion.js: the
// request's url/auth fields, hires fix off, override_settings with the clip skip), for server tests to replay.

/** SillyTavern's txt2img body with `fields` over its defaults. */
export function sillyTavernTxt2img(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    url: "http://127.0.0.1:7860",
    auth: "user:pass",
    prompt: "",
    negative_prompt: "",
    sampler_name: "DPM++ 2M",
    scheduler: "karras",
    steps: 12,
    cfg_scale: 6,
    width: 512,
    height: 512,
    restore_faces: false,
    enable_hr: false,
    hr_upscaler: "Latent",
    hr_scale: 2,
    denoising_strength: 0.7,
    hr_second_pass_steps: 0,
    seed: -1,
    override_settings: { CLIP_stop_at_last_layers: 1 },
    override_settings_restore_afterwards: true,
    save_images: true,
    send_images: true,
    ...fields,
  };
}
