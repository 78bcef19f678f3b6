// Inpainting in the web UI (A1111's Inpaint and Inpaint sketch tabs): a mask layer of the SketchDoc painted over the
// picture or sketch (brush, eraser, size, show/hide, invert, clear; undoable with the rest of the input), mask blur,
// "only masked" with its padding, masked content, and inpaint sketch (colour strokes over a photo are the mask and the
// new content). Sent as the native API's `mask` file (white = repaint) and its fields (src/server/inpaint-fields.ts).
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { brushSegment, canvas, type SketchDoc } from "./doc.js";

export type MaskedContent = "original" | "fill" | "latent-noise" | "latent-nothing";

export interface MaskState {
  /** What the pointer paints on the input: the picture's strokes, or the mask. */
  mode: "draw" | "mask";
  eraser: boolean;
  size: number;
  shown: boolean;
  blur: number;
  onlyMasked: boolean;
  padding: number;
  fill: MaskedContent;
  /** Inpaint sketch: the colour strokes are also the mask. */
  sketch: boolean;
}

/** A1111's UI defaults: blur 4, whole picture, padding 32, original content. */
export const MASK_DEFAULTS: MaskState = {
  mode: "draw",
  eraser: false,
  size: 24,
  shown: true,
  blur: 4,
  onlyMasked: false,
  padding: 32,
  fill: "original",
  sketch: false,
};

const TINT = "rgb(255, 0, 96)";

/** Pointer position in document pixels. */
function docPoint(el: HTMLElement, doc: SketchDoc, e: PointerEvent) {
  const r = el.getBoundingClientRect();
  return { x: ((e.clientX - r.left) / r.width) * doc.width, y: ((e.clientY - r.top) / r.height) * doc.height };
}

/** Swaps repaint and keep (one undo step). */
export function invertMask(doc: SketchDoc): void {
  doc.checkpoint();
  const inv = canvas(doc.width, doc.height);
  const g = inv.getContext("2d")!;
  g.fillStyle = "#ffffff";
  g.fillRect(0, 0, doc.width, doc.height);
  g.globalCompositeOperation = "destination-out";
  g.drawImage(doc.mask, 0, 0);
  doc.mask = inv;
  doc.changed();
}

export function clearMask(doc: SketchDoc): void {
  doc.checkpoint();
  doc.mask = canvas(doc.width, doc.height);
  doc.changed();
}

/** The mask as sent: white = repaint on black, at the document's size (with the strokes under inpaint sketch). */
export function outgoingMask(doc: SketchDoc, sketch: boolean): { mask: HTMLCanvasElement; pixels: number } {
  const out = canvas(doc.width, doc.height);
  const g = out.getContext("2d")!;
  if (sketch) {
    const shape = canvas(doc.width, doc.height);
    const s = shape.getContext("2d")!;
    s.drawImage(doc.strokes, 0, 0);
    s.globalCompositeOperation = "source-in";
    s.fillStyle = "#ffffff";
    s.fillRect(0, 0, doc.width, doc.height);
    g.drawImage(shape, 0, 0);
  }
  g.drawImage(doc.mask, 0, 0);
  const d = g.getImageData(0, 0, doc.width, doc.height).data;
  let pixels = 0;
  for (let i = 3; i < d.length; i += 4) pixels += d[i] > 0 ? 1 : 0;
  g.globalCompositeOperation = "destination-over";
  g.fillStyle = "#000000";
  g.fillRect(0, 0, doc.width, doc.height);
  return { mask: out, pixels };
}

/**
 * Adds the mask and its settings to a native-API form when something is masked; returns whether it did.
 * @example if (await addMaskFields(form, doc, mask)) // the job inpaints
 */
export async function addMaskFields(form: FormData, doc: SketchDoc, m: MaskState): Promise<boolean> {
  const { mask, pixels } = outgoingMask(doc, m.sketch);
  if (pixels === 0) return false;
  const png = await new Promise<Blob>((resolve, reject) => mask.toBlob((b) => (b ? resolve(b) : reject(new Error("could not export the mask"))), "image/png"));
  form.set("mask", png, "mask.png");
  form.set("maskBlur", String(m.blur));
  form.set("inpaintArea", m.onlyMasked ? "masked" : "whole");
  form.set("inpaintPadding", String(m.padding));
  form.set("fill", m.fill);
  return true;
}

