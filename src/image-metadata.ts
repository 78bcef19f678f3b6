// Generation-parameter text in PNG / JPEG / WebP files, byte-compatible with AUTOMATIC1111:
// PNG gets a tEXt chunk (iTXt when the text is not Latin-1) with keyword "parameters" (PIL PngInfo.add_text);
// JPEG and WebP get EXIF UserComment = "UNICODE\0" + UTF-16BE (piexif.helper.UserComment.dump(..., "unicode")).
// Ref: A1111 modules/images.py save_image_with_geninfo / read_info_from_image. Plain bytes, no sharp.
import { inflateSync } from "node:zlib";
import { ReimagineError } from "./errors.js";

export const PARAMETERS_KEYWORD = "parameters";
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const EXIF_HEADER = Buffer.from("Exif\0\0", "latin1");
const TAG_EXIF_IFD = 0x8769;
const TAG_USER_COMMENT = 0x9286;

// ---------- PNG ----------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as used by PNG chunks (ISO 3309). */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface PngChunk {
  type: string;
  data: Buffer;
  /** Byte offset of the chunk's length field in the file. */
  offset: number;
}

/** Splits a PNG into chunks (verifies the signature and chunk bounds, not CRCs). */
export function pngChunks(png: Buffer): PngChunk[] {
  if (png.length < 8 || !png.subarray(0, 8).equals(PNG_SIGNATURE)) {
    throw new ReimagineError("not a PNG file (bad signature)", "invalid_image");
  }
  const chunks: PngChunk[] = [];
  let p = 8;
  while (p + 12 <= png.length) {
    const len = png.readUInt32BE(p);
    const type = png.toString("latin1", p + 4, p + 8);
    if (p + 12 + len > png.length) throw new ReimagineError(`truncated PNG chunk '${type}'`, "invalid_image");
    chunks.push({ type, data: png.subarray(p + 8, p + 8 + len), offset: p });
    p += 12 + len;
    if (type === "IEND") break;
  }
  return chunks;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

const isLatin1 = (s: string) => Buffer.from(s, "latin1").toString("latin1") === s; // every code unit <= 0xff

/** The text chunk PIL's PngInfo.add_text(keyword, text) writes: tEXt if Latin-1, else uncompressed iTXt. */
export function pngTextChunk(keyword: string, text: string): Buffer {
  if (isLatin1(text)) return pngChunk("tEXt", Buffer.from(`${keyword}\0${text}`, "latin1"));
  // iTXt: keyword \0 compression-flag(0) compression-method(0) language \0 translated-keyword \0 UTF-8 text
  const head = Buffer.from(`${keyword}\0\0\0\0\0`, "latin1");
  return pngChunk("iTXt", Buffer.concat([head, Buffer.from(text, "utf8")]));
}

/** Returns a copy of `png` with a "parameters" text chunk inserted before the first IDAT. */
export function withPngParameters(png: Buffer, text: string): Buffer {
  const idat = pngChunks(png).find((c) => c.type === "IDAT");
  if (!idat) throw new ReimagineError("PNG has no IDAT chunk", "invalid_image");
  const chunk = pngTextChunk(PARAMETERS_KEYWORD, text);
  return Buffer.concat([png.subarray(0, idat.offset), chunk, png.subarray(idat.offset)]);
}

/** All tEXt / zTXt / iTXt entries of a PNG as keyword -> text (first occurrence wins). */
export function pngTextEntries(png: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  for (const { type, data } of pngChunks(png)) {
    const nul = data.indexOf(0);
    if (nul < 0 || !["tEXt", "zTXt", "iTXt"].includes(type)) continue;
    const key = data.toString("latin1", 0, nul);
    let text: string;
    if (type === "tEXt") text = data.toString("latin1", nul + 1);
    else if (type === "zTXt") text = inflateSync(data.subarray(nul + 2)).toString("latin1");
    else {
      const compressed = data[nul + 1] === 1;
      const langEnd = data.indexOf(0, nul + 3);
      const tkeyEnd = data.indexOf(0, langEnd + 1);
      if (langEnd < 0 || tkeyEnd < 0) continue;
      const body = data.subarray(tkeyEnd + 1);
      text = (compressed ? inflateSync(body) : body).toString("utf8");
    }
    if (!out.has(key)) out.set(key, text);
  }
  return out;
}

// ---------- EXIF (TIFF structure) ----------

/** UserComment value as piexif writes it for encoding="unicode": "UNICODE\0" + UTF-16BE. */
function userCommentBytes(text: string): Buffer {
  const body = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) body.writeUInt16BE(text.charCodeAt(i), i * 2);
  return Buffer.concat([Buffer.from("UNICODE\0", "latin1"), body]);
}

