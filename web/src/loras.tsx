// The LoRA picker: the LoRAs of the server's LoRA folders (GET /v1/loras), a weight, and "Add" which writes the
// A1111 tag `<lora:name:weight>` into the prompt (replacing that LoRA's tag when the prompt has one). The prompt is
// the one place LoRAs live, as in AUTOMATIC1111: what is sent, stored and restored is the prompt text.
import { useEffect, useState } from "preact/hooks";
import { apiJson } from "./api.js";

export interface LoraInfo {
  name: string;
  alias: string;
  path: string;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * The prompt with `<lora:name:weight>`: an existing tag for `name` is replaced, else the tag is appended.
 * @example withLoraTag("a cat", "watercolor", 0.8) // "a cat <lora:watercolor:0.8>"
 */
export function withLoraTag(prompt: string, name: string, weight: number): string {
  const tag = `<lora:${name}:${Math.round(weight * 100) / 100}>`;
  const existing = new RegExp(`<lora:${escapeRe(name)}(:[^>]*)?>`);
  if (existing.test(prompt)) return prompt.replace(existing, tag);
  const base = prompt.trimEnd();
  return base ? `${base} ${tag}` : tag;
}

export function LoraPicker({ prompt, onPrompt }: { prompt: string; onPrompt(p: string): void }) {
  const [loras, setLoras] = useState<LoraInfo[] | null>(null);
  const [name, setName] = useState("");
  const [weight, setWeight] = useState(0.8);
  useEffect(() => {
    apiJson<LoraInfo[]>("/v1/loras")
      .then((list) => {
        setLoras(list);
        setName((n) => n || list[0]?.name || "");
      })
      .catch(() => setLoras([])); // an older server: no picker
  }, []);
  if (!loras?.length) return null; // no LoRA folder (or an older server): nothing to pick, the layout stays as it was
  return (
    <div class="row" data-testid="lora-picker">
      <label class="wide" title="LoRAs in the server's LoRA folders; Add writes <lora:name:weight> into the prompt">
        LoRA
        <select data-testid="lora" value={name} onChange={(e) => setName(e.currentTarget.value)}>
          {loras.map((l) => (
            <option key={l.name} value={l.name}>
              {l.alias !== l.name ? `${l.name} (${l.alias})` : l.name}
            </option>
          ))}
        </select>
      </label>
      <label title="weight: 1 = full strength, 0 = off, negative inverts it">
        Weight
        <input type="number" data-testid="lora-weight" min={-2} max={2} step={0.05} value={weight} onInput={(e) => setWeight(Number(e.currentTarget.value))} />
      </label>
      <button type="button" data-testid="lora-add" disabled={!name || !Number.isFinite(weight)} onClick={() => onPrompt(withLoraTag(prompt, name, weight))}>
        Add
      </button>
    </div>
  );
}
