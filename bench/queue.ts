// Figures for the queue mode (issue 17), printed, never asserted: jobs per minute with 1 and 2
// `reimagine worker` processes behind one `reimagine serve --queue` on a real redis-server, beside the
// embedded `reimagine serve`, all on the sd-tiny fixture model (4 clients sending A1111 img2img); and
// the queue's overhead per job: one client alternating the same native job between the embedded server
// and Redis + 1 worker (same model, threads and request), the median paired difference of the round trip
// minus the job's run time.
//   npx tsx bench/queue.ts [--jobs 20] [--clients 4] [--steps 6] [--threads 1] [--json docs/perf/issue17-queue.json]
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { fixture } from "../test/fixtures.js";
import { type Proc, spawnCli, startApi, startWorker } from "../test/redis-cluster.js";
import { startRedis } from "../test/redis-server.js";

const { values: opts } = parseArgs({
  options: {
    jobs: { type: "string", default: "20" },
    clients: { type: "string", default: "4" },
    steps: { type: "string", default: "6" },
    threads: { type: "string", default: "1" },
    json: { type: "string" },
  },
});
const JOBS = Number(opts.jobs);
const CLIENTS = Number(opts.clients);
const model = fixture("sd-tiny", "model");
const image = readFileSync(fixture("sd-tiny", "reference", "input.png")).toString("base64");
const workerFlags = ["--threads", opts.threads!, "--preview-vae", "none"];
const body = (seed: number) =>
  JSON.stringify({ init_images: [image], prompt: "a red fox", seed, steps: Number(opts.steps), denoising_strength: 1, width: 64, height: 64 });

/** One A1111 img2img round trip; its milliseconds. */
async function request(url: string, seed: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}sdapi/v1/img2img`, { method: "POST", headers: { "content-type": "application/json" }, body: body(seed) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  await res.arrayBuffer();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** `jobs` requests from `clients` concurrent clients: jobs per minute and latencies. */
async function throughput(url: string, jobs: number, clients: number) {
  await request(url, 1); // warm-up: first run of the model's sessions
  let next = 0;
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < jobs; i = next++) lat.push(await request(url, 100 + i));
    }),
  );
  const wallMs = performance.now() - t0;
  return { jobs, clients, wallMs: Math.round(wallMs), jobsPerMin: +((jobs * 60_000) / wallMs).toFixed(1), medianLatencyMs: Math.round(median(lat)) };
}

/**
 * One native job from submit to its finished status (polled every 10 ms): the round trip, and the time
 * the job itself ran (its startedAt to finishedAt, as the job view reports them).
 */
async function nativeTrip(url: string, seed: number): Promise<{ tripMs: number; runMs: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}v1/img2img`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ image, prompt: "a red fox", seed, steps: Number(opts.steps), strength: 1, width: 64, height: 64 }),
  });
  if (res.status !== 202) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  for (;;) {
    const v = (await (await fetch(`${url}v1/jobs/${id}`)).json()) as { status: string; startedAt: string; finishedAt: string };
    if (v.status === "succeeded") return { tripMs: performance.now() - t0, runMs: Date.parse(v.finishedAt) - Date.parse(v.startedAt) };
    if (v.status !== "queued" && v.status !== "running") throw new Error(`job ${v.status}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The queue's cost per job: one client sends the same native job alternately to the embedded server and
 * to the queue (1 worker, nothing else running), `n` pairs, so the machine's load drifts alike for both.
 * Overhead = the median paired difference of (round trip - the job's run), which keeps the model's own
 * time (noisy under load) out; the queue's writes inside the run (input fetch, result PNGs) count as run.
 */
async function overhead(embeddedUrl: string, queueUrl: string, n: number) {
  await nativeTrip(embeddedUrl, 1);
  await nativeTrip(queueUrl, 1);
  const e: { tripMs: number; runMs: number }[] = [];
  const q: typeof e = [];
  for (let i = 0; i < n; i++) {
    e.push(await nativeTrip(embeddedUrl, 200 + i));
    q.push(await nativeTrip(queueUrl, 200 + i));
  }
  const med = (xs: number[]) => Math.round(median(xs));
  return {
    pairs: n,
    embedded: { medianRoundTripMs: med(e.map((x) => x.tripMs)), medianRunMs: med(e.map((x) => x.runMs)) },
    queue: { medianRoundTripMs: med(q.map((x) => x.tripMs)), medianRunMs: med(q.map((x) => x.runMs)) },
    /** Round trip minus the job's own run, queue minus embedded (paired): what the queue adds around a job. */
    queueOverheadMsPerJob: med(q.map((x, i) => x.tripMs - x.runMs - (e[i].tripMs - e[i].runMs))),
    /** Round trip, queue minus embedded (paired): includes any difference in the runs themselves. */
    roundTripDifferenceMs: med(q.map((x, i) => x.tripMs - e[i].tripMs)),
  };
}

const procs: Proc[] = [];
const redis = await startRedis();
const results: Record<string, unknown> = {
  load1Before: loadavg()[0],
  jobs: JOBS,
  clients: CLIENTS,
  steps: Number(opts.steps),
  threadsPerWorker: Number(opts.threads),
};
try {
  // the embedded server (the model in its child process) and the queue (1 API, 1 worker), side by side
  const embedded = spawnCli(["serve", "--model", model, "--port", "0", ...workerFlags]);
  procs.push(embedded);
  const api = await startApi(redis.url, ["--queue-size", "64"]);
  procs.push(api);
  procs.push(await startWorker(redis.url, model, "b1", workerFlags));
  const eUrl = (await embedded.waitFor(/serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/))[1];
  for (;;) {
    const models = (await (await fetch(`${api.url}v1/models`)).json()) as unknown[];
    if (models.length) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  results.overhead = await overhead(eUrl, api.url, JOBS);
  results.embeddedThroughput = await throughput(eUrl, JOBS, CLIENTS);
  await embedded.stop();
  results.queue1Worker = await throughput(api.url, JOBS, CLIENTS);
  procs.push(await startWorker(redis.url, model, "b2", workerFlags));
  await new Promise((r) => setTimeout(r, 1500)); // the API sees the second worker's heartbeat
  results.queue2Workers = await throughput(api.url, JOBS, CLIENTS);
  results.load1After = loadavg()[0];
} finally {
  await Promise.all(procs.map((p) => p.stop("SIGTERM")));
  await redis.close();
}
console.log(JSON.stringify(results, null, 2));
if (opts.json) writeFileSync(opts.json, `${JSON.stringify(results, null, 2)}\n`);
