// The queue-mode options: `reimagine worker` parsing and `reimagine serve --queue` (one-line usage errors).
import { describe, expect, it } from "vitest";
import { parseServeQueue, parseWorkerArgs } from "./args-queue.js";

describe("parseWorkerArgs", () => {
  it("reads every option; defaults: concurrency 1, 10 s locks, 5 s stalled checks, auto preview VAE", () => {
    expect(parseWorkerArgs(["--queue", "redis://127.0.0.1:6379", "-m", "m1"])).toMatchObject({
      queue: "redis://127.0.0.1:6379",
      model: "m1",
      concurrency: 1,
      lockMs: 10_000,
      stalledCheckMs: 5_000,
      previewVae: "auto",
      help: false,
    });
    const f = parseWorkerArgs([
      "--queue",
      "redis://h:1/2",
      "--concurrency",
      "3",
      "--lock-s",
      "2.5",
      "--stalled-check-s",
      "1",
      "--preview-vae",
      "none",
      "--name",
      "w9",
    ]);
    expect(f).toMatchObject({ concurrency: 3, lockMs: 2_500, stalledCheckMs: 1_000, previewVae: undefined, name: "w9" });
  });

  it("refuses a missing or malformed --queue, bad numbers, unknown options and providers with one line", () => {
    const bad: [string[], RegExp][] = [
      [["--model", "m"], /^--queue is required/],
      [["--queue", "http://h:6379"], /scheme 'http'; only redis and rediss/],
      [["--queue", "redis://h:6379/db"], /only a database number/],
      [["--queue", "redis://h", "--concurrency", "0"], /--concurrency must be a whole number from 1 to 64 \(got '0'\)/],
      [["--queue", "redis://h", "--lock-s", "x"], /--lock-s must be a number/],
      [["--queue", "redis://h", "--provider", "tpu"], /--provider must be one of cpu, cuda, webgpu \(got 'tpu'\)/],
      [["--queue", "redis://h", "--bogus"], /see reimagine worker --help$/],
    ];
    for (const [args, re] of bad) {
      let msg = "";
      try {
        parseWorkerArgs(args);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg, args.join(" ")).toMatch(re);
      expect(msg).not.toContain("\n");
    }
    expect(parseWorkerArgs(["--help"]).help).toBe(true); // --help needs no --queue
  });
});

describe("parseServeQueue", () => {
  it("is undefined without --queue; reads the URL and --result-ttl-s", () => {
    expect(parseServeQueue({}, [])).toBeUndefined();
    expect(parseServeQueue({ queue: "redis://127.0.0.1:6379", "result-ttl-s": "60" }, ["--queue", "redis://127.0.0.1:6379"])).toEqual({
      url: "redis://127.0.0.1:6379",
      resultTtlS: 60,
    });
  });

  it("refuses model-loading flags with --queue (they belong to the worker) and --result-ttl-s without it", () => {
    const q = { queue: "redis://127.0.0.1:6379" };
    expect(() => parseServeQueue(q, ["--queue", q.queue, "--threads=4"])).toThrow(
      /--threads loads a model: with --queue this process loads none; pass it to reimagine worker/,
    );
    expect(() => parseServeQueue(q, ["--keep-results-mb", "9"])).toThrow(/--keep-results-mb is for the embedded queue/);
    expect(() => parseServeQueue(q, ["--refiner", "r"])).toThrow(/--refiner is not available with --queue yet/);
    expect(() => parseServeQueue(q, ["--controlnet-dir=cn"])).toThrow(/--controlnet-dir is not available with --queue yet/);
    expect(() => parseServeQueue({ "result-ttl-s": "5" }, [])).toThrow(/--result-ttl-s applies with --queue/);
    expect(() => parseServeQueue({ queue: "127.0.0.1:6379" }, [])).toThrow(/give redis:\/\/HOST:PORT\[\/DB\]/);
  });
});
