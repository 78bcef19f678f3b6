// ControlNet fields of both APIs, validated before a job is queued: the native `controlnets` list (or, in a form, one
// ControlNet as flat fields: controlnet, controlImage, controlScale, ...) and A1111's ControlNet extension units
// (`alwayson_scripts.controlnet.args[]`, as webuiapi and other clients send them). Models are names from the server's
// ControlNet folder only (never a path or a repo id a client chose); a field we cannot honour is a 422 naming it.
// Ref: sd-webui-controlnet internal_controlnet/args.py (ControlNetUnit fields, legacy aliases), external_code.py.
import {
  type ControlNetUnit,
  controlNetSummary,
  encodeImage,
  guessModeFromA1111,
  listControlNets,
  preprocessorFromA1111,
  PREPROCESSORS,
  resizeModeFromA1111,
  type ResizeMode,
  resolveUnit,
  type RGBImage,
  unitControlImage,
} from "../index.js";
import { decodeBase64Image, inspectUpload, type Limits, readBody, type Upload } from "./http.js";
import { type Fields, optBoolean, optNumber, optString, ValidationError } from "./validate.js";

/** Most ControlNets one request may stack (each adds a model call per step; A1111's default is 3 units). */
export const MAX_CONTROLNETS = 4;

/** A unit as a request gives it: its control image checked from its header, decoded when the job runs. */
export type RequestUnit = Omit<ControlNetUnit, "image"> & {
  image?: Upload;
  /** A1111 save_detected_map: the preprocessed control image is appended to the response's images. */
  sendMap: boolean;
};

/** The ControlNet folder a server offers (`reimagine serve --controlnet-dir`). */
export interface ControlNetCatalog {
  dir?: string;
  /** Why requests cannot name a ControlNet here at all (queue mode): a 422 naming the field. */
  unavailable?: string;
}

/** The path of a ControlNet the server offers, by name ("name" or A1111's "name [hash]"), else a 422 naming `field`. */
export function catalogModel(catalog: ControlNetCatalog, name: string, field: string): string {
  if (catalog.unavailable) throw new ValidationError(field, `${field}: ${catalog.unavailable}`);
  const bare = name.replace(/\s*\[[0-9a-fA-F]+\]$/, "").trim();
  const list = listControlNets(catalog.dir);
  const found = list.find((e) => e.name === bare);
  if (found) return found.path;
  const have = list.length
    ? `: ${list.map((e) => e.name).join(", ")}`
    : catalog.dir
      ? ` (${catalog.dir} holds none)`
      : " (the server was started without --controlnet-dir)";
  throw new ValidationError(field, `${field}: ControlNet '${name}' is not one this server offers${have}; GET /controlnet/model_list lists them`);
}

/** Decoded control images of a request's units (inside the job, like the input). */
export async function loadUnits(units: readonly RequestUnit[] | undefined): Promise<ControlNetUnit[] | undefined> {
  if (!units?.length) return undefined;
  const out: ControlNetUnit[] = [];
  for (const { image, sendMap: _s, ...u } of units) out.push({ ...u, image: image ? await image.load() : undefined });
  return out;
}

type Uploaded = (bytes: Buffer, field: string) => Promise<Upload>;

/** A control image field: base64 text, or a form's File. */
async function imageField(v: unknown, field: string, upload: Uploaded): Promise<Upload | undefined> {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "object" && "arrayBuffer" in v) return upload(Buffer.from(await readBody(() => (v as File).arrayBuffer())), field);
  return upload(decodeBase64Image(v, field), field);
}

function preprocessorField(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (!Object.hasOwn(PREPROCESSORS, v))
    throw new ValidationError(field, `${field} must be one of ${Object.keys(PREPROCESSORS).join(", ")} (got ${JSON.stringify(v)})`);
  return v;
}

/** start < end, else a 422 naming the start field. */
function windowCheck(u: { start?: number; end?: number }, field: string): void {
  if ((u.start ?? 0) >= (u.end ?? 1))
    throw new ValidationError(field, `${field} (${u.start ?? 0}) must be below the end (${u.end ?? 1}): the ControlNet acts from start to end of the steps`);
}

const RESIZE_MODES: ResizeMode[] = ["just-resize", "crop-and-resize", "resize-and-fill"];

