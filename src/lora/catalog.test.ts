// LoRA lookup by name as A1111 (file stems under the folders, recursively, plus ss_output_name aliases), the error
// for a missing name with close matches, and A1111's short hash (addnet sha256 of the data section, or sshs_model_hash).
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeSafetensors } from "../weights/safetensors.js";
import { findLora, listLoras, loraHashesInfotext, loraShortHash } from "./catalog.js";

const dir = mkdtempSync(join(tmpdir(), "reimagine-lora-catalog-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const lora = (path: string, meta?: Record<string, string>) => {
  writeSafetensors(
    path,
    {
      "lora_unet_a.lora_down.weight": { dtype: "F32", shape: [1, 2], data: Float32Array.of(1, 2) },
      "lora_unet_a.lora_up.weight": { dtype: "F32", shape: [2, 1], data: Float32Array.of(3, 4) },
    },
    meta,
  );
  return path;
};

describe("LoRA catalog", () => {
  mkdirSync(join(dir, "a", "styles"), { recursive: true });
  mkdirSync(join(dir, "b"));
  lora(join(dir, "a", "watercolor.safetensors"));
  lora(join(dir, "a", "styles", "lcm-lora-sdv1-5.safetensors"), { ss_output_name: "lcm_v15" });
  lora(join(dir, "b", "Pixel-Art_v2.safetensors"), { sshs_model_hash: "0123456789abcdef" });
  const entries = listLoras([join(dir, "a"), join(dir, "b"), join(dir, "missing")]);

  it("lists .safetensors files recursively by name and alias", () => {
    expect(entries.map((e) => [e.name, e.alias])).toEqual([
      ["lcm-lora-sdv1-5", "lcm_v15"],
      ["watercolor", "watercolor"],
      ["Pixel-Art_v2", "Pixel-Art_v2"],
    ]);
    expect(findLora("lcm_v15", entries).name).toBe("lcm-lora-sdv1-5");
    expect(findLora("watercolor", entries).path).toBe(join(dir, "a", "watercolor.safetensors"));
  });

  it("names close matches for a missing name", () => {
    expect(() => findLora("watercolour", entries)).toThrow(/no LoRA named 'watercolour' .* did you mean 'watercolor'\?/);
    expect(() => findLora("pixel-art", entries)).toThrow(/did you mean 'Pixel-Art_v2'/);
    expect(() => findLora("zzzzzzzz", entries)).toThrow(/3 LoRA file\(s\) are available/);
  });

  it("hashes as A1111: sha256 of the bytes after the header, or the stored sshs_model_hash", () => {
    const path = join(dir, "a", "watercolor.safetensors");
    const bytes = readFileSync(path);
    const data = bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)));
    expect(loraShortHash(path)).toBe(createHash("sha256").update(data).digest("hex").slice(0, 12));
    expect(loraShortHash(join(dir, "b", "Pixel-Art_v2.safetensors"))).toBe("0123456789ab");
    expect(
      loraHashesInfotext([
        { name: "a:b,c", hash: "0123456789ab" },
        { name: "x", hash: "" },
      ]),
    ).toBe("abc: 0123456789ab");
  });
});
