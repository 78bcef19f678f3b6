// AUTOMATIC1111 "infotext": the `parameters` text stored in PNGs, read by A1111's PNG Info
// and Civitai. Format: prompt line(s), "Negative prompt: ..." line(s), then one line of
// "Key: value" pairs separated by ", " (values with commas are JSON-quoted).

export interface GenerationSettings {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** A1111 display name, e.g. "Euler a". */
  sampler: string;
  cfgScale: number;
  seed: number | bigint;
  width: number;
  height: number;
  model?: string;
  modelHash?: string;
  denoisingStrength: number;
  clipSkip?: number;
  /** Any further pairs (e.g. "Resize mode"). */
  extra?: Record<string, string>;
}

function quote(v: string): string {
  return /[,:\n"]/.test(v) ? JSON.stringify(v) : v;
}

/** Settings -> A1111 infotext. */
export function formatInfotext(s: GenerationSettings): string {
  const pairs: [string, string][] = [
    ["Steps", String(s.steps)],
    ["Sampler", s.sampler],
    ["CFG scale", String(s.cfgScale)],
    ["Seed", String(s.seed)],
    ["Size", `${s.width}x${s.height}`],
  ];
  if (s.modelHash) pairs.push(["Model hash", s.modelHash]);
  if (s.model) pairs.push(["Model", s.model]);
  pairs.push(["Denoising strength", String(s.denoisingStrength)]);
  if (s.clipSkip && s.clipSkip > 0) pairs.push(["Clip skip", String(s.clipSkip + 1)]); // A1111 counts from 1
  for (const [k, v] of Object.entries(s.extra ?? {})) pairs.push([k, v]);
  const lines = [s.prompt];
  if (s.negativePrompt) lines.push(`Negative prompt: ${s.negativePrompt}`);
  lines.push(pairs.map(([k, v]) => `${k}: ${quote(v)}`).join(", "));
  return lines.join("\n");
}

/** Splits the last line's "Key: value" pairs, honouring JSON-quoted values. */
function parsePairs(line: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /\s*([\w \-/+()]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/g;
  for (const m of line.matchAll(re)) {
    let v = m[2].trim();
    if (v.startsWith('"')) {
      try {
        v = JSON.parse(v);
      } catch {
        /* keep raw */
      }
    }
    out.set(m[1].trim(), v);
  }
  return out;
}

/** A1111 infotext -> settings (fields it cannot find are left undefined). */
export function parseInfotext(text: string): Partial<GenerationSettings> & { pairs: Map<string, string> } {
  const lines = text.replace(/\r\n/g, "\n").trim().split("\n");
  let last = lines.length && /^\s*Steps: /.test(lines[lines.length - 1]) ? lines.pop()! : "";
  const pairs = parsePairs(last);
  const promptLines: string[] = [];
  const negLines: string[] = [];
  let inNeg = false;
  for (const l of lines) {
    if (l.startsWith("Negative prompt:")) {
      inNeg = true;
      negLines.push(l.slice("Negative prompt:".length).trimStart());
    } else (inNeg ? negLines : promptLines).push(l);
  }
  last = "";
  const num = (k: string) => (pairs.has(k) ? Number(pairs.get(k)) : undefined);
  const size = pairs.get("Size")?.match(/^(\d+)x(\d+)$/);
  const seedText = pairs.get("Seed");
  const clip = num("Clip skip");
  return {
    pairs,
    prompt: promptLines.join("\n"),
    negativePrompt: negLines.length ? negLines.join("\n") : undefined,
    steps: num("Steps"),
    sampler: pairs.get("Sampler"),
    cfgScale: num("CFG scale"),
    seed: seedText !== undefined && /^\d+$/.test(seedText) ? (Number(seedText) <= Number.MAX_SAFE_INTEGER ? Number(seedText) : BigInt(seedText)) : undefined,
    width: size ? Number(size[1]) : undefined,
    height: size ? Number(size[2]) : undefined,
    model: pairs.get("Model"),
    modelHash: pairs.get("Model hash"),
    denoisingStrength: num("Denoising strength"),
    clipSkip: clip !== undefined ? clip - 1 : undefined,
  };
}
