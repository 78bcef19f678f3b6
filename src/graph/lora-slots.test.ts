// LoRA slots on a small graph of each layer kind (Linear on [B, L, C] and [B, C], 3x3 stride-2 and 1x1 Conv2d):
// with LoRA feeds the graph equals the same graph built on merged weights (fp32, 1e-5), rank 0 and a zero multiplier
// equal the plain graph bit for bit, two LoRAs stack, dyn limits the rank, and the branch composes with int8.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { maxAbsDiff } from "../../test/fixtures.js";
import { loraFeeds } from "../lora/feeds.js";
import { FusedLoraWeights, type LoraLayer, type ResolvedLora } from "../lora/resolve.js";
import { ModelSession } from "../runtime.js";
import { MemoryWeights } from "../weights/memory.js";
import type { WeightSource } from "../weights/source.js";
import { Graph } from "./builder.js";
import { conv2d, linear } from "./layers.js";
import { loraSlotsOf, slotsFromInputs, useLoraSlots } from "./lora-slots.js";
import { useInt8Linear, useInt8PointwiseConv } from "./quantize.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-lora-slots-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** Deterministic pseudo-random values in [-1, 1). */
function rand(len: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

const LAYERS: Record<string, number[]> = { conv: [6, 3, 3, 3], pw: [5, 6, 1, 1], lin: [4, 5], tproj: [4, 3] };
const weights = new MemoryWeights(
  Object.fromEntries(
    Object.entries(LAYERS).flatMap(([m, shape], i) => [
      [
        `${m}.weight`,
        {
          shape: [...shape],
          data: rand(
            shape.reduce((a, b) => a * b, 1),
            i + 1,
          ),
        },
      ],
      [`${m}.bias`, { shape: [shape[0]], data: rand(shape[0], i + 11) }],
    ]),
  ),
);

/** conv 3x3/2 -> 1x1 conv -> [B, HW, C] -> linear; plus a linear on a [B, 3] input (like time_emb_proj). */
function build(w: WeightSource, opts: { slots?: boolean; int8?: boolean; int8Conv?: boolean } = {}): Graph {
  const g = new Graph(w, "t");
  if (opts.int8) useInt8Linear(g, () => true);
  if (opts.int8Conv) useInt8PointwiseConv(g);
  if (opts.slots) useLoraSlots(g);
  const x = g.input("x", "float32", [2, 3, 8, 8]);
  const t = g.input("t", "float32", [2, 3]);
  let h = conv2d(g, "conv", x, 3, 6, 3, { stride: 2, padding: 1 }); // [2, 6, 4, 4]
  h = conv2d(g, "pw", h, 6, 5, 1); // [2, 5, 4, 4]
  h = g.transpose(g.reshape(h, [2, 5, 16]), [0, 2, 1]); // [2, 16, 5]
  g.output(linear(g, "lin", h, 5, 4), "y");
  g.output(linear(g, "tproj", t, 3, 4), "yt");
  return g;
}

async function session(g: Graph): Promise<ModelSession> {
  return ModelSession.load(g.save(join(dir, `g${n++}`)), { threads: 1 });
}

const inputs = { x: { data: rand(2 * 3 * 64, 99), dims: [2, 3, 8, 8] }, t: { data: rand(6, 98), dims: [2, 3] } };
async function run(s: ModelSession, feeds = {}) {
  const out = await s.run({ ...inputs, ...feeds });
  return { y: out.y.data as Float32Array, yt: out.yt.data as Float32Array };
}

/** A random LoRA over all four layers with rank `r` and scale alpha/r = 0.5. */
function randomLora(name: string, r: number, seed: number): ResolvedLora {
  const layers = new Map<string, LoraLayer>();
  for (const [i, [m, shape]] of Object.entries(LAYERS).entries()) {
    const [outF, inF] = shape;
    const kernel = shape.length === 4 ? shape[2] : 1;
    layers.set(m, { module: m, down: rand(r * inF * kernel * kernel, seed + i), up: rand(outF * r, seed + 50 + i), rank: r, inF, outF, kernel, scale: 0.5 });
  }
  return { name, path: `${name}.safetensors`, fingerprint: name, layers: { unet: layers } };
}

describe("LoRA slots", () => {
  it("exposes a down/up input pair per layer and reads the slots back from the input names", async () => {
    const g = build(weights, { slots: true });
    const s = await session(g);
    const slots = slotsFromInputs(s.inputNames, (k) => weights.info(k)?.shape);
    expect(slots).toEqual([
      { module: "conv", kind: "conv2d", inF: 3, outF: 6, kernel: 3 },
      { module: "pw", kind: "conv2d", inF: 6, outF: 5, kernel: 1 },
      { module: "lin", kind: "linear", inF: 5, outF: 4, kernel: 1 },
      { module: "tproj", kind: "linear", inF: 3, outF: 4, kernel: 1 },
    ]);
    expect(loraSlotsOf(g)).toEqual(slots);
    expect(s.inputNames).toContain("conv.lora_down");
    await s.release();
  });

  it("equals the merged-weight graph; rank 0 and multiplier 0 equal the plain graph bit for bit", async () => {
    const plain = await session(build(weights));
    const slotted = await session(build(weights, { slots: true }));
    const slots = slotsFromInputs(slotted.inputNames, (k) => weights.info(k)?.shape);
    const a = randomLora("a", 3, 1);
    const b = randomLora("b", 2, 7);
    const base = await run(plain);

    expect(await run(slotted, loraFeeds(slots, "unet", []))).toEqual(base); // rank 0 everywhere
    expect(await run(slotted, loraFeeds(slots, "unet", [{ lora: a, multiplier: 0 }]))).toEqual(base);
    const zeroUp = loraFeeds(slots, "unet", [{ lora: a, multiplier: 1 }]);
    for (const [k, v] of Object.entries(zeroUp)) if (k.endsWith(".lora_up")) v.data.fill(0); // rank 3, all-zero up
    expect(await run(slotted, zeroUp)).toEqual(base);

    for (const active of [
      [{ lora: a, multiplier: 0.8 }],
      [
        { lora: a, multiplier: 1 },
        { lora: b, multiplier: -0.6 },
      ],
    ]) {
      const merged = await session(build(new FusedLoraWeights(weights, "unet", active)));
      const want = await run(merged);
      const got = await run(slotted, loraFeeds(slots, "unet", active));
      expect(maxAbsDiff(got.y, want.y)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.yt, want.yt)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.y, base.y)).toBeGreaterThan(1e-2); // the LoRA does change the output
      await merged.release();
    }
    await Promise.all([plain.release(), slotted.release()]);
  });

  it("dyn keeps the first ranks with the full-rank scale", async () => {
    const slotted = await session(build(weights, { slots: true }));
    const slots = slotsFromInputs(slotted.inputNames, (k) => weights.info(k)?.shape);
    const a = randomLora("a", 3, 1);
    const cut: ResolvedLora = {
      ...a,
      layers: {
        unet: new Map(
          [...a.layers.unet!].map(([m, l]) => [
            m,
            {
              ...l,
              rank: 2,
              down: l.down.slice(0, (l.down.length / 3) * 2),
              up: Float32Array.from({ length: l.outF * 2 }, (_, i) => l.up[Math.floor(i / 2) * 3 + (i % 2)]),
            },
          ]),
        ),
      },
    };
    const feeds = loraFeeds(slots, "unet", [{ lora: a, multiplier: 1, dynDim: 2 }]);
    expect(feeds["conv.lora_down"].dims).toEqual([2, 3, 3, 3]);
    expect(feeds).toEqual(loraFeeds(slots, "unet", [{ lora: cut, multiplier: 1 }]));
    await slotted.release();
  });

  it("adds the branch to an int8 base layer (composes with Graph.linearHook)", async () => {
    const int8 = await session(build(weights, { int8: true }));
    const both = await session(build(weights, { int8: true, slots: true }));
    const fp32 = await session(build(weights, { slots: true }));
    const slots = slotsFromInputs(both.inputNames, (k) => weights.info(k)?.shape);
    const active = [{ lora: randomLora("a", 3, 1), multiplier: 1 }];
    expect(await run(both, loraFeeds(slots, "unet", []))).toEqual(await run(int8));
    // the time projection sees the raw input: its branch adds exactly what it adds in fp32
    const branch = (o: { yt: Float32Array }, p: { yt: Float32Array }) => o.yt.map((v, i) => v - p.yt[i]);
    const withInt8 = branch(await run(both, loraFeeds(slots, "unet", active)), await run(int8));
    const withFp32 = branch(await run(fp32, loraFeeds(slots, "unet", active)), await run(fp32, loraFeeds(slots, "unet", [])));
    expect(maxAbsDiff(withInt8, withFp32)).toBeLessThan(1e-5);
    await Promise.all([int8.release(), both.release(), fp32.release()]);
  });

  it("adds the branch to an int8 pointwise conv (composes with Graph.convHook)", async () => {
    const int8 = await session(build(weights, { int8Conv: true }));
    const both = await session(build(weights, { int8Conv: true, slots: true }));
    const slots = slotsFromInputs(both.inputNames, (k) => weights.info(k)?.shape);
    expect(slots.map((s) => s.module).sort()).toEqual(["conv", "lin", "pw", "tproj"]);
    expect(await run(both, loraFeeds(slots, "unet", []))).toEqual(await run(int8));
    // a LoRA on the 1x1 conv alone changes the output
    const onlyPw = randomLora("a", 3, 1);
    for (const m of ["conv", "lin", "tproj"]) onlyPw.layers.unet!.delete(m);
    const y = (await run(both, loraFeeds(slots, "unet", [{ lora: onlyPw, multiplier: 1 }]))).y;
    expect(maxAbsDiff(y, (await run(int8)).y)).toBeGreaterThan(1e-3);
    await Promise.all([int8.release(), both.release()]);
  });

  it("refuses feeds for a LoRA layer the graph has no slot for", () => {
    const a = randomLora("a", 1, 1);
    expect(() => loraFeeds([{ module: "lin", kind: "linear", inF: 5, outF: 4, kernel: 1 }], "unet", [{ lora: a, multiplier: 1 }])).toThrow(
      /targets 'conv', which has no LoRA slot/,
    );
  });
});
