// SafetensorsFile: round trips through writeSafetensors, exact dtype conversion, lazy reads, and
// refusal of every malformed/malicious header with a ReimagineError that names the problem.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import { float32ToFloat16Bits, SafetensorsFile, writeSafetensors } from "./safetensors.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "reimagine-st-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** Writes `8-byte length + header + data` by hand; `header` may be an object or raw text/bytes. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const h = header instanceof Uint8Array ? Buffer.from(header) : Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  const path = join(dir, `crafted-${n++}.safetensors`);
  writeFileSync(path, Buffer.concat([len, h, data]));
  return path;
}
const u16 = (...v: number[]) => new Uint8Array(new Uint16Array(v).buffer);

function refusal(path: string): ReimagineError {
  try {
    SafetensorsFile.open(path).close();
  } catch (e) {
    expect(e).toBeInstanceOf(ReimagineError);
    expect((e as Error).message).toContain(path); // every message names the file
    expect((e as Error).message).not.toContain("\n");
    return e as ReimagineError;
  }
  throw new Error(`${path} was accepted`);
}

describe("SafetensorsFile round trip", () => {
  it("reads back what writeSafetensors wrote (F32 exact, F16 rounded), with metadata and infos", () => {
    const path = join(dir, "rt.safetensors");
    const a = new Float32Array([1.5, -2.25, 3e-8, 1e30, -0, 7]);
    writeSafetensors(
      path,
      {
        "conv.weight": { dtype: "F32", shape: [2, 3], data: a },
        "conv.bias": { dtype: "F16", shape: [3], data: new Float32Array([0.1, 65504, -1 / 3]) },
        empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      },
      { format: "pt" },
    );
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]); // atomic: no temp left
    const f = SafetensorsFile.open(path);
    expect(f.description).toBe(path);
    expect(f.metadata).toEqual({ format: "pt" });
    expect(f.keys().sort()).toEqual(["conv.bias", "conv.weight", "empty"]);
    expect(f.info("conv.weight")).toEqual({ dtype: "F32", shape: [2, 3] });
    expect(f.info("conv.bias")).toEqual({ dtype: "F16", shape: [3] });
    expect(f.info("nope")).toBeUndefined();
    expect(Array.from(f.read("conv.weight"))).toEqual(Array.from(a));
    expect(Object.is(f.read("conv.weight")[4], -0)).toBe(true);
    expect(Array.from(f.read("conv.bias"))).toEqual([0.0999755859375, 65504, -0.333251953125]);
    expect(f.read("empty").length).toBe(0);
    expect(f.readRaw("conv.bias")).toEqual(Buffer.from(u16(0x2e66, 0x7bff, 0xb555)));
    const r1 = f.read("conv.weight");
    r1[0] = 99; // each read is a fresh array
    expect(f.read("conv.weight")[0]).toBe(1.5);
    expect(() => f.read("nope")).toThrow(/no tensor named 'nope'/);
    expect(f.fingerprint()).toMatch(/^[0-9a-f]{64}$/);
    expect(SafetensorsFile.open(path).fingerprint()).toBe(f.fingerprint());
    f.close();
    expect(() => f.read("conv.weight")).toThrow(ReimagineError);

    writeSafetensors(path, { "conv.weight": { dtype: "F32", shape: [2, 3], data: a.map((x) => x + 1) } });
    expect(SafetensorsFile.open(path).fingerprint()).not.toBe(f.fingerprint());
  });

  it("pads the header to 8 bytes and rejects data that does not fit the shape", () => {
    const path = join(dir, "pad.safetensors");
    writeSafetensors(path, { x: { dtype: "F32", shape: [1], data: new Float32Array([1]) } });
    const len = Number(readFileSync(path).readBigUInt64LE(0));
    expect(len % 8).toBe(0);
    expect(() => writeSafetensors(path, { x: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } })).toThrow(/needs 4/);
  });
});

