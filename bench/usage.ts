// What a stretch of this process cost besides wall time: user and system CPU, minor and major page
// faults (getrusage via process.resourceUsage(), all threads of the process) and resident memory.
// First runs and steady-state runs are told apart by these as much as by their time.

/** Costs of one timed stretch (a model load, one run, a whole process). */
export interface Usage {
  wallMs: number;
  userMs: number;
  systemMs: number;
  /** Page faults served without I/O (fresh anonymous pages, or file pages already in the page cache). */
  minorFaults: number;
  /** Page faults that read from disk. */
  majorFaults: number;
  /** Resident set at the end of the stretch, MiB. */
  rssMB: number;
}

interface Snapshot {
  t: number;
  r: NodeJS.ResourceUsage;
}

const snapshot = (): Snapshot => ({ t: performance.now(), r: process.resourceUsage() });

/** Usage of `a` -> now. */
function since(a: Snapshot): Usage {
  const b = snapshot();
  return {
    wallMs: b.t - a.t,
    userMs: (b.r.userCPUTime - a.r.userCPUTime) / 1000,
    systemMs: (b.r.systemCPUTime - a.r.systemCPUTime) / 1000,
    minorFaults: b.r.minorPageFault - a.r.minorPageFault,
    majorFaults: b.r.majorPageFault - a.r.majorPageFault,
    rssMB: process.memoryUsage.rss() / 2 ** 20,
  };
}

/**
 * Runs `fn` and returns its result with what it cost.
 *
 * @example const { usage } = await measured(() => session.run(feeds)); // usage.minorFaults, usage.systemMs
 */
export async function measured<T>(fn: () => Promise<T>): Promise<{ value: T; usage: Usage }> {
  const a = snapshot();
  const value = await fn();
  return { value, usage: since(a) };
}

/** Peak resident set of this process so far, MiB (maxRSS is in KiB on Linux and macOS). */
export const peakRssMB = (): number => process.resourceUsage().maxRSS / 1024;

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Per-field median of several usages (the steady-state row). */
export function medianUsage(us: readonly Usage[]): Usage {
  const f = (k: keyof Usage) => median(us.map((u) => u[k]));
  return { wallMs: f("wallMs"), userMs: f("userMs"), systemMs: f("systemMs"), minorFaults: f("minorFaults"), majorFaults: f("majorFaults"), rssMB: f("rssMB") };
}
