// Scheduler conformance suite: every sampler against diffusers' dumped reference
// (reference.json `schedulers`): config resolution, timesteps/sigmas, full step() trajectories
// with the dumped model outputs and noise, add_noise, img2img truncation and trajectories.

import { describe, expect, it } from "vitest";
import { haveFixtures, loadReferenceJson, referenceTensor, describeWithFixtures } from "../../test/fixtures.js";
import { ReimagineError } from "../errors.js";
import { publicConfig } from "./config.js";
import {
  a1111SamplerName,
  checkSamplerName,
  createScheduler,
  DDIMScheduler,
  DEFAULT_SAMPLER,
  DPMSolverMultistepScheduler,
  findSampler,
  img2imgTimesteps,
  listSamplers,
  modelSampler,
  schedulerForModel,
  type Scheduler,
} from "./index.js";
import { gaussKronrod15, integrate } from "./quadrature.js";

const has = haveFixtures("sd-tiny");
const ref = has ? loadReferenceJson("sd-tiny") : null;

/** reference.json entry name -> our sampler name. */
const SAMPLER_OF: Record<string, string> = {
  ddim: "ddim",
  pndm: "pndm",
  euler: "euler",
  euler_ancestral: "euler-a",
  dpmpp_2m: "dpmpp-2m",
  dpmpp_2m_karras: "dpmpp-2m-karras",
  lms: "lms",
  lcm: "lcm",
  ddpm: "ddpm",
};

interface Tol {
  rtol: number;
  atol: number;
}

