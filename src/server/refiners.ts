// SDXL refiners over HTTP: the models `reimagine serve --refiner REF` allows (nothing else can be named, so a
// client cannot make the server load an arbitrary path or repo), their names as A1111 lists checkpoints, and
// the request fields: native `refiner` + `refinerSwitchAt`, A1111 `refiner_checkpoint` + `refiner_switch_at`.
import { basename } from "node:path";
import type { Engine } from "./engine.js";
import { type Fields, optNumber, optString, ValidationError } from "./validate.js";

/** One allowed refiner: the name clients use and the reference the model process loads. */
export interface RefinerChoice {
  name: string;
  ref: string;
}

/** A request's refiner: `model` is what the model process loads, `name` what the metadata records. */
export interface RequestRefiner {
  model: string;
  name: string;
  switchAt: number;
}

/** A1111's default hand-over point ("Refiner switch at" 0.8). */
export const DEFAULT_REFINER_SWITCH = 0.8;

/** Names for `refs`: a file's or folder's base name without .safetensors/.ckpt, a repo id as is. */
export function refinerChoices(refs: readonly string[]): RefinerChoice[] {
  return refs.map((ref) => {
    const local = ref.startsWith("/") || ref.startsWith(".") || /^[A-Za-z]:[\\/]/.test(ref);
    return { ref, name: local ? basename(ref).replace(/\.(safetensors|ckpt)$/i, "") : ref };
  });
}

/**
 * The refiner a request names (undefined when none): `value` may be a name, the reference, a file name, or an
 * A1111 title ("name [hash]"); "None" and "" mean no refiner, as in A1111.
 */
export function parseRefiner(
  body: Fields,
  engine: Pick<Engine, "refiners" | "family" | "modelName">,
  fields: { model: string; switchAt: string },
): RequestRefiner | undefined {
  const value = optString(body, fields.model, { max: 1000 });
  if (!value || value === "None") {
    return undefined;
  }
  const wanted = value.replace(/\s*\[[0-9a-f]+\]$/i, "").trim();
  const choices = engine.refiners ?? [];
  const hit = choices.find((c) => [c.name, c.ref, basename(c.ref)].includes(wanted) || basename(c.ref).replace(/\.(safetensors|ckpt)$/i, "") === wanted);
  if (!hit) {
    const offered = choices.length
      ? `this server offers ${choices.map((c) => `'${c.name}'`).join(", ")}`
      : "this server offers none: start it with reimagine serve --refiner MODEL";
    throw new ValidationError(fields.model, `unknown refiner '${value}': ${offered}`);
  }
  if (engine.family !== undefined && engine.family !== "sdxl") {
    throw new ValidationError(fields.model, `a refiner takes over from an SDXL base model; this server's model ${engine.modelName} is not SDXL`);
  }
  const switchAt = optNumber(body, fields.switchAt, { min: 0, max: 1 }) ?? DEFAULT_REFINER_SWITCH;
  if (switchAt <= 0 || switchAt >= 1) {
    throw new ValidationError(
      fields.switchAt,
      `${fields.switchAt} must be between 0 and 1, exclusive (the fraction of the schedule the base runs; got ${switchAt})`,
    );
  }
  return { model: hit.ref, name: hit.name, switchAt };
}
