// JobQueue: order, bound, cancel (queued and running), failures, Retry-After.
import { describe, expect, it } from "vitest";
import { ReimagineError } from "../errors.js";
import { JobQueue, QueueFullError, type JobContext } from "./queue.js";

/** Work that runs `steps` steps of `ms` each, honouring the signal, and records when it ran. */
function stepped(log: string[], name: string, steps = 3, ms = 5) {
  return async ({ signal, progress }: JobContext) => {
    log.push(`start ${name}`);
    for (let s = 1; s <= steps; s++) {
      await new Promise((r) => setTimeout(r, ms));
      if (signal.aborted) throw Object.assign(new Error("aborted"), { name: "AbortError" });
      progress(s, steps);
    }
    log.push(`end ${name}`);
    return name;
  };
}

describe("JobQueue", () => {
  it("runs jobs one at a time, in submission order", async () => {
    const q = new JobQueue({ maxSize: 8 });
    const log: string[] = [];
    const jobs = ["a", "b", "c"].map((n) => q.submit("t", stepped(log, n)));
    expect(q.position(jobs[1].id)).toBe(1);
    expect(q.position(jobs[2].id)).toBe(2);
    await Promise.all(jobs.map((j) => j.done));
    expect(log).toEqual(["start a", "end a", "start b", "end b", "start c", "end c"]);
    expect(jobs.map((j) => [j.status, j.result, j.step, j.total])).toEqual([
      ["succeeded", "a", 3, 3],
      ["succeeded", "b", 3, 3],
      ["succeeded", "c", 3, 3],
    ]);
  });

  it("refuses jobs beyond maxSize with a Retry-After estimate, and accepts again once there is room", async () => {
    const q = new JobQueue({ maxSize: 2 });
    const log: string[] = [];
    const a = q.submit("t", stepped(log, "a"));
    q.submit("t", stepped(log, "b"));
    let err: unknown;
    try {
      q.submit("t", stepped(log, "c"));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as QueueFullError).retryAfterS).toBeGreaterThanOrEqual(1);
    await a.done;
    expect(() => q.submit("t", stepped(log, "d"))).not.toThrow();
    await q.idle();
    expect(log).not.toContain("start c");
  });

  it("cancels a queued job (removed, never started) and a running job (aborted, result discarded)", async () => {
    const q = new JobQueue();
    const log: string[] = [];
    const a = q.submit("t", stepped(log, "a", 50, 5));
    const b = q.submit("t", stepped(log, "b"));
    const c = q.submit("t", stepped(log, "c"));
    expect(q.cancel(b.id)).toBe("cancelled");
    expect(b.status).toBe("cancelled");
    expect(q.position(c.id)).toBe(1);
    while (a.step < 2) await new Promise((r) => setTimeout(r, 2));
    const t0 = performance.now();
    expect(q.cancel(a.id)).toBe("cancelled");
    await a.done;
    expect(performance.now() - t0).toBeLessThan(200); // within about one step
    expect(a.status).toBe("cancelled");
    expect(a.interrupted).toBe(true);
    expect(a.result).toBeUndefined();
    await c.done;
    expect(c.status).toBe("succeeded");
    expect(log).toEqual(["start a", "start c", "end c"]);
    expect(q.cancel(c.id)).toBe("finished");
    expect(q.cancel("nope")).toBe("not-found");
  });

  it("discards the result of an interrupted job that ignored its signal", async () => {
    const q = new JobQueue();
    const job = q.submit("t", async () => {
      await new Promise((r) => setTimeout(r, 20));
      return "late";
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(q.interrupt()?.id).toBe(job.id);
    await job.done;
    expect(job.status).toBe("cancelled");
    expect(job.result).toBeUndefined();
    expect(q.interrupt()).toBeUndefined();
  });

  it("keeps running after a failing job; user errors keep their message, others are hidden", async () => {
    const logged: unknown[] = [];
    const q = new JobQueue({ log: (_m, e) => logged.push(e) });
    const bad = q.submit("t", async () => {
      throw new ReimagineError("strength must be between 0 and 1 (got 2)");
    });
    const crash = q.submit("t", async () => {
      throw new TypeError("x is undefined");
    });
    const ok = q.submit("t", async () => "fine");
    await q.idle();
    expect(bad.status).toBe("failed");
    expect(bad.error).toEqual({ code: "invalid_input", message: "strength must be between 0 and 1 (got 2)" });
    expect(crash.status).toBe("failed");
    expect(crash.error?.code).toBe("internal_error");
    expect(crash.error?.message).not.toContain("undefined");
    expect(logged).toHaveLength(1);
    expect(ok.status).toBe("succeeded");
  });

  it("notifies subscribers of status and progress", async () => {
    const q = new JobQueue();
    const job = q.submit("t", stepped([], "a", 3, 1));
    const seen: string[] = [];
    q.subscribe(job.id, (e) => seen.push(e.type === "progress" ? `p${e.job.step}` : e.job.status));
    await job.done;
    expect(seen).toEqual(["running", "p1", "p2", "p3", "succeeded"]);
  });

  it("forgets the oldest finished jobs beyond keepFinished", async () => {
    const q = new JobQueue({ keepFinished: 2 });
    const jobs = [1, 2, 3].map(() => q.submit("t", async () => 1));
    await q.idle();
    expect(q.get(jobs[0].id)).toBeUndefined();
    expect(q.get(jobs[2].id)?.status).toBe("succeeded");
  });
});
