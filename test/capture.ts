// In-memory stdout/stderr for running the CLI's main() inside a test.
export function capture() {
  const out = { stdout: "", stderr: "" };
  return { out, io: { stdout: { write: (s: string) => (out.stdout += s) }, stderr: { write: (s: string) => (out.stderr += s) } } };
}
