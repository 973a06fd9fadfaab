// Hostile checkpoints (issue 13): pickles that are long, deep or memo-heavy, tensor views that repeat or overrun their
// storage, zip fields too large to be real, safetensors headers nested a hundred thousand deep, Git LFS pointers saved
// as weights, and the bounded JSON helper. Every file is generated here (test/hostile-gen.ts); each must end in one
// Error naming the file, quickly, never a TypeError/RangeError or an out-of-memory abort.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bytesReader, parseShardIndex } from '../src/io/source.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { PICKLE_LIMITS, readPytorch, restrictedUnpickle } from '../src/io/pytorch.js';
import { readTensorFile } from '../src/io/modelfiles.js';
import { jsonNestingDepth, parseJsonBounded } from '../src/io/json.js';
import { openTensorFile } from '../src/node/modeldir.js';
import { PickleWriter, gitLfsPointer, pytorchZip, safetensorsWithHeader, stateDictPickle } from './hostile-gen.js';

/** fn fails with a plain Error (not TypeError/RangeError) whose message starts with `file` and matches `re`, within ms */
async function refuses(fn: () => unknown, file: string, re: RegExp, ms = 5000): Promise<string> {
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    const took = Date.now() - t0;
    assert.instance(e, Error);
    assert.ok(!(e instanceof TypeError) && !(e instanceof RangeError) && !(e instanceof ReferenceError), `raw ${(e as Error).name}: ${(e as Error).message}`);
    const msg = (e as Error).message;
    assert.ok(msg.startsWith(file), `message names ${file}: ${msg}`);
    assert.match(msg, re);
    assert.ok(took < ms, `refused after ${took} ms (limit ${ms})`);
    return msg;
  }
  assert.unreachable(`${file}: expected an error matching ${re}`);
  return '';
}

test('generator sanity: a valid generated pytorch_model.bin reads back, incl. a legitimate transposed view', async () => {
  const bin = pytorchZip([
    { name: 'a', key: '0', storageNumel: 6, offset: 0, shape: [2, 3], stride: [3, 1] },
    { name: 'aT', key: '0', storageNumel: 6, offset: 0, shape: [3, 2], stride: [1, 3] },
    { name: 'tail', key: '1', storageNumel: 5, offset: 2, shape: [3], stride: [1] },
  ]);
  const src = await readPytorch(bytesReader(bin), 'gen.bin');
  assert.equal([...(await src.entries.get('a')!.read())], [0, 0.5, 1, 1.5, 2, 2.5]);
  assert.equal([...(await src.entries.get('aT')!.read())], [0, 1.5, 0.5, 2, 1, 2.5]);
  assert.equal([...(await src.entries.get('tail')!.read())], [1, 1.5, 2]);
});

test('pickle: 3 MB of EMPTY_DICT, deep MARKs, a big memo are bounded errors; APPENDS of 900k items does not overflow', async () => {
  const dicts = new Uint8Array(3_000_000).fill(0x7d);
  dicts[0] = 0x80;
  dicts[1] = 0x02;
  await refuses(() => restrictedUnpickle(dicts, { where: 'dicts.pkl' }), 'dicts.pkl', /more than 1000000 values on the pickle stack/, 5000);
  // the same through a whole checkpoint: the error names the file and the entry
  const bin = pytorchZip([{ name: 'w', key: '0', storageNumel: 1, offset: 0, shape: [1], stride: [1] }], dicts);
  await refuses(() => readPytorch(bytesReader(bin), 'pytorch_model.bin'), 'pytorch_model.bin: archive/data.pkl', /pickle stack/);

  const marks = new Uint8Array(100_000).fill(0x28);
  await refuses(() => restrictedUnpickle(marks, { where: 'marks.pkl' }), 'marks.pkl', /more than 1000 nested MARKs/);

  const memo = new PickleWriter().proto(2).emptyDict();
  for (let i = 0; i < 2000; i++) memo.bytes(0x72).u32(i); // LONG_BINPUT i
  await refuses(() => restrictedUnpickle(memo.stop().finish(), { where: 'memo.pkl', limits: { maxMemo: 1000 } }), 'memo.pkl', /more than 1000 memo entries/);

  const ops = new PickleWriter().proto(2).emptyDict();
  for (let i = 0; i < 3000; i++) ops.bytes(0x32, 0x30); // DUP, POP
  await refuses(() => restrictedUnpickle(ops.stop().finish(), { where: 'ops.pkl', limits: { maxOps: 5000 } }), 'ops.pkl', /more than 5000 opcodes/);
  assert.ok(PICKLE_LIMITS.maxOps >= 1_000_000 && PICKLE_LIMITS.maxMarks >= 100);

  const n = 900_000;
  const list = new Uint8Array(4 + n + 2);
  list.set([0x80, 0x02, 0x5d, 0x28]); // PROTO 2, EMPTY_LIST, MARK
  list.fill(0x4e, 4, 4 + n); // NONE x n
  list.set([0x65, 0x2e], 4 + n); // APPENDS, STOP
  const got = restrictedUnpickle(list, { where: 'list.pkl' });
  assert.ok(Array.isArray(got) && got.length === n);
});