/** Largest amount by which |a-b| exceeds atol + rtol·|b| (≤ 0 means allclose). */
function excess(a: ArrayLike<number>, b: ArrayLike<number>, { rtol, atol }: Tol): number {
  expect(a.length).toBe(b.length);
  let worst = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) - (atol + rtol * Math.abs(b[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  return worst;
}
function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: Tol, what: string): void {
  const e = excess(a, b, tol);
  expect(e, `${what}: exceeds atol + rtol·|ref| by ${e}`).toBeLessThanOrEqual(0);
}

/** JSON's "Infinity" / "-Infinity" / "NaN" strings back to numbers. */
function unJson(v: unknown): unknown {
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  if (v === "NaN") return NaN;
  return v;
}

/** A generator that replays the dumped draws and checks the shapes asked for. */
function replay(draws: { tensor: string; shape: number[] }[]) {
  let used = 0;
  return {
    get used() {
      return used;
    },
    randn(shape: readonly number[]): Float32Array {
      if (used >= draws.length) throw new Error(`scheduler drew noise ${used + 1} times; reference drew ${draws.length}`);
      expect([...shape]).toEqual(draws[used].shape);
      return referenceTensor(draws[used++]).data;
    },
  };
}

const T = (r: { tensor: string }) => referenceTensor(r).data;

describeWithFixtures("schedulers vs diffusers reference", () => {
  const S = ref.schedulers;
  const tol = ref.tolerances;
  const step: Tol = tol["schedulers.step"];
  const sig: Tol = tol["schedulers.sigmas"];
  const noiseTol: Tol = tol["schedulers.add_noise"];
  const initTol: Tol = tol["schedulers.init_noise_sigma"];
  const shape: number[] = S.tensor_shape;
  const x0 = T(S.shared.x0);
  const noise = T(S.shared.noise);

  it("has the 9 reference entries", () => {
    expect(S.entries.map((e: any) => e.name).sort()).toEqual(Object.keys(SAMPLER_OF).sort());
  });

  it("builds alphas_cumprod bit-exactly like torch float32", () => {
    const s = createScheduler("ddim", S.base_config);
    expect(Array.from(s.alphasCumprod)).toEqual(Array.from(T(S.shared.alphas_cumprod)));
  });

  for (const entry of ref?.schedulers.entries ?? []) {
    describe(`${entry.name} (${entry.class})`, () => {
      const make = (): Scheduler => createScheduler(SAMPLER_OF[entry.name], S.base_config);
      const floatTimesteps = entry.set_timesteps["4"].timesteps_dtype === "float32";
      const expectTimesteps = (ours: number[], theirs: number[], what: string) => {
        expect(ours.length, what).toBe(theirs.length);
        if (floatTimesteps) expectClose(ours, theirs, { rtol: 0, atol: 1e-3 }, what);
        else expect(ours, what).toEqual(theirs);
      };

      it("resolves the config like from_config(base_config, **overrides)", () => {
        const s = make();
        expect(s.name).toBe(entry.class);
        const want = Object.fromEntries(Object.entries(entry.config).map(([k, v]) => [k, unJson(v)]));
        expect(publicConfig(s.config)).toEqual(want);
        expect(s.order).toBe(entry.order);
        expect(s.supportsBeginIndex).toBe(entry.has_set_begin_index);
        expectClose([s.initNoiseSigma], [entry.init_noise_sigma_before_set_timesteps], initTol, "init_noise_sigma");
      });

      for (const [n, want] of Object.entries<any>(entry.set_timesteps)) {
        it(`set_timesteps(${n})`, () => {
          const s = make();
          s.setTimesteps(Number(n));
          expectTimesteps(s.timesteps, want.timesteps, "timesteps");
          expect(s.timesteps.length).toBe(want.num_timesteps);
          if (want.sigmas) expectClose(s.sigmas ?? [], want.sigmas, sig, "sigmas");
          expectClose([s.initNoiseSigma], [want.init_noise_sigma], initTol, "init_noise_sigma");
        });
      }

      it("reproduces the step() trajectory", () => {
        const tr = entry.trajectory;
        const s = make();
        s.setTimesteps(tr.num_inference_steps);
        expectTimesteps(s.timesteps, tr.timesteps, "trajectory timesteps");
        let sample = T(tr.initial_sample);
        for (const st of tr.steps) {
          const where = `step ${st.i} (t=${st.t})`;
          expectClose(sample, T(st.sample_in), step, `${where} sample_in`);
          expectClose(s.scaleModelInput(sample, st.t), T(st.scaled_model_input), step, `${where} scaled_model_input`);
          const gen = replay(st.noise_draws);
          const out = s.step(T(st.model_output), st.t, sample, { generator: gen, shape });
          expect(gen.used, `${where} noise draws`).toBe(st.noise_draws.length);
          expectClose(out.prevSample, T(st.prev_sample), step, `${where} prev_sample`);
          if (st.pred_original_sample) expectClose(out.predOriginalSample ?? [], T(st.pred_original_sample), step, `${where} pred_original_sample`);
          if (st.denoised) expectClose(out.denoised ?? [], T(st.denoised), step, `${where} denoised`);
          sample = out.prevSample; // chain our own output, as the pipeline does
        }
      });

      for (const c of entry.img2img) {
        it(`img2img get_timesteps(steps=${c.num_inference_steps}, strength=${c.strength}) and add_noise`, () => {
          const s = make();
          const r = img2imgTimesteps(s, c.num_inference_steps, c.strength);
          expect(r.initTimestep).toBe(c.init_timestep);
          expect(r.tStart).toBe(c.t_start);
          expect(r.beginIndex).toBe(c.begin_index);
          expect(r.numInferenceSteps).toBe(c.effective_num_inference_steps);
          expectTimesteps(r.timesteps, c.timesteps, "img2img timesteps");
          expectTimesteps([r.latentTimestep], [c.latent_timestep], "latent timestep");
          if (c.sigma_at_begin_index !== undefined)
            expectClose([(s.sigmas ?? [])[r.beginIndex as number]], [c.sigma_at_begin_index], sig, "sigma at begin index");
          expectClose(s.addNoise(x0, noise, r.latentTimestep), T(c.add_noise), noiseTol, "add_noise");
        });
      }

      if (entry.add_noise_direct) {
        it("add_noise with one timestep per batch item", () => {
          const d = entry.add_noise_direct;
          const s = make();
          expectClose(s.addNoise(x0, noise, d.timesteps), T(d.result), noiseTol, "add_noise_direct");
        });
      }

      it("reproduces the img2img trajectory (begin index, noised start, steps)", () => {
        const tr = entry.img2img_trajectory;
        const s = make();
        const r = img2imgTimesteps(s, tr.num_inference_steps, tr.strength);
        expect(r.beginIndex).toBe(tr.begin_index);
        expectTimesteps(r.timesteps, tr.timesteps, "img2img trajectory timesteps");
        const batchT = new Array(shape[0]).fill(r.timesteps[0]);
        let sample = s.addNoise(x0, noise, batchT);
        expectClose(sample, T(tr.noised_start), noiseTol, "noised_start");
        for (const st of tr.steps) {
          const where = `img2img step ${st.i} (t=${st.t})`;
          expectClose(s.scaleModelInput(sample, st.t), T(st.scaled_model_input), step, `${where} scaled_model_input`);
          // inject the dumped draws directly this time (the opts.noise path)
          const out = s.step(T(st.model_output), st.t, sample, st.noise_draws.length ? { noise: T(st.noise_draws[0]), shape } : { shape });
          expect(st.noise_draws.length).toBeLessThanOrEqual(1);
          expectClose(out.prevSample, T(st.prev_sample), step, `${where} prev_sample`);
          sample = out.prevSample;
        }
      });
    });
  }

  describe("from_config of the hub scheduler_config.json", () => {
    const cr = ref?.schedulers.config_resolution_from_hub_json;
    for (const [cls, want] of Object.entries<Record<string, unknown>>(cr?.resolved ?? {})) {
      it(`${cls} inherits present keys and takes its own defaults for absent ones`, () => {
        const direct = createScheduler(cls, cr.source_json);
        // the two-step path diffusers users take: Source.from_config(hub) then Target.from_config(that.config)
        const twoStep = createScheduler(cls, schedulerForModel(cr.source_json).config);
        for (const [k, v] of Object.entries(want)) {
          expect(direct.config[k], `${cls}.${k}`).toEqual(v);
          expect(twoStep.config[k], `${cls}.${k} (two-step)`).toEqual(v);
        }
      });
    }
  });
});

describe("scheduler registry", () => {
  const sd = {
    _class_name: "PNDMScheduler",
    beta_end: 0.012,
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    clip_sample: false,
  };

  it("lists every sampler with its A1111 and diffusers names, all constructible", () => {
    const list = listSamplers();
    expect(list.map((s) => s.name)).toEqual(["ddim", "pndm", "euler", "euler-a", "dpmpp-2m", "dpmpp-2m-karras", "lms", "lcm", "ddpm"]);
    for (const s of list) {
      expect(createScheduler(s.name, sd).name).toBe(s.className);
      expect(createScheduler(s.a1111Name, sd).name).toBe(s.className);
      expect(createScheduler(s.className, sd).name).toBe(s.className);
    }
    expect(createScheduler("DPM++ 2M Karras", sd).config.use_karras_sigmas).toBe(true);
    expect(createScheduler("DPM++ 2M", { ...sd, use_karras_sigmas: true }).config.use_karras_sigmas).toBe(false);
  });

  it("finds samplers by our name or A1111's, any case; DEFAULT_SAMPLER is the model's own scheduler", () => {
    expect(findSampler(" dpm++ 2m KARRAS ", listSamplers())?.name).toBe("dpmpp-2m-karras");
    expect(findSampler("EULER-A", listSamplers())?.a1111Name).toBe("Euler a");
    expect(findSampler("EulerDiscreteScheduler", listSamplers())).toBeUndefined(); // class names are not entries
    expect(createScheduler(DEFAULT_SAMPLER, sd).name).toBe("PNDMScheduler");
    expect(createScheduler("Default", { ...sd, _class_name: "DDIMScheduler" }).name).toBe("DDIMScheduler");
    expect(checkSamplerName("DDIMScheduler")).toEqual({ own: false, className: "DDIMScheduler", overrides: {} });
  });

  it("names what a scheduler runs as AUTOMATIC1111 does, from its resolved config", () => {
    const dpm = { ...sd, _class_name: "DPMSolverMultistepScheduler" };
    const name = (sampler: string, cfg: Record<string, unknown>) => a1111SamplerName(createScheduler(sampler, cfg));
    expect(name("default", sd)).toBe("PLMS");
    expect(name("default", dpm)).toBe("DPM++ 2M"); // class defaults: dpmsolver++, order 2, no Karras
    expect(name("default", { ...dpm, algorithm_type: "sde-dpmsolver++", use_karras_sigmas: true })).toBe("DPM++ 2M SDE Karras");
    expect(name("default", { ...dpm, algorithm_type: "dpmsolver", solver_order: 3, final_sigmas_type: "sigma_min" })).toBe("DPM 3M");
    // a named sampler forces its own settings over the model's
    expect(name("dpmpp-2m", { ...dpm, algorithm_type: "sde-dpmsolver++", use_karras_sigmas: true })).toBe("DPM++ 2M");
    expect(name("EulerDiscreteScheduler", { ...sd, use_karras_sigmas: true })).toBe("Euler Karras");
    for (const s of listSamplers()) expect(name(s.name, sd)).toBe(s.a1111Name);
    expect(modelSampler({ ...dpm, use_karras_sigmas: true })).toEqual({
      name: "default",
      a1111Name: "DPM++ 2M Karras",
      className: "DPMSolverMultistepScheduler",
    });
  });

  it("refuses an unknown sampler, listing the valid names", () => {
    expect(() => createScheduler("heun++", sd)).toThrow(ReimagineError);
    expect(() => createScheduler("heun++", sd)).toThrow(/unknown sampler 'heun\+\+'.*euler-a.*"Euler a".*DDIMScheduler/);
    expect(() => schedulerForModel({ ...sd, _class_name: "UniPCMultistepScheduler" })).toThrow(/not supported; pick a sampler/);
  });

  it("refuses img2img settings that leave no denoising step, naming the fix", () => {
    const s = createScheduler("euler", sd);
    expect(() => img2imgTimesteps(s, 20, 0.04)).toThrow(/20 x 0.04 leaves no denoising step: raise strength to at least 0.05 or steps to at least 25$/);
    expect(() => img2imgTimesteps(s, 20, 1.5)).toThrow(/strength must be in \[0, 1\]/);
    expect(() => img2imgTimesteps(s, 20, 0)).toThrow(/strength 0 runs no denoising step/);
    expect(img2imgTimesteps(s, 20, 0.05).timesteps.length).toBe(1);
  });

  it("ancestral steps without a generator or noise fail with a clear error", () => {
    const s = createScheduler("euler-a", sd);
    s.setTimesteps(4);
    const x = new Float32Array(8);
    expect(() => s.step(x, s.timesteps[0], x)).toThrow(/draws noise: pass opts.generator/);
  });

  it("rejects wrongly typed config values", () => {
    expect(() => createScheduler("euler", { ...sd, steps_offset: "1" })).toThrow(/'steps_offset' should be a number/);
  });
});

describe("Gauss-Kronrod quadrature (LMS coefficients)", () => {
  it("is exact for polynomials up to degree 22 in one panel", () => {
    const p = (x: number) => 3 * x ** 22 - x ** 7 + 2;
    const exact = 3 / 23 - 1 / 8 + 2;
    expect(gaussKronrod15(p, 0, 1).value).toBeCloseTo(exact, 14);
  });
  it("adapts to smooth non-polynomials to 1e-10", () => {
    expect(Math.abs(integrate(Math.exp, 0, 3) - (Math.exp(3) - 1))).toBeLessThan(1e-10);
    expect(Math.abs(integrate((x) => 1 / x, 1, 1000) - Math.log(1000))).toBeLessThan(1e-9);
    expect(Math.abs(integrate((x) => x * x, 2, 0) + 8 / 3)).toBeLessThan(1e-14);
  });
});

// Spacing variants the fixture does not cover (it uses "leading"): expected values come from running
// diffusers' numpy set_timesteps code (np.linspace/np.arange/np.interp/_sigma_to_t) on the SD schedule.
describe("timestep spacing and sigma schedules (literal arrays from diffusers' numpy code)", () => {
  const sd = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012, steps_offset: 1, set_alpha_to_one: false, clip_sample: false };
  const close = (a: number[] | undefined, b: number[], atol: number) => expectClose(a ?? [], b, { rtol: 1e-6, atol }, "values");

  it("DDIM linspace rounds half to even; trailing counts down from T-1", () => {
    const a = createScheduler("ddim", { ...sd, timestep_spacing: "linspace" });
    a.setTimesteps(7);
    expect(a.timesteps).toEqual([999, 832, 666, 500, 333, 166, 0]);
    const b = createScheduler("ddim", { ...sd, timestep_spacing: "trailing" });
    b.setTimesteps(7);
    expect(b.timesteps).toEqual([999, 856, 713, 570, 428, 285, 142]);
  });

  it("Euler linspace keeps fractional timesteps and interpolates sigmas", () => {
    const s = createScheduler("euler", { ...sd, timestep_spacing: "linspace" });
    s.setTimesteps(7);
    expect(s.timesteps).toEqual([999, 832.5, 666, 499.5, 333, 166.5, 0]);
    close(
      s.sigmas,
      [14.614646911621094, 5.948918342590332, 2.9183084964752197, 1.6155834197998047, 0.9323583245277405, 0.4935535192489624, 0.029167532920837402, 0],
      0,
    );
    expect(s.initNoiseSigma).toBe(s.sigmas?.[0]);
  });

  it("Euler Karras (trailing) and exponential sigmas map back to fractional timesteps", () => {
    const k = createScheduler("euler", { ...sd, timestep_spacing: "trailing", use_karras_sigmas: true });
    k.setTimesteps(7);
    close(k.timesteps, [999.0, 915.8820190429688, 814.0447387695312, 685.2316284179688, 519.94921875, 322.7149963378906, 142.0], 1e-3);
    close(
      k.sigmas,
      [14.614646911621094, 9.083236694335938, 5.4529314041137695, 3.1447458267211914, 1.730326771736145, 0.9004161357879639, 0.43806231021881104, 0],
      0,
    );
    const e = createScheduler("euler", { ...sd, timestep_spacing: "trailing", use_exponential_sigmas: true });
    e.setTimesteps(3);
    close(e.timesteps, [999.0, 724.6171264648438, 332.0], 1e-3);
    close(e.sigmas, [14.614646911621094, 3.6851251125335693, 0.9292148947715759, 0], 0);
  });

  it("DPM-Solver linspace/trailing grids and exponential sigmas (int64 cast truncates)", () => {
    const l = createScheduler("dpmpp-2m", { ...sd, timestep_spacing: "linspace" });
    l.setTimesteps(7);
    expect(l.timesteps).toEqual([999, 856, 714, 571, 428, 285, 143]);
    close(
      l.sigmas,
      [14.614646911621094, 6.668572902679443, 3.5282046794891357, 2.061671733856201, 1.276235818862915, 0.7900615334510803, 0.4403095841407776, 0],
      0,
    );
    const t = createScheduler("dpmpp-2m", { ...sd, timestep_spacing: "trailing" });
    t.setTimesteps(7);
    expect(t.timesteps).toEqual([999, 856, 713, 570, 428, 285, 142]);
    const e = createScheduler("dpmpp-2m", { ...sd, timestep_spacing: "linspace", use_exponential_sigmas: true });
    e.setTimesteps(7);
    expect(e.timesteps).toEqual([998, 803, 538, 233, 52, 6, 0]);
  });

  it("PNDM with PRK warm-up builds diffusers' 12 Runge-Kutta timesteps and follows step_prk / step_plms", () => {
    const s = createScheduler("pndm", { ...sd, skip_prk_steps: false });
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([901, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1]);
    // Goldens: a float64 numpy transcription of diffusers' PNDMScheduler (set_timesteps, step_prk,
    // step_plms, _get_prev_sample; betas linspace(sqrt(0.00085), sqrt(0.012), 1000)^2) driven by the
    // model output eps = 0.2 x + c t / 1000, which differs at each of the four RK stages, so the
    // 1/6, 1/3, 1/3, 1/6 weights, the stage timesteps and the PLMS history all show in the result.
    const c = [0.1, -0.2, 0.3, 0.05];
    const golden: Record<number, number[]> = {
      4: [1.4131064582778794, -0.6316808722620357, 0.21601062696181245, 2.901085273432663], // first RK step
      8: [1.9079310071982154, -0.7961305774983964, 0.18761872061491644, 3.9736969404971423],
      12: [2.4537274088481316, -0.982200781135534, 0.16488315951639104, 5.152117740984795], // end of PRK
      13: [3.0073281916146737, -1.1739416166077283, 0.14734083603771914, 6.344378862428956], // PLMS, 4 eps in history
      19: [4.441492724555194, -1.6748339163235153, 0.10953369688964788, 9.42889789506447],
    };
    let x: Float32Array = Float32Array.from([1, -0.5, 0.25, 2]);
    s.timesteps.forEach((t, k) => {
      const eps = x.map((v, i) => 0.2 * v + (c[i] * t) / 1000);
      x = s.step(eps, t, x).prevSample;
      if (golden[k + 1]) expectClose(x, golden[k + 1], { rtol: 1e-5, atol: 0 }, `after step ${k + 1}`);
    });
  });
});