/**
 * The native API's ControlNets: `controlnets` (a list, or its JSON text in a form) of { model, image?, preprocessor?,
 * scale?, start?, end?, guessMode?, resizeMode?, lowThreshold?, highThreshold? }, or one ControlNet as flat fields
 * (controlnet, controlImage, controlScale, controlStart, controlEnd, preprocessor, guessMode, cannyLow, cannyHigh).
 */
export async function parseNativeControlNets(f: Fields, catalog: ControlNetCatalog, limits: Limits): Promise<RequestUnit[] | undefined> {
  const upload: Uploaded = (bytes, field) => inspectUpload(bytes, field, limits);
  let list: unknown = f.controlnets;
  if (typeof list === "string") {
    try {
      list = JSON.parse(list);
    } catch {
      throw new ValidationError("controlnets", "controlnets must be a JSON list of ControlNet units");
    }
  }
  if ((list === undefined || list === null) && f.controlnet !== undefined && f.controlnet !== "") {
    list = [
      {
        model: f.controlnet,
        image: f.controlImage,
        scale: f.controlScale,
        start: f.controlStart,
        end: f.controlEnd,
        preprocessor: f.preprocessor,
        guessMode: f.guessMode,
        lowThreshold: f.cannyLow,
        highThreshold: f.cannyHigh,
      },
    ];
  }
  if (list === undefined || list === null) return undefined;
  if (!Array.isArray(list)) throw new ValidationError("controlnets", "controlnets must be a list of ControlNet units");
  if (list.length > MAX_CONTROLNETS) throw new ValidationError("controlnets", `at most ${MAX_CONTROLNETS} ControlNets per request (got ${list.length})`);
  const units: RequestUnit[] = [];
  for (const [i, raw] of list.entries()) {
    const at = `controlnets[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new ValidationError(at, `${at} must be an object like {"model": "control_v11p_sd15_scribble"}`);
    const u = raw as Fields;
    const k = (name: string) => ({ [`${at}.${name}`]: u[name] });
    const model = optString(k("model"), `${at}.model`, { max: 300 });
    if (!model) throw new ValidationError(`${at}.model`, `${at}.model is missing: name one of the server's ControlNets (GET /v1/controlnets)`);
    const resizeMode = optString(k("resizeMode"), `${at}.resizeMode`) as ResizeMode | undefined;
    if (resizeMode !== undefined && !RESIZE_MODES.includes(resizeMode))
      throw new ValidationError(`${at}.resizeMode`, `${at}.resizeMode must be one of ${RESIZE_MODES.join(", ")}`);
    const preprocessor = preprocessorField(optString(k("preprocessor"), `${at}.preprocessor`), `${at}.preprocessor`) ?? "none";
    const low = optNumber(k("lowThreshold"), `${at}.lowThreshold`, { min: 0, max: 1020 });
    const high = optNumber(k("highThreshold"), `${at}.highThreshold`, { min: 0, max: 1020 });
    if ((low !== undefined || high !== undefined) && preprocessor !== "canny")
      throw new ValidationError(`${at}.lowThreshold`, `${at}: canny thresholds need "preprocessor": "canny"`);
    const unit: RequestUnit = {
      model: catalogModel(catalog, model, `${at}.model`),
      image: await imageField(u.image, `${at}.image`, upload),
      preprocessor,
      preprocessorOptions: preprocessor === "canny" ? { lowThreshold: low, highThreshold: high } : undefined,
      scale: optNumber(k("scale"), `${at}.scale`, { min: 0, max: 2 }),
      start: optNumber(k("start"), `${at}.start`, { min: 0, max: 1 }),
      end: optNumber(k("end"), `${at}.end`, { min: 0, max: 1 }),
      guessMode: optBoolean(k("guessMode"), `${at}.guessMode`),
      resizeMode,
      sendMap: false,
    };
    windowCheck(unit, `${at}.start`);
    units.push(unit);
  }
  return units.length ? units : undefined;
}

