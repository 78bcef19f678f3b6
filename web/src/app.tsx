// The page: input (sketch/upload) on the left; settings, Generate/Cancel, progress with live
// preview, the before/after result, a strength sweep and this session's gallery on the right.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, apiJson, AuthError, getKey, imageUrl, type JobView, type ModelInfo, type SamplerInfo, setKey, streamEvents } from "./api.js";
import { Compare } from "./compare.js";
import { Sketch, type SketchHandle } from "./sketch.js";

const SIZES = [64, 128, 256, 384, 512, 640, 768, 896, 1024];
const SWEEP = [0.3, 0.5, 0.7, 0.9];

interface Result {
  id: string;
  kind: string;
  url: string;
  before: string;
  seed: string;
  infotext: string;
  settings: Record<string, unknown>;
  extra: { url: string; label: string }[];
}

interface Running {
  id: string;
  status: JobView["status"];
  step: number;
  total: number;
  etaMs: number | null;
  position: number | null;
  preview?: string;
}

export function strengthHint(s: number): string {
  if (s < 0.2) return "barely changes the input";
  if (s < 0.45) return "subtle: keeps shapes and colours, refines details";
  if (s < 0.75) return "restyle: keeps the composition, changes the look";
  return "reimagine: uses the input only as a loose guide";
}

