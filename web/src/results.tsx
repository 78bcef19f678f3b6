// The output panel (progress, the live preview, the before/after result or the sweep's cells, each
// with "use as input") and the gallery of every result kept in this browser.
import { Compare } from "./compare.js";
import { fitStyle } from "./sketch.js";

/** A result as the page shows it: the stored record plus object URLs of its images. */
export interface ShownResult {
  id: string;
  kind: "img2img" | "sweep";
  settings: Record<string, unknown>;
  infotext: string;
  seed: string;
  url: string;
  before: string;
  width: number;
  height: number;
  extra: { url: string; label: string; strength?: number }[];
}

export interface Running {
  id: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  step: number;
  total: number;
  etaMs: number | null;
  position: number | null;
  preview?: string;
}

export function statusText(r: Running | null): string {
  if (!r) return "ready";
  if (r.status === "queued") return r.position ? `queued (${r.position} ahead)` : "queued";
  const pct = r.total ? Math.round((100 * r.step) / r.total) : 0;
  if (r.status === "running") return `step ${r.step}/${r.total || "?"} · ${pct}%${r.etaMs !== null ? ` · ETA ${Math.ceil(r.etaMs / 1000)} s` : ""}`;
  return r.status;
}

interface OutputProps {
  running: Running | null;
  busy: boolean;
  shown: ShownResult | null;
  /** The input's size: the preview takes its shape. */
  size: { width: number; height: number };
  onUse(url: string, r: ShownResult, strength?: number): void;
}

export function Output({ running, busy, shown, size, onUse }: OutputProps) {
  return (
    <section class="output">
      <div class="progress-row">
        <progress data-testid="progress" max={running?.total || 1} value={running?.step ?? 0} />
        <span data-testid="status">{statusText(running)}</span>
      </div>
      {busy && running?.preview ? (
        // latent previews are small: the browser scales them up smoothly to the output's shape
        <img class="preview" src={running.preview} alt="live preview" data-testid="preview" style={fitStyle(size.width, size.height)} />
      ) : shown?.kind === "sweep" ? (
        <div class="sweep" data-testid="sweep-grid">
          <figure>
            <img src={shown.before} alt="input" />
            <figcaption>input</figcaption>
          </figure>
          {shown.extra.map((c) => (
            <figure key={c.url}>
              <img src={c.url} alt={c.label} data-testid="sweep-cell" />
              <figcaption>
                {c.label}{" "}
                <button type="button" class="small" data-testid="use-cell" onClick={() => onUse(c.url, shown, c.strength)}>
                  use as input
                </button>
              </figcaption>
            </figure>
          ))}
          <a class="sheet-link" href={shown.url} download={`reimagine-sweep-${shown.seed}.png`} data-testid="result-image-link">
            download the contact sheet
          </a>
        </div>
      ) : shown ? (
        <div class="result">
          <div style={fitStyle(shown.width || size.width, shown.height || size.height)}>
            <Compare before={shown.before} after={shown.url} alt={String(shown.settings.prompt ?? "result")} />
          </div>
          <div class="result-actions">
            <button
              type="button"
              data-testid="use-result"
              onClick={() => onUse(shown.url, shown)}
              title="put this result on the canvas to draw over it (prompt and seed are kept)"
            >
              use as input
            </button>
            <a href={shown.url} download={`reimagine-${shown.seed}.png`} data-testid="download">
              download PNG
            </a>
            <span class="muted">seed {shown.seed}</span>
          </div>
          <details>
            <summary>settings (PNG info)</summary>
            <pre class="infotext">{shown.infotext}</pre>
          </details>
        </div>
      ) : (
        <p class="muted empty">Draw or drop a picture, describe what it should become, press Generate (Ctrl+Enter).</p>
      )}
    </section>
  );
}

interface GalleryProps {
  items: ShownResult[];
  shownId?: string;
  onShow(r: ShownResult): void;
  onUse(url: string, r: ShownResult): void;
  onDelete(r: ShownResult): void;
}

export function Gallery({ items, shownId, onShow, onUse, onDelete }: GalleryProps) {
  if (!items.length) return null;
  return (
    <section class="gallery" data-testid="gallery">
      <h2>
        Gallery <small class="muted">kept in this browser</small>
      </h2>
      <div class="thumbs">
        {items.map((r) => (
          <figure key={r.id} class={shownId === r.id ? "on" : ""}>
            <button type="button" class="thumb" title="show" onClick={() => onShow(r)}>
              <img src={r.kind === "sweep" ? (r.extra[0]?.url ?? r.url) : r.url} alt={String(r.settings.prompt ?? "")} />
            </button>
            <figcaption>
              {r.kind === "sweep" ? "sweep · " : `strength ${r.settings.strength} · `}seed {r.seed}
              <br />
              <small>{String(r.settings.prompt ?? "").slice(0, 60)}</small>
              <br />
              {r.kind !== "sweep" && (
                <button type="button" class="small" data-testid="gallery-use" onClick={() => onUse(r.url, r)}>
                  use as input
                </button>
              )}{" "}
              <button type="button" class="small" data-testid="gallery-delete" title="remove from the gallery" onClick={() => onDelete(r)}>
                ✕
              </button>
            </figcaption>
          </figure>
        ))}
      </div>
    </section>
  );
}
