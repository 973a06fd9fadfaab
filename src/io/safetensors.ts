// safetensors reader and writer (https://github.com/huggingface/safetensors, format description in its README):
//   u64 little-endian N | N bytes of UTF-8 JSON header | data bytes
//   header: { "__metadata__"?: {str: str}, "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] } }
//   offsets are relative to the start of the data bytes; tensors are row-major, little-endian, and must tile the data
//   region exactly (no gaps, no overlaps), which is what the reference implementation checks too.
// Reading parses the header only; each tensor's bytes are fetched when its entry is read. Writing yields the file as
// a sequence of chunks (header, then one chunk per tensor), so a caller can stream it to disk or a Blob.
import {
  type ByteReader,
  type CheckpointDType,
  type TensorEntry,
  type TensorSource,
  DTYPE_BYTES,
  MAX_TENSOR_RANK,
  fromFloat32,
  gitLfsPointerMessage,
  isGitLfsPointer,
  isCheckpointDType,
  isPlainObject,
  numelOf,
  shapeString,
  toFloat32,
} from './source.js';
import { parseJsonBytesBounded } from './json.js';

/** the reference implementation refuses larger headers too */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;
/** a header is {name: {dtype, shape: [..], data_offsets: [..]}} (depth 3) plus __metadata__ (depth 2) */
export const SAFETENSORS_MAX_HEADER_DEPTH = 8;

export async function readSafetensors(reader: ByteReader, fileName: string): Promise<TensorSource> {
  if (reader.size < 8) throw new Error(`${fileName}: ${reader.size} bytes is too short for a safetensors file (8-byte header length missing)`);
  const lenBytes = await reader.read(0, 8);
  // "version " as a header length would be ~2.3e18 bytes: look closer only then (streaming reads stay exact)
  if (new TextDecoder().decode(lenBytes) === 'version ' && isGitLfsPointer(await reader.read(0, Math.min(reader.size, 64)))) {
    throw new Error(gitLfsPointerMessage(fileName, reader.size));
  }
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const headerLen = hi * 4294967296 + lo;
  if (headerLen > SAFETENSORS_MAX_HEADER_BYTES || headerLen > reader.size - 8) {
    throw new Error(
      `${fileName}: header length ${headerLen} is impossible for a ${reader.size}-byte file` +
        (headerLen > SAFETENSORS_MAX_HEADER_BYTES ? ` (limit ${SAFETENSORS_MAX_HEADER_BYTES})` : '') +
        ' - not a safetensors file, or truncated',
    );
  }
  if (headerLen < 2) throw new Error(`${fileName}: header length ${headerLen} is too short for a JSON object`);
  const headerBytes = await reader.read(8, headerLen);
  const dataStart = 8 + headerLen;
  return parseSafetensorsHeader(headerBytes, reader, dataStart, fileName);
}

/** a header value for a message, cut short (the header is the attacker's text) */
function brief(v: unknown): string {
  return (JSON.stringify(v) ?? String(v)).slice(0, 120);
}

interface RawEntry {
  name: string;
  dtype: CheckpointDType;
  shape: number[];
  begin: number;
  end: number;
}

function parseSafetensorsHeader(headerBytes: Uint8Array, reader: ByteReader, dataStart: number, fileName: string): TensorSource {
  // size is bounded by the caller (file size, SAFETENSORS_MAX_HEADER_BYTES); nesting is scanned before parsing
  const json = parseJsonBytesBounded(headerBytes, `${fileName}: safetensors header`, { maxChars: SAFETENSORS_MAX_HEADER_BYTES, maxDepth: SAFETENSORS_MAX_HEADER_DEPTH });
  if (!isPlainObject(json)) throw new Error(`${fileName}: safetensors header must be a JSON object`);

  const metadata: Record<string, string> = {};
  const raw: RawEntry[] = [];
  for (const [name, info] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(info)) throw new Error(`${fileName}: "__metadata__" must be an object of strings`);
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') throw new Error(`${fileName}: "__metadata__"."${k}" must be a string, got ${brief(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${fileName}: tensor '${name}'`;
    if (!isPlainObject(info)) throw new Error(`${where}: header entry must be an object with dtype, shape, data_offsets`);
    const { dtype, shape, data_offsets: offs } = info;
    if (!isCheckpointDType(dtype)) throw new Error(`${where}: unsupported dtype ${brief(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    if (!Array.isArray(shape) || shape.length > MAX_TENSOR_RANK || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape ${brief(shape)} is not a list of at most ${MAX_TENSOR_RANK} non-negative integers`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1]) {
      throw new Error(`${where}: data_offsets ${brief(offs)} must be [begin, end] with 0 <= begin <= end`);
    }
    const need = numelOf(shape) * DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(need) || need > reader.size) {
      throw new Error(`${where}: ${dtype} ${shapeString(shape)} needs ${need} bytes, more than the whole file (${reader.size} bytes)`);
    }
    if (offs[1] - offs[0] !== need) {
      throw new Error(`${where}: data_offsets [${offs[0]}, ${offs[1]}] span ${offs[1] - offs[0]} bytes, but ${dtype} ${shapeString(shape)} needs ${need}`);
    }
    raw.push({ name, dtype, shape: shape as number[], begin: offs[0], end: offs[1] });
  }

  // the tensors must tile the data region: sorted by offset, each starts where the previous ended
  const dataLen = reader.size - dataStart;
  const sorted = [...raw].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i];
    if (e.begin !== pos) {
      throw new Error(
        e.begin < pos
          ? `${fileName}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] overlap tensor '${sorted[i - 1].name}' (ends at ${pos})`
          : `${fileName}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${pos}`,
      );
    }
    if (e.end > dataLen) {
      throw new Error(`${fileName}: tensor '${e.name}' data_offsets [${e.begin}, ${e.end}] run past the end of the data (${dataLen} bytes; file truncated?)`);
    }
    pos = e.end;
  }
  if (pos !== dataLen) throw new Error(`${fileName}: ${dataLen - pos} bytes after the last tensor are not described by the header (file corrupt?)`);

  const entries = new Map<string, TensorEntry>();
  for (const e of sorted) {
    const numel = numelOf(e.shape);
    const readRaw = () => reader.read(dataStart + e.begin, e.end - e.begin);
    entries.set(e.name, {
      name: e.name,
      shape: e.shape,
      dtype: e.dtype,
      file: fileName,
      readRaw,
      read: async () => toFloat32(await readRaw(), e.dtype, numel, `${fileName}: tensor '${e.name}'`),
    });
  }
  return { entries, files: [fileName], metadata };
}