export function App() {
  const [model, setModel] = useState<ModelInfo | null>(null);
  const [samplers, setSamplers] = useState<SamplerInfo[]>([]);
  const [needKey, setNeedKey] = useState(false);
  const [keyInput, setKeyInput] = useState(getKey());
  const [prompt, setPrompt] = useState("");
  const [negative, setNegative] = useState("");
  const [strength, setStrength] = useState(0.6);
  const [steps, setSteps] = useState(20);
  const [guidance, setGuidance] = useState(7.5);
  const [seed, setSeed] = useState(-1);
  const [lockSeed, setLockSeed] = useState(false);
  const [sampler, setSampler] = useState("");
  const [width, setWidth] = useState(512);
  const [height, setHeight] = useState(512);
  const [running, setRunning] = useState<Running | null>(null);
  const [error, setError] = useState("");
  const [results, setResults] = useState<Result[]>([]);
  const [shown, setShown] = useState<Result | null>(null);
  const sketch = useRef<SketchHandle | null>(null);

  const load = async () => {
    try {
      const [models, list] = await Promise.all([apiJson<ModelInfo[]>("/v1/models"), apiJson<SamplerInfo[]>("/v1/samplers")]);
      const m = models[0];
      setModel(m);
      setSamplers(list);
      setSteps(m.defaults.steps);
      setGuidance(m.defaults.guidanceScale);
      setStrength(m.defaults.strength);
      setSampler(m.defaults.sampler);
      setNeedKey(false);
    } catch (e) {
      if (e instanceof AuthError) setNeedKey(true);
      else setError(String((e as Error).message));
    }
  };
  useEffect(() => void load(), []);

  const busy = running !== null && (running.status === "queued" || running.status === "running");

  const start = async (kind: "img2img" | "sweep") => {
    if (busy || !sketch.current) return;
    setError("");
    const before = sketch.current.snapshot();
    const form = new FormData();
    form.set("image", await sketch.current.exportPng(), "input.png");
    const fields: Record<string, string | number> = { prompt, negativePrompt: negative, strength, steps, guidanceScale: guidance, seed: lockSeed ? seed : -1, sampler, width, height };
    if (kind === "sweep") fields.strengths = SWEEP.join(",");
    for (const [k, v] of Object.entries(fields)) form.set(k, String(v));
    try {
      const job = await apiJson<JobView>(`/v1/${kind}`, { method: "POST", body: form });
      setRunning({ id: job.id, status: job.status, step: 0, total: 0, etaMs: null, position: job.position });
      let final: JobView | null = null;
      await streamEvents(`/v1/jobs/${job.id}/events`, (event, data) => {
        if (event === "progress") setRunning((r) => r && { ...r, status: "running", step: data.step, total: data.total, etaMs: data.etaMs, preview: data.preview ?? r.preview });
        else if (event === "status") setRunning((r) => r && { ...r, status: data.status, position: data.position });
        else if (event === "done") final = data;
      });
      const done = final as JobView | null;
      if (!done) throw new Error("the event stream ended early");
      setRunning((r) => r && { ...r, status: done.status });
      if (done.status === "failed") setError(done.error?.message ?? "generation failed");
      if (done.status !== "succeeded" || !done.result) return;
      const imgs = done.result.images;
      const urls = await Promise.all(imgs.map((im) => imageUrl(im.url)));
      const result: Result = {
        id: done.id,
        kind,
        url: urls[0],
        before,
        seed: String(done.result.seed),
        infotext: imgs[0].infotext,
        settings: done.settings,
        extra: kind === "sweep" ? imgs.slice(1).map((im, i) => ({ url: urls[i + 1], label: `strength ${im.strength} · SSIM ${im.ssim?.toFixed(2)}` })) : [],
      };
      setResults((rs) => [result, ...rs]);
      setShown(result);
      if (!lockSeed) setSeed(Number(done.result.seed));
    } catch (e) {
      if (e instanceof AuthError) setNeedKey(true);
      else setError(String((e as Error).message));
      setRunning(null);
    }
  };

  const cancel = async () => {
    if (!running) return;
    try {
      await api(`/v1/jobs/${running.id}`, { method: "DELETE" });
    } catch (e) {
      setError(String((e as Error).message));
    }
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
        e.preventDefault();
        void start("img2img");
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const onPicture = (w: number, h: number) => {
    // keep the picture's aspect: long side 512 (or its own size if smaller), multiples of 64
    const scale = Math.min(1, 512 / Math.max(w, h));
    const round = (v: number) => Math.max(128, Math.round((v * scale) / 64) * 64);
    setWidth(round(w));
    setHeight(round(h));
  };

  if (needKey) {
    return (
      <main class="keyform">
        <h1>Reimagine</h1>
        <p>This server needs an API key (the one given to <code>reimagine serve --api-key</code>).</p>
        <form onSubmit={(e) => [e.preventDefault(), setKey(keyInput), void load()]}>
          <input type="password" value={keyInput} placeholder="API key" data-testid="api-key" onInput={(e) => setKeyInput(e.currentTarget.value)} />
          <button type="submit">Use key</button>
        </form>
      </main>
    );
  }

  const pct = running?.total ? Math.round((100 * running.step) / running.total) : 0;
  return (
    <main>
      <header>
        <h1>Reimagine</h1>
        <span class="model">{model ? `${model.name}${model.hash ? ` [${model.hash}]` : ""}` : "loading…"}</span>
      </header>
      <div class="columns">
        <section class="input">
          <Sketch width={width} height={height} handle={sketch} onPicture={onPicture} />
        </section>
        <section class="controls">
          <label>
            Prompt
            <textarea data-testid="prompt" rows={3} value={prompt} placeholder="a castle on a hill at sunset, oil painting" onInput={(e) => setPrompt(e.currentTarget.value)} />
          </label>
          <label>
            Negative prompt
            <textarea data-testid="negative-prompt" rows={2} value={negative} placeholder="blurry, low quality" onInput={(e) => setNegative(e.currentTarget.value)} />
          </label>
          <label>
            Strength <b>{strength.toFixed(2)}</b> <small>{strengthHint(strength)}</small>
            <input type="range" data-testid="strength" min={0} max={1} step={0.05} value={strength} onInput={(e) => setStrength(Number(e.currentTarget.value))} />
            <small class="scale">0.2–0.4 subtle · 0.5–0.7 restyle · 0.8–1.0 reimagine</small>
          </label>
          <div class="row">
            <label>
              Steps
              <input type="number" data-testid="steps" min={1} max={150} value={steps} onInput={(e) => setSteps(Number(e.currentTarget.value))} />
            </label>
            <label>
              Guidance
              <input type="number" data-testid="guidance" min={0} max={30} step={0.5} value={guidance} onInput={(e) => setGuidance(Number(e.currentTarget.value))} />
            </label>
            <label>
              Sampler
              <select data-testid="sampler" value={sampler} onChange={(e) => setSampler(e.currentTarget.value)}>
                {samplers.map((s) => (
                  <option key={s.name} value={s.name}>
                    {s.a1111Name}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <div class="row">
            <label>
              Seed
              <input type="number" data-testid="seed" value={seed} onInput={(e) => setSeed(Number(e.currentTarget.value))} />
            </label>
            <label class="check">
              <input type="checkbox" data-testid="seed-lock" checked={lockSeed} onChange={(e) => setLockSeed(e.currentTarget.checked)} /> lock
            </label>
            <button type="button" title="a new random seed for each run" data-testid="seed-random" onClick={() => [setSeed(-1), setLockSeed(false)]}>
              random
            </button>
            <label>
              Size
              <span class="size">
                <select data-testid="width" value={width} onChange={(e) => setWidth(Number(e.currentTarget.value))}>
                  {SIZES.map((s) => <option value={s}>{s}</option>)}
                </select>
                ×
                <select data-testid="height" value={height} onChange={(e) => setHeight(Number(e.currentTarget.value))}>
                  {SIZES.map((s) => <option value={s}>{s}</option>)}
                </select>
              </span>
            </label>
          </div>
          <div class="row actions">
            <button type="button" class="primary" data-testid="generate" disabled={busy} onClick={() => void start("img2img")} title="Ctrl+Enter">
              Generate
            </button>
            <button type="button" data-testid="cancel" disabled={!busy} onClick={() => void cancel()}>
              Cancel
            </button>
            <button type="button" data-testid="sweep" disabled={busy} onClick={() => void start("sweep")} title={`same seed at strengths ${SWEEP.join(", ")}`}>
              Strength sweep
            </button>
          </div>
          <div class="progress-row">
            <progress data-testid="progress" max={running?.total || 1} value={running?.step ?? 0} />
            <span data-testid="status">
              {running ? statusText(running, pct) : "ready"}
            </span>
          </div>
          {error && (
            <p class="error" data-testid="error">
              {error}
            </p>
          )}
          <div class="result">
            {busy && running?.preview ? (
              <img class="preview" src={running.preview} alt="live preview" data-testid="preview" />
            ) : shown ? (
              shown.kind === "sweep" ? (
                <div>
                  <img src={shown.url} alt="strength sweep" class="sheet" data-testid="result-image" />
                  <a href={shown.url} download={`reimagine-sweep-${shown.seed}.png`}>
                    download grid
                  </a>
                </div>
              ) : (
                <div>
                  <Compare before={shown.before} after={shown.url} alt={String(shown.settings.prompt ?? "result")} />
                  <a href={shown.url} download={`reimagine-${shown.seed}.png`} data-testid="download">
                    download PNG (with generation settings)
                  </a>
                  <pre class="infotext">{shown.infotext}</pre>
                </div>
              )
            ) : null}
          </div>
        </section>
      </div>
      {results.length > 0 && (
        <section class="gallery" data-testid="gallery">
          <h2>This session</h2>
          <div class="thumbs">
            {results.map((r) => (
              // biome-ignore lint/a11y/useKeyWithClickEvents: known gap, thumbnails are mouse-only (no keyboard selection yet)
              <figure key={r.id} class={shown?.id === r.id ? "on" : ""} onClick={() => setShown(r)}>
                <img src={r.url} alt={String(r.settings.prompt ?? "")} />
                <figcaption>
                  {r.kind === "sweep" ? "sweep · " : `strength ${r.settings.strength} · `}seed {r.seed}
                  <br />
                  <small>{String(r.settings.prompt ?? "").slice(0, 60)}</small>
                </figcaption>
              </figure>
            ))}
          </div>
        </section>
      )}
    </main>
  );
}

function statusText(r: Running, pct: number): string {
  if (r.status === "queued") return r.position ? `queued (${r.position} ahead)` : "queued";
  if (r.status === "running") return `step ${r.step}/${r.total || "?"} · ${pct}%${r.etaMs !== null ? ` · ETA ${Math.ceil(r.etaMs / 1000)} s` : ""}`;
  return r.status;
}
