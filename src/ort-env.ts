// Process environment onnxruntime-node must see before its first session: ORT >= 1.30 on Linux
// starts Microsoft's 1DS telemetry when its environment is created, and the 1DS SDK runs std::regex
// over /proc/self/cmdline, which overflows the stack (SIGSEGV) once the command line passes ~29 kB
// (~14 kB from a worker thread). See docs/upstream/onnxruntime-node-long-argv.md.

/**
 * ORT skips telemetry (and so the crash) when one of these is set. ORT_RUNNING_UNIT_TESTS is the only
 * one 1.30.0 reads before the crash point (besides CI=...); later releases read the explicit opt-out,
 * spelled ORT_TELEMETRY_DISABLED or ORT_DISABLE_TELEMETRY depending on the version.
 */
export const ORT_TELEMETRY_OFF: Readonly<Record<string, string>> = {
  ORT_TELEMETRY_DISABLED: "1",
  ORT_DISABLE_TELEMETRY: "1",
  ORT_RUNNING_UNIT_TESTS: "1",
};

/**
 * Sets the variables (keeping any value the user set). Effective on the main thread only: a worker
 * thread's process.env is its own copy, which native code never sees.
 * @example disableOrtTelemetry(); // before the first ModelSession.load
 */
export function disableOrtTelemetry(env: NodeJS.ProcessEnv = process.env): void {
  for (const [k, v] of Object.entries(ORT_TELEMETRY_OFF)) env[k] ??= v;
}
