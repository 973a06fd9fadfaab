// Tensor sources: what every checkpoint parser (safetensors, PyTorch zip, sharded indexes) produces. A parser reads
// only the file's header/directory up front; each TensorEntry.read() then fetches that one tensor's bytes through a
// random-access ByteReader, so a 1.3 GB checkpoint streams tensor by tensor and is never held in JS memory whole.
// Core module: no Node imports (the Node edge supplies a file-descriptor ByteReader in src/node/modeldir.ts;
// browsers use blobReader below).

import { f16ToF32, f32ToF16 } from '../tensor.js';
import { parseJsonBounded } from './json.js';

/** Element types found in checkpoints (safetensors spelling). */
export type CheckpointDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<CheckpointDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isCheckpointDType(s: unknown): s is CheckpointDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

/** Random access to the bytes of one file (a file descriptor in Node, a Blob/File in browsers, or memory). */
export interface ByteReader {
  readonly size: number;
  /** exactly `length` bytes starting at `offset` (rejects on a short read) */
  read(offset: number, length: number): Promise<Uint8Array>;
}

export interface TensorEntry {
  readonly name: string;
  readonly shape: readonly number[];
  /** element type as stored in the file */
  readonly dtype: CheckpointDType;
  /** the file it lives in (for messages) */
  readonly file: string;
  /** the values widened/narrowed to f32, row-major contiguous */
  read(): Promise<Float32Array>;
  /** the stored bytes, little-endian, row-major contiguous (strided PyTorch tensors are gathered) */
  readRaw(): Promise<Uint8Array>;
}

export interface TensorSource {
  /** in file order */
  readonly entries: Map<string, TensorEntry>;
  /** the files behind it (one, or every shard) */
  readonly files: readonly string[];
  /** safetensors `__metadata__` (string to string), or {} */
  readonly metadata: Readonly<Record<string, string>>;
}

/** A Git LFS pointer saved in place of the real file (a clone without git-lfs): its first line says so. */
export const GIT_LFS_POINTER_PREFIX = 'version https://git-lfs.github.com/spec/v1';

export function isGitLfsPointer(head: Uint8Array): boolean {
  if (head.length < GIT_LFS_POINTER_PREFIX.length) return false;
  for (let i = 0; i < GIT_LFS_POINTER_PREFIX.length; i++) if (head[i] !== GIT_LFS_POINTER_PREFIX.charCodeAt(i)) return false;
  return true;
}

export function gitLfsPointerMessage(fileName: string, size: number): string {
  return (
    `${fileName} is a Git LFS pointer file (${size} bytes), not the weights themselves: the repository was cloned without ` +
    'git-lfs. Run `git lfs install && git lfs pull` in the model folder (or download the file directly)'
  );
}

