// "PNG info" in the browser: the A1111 `parameters` text of a PNG made by Reimagine or AUTOMATIC1111
// (tEXt, zTXt or iTXt chunk, as PIL's PngInfo writes it), parsed into UI settings. Ref: A1111
// modules/images.py read_info_from_image; the parser is the library's own (src/pipeline/infotext.ts,
// which has no Node imports: the browser bundle cannot take the package's Node entry).
import { parseInfotext } from "../../src/pipeline/infotext.js";

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

async function inflate(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes.slice()]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The `parameters` text of a PNG, or undefined (not a PNG, or no such chunk). */
export async function readPngParameters(file: Blob): Promise<string | undefined> {
  const b = new Uint8Array(await file.arrayBuffer());
  if (b.length < 8 || SIGNATURE.some((v, i) => b[i] !== v)) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const latin1 = new TextDecoder("latin1");
  for (let at = 8; at + 12 <= b.length; ) {
    const len = view.getUint32(at);
    const type = latin1.decode(b.subarray(at + 4, at + 8));
    const data = b.subarray(at + 8, at + 8 + len);
    at += 12 + len;
    if (type === "IEND") break;
    if (type !== "tEXt" && type !== "zTXt" && type !== "iTXt") continue;
    const nul = data.indexOf(0);
    if (nul < 0 || latin1.decode(data.subarray(0, nul)) !== "parameters") continue;
    if (type === "tEXt") return latin1.decode(data.subarray(nul + 1));
    if (type === "zTXt") return latin1.decode(await inflate(data.subarray(nul + 2)));
    // iTXt: keyword \0 flag method language \0 translated \0 text
    const compressed = data[nul + 1] === 1;
    let p = data.indexOf(0, nul + 3) + 1; // after the language tag
    p = data.indexOf(0, p) + 1; // after the translated keyword
    const text = data.subarray(p);
    return new TextDecoder().decode(compressed ? await inflate(text) : text);
  }
  return undefined;
}

/** Settings the UI restores from a PNG's parameters. */
export interface RestoredSettings {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  guidanceScale?: number;
  seed?: number;
  sampler?: string;
  strength?: number;
  width?: number;
  height?: number;
  model?: string;
}

/** Parsed `parameters`, with the sampler mapped from A1111's display name to a name the server lists. */
export function restoredSettings(text: string, samplers: { name: string; a1111Name: string }[]): RestoredSettings {
  const p = parseInfotext(text);
  const sampler = p.sampler
    ? samplers.find((s) => s.a1111Name.toLowerCase() === p.sampler!.toLowerCase() || s.name === p.sampler!.toLowerCase())?.name
    : undefined;
  return {
    prompt: p.prompt ?? "",
    negativePrompt: p.negativePrompt,
    steps: p.steps,
    guidanceScale: p.cfgScale,
    seed: typeof p.seed === "number" ? p.seed : undefined,
    sampler,
    strength: p.denoisingStrength,
    width: p.width,
    height: p.height,
    model: p.model,
  };
}
