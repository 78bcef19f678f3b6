// Locates the shared diffusers reference fixtures (read in place, never copied).
// REIMAGINE_FIXTURES points elsewhere; default is ../shared/fixtures beside the clone.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export const fixturesRoot: string =
  process.env.REIMAGINE_FIXTURES ?? resolve(repoRoot, "..", "shared", "fixtures");

/** Absolute path of a fixture file or folder, e.g. fixture("sd-tiny", "model"). */
export function fixture(...parts: string[]): string {
  return join(fixturesRoot, ...parts);
}

/** True when the named fixture set is present; otherwise prints why tests skip. */
export function haveFixtures(name = "sd-tiny"): boolean {
  const ok = existsSync(join(fixturesRoot, name));
  if (!ok) {
    console.warn(
      `[skip] fixtures '${name}' not found at ${fixturesRoot}: parity tests skipped. ` +
        `Put the shared fixtures beside the clone (../shared/fixtures) or set REIMAGINE_FIXTURES.`,
    );
  }
  return ok;
}

/** Parsed reference.json of a fixture set. */
export function loadReferenceJson(name = "sd-tiny"): any {
  return JSON.parse(readFileSync(join(fixturesRoot, name, "reference", "reference.json"), "utf8"));
}
