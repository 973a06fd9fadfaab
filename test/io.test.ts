// Checkpoint I/O: safetensors and PyTorch zip reading (every dtype, strided views, sharding, ZIP64), the restricted
// unpickler's refusals, the safetensors writer (round trip bit-identical, f16/bf16 rounding against torch), atomic
// saving, streaming (bytes read per tensor), and key mapping against real Hugging Face key lists.
// Fixtures: test/fixtures/io/ (tools/make_io_fixtures.py, torch 1.13) and ../shared/fixtures (real HF names).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ByteReader, type TensorSource, bytesReader, blobReader, float32ToBFloat16Bits, float32ToHalfBits, parseShardIndex, openSharded } from '../src/io/source.js';
import { readSafetensors, safetensorsBytes, safetensorsLayout, writeSafetensors, type TensorToSave } from '../src/io/safetensors.js';
import { readPytorch, restrictedUnpickle } from '../src/io/pytorch.js';
import { parseWav2Vec2Config, type Wav2Vec2Config } from '../src/model/wav2vec2/config.js';
import { wav2vec2Family } from '../src/model/wav2vec2/index.js';
import { parameterShapes } from '../src/model/classifier.js';
import type { HeadKind, MapOptions } from '../src/io/statedict.js';
import type { ModelConfigBase } from '../src/io/config.js';
import { loadIntoTensors as loadIntoTensorsAnyFamily, mapCheckpointKeys, sourceShapes } from '../src/io/statedict.js';

/** wav2vec2 parameter shapes for a head; 'ctc' adds Wav2Vec2ForCTC's lm_head to the bare model */
function expectedParameterShapes(c: ModelConfigBase, head: HeadKind, vocab = 32): Map<string, number[]> {
  if (head !== 'ctc') return parameterShapes(c, head);
  return new Map([...parameterShapes(c, 'none'), ['lm_head.weight', [vocab, c.hidden_size]], ['lm_head.bias', [vocab]]]);
}
/** the wav2vec2 family's key rules (a 24-layer config: the largest layer index the checkpoints here hold is 23) */
const w2vRules = (layers = 24) => wav2vec2Family.keyRules({ ...parseWav2Vec2Config({}), num_hidden_layers: layers });
const mapKeys = (src: Parameters<typeof mapCheckpointKeys>[0], shapes: Parameters<typeof mapCheckpointKeys>[1], opts: MapOptions = {}) => mapCheckpointKeys(src, shapes, { rules: w2vRules(), ...opts });
const loadIntoTensors = (src: Parameters<typeof loadIntoTensorsAnyFamily>[0], targets: Parameters<typeof loadIntoTensorsAnyFamily>[1], opts: Parameters<typeof loadIntoTensorsAnyFamily>[2] = {}) => loadIntoTensorsAnyFamily(src, targets, { rules: w2vRules(), ...opts });
import { FileByteReader, openModelDir, openShardedIndex, openTensorFile, saveModelDir, saveSafetensorsFile } from '../src/node/modeldir.js';
import { openModelFiles } from '../src/io/modelfiles.js';
import { Tensor } from '../src/tensor.js';
import { getRuntime, rng } from './helpers.js';

const FIX = path.resolve('test/fixtures/io');
const SHARED = path.resolve('../shared/fixtures');
const TINY = path.join(SHARED, 'xlsr_tiny');
const haveShared = fs.existsSync(path.join(TINY, 'model.safetensors'));
const sharedTest = haveShared ? test : test.skip;

interface Expected {
  dtype: string;
  shape: number[];
  f32_bits: number[];
}
const values = (e: Expected) => new Float32Array(Uint32Array.from(e.f32_bits).buffer);
const expected: Record<string, Expected> = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));

/** counts the bytes a parser asks for */
function countingReader(inner: ByteReader): ByteReader & { bytes: number; reads: number } {
  const r = {
    size: inner.size,
    bytes: 0,
    reads: 0,
    read(offset: number, length: number) {
      r.bytes += length;
      r.reads++;
      return inner.read(offset, length);
    },
  };
  return r;
}

function fileReader(p: string): ByteReader {
  return bytesReader(new Uint8Array(fs.readFileSync(p)));
}