/** The mask shown tinted over the input canvas; in mask mode the pointer paints it. Mount inside the canvas frame. */
export function MaskOverlay({ doc, m }: { doc: SketchDoc; m: MaskState }) {
  const view = useRef<HTMLCanvasElement>(null);
  const last = useRef<{ x: number; y: number } | null>(null);
  const draw = () => {
    const c = view.current;
    if (!c) return;
    if (c.width !== doc.width || c.height !== doc.height) [c.width, c.height] = [doc.width, doc.height];
    const g = c.getContext("2d")!;
    g.globalCompositeOperation = "source-over";
    g.clearRect(0, 0, c.width, c.height);
    g.drawImage(doc.mask, 0, 0);
    g.globalCompositeOperation = "source-in";
    g.fillStyle = TINT;
    g.fillRect(0, 0, c.width, c.height);
  };
  useEffect(() => {
    draw();
    return doc.subscribe(draw);
  }, [doc]);
  const active = m.mode === "mask";
  const segment = (a: { x: number; y: number }, b: { x: number; y: number }) => {
    brushSegment(doc.mask, a, b, "#ffffff", m.size, m.eraser);
    draw();
  };
  return (
    <canvas
      ref={view}
      data-testid="mask-canvas"
      class={m.eraser && active ? "erasing" : ""}
      style={{ position: "absolute", inset: 0, opacity: m.shown ? 0.5 : 0, pointerEvents: active ? "auto" : "none" }}
      onPointerDown={(e) => {
        if (e.button !== 0) return;
        (e.target as Element).setPointerCapture(e.pointerId);
        doc.checkpoint();
        const p = docPoint(view.current!, doc, e);
        last.current = p;
        segment(p, p);
      }}
      onPointerMove={(e) => {
        if (!last.current) return;
        const p = docPoint(view.current!, doc, e);
        segment(last.current, p);
        last.current = p;
      }}
      onPointerUp={() => {
        if (last.current) doc.changed();
        last.current = null;
      }}
      onPointerCancel={() => {
        last.current = null;
      }}
    />
  );
}

/** The mask tools and the inpainting settings, under the input canvas. */
export function MaskPanel({ doc, m, set }: { doc: SketchDoc; m: MaskState; set: (patch: Partial<MaskState>) => void }) {
  const [tick, setTick] = useState(0);
  useEffect(() => doc.subscribe(() => setTick((t) => t + 1)), [doc]);
  // tick: the doc is mutable, so its change counter keys the count
  const masked = useMemo(() => outgoingMask(doc, m.sketch).pixels, [doc, tick, m.sketch]);
  const share = masked / (doc.width * doc.height);
  return (
    <fieldset class="mask-panel" data-testid="mask-panel">
      <legend>
        inpaint{" "}
        <span class="muted" data-testid="mask-coverage">
          {masked ? `${(share * 100).toFixed(share < 0.01 ? 1 : 0)}% masked: only that is repainted` : "no mask: the whole picture is repainted"}
        </span>
      </legend>
      <div class="toolbar">
        <button type="button" class={m.mode === "mask" ? "on" : ""} data-testid="mask-mode" onClick={() => set({ mode: m.mode === "mask" ? "draw" : "mask" })}>
          {m.mode === "mask" ? "painting mask" : "paint mask"}
        </button>
        <button type="button" class={m.eraser ? "on" : ""} data-testid="mask-eraser" disabled={m.mode !== "mask"} onClick={() => set({ eraser: !m.eraser })}>
          mask eraser
        </button>
        <label title="mask brush size">
          size <input type="range" min={2} max={120} value={m.size} data-testid="mask-size" onInput={(e) => set({ size: Number(e.currentTarget.value) })} />
        </label>
        <label>
          <input type="checkbox" checked={m.shown} data-testid="mask-shown" onChange={(e) => set({ shown: e.currentTarget.checked })} /> show
        </label>
        <button type="button" data-testid="mask-invert" onClick={() => invertMask(doc)} title="repaint the other side">
          invert
        </button>
        <button type="button" data-testid="mask-clear" onClick={() => clearMask(doc)}>
          clear mask
        </button>
      </div>
      <div class="toolbar">
        <label title="softens the mask edge (pixels)">
          mask blur{" "}
          <input
            type="number"
            min={0}
            max={64}
            value={m.blur}
            data-testid="mask-blur"
            style={{ width: "4em" }}
            onChange={(e) => set({ blur: Math.max(0, Math.min(64, Number(e.currentTarget.value) || 0)) })}
          />
        </label>
        <label title="repaint a crop around the mask at full size, then paste it back (A1111 'Only masked')">
          <input type="checkbox" checked={m.onlyMasked} data-testid="mask-only-masked" onChange={(e) => set({ onlyMasked: e.currentTarget.checked })} /> only
          masked
        </label>
        <label title="context kept around the mask for 'only masked' (pixels)">
          padding{" "}
          <input
            type="number"
            min={0}
            max={256}
            value={m.padding}
            disabled={!m.onlyMasked}
            data-testid="mask-padding"
            style={{ width: "4em" }}
            onChange={(e) => set({ padding: Math.max(0, Math.min(256, Number(e.currentTarget.value) || 0)) })}
          />
        </label>
        <label title="what the masked area starts from">
          content{" "}
          <select value={m.fill} data-testid="mask-fill" onChange={(e) => set({ fill: e.currentTarget.value as MaskedContent })}>
            <option value="original">original</option>
            <option value="fill">fill</option>
            <option value="latent-noise">latent noise</option>
            <option value="latent-nothing">latent nothing</option>
          </select>
        </label>
        <label title="inpaint sketch: colour strokes over the picture are the new content and the mask">
          <input type="checkbox" checked={m.sketch} data-testid="mask-sketch" onChange={(e) => set({ sketch: e.currentTarget.checked })} /> strokes are the mask
        </label>
      </div>
    </fieldset>
  );
}