/** A big-endian TIFF block (as piexif.dump makes) holding IFD0 -> Exif IFD -> UserComment. No "Exif\0\0" prefix. */
export function exifWithUserComment(text: string): Buffer {
  const comment = userCommentBytes(text);
  const ifd0 = 8; // after the 8-byte TIFF header
  const exifIfd = ifd0 + 2 + 12 + 4; // one entry + next-IFD offset
  const dataAt = exifIfd + 2 + 12 + 4;
  const out = Buffer.alloc(dataAt + comment.length);
  out.write("MM", 0, "latin1");
  out.writeUInt16BE(42, 2);
  out.writeUInt32BE(ifd0, 4);
  // IFD0: ExifIFDPointer (LONG)
  out.writeUInt16BE(1, ifd0);
  out.writeUInt16BE(TAG_EXIF_IFD, ifd0 + 2);
  out.writeUInt16BE(4, ifd0 + 4);
  out.writeUInt32BE(1, ifd0 + 6);
  out.writeUInt32BE(exifIfd, ifd0 + 10);
  out.writeUInt32BE(0, ifd0 + 14);
  // Exif IFD: UserComment (UNDEFINED, count = byte length)
  out.writeUInt16BE(1, exifIfd);
  out.writeUInt16BE(TAG_USER_COMMENT, exifIfd + 2);
  out.writeUInt16BE(7, exifIfd + 4);
  out.writeUInt32BE(comment.length, exifIfd + 6);
  out.writeUInt32BE(dataAt, exifIfd + 10);
  out.writeUInt32BE(0, exifIfd + 14);
  comment.copy(out, dataAt);
  return out;
}

/** Reads EXIF UserComment from a TIFF block (with or without the "Exif\0\0" prefix); undefined if absent. */
export function readExifUserComment(exif: Buffer): string | undefined {
  const t = exif.subarray(0, 6).equals(EXIF_HEADER) ? exif.subarray(6) : exif;
  if (t.length < 8) return undefined;
  const order = t.toString("latin1", 0, 2);
  if (order !== "II" && order !== "MM") return undefined;
  const le = order === "II";
  const u16 = (o: number) => (le ? t.readUInt16LE(o) : t.readUInt16BE(o));
  const u32 = (o: number) => (le ? t.readUInt32LE(o) : t.readUInt32BE(o));
  const findTag = (ifd: number, tag: number): { type: number; count: number; at: number } | undefined => {
    if (ifd + 2 > t.length) return undefined;
    const n = u16(ifd);
    for (let i = 0; i < n; i++) {
      const e = ifd + 2 + i * 12;
      if (e + 12 > t.length) return undefined;
      if (u16(e) !== tag) continue;
      const count = u32(e + 4);
      return { type: u16(e + 2), count, at: count <= 4 ? e + 8 : u32(e + 8) };
    }
    return undefined;
  };
  const ptr = findTag(u32(4), TAG_EXIF_IFD);
  if (!ptr) return undefined;
  const uc = findTag(u32(ptr.at), TAG_USER_COMMENT);
  if (!uc || uc.at + uc.count > t.length) return undefined;
  return decodeUserComment(t.subarray(uc.at, uc.at + uc.count), le);
}

/** Decodes the 8-byte charset prefix + payload of an EXIF UserComment. */
function decodeUserComment(v: Buffer, tiffLittleEndian: boolean): string {
  const prefix = v.toString("latin1", 0, 8);
  const body = v.subarray(8);
  let text: string;
  if (prefix === "UNICODE\0") {
    // piexif (A1111) writes UTF-16BE regardless of TIFF byte order; some tools write UTF-16LE.
    // Tell them apart by a BOM, else by where the zero high bytes of ASCII characters sit.
    let le = tiffLittleEndian;
    let start = 0;
    if (body[0] === 0xfe && body[1] === 0xff) [le, start] = [false, 2];
    else if (body[0] === 0xff && body[1] === 0xfe) [le, start] = [true, 2];
    else {
      let even = 0, odd = 0;
      for (let i = 0; i + 1 < body.length; i += 2) {
        if (body[i] === 0) even++;
        if (body[i + 1] === 0) odd++;
      }
      if (even !== odd) le = odd > even;
    }
    const units = new Uint16Array((body.length - start) >> 1);
    for (let i = 0; i < units.length; i++) {
      units[i] = le ? body.readUInt16LE(start + 2 * i) : body.readUInt16BE(start + 2 * i);
    }
    text = "";
    for (let i = 0; i < units.length; i += 8192) text += String.fromCharCode(...units.subarray(i, i + 8192));
  } else if (prefix.startsWith("ASCII")) text = body.toString("latin1");
  else text = (prefix === "\0".repeat(8) ? body : v).toString("utf8");
  return text.replace(/\0+$/, "");
}

// ---------- JPEG ----------

