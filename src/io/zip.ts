// Zip central-directory reader over a random-access ByteReader, for PyTorch checkpoints (torch.save's zip format).
// PyTorch writes every entry STORED (uncompressed, data 64-byte aligned through local-header padding), so an entry
// is a byte range of the file and is read by offset, never inflated. npm zip libraries either need Node streams
// (yauzl, unzipper) or the whole archive in memory (fflate), which a 1.3 GB checkpoint in a browser cannot afford,
// hence this small reader: end-of-central-directory record, ZIP64 records (archives over 4 GiB), central directory,
// local headers. Compressed entries are refused with a message.
import type { ByteReader } from './source.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate */
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** A ZIP64 field; `what` names the file and field for the error (values past 2^53 are never real offsets). */
function u64(dv: DataView, off: number, what: string): number {
  const v = dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 4294967296;
  if (!Number.isSafeInteger(v)) throw new Error(`${what} is ${v}, too large to be real (damaged zip archive)`);
  return v;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** The archive's entries, from its central directory. */
export async function readZipDirectory(reader: ByteReader, fileName: string): Promise<ZipEntry[]> {
  // the end-of-central-directory record is 22 bytes plus a comment of up to 65535 bytes at the end of the file.
  // PyTorch writes no comment, so a short tail usually holds it; otherwise search the longest possible tail.
  if (reader.size < 22) throw new Error(`${fileName}: too short to be a zip archive`);
  let tail: Uint8Array = new Uint8Array(0);
  let tv = view(tail);
  let tailLen = 0;
  let eocd = -1;
  for (const want of [Math.min(reader.size, 1024), Math.min(reader.size, 22 + 65535)]) {
    if (want <= tailLen) break;
    tailLen = want;
    tail = await reader.read(reader.size - tailLen, tailLen);
    tv = view(tail);
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd >= 0) break;
  }
  if (eocd < 0) throw new Error(`${fileName}: no zip end-of-central-directory record (truncated or not a zip archive)`);
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  const eocdPos = reader.size - tailLen + eocd;

  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // ZIP64: a locator sits right before the classic record and points at the ZIP64 end record
    if (eocdPos < 20) throw new Error(`${fileName}: ZIP64 archive without a ZIP64 locator`);
    const loc = view(await reader.read(eocdPos - 20, 20));
    if (loc.getUint32(0, true) !== SIG_ZIP64_LOCATOR) throw new Error(`${fileName}: ZIP64 archive without a ZIP64 locator`);
    const z64Pos = u64(loc, 8, `${fileName}: ZIP64 locator's end-record offset`);
    if (z64Pos + 56 > reader.size) throw new Error(`${fileName}: ZIP64 end record offset ${z64Pos} is outside the file`);
    const z64 = view(await reader.read(z64Pos, 56));
    if (z64.getUint32(0, true) !== SIG_ZIP64_EOCD) throw new Error(`${fileName}: bad ZIP64 end-of-central-directory record`);
    count = u64(z64, 32, `${fileName}: ZIP64 entry count`);
    cdSize = u64(z64, 40, `${fileName}: ZIP64 central directory size`);
    cdOffset = u64(z64, 48, `${fileName}: ZIP64 central directory offset`);
  }
  if (cdOffset + cdSize > reader.size) throw new Error(`${fileName}: central directory (${cdSize} bytes at ${cdOffset}) is outside the file (truncated?)`);
  // ~100 bytes per entry: 256 MiB would describe millions of tensors; a larger directory is damage, not a checkpoint
  if (cdSize > 256 * 1024 * 1024) throw new Error(`${fileName}: zip central directory of ${cdSize} bytes is too large for a checkpoint (damaged archive)`);
  // every central directory record takes at least 46 bytes, so the count cannot exceed what the directory holds
  if (count * 46 > cdSize) throw new Error(`${fileName}: the zip directory claims ${count} entries but its ${cdSize} bytes hold at most ${Math.floor(cdSize / 46)}`);

  const cd = await reader.read(cdOffset, cdSize);
  const cv = view(cd);
  const decoder = new TextDecoder();
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) throw new Error(`${fileName}: central directory entry ${i} is corrupt`);
    const method = cv.getUint16(p + 10, true);
    let compressedSize = cv.getUint32(p + 20, true);
    let size = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    let localHeaderOffset = cv.getUint32(p + 42, true);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw new Error(`${fileName}: central directory entry ${i} is corrupt`);
    const name = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information (header id 1): the 64-bit values of the fields saturated at 0xffffffff, in order
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cv.getUint16(e, true);
      const len = cv.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        const field = (what: string): number => {
          if (q + 8 > Math.min(e + 4 + len, extraEnd)) throw new Error(`${fileName}: zip entry '${name}': ZIP64 extra field too short for its ${what}`);
          const v = u64(cv, q, `${fileName}: zip entry '${name}' ZIP64 ${what}`);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = field('size');
        if (compressedSize === 0xffffffff) compressedSize = field('compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = field('local header offset');
      }
      e += 4 + len;
    }
    // a stored entry's bytes lie inside the file: check here, before any size from the directory is used to allocate
    if (localHeaderOffset + 30 + compressedSize > reader.size) {
      throw new Error(`${fileName}: zip entry '${name}' (${compressedSize} bytes at ${localHeaderOffset}) runs past the end of the ${reader.size}-byte file (truncated or damaged)`);
    }
    entries.push({ name, method, compressedSize, size, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** File offset of a STORED entry's bytes (the local header's name and extra field lengths may differ from the central one). */
export async function zipEntryDataOffset(reader: ByteReader, entry: ZipEntry, fileName: string): Promise<number> {
  if (entry.method !== 0) {
    throw new Error(`${fileName}: zip entry '${entry.name}' is compressed (method ${entry.method}); PyTorch checkpoints store entries uncompressed - was the file re-zipped?`);
  }
  if (entry.compressedSize !== entry.size) throw new Error(`${fileName}: stored zip entry '${entry.name}' has different compressed and plain sizes`);
  if (entry.localHeaderOffset + 30 > reader.size) throw new Error(`${fileName}: zip entry '${entry.name}' header is outside the file`);
  const lh = view(await reader.read(entry.localHeaderOffset, 30));
  if (lh.getUint32(0, true) !== SIG_LOCAL) throw new Error(`${fileName}: zip entry '${entry.name}' has no local header at ${entry.localHeaderOffset}`);
  const start = entry.localHeaderOffset + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
  if (start + entry.size > reader.size) throw new Error(`${fileName}: zip entry '${entry.name}' (${entry.size} bytes at ${start}) runs past the end of the file (truncated?)`);
  return start;
}
