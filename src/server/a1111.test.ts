// The A1111 replay suite (a1111.case.ts: webuiapi and SillyTavern request shapes) on the embedded queue.
import { a1111Replay, poster } from "./a1111.case.js";
import { createApp } from "./app.js";
import { createFakeEngine } from "./fake-engine.js";

a1111Replay("embedded", async (stepMs = 0) => {
  const engine = createFakeEngine({ stepMs });
  const { app, jobs } = createApp(engine, { webRoot: "/nonexistent" });
  return { engine, app, jobs, post: poster(app) };
});