/** the highest rank accepted for a checkpoint tensor (real models use <= 5; a pickle may claim thousands) */
export const MAX_TENSOR_RANK = 64;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** A ByteReader over bytes already in memory (tests, small files). */
export function bytesReader(bytes: Uint8Array): ByteReader {
  return {
    size: bytes.byteLength,
    async read(offset, length) {
      checkRange(offset, length, bytes.byteLength);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** A ByteReader over a Blob or File (browsers; also Node >= 20, which has Blob). Reads only the requested slice. */
export function blobReader(blob: Blob): ByteReader {
  return {
    size: blob.size,
    async read(offset, length) {
      checkRange(offset, length, blob.size);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

function checkRange(offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    // parsers check ranges before reading; this is the last line of defence, and not a RangeError (which would read
    // as an engine fault rather than a damaged file)
    throw new Error(`read of ${length} bytes at offset ${offset} is outside the file (${size} bytes)`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// dtype conversion. Files are little-endian; typed arrays use the host order, which is little-endian on every
// platform WebGPU runs on. Checked once so a big-endian host fails loudly instead of loading garbage.
const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A copy when the view's offset is not a multiple of `align` (typed arrays need aligned offsets). */
export function alignedView(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  return bytes.slice();
}

let f16Table: Float32Array | null = null;

/** all 65536 half values, built once (256 KiB) */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16ToF32(h);
  f16Table = t;
  return t;
}

/** Converts `count` stored elements to f32. `what` names the tensor and file for the error. */
export function toFloat32(bytes: Uint8Array, dtype: CheckpointDType, count: number, what: string): Float32Array {
  if (!littleEndianHost) throw new Error(`${what}: big-endian hosts are not supported`);
  const need = count * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== need) throw new Error(`${what}: expected ${need} bytes for ${count} ${dtype} values, got ${bytes.byteLength}`);
  const b = alignedView(bytes, DTYPE_BYTES[dtype]);
  const buf = b.buffer;
  const off = b.byteOffset;
  switch (dtype) {
    case 'F32':
      // a fresh copy so the caller owns it (the reader may hand back a view of a shared buffer)
      return new Float32Array(buf.slice(off, off + need));
    case 'F64':
      return Float32Array.from(new Float64Array(buf, off, count));
    case 'F16': {
      const t = halfTable();
      const src = new Uint16Array(buf, off, count);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of an f32
      const src = new Uint16Array(buf, off, count);
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = src[i] << 16;
      return out;
    }
    case 'I64': {
      const src = new Int32Array(buf, off, count * 2);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[2 * i + 1] * 4294967296 + (src[2 * i] >>> 0);
      return out;
    }
    case 'I32':
      return Float32Array.from(new Int32Array(buf, off, count));
    case 'I16':
      return Float32Array.from(new Int16Array(buf, off, count));
    case 'I8':
      return Float32Array.from(new Int8Array(buf, off, count));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(new Uint8Array(buf, off, count));
  }
}

// IEEE half conversions are the engine's own (src/tensor.ts); bfloat16 is only needed here
export { f32ToF16 as float32ToHalfBits };

const cvtF32 = new Float32Array(1);
const cvtU32 = new Uint32Array(cvtF32.buffer);

/** f32 -> bfloat16, round to nearest even (any NaN -> the quiet NaN 0x7fc0, as c10::BFloat16 does). */
export function float32ToBFloat16Bits(x: number): number {
  cvtF32[0] = x;
  const b = cvtU32[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 values encoded as F32/F16/BF16 little-endian bytes. */
export function fromFloat32(data: Float32Array, dtype: 'F32' | 'F16' | 'BF16'): Uint8Array {
  if (!littleEndianHost) throw new Error('big-endian hosts are not supported');
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint16Array(data.length);
  if (dtype === 'F16') for (let i = 0; i < data.length; i++) out[i] = f32ToF16(data[i]);
  else for (let i = 0; i < data.length; i++) out[i] = float32ToBFloat16Bits(data[i]);
  return new Uint8Array(out.buffer);
}

// ---------------------------------------------------------------------------------------------------------------
// Sharded checkpoints: `model.safetensors.index.json` / `pytorch_model.bin.index.json`
//   { "metadata": { "total_size": N }, "weight_map": { "<tensor name>": "<shard file name>", ... } }

export interface ShardIndex {
  /** shard file names in first-use order */
  shards: string[];
  weightMap: Map<string, string>;
  metadata: Record<string, unknown>;
}

export function parseShardIndex(text: string, fileName: string): ShardIndex {
  const json = parseJsonBounded(text, fileName, { maxChars: 256 * 1024 * 1024 });
  if (!isPlainObject(json)) throw new Error(`${fileName}: expected a JSON object with "weight_map"`);
  const wm = json.weight_map;
  if (!isPlainObject(wm)) throw new Error(`${fileName}: "weight_map" is missing or not an object of tensor name -> shard file`);
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [key, file] of Object.entries(wm)) {
    if (typeof file !== 'string' || !file) throw new Error(`${fileName}: weight_map["${key}"] is not a file name`);
    // shards live beside the index; refuse paths so an index cannot point outside the model directory
    if (file.includes('/') || file.includes('\\') || file === '.' || file === '..') {
      throw new Error(`${fileName}: weight_map["${key}"] = "${file}" is not a plain file name beside the index`);
    }
    weightMap.set(key, file);
    if (!shards.includes(file)) shards.push(file);
  }
  if (weightMap.size === 0) throw new Error(`${fileName}: "weight_map" is empty`);
  const metadata = isPlainObject(json.metadata) ? json.metadata : {};
  return { shards, weightMap, metadata };
}

/**
 * One TensorSource over all shards of an index. `openShard` opens one shard file (a safetensors or PyTorch parser
 * over its ByteReader); shards are opened one after the other, and only their headers are read.
 */
export async function openSharded(index: ShardIndex, indexFileName: string, openShard: (file: string) => Promise<TensorSource>): Promise<TensorSource> {
  const entries = new Map<string, TensorEntry>();
  const files: string[] = [];
  const metadata: Record<string, string> = {};
  for (const shard of index.shards) {
    const src = await openShard(shard);
    files.push(...src.files);
    Object.assign(metadata, src.metadata);
    for (const [key, file] of index.weightMap) {
      if (file !== shard) continue;
      const e = src.entries.get(key);
      if (!e) throw new Error(`${indexFileName}: weight_map puts '${key}' in ${shard}, but ${shard} has no tensor of that name`);
      entries.set(key, e);
    }
    // tensors a shard holds but the index does not list are ignored, as transformers does
  }
  // keep the index's key order (it is the order the model was saved in)
  const ordered = new Map<string, TensorEntry>();
  for (const key of index.weightMap.keys()) ordered.set(key, entries.get(key)!);
  return { entries: ordered, files, metadata };
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