test('tensor views: stride 0, overlaps, offsets and ranks are bounded by the storage and the file', async () => {
  // < 1 KB of file, a stride-0 view asking for 32768 x 32768 floats (4 GiB) or 16384 x 16384 (1 GiB)
  for (const side of [32768, 16384, 4096]) {
    const bin = pytorchZip([{ name: 'w', key: '0', storageNumel: 1, offset: 0, shape: [side, side], stride: [0, 0] }]);
    assert.ok(bin.length < 2048, `${bin.length} bytes`);
    await refuses(() => readPytorch(bytesReader(bin), 'stride0.bin'), 'stride0.bin: tensor \'w\'', /too large for one tensor|would make \d+ bytes from a \d+-byte file/, 2000);
  }
  // overlapping strides that stay inside the storage but expand past the file
  const overlap = pytorchZip([{ name: 'w', key: '0', storageNumel: 16, offset: 0, shape: [1000, 16], stride: [1, 1] }]);
  await refuses(() => readPytorch(bytesReader(overlap), 'overlap.bin'), "overlap.bin: tensor 'w'", /would make 64000 bytes/);
  // a view reaching past its storage (offset or stride)
  const past = pytorchZip([{ name: 'w', key: '0', storageNumel: 4, offset: 3, shape: [2], stride: [1] }]);
  await refuses(() => readPytorch(bytesReader(past), 'past.bin'), "past.bin: tensor 'w'", /reach element 4, but storage '0' has 4/);
  const far = pytorchZip([{ name: 'w', key: '0', storageNumel: 4, offset: 0, shape: [2, 2], stride: [2 ** 31 - 1, 1] }]);
  await refuses(() => readPytorch(bytesReader(far), 'far.bin'), "far.bin: tensor 'w'", /reach element/);
  // a storage whose declared size disagrees with its entry
  const lying = pytorchZip([{ name: 'w', key: '0', storageNumel: 4, offset: 0, shape: [4], stride: [1] }], stateDictPickle([{ name: 'w', key: '0', storageNumel: 1e9, offset: 0, shape: [4], stride: [1] }]));
  await refuses(() => readPytorch(bytesReader(lying), 'lying.bin'), 'lying.bin', /storage '0' holds 16 bytes, but 1000000000 F32 elements need/);
  // rank 5000 (a size tuple of 5000 ones)
  const rank = pytorchZip([{ name: 'w', key: '0', storageNumel: 1, offset: 0, shape: new Array(5000).fill(1), stride: new Array(5000).fill(1) }]);
  await refuses(() => readPytorch(bytesReader(rank), 'rank.bin'), 'rank.bin: archive/data.pkl', /at most 64 non-negative integers/);
});

test('zip: fields too large or outside the file name the file', async () => {
  const bin = pytorchZip([{ name: 'w', key: '0', storageNumel: 4, offset: 0, shape: [4], stride: [1] }]);
  const eocd = bin.length - 22;
  // an entry count the directory cannot hold
  const count = bin.slice();
  new DataView(count.buffer).setUint16(eocd + 10, 60000, true);
  await refuses(() => readPytorch(bytesReader(count), 'count.bin'), 'count.bin', /claims 60000 entries/);
  // a local header offset past the end of the file (central directory entry 0, offset field at +42)
  const cdOffset = new DataView(bin.buffer).getUint32(eocd + 16, true);
  const off = bin.slice();
  new DataView(off.buffer).setUint32(cdOffset + 42, 0x7fff0000, true);
  await refuses(() => readPytorch(bytesReader(off), 'offset.bin'), "offset.bin: zip entry 'archive/data.pkl'", /runs past the end/);
  // ZIP64: saturate the classic record, add a locator pointing at a ZIP64 end record whose offset field is 2^64 - 1
  const z = new Uint8Array(bin.length + 56 + 20);
  z.set(bin.subarray(0, eocd));
  const z64 = eocd;
  const zv = new DataView(z.buffer);
  zv.setUint32(z64, 0x06064b50, true);
  zv.setBigUint64(z64 + 32, 1n, true);
  zv.setBigUint64(z64 + 40, 100n, true);
  zv.setBigUint64(z64 + 48, 0xffffffffffffffffn, true);
  zv.setUint32(z64 + 56, 0x07064b50, true);
  zv.setBigUint64(z64 + 56 + 8, BigInt(z64), true);
  z.set(bin.subarray(eocd), z64 + 76);
  zv.setUint32(z64 + 76 + 16, 0xffffffff, true);
  await refuses(() => readPytorch(bytesReader(z), 'zip64.bin'), 'zip64.bin: ZIP64 central directory offset is 18446744073709552000, too large', /damaged zip archive/);
});

