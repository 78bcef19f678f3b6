// Which loaded models may keep their activation memory (ONNX Runtime's per-session CPU arena) while
// another model runs. Each session's arena is what makes its runs fast (no fresh pages to fault in),
// but arenas are per session and ORT's node binding cannot shrink one, so a process that keeps them
// all holds the sum of every model's activations. The "lean" policy keeps resident memory near
// "weights + the largest model's activations": before a model runs, idle models are dropped (their
// ORT session released, re-created on their next run) least recently used first, until the process's
// resident set plus what the model is expected to add fits under the weights of every loaded model
// plus a headroom. Plain TypeScript: sessions are seen through the `PooledSession` interface.

/** "lean": bounded memory as above (default); "keep": every session keeps its arena (long-lived servers). */
export type MemoryPolicy = "lean" | "keep";
export const MEMORY_POLICIES: readonly MemoryPolicy[] = ["lean", "keep"];

/** Resident memory allowed above the loaded models' weights before idle models are dropped. */
export const HEADROOM_BYTES = 1024 * 2 ** 20;

/** What the pool needs from a session. */
export interface PooledSession {
  readonly policy: MemoryPolicy;
  /** Size of the model's weights on disk (what "weights" means in the memory bound). */
  readonly weightBytes: number;
  /** Releases the ORT session (the next run re-creates it). */
  drop(): Promise<void>;
}

interface Entry {
  /** An ORT session exists (loaded or re-created) and holds memory. */
  alive: boolean;
  /** It ran since it was (re)created, so its arena holds activations. */
  ran: boolean;
  busy: number;
  lastUsed: number;
  /** Resident-set growth seen during its load and runs since it was (re)created. */
  footprint: number;
  /** The footprint it had when last dropped: what re-creating it is expected to add. */
  previousFootprint?: number;
}

/**
 * The process's sessions and their memory. `rss` is injectable for tests.
 *
 * @example
 *   const pool = new SessionPool();
 *   pool.add(s); await pool.beforeRun(s); ...run...; pool.afterRun(s, grownBytes);
 */
export class SessionPool {
  private readonly entries = new Map<PooledSession, Entry>();
  private tick = 0;
  /** Sessions dropped so far (benchmarks report it). */
  drops = 0;

  constructor(
    private readonly rss: () => number = () => process.memoryUsage.rss(),
    private readonly headroom = HEADROOM_BYTES,
  ) {}

  /** Registers a freshly created session; `loadGrowth` is the resident-set growth its creation caused. */
  add(s: PooledSession, loadGrowth = 0): void {
    const old = this.entries.get(s);
    this.entries.set(s, {
      alive: true,
      ran: false,
      busy: 0,
      lastUsed: ++this.tick,
      footprint: Math.max(0, loadGrowth),
      previousFootprint: old?.previousFootprint,
    });
  }

  /** Re-registers a dropped session that was just re-created. */
  revived(s: PooledSession, loadGrowth: number): void {
    const e = this.entries.get(s);
    if (!e) {
      this.add(s, loadGrowth);
      return;
    }
    e.alive = true;
    e.ran = false;
    e.footprint = Math.max(0, loadGrowth);
  }

  remove(s: PooledSession): void {
    this.entries.delete(s);
  }

  isAlive(s: PooledSession): boolean {
    return this.entries.get(s)?.alive ?? false;
  }

  /** Memory the process may hold: every registered model's weights plus the headroom. */
  limit(): number {
    let w = 0;
    for (const s of this.entries.keys()) w += s.weightBytes;
    return w + this.headroom;
  }

  /**
   * Called before `s` runs: marks it busy and, under the lean policy, drops idle sessions (least
   * recently used first) while the resident set plus what `s` is expected to add exceeds limit().
   * A session that has never run before has an unknown cost, so every idle session goes.
   */
  async beforeRun(s: PooledSession): Promise<void> {
    const e = this.entries.get(s);
    if (!e) return;
    e.busy++;
    e.lastUsed = ++this.tick;
    if (s.policy !== "lean") return;
    const expected = e.ran ? 0 : Math.max(0, (e.previousFootprint ?? Infinity) - e.footprint);
    const idle = [...this.entries]
      .filter(([o, x]) => o !== s && o.policy === "lean" && x.alive && x.ran && x.busy === 0)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    for (const [o, x] of idle) {
      if (this.rss() + expected <= this.limit()) break;
      x.alive = false;
      x.ran = false;
      x.previousFootprint = x.footprint;
      x.footprint = 0;
      this.drops++;
      await o.drop();
    }
  }

  /** Called after `s` ran (or failed); `growth` is the resident-set change during the run. */
  afterRun(s: PooledSession, growth: number): void {
    const e = this.entries.get(s);
    if (!e) return;
    e.busy = Math.max(0, e.busy - 1);
    e.ran = true;
    e.footprint += Math.max(0, growth);
  }
}
