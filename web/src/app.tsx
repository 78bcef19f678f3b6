// The page: the input canvas, the output (progress, live preview, result with "use as input") and
// the settings side by side, the gallery below. One SketchDoc holds the input and its size: the
// size selects show it and every request sends it. Keys: Ctrl+Enter generate, Ctrl+Z / Ctrl+Shift+Z
// undo / redo on the canvas; paste or drop a picture (a PNG with A1111 parameters restores them).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, apiJson, AuthError, getKey, type JobView, type ModelInfo, type SamplerInfo, setKey, streamEvents } from "./api.js";
import { Controls, parseSweep, type Settings, sweepAround } from "./controls.js";
import { SketchDoc } from "./doc.js";
import { deleteResult, loadGallery, saveResult, type StoredResult } from "./gallery-db.js";
import { LoraPicker } from "./loras.js";
import { readPngParameters, restoredSettings } from "./pnginfo.js";
import { Gallery, Output, type Running, type ShownResult } from "./results.js";
import { Sketch } from "./sketch.js";

const INITIAL: Settings = {
  prompt: "",
  negative: "",
  strength: 0.6,
  steps: 20,
  guidance: 7.5,
  seed: -1,
  lockSeed: false,
  sampler: "",
  resizeMode: "scale",
  sweep: null,
};

/** A picture's input size: its aspect kept, the long side at most `longest` (the model's native size), multiples of 64. */
export function fitSize(w: number, h: number, longest = 512): { width: number; height: number } {
  const scale = Math.min(1, longest / Math.max(w, h));
  const round = (v: number) => Math.max(64, Math.round((v * scale) / 64) * 64);
  return { width: round(w), height: round(h) };
}

function toShown(r: StoredResult): ShownResult {
  const url = (b: Blob) => URL.createObjectURL(b);
  return {
    id: r.id,
    kind: r.kind,
    settings: r.settings,
    infotext: r.infotext,
    seed: r.seed,
    url: url(r.image),
    before: url(r.before),
    width: Number(r.settings.width),
    height: Number(r.settings.height),
    extra: r.extra.map((e) => ({ url: url(e.image), label: e.label, strength: e.strength })),
  };
}

const editable = (t: EventTarget | null) =>
  t instanceof HTMLElement &&
  (t.isContentEditable ||
    t.tagName === "TEXTAREA" ||
    (t.tagName === "INPUT" && ["text", "number", "password", "search"].includes((t as HTMLInputElement).type)));

async function decode(src: Blob | string): Promise<HTMLImageElement> {
  const img = new Image();
  img.src = typeof src === "string" ? src : URL.createObjectURL(src);
  await img.decode();
  return img;
}

