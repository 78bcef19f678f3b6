// Runs the `reimagine` CLI in-process for tests, with its output captured.
import { main } from "../src/cli/main.js";
import { capture } from "./capture.js";

/** Runs the CLI; fails the test with stderr when the exit code is not the expected one. */
export async function runCli(args: string[], expected = 0): Promise<{ stdout: string; stderr: string }> {
  const { out, io } = capture();
  const code = await main(args, io);
  if (code !== expected) throw new Error(`exit ${code} (expected ${expected}) for ${args.join(" ")}\n${out.stderr}`);
  return out;
}
