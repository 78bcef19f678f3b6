// Before/after compare: the result on top, clipped at the slider, the input underneath.
import { useState } from "preact/hooks";

export function Compare({ before, after, alt }: { before: string; after: string; alt: string }) {
  const [split, setSplit] = useState(50);
  return (
    <div class="compare">
      <div class="compare-stack">
        <img src={before} alt="input" class="before" />
        <img src={after} alt={alt} class="after" data-testid="result-image" style={{ clipPath: `inset(0 0 0 ${split}%)` }} />
        <div class="split-line" style={{ left: `${split}%` }} />
      </div>
      <input
        type="range"
        min={0}
        max={100}
        value={split}
        aria-label="before / after"
        data-testid="compare-slider"
        onInput={(e) => setSplit(Number(e.currentTarget.value))}
      />
      <div class="compare-labels">
        <span>← input</span>
        <span>result →</span>
      </div>
    </div>
  );
}
