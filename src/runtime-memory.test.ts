// SessionPool: the lean policy drops idle sessions least recently used first until the resident set
// fits under weights + headroom; "keep" sessions and busy ones are never dropped; re-created sessions
// are judged by the footprint they had before. RSS is simulated: each fake session adds its weights
// on load and its activations on its first run, and gives both back when dropped.
import { describe, expect, it } from "vitest";
import { type MemoryPolicy, type PooledSession, SessionPool } from "./runtime-memory.js";

const MB = 2 ** 20;

class Fake implements PooledSession {
  alive = true;
  ranSinceLoad = false;
  drops = 0;
  constructor(
    readonly name: string,
    readonly weightBytes: number,
    readonly activations: number,
    private readonly mem: { rss: number },
    readonly policy: MemoryPolicy = "lean",
  ) {
    mem.rss += weightBytes;
  }
  async drop(): Promise<void> {
    this.alive = false;
    this.drops++;
    this.mem.rss -= this.weightBytes + (this.ranSinceLoad ? this.activations : 0);
    this.ranSinceLoad = false;
  }
}

/** What ModelSession.run does around a run, with the simulated memory. */
async function run(pool: SessionPool, s: Fake, mem: { rss: number }): Promise<void> {
  await pool.beforeRun(s);
  let before = mem.rss;
  if (!s.alive) {
    s.alive = true;
    mem.rss += s.weightBytes;
    pool.revived(s, mem.rss - before);
    before = mem.rss;
  }
  if (!s.ranSinceLoad) mem.rss += s.activations;
  s.ranSinceLoad = true;
  pool.afterRun(s, mem.rss - before);
}

function sd(mem: { rss: number }, policy: MemoryPolicy = "lean") {
  // sizes like SD 1.5 at 512x512: text encoder, VAE halves, UNet (weights, activations)
  return {
    te: new Fake("te", 470 * MB, 50 * MB, mem, policy),
    unet: new Fake("unet", 3440 * MB, 300 * MB, mem, policy),
    enc: new Fake("enc", 130 * MB, 650 * MB, mem, policy),
    dec: new Fake("dec", 200 * MB, 1250 * MB, mem, policy),
  };
}

describe("SessionPool", () => {
  it("keeps a one-image run within weights + headroom by dropping each model once the next one starts", async () => {
    const mem = { rss: 100 * MB };
    const pool = new SessionPool(() => mem.rss, 1024 * MB);
    const m = sd(mem);
    for (const s of Object.values(m)) pool.add(s);
    let peak = 0;
    for (const s of [m.te, m.te, m.enc, ...Array(10).fill(m.unet), m.dec]) {
      await run(pool, s, mem);
      peak = Math.max(peak, mem.rss);
    }
    expect(peak).toBeLessThanOrEqual(pool.limit());
    // each dropped once, when the next model started; never before it ran (all four were loaded up front)
    expect([m.te.drops, m.enc.drops, m.unet.drops, m.dec.drops]).toEqual([1, 1, 1, 0]);
  });

  it("keeps small idle sessions when the next model fits beside them", async () => {
    const mem = { rss: 100 * MB };
    const pool = new SessionPool(() => mem.rss, 1024 * MB);
    const m = sd(mem);
    const preview = new Fake("taesd-decoder", 5 * MB, 60 * MB, mem);
    for (const s of [...Object.values(m), preview]) pool.add(s);
    await run(pool, m.unet, mem); // first life: unknown cost, drops nothing (nothing idle has run)
    for (let i = 0; i < 5; i++) {
      await run(pool, preview, mem); // first run: unknown cost, so the UNet goes once
      await run(pool, m.unet, mem);
    }
    // after one round trip both footprints are known and fit together: no more churn
    expect(m.unet.drops).toBe(1);
    expect(preview.drops).toBeLessThanOrEqual(1);
  });

  it("never drops 'keep' sessions or busy ones", async () => {
    const mem = { rss: 100 * MB };
    const pool = new SessionPool(() => mem.rss, 0);
    const m = sd(mem, "keep");
    for (const s of Object.values(m)) pool.add(s);
    for (const s of [m.te, m.enc, m.unet, m.dec]) await run(pool, s, mem);
    expect(Object.values(m).map((s) => s.drops)).toEqual([0, 0, 0, 0]);

    const lean = sd(mem);
    for (const s of Object.values(lean)) pool.add(s);
    await run(pool, lean.enc, mem);
    await pool.beforeRun(lean.enc); // a run of the encoder in flight
    await run(pool, lean.dec, mem);
    expect(lean.enc.drops).toBe(0);
    pool.afterRun(lean.enc, 0);
  });

  it("counts every registered model's weights in the limit, and forgets released ones", () => {
    const mem = { rss: 0 };
    const pool = new SessionPool(() => mem.rss, 10);
    const a = new Fake("a", 100, 0, mem);
    const b = new Fake("b", 50, 0, mem);
    pool.add(a);
    pool.add(b);
    expect(pool.limit()).toBe(160);
    pool.remove(a);
    expect(pool.limit()).toBe(60);
  });
});