test('safetensors: nesting scanned before parsing, lengths and shapes bounded by the file', async () => {
  const deep = safetensorsWithHeader(`{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
  await refuses(() => readSafetensors(bytesReader(deep), 'deep.safetensors'), 'deep.safetensors: safetensors header', /nested deeper than 8 levels/);
  // a header length beyond the file
  const long = safetensorsWithHeader('{}');
  new DataView(long.buffer).setUint32(0, 4096, true);
  await refuses(() => readSafetensors(bytesReader(long), 'long.safetensors'), 'long.safetensors', /header length 4096 is impossible for a 16-byte file/);
  // a shape whose bytes exceed the file, offsets past the data, a huge rank
  await refuses(
    () => readSafetensors(bytesReader(safetensorsWithHeader('{"w":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,17179869184]}}', 16)), 'shape.safetensors'),
    "shape.safetensors: tensor 'w'",
    /needs 17179869184 bytes, more than the whole file/,
  );
  await refuses(() => readSafetensors(bytesReader(safetensorsWithHeader('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8)), 'short.safetensors'), "short.safetensors: tensor 'w'", /more than the whole file|run past the end/);
  await refuses(
    () => readSafetensors(bytesReader(safetensorsWithHeader(`{"w":{"dtype":"F32","shape":[${new Array(100).fill(1).join(',')}],"data_offsets":[0,4]}}`, 4)), 'rank.safetensors'),
    "rank.safetensors: tensor 'w'",
    /at most 64 non-negative integers/,
  );
  await refuses(() => readSafetensors(bytesReader(safetensorsWithHeader('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}', 4)), 'json.safetensors'), 'json.safetensors: safetensors header', /not valid JSON/);
});

test('Git LFS pointers saved as weights say to run git lfs pull', async () => {
  for (const name of ['model.safetensors', 'pytorch_model.bin']) {
    await refuses(() => readTensorFile(bytesReader(gitLfsPointer()), name), name, /is a Git LFS pointer file \(\d+ bytes\), not the weights.*git lfs pull/);
  }
  await refuses(() => readPytorch(bytesReader(gitLfsPointer()), 'p.bin'), 'p.bin', /git lfs pull/);
  await refuses(() => readSafetensors(bytesReader(gitLfsPointer()), 's.safetensors'), 's.safetensors', /git lfs pull/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hostile-lfs-'));
  try {
    const f = path.join(dir, 'model.safetensors');
    fs.writeFileSync(f, gitLfsPointer());
    await refuses(() => openTensorFile(f), f, /git lfs pull/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bounded JSON: size, depth (strings do not count), parse errors, all naming the file', async () => {
  assert.is(jsonNestingDepth('{"a":[1,{"b":"[[[[{{{{"}]}'), 3);
  assert.is(jsonNestingDepth('"\\"[["'), 0);
  assert.equal(parseJsonBounded('{"x":[1,2,{"y":null}]}', 'ok.json'), { x: [1, 2, { y: null }] });
  await refuses(() => parseJsonBounded('['.repeat(1_000_000) + ']'.repeat(1_000_000), 'deep/config.json'), 'deep/config.json', /nested deeper than 64 levels/, 2000);
  await refuses(() => parseJsonBounded('x'.repeat(2000), 'big.json', { maxChars: 1000 }), 'big.json', /2000 characters of JSON, over the limit of 1000/);
  await refuses(() => parseJsonBounded('{"a":', 'bad.json'), 'bad.json', /not valid JSON/);
  await refuses(() => parseShardIndex(`{"weight_map":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, 'model.safetensors.index.json'), 'model.safetensors.index.json', /nested deeper/);
});

test.run();
