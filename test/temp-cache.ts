// A throwaway REIMAGINE_CACHE (graphs, weight hashes) for one test file or suite: set now, restored
// and deleted after the suite, so tests never write into the user's ~/.cache.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";

/**
 * @example const dir = useTempCache("reimagine-nan-"); // dir/cache is REIMAGINE_CACHE until afterAll
 */
export function useTempCache(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const saved = process.env.REIMAGINE_CACHE;
  process.env.REIMAGINE_CACHE = join(dir, "cache");
  afterAll(() => {
    if (saved === undefined) delete process.env.REIMAGINE_CACHE;
    else process.env.REIMAGINE_CACHE = saved;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
