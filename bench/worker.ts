// Child process of the benchmark (forked by bench.ts, one per measurement, so each first run and
// peak RSS is its own): reads its Task from argv[2] as JSON, measures, and sends back one WorkerReply.
import { measureCliRow } from "./cli.js";
import { measureImg2Img } from "./img2img.js";
import { buildGraphs, measureGraph, profileGraph } from "./measure.js";
import { measurePeak } from "./peak.js";
import type { GraphComponent } from "./sd15.js";
import type { Task, WorkerReply } from "./types.js";

async function main(task: Task): Promise<WorkerReply> {
  try {
    const w = task.what;
    if (w === "peak") return { ok: true, result: await measurePeak(task.threads) };
    if (w === "build") return { ok: true, result: { built: await buildGraphs(task) } };
    if (w === "img2img") return { ok: true, result: await measureImg2Img(task) };
    if (w === "img2img-cli" || w === "img2img-turbo-cli") return { ok: true, result: await measureCliRow(w, task) };
    if (w.startsWith("profile-")) return { ok: true, result: { profile: await profileGraph(w.slice("profile-".length) as GraphComponent, task) } };
    return { ok: true, result: await measureGraph(w as GraphComponent, task) };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
}

if (!process.send) {
  console.error("bench/worker.ts is started by bench/bench.ts (npm run bench), not directly");
  process.exit(2);
}
const reply = await main(JSON.parse(process.argv[2]) as Task);
process.send(reply, () => process.exit(0));
