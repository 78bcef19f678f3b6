// The input: a sketch canvas over an optional uploaded / dropped picture. Two layers: a base
// (background colour + picture) and strokes (brush, eraser erases strokes only, undo/redo, clear).
// exportPng() flattens both at the output size, which is what the server receives.
import { useEffect, useRef, useState } from "preact/hooks";

export interface SketchHandle {
  exportPng(): Promise<Blob>;
  /** Data URL of the flattened input (the "before" of the compare slider). */
  snapshot(): string;
}

const COLOURS = ["#000000", "#ffffff", "#e53935", "#fb8c00", "#fdd835", "#43a047", "#1e88e5", "#8e24aa", "#6d4c41", "#9e9e9e"];
const HISTORY = 40;

interface Props {
  width: number;
  height: number;
  handle: { current: SketchHandle | null };
  /** An uploaded picture asks for an output size that keeps its aspect. */
  onPicture(width: number, height: number): void;
}

export function Sketch({ width, height, handle, onPicture }: Props) {
  const base = useRef<HTMLCanvasElement>(null);
  const strokes = useRef<HTMLCanvasElement>(null);
  const [colour, setColour] = useState("#000000");
  const [size, setSize] = useState(6);
  const [eraser, setEraser] = useState(false);
  const [background, setBackground] = useState("#ffffff");
  const [picture, setPicture] = useState<HTMLImageElement | null>(null);
  const [dragging, setDragging] = useState(false);
  const undo = useRef<ImageData[]>([]);
  const redo = useRef<ImageData[]>([]);
  const [, setTick] = useState(0); // re-render after history changes (button states)
  const drawing = useRef<{ x: number; y: number } | null>(null);

  const ctx = () => strokes.current!.getContext("2d", { willReadFrequently: true })!;
  /** The strokes layer's pixels, kept to survive a canvas resize (which clears it). */
  const lastStrokes = useRef<Uint8ClampedArray | null>(null);
  const remember = () => (lastStrokes.current = ctx().getImageData(0, 0, width, height).data);

  // base layer: background colour, then the picture scaled to cover
  useEffect(() => {
    const c = base.current!;
    const g = c.getContext("2d")!;
    g.fillStyle = background;
    g.fillRect(0, 0, c.width, c.height);
    if (picture) g.drawImage(picture, 0, 0, c.width, c.height);
  }, [background, picture, width, height]);

  // keep strokes when the size changes: rescale the old layer into the new one
  const prevSize = useRef({ width, height });
  useEffect(() => {
    const c = strokes.current!;
    const prev = prevSize.current;
    if (prev.width === width && prev.height === height) return;
    const old = document.createElement("canvas");
    [old.width, old.height] = [prev.width, prev.height];
    old.getContext("2d")!.putImageData(new ImageData(new Uint8ClampedArray(lastStrokes.current ?? new Uint8ClampedArray(prev.width * prev.height * 4)), prev.width, prev.height), 0, 0);
    c.getContext("2d")!.drawImage(old, 0, 0, width, height);
    prevSize.current = { width, height };
    undo.current = [];
    redo.current = [];
    setTick((t) => t + 1);
  }, [width, height]);

  const pushHistory = () => {
    undo.current.push(ctx().getImageData(0, 0, width, height));
    if (undo.current.length > HISTORY) undo.current.shift();
    redo.current = [];
    setTick((t) => t + 1);
  };
  const restore = (from: ImageData[], to: ImageData[]) => {
    const img = from.pop();
    if (!img) return;
    to.push(ctx().getImageData(0, 0, width, height));
    ctx().putImageData(img, 0, 0);
    remember();
    setTick((t) => t + 1);
  };

  const point = (e: PointerEvent) => {
    const r = strokes.current!.getBoundingClientRect();
    return { x: ((e.clientX - r.left) / r.width) * width, y: ((e.clientY - r.top) / r.height) * height };
  };
  const line = (a: { x: number; y: number }, b: { x: number; y: number }) => {
    const g = ctx();
    g.globalCompositeOperation = eraser ? "destination-out" : "source-over";
    g.strokeStyle = colour;
    g.lineWidth = (size * width) / 512;
    g.lineCap = "round";
    g.lineJoin = "round";
    g.beginPath();
    g.moveTo(a.x, a.y);
    g.lineTo(b.x, b.y);
    g.stroke();
  };
  const down = (e: PointerEvent) => {
    if (e.button !== 0) return;
    (e.target as Element).setPointerCapture(e.pointerId);
    pushHistory();
    const p = point(e);
    drawing.current = p;
    line(p, p);
  };
  const move = (e: PointerEvent) => {
    if (!drawing.current) return;
    const p = point(e);
    line(drawing.current, p);
    drawing.current = p;
  };
  const up = () => {
    if (drawing.current) remember();
    drawing.current = null;
  };
  const clear = () => {
    pushHistory();
    ctx().clearRect(0, 0, width, height);
    remember();
    setPicture(null);
  };

  const loadFile = (file: File | undefined) => {
    if (!file?.type.startsWith("image/")) return;
    const img = new Image();
    img.onload = () => {
      setPicture(img);
      onPicture(img.naturalWidth, img.naturalHeight);
    };
    img.src = URL.createObjectURL(file);
  };

  const flatten = () => {
    const out = document.createElement("canvas");
    [out.width, out.height] = [width, height];
    const g = out.getContext("2d")!;
    g.drawImage(base.current!, 0, 0);
    g.drawImage(strokes.current!, 0, 0);
    return out;
  };
  handle.current = {
    exportPng: () => new Promise((resolve, reject) => flatten().toBlob((b) => (b ? resolve(b) : reject(new Error("could not export the canvas"))), "image/png")),
    snapshot: () => flatten().toDataURL("image/png"),
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
          <input type="color" value={colour} title="any colour" onInput={(e) => [setColour(e.currentTarget.value), setEraser(false)]} />
        </div>
        <label title="brush size">
          brush <input type="range" min={1} max={60} value={size} data-testid="brush-size" onInput={(e) => setSize(Number(e.currentTarget.value))} /> {size}
        </label>
        <button type="button" class={eraser ? "on" : ""} data-testid="eraser" onClick={() => setEraser(!eraser)}>
          eraser
        </button>
        <button type="button" data-testid="undo" disabled={!undo.current.length} onClick={() => restore(undo.current, redo.current)}>
          undo
        </button>
        <button type="button" data-testid="redo" disabled={!redo.current.length} onClick={() => restore(redo.current, undo.current)}>
          redo
        </button>
        <button type="button" data-testid="clear" onClick={clear}>
          clear
        </button>
        <label title="background colour">
          background <input type="color" value={background} data-testid="background" onInput={(e) => setBackground(e.currentTarget.value)} />
        </label>
      </div>
      {/* biome-ignore lint/a11y/noStaticElementInteractions: a drop target for dragged files; the file input below is the keyboard path */}
      <div
        class={`canvas-wrap ${dragging ? "drop" : ""}`}
        style={{ aspectRatio: `${width} / ${height}` }}
        onDragOver={(e) => [e.preventDefault(), setDragging(true)]}
        onDragLeave={() => setDragging(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDragging(false);
          loadFile(e.dataTransfer?.files[0]);
        }}
      >
        <canvas ref={base} width={width} height={height} class="layer" />
        <canvas
          ref={strokes}
          width={width}
          height={height}
          class={`layer strokes ${eraser ? "erasing" : ""}`}
          data-testid="sketch-canvas"
          onPointerDown={down}
          onPointerMove={move}
          onPointerUp={up}
          onPointerCancel={up}
        />
      </div>
      <label class="upload">
        or upload / drop a picture: <input type="file" accept="image/*" data-testid="image-input" onChange={(e) => loadFile(e.currentTarget.files?.[0])} />
      </label>
    </div>
  );
}
