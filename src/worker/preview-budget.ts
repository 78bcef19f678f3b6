// When a model process decodes a live preview with the preview VAE: every step while that stays
// cheap next to the denoising itself (a quarter of the time since the last preview), less often
// when it would not. The latent preview, which costs nothing, goes out every step regardless.

export interface PreviewBudget {
  /** Whether this step should get a decoded preview. */
  due(): boolean;
  /** Reports how long the decode took (ms). */
  spent(ms: number): void;
}

/**
 * @example const b = previewBudget(); if (b.due()) { const t = performance.now(); await decode(); b.spent(performance.now() - t); }
 */
export function previewBudget(share = 0.25, now: () => number = () => performance.now()): PreviewBudget {
  let decodeMs = 0;
  let sinceMs = 0;
  let last = now();
  let first = true;
  return {
    due() {
      const t = now();
      sinceMs += t - last;
      last = t;
      return first || decodeMs <= share * sinceMs; // the first one measures the cost
    },
    spent(ms) {
      first = false;
      decodeMs = ms;
      sinceMs = 0;
      last = now();
    },
  };
}