describe("dtype conversion", () => {
  it("converts F16 exactly: normals, subnormals, signed zero, inf, nan", () => {
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x3555, 0x8001];
    const want = [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, -0, Infinity, -Infinity, NaN, 0.333251953125, -(2 ** -24)];
    const path = craft({ h: { dtype: "F16", shape: [bits.length], data_offsets: [0, bits.length * 2] } }, u16(...bits));
    const got = Array.from(SafetensorsFile.open(path).read("h"));
    got.forEach((g, i) => {
      expect(Object.is(g, want[i]) || (Number.isNaN(g) && Number.isNaN(want[i])), `bits 0x${bits[i].toString(16)}`).toBe(true);
    });
  });

  it("converts BF16 exactly, including float32 subnormals", () => {
    const bits = [0x3f80, 0x4049, 0xc2f7, 0x0001, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f7f];
    const want = [1, 3.140625, -123.5, 2 ** -133, -0, Infinity, -Infinity, NaN, 3.3895313892515355e38];
    const path = craft({ b: { dtype: "BF16", shape: [3, 3], data_offsets: [0, 18] } }, u16(...bits));
    const got = Array.from(SafetensorsFile.open(path).read("b"));
    got.forEach((g, i) => {
      expect(Object.is(g, want[i]) || (Number.isNaN(g) && Number.isNaN(want[i]))).toBe(true);
    });
  });

  it("converts F64, integers, BOOL and F8 formats by value", () => {
    const f64 = new Uint8Array(new Float64Array([0.1, -3, 1e300]).buffer);
    const i64 = new Uint8Array(new BigInt64Array([-5n, 77n]).buffer);
    const i32 = new Uint8Array(new Int32Array([-7, 2 ** 30]).buffer);
    const bytes = new Uint8Array([1, 0, 255, 0x38, 0xb8, 0x7f, 0x3c, 0x7c]);
    const data = new Uint8Array([...f64, ...i64, ...i32, ...bytes]);
    const path = craft(
      {
        d: { dtype: "F64", shape: [3], data_offsets: [0, 24] },
        l: { dtype: "I64", shape: [2], data_offsets: [24, 40] },
        i: { dtype: "I32", shape: [2], data_offsets: [40, 48] },
        b: { dtype: "BOOL", shape: [2], data_offsets: [48, 50] },
        u: { dtype: "U8", shape: [1], data_offsets: [50, 51] },
        e4: { dtype: "F8_E4M3", shape: [3], data_offsets: [51, 54] },
        e5: { dtype: "F8_E5M2", shape: [2], data_offsets: [54, 56] },
      },
      data,
    );
    const f = SafetensorsFile.open(path);
    expect(Array.from(f.read("d"))).toEqual([Math.fround(0.1), -3, Infinity]);
    expect(Array.from(f.read("l"))).toEqual([-5, 77]);
    expect(Array.from(f.read("i"))).toEqual([-7, 2 ** 30]);
    expect(Array.from(f.read("b"))).toEqual([1, 0]);
    expect(Array.from(f.read("u"))).toEqual([255]);
    const e4 = f.read("e4"); // 0x38 = 1.0, 0xb8 = -1.0, 0x7f = NaN (e4m3fn)
    expect([e4[0], e4[1]]).toEqual([1, -1]);
    expect(e4[2]).toBeNaN();
    expect(Array.from(f.read("e5"))).toEqual([1, Infinity]); // 0x3c = 1.0, 0x7c = inf
  });

  it("float32ToFloat16Bits round-trips every float16 and rounds ties to even", () => {
    const path = craft({ all: { dtype: "F16", shape: [65536], data_offsets: [0, 131072] } }, u16(...Array.from({ length: 65536 }, (_, i) => i)));
    const all = SafetensorsFile.open(path).read("all");
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const back = float32ToFloat16Bits(all[h]);
      if (Number.isNaN(all[h]) ? !Number.isNaN(all[back]) : back !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 1 and 1+2^-10 -> even (1)
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway, odd below -> up
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // rounds to inf
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0); // tie with 0 -> even
    expect(float32ToFloat16Bits(2 ** -25 * 1.5)).toBe(1);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(2); // 1.5 ulp tie -> even (2)
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -26)).toBe(0x0400); // largest-subnormal carry into normal
    expect(float32ToFloat16Bits(-1e-30)).toBe(0x8000);
  });
});

