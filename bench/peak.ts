// This machine's fp32 peak through ONNX Runtime, with the thread count the models use: square MatMuls
// (right operand a prepacked constant, as model weights) and 3x3 convolutions at the shapes of the SD
// UNet and VAE, several sizes each, best of N runs. The best GFLOP/s of all is the yardstick that
// every component's "% of peak" divides by.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Graph } from "../src/graph/builder.js";
import { conv2d } from "../src/graph/layers.js";
import { ModelSession, type TensorData } from "../src/runtime.js";
import { RandomWeights } from "../src/weights/random.js";
import { fmtMs, log, median, now } from "./measure.js";
import type { PeakKernel, PeakResult } from "./types.js";

/** Each shape runs until both limits are met; the fastest run counts. */
const MIN_RUNS = 5;
const MIN_TOTAL_MS = 2000;
const MAX_RUNS = 40;

const MATMUL_SIZES = [1024, 2048, 3072];
/** [channels, side] of 3x3 same-padding convs: UNet levels 0 and 2 at 512x512, VAE decoder level 1. */
const CONV_SHAPES: [number, number][] = [
  [320, 64],
  [1280, 16],
  [512, 128],
];

async function best(label: string, g: Graph, feeds: Record<string, TensorData>, flops: number, threads: number, dir: string): Promise<PeakKernel> {
  const session = await ModelSession.load(g.save(join(dir, label)), { threads, prepack: true });
  try {
    await session.run(feeds); // warm-up
    const runsMs: number[] = [];
    while (runsMs.length < MAX_RUNS && (runsMs.length < MIN_RUNS || runsMs.reduce((x, y) => x + y, 0) < MIN_TOTAL_MS)) {
      const t = now();
      await session.run(feeds);
      runsMs.push(now() - t);
    }
    const minMs = Math.min(...runsMs);
    log(`peak: ${label}: ${runsMs.length} runs, best ${fmtMs(minMs)}, ${(flops / minMs / 1e6).toFixed(1)} GFLOP/s`);
    return { label, flops, gflops: flops / minMs / 1e6, runsMs, medianMs: median(runsMs), minMs };
  } finally {
    await session.release();
  }
}

/** MatMul [n, n] x [n, n] (constant right operand). */
function matmulGraph(n: number): Graph {
  const g = new Graph(new RandomWeights(0), "MatMulPeak");
  g.output(g.matmul(g.input("a", "float32", [n, n]), g.param("b", [n, n])), "y"); // [n, n]
  return g;
}

/** Conv 3x3, C -> C channels, padding 1, on [1, C, S, S]. */
function convGraph(c: number, s: number): Graph {
  const g = new Graph(new RandomWeights(0), "ConvPeak");
  g.output(conv2d(g, "conv", g.input("x", "float32", [1, c, s, s]), c, c, 3, { padding: 1 }), "y"); // [1, C, S, S]
  return g;
}

export async function measurePeak(threads: number): Promise<PeakResult> {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-peak-"));
  try {
    const matmul: PeakKernel[] = [];
    for (const n of MATMUL_SIZES) {
      const feeds = { a: { data: new Float32Array(n * n).fill(0.5), dims: [n, n] } };
      matmul.push(await best(`matmul-${n}`, matmulGraph(n), feeds, 2 * n ** 3, threads, dir));
    }
    const conv: PeakKernel[] = [];
    for (const [c, s] of CONV_SHAPES) {
      const feeds = { x: { data: new Float32Array(c * s * s).fill(0.5), dims: [1, c, s, s] } };
      conv.push(await best(`conv3x3-${c}x${s}x${s}`, convGraph(c, s), feeds, 2 * c * c * 9 * s * s, threads, dir));
    }
    const top = (ks: PeakKernel[]) => ks.reduce((a, b) => (b.gflops > a.gflops ? b : a));
    const m = top(matmul);
    const c = top(conv);
    return { what: "peak", gflops: Math.max(m.gflops, c.gflops), matmulGflops: m.gflops, convGflops: c.gflops, matmul, conv };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
