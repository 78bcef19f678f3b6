// Scheduler config resolution with diffusers `ConfigMixin.from_config` semantics.
// Ref: diffusers `configuration_utils.py` (`extract_init_dict`, `register_to_config`).
// Start from the class defaults, take every key of the source the class accepts, keep the
// rest as hidden keys, and drop keys the source only had as defaults (`_use_default_values`).

import { ReimagineError } from "../errors.js";

const NON_FINITE: Record<string, number> = { Infinity: Infinity, "-Infinity": -Infinity, NaN: NaN };

/**
 * Resolve a scheduler config like `Class.from_config(source, **overrides)`.
 * @example resolveConfig("EulerDiscreteScheduler", EULER_DEFAULTS, modelJson, { use_karras_sigmas: true })
 */
export function resolveConfig<C extends object>(className: string, defaults: C, source: Record<string, unknown>, overrides: Record<string, unknown> = {}): C {
  const usedDefaults = new Set(Array.isArray(source._use_default_values) ? (source._use_default_values as string[]) : []);
  const src: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(source)) if (!usedDefaults.has(k) && k !== "_use_default_values") src[k] = v;

  const expected = Object.keys(defaults);
  const init: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  const passed = new Set<string>();
  for (const key of expected) {
    if (key in overrides) init[key] = coerce(className, key, overrides[key], init[key]);
    else if (key in src) init[key] = coerce(className, key, src[key], init[key]);
    else continue;
    passed.add(key);
  }
  // Hidden keys: everything else the source carried (kept so a later switch of class can inherit it).
  const hidden: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) if (!passed.has(k) && !expected.includes(k)) hidden[k] = v;
  const config: Record<string, unknown> = { ...hidden, ...init, _class_name: className };
  const unused = expected.filter((k) => !passed.has(k)).sort();
  if (unused.length > 0) config._use_default_values = unused;
  return config as C;
}

/** Type-check one value against its default's type; JSON's "Infinity"/"NaN" strings become numbers. */
function coerce(className: string, key: string, value: unknown, fallback: unknown): unknown {
  if (typeof value === "string" && value in NON_FINITE && (typeof fallback === "number" || fallback === null)) {
    return NON_FINITE[value];
  }
  if (value === null || fallback === null || fallback === undefined) return value;
  if (typeof fallback === "number" && typeof value === "number") return value;
  if (typeof fallback === typeof value) return value;
  throw new ReimagineError(
    `${className}: config key '${key}' should be a ${typeof fallback} (like ${JSON.stringify(fallback)}) but is ${JSON.stringify(value)}; fix the scheduler config`,
  );
}

/** The config without diffusers' bookkeeping key, for comparing and saving. */
export function publicConfig(config: Record<string, unknown>): Record<string, unknown> {
  const { _use_default_values: _unused, ...rest } = config;
  return rest;
}
