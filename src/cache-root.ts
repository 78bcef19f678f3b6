// Where Reimagine keeps what it derives from models (built graphs, weight-file hashes). One rule for
// every cache, so REIMAGINE_CACHE moves all of them.
import { homedir } from "node:os";
import { join } from "node:path";

/** Root of Reimagine's caches: REIMAGINE_CACHE, else $XDG_CACHE_HOME/reimagine, else ~/.cache/reimagine. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.REIMAGINE_CACHE) return env.REIMAGINE_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "reimagine");
}