// First-order DPM-Solver(++) is DDIM (Lu et al. 2022, §3.3): on the same grid both must agree.
describe("DPM-Solver first order equals DDIM on the same timesteps", () => {
  const sd = { beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012, timestep_spacing: "trailing", clip_sample: false };
  for (const [algorithm_type, final, alphaOne] of [
    ["dpmsolver++", "zero", true],
    ["dpmsolver", "sigma_min", false],
  ] as const) {
    it(`${algorithm_type} (final σ ${final})`, () => {
      const ddim = new DDIMScheduler({ ...sd, set_alpha_to_one: alphaOne });
      const dpm = new DPMSolverMultistepScheduler({ ...sd, solver_order: 1, algorithm_type, final_sigmas_type: final });
      ddim.setTimesteps(10);
      dpm.setTimesteps(10);
      expect(dpm.timesteps).toEqual(ddim.timesteps);
      let a: Float32Array = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i) * 3);
      let b = a;
      ddim.timesteps.forEach((t, k) => {
        const eps = Float32Array.from({ length: 32 }, (_, i) => Math.cos(i * (k + 1)));
        a = ddim.step(eps, t, a).prevSample;
        b = dpm.step(eps, t, b).prevSample;
        expectClose(b, a, { rtol: 1e-4, atol: 1e-5 }, `step ${k}`);
      });
    });
  }
});
