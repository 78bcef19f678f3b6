// Child process of the benchmark (forked by bench.ts, one per component, so each peak RSS is its
// own): reads its Task from argv[2] as JSON, measures, and sends back one WorkerReply.
import { measureImg2Img } from "./img2img.js";
import { measureGraph } from "./measure.js";
import { measureMatMulPeak } from "./peak.js";
import type { Task, WorkerReply } from "./types.js";

async function main(task: Task): Promise<WorkerReply> {
  try {
    if (task.what === "peak") return { ok: true, result: await measureMatMulPeak(task.threads) };
    if (task.what === "img2img") return { ok: true, result: await measureImg2Img(task) };
    return { ok: true, result: await measureGraph(task.what, task) };
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