/** A1111 unit fields this server reads. */
const KNOWN = new Set([
  "enabled",
  "image",
  "input_image",
  "module",
  "model",
  "weight",
  "resize_mode",
  "threshold_a",
  "threshold_b",
  "guidance_start",
  "guidance_end",
  "guidance",
  "control_mode",
  "guessmode",
  "save_detected_map",
]);
/** A1111 unit fields that change nothing here, accepted: processor_res and pixel_perfect (we always preprocess at the
 *  output size: pixel perfect), memory and hires-fix options, UI state, and options of modules we do not have. */
const HARMLESS = new Set([
  "low_vram",
  "lowvram",
  "processor_res",
  "pixel_perfect",
  "hr_option",
  "is_ui",
  "input_mode",
  "output_dir",
  "loopback",
  "batch_images",
  "union_control_type",
  "pulid_mode",
  "inpaint_crop_input_image",
]);
/** A1111 unit fields we cannot honour when set: a 422 names them. */
const REFUSED = [
  "mask",
  "mask_image",
  "effective_region_mask",
  "advanced_weighting",
  "ipadapter_input",
  "batch_mask_dir",
  "batch_modifiers",
  "batch_image_files",
  "batch_keyframe_idx",
  "animatediff_batch",
];

/**
 * A1111's ControlNet extension units from `alwayson_scripts` (the script name in any case, as A1111 matches it), as
 * its clients send them: image / input_image (base64; absent = the init image), module, model, weight, resize_mode,
 * guidance_start / guidance_end (guidance = the legacy end), control_mode (guessmode legacy), threshold_a / threshold_b
 * (canny's thresholds; other modules ignore them, as the extension does), enabled (absent = enabled).
 */
export async function parseA1111ControlNets(body: Fields, catalog: ControlNetCatalog, limits: Limits): Promise<RequestUnit[] | undefined> {
  const scripts = body.alwayson_scripts;
  if (typeof scripts !== "object" || scripts === null) return undefined;
  const key = Object.keys(scripts).find((k) => k.toLowerCase() === "controlnet");
  if (!key) return undefined;
  const args = (scripts as Fields)[key] as { args?: unknown } | null;
  const base = `alwayson_scripts.${key}.args`;
  if (args === null || typeof args !== "object" || args.args === undefined) return undefined;
  if (!Array.isArray(args.args)) throw new ValidationError(base, `${base} must be a list of ControlNet units`);
  const upload: Uploaded = (bytes, field) => inspectUpload(bytes, field, limits);
  const units: RequestUnit[] = [];
  for (const [i, raw] of args.args.entries()) {
    const at = `${base}[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new ValidationError(at, `${at} must be a ControlNet unit object (positional script args are not supported)`);
    const u = raw as Fields;
    const k = (name: string) => ({ [`${at}.${name}`]: u[name] });
    if (optBoolean(k("enabled"), `${at}.enabled`) === false) continue;
    const model = optString(k("model"), `${at}.model`, { max: 300 }) ?? "None";
    if (model === "None" || model === "") continue; // a unit without a ControlNet conditions nothing
    for (const name of Object.keys(u)) {
      if (
        REFUSED.includes(name) &&
        u[name] !== null &&
        u[name] !== "" &&
        !(Array.isArray(u[name]) && (u[name] as unknown[]).length === 0) &&
        u[name] !== false
      ) {
        throw new ValidationError(
          `${at}.${name}`,
          `${at}.${name} is not supported by this server (masks, region masks, advanced weighting, IP-Adapter and batch inputs): leave it out`,
        );
      }
      if (!HARMLESS.has(name) && !REFUSED.includes(name) && !KNOWN.has(name)) {
        throw new ValidationError(`${at}.${name}`, `${at}.${name} is not a ControlNet unit field this server knows; leave it out`);
      }
    }
    if (units.length >= MAX_CONTROLNETS) throw new ValidationError(base, `at most ${MAX_CONTROLNETS} ControlNet units per request`);
    const module = optString(k("module"), `${at}.module`, { max: 200 }) ?? "none";
    const preprocessor = preprocessorFromA1111(module);
    if (!preprocessor)
      throw new ValidationError(
        `${at}.module`,
        `${at}.module '${module}' is not available here: use one of ${Object.keys(PREPROCESSORS).join(", ")} (GET /controlnet/module_list), or send a ready control map with "none"`,
      );
    const resizeRaw = u.resize_mode ?? "Crop and Resize"; // the extension's default
    const resizeMode = resizeModeFromA1111(resizeRaw);
    if (!resizeMode)
      throw new ValidationError(
        `${at}.resize_mode`,
        `${at}.resize_mode must be 0-2 or "Just Resize", "Crop and Resize", "Resize and Fill" (got ${JSON.stringify(resizeRaw)})`,
      );
    const modeRaw = u.control_mode ?? (u.guessmode === true ? 2 : 0);
    const guessMode = guessModeFromA1111(modeRaw);
    if (guessMode === undefined) {
      throw new ValidationError(
        `${at}.control_mode`,
        `${at}.control_mode ${JSON.stringify(modeRaw)} is not supported: use 0 "Balanced" or 2 "ControlNet is more important" (diffusers' guess mode)`,
      );
    }
    const end = u.guidance_end ?? u.guidance;
    const ta = optNumber(k("threshold_a"), `${at}.threshold_a`);
    const tb = optNumber(k("threshold_b"), `${at}.threshold_b`);
    const canny = (t: number | undefined, dflt: number, name: string) => {
      if (t === undefined || t < 0) return dflt; // -1: the module's default
      if (t > 1020) throw new ValidationError(`${at}.${name}`, `${at}.${name} is a canny threshold between 1 and 255 (got ${t})`);
      return t;
    };
    const unit: RequestUnit = {
      model: catalogModel(catalog, model, `${at}.model`),
      image: await imageField(imageOf(u, at), `${at}.image`, upload),
      preprocessor,
      preprocessorOptions: preprocessor === "canny" ? { lowThreshold: canny(ta, 100, "threshold_a"), highThreshold: canny(tb, 200, "threshold_b") } : undefined,
      scale: optNumber(k("weight"), `${at}.weight`, { min: 0, max: 2 }),
      start: optNumber(k("guidance_start"), `${at}.guidance_start`, { min: 0, max: 1 }),
      end: optNumber({ [`${at}.guidance_end`]: end }, `${at}.guidance_end`, { min: 0, max: 1 }),
      guessMode,
      resizeMode,
      sendMap: optBoolean(k("save_detected_map"), `${at}.save_detected_map`) ?? true,
    };
    windowCheck(unit, `${at}.guidance_start`);
    units.push(unit);
  }
  return units.length ? units : undefined;
}