/** Returns a copy of `jpeg` with an APP1 Exif segment inserted after SOI (and after a JFIF APP0 if present). */
export function withJpegExif(jpeg: Buffer, tiff: Buffer): Buffer {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new ReimagineError("not a JPEG file (no SOI marker)", "invalid_image");
  const segLen = 2 + EXIF_HEADER.length + tiff.length;
  if (segLen > 0xffff) {
    throw new ReimagineError(
      `generation parameters are too long for JPEG EXIF (${tiff.length} bytes, limit ${0xffff - 8}); save as PNG instead`,
    );
  }
  let at = 2;
  if (jpeg[2] === 0xff && jpeg[3] === 0xe0) at = 4 + jpeg.readUInt16BE(4); // keep JFIF first
  const head = Buffer.from([0xff, 0xe1, segLen >> 8, segLen & 0xff]);
  return Buffer.concat([jpeg.subarray(0, at), head, EXIF_HEADER, tiff, jpeg.subarray(at)]);
}

/** The TIFF block of the first APP1 Exif segment of a JPEG, or undefined. */
export function jpegExif(jpeg: Buffer): Buffer | undefined {
  let p = 2;
  while (p + 4 <= jpeg.length && jpeg[p] === 0xff) {
    const marker = jpeg[p + 1];
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { p += 2; continue; }
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end of image: no more metadata
    const len = jpeg.readUInt16BE(p + 2);
    const seg = jpeg.subarray(p + 4, p + 2 + len);
    if (marker === 0xe1 && seg.subarray(0, 6).equals(EXIF_HEADER)) return seg.subarray(6);
    p += 2 + len;
  }
  return undefined;
}

// ---------- WebP (RIFF) ----------

interface RiffChunk { fourcc: string; data: Buffer }

function webpChunks(webp: Buffer): RiffChunk[] {
  if (webp.toString("latin1", 0, 4) !== "RIFF" || webp.toString("latin1", 8, 12) !== "WEBP") {
    throw new ReimagineError("not a WebP file (bad RIFF header)", "invalid_image");
  }
  const out: RiffChunk[] = [];
  let p = 12;
  while (p + 8 <= webp.length) {
    const size = webp.readUInt32LE(p + 4);
    out.push({ fourcc: webp.toString("latin1", p, p + 4), data: webp.subarray(p + 8, p + 8 + size) });
    p += 8 + size + (size & 1);
  }
  return out;
}

function riff(chunks: RiffChunk[]): Buffer {
  const parts: Buffer[] = [];
  for (const c of chunks) {
    const h = Buffer.alloc(8);
    h.write(c.fourcc, 0, "latin1");
    h.writeUInt32LE(c.data.length, 4);
    parts.push(h, c.data);
    if (c.data.length & 1) parts.push(Buffer.alloc(1));
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(12);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(body.length + 4, 4);
  head.write("WEBP", 8, "latin1");
  return Buffer.concat([head, body]);
}

/** Returns a copy of a WebP with an EXIF chunk (converting a simple VP8/VP8L file to the extended VP8X form). */
export function withWebpExif(webp: Buffer, tiff: Buffer, width: number, height: number): Buffer {
  let chunks = webpChunks(webp).filter((c) => c.fourcc !== "EXIF");
  const vp8x = chunks.find((c) => c.fourcc === "VP8X");
  if (vp8x) {
    const data = Buffer.from(vp8x.data);
    data[0] |= 0x08; // EXIF flag
    chunks = chunks.map((c) => (c === vp8x ? { fourcc: "VP8X", data } : c));
  } else {
    const vp8l = chunks.find((c) => c.fourcc === "VP8L");
    const hasAlpha = vp8l !== undefined && ((vp8l.data.readUInt32LE(1) >>> 28) & 1) === 1;
    const data = Buffer.alloc(10);
    data[0] = 0x08 | (hasAlpha ? 0x10 : 0);
    data.writeUIntLE(width - 1, 4, 3); // [canvas width - 1, canvas height - 1], 24-bit each
    data.writeUIntLE(height - 1, 7, 3);
    chunks = [{ fourcc: "VP8X", data }, ...chunks];
  }
  chunks.push({ fourcc: "EXIF", data: tiff });
  return riff(chunks);
}

/** The EXIF chunk of a WebP, or undefined. */
export function webpExif(webp: Buffer): Buffer | undefined {
  return webpChunks(webp).find((c) => c.fourcc === "EXIF")?.data;
}

// ---------- dispatch ----------

/** Generation parameters stored in a PNG / JPEG / WebP file by A1111 or by us; undefined if none. */
export function parametersFromBytes(buf: Buffer): string | undefined {
  if (buf.subarray(0, 8).equals(PNG_SIGNATURE)) {
    const text = pngTextEntries(buf).get(PARAMETERS_KEYWORD);
    if (text !== undefined) return text;
    const exif = pngChunks(buf).find((c) => c.type === "eXIf");
    return exif ? readExifUserComment(exif.data) : undefined;
  }
  if (buf[0] === 0xff && buf[1] === 0xd8) {
    const exif = jpegExif(buf);
    return exif ? readExifUserComment(exif) : undefined;
  }
  if (buf.toString("latin1", 0, 4) === "RIFF" && buf.toString("latin1", 8, 12) === "WEBP") {
    const exif = webpExif(buf);
    return exif ? readExifUserComment(exif) : undefined;
  }
  return undefined;
}
