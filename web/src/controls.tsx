// The settings panel: prompt, strength (with what it means), steps, guidance, sampler, seed, the
// input size (read from and written to the SketchDoc: the size shown is the size sent), how a size
// change treats the drawing, the sweep's strengths, and Generate / Cancel / Strength sweep.
import type { ComponentChildren } from "preact";
import type { SketchDoc, ResizeMode } from "./doc.js";
import type { SamplerInfo } from "./api.js";

export interface Settings {
  prompt: string;
  negative: string;
  strength: number;
  steps: number;
  guidance: number;
  seed: number;
  lockSeed: boolean;
  sampler: string;
  resizeMode: ResizeMode;
  /** The sweep's strengths as typed; null: follow the slider (sweepAround). */
  sweep: string | null;
}

/** Sizes offered (multiples of 64); the document's own size is always offered too. */
/** Width/height choices: multiples of 64 up to twice the model's native size (1024 for SD 1.x, 2048 for SDXL). */
export const sizeChoices = (native = 512): number[] => Array.from({ length: Math.max(16, (2 * native) / 64) }, (_, i) => 64 * (i + 1));

export function strengthHint(s: number): string {
  if (s < 0.2) return "barely changes the input";
  if (s < 0.45) return "subtle: keeps shapes and colours, refines details";
  if (s < 0.75) return "restyle: keeps the composition, changes the look";
  return "reimagine: uses the input only as a loose guide";
}

/**
 * Five strengths around `s` (s-0.2 ... s+0.2 by 0.1, kept inside [0.05, 1]).
 * @example sweepAround(0.6) // "0.4, 0.5, 0.6, 0.7, 0.8"
 */
export function sweepAround(s: number): string {
  const vals = [-0.2, -0.1, 0, 0.1, 0.2].map((d) => Math.round(Math.min(1, Math.max(0.05, s + d)) * 100) / 100);
  return [...new Set(vals)].join(", ");
}

/** "0.3, 0.5 0.7" -> [0.3, 0.5, 0.7]; throws a message naming the bad value. */
export function parseSweep(text: string): number[] {
  const vals = text
    .split(/[,\s]+/)
    .filter(Boolean)
    .map(Number);
  const bad = vals.find((v) => !(v > 0 && v <= 1));
  if (bad !== undefined || vals.length === 0) throw new Error(`sweep strengths must be numbers in (0, 1], e.g. 0.3, 0.5, 0.7 (got "${text}")`);
  if (vals.length > 12) throw new Error("a sweep takes at most 12 strengths");
  return vals;
}

interface Props {
  s: Settings;
  set: (patch: Partial<Settings>) => void;
  samplers: SamplerInfo[];
  doc: SketchDoc;
  /** The loaded model's native size: the size choices follow it. */
  nativeSize?: number;
  busy: boolean;
  onGenerate(): void;
  onSweep(): void;
  onCancel(): void;
  /** Shown below the prompts (the LoRA picker). */
  children?: ComponentChildren;
}

export function Controls({ s, set, samplers, doc, nativeSize, busy, onGenerate, onSweep, onCancel, children }: Props) {
  const sizes = (current: number) => [...new Set([...sizeChoices(nativeSize), current])].sort((a, b) => a - b);
  const sweep = s.sweep ?? sweepAround(s.strength);
  return (
    <section class="controls">
      <label>
        Prompt
        <textarea
          data-testid="prompt"
          rows={3}
          value={s.prompt}
          placeholder="a castle on a hill at sunset, oil painting"
          onInput={(e) => set({ prompt: e.currentTarget.value })}
        />
      </label>
      <label>
        Negative prompt
        <textarea
          data-testid="negative-prompt"
          rows={1}
          value={s.negative}
          placeholder="blurry, low quality"
          onInput={(e) => set({ negative: e.currentTarget.value })}
        />
      </label>
      {children}
      <label>
        Strength <b data-testid="strength-value">{s.strength.toFixed(2)}</b> <small>{strengthHint(s.strength)}</small>
        <input
          type="range"
          data-testid="strength"
          min={0}
          max={1}
          step={0.05}
          value={s.strength}
          onInput={(e) => set({ strength: Number(e.currentTarget.value) })}
        />
      </label>
      <div class="row">
        <label>
          Steps
          <input type="number" data-testid="steps" min={1} max={150} value={s.steps} onInput={(e) => set({ steps: Number(e.currentTarget.value) })} />
        </label>
        <label>
          Guidance
          <input
            type="number"
            data-testid="guidance"
            min={0}
            max={30}
            step={0.5}
            value={s.guidance}
            onInput={(e) => set({ guidance: Number(e.currentTarget.value) })}
          />
        </label>
        <label class="wide">
          Sampler
          <select data-testid="sampler" value={s.sampler} onChange={(e) => set({ sampler: e.currentTarget.value })}>
            {samplers.map((x) => (
              <option key={x.name} value={x.name}>
                {x.a1111Name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <div class="row">
        <label>
          Seed
          <input type="number" data-testid="seed" value={s.seed} onInput={(e) => set({ seed: Number(e.currentTarget.value) })} />
        </label>
        <label class="check" title="keep this seed for the next runs">
          <input type="checkbox" data-testid="seed-lock" checked={s.lockSeed} onChange={(e) => set({ lockSeed: e.currentTarget.checked })} /> lock
        </label>
        <button type="button" title="a new random seed for each run" data-testid="seed-random" onClick={() => set({ seed: -1, lockSeed: false })}>
          random
        </button>
      </div>
      <div class="row">
        <label class="size-label">
          Size
          <span class="size">
            <select data-testid="width" value={doc.width} onChange={(e) => doc.resize(Number(e.currentTarget.value), doc.height, s.resizeMode)}>
              {sizes(doc.width).map((v) => (
                <option value={v}>{v}</option>
              ))}
            </select>
            ×
            <select data-testid="height" value={doc.height} onChange={(e) => doc.resize(doc.width, Number(e.currentTarget.value), s.resizeMode)}>
              {sizes(doc.height).map((v) => (
                <option value={v}>{v}</option>
              ))}
            </select>
          </span>
        </label>
        <label class="wide" title="what a size change does to the drawing (undo with Ctrl+Z)">
          On resize
          <select data-testid="resize-mode" value={s.resizeMode} onChange={(e) => set({ resizeMode: e.currentTarget.value as ResizeMode })}>
            <option value="scale">scale drawing</option>
            <option value="reframe">keep scale (crop/extend)</option>
          </select>
        </label>
      </div>
      <label title="strengths of a sweep: same seed, one image each">
        Sweep strengths{" "}
        {s.sweep !== null && (
          <button type="button" class="link" onClick={() => set({ sweep: null })}>
            around the slider
          </button>
        )}
        <input type="text" data-testid="sweep-values" value={sweep} onInput={(e) => set({ sweep: e.currentTarget.value })} />
      </label>
      <div class="row actions">
        <button type="button" class="primary" data-testid="generate" disabled={busy} onClick={onGenerate} title="Ctrl+Enter">
          Generate
        </button>
        <button type="button" data-testid="cancel" disabled={!busy} onClick={onCancel}>
          Cancel
        </button>
        <button type="button" data-testid="sweep" disabled={busy} onClick={onSweep} title={`same seed at strengths ${sweep}`}>
          Strength sweep
        </button>
      </div>
    </section>
  );
}
