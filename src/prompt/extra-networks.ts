// AUTOMATIC1111 extra-network tags in prompts: `<lora:name:weight>`, `<lora:name:te:unet>`, `<lora:name:te=0.3:unet=0.9>`.
// Ref: AUTOMATIC1111 modules/extra_networks.py (re_extra_net, parse_prompt, ExtraNetworkParams) and
// extensions-builtin/Lora/extra_networks_lora.py (ExtraNetworkLora.activate: te/unet/dyn arguments), v1.10.
import { ReimagineError } from "../errors.js";
import { PY_SPACE } from "./attention.js";

/** One `<type:arg1:arg2...>` tag as A1111's ExtraNetworkParams sees it. */
export interface ExtraNetworkTag {
  /** The tag as written, e.g. `<lora:foo:0.8>`. */
  text: string;
  type: string;
  /** The `:`-separated arguments. */
  items: string[];
  /** Arguments without exactly one `=`. */
  positional: string[];
  /** `key=value` arguments. */
  named: Record<string, string>;
}

/** A LoRA named in a prompt, with A1111's separate text-encoder and UNet multipliers. */
export interface LoraTag {
  /** Name as written (A1111 matches it against file names without extension). */
  name: string;
  /** Multiplier of the text-encoder LoRA layers (2nd argument or `te=`; default 1). */
  te: number;
  /** Multiplier of the UNet LoRA layers (3rd argument or `unet=`; default `te`). */
  unet: number;
  /** Rank limit (4th argument or `dyn=`): only the first `dynDim` ranks are used, the scale keeps alpha/rank. */
  dynDim?: number;
  /** The tag as written. */
  text: string;
}

// Python's \w (letters, numbers, underscore); `[^>]+` spans newlines, as in Python.
const RE_EXTRA_NET = /<([\p{L}\p{N}_]+):([^>]+)>/gu;

/** Extra-network types A1111 routes to its LoRA module ("lyco" is its registered alias). */
const LORA_TYPES = new Set(["lora", "lyco"]);

/**
 * Removes every `<type:args>` tag from a prompt (replaced by "", surrounding spaces stay) and returns them,
 * as A1111's parse_prompt does before emphasis parsing and tokenisation. A1111 parses the prompt only:
 * tags in a negative prompt stay text.
 *
 * @example
 *   parseExtraNetworks("a photo <lora:foo:0.8>"); // { prompt: "a photo ", tags: [{ type: "lora", items: ["foo", "0.8"], ... }] }
 */
export function parseExtraNetworks(prompt: string): { prompt: string; tags: ExtraNetworkTag[] } {
  const tags: ExtraNetworkTag[] = [];
  const cleaned = prompt.replace(RE_EXTRA_NET, (text, type: string, args: string) => {
    const items = args.split(":");
    const positional: string[] = [];
    const named: Record<string, string> = {};
    for (const item of items) {
      const parts = item.split("="); // Python item.split('=', 2): named only with exactly one '='
      if (parts.length === 2) named[parts[0]] = parts[1];
      else positional.push(item);
    }
    tags.push({ text, type, items, positional, named });
    return "";
  });
  return { prompt: cleaned, tags };
}

/**
 * The LoRAs of a prompt's tags with their multipliers, as ExtraNetworkLora.activate reads them.
 * A tag without a name or with a multiplier that is not a finite number is a ReimagineError.
 *
 * @example
 *   loraTags(parseExtraNetworks("<lora:foo:1.2:0.4>").tags); // [{ name: "foo", te: 1.2, unet: 0.4, text: "<lora:foo:1.2:0.4>" }]
 */
export function loraTags(tags: readonly ExtraNetworkTag[]): LoraTag[] {
  return tags
    .filter((t) => LORA_TYPES.has(t.type))
    .map((t) => {
      const name = t.positional[0];
      if (name === undefined) {
        throw new ReimagineError(`${t.text}: a LoRA tag must start with the LoRA's name, e.g. <lora:name:0.8>`, "invalid_prompt");
      }
      const num = (s: string, what: string) => {
        const v = pythonFloat(s);
        if (v === undefined || !Number.isFinite(v)) {
          throw new ReimagineError(
            `${t.text}: the ${what} '${s}' is not a number; write e.g. <lora:${name}:0.8> or <lora:${name}:te=1:unet=0.6>`,
            "invalid_prompt",
          );
        }
        return v;
      };
      let te = t.positional.length > 1 ? num(t.positional[1], "weight") : 1.0;
      if ("te" in t.named) te = num(t.named.te, "te weight");
      let unet = t.positional.length > 2 ? num(t.positional[2], "unet weight") : te;
      if ("unet" in t.named) unet = num(t.named.unet, "unet weight");
      const dynText = "dyn" in t.named ? t.named.dyn : t.positional[3];
      const tag: LoraTag = { name, te, unet, text: t.text };
      if (dynText !== undefined) {
        const dyn = pythonInt(dynText);
        if (dyn === undefined || dyn < 1) {
          throw new ReimagineError(`${t.text}: dyn '${dynText}' is not a positive whole number of ranks`, "invalid_prompt");
        }
        tag.dynDim = dyn;
      }
      return tag;
    });
}

/**
 * Removes the extra-network tags from a prompt and returns its LoRAs (the other tag types, e.g.
 * `<hypernet:...>`, are returned in `others` for the caller to refuse or ignore).
 *
 * @example
 *   extractLoraTags("a cat <lora:watercolor:0.8>"); // { prompt: "a cat ", loras: [{ name: "watercolor", te: 0.8, unet: 0.8, ... }], others: [] }
 */
export function extractLoraTags(prompt: string): { prompt: string; loras: LoraTag[]; others: ExtraNetworkTag[] } {
  const { prompt: cleaned, tags } = parseExtraNetworks(prompt);
  return { prompt: cleaned, loras: loraTags(tags), others: tags.filter((t) => !LORA_TYPES.has(t.type)) };
}

const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, "g"); // str.strip()
const DIGITS = "\\d(?:_?\\d)*"; // Python allows single underscores between digits

/** Python's float(str) for ASCII input (surrounding whitespace, `_` separators, exponents, inf/nan); undefined where it raises. */
export function pythonFloat(s: string): number | undefined {
  const t = s.replace(PY_STRIP, "");
  if (/^[+-]?(inf|infinity|nan)$/i.test(t)) return Number(t.replace(/inf(inity)?/i, "Infinity").replace(/nan/i, "NaN"));
  const re = new RegExp(`^[+-]?(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`);
  return re.test(t) ? Number(t.replace(/_/g, "")) : undefined;
}

/** Python's int(str) for ASCII input; undefined where it raises. */
export function pythonInt(s: string): number | undefined {
  const t = s.replace(PY_STRIP, "");
  return new RegExp(`^[+-]?${DIGITS}$`).test(t) ? Number(t.replace(/_/g, "")) : undefined;
}