describe("lazy reads", () => {
  it("reads each tensor from disk when asked, not at open", () => {
    const path = join(dir, "lazy.safetensors");
    writeSafetensors(path, { a: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
    const f = SafetensorsFile.open(path);
    const dataStart = 8 + Number(readFileSync(path).readBigUInt64LE(0));
    const fd = openSync(path, "r+");
    writeSync(fd, new Uint8Array(new Float32Array([5, 6]).buffer), 0, 8, dataStart);
    closeSync(fd);
    expect(Array.from(f.read("a"))).toEqual([5, 6]); // the rewrite after open is visible
  });

  it("opens a file with a 1 GiB tensor region (sparse) and reads a small tensor quickly", () => {
    const big = 2 ** 28; // F32 elements = 1 GiB
    const path = craft(
      {
        small: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        big: { dtype: "F32", shape: [big], data_offsets: [8, 8 + big * 4] },
      },
      new Uint8Array(new Float32Array([3, 4]).buffer),
    );
    const size = readFileSync(path).length;
    truncateSync(path, size + big * 4); // sparse: no disk or memory used
    const t0 = performance.now();
    const f = SafetensorsFile.open(path);
    expect(Array.from(f.read("small"))).toEqual([3, 4]);
    expect(f.info("big")).toEqual({ dtype: "F32", shape: [big] });
    expect(performance.now() - t0).toBeLessThan(2000);
    f.close();
  });
});

describe("malformed files are refused with a ReimagineError", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const eight = new Uint8Array(8);

  it("missing file", () => {
    expect(refusal(join(dir, "absent.safetensors")).message).toMatch(/does not exist/);
  });
  it("file shorter than 8 bytes", () => {
    const path = join(dir, "short.safetensors");
    writeFileSync(path, Buffer.from([1, 2, 3]));
    expect(refusal(path).message).toMatch(/truncated or corrupt.*shorter than the 8-byte/);
  });
  it("header length beyond the file", () => {
    expect(refusal(craft({ x: ok }, eight, 5000n)).message).toMatch(/truncated or corrupt.*header length 5000 exceeds the file size/);
  });
  it("header length huge (2^63)", () => {
    expect(refusal(craft({ x: ok }, eight, 2n ** 63n)).message).toMatch(/header length 9223372036854775808 bytes is above the 104857600-byte limit/);
  });
  it("bad JSON, invalid UTF-8, non-object header", () => {
    expect(refusal(craft('{"x": {"dtype": "F32",', eight)).message).toMatch(/not valid UTF-8 JSON/);
    expect(refusal(craft(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), eight)).message).toMatch(/not valid UTF-8 JSON/);
    expect(refusal(craft("[1,2]", eight)).message).toMatch(/not a JSON object/);
    expect(refusal(craft("null", eight)).message).toMatch(/not a JSON object/);
  });
  it("offsets beyond the data section (truncated data)", () => {
    expect(refusal(craft({ x: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, eight)).message).toMatch(
      /truncated or corrupt.*'x' data_offsets \[0, 16\] run past the 8-byte data section/,
    );
  });
  it("truncated download of a valid file", () => {
    const path = join(dir, "cut.safetensors");
    writeSafetensors(path, { a: { dtype: "F32", shape: [64], data: new Float32Array(64) } });
    truncateSync(path, readFileSync(path).length - 10);
    expect(refusal(path).message).toMatch(/truncated or corrupt.*download it again/);
  });
  it("overlapping tensors", () => {
    const path = craft(
      {
        a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
      },
      new Uint8Array(12),
    );
    expect(refusal(path).message).toMatch(/'a' \[0, 8\] and 'b' \[4, 12\] overlap/);
  });
  it("dtype size mismatch", () => {
    expect(refusal(craft({ x: { dtype: "F16", shape: [2], data_offsets: [0, 8] } }, eight)).message).toMatch(
      /dtype size mismatch: F16 shape \[2\] needs 4 bytes but data_offsets span 8/,
    );
  });
  it("unknown or missing dtype", () => {
    expect(refusal(craft({ x: { dtype: "F128", shape: [2], data_offsets: [0, 8] } }, eight)).message).toMatch(/unknown dtype 'F128'/);
    expect(refusal(craft({ x: { dtype: "toString", shape: [2], data_offsets: [0, 8] } }, eight)).message).toMatch(/unknown dtype 'toString'/);
    expect(refusal(craft({ x: { shape: [2], data_offsets: [0, 8] } }, eight)).message).toMatch(/'x' has no dtype/);
  });
  it("invalid shapes and offsets", () => {
    const bad = (e: unknown) => refusal(craft({ x: e }, eight)).message;
    expect(bad({ dtype: "F32", shape: [-2], data_offsets: [0, 8] })).toMatch(/shape must be an array of non-negative integers/);
    expect(bad({ dtype: "F32", shape: [1.5], data_offsets: [0, 8] })).toMatch(/shape must be/);
    expect(bad({ dtype: "F32", shape: "2", data_offsets: [0, 8] })).toMatch(/shape must be/);
    expect(bad({ dtype: "F32", shape: [2] })).toMatch(/data_offsets must be two non-negative integers/);
    expect(bad({ dtype: "F32", shape: [2], data_offsets: [0, 8, 9] })).toMatch(/data_offsets must be two/);
    expect(bad({ dtype: "F32", shape: [2], data_offsets: [8, 0] })).toMatch(/begin after end/);
    expect(bad({ dtype: "F32", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] })).toMatch(/impossibly large/);
    expect(bad(42)).toMatch(/entry 'x' is not an object/);
  });
  it("non-string metadata", () => {
    expect(refusal(craft({ __metadata__: { format: 1 }, x: ok }, eight)).message).toMatch(/__metadata__ value 'format' is not a string/);
  });
});