async function throwsWith(fn: () => Promise<unknown> | unknown, ...parts: (string | RegExp)[]): Promise<string> {
  let msg: string | null = null;
  try {
    await fn();
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.ok(msg !== null, `expected an error mentioning ${parts.join(' & ')}`);
  for (const p of parts) assert.ok(typeof p === 'string' ? msg!.includes(p) : p.test(msg!), `error should mention ${p}:\n${msg}`);
  return msg!;
}

/** every tensor of a source equals expected.json bit for bit (f32 values) */
async function checkAgainstExpected(src: TensorSource, names = Object.keys(expected)): Promise<void> {
  for (const name of names) {
    const e = src.entries.get(name);
    assert.ok(e, `tensor ${name} missing`);
    const want = expected[name];
    assert.is(e!.dtype, want.dtype, `${name} dtype`);
    assert.equal([...e!.shape], want.shape, `${name} shape`);
    const got = await e!.read();
    assert.ok(got instanceof Float32Array, `${name}: Float32Array`);
    const ref = values(want);
    assert.is(got.length, ref.length, `${name} length`);
    for (let i = 0; i < got.length; i++) {
      if (!Object.is(got[i], ref[i])) assert.unreachable(`${name}[${i}] = ${got[i]}, expected ${ref[i]}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PyTorch zip

test('pytorch: every dtype, strided views, shared storage offsets, scalar, empty, Parameter, OrderedDict _metadata', async () => {
  const src = await readPytorch(fileReader(path.join(FIX, 'dtypes.bin')), 'dtypes.bin');
  assert.equal([...src.entries.keys()], Object.keys(expected), 'keys in file order');
  await checkAgainstExpected(src);
  // raw bytes of a strided view are gathered row-major
  const raw = await src.entries.get('transposed')!.readRaw();
  const vals = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  assert.equal([...vals], [...values(expected.transposed)]);
});

test('pytorch: protocol 4 pickle, nested training checkpoint, ZIP64 archive', async () => {
  for (const f of ['proto4.bin', 'nested.bin']) {
    const src = await readPytorch(fileReader(path.join(FIX, f)), f);
    assert.equal([...src.entries.keys()], ['0.weight', '0.bias', 'f16', 'bf16'], f);
    await checkAgainstExpected(src, ['0.weight', '0.bias', 'f16', 'bf16']);
  }
  const z = await readPytorch(fileReader(path.join(FIX, 'zip64.bin')), 'zip64.bin');
  await checkAgainstExpected(z);
});

test('pytorch: legacy format refused with conversion advice naming the file', async () => {
  await throwsWith(() => readPytorch(fileReader(path.join(FIX, 'legacy.bin')), 'legacy.bin'), 'legacy.bin', 'legacy', '_use_new_zipfile_serialization=True', 'safetensors');
});

test('pytorch: a pickle calling os.system is refused, naming the global and file; nothing runs', async () => {
  const marker = '/tmp/ser_io_fixture_pwned';
  fs.rmSync(marker, { force: true });
  await throwsWith(() => readPytorch(fileReader(path.join(FIX, 'malicious.bin')), 'malicious.bin'), 'malicious.bin', "'posix.system'", 'never');
  assert.not.ok(fs.existsSync(marker));
});

test('pytorch: unknown opcode, compressed entries, garbage and truncation are refused by name', async () => {
  await throwsWith(() => readPytorch(fileReader(path.join(FIX, 'bad_opcode.bin')), 'bad_opcode.bin'), 'bad_opcode.bin', 'INST');
  await throwsWith(() => readPytorch(fileReader(path.join(FIX, 'deflated.bin')), 'deflated.bin'), 'deflated.bin', 'compressed', 'data.pkl');
  await throwsWith(() => readPytorch(bytesReader(new TextEncoder().encode('hello world, not a checkpoint')), 'junk.bin'), 'junk.bin', 'not a PyTorch checkpoint');
  const full = fs.readFileSync(path.join(FIX, 'dtypes.bin'));
  await throwsWith(() => readPytorch(bytesReader(new Uint8Array(full.subarray(0, full.length - 100))), 'cut.bin'), 'cut.bin');
  // other globals refused in the bare unpickler too: builtins.eval via GLOBAL and STACK_GLOBAL
  const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  await throwsWith(() => restrictedUnpickle(enc('\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.'), { where: 'p.pkl' }), 'p.pkl', "'builtins.eval'");
  await throwsWith(() => restrictedUnpickle(enc('\x80\x04\x8c\x08builtins\x8c\x04exec\x93.'), { where: 'q.pkl' }), 'q.pkl', "'builtins.exec'");
  await throwsWith(() => restrictedUnpickle(enc('\x80\x02\x81.'), { where: 'r.pkl' }), 'r.pkl', 'NEWOBJ');
});

test('pytorch: tensors stream: each tensor reads only its own bytes', async () => {
  const bytes = new Uint8Array(fs.readFileSync(path.join(FIX, 'dtypes.bin')));
  const r = countingReader(bytesReader(bytes));
  const src = await readPytorch(r, 'dtypes.bin');
  const e = src.entries.get('f64')!;
  const before = r.bytes;
  await e.read();
  // one 30-byte local header + the tensor's own 4 x 8 bytes
  assert.is(r.bytes - before, 30 + 32);
});

// ---------------------------------------------------------------------------------------------------------------
// safetensors

test('safetensors: every dtype matches torch, metadata read, raw F16/BF16 bytes identical to the PyTorch file', async () => {
  const st = await readSafetensors(fileReader(path.join(FIX, 'dtypes.safetensors')), 'dtypes.safetensors');
  assert.equal(st.metadata, { format: 'pt', note: 'io fixture' });
  await checkAgainstExpected(st);
  const pt = await readPytorch(fileReader(path.join(FIX, 'dtypes.bin')), 'dtypes.bin');
  for (const name of ['f16', 'bf16', 'i64', 'transposed', 'grid_view']) {
    assert.equal([...(await st.entries.get(name)!.readRaw())], [...(await pt.entries.get(name)!.readRaw())], name);
  }
});

test('safetensors: header validation errors name the file and the tensor', async () => {
  const file = 'bad.safetensors';
  const make = (header: unknown, dataLen: number, rawHeader?: Uint8Array) => {
    const h = rawHeader ?? new TextEncoder().encode(JSON.stringify(header));
    const out = new Uint8Array(8 + h.length + dataLen);
    new DataView(out.buffer).setUint32(0, h.length, true);
    out.set(h, 8);
    return bytesReader(out);
  };
  const read = (r: ByteReader) => () => readSafetensors(r, file);
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  await readSafetensors(make(ok, 8), file); // the baseline is valid
  await throwsWith(read(bytesReader(new Uint8Array(5))), file, 'too short');
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setUint32(0, 1e6, true);
  await throwsWith(read(bytesReader(huge)), file, 'header length 1000000');
  await throwsWith(read(make(null, 0, new TextEncoder().encode('{"a": '))), file, 'not valid JSON');
  await throwsWith(read(make(null, 0, Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]))), file, 'UTF-8');
  await throwsWith(read(make([1, 2], 0)), file, 'JSON object');
  await throwsWith(read(make({ a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, 2)), file, "'a'", 'F8_E4M3');
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, 8)), file, "'a'", 'shape');
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8)), file, "'a'", 'needs 12');
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8)), file, "'a'", 'data_offsets');
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [2], data_offsets: [4, 8] } }, 8)), file, "'b'", 'overlap', "'a'");
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12)), file, "'a'", 'gap');
  await throwsWith(read(make({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4)), file, "'a'", 'past the end');
  await throwsWith(read(make(ok, 12)), file, '4 bytes after the last tensor');
  await throwsWith(read(make({ __metadata__: { n: 3 }, ...ok }, 8)), file, '__metadata__', '"n"');
});

test('safetensors writer: round trip bit-identical (odd sizes, lazy data, 0-d, empty), layout as the format requires', async () => {
  const r = rng(7);
  const tensors: TensorToSave[] = [];
  const values = new Map<string, Float32Array>();
  const shapes: number[][] = [[37, 3], [5], [1, 1, 13], [], [0, 4], [2, 3, 5, 7]];
  shapes.forEach((shape, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => (r() - 0.5) * 10 ** Math.floor(r() * 8 - 4));
    if (n > 2) data[1] = -0; // signed zero survives
    const name = `layer.${i}.weight`;
    values.set(name, data);
    tensors.push({ name, shape, data: i % 2 ? () => Promise.resolve(data) : data });
  });
  const meta = { format: 'pt', who: 'io.test' };
  const bytes = await safetensorsBytes(tensors, meta);
  const { header, totalBytes } = safetensorsLayout(tensors, meta);
  assert.is(bytes.length, totalBytes);
  assert.is((header.length - 8) % 8, 0, 'header padded to 8');
  const src = await readSafetensors(bytesReader(bytes), 'roundtrip.safetensors');
  assert.equal(src.metadata, meta);
  assert.equal([...src.entries.keys()], tensors.map((t) => t.name));
  for (const t of tensors) {
    const got = await src.entries.get(t.name)!.read();
    const want = values.get(t.name)!;
    assert.equal([...src.entries.get(t.name)!.shape], [...t.shape]);
    assert.equal(new Uint8Array(got.buffer, got.byteOffset, got.byteLength), new Uint8Array(want.buffer, want.byteOffset, want.byteLength), t.name);
  }
  // browsers: a Blob of the chunks reads the same
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for await (const c of writeSafetensors(tensors, meta)) chunks.push(c.slice());
  const viaBlob = await readSafetensors(blobReader(new Blob(chunks)), 'blob.safetensors');
  assert.equal([...(await viaBlob.entries.get('layer.0.weight')!.read())], [...values.get('layer.0.weight')!]);
  // writer refusals
  await throwsWith(() => safetensorsBytes([{ name: 'x', shape: [3], data: new Float32Array(2) }]), "'x'", '2 values');
  await throwsWith(() => safetensorsBytes([{ name: 'x', shape: [1], data: new Float32Array(1) }, { name: 'x', shape: [1], data: new Float32Array(1) }]), "'x'", 'twice');
  await throwsWith(() => safetensorsBytes([{ name: 'y', shape: [4], data: () => new Float32Array(3) }]), "'y'", '3 values');
});

test('safetensors writer: F16 / BF16 rounding matches torch bit for bit (ties, overflow, subnormals, NaN)', async () => {
  const rounding = JSON.parse(fs.readFileSync(path.join(FIX, 'rounding.json'), 'utf8')) as { f32_bits: number[]; f16_bits: number[]; bf16_bits: number[] };
  const f32 = new Float32Array(Uint32Array.from(rounding.f32_bits).buffer);
  // NaN: any NaN pattern matches (torch's vectorised bf16 path writes 0xffff, its scalar path 0x7fc0)
  const halfNaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
  const bf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
  const same = (got: number, want: number, isNaN: (h: number) => boolean) => got === want || (isNaN(got) && isNaN(want));
  let nans = 0;
  for (let i = 0; i < f32.length; i++) {
    if (Number.isNaN(f32[i])) nans++;
    assert.ok(same(float32ToHalfBits(f32[i]), rounding.f16_bits[i], halfNaN), `f16 of ${f32[i]} (bits 0x${rounding.f32_bits[i].toString(16)}): 0x${float32ToHalfBits(f32[i]).toString(16)} vs torch 0x${rounding.f16_bits[i].toString(16)}`);
    assert.ok(same(float32ToBFloat16Bits(f32[i]), rounding.bf16_bits[i], bf16NaN), `bf16 of ${f32[i]}: 0x${float32ToBFloat16Bits(f32[i]).toString(16)} vs torch 0x${rounding.bf16_bits[i].toString(16)}`);
  }
  assert.is(nans, 1);
  // writing F16/BF16 and reading back reproduces the torch-rounded values
  for (const [dtype, key] of [['F16', 'f16_bits'], ['BF16', 'bf16_bits']] as const) {
    const bytes = await safetensorsBytes([{ name: 'v', shape: [f32.length], data: f32, dtype }]);
    const src = await readSafetensors(bytesReader(bytes), `${dtype}.safetensors`);
    assert.is(src.entries.get('v')!.dtype, dtype);
    const raw = new Uint16Array((await src.entries.get('v')!.readRaw()).slice().buffer);
    const isNaN = dtype === 'F16' ? halfNaN : bf16NaN;
    for (let i = 0; i < raw.length; i++) assert.ok(same(raw[i], rounding[key][i], isNaN), `${dtype} value ${i}`);
  }
});

test('safetensors: streaming reads only the header, then exactly each tensor', async () => {
  const tensors = [
    { name: 'a', shape: [100, 3], data: new Float32Array(300).fill(1) },
    { name: 'b', shape: [7], data: new Float32Array(7).fill(2) },
  ];
  const bytes = await safetensorsBytes(tensors);
  const r = countingReader(bytesReader(bytes));
  const src = await readSafetensors(r, 'stream.safetensors');
  const headerLen = safetensorsLayout(tensors).header.length;
  assert.is(r.bytes, headerLen);
  await src.entries.get('b')!.read();
  assert.is(r.bytes, headerLen + 28);
});

// ---------------------------------------------------------------------------------------------------------------
// sharding and the Node edge

test('sharded checkpoints: safetensors and PyTorch indexes, with errors naming index, key and shard', async () => {
  const small = ['0.weight', '0.bias', 'f16', 'bf16'];
  for (const idx of ['sharded_st/model.safetensors.index.json', 'sharded_pt/pytorch_model.bin.index.json']) {
    const src = await openShardedIndex(path.join(FIX, idx));
    assert.equal([...src.entries.keys()], small, idx);
    assert.is(src.files.length, 2);
    await checkAgainstExpected(src, small);
    await src.close();
  }
  // in memory: a key the shard lacks, a missing shard file, paths outside the directory
  const shardBytes = new Uint8Array(fs.readFileSync(path.join(FIX, 'sharded_st/model-00001-of-00002.safetensors')));
  const open = async (f: string) => readSafetensors(bytesReader(shardBytes), f);
  const idx = (wm: Record<string, string>) => parseShardIndex(JSON.stringify({ metadata: {}, weight_map: wm }), 'idx.json');
  await throwsWith(() => openSharded(idx({ '0.weight': 's1', nope: 's1' }), 'idx.json', open), 'idx.json', "'nope'", 's1');
  assert.throws(() => idx({ a: '../secret.safetensors' }), /idx\.json.*secret/);
  assert.throws(() => parseShardIndex('{"metadata": {}}', 'idx.json'), /idx\.json.*weight_map/);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-io-'));
  try {
    fs.writeFileSync(path.join(tmp, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'missing.safetensors' } }));
    await throwsWith(() => openShardedIndex(path.join(tmp, 'model.safetensors.index.json')), 'model.safetensors.index.json', 'missing.safetensors');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

sharedTest('xlsr_tiny: the PyTorch header pass reads only the zip directory and the pickle', async () => {
  const bytes = new Uint8Array(fs.readFileSync(path.join(TINY, 'pytorch_model.bin')));
  const r = countingReader(bytesReader(bytes));
  await readPytorch(r, 'pytorch_model.bin');
  // 1 KiB tail + central directory (75 entries) + 30-byte local header + data.pkl (14 KB) of a 459 KB file
  assert.ok(r.bytes < 24000, `header pass read ${r.bytes} of ${bytes.length} bytes`);
  assert.ok(r.reads <= 5, `${r.reads} reads (magic, tail, directory, local header, pickle)`);
});

sharedTest('xlsr_tiny: model.safetensors and pytorch_model.bin hold the same 73 tensors, bit for bit', async () => {
  const st = await openTensorFile(path.join(TINY, 'model.safetensors'));
  const pt = await openTensorFile(path.join(TINY, 'pytorch_model.bin'));
  assert.is(st.entries.size, 73);
  assert.equal(new Set(st.entries.keys()), new Set(pt.entries.keys()));
  for (const [name, e] of st.entries) {
    const p = pt.entries.get(name)!;
    assert.equal([...e.shape], [...p.shape], name);
    assert.is(e.dtype, 'F32');
    assert.equal(await e.readRaw(), await p.readRaw(), name);
  }
  await st.close();
  await pt.close();
});

sharedTest('model dir: open xlsr_tiny, load into parameters one tensor at a time, save, reopen bit-identical', async () => {
  const md = await openModelDir(TINY);
  assert.ok(md.weightsFile.endsWith('model.safetensors'));
  assert.is(md.config.hidden_size, 64);
  assert.is(md.preprocessor.samplingRate, 16000);
  const shapes = expectedParameterShapes(md.config, 'speech-classification');
  const store = new Map<string, Float32Array>();
  let writes = 0;
  const targets = new Map(
    [...shapes].map(([name, shape]) => [
      name,
      {
        shape,
        write(d: Float32Array) {
          writes++;
          store.set(name, d);
        },
      },
    ]),
  );
  const order: string[] = [];
  const report = await loadIntoTensors(md.weights, targets, { onTensor: (n) => order.push(n) });
  assert.is(report.errors.length, 0);
  assert.is(report.loadedTensors, 73);
  assert.is(writes, 73);
  assert.is(report.loadedValues, 107573);
  assert.equal(report.newlyInitialized, []);
  assert.equal(order.slice().sort(), [...shapes.keys()].sort(), 'each parameter once (in file order)');
  await md.close();

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-io-'));
  try {
    const out = path.join(tmp, 'finetuned');
    await saveModelDir(out, {
      config: { ...md.config.raw },
      preprocessor: md.preprocessor.json(),
      tensors: [...shapes].map(([name, shape]) => ({ name, shape, data: () => store.get(name)! })),
    });
    assert.equal(fs.readdirSync(out).sort(), ['config.json', 'model.safetensors', 'preprocessor_config.json'], 'no temp files left');
    const again = await openModelDir(out);
    assert.is(again.weights.metadata.format, 'pt', 'transformers needs metadata format=pt');
    const orig = await openTensorFile(path.join(TINY, 'model.safetensors'));
    for (const [name, e] of orig.entries) assert.equal(await again.weights.entries.get(name)!.readRaw(), await e.readRaw(), name);
    assert.equal(again.config.labels, md.config.labels);
    await again.close();
    await orig.close();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

sharedTest('GPU parameters: load xlsr_tiny into Tensors (NaN-poisoned), read back, save: file bytes identical', async () => {
  const rt = await getRuntime();
  const md = await openModelDir(TINY);
  const params = new Map<string, Tensor>();
  for (const [name, shape] of expectedParameterShapes(md.config, 'speech-classification')) params.set(name, Tensor.empty(rt, shape, 'f32', name));
  const report = await loadIntoTensors(md.weights, params);
  assert.is(report.loadedTensors, 73);
  for (const [name, e] of md.weights.entries) {
    const back = await params.get(name)!.readFloat();
    const want = await e.read();
    assert.equal(new Uint8Array(back.buffer, back.byteOffset, back.byteLength), new Uint8Array(want.buffer), name);
  }
  const tensors = [...md.weights.entries.keys()].map((name) => ({ name, shape: params.get(name)!.shape, data: () => params.get(name)!.readFloat() }));
  const saved = await safetensorsBytes(tensors, { format: 'pt' });
  assert.equal(saved, new Uint8Array(fs.readFileSync(path.join(TINY, 'model.safetensors'))), 'same bytes as the Hugging Face file');
  for (const t of params.values()) t.dispose();
  await md.close();
});

sharedTest('browser path: a model folder as Blobs (plain and sharded) opens like the Node directory', async () => {
  const blobs = new Map<string, Blob>();
  for (const f of ['config.json', 'preprocessor_config.json', 'pytorch_model.bin']) blobs.set(`xlsr_tiny/${f}`, new Blob([fs.readFileSync(path.join(TINY, f))]));
  const m = await openModelFiles(blobs, 'xlsr_tiny');
  assert.is(m.weightsFile, 'pytorch_model.bin');
  assert.is(m.weights.entries.size, 73);
  assert.is(m.config.num_labels, 5);
  const node = await openTensorFile(path.join(TINY, 'model.safetensors'));
  const k = 'wav2vec2.encoder.pos_conv_embed.conv.weight_v';
  assert.equal(await m.weights.entries.get(k)!.readRaw(), await node.entries.get(k)!.readRaw());
  await node.close();
  const sharded = new Map<string, Blob>([['config.json', new Blob(['{}'])]]);
  for (const f of fs.readdirSync(path.join(FIX, 'sharded_st'))) sharded.set(f, new Blob([fs.readFileSync(path.join(FIX, 'sharded_st', f))]));
  const s = await openModelFiles(sharded);
  assert.is(s.weightsFile, 'model.safetensors.index.json');
  assert.is(s.preprocessorFound, false);
  await checkAgainstExpected(s.weights, ['0.weight', '0.bias', 'f16', 'bf16']);
  await throwsWith(() => openModelFiles(new Map([['config.json', new Blob(['{}'])], ['tf_model.h5', new Blob(['x'])]]), 'tf'), 'tf: no weights', 'tf_model.h5', 'convert');
  await throwsWith(() => openModelFiles(new Map([['model.safetensors', new Blob(['x'])]]), 'nocfg'), 'nocfg', 'config.json');
});

test('atomic save: a failure midway leaves neither the target nor a temp file; the reader reads exact ranges', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-io-'));
  try {
    const target = path.join(tmp, 'model.safetensors');
    const tensors: TensorToSave[] = [
      { name: 'ok', shape: [3], data: new Float32Array([1, 2, 3]) },
      {
        name: 'boom',
        shape: [2],
        data: () => {
          throw new Error('GPU read-back failed');
        },
      },
    ];
    await throwsWith(() => saveSafetensorsFile(target, tensors), 'GPU read-back failed');
    assert.equal(fs.readdirSync(tmp), []);
    // an existing file survives a failed overwrite
    await saveSafetensorsFile(target, [tensors[0]]);
    const before = fs.readFileSync(target);
    await throwsWith(() => saveSafetensorsFile(target, tensors), 'GPU read-back failed');
    assert.equal(fs.readFileSync(target), before);
    assert.equal(fs.readdirSync(tmp), ['model.safetensors']);
    const fr = await FileByteReader.open(target);
    assert.is(fr.size, before.length);
    assert.equal([...(await fr.read(3, 5))], [...before.subarray(3, 8)]);
    await throwsWith(() => fr.read(before.length - 2, 4), 'outside the file');
    await fr.close();
    await throwsWith(() => openModelDir(tmp), 'config.json');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// key mapping

interface KeyList {
  config: Record<string, unknown>;
  keys: [string, number[]][];
}
const large: KeyList = JSON.parse(fs.readFileSync(path.resolve('tools/xlsr_large_keys.json'), 'utf8'));
const largeConfig = parseWav2Vec2Config({ ...large.config, id2label: { 0: 'anger', 1: 'happiness', 2: 'neutral', 3: 'sadness', 4: 'surprise' } }, 'xlsr_large_keys.json');

test('expected parameter names/shapes equal the real XLSR-large CTC key list (424 keys, order included)', () => {
  const want = expectedParameterShapes(largeConfig, 'ctc', largeConfig.vocab_size);
  assert.equal([...want.keys()], large.keys.map((k) => k[0]));
  assert.equal([...want.values()], large.keys.map((k) => k[1]));
  let n = 0;
  for (const s of want.values()) n += s.reduce((a, b) => a * b, 1);
  assert.is(n, 315479720);
});

sharedTest('expected parameter names/shapes equal the xlsr_tiny manifest (notebook head)', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(TINY, 'manifest.json'), 'utf8')) as { weights: { keys: { name: string; shape: number[] }[] } };
  const cfg = parseWav2Vec2Config(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'), 'config.json');
  const want = expectedParameterShapes(cfg, 'speech-classification');
  assert.equal([...want.keys()], manifest.weights.keys.map((k) => k.name));
  assert.equal([...want.values()], manifest.weights.keys.map((k) => k.shape));
});

test('mapping: CTC checkpoint into the classifier: lm_head skipped with a notice, classifier newly initialised', () => {
  const expectedShapes = expectedParameterShapes(largeConfig, 'speech-classification');
  const m = mapKeys(large.keys, expectedShapes, { checkpoint: 'xlsr-ctc' });
  assert.equal(m.errors, []);
  assert.is(m.mapping.size, 422);
  assert.equal(m.skipped.map((s) => s.key), ['lm_head.weight', 'lm_head.bias']);
  assert.equal(m.newlyInitialized, ['classifier.dense.weight', 'classifier.dense.bias', 'classifier.out_proj.weight', 'classifier.out_proj.bias']);
  assert.equal(m.unexpected, []);
  assert.ok(m.notices.some((n) => n.includes('lm_head.weight') && n.includes('CTC')));
  assert.ok(m.notices.some((n) => n.includes('newly initialized') && n.includes('classifier.out_proj.weight') && n.includes('xlsr-ctc')));
  // HF's sequence-classification head from the same checkpoint
  const seq = mapKeys(large.keys, expectedParameterShapes({ ...largeConfig, use_weighted_layer_sum: true }, 'sequence-classification'));
  assert.equal(seq.errors, []);
  assert.equal(seq.newlyInitialized, ['layer_weights', 'projector.weight', 'projector.bias', 'classifier.weight', 'classifier.bias']);
});

test('mapping: no wav2vec2. prefix, weight-norm parametrizations, gamma/beta, pretraining heads', () => {
  const expectedShapes = expectedParameterShapes(largeConfig, 'speech-classification');
  const renamed: [string, number[]][] = large.keys
    .filter(([k]) => !k.startsWith('lm_head'))
    .map(([k, s]) => {
      let n = k.replace(/^wav2vec2\./, '');
      n = n.replace('pos_conv_embed.conv.weight_g', 'pos_conv_embed.conv.parametrizations.weight.original0');
      n = n.replace('pos_conv_embed.conv.weight_v', 'pos_conv_embed.conv.parametrizations.weight.original1');
      n = n.replace(/encoder\.layer_norm\.weight$/, 'encoder.layer_norm.gamma').replace(/encoder\.layer_norm\.bias$/, 'encoder.layer_norm.beta');
      return [n, s];
    });
  renamed.push(['quantizer.codevectors', [1, 640, 384]], ['quantizer.weight_proj.weight', [640, 512]], ['project_q.weight', [768, 768]], ['project_hid.weight', [768, 1024]]);
  const m = mapKeys(renamed, expectedShapes, { checkpoint: 'xlsr-53' });
  assert.equal(m.errors, []);
  assert.is(m.mapping.size, 422);
  assert.is(m.mapping.get('wav2vec2.encoder.pos_conv_embed.conv.weight_g'), 'encoder.pos_conv_embed.conv.parametrizations.weight.original0');
  assert.is(m.mapping.get('wav2vec2.encoder.pos_conv_embed.conv.weight_v'), 'encoder.pos_conv_embed.conv.parametrizations.weight.original1');
  assert.is(m.mapping.get('wav2vec2.encoder.layer_norm.weight'), 'encoder.layer_norm.gamma');
  assert.is(m.mapping.get('wav2vec2.feature_extractor.conv_layers.0.conv.weight'), 'feature_extractor.conv_layers.0.conv.weight');
  assert.is(m.skipped.length, 4);
  assert.ok(m.notices.some((n) => n.includes('pretraining') && n.includes('quantizer.codevectors')));
});

test('mapping errors: missing encoder weight, shape mismatch (both shapes), ambiguity; unexpected keys noticed', () => {
  const expectedShapes = expectedParameterShapes(largeConfig, 'speech-classification');
  const missing = mapKeys(large.keys.filter(([k]) => k !== 'wav2vec2.encoder.layers.7.attention.q_proj.weight'), expectedShapes, { checkpoint: 'ck' });
  assert.is(missing.errors.length, 1);
  assert.ok(missing.errors[0].includes('wav2vec2.encoder.layers.7.attention.q_proj.weight') && missing.errors[0].includes('ck'), missing.errors[0]);
  assert.equal(missing.missing, ['wav2vec2.encoder.layers.7.attention.q_proj.weight']);

  const bad = large.keys.map(([k, s]): [string, number[]] => (k === 'wav2vec2.encoder.layers.2.feed_forward.output_dense.weight' ? [k, [4096, 1024]] : [k, s]));
  const mm = mapKeys(bad, expectedShapes, { checkpoint: 'ck' });
  assert.is(mm.errors.length, 1);
  for (const part of ['wav2vec2.encoder.layers.2.feed_forward.output_dense.weight', '[4096, 1024]', '[1024, 4096]']) assert.ok(mm.errors[0].includes(part), mm.errors[0]);

  // a classifier trained for 8 labels: an error, or newly initialised with ignoreMismatchedSizes
  const withHead: [string, number[]][] = [...large.keys, ['classifier.dense.weight', [1024, 1024]], ['classifier.dense.bias', [1024]], ['classifier.out_proj.weight', [8, 1024]], ['classifier.out_proj.bias', [8]]];
  const head = mapKeys(withHead, expectedShapes);
  assert.is(head.errors.length, 2);
  assert.ok(head.errors[0].includes('classifier.out_proj.weight') && head.errors[0].includes('[8, 1024]') && head.errors[0].includes('[5, 1024]'), head.errors[0]);
  const ignored = mapKeys(withHead, expectedShapes, { ignoreMismatchedSizes: true });
  assert.equal(ignored.errors, []);
  assert.equal(ignored.newlyInitialized, ['classifier.out_proj.weight', 'classifier.out_proj.bias']);
  assert.ok(ignored.mapping.has('classifier.dense.weight'));

  const amb: [string, number[]][] = [...large.keys, ['encoder.layer_norm.weight', [1024]]];
  const a = mapKeys(amb, expectedShapes, { checkpoint: 'ck' });
  assert.ok(a.errors.some((e) => e.includes("'wav2vec2.encoder.layer_norm.weight'") && e.includes("'encoder.layer_norm.weight'")));

  const extra = mapKeys([...large.keys, ['wav2vec2.encoder.layers.24.final_layer_norm.weight', [1024]]], expectedShapes, { checkpoint: 'ck' });
  assert.equal(extra.errors, []);
  // a layer beyond the config's 24: skipped with a notice (a config cut to its first N layers loads them)
  assert.equal(extra.skipped.filter((x) => x.reason.includes('beyond')).map((x) => x.key), ['wav2vec2.encoder.layers.24.final_layer_norm.weight']);
  assert.ok(extra.notices.some((n) => n.includes('beyond num_hidden_layers = 24')), extra.notices.join('\n'));
  const stray = mapKeys([...large.keys, ['wav2vec2.encoder.something_else.weight', [1024]]], expectedShapes, { checkpoint: 'ck' });
  assert.equal(stray.unexpected, ['wav2vec2.encoder.something_else.weight']);
  assert.ok(stray.notices.some((n) => n.startsWith('Some weights of the model checkpoint at ck were not used')));

  // masked_spec_embed absent from the checkpoint: newly initialised (only SpecAugment uses it), not an error
  const noMask = mapKeys(large.keys.filter(([k]) => k !== 'wav2vec2.masked_spec_embed'), expectedShapes);
  assert.equal(noMask.errors, []);
  assert.ok(noMask.newlyInitialized.includes('wav2vec2.masked_spec_embed'));

  const foreign = mapKeys([['hubert.encoder.layer_norm.weight', [1024]]], expectedShapes, { checkpoint: 'hub' });
  assert.ok(foreign.errors[0].includes('no key matched') && foreign.errors[0].includes('hubert.encoder.layer_norm.weight'), foreign.errors[0]);
});

test('loadIntoTensors: refuses before reading any weight when the mapping has errors; converts F16 on the way', async () => {
  const shapes = new Map<string, number[]>([
    ['wav2vec2.encoder.layer_norm.weight', [7]],
    ['wav2vec2.encoder.layer_norm.bias', [7]],
    ['classifier.out_proj.weight', [2, 7]],
  ]);
  const data = Float32Array.from({ length: 7 }, (_, i) => i / 3);
  const bytes = await safetensorsBytes([
    { name: 'wav2vec2.encoder.layer_norm.weight', shape: [7], data, dtype: 'F16' },
    { name: 'lm_head.weight', shape: [3, 7], data: new Float32Array(21) },
  ]);
  const r = countingReader(bytesReader(bytes));
  const src = await readSafetensors(r, 'half.safetensors');
  const got = new Map<string, Float32Array>();
  const targets = new Map([...shapes].map(([n, s]) => [n, { shape: s, write: (d: Float32Array) => void got.set(n, d) }]));
  const headerBytes = r.bytes;
  const msg = await throwsWith(() => loadIntoTensors(src, targets), 'half.safetensors', 'wav2vec2.encoder.layer_norm.bias');
  assert.ok(!msg.includes('classifier'), 'a missing head is not an error');
  assert.is(r.bytes, headerBytes, 'nothing read after a mapping error');
  shapes.delete('wav2vec2.encoder.layer_norm.bias');
  targets.delete('wav2vec2.encoder.layer_norm.bias');
  const report = await loadIntoTensors(src, targets);
  assert.is(report.loadedTensors, 1);
  assert.is(r.bytes, headerBytes + 14, 'only the mapped tensor was read (lm_head skipped)');
  const w = got.get('wav2vec2.encoder.layer_norm.weight')!;
  for (let i = 0; i < 7; i++) assert.ok(Math.abs(w[i] - data[i]) <= 2 ** -11 * Math.abs(data[i]), `f16 value ${i}`);
  assert.equal(report.newlyInitialized, ['classifier.out_proj.weight']);
  assert.equal(sourceShapes(src).get('lm_head.weight'), [3, 7]);
});

test.run();
