// The input document: the one source of the picture the server receives. Its size is the size the
// UI shows and sends; layers: background colour, a picture (uploaded, pasted, dropped or a result)
// and strokes (brush; the eraser erases strokes only). Every change is one undoable step, size
// changes included: they scale the drawing or re-frame it (same scale, centred: cropped or extended).

export type ResizeMode = "scale" | "reframe";

interface Snapshot {
  width: number;
  height: number;
  background: string;
  picture: HTMLCanvasElement;
  strokes: HTMLCanvasElement;
  hasPicture: boolean;
}

const HISTORY = 30;

function canvas(width: number, height: number): HTMLCanvasElement {
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

function copy(src: HTMLCanvasElement): HTMLCanvasElement {
  const c = canvas(src.width, src.height);
  c.getContext("2d")!.drawImage(src, 0, 0);
  return c;
}

/** `src` drawn into a new w x h canvas: stretched (scale) or at its own scale, centred (reframe). */
function transform(src: HTMLCanvasElement, w: number, h: number, mode: ResizeMode): HTMLCanvasElement {
  const c = canvas(w, h);
  const g = c.getContext("2d")!;
  g.imageSmoothingQuality = "high";
  if (mode === "scale") g.drawImage(src, 0, 0, w, h);
  else g.drawImage(src, Math.round((w - src.width) / 2), Math.round((h - src.height) / 2));
  return c;
}

export class SketchDoc {
  width: number;
  height: number;
  background = "#ffffff";
  picture: HTMLCanvasElement;
  strokes: HTMLCanvasElement;
  private undoStack: Snapshot[] = [];
  private redoStack: Snapshot[] = [];
  private listeners = new Set<() => void>();

  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
    this.picture = canvas(width, height);
    this.strokes = canvas(width, height);
  }

  /** Calls `fn` after every change; returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  changed(): void {
    for (const fn of this.listeners) fn();
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }
  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }
  get hasPicture(): boolean {
    return this.pictureSet;
  }
  private pictureSet = false;

  private snapshot(): Snapshot {
    return {
      width: this.width,
      height: this.height,
      background: this.background,
      picture: copy(this.picture),
      strokes: copy(this.strokes),
      hasPicture: this.pictureSet,
    };
  }
  private restore(s: Snapshot): void {
    ({ width: this.width, height: this.height, background: this.background } = s);
    this.picture = copy(s.picture);
    this.strokes = copy(s.strokes);
    this.pictureSet = s.hasPicture;
  }

  /** Records the current state as one undo step (call before changing it). */
  checkpoint(): void {
    this.undoStack.push(this.snapshot());
    if (this.undoStack.length > HISTORY) this.undoStack.shift();
    this.redoStack = [];
  }

  undo(): void {
    const s = this.undoStack.pop();
    if (!s) return;
    this.redoStack.push(this.snapshot());
    this.restore(s);
    this.changed();
  }
  redo(): void {
    const s = this.redoStack.pop();
    if (!s) return;
    this.undoStack.push(this.snapshot());
    this.restore(s);
    this.changed();
  }

  /** Nothing drawn, uploaded or undoable yet. */
  get isBlank(): boolean {
    return !this.pictureSet && this.undoStack.length === 0 && this.redoStack.length === 0;
  }

  /** A blank document's size (no undo step: there is nothing to go back to). */
  resetBlank(width: number, height: number): void {
    if (!this.isBlank || (width === this.width && height === this.height)) return;
    [this.width, this.height] = [width, height];
    this.picture = canvas(width, height);
    this.strokes = canvas(width, height);
    this.changed();
  }

  /** New size: the drawing is scaled to it, or kept at its scale and centred (cropped or extended). */
  resize(width: number, height: number, mode: ResizeMode): void {
    if (width === this.width && height === this.height) return;
    this.checkpoint();
    this.picture = transform(this.picture, width, height, mode);
    this.strokes = transform(this.strokes, width, height, mode);
    [this.width, this.height] = [width, height];
    this.changed();
  }

  /** A picture becomes the input at `width` x `height` (it covers the canvas, aspect kept, centred).
   *  `keepStrokes` false clears the strokes (a result to draw over: its strokes are already in it). */
  setPicture(img: CanvasImageSource & { width: number; height: number }, width: number, height: number, keepStrokes: boolean, mode: ResizeMode): void {
    this.checkpoint();
    const pic = canvas(width, height);
    const g = pic.getContext("2d")!;
    g.imageSmoothingQuality = "high";
    const s = Math.max(width / img.width, height / img.height);
    g.drawImage(img, (width - img.width * s) / 2, (height - img.height * s) / 2, img.width * s, img.height * s);
    this.strokes = keepStrokes ? transform(this.strokes, width, height, mode) : canvas(width, height);
    this.picture = pic;
    this.pictureSet = true;
    [this.width, this.height] = [width, height];
    this.changed();
  }

  setBackground(colour: string): void {
    if (colour === this.background) return;
    this.checkpoint();
    this.background = colour;
    this.changed();
  }

  /** Removes strokes and picture (one undo step). */
  clear(): void {
    this.checkpoint();
    this.picture = canvas(this.width, this.height);
    this.strokes = canvas(this.width, this.height);
    this.pictureSet = false;
    this.changed();
  }

  /** Draws background, picture and strokes into `c` (resized to the document). */
  render(c: HTMLCanvasElement): void {
    if (c.width !== this.width || c.height !== this.height) [c.width, c.height] = [this.width, this.height];
    const g = c.getContext("2d")!;
    g.fillStyle = this.background;
    g.fillRect(0, 0, this.width, this.height);
    g.drawImage(this.picture, 0, 0);
    g.drawImage(this.strokes, 0, 0);
  }

  /** The flattened input at the document's size: what the server receives. */
  flatten(): HTMLCanvasElement {
    const out = canvas(this.width, this.height);
    this.render(out);
    return out;
  }
  exportPng(): Promise<Blob> {
    return new Promise((resolve, reject) => this.flatten().toBlob((b) => (b ? resolve(b) : reject(new Error("could not export the canvas"))), "image/png"));
  }
}
