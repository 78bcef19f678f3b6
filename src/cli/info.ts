// `reimagine info <image>`: prints the generation parameters (A1111 `parameters` text) stored in a
// PNG/JPEG/WebP written by reimagine or AUTOMATIC1111; `--json` prints them parsed.
// Ref: A1111 "PNG Info" tab (modules/images.py read_info_from_image).
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { loadImage, parseInfotext, readImageParameters, ReimagineError } from "../index.js";
import { type CliIO, parseError } from "./args.js";

const OPTIONS = { json: { type: "boolean" }, verbose: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const INFO_HELP = `Usage: reimagine info <image> [--json]

Prints the generation parameters (prompt, negative prompt, steps, sampler, CFG scale, seed, size, model,
denoising strength) stored in an image by reimagine or AUTOMATIC1111. Reuse them with
reimagine <input> --from <image>.
`;

/** Returns the exit code: 0 (printed, or the image has none), 1 for a missing or unreadable file. */
export async function infoMain(args: string[], io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw parseError(e, Object.keys(OPTIONS));
  }
  if (parsed.values.help) {
    io.stdout.write(INFO_HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) throw new ReimagineError("reimagine info takes one image: reimagine info <image>", "usage");
  const path = parsed.positionals[0];
  if (!existsSync(path)) throw new ReimagineError(`Cannot read image '${path}': file not found; check the path`, "not_found");
  const text = await readImageParameters(path);
  if (text === undefined) {
    // tell "no parameters" from "not an image at all" (the latter is an error)
    await loadImage(path, { maxPixels: Number.MAX_SAFE_INTEGER });
    if (parsed.values.json) io.stdout.write(`${JSON.stringify({ path, parameters: null })}\n`);
    else io.stdout.write(`${path}: no generation parameters stored in this image\n`);
    return 0;
  }
  if (parsed.values.json) {
    const { pairs, seed, ...fields } = parseInfotext(text);
    const extra = Object.fromEntries(pairs);
    io.stdout.write(`${JSON.stringify({ path, parameters: text, ...fields, seed: typeof seed === "bigint" ? seed.toString() : seed, pairs: extra })}\n`);
  } else {
    io.stdout.write(`${text}\n`);
  }
  return 0;
}
