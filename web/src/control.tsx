// "Keep my sketch's layout": a scribble ControlNet from the drawing itself (sketch-to-image), with its control scale
// and a preview of the preprocessed control image (the server's own preprocessing, so what is shown is what the
// ControlNet reads), refreshed as the drawing changes. Off when the server offers no ControlNet.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, apiJson } from "./api.js";
import type { SketchDoc } from "./doc.js";

export interface ControlState {
  on: boolean;
  /** The ControlNet's name on the server (GET /v1/controlnets). */
  model: string;
  scale: number;
}

export const CONTROL_OFF: ControlState = { on: false, model: "", scale: 1 };

/** The form fields a generation sends for `c` (none when off): the drawing is the control image, scribbled. */
export function controlFields(c: ControlState): Record<string, string> {
  return c.on && c.model ? { controlnet: c.model, controlScale: String(c.scale), preprocessor: "scribble" } : {};
}

interface Props {
  doc: SketchDoc;
  c: ControlState;
  set(patch: Partial<ControlState>): void;
}

export function ControlPanel({ doc, c, set }: Props) {
  const [models, setModels] = useState<string[] | null>(null);
  const [preview, setPreview] = useState("");
  const [error, setError] = useState("");
  const pending = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  useEffect(() => {
    apiJson<{ models: { name: string }[] }>("/v1/controlnets")
      .then((r) => {
        const names = r.models.map((m) => m.name);
        setModels(names);
        // a scribble ControlNet is the one for drawings; else the first
        if (names.length && !c.model) set({ model: names.find((n) => /scribble/i.test(n)) ?? names[0] });
      })
      .catch(() => setModels([]));
  }, []);

  // the preview follows the drawing (debounced) while the toggle is on
  useEffect(() => {
    if (!c.on) return;
    let url = "";
    let live = true;
    const refresh = () => {
      clearTimeout(pending.current);
      pending.current = setTimeout(async () => {
        try {
          const form = new FormData();
          form.set("image", await doc.exportPng(), "input.png");
          form.set("preprocessor", "scribble");
          form.set("width", String(doc.width));
          form.set("height", String(doc.height));
          const blob = await (await api("/v1/controlnet/preview", { method: "POST", body: form })).blob();
          if (!live) return;
          if (url) URL.revokeObjectURL(url);
          url = URL.createObjectURL(blob);
          setPreview(url);
          setError("");
        } catch (e) {
          if (live) setError(`no preview: ${(e as Error).message}`);
        }
      }, 250);
    };
    refresh();
    const off = doc.subscribe(refresh);
    return () => {
      live = false;
      off();
      clearTimeout(pending.current);
      if (url) URL.revokeObjectURL(url);
    };
  }, [c.on, doc]);

  const none = models !== null && models.length === 0;
  return (
    <div class="control" data-testid="control-panel">
      <label
        class="check"
        title={
          none
            ? "this server offers no ControlNet (reimagine serve --controlnet-dir)"
            : "a scribble ControlNet keeps the drawing's layout while the prompt paints; strength goes to 1"
        }
      >
        <input type="checkbox" data-testid="keep-layout" checked={c.on} disabled={!models?.length} onChange={(e) => set({ on: e.currentTarget.checked })} />{" "}
        keep my sketch's layout
      </label>
      {models && models.length > 1 && (
        <select data-testid="controlnet-model" value={c.model} disabled={!c.on} onChange={(e) => set({ model: e.currentTarget.value })}>
          {models.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
      )}
      <label class="scale" title="how strongly the layout binds (ControlNet conditioning scale)">
        layout <b data-testid="control-scale-value">{c.scale.toFixed(2)}</b>
        <input
          type="range"
          data-testid="control-scale"
          min={0}
          max={2}
          step={0.05}
          value={c.scale}
          disabled={!c.on}
          onInput={(e) => set({ scale: Number(e.currentTarget.value) })}
        />
      </label>
      {c.on && preview && (
        <img
          class="control-preview"
          src={preview}
          alt="the layout the ControlNet reads (scribble of the drawing)"
          title="what the ControlNet reads: the drawing as white strokes on black"
          data-testid="control-preview"
        />
      )}
      {none && <small class="muted">no ControlNet on this server (reimagine serve --controlnet-dir)</small>}
      {error && <small class="error">{error}</small>}
    </div>
  );
}
