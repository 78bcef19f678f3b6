// The input canvas: shows the SketchDoc (background, picture, strokes) and draws strokes into it
// with the pointer (brush, or an eraser that erases strokes only). Pictures come in by upload or
// by dropping a file here; the app decides what a file means (a picture, PNG info) through onFile.
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { brushSegment, type SketchDoc } from "./doc.js";

/** Keeps a picture of this shape inside its column and the window's height (no scrolling at 1366x768: the toolbar,
 *  the upload line and the layout row take about 260 px). */
export function fitStyle(width: number, height: number): Record<string, string> {
  return { aspectRatio: `${width} / ${height}`, width: `min(100%, calc((100vh - 260px) * ${(width / height).toFixed(4)}))` };
}

const COLOURS = ["#000000", "#ffffff", "#e53935", "#fb8c00", "#fdd835", "#43a047", "#1e88e5", "#8e24aa", "#6d4c41", "#9e9e9e"];

interface Props {
  doc: SketchDoc;
  /** A file dropped on the canvas or chosen with the upload button. */
  onFile(file: File): void;
  /** Layers shown over the canvas (the inpainting mask). */
  overlay?: ComponentChildren;
}

export function Sketch({ doc, onFile, overlay }: Props) {
  const view = useRef<HTMLCanvasElement>(null);
  const [colour, setColour] = useState("#000000");
  const [size, setSize] = useState(6);
  const [eraser, setEraser] = useState(false);
  const [dragging, setDragging] = useState(false);
  const [, setTick] = useState(0);
  const last = useRef<{ x: number; y: number } | null>(null);

  useEffect(() => {
    const draw = () => {
      if (view.current) doc.render(view.current);
      setTick((t) => t + 1); // undo/redo button states
    };
    draw();
    return doc.subscribe(draw);
  }, [doc]);

  const point = (e: PointerEvent) => {
    const r = view.current!.getBoundingClientRect();
    return { x: ((e.clientX - r.left) / r.width) * doc.width, y: ((e.clientY - r.top) / r.height) * doc.height };
  };
  const line = (a: { x: number; y: number }, b: { x: number; y: number }) => {
    brushSegment(doc.strokes, a, b, colour, size, eraser);
    doc.render(view.current!);
  };
  const down = (e: PointerEvent) => {
    if (e.button !== 0) return;
    (e.target as Element).setPointerCapture(e.pointerId);
    doc.checkpoint();
    const p = point(e);
    last.current = p;
    line(p, p);
  };
  const move = (e: PointerEvent) => {
    if (!last.current) return;
    const p = point(e);
    line(last.current, p);
    last.current = p;
  };
  const up = () => {
    if (last.current) doc.changed();
    last.current = null;
  };

  return (
    <div class="sketch">
      <div class="toolbar">
        <div class="swatches">
          {COLOURS.map((c) => (
            <button
              type="button"
              key={c}
              class={`swatch ${c === colour && !eraser ? "on" : ""}`}
              style={{ background: c }}
              title={c}
              aria-label={`colour ${c}`}
              onClick={() => [setColour(c), setEraser(false)]}
            />
          ))}
          <input type="color" value={colour} title="any colour" aria-label="any colour" onInput={(e) => [setColour(e.currentTarget.value), setEraser(false)]} />
        </div>
        <label title="brush size">
          brush <input type="range" min={1} max={60} value={size} data-testid="brush-size" onInput={(e) => setSize(Number(e.currentTarget.value))} />
        </label>
        <button type="button" class={eraser ? "on" : ""} data-testid="eraser" onClick={() => setEraser(!eraser)} title="erases strokes, not the picture">
          eraser
        </button>
        <button type="button" data-testid="undo" disabled={!doc.canUndo} onClick={() => doc.undo()} title="Ctrl+Z">
          undo
        </button>
        <button type="button" data-testid="redo" disabled={!doc.canRedo} onClick={() => doc.redo()} title="Ctrl+Shift+Z">
          redo
        </button>
        <button type="button" data-testid="clear" onClick={() => doc.clear()}>
          clear
        </button>
        <label title="background colour (under transparent parts)">
          bg <input type="color" value={doc.background} data-testid="background" onChange={(e) => doc.setBackground(e.currentTarget.value)} />
        </label>
      </div>
      {/* biome-ignore lint/a11y/noStaticElementInteractions: a drop target for dragged files; the file input below is the keyboard path */}
      <div
        class={`canvas-wrap ${dragging ? "drop" : ""}`}
        style={fitStyle(doc.width, doc.height)}
        onDragOver={(e) => [e.preventDefault(), setDragging(true)]}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          const f = e.dataTransfer?.files[0];
          if (f) onFile(f);
        }}
      >
        <canvas
          ref={view}
          class={`view ${eraser ? "erasing" : ""}`}
          data-testid="sketch-canvas"
          onPointerDown={down}
          onPointerMove={move}
          onPointerUp={up}
          onPointerCancel={up}
        />
        {overlay}
      </div>
      <label class="upload">
        upload, drop or paste a picture (a PNG made by Reimagine or A1111 also restores its settings):{" "}
        <input
          type="file"
          accept="image/*"
          data-testid="image-input"
          onChange={(e) => {
            const f = e.currentTarget.files?.[0];
            if (f) onFile(f);
            e.currentTarget.value = ""; // the same file again is a new choice
          }}
        />
      </label>
    </div>
  );
}
