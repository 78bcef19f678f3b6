// Parity: CLIPTextModel graph vs the diffusers/transformers reference (sd-tiny fixture).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, haveFixtures, loadReferenceJson, maxAbsDiff, referenceTensor } from "../../test/fixtures.js";
import { ModelSession } from "../runtime.js";
import { openComponentWeights } from "../weights/diffusers.js";
import { buildCLIPTextModel, resolveCLIPTextConfig } from "./clip-text.js";

describe.skipIf(!haveFixtures())("CLIPTextModel parity (sd-tiny)", () => {
  const dir = mkdtempSync(join(tmpdir(), "reimagine-clip-"));
  let session: ModelSession;
  let ref: any;
  beforeAll(async () => {
    ref = loadReferenceJson();
    const te = fixture("sd-tiny", "model", "text_encoder");
    const config = resolveCLIPTextConfig(JSON.parse(readFileSync(join(te, "config.json"), "utf8")));
    const g = buildCLIPTextModel(openComponentWeights(te), config);
    session = await ModelSession.load(g.save(dir), { threads: 1 });
  });
  afterAll(async () => {
    await session?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reproduces last_hidden_state and clip-skip hidden states for every reference prompt", async () => {
    const atol = ref.tolerances.text_encoder.atol;
    expect(ref.text_encoder.cases.length).toBe(3);
    for (const c of ref.text_encoder.cases) {
      const ids = BigInt64Array.from(c.input_ids.map(BigInt));
      const out = await session.run({ input_ids: { data: ids, dims: [1, ids.length] } });
      const want = referenceTensor(c.last_hidden_state);
      expect(out.last_hidden_state.dims).toEqual(want.shape);
      expect(maxAbsDiff(out.last_hidden_state.data as Float32Array, want.data)).toBeLessThan(atol);
      if (c.clip_skip_1) {
        // pipeline clip_skip=1: final_layer_norm(hidden_states[-2])
        const hs = out.normed_hidden_states;
        const n = hs.dims[0];
        const per = hs.data.length / n;
        const skip1 = (hs.data as Float32Array).subarray((n - 2) * per, (n - 1) * per);
        expect(maxAbsDiff(skip1, referenceTensor(c.clip_skip_1).data)).toBeLessThan(atol);
        const lastNormed = (hs.data as Float32Array).subarray((n - 1) * per);
        expect(maxAbsDiff(lastNormed, want.data)).toBeLessThan(atol);
      }
    }
  });
});
