// The CPU as the OS reports it (/proc/cpuinfo on Linux): model name, vendor family/model numbers and
// the vector-instruction flags that decide which MLAS kernels ONNX Runtime picks. The
// microarchitecture name is looked up from the family number, never assumed.
import { readFileSync } from "node:fs";
import { cpus } from "node:os";

export interface CpuInfo {
  /** "model name" as reported (a KVM guest may hide the exact SKU, e.g. "AMD EPYC"). */
  model: string;
  vendor: string | null;
  family: number | null;
  modelNumber: number | null;
  /** Microarchitecture from the vendor/family number (null when unknown). */
  microarchitecture: string | null;
  /** The flags that matter for ORT's CPU kernels (subset of /proc/cpuinfo "flags"). */
  flags: string[];
  logicalCpus: number;
}

const INTERESTING = [
  "avx2",
  "fma",
  "f16c",
  "avx512f",
  "avx512bw",
  "avx512vl",
  "avx512_vnni",
  "avx_vnni",
  "avx512_bf16",
  "avx512_fp16",
  "amx_tile",
  "amx_int8",
  "amx_bf16",
];

/** AMD family numbers (cpuid leaf 1, "cpu family" in /proc/cpuinfo). */
function amdMicroarchitecture(family: number, model: number): string | null {
  if (family === 0x17) return model >= 0x30 ? "Zen 2" : "Zen / Zen+";
  if (family === 0x19) return model < 0x10 || (model >= 0x20 && model < 0x60) ? "Zen 3" : "Zen 4";
  if (family === 0x1a) return "Zen 5";
  return null;
}

/**
 * Parses the first processor block of /proc/cpuinfo (falls back to os.cpus() elsewhere).
 *
 * @example cpuInfo().microarchitecture // "Zen 5" on family 26
 */
export function cpuInfo(text?: string): CpuInfo {
  let raw = text;
  if (raw === undefined) {
    try {
      raw = readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      raw = "";
    }
  }
  const first = raw.split(/\n\s*\n/)[0] ?? "";
  const field = (name: string): string | undefined => first.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1]?.trim();
  const num = (v: string | undefined) => (v === undefined || v === "" || Number.isNaN(Number(v)) ? null : Number(v));
  const vendor = field("vendor_id") ?? null;
  const family = num(field("cpu family"));
  const modelNumber = num(field("model"));
  const flagSet = new Set((field("flags") ?? "").split(/\s+/));
  const micro = vendor === "AuthenticAMD" && family !== null && modelNumber !== null ? amdMicroarchitecture(family, modelNumber) : null;
  return {
    model: field("model name") ?? cpus()[0]?.model ?? "unknown",
    vendor,
    family,
    modelNumber,
    microarchitecture: micro,
    flags: INTERESTING.filter((f) => flagSet.has(f)),
    logicalCpus: cpus().length,
  };
}

/** "AMD EPYC (AuthenticAMD family 26 model 2: Zen 5; avx512f avx512_vnni ...)". */
export function describeCpu(c: CpuInfo): string {
  const id =
    c.family !== null ? `${c.vendor ?? "?"} family ${c.family} model ${c.modelNumber ?? "?"}${c.microarchitecture ? `: ${c.microarchitecture}` : ""}` : "";
  return `${c.model}${id ? ` (${id})` : ""}, ${c.logicalCpus} logical CPUs, ${c.flags.join(" ")}`;
}