// ---------------------------------------------------------------------------------------------------------------
// writer

export interface TensorToSave {
  name: string;
  shape: readonly number[];
  /** the values, or a function producing them when the writer reaches this tensor (e.g. a GPU read-back) */
  data: Float32Array | (() => Float32Array | Promise<Float32Array>);
  /** stored element type (default F32; F16/BF16 round to nearest even) */
  dtype?: 'F32' | 'F16' | 'BF16';
}

export interface SafetensorsLayout {
  /** the 8-byte length and the JSON header, padded with spaces to a multiple of 8 */
  header: Uint8Array;
  /** total file size */
  totalBytes: number;
}

/** Header and size of the file that writeSafetensors will produce (checks names, shapes and metadata). */
export function safetensorsLayout(tensors: readonly TensorToSave[], metadata: Record<string, string> = {}): SafetensorsLayout {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors metadata "${k}" must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new Error(`cannot save a tensor named "__metadata__" (reserved by safetensors)`);
    if (Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`cannot save tensor '${t.name}' twice`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`tensor '${t.name}': bad shape ${shapeString(t.shape)}`);
    const dtype = t.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16') throw new Error(`tensor '${t.name}': cannot save as ${dtype} (F32, F16 or BF16)`);
    if (t.data instanceof Float32Array && t.data.length !== numelOf(t.shape)) {
      throw new Error(`tensor '${t.name}': ${t.data.length} values for shape ${shapeString(t.shape)} (${numelOf(t.shape)} elements)`);
    }
    const bytes = numelOf(t.shape) * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded);
  new DataView(out.buffer).setUint32(0, padded % 4294967296, true);
  new DataView(out.buffer).setUint32(4, Math.floor(padded / 4294967296), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength);
  return { header: out, totalBytes: out.byteLength + offset };
}

/**
 * The safetensors file as chunks: the header first, then each tensor's bytes in the given order. Lazy `data`
 * functions are called one at a time, so at most one tensor's values are alive in JS at once.
 */
export async function* writeSafetensors(tensors: readonly TensorToSave[], metadata: Record<string, string> = {}): AsyncGenerator<Uint8Array> {
  const { header } = safetensorsLayout(tensors, metadata);
  yield header;
  for (const t of tensors) {
    const data = typeof t.data === 'function' ? await t.data() : t.data;
    if (!(data instanceof Float32Array) || data.length !== numelOf(t.shape)) {
      const n = data instanceof Float32Array ? `${data.length} values` : 'not a Float32Array';
      throw new Error(`tensor '${t.name}': ${n} for shape ${shapeString(t.shape)} (${numelOf(t.shape)} elements)`);
    }
    yield fromFloat32(data, t.dtype ?? 'F32');
  }
}

/** The whole file in memory (small models, tests, browser downloads of small files). */
export async function safetensorsBytes(tensors: readonly TensorToSave[], metadata: Record<string, string> = {}): Promise<Uint8Array> {
  const { totalBytes } = safetensorsLayout(tensors, metadata);
  const out = new Uint8Array(totalBytes);
  let pos = 0;
  for await (const chunk of writeSafetensors(tensors, metadata)) {
    out.set(chunk, pos);
    pos += chunk.byteLength;
  }
  return out;
}
