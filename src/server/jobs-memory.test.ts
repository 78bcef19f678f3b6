// The Jobs conformance suite (jobs.case.ts) against the embedded queue.
import { jobsConformance } from "./jobs.case.js";
import { MemoryJobs } from "./jobs-memory.js";

jobsConformance("embedded", async ({ engine, maxSize }) => {
  const jobs = new MemoryJobs(engine, { maxSize });
  return {
    jobs,
    engine,
    close: async () => {
      await jobs.close();
      await jobs.dispose();
    },
  };
});
