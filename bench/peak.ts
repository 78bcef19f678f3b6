// This machine's fp32 MatMul peak through ONNX Runtime, with the thread count the models use:
// one [n, n] x [n, n] MatMul whose right operand is a constant (pre-packed by ORT, as model
// weights are), run repeatedly; the fastest run gives the peak GFLOP/s.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Graph } from "../src/graph/builder.js";
import { ModelSession } from "../src/runtime.js";
import { RandomWeights } from "../src/weights/random.js";
import { fmtMs, log, median, now, peakRssMB } from "./measure.js";
import type { PeakResult } from "./types.js";

/** Keeps running until both limits are met (the MatMul takes ~0.1-1 s on a laptop-class CPU). */
const MIN_RUNS = 5;
const MIN_TOTAL_MS = 3000;
const MAX_RUNS = 50;

export async function measureMatMulPeak(threads: number, n = 2048): Promise<PeakResult> {
  const g = new Graph(new RandomWeights(0), "MatMulPeak");
  const a = g.input("a", "float32", [n, n]);
  g.output(g.matmul(a, g.param("b", [n, n])), "y"); // [n, n]
  const dir = mkdtempSync(join(tmpdir(), "reimagine-bench-peak-"));
  try {
    const session = await ModelSession.load(g.save(dir), { threads });
    const feeds = { a: { data: new Float32Array(n * n).fill(0.5), dims: [n, n] } };
    let t = now();
    await session.run(feeds);
    const warmupMs = now() - t;
    const runsMs: number[] = [];
    while (runsMs.length < MAX_RUNS && (runsMs.length < MIN_RUNS || runsMs.reduce((x, y) => x + y, 0) < MIN_TOTAL_MS)) {
      t = now();
      await session.run(feeds);
      runsMs.push(now() - t);
    }
    await session.release();
    const flops = 2 * n * n * n;
    const minMs = Math.min(...runsMs);
    log(`peak: ${runsMs.length} MatMul runs of ${n}^3, best ${fmtMs(minMs)}`);
    return {
      what: "peak",
      m: n,
      k: n,
      n,
      flops,
      gflops: flops / minMs / 1e6,
      warmupMs,
      runsMs,
      medianMs: median(runsMs),
      minMs,
      peakRssMB: peakRssMB(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