export function App() {
  const doc = useMemo(() => new SketchDoc(512, 512), []);
  const [, rerender] = useState(0);
  useEffect(() => doc.subscribe(() => rerender((t) => t + 1)), [doc]);
  const [models, setModels] = useState<ModelInfo[]>([]);
  const [model, setModel] = useState("");
  const [samplers, setSamplers] = useState<SamplerInfo[]>([]);
  const [auth, setAuth] = useState<"ok" | "need" | "refused">("ok");
  const [keyInput, setKeyInput] = useState(getKey());
  const [s, setS] = useState<Settings>(INITIAL);
  const set = (patch: Partial<Settings>) => setS((x) => ({ ...x, ...patch }));
  const [running, setRunning] = useState<Running | null>(null);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [gallery, setGallery] = useState<ShownResult[]>([]);
  const [shown, setShown] = useState<ShownResult | null>(null);
  const defaultsApplied = useRef(false);

  const load = async () => {
    try {
      const [list, samplerList] = await Promise.all([apiJson<ModelInfo[]>("/v1/models"), apiJson<SamplerInfo[]>("/v1/samplers")]);
      setModels(list);
      setSamplers(samplerList);
      const m = list[0];
      setModel((cur) => (list.some((x) => x.name === cur) ? cur : m.name));
      if (!defaultsApplied.current) {
        defaultsApplied.current = true;
        set({ steps: m.defaults.steps, guidance: m.defaults.guidanceScale, strength: m.defaults.strength, sampler: m.defaults.sampler });
        // an untouched canvas starts at the model's own size (1024 for SDXL); a drawing is never resized here
        if (m.nativeSize && doc.isBlank) doc.resetBlank(m.nativeSize, m.nativeSize);
      }
      setAuth("ok");
    } catch (e) {
      if (e instanceof AuthError) setAuth(getKey() ? "refused" : "need");
      else setError(String((e as Error).message));
    }
  };
  useEffect(() => {
    void load();
    loadGallery()
      .then((items) => setGallery(items.map(toShown)))
      .catch((e) => setNotice(`the gallery could not be read from this browser's storage: ${(e as Error).message}`));
  }, []);

  const busy = running !== null && (running.status === "queued" || running.status === "running");

  const start = async (kind: "img2img" | "sweep") => {
    if (busy) return;
    setError("");
    setNotice("");
    let strengths: number[] | undefined;
    try {
      if (kind === "sweep") strengths = parseSweep(s.sweep ?? sweepAround(s.strength));
    } catch (e) {
      setError((e as Error).message);
      return;
    }
    const before = await doc.exportPng();
    const fields: Record<string, string | number> = {
      prompt: s.prompt,
      negativePrompt: s.negative,
      strength: s.strength,
      steps: s.steps,
      guidanceScale: s.guidance,
      seed: s.lockSeed ? s.seed : -1,
      sampler: s.sampler,
      width: doc.width,
      height: doc.height,
      model,
    };
    if (strengths) fields.strengths = strengths.join(",");
    const form = new FormData();
    form.set("image", before, "input.png");
    for (const [k, v] of Object.entries(fields)) form.set(k, String(v));
    try {
      const job = await apiJson<JobView>(`/v1/${kind}`, { method: "POST", body: form });
      setRunning({ id: job.id, status: job.status, step: 0, total: 0, etaMs: null, position: job.position });
      let final: JobView | null = null;
      await streamEvents(`/v1/jobs/${job.id}/events`, (event, data) => {
        if (event === "progress")
          setRunning((r) => r && { ...r, status: "running", step: data.step, total: data.total, etaMs: data.etaMs, preview: data.preview ?? r.preview });
        else if (event === "status") setRunning((r) => r && { ...r, status: data.status, position: data.position });
        else if (event === "done") final = data;
      });
      const done = final as JobView | null;
      if (!done) throw new Error("the event stream ended early");
      // the last progress event may be coalesced into "done": the final counts come with it
      setRunning((r) => r && { ...r, status: done.status, step: done.progress.step, total: done.progress.total });
      if (done.status === "failed") setError(done.error?.message ?? "generation failed");
      if (done.status !== "succeeded" || !done.result) return;
      const imgs = done.result.images;
      const blobs = await Promise.all(imgs.map(async (im) => (await api(im.url)).blob()));
      const stored: StoredResult = {
        id: done.id,
        createdAt: Date.now(),
        kind,
        settings: { ...done.settings, model },
        infotext: imgs[0].infotext,
        seed: String(done.result.seed),
        image: blobs[0],
        before,
        extra:
          kind === "sweep"
            ? imgs.slice(1).map((im, i) => ({ image: blobs[i + 1], label: `strength ${im.strength} · SSIM ${im.ssim?.toFixed(2)}`, strength: im.strength }))
            : [],
      };
      await saveResult(stored).catch((e) => setNotice(`not kept in the gallery (browser storage: ${(e as Error).message})`));
      const r = toShown(stored);
      setGallery((g) => [r, ...g]);
      setShown(r);
      if (!s.lockSeed) set({ seed: Number(done.result.seed) });
    } catch (e) {
      if (e instanceof AuthError) setAuth("refused");
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

  /** A result onto the canvas to draw over, with its prompt and seed (locked). One undo step. */
  const useAsInput = async (url: string, r: ShownResult, strength?: number) => {
    const img = await decode(url);
    doc.setPicture(img, img.naturalWidth, img.naturalHeight, false, s.resizeMode);
    set({
      prompt: String(r.settings.prompt ?? s.prompt),
      negative: String(r.settings.negativePrompt ?? s.negative),
      seed: Number(r.seed),
      lockSeed: true,
      ...(strength !== undefined ? { strength } : {}),
    });
    setNotice(`The result (seed ${r.seed}) is the input now: draw over it and Generate again. Ctrl+Z brings back the previous input.`);
  };

  /** A dropped, pasted or uploaded file: the input picture; a PNG with parameters also restores them. */
  const onFile = async (file: File) => {
    if (!file.type.startsWith("image/")) return setError(`'${file.name}' is not an image`);
    setError("");
    try {
      const img = await decode(file);
      const text = file.type === "image/png" ? await readPngParameters(file) : undefined;
      let size = fitSize(img.naturalWidth, img.naturalHeight, models.find((m) => m.name === model)?.nativeSize ?? 512);
      if (text) {
        const p = restoredSettings(text, samplers);
        if (p.width && p.height) size = { width: p.width, height: p.height };
        set({
          prompt: p.prompt,
          negative: p.negativePrompt ?? "",
          ...(p.steps ? { steps: p.steps } : {}),
          ...(p.guidanceScale !== undefined ? { guidance: p.guidanceScale } : {}),
          ...(p.strength !== undefined ? { strength: p.strength } : {}),
          ...(p.sampler ? { sampler: p.sampler } : {}),
          ...(p.seed !== undefined ? { seed: p.seed, lockSeed: true } : {}),
        });
        const known = !p.model || models.some((m) => m.name === p.model);
        if (p.model && known) setModel(p.model);
        setNotice(
          `Settings restored from ${file.name}${p.seed !== undefined ? ` (seed ${p.seed})` : ""}.${known ? "" : ` It was made with ${p.model}, which this server does not serve.`}`,
        );
      } else setNotice("");
      doc.setPicture(img, size.width, size.height, true, s.resizeMode);
    } catch (e) {
      setError(`could not read '${file.name}': ${(e as Error).message}`);
    }
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.key === "Enter") {
        e.preventDefault();
        void start("img2img");
      } else if (mod && !editable(e.target) && (e.key.toLowerCase() === "z" || e.key.toLowerCase() === "y")) {
        e.preventDefault();
        if (e.key.toLowerCase() === "y" || e.shiftKey) doc.redo();
        else doc.undo();
      }
    };
    const onPaste = (e: ClipboardEvent) => {
      const file = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith("image/"));
      if (!file) return; // text pastes go where they were meant to
      e.preventDefault();
      void onFile(file);
    };
    window.addEventListener("keydown", onKey);
    window.addEventListener("paste", onPaste);
    return () => [window.removeEventListener("keydown", onKey), window.removeEventListener("paste", onPaste)];
  });

  if (auth !== "ok") {
    return (
      <main class="keyform">
        <h1>Reimagine</h1>
        <p>
          This server needs an API key (the one given to <code>reimagine serve --api-key</code> or REIMAGINE_API_KEY).
        </p>
        {auth === "refused" && (
          <p class="error" data-testid="key-error">
            The server refused this key. Check it and try again.
          </p>
        )}
        <form onSubmit={(e) => [e.preventDefault(), setKey(keyInput), void load()]}>
          <input type="password" value={keyInput} placeholder="API key" data-testid="api-key" onInput={(e) => setKeyInput(e.currentTarget.value)} />
          <button type="submit">Use key</button>
        </form>
      </main>
    );
  }

  const current = models.find((m) => m.name === model);
  return (
    <main>
      <header>
        <h1>Reimagine</h1>
        <label class="model" title={models.length > 1 ? "the model this server runs the job on" : "this server serves one model"}>
          model{" "}
          <select data-testid="model" value={model} disabled={models.length < 2} onChange={(e) => setModel(e.currentTarget.value)}>
            {models.map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
                {m.hash ? ` [${m.hash}]` : ""}
              </option>
            ))}
          </select>
        </label>
        {!current && <span class="muted">loading…</span>}
      </header>
      {(error || notice) && (
        <div class="messages">
          {error && (
            <p class="error" data-testid="error">
              {error}
            </p>
          )}
          {notice && (
            <p class="notice" data-testid="notice">
              {notice}
            </p>
          )}
        </div>
      )}
      <div class="work">
        <section class="input">
          <Sketch doc={doc} onFile={(f) => void onFile(f)} />
        </section>
        <Output
          running={running}
          busy={busy}
          shown={shown}
          size={{ width: doc.width, height: doc.height }}
          onUse={(url, r, st) => void useAsInput(url, r, st)}
        />
        <Controls
          s={s}
          set={set}
          samplers={samplers}
          doc={doc}
          nativeSize={models.find((m) => m.name === model)?.nativeSize ?? 512}
          busy={busy}
          onGenerate={() => void start("img2img")}
          onSweep={() => void start("sweep")}
          onCancel={() => void cancel()}
        >
          <LoraPicker prompt={s.prompt} onPrompt={(prompt) => set({ prompt })} />
        </Controls>
      </div>
      <Gallery
        items={gallery}
        shownId={shown?.id}
        onShow={setShown}
        onUse={(url, r) => void useAsInput(url, r)}
        onDelete={(r) => {
          void deleteResult(r.id);
          setGallery((g) => g.filter((x) => x.id !== r.id));
          if (shown?.id === r.id) setShown(null);
        }}
      />
    </main>
  );
}
