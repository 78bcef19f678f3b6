// Two test projects, both run by `npm test` (vitest run), each runnable alone:
//   unit: library, CLI and server in-process (`npm run test:unit`, or `npx vitest run --project unit src/foo`)
//   e2e:  real processes and a browser: the bin/ executable and `reimagine serve` as child processes,
//         the web UI in headless Chromium (`npm run test:e2e`)
// A test that spawns a process or drives a browser belongs in test/e2e/ (or in E2E below).
import { defineConfig } from "vitest/config";

/** Files of the e2e project (everything else is unit). The CLI's generating commands and the server's
 *  worker engine run the model in a child process (src/worker), so their tests spawn processes too. */
const E2E = [
  "test/e2e/**/*.test.ts",
  "src/cli/bin.test.ts",
  "src/cli/img2img.test.ts",
  "src/cli/batch.test.ts",
  "src/cli/errors.test.ts",
  "src/cli/from.test.ts",
  "src/cli/lora.test.ts",
  "src/worker/pipeline-worker.test.ts",
  "src/server/worker-engine.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    projects: [
      { extends: true, test: { name: "unit", include: ["src/**/*.test.ts", "test/**/*.test.ts"], exclude: E2E } },
      { extends: true, test: { name: "e2e", include: E2E } },
    ],
  },
});
