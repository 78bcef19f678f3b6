// Locates the shared diffusers reference fixtures (read in place, never copied).
// REIMAGINE_FIXTURES points elsewhere; default is ../shared/fixtures beside the clone.
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "vitest";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export const fixturesRoot: string = process.env.REIMAGINE_FIXTURES ?? resolve(repoRoot, "..", "shared", "fixtures");

/** Absolute path of a fixture file or folder, e.g. fixture("sd-tiny", "model"). */
export function fixture(...parts: string[]): string {
  return join(fixturesRoot, ...parts);
}

/** True when the named fixture set is present; otherwise prints why tests skip. */
export function haveFixtures(name = "sd-tiny"): boolean {
  const ok = existsSync(join(fixturesRoot, name));
  if (!ok) {
    console.warn(
      `[skip] fixtures '${name}' not found at ${fixturesRoot}: parity tests skipped. ` +
        `Put the shared fixtures beside the clone (../shared/fixtures) or set REIMAGINE_FIXTURES.`,
    );
  }
  return ok;
}

/** Parsed reference.json of a fixture set. */
export function loadReferenceJson(name = "sd-tiny"): any {
  return JSON.parse(readFileSync(join(fixturesRoot, name, "reference", "reference.json"), "utf8"));
}

/** A reference tensor `{tensor, shape, dtype}` from a fixture set's tensors.safetensors.
 *  Minimal float32 (and int64 -> float32) reader for tests (the product reader lives in src/weights). */
export interface RefTensor {
  data: Float32Array;
  shape: number[];
}
const tensorFiles = new Map<string, { header: any; body: Buffer }>();
export function referenceTensor(ref: { tensor: string } | string, name = "sd-tiny"): RefTensor {
  let f = tensorFiles.get(name);
  if (!f) {
    const buf = readFileSync(join(fixturesRoot, name, "reference", "tensors.safetensors"));
    const n = Number(buf.readBigUInt64LE(0));
    f = { header: JSON.parse(buf.subarray(8, 8 + n).toString("utf8")), body: buf.subarray(8 + n) };
    tensorFiles.set(name, f);
  }
  const key = typeof ref === "string" ? ref : ref.tensor;
  const h = f.header[key];
  if (!h) throw new Error(`reference tensor '${key}' not in ${name}/reference/tensors.safetensors`);
  const [a, b] = h.data_offsets as [number, number];
  if (h.dtype === "I64") {
    // uint8 pictures and masks stored as int64: exact in float32
    const ints = new BigInt64Array(f.body.buffer.slice(f.body.byteOffset + a, f.body.byteOffset + b));
    return { data: Float32Array.from(ints, Number), shape: h.shape };
  }
  if (h.dtype !== "F32") throw new Error(`reference tensor '${key}' has dtype ${h.dtype}, expected F32 or I64`);
  const copy = new Float32Array((b - a) / 4);
  new Uint8Array(copy.buffer).set(f.body.subarray(a, b));
  return { data: copy, shape: h.shape };
}

/** Largest |a-b| over two equal-length arrays (throws on a length mismatch). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Our sampler name for a reference pipeline case's scheduler (undefined = the model's own, PNDM). */
export function referenceSampler(c: any): string | undefined {
  const src: string = c.scheduler.source;
  if (src.startsWith("model default")) return undefined;
  if (c.scheduler.class === "DDIMScheduler") return "ddim";
  if (c.scheduler.class === "EulerAncestralDiscreteScheduler") return "euler-a";
  if (c.scheduler.class === "DPMSolverMultistepScheduler") return src.includes("use_karras_sigmas': True") ? "dpmpp-2m-karras" : "dpmpp-2m";
  throw new Error(`unmapped scheduler ${src}`);
}

/** The run settings of a reference pipeline case (everything but the image), in Img2ImgOptions terms. */
export function referenceRunSettings(c: any) {
  const inp = c.inputs;
  return {
    prompt: inp.prompt as string,
    negativePrompt: inp.negative_prompt as string | undefined,
    strength: inp.strength as number,
    steps: inp.num_inference_steps as number,
    guidanceScale: inp.guidance_scale as number,
    seed: inp.generator.seed as number,
    sampler: referenceSampler(c),
  };
}

/**
 * describe() for suites that need a fixture set. Vitest runs the body of a skipped suite to collect
 * its tests, so fixture I/O written there would fail without the fixtures: this registers the suite
 * only when the set exists, else one skipped placeholder (the skip message comes from haveFixtures).
 */
export function describeWithFixtures(name: string, fn: () => void, set = "sd-tiny"): void {
  if (haveFixtures(set)) describe(name, fn);
  else describe.skip(name, () => it(`needs the shared fixtures '${set}'`, () => undefined));
}