/** image, or the legacy input_image; {image, mask} objects (older clients) give their image. */
function imageOf(u: Fields, at: string): unknown {
  if (u.image !== undefined && u.input_image !== undefined && u.image !== "" && u.input_image !== "") {
    throw new ValidationError(`${at}.image`, `${at}: give the control image once, as image (input_image is its old name)`);
  }
  const v = u.image !== undefined && u.image !== "" ? u.image : u.input_image;
  if (typeof v === "object" && v !== null && !Array.isArray(v) && "image" in v) {
    const mask = (v as Fields).mask;
    if (mask !== undefined && mask !== null && mask !== "")
      throw new ValidationError(`${at}.image.mask`, `${at}.image.mask is not supported by this server: send the image alone`);
    return (v as Fields).image;
  }
  return v;
}

/**
 * The preprocessed control image (PNG) of every unit that asked to see it, at the output size: what the ControlNet read,
 * computed by the function the pipeline uses (A1111 appends these "detected maps" to its response's images).
 */
export async function controlMaps(
  req: { controlnets?: readonly RequestUnit[]; resizeMode?: ResizeMode },
  units: readonly ControlNetUnit[] | undefined,
  input: RGBImage,
  size: { width: number; height: number },
): Promise<Buffer[] | undefined> {
  if (!req.controlnets?.some((u) => u.sendMap) || !units) return undefined;
  const out: Buffer[] = [];
  for (const [i, u] of units.entries()) {
    if (!req.controlnets[i].sendMap) continue;
    const map = await unitControlImage(resolveUnit(u, i), { input, width: size.width, height: size.height, inputResizeMode: req.resizeMode });
    out.push(await encodeImage(map, "png"));
  }
  return out;
}

/** A request's units as job views echo them (names, no image bytes). */
export function controlNetsSummary(units: readonly RequestUnit[]) {
  return units.map((u) => ({ ...controlNetSummary(u), image: u.image ? "given" : "input" }));
}
