// Seeded fuzz of every file format the project reads (issue 13): WAV (16-bit, 8-bit stereo, f32), FLAC, Ogg Vorbis,
// MP3, safetensors, PyTorch zip (generated and the committed fixtures), config.json and preprocessor_config.json.
// Each case mutates a valid file (bit flips, interesting values in 1/2/4-byte fields, truncation, deletion,
// duplication, insertion; JSON also token-wise: numbers replaced by huge/negative/odd values, values nested deep) and
// runs it through the library entry point (prepareAudio, readSafetensors / readPytorch / readTensorFile with every
// tensor read, parseModelConfig (every family), parsePreprocessorConfig). What must hold:
//   - only named errors: an Error (AudioError or Error) whose message starts with the file's name; never a TypeError,
//     RangeError, ReferenceError, a non-Error throw, or a message that does not name the file;
//   - no hang: each case finishes within CASE_LIMIT_MS (a worker thread runs the cases; a silent one is terminated);
//   - bounded memory: the worker's heap is capped (resourceLimits) and the peak RSS stays under MEMORY_LIMIT_MB.
// Time-bounded: SER_FUZZ_SECONDS (default 45) of fuzzing, so the file stays well under two minutes in CI; set it higher
// (and SER_FUZZ_SEED) for a long run: `SER_FUZZ_SECONDS=1800 SER_FUZZ_SEED=7 node build/test/fuzz.test.mjs`.
// A failure prints the seed and case index, which regenerate the file exactly (caseBytes below).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { encodeWav } from '../src/audio/wav.js';
import { prepareAudio } from '../src/audio/prepare.js';
import { bytesReader, type TensorSource } from '../src/io/source.js';
import { readSafetensors, safetensorsBytes } from '../src/io/safetensors.js';
import { readPytorch } from '../src/io/pytorch.js';
import { readTensorFile } from '../src/io/modelfiles.js';
import { parsePreprocessorConfig } from '../src/io/config.js';
import { parseModelConfig } from '../src/model/registry.js';
import { mulberry32 } from '../src/data/random.js';
import { pytorchZip } from './hostile-gen.js';

const SECONDS = Number(process.env.SER_FUZZ_SECONDS ?? 45);
const SEED = Number(process.env.SER_FUZZ_SEED ?? 1);
const CASE_LIMIT_MS = Number(process.env.SER_FUZZ_CASE_MS ?? 8000);
const MEMORY_LIMIT_MB = 1536;
const HEAP_LIMIT_MB = 768;

type Kind = 'wav' | 'flac' | 'ogg' | 'mp3' | 'safetensors' | 'pytorch' | 'config' | 'preprocessor';

interface Base {
  kind: Kind;
  name: string;
  bytes: Uint8Array;
}

const te = new TextEncoder();

function tone(n: number, rate: number, freq: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = 0.4 * Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

async function corpus(): Promise<Base[]> {
  const fx = (p: string) => new Uint8Array(fs.readFileSync(p));
  const w = tone(4000, 16000, 440);
  const st = await safetensorsBytes(
    [
      { name: 'a.weight', shape: [3, 4], data: tone(12, 16000, 1000) },
      { name: 'b.bias', shape: [5], data: tone(5, 16000, 2000), dtype: 'F16' },
      { name: 'c', shape: [2, 2], data: tone(4, 16000, 3000), dtype: 'BF16' },
    ],
    { format: 'pt' },
  );
  const bases: Base[] = [
    { kind: 'wav', name: 'pcm16.wav', bytes: encodeWav(w, 16000) },
    { kind: 'wav', name: 'pcm8-stereo.wav', bytes: encodeWav([tone(3000, 8000, 300), tone(3000, 8000, 500)], 8000, { sampleFormat: 8 }) },
    { kind: 'wav', name: 'f32.wav', bytes: encodeWav(tone(6000, 44100, 440), 44100, { sampleFormat: 'f32' }) },
    { kind: 'flac', name: 'tone.flac', bytes: fx('test/fixtures/audio/tone-22050-stereo.flac') },
    { kind: 'ogg', name: 'tone.ogg', bytes: fx('test/fixtures/audio/tone-22050-stereo.ogg') },
    { kind: 'mp3', name: 'tone.mp3', bytes: fx('test/fixtures/audio/tone-24000-stereo.mp3') },
    { kind: 'safetensors', name: 'model.safetensors', bytes: st },
    { kind: 'safetensors', name: 'dtypes.safetensors', bytes: fx('test/fixtures/io/dtypes.safetensors') },
    {
      kind: 'pytorch',
      name: 'gen.bin',
      bytes: pytorchZip([
        { name: 'w', key: '0', storageNumel: 12, offset: 0, shape: [3, 4], stride: [4, 1] },
        { name: 'wT', key: '0', storageNumel: 12, offset: 0, shape: [4, 3], stride: [1, 4] },
        { name: 'b', key: '1', storageNumel: 6, offset: 1, shape: [5], stride: [1] },
      ]),
    },
    { kind: 'pytorch', name: 'dtypes.bin', bytes: fx('test/fixtures/io/dtypes.bin') },
    { kind: 'pytorch', name: 'nested.bin', bytes: fx('test/fixtures/io/nested.bin') },
    { kind: 'pytorch', name: 'proto4.bin', bytes: fx('test/fixtures/io/proto4.bin') },
    { kind: 'pytorch', name: 'zip64.bin', bytes: fx('test/fixtures/io/zip64.bin') },
    { kind: 'config', name: 'config.json', bytes: fx('test/fixtures/w2v_400/config.json') },
    { kind: 'preprocessor', name: 'preprocessor_config.json', bytes: fx('test/fixtures/w2v_400/preprocessor_config.json') },
  ];
  return bases;
}

// ---------------------------------------------------------------------------------------------------------------
// mutations

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x7b, 0x5b];
const INTERESTING_32 = [0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0xfffffffe, 0x10000, 384001, 999, 4_280_000_000, 0xffff];
const JSON_TOKENS = ['1e9', '-1', '0', '1e308', '9007199254740993', 'null', 'true', '[]', '{}', '"x"', '1.5', '-0', '1e-400', '"16000"', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'];

function mutateBytes(src: Uint8Array, rand: () => number): Uint8Array {
  let b = src.slice();
  const pos = () => (b.length === 0 ? 0 : rand() < 0.5 ? Math.floor(rand() * Math.min(b.length, 256)) : Math.floor(rand() * b.length));
  const count = 1 + Math.floor(rand() * 4);
  for (let m = 0; m < count; m++) {
    const r = rand();
    const p = pos();
    if (r < 0.25) {
      if (b.length) b[p] ^= 1 << Math.floor(rand() * 8);
    } else if (r < 0.4) {
      if (b.length) b[p] = INTERESTING_8[Math.floor(rand() * INTERESTING_8.length)];
    } else if (r < 0.6) {
      const v = INTERESTING_32[Math.floor(rand() * INTERESTING_32.length)];
      const width = rand() < 0.3 ? 2 : 4;
      for (let k = 0; k < width && p + k < b.length; k++) b[p + k] = (v >>> (8 * k)) & 0xff;
    } else if (r < 0.7) {
      b = b.slice(0, p); // truncate
    } else if (r < 0.8) {
      const n = Math.floor(rand() * 64);
      b = Uint8Array.from([...b.subarray(0, p), ...b.subarray(Math.min(b.length, p + n))]); // delete
    } else if (r < 0.9) {
      const n = Math.min(4096, Math.floor(rand() * 512));
      const from = pos();
      const chunk = b.slice(from, from + n);
      const out = new Uint8Array(b.length + chunk.length);
      out.set(b.subarray(0, p));
      out.set(chunk, p);
      out.set(b.subarray(p), p + chunk.length);
      b = out; // duplicate a range
    } else {
      const n = Math.floor(rand() * 64);
      const ins = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
      b = Uint8Array.from([...b.subarray(0, p), ...ins, ...b.subarray(p)]); // insert random bytes
    }
  }
  return b;
}

function mutateJson(src: Uint8Array, rand: () => number): Uint8Array {
  if (rand() < 0.3) return mutateBytes(src, rand);
  let text = new TextDecoder().decode(src);
  const count = 1 + Math.floor(rand() * 3);
  for (let m = 0; m < count; m++) {
    const values = [...text.matchAll(/-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null|"[^"]*"/g)];
    if (!values.length) break;
    const v = values[Math.floor(rand() * values.length)];
    const r = rand();
    let rep: string;
    if (r < 0.7) rep = JSON_TOKENS[Math.floor(rand() * JSON_TOKENS.length)];
    else if (r < 0.85) rep = `${'['.repeat(1 + Math.floor(rand() * 5000))}${v[0]}${']'.repeat(1 + Math.floor(rand() * 5000))}`; // deep (balanced or not)
    else rep = `"${'x'.repeat(Math.floor(rand() * 10000))}"`;
    text = text.slice(0, v.index!) + rep + text.slice(v.index! + v[0].length);
  }
  return te.encode(text);
}

/** The file of case `i` for `seed`: deterministic, so a failure can be replayed from its numbers. */
export function caseBytes(bases: readonly Base[], seed: number, i: number): { base: Base; bytes: Uint8Array; name: string } {
  const rand = mulberry32((seed * 1_000_003 + i * 7919) >>> 0);
  const base = bases[Math.floor(rand() * bases.length)];
  const json = base.kind === 'config' || base.kind === 'preprocessor';
  const bytes = json ? mutateJson(base.bytes, rand) : mutateBytes(base.bytes, rand);
  return { base, bytes, name: `fuzz-${seed}-${i}-${base.name}` };
}

// ---------------------------------------------------------------------------------------------------------------
// running one case

async function readAll(src: TensorSource): Promise<void> {
  for (const e of src.entries.values()) await e.read();
}

async function runCase(kind: Kind, bytes: Uint8Array, name: string, rand: () => number): Promise<void> {
  switch (kind) {
    case 'wav':
    case 'flac':
    case 'ogg':
    case 'mp3':
      await prepareAudio(bytes, name);
      return;
    case 'safetensors':
      await readAll(rand() < 0.5 ? await readSafetensors(bytesReader(bytes), name) : await readTensorFile(bytesReader(bytes), name));
      return;
    case 'pytorch':
      await readAll(rand() < 0.5 ? await readPytorch(bytesReader(bytes), name) : await readTensorFile(bytesReader(bytes), name));
      return;
    case 'config':
      parseModelConfig(new TextDecoder().decode(bytes), name);
      return;
    case 'preprocessor':
      parsePreprocessorConfig(new TextDecoder().decode(bytes), name);
      return;
  }
}

interface CaseReport {
  i: number;
  kind: Kind;
  base: string;
  size: number;
  ms: number;
  /** 'ok', or the error's name */
  outcome: string;
  /** set when the outcome breaks the rules */
  bad?: string;
  rssMb: number;
}

/** worker side: run cases from `start` until the deadline, one message per case */
async function workerMain(): Promise<void> {
  const { seed, start, deadline } = workerData as { seed: number; start: number; deadline: number };
  const bases = await corpus();
  for (let i = start; Date.now() < deadline; i++) {
    const { base, bytes, name } = caseBytes(bases, seed, i);
    parentPort!.postMessage({ started: i });
    const t0 = Date.now();
    let outcome = 'ok';
    let bad: string | undefined;
    try {
      await runCase(base.kind, bytes, name, mulberry32(i));
    } catch (e) {
      if (!(e instanceof Error)) {
        outcome = typeof e;
        bad = `threw a non-Error: ${String(e).slice(0, 200)}`;
      } else {
        outcome = e.name;
        if (e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError || e instanceof SyntaxError || !['Error', 'AudioError'].includes(e.name)) {
          bad = `${e.name}: ${e.message.slice(0, 300)}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}`;
        } else if (!e.message.startsWith(name)) bad = `error does not name the file: ${e.message.slice(0, 300)}`;
      }
    }
    const report: CaseReport = { i, kind: base.kind, base: base.name, size: bytes.length, ms: Date.now() - t0, outcome, bad, rssMb: Math.round(process.memoryUsage().rss / 2 ** 20) };
    parentPort!.postMessage(report);
  }
  parentPort!.postMessage({ done: true });
}

interface Summary {
  cases: number;
  seconds: number;
  byKind: Record<string, number>;
  byOutcome: Record<string, number>;
  failures: string[];
  hangs: string[];
  slowestMs: number;
  slowest: string;
  peakRssMb: number;
}

/** main side: run workers until the time is up, restarting after a hang or a crash */
async function fuzz(seconds: number, seed: number): Promise<Summary> {
  const t0 = Date.now();
  const deadline = t0 + seconds * 1000;
  const s: Summary = { cases: 0, seconds: 0, byKind: {}, byOutcome: {}, failures: [], hangs: [], slowestMs: 0, slowest: '', peakRssMb: 0 };
  let next = 0;
  while (Date.now() < deadline) {
    await new Promise<void>((resolve) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: { seed, start: next, deadline }, resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB } });
      let current = -1;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve();
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          s.hangs.push(`seed ${seed} case ${current}: no result after ${CASE_LIMIT_MS} ms`);
          next = current + 1;
          void worker.terminate().then(finish);
        }, CASE_LIMIT_MS);
      };
      arm();
      worker.on('message', (m: CaseReport | { started: number } | { done: true }) => {
        if ('started' in m) {
          current = m.started;
          next = current + 1;
          arm();
          return;
        }
        if ('done' in m) {
          void worker.terminate().then(finish);
          return;
        }
        s.cases++;
        s.byKind[m.kind] = (s.byKind[m.kind] ?? 0) + 1;
        s.byOutcome[m.outcome] = (s.byOutcome[m.outcome] ?? 0) + 1;
        s.peakRssMb = Math.max(s.peakRssMb, m.rssMb);
        if (m.ms > s.slowestMs) {
          s.slowestMs = m.ms;
          s.slowest = `case ${m.i} (${m.base}, ${m.size} bytes)`;
        }
        if (m.bad) s.failures.push(`seed ${seed} case ${m.i} (${m.base} mutated, ${m.size} bytes): ${m.bad}`);
        if (m.rssMb > MEMORY_LIMIT_MB) s.failures.push(`seed ${seed} case ${m.i} (${m.base}): RSS ${m.rssMb} MB > ${MEMORY_LIMIT_MB} MB`);
      });
      worker.on('error', (e) => {
        // out of heap (ERR_WORKER_OUT_OF_MEMORY) or a crash: the case is a failure, the run goes on after it
        s.failures.push(`seed ${seed} case ${current}: worker died: ${(e as Error).message}`);
        next = current + 1;
        finish();
      });
      worker.on('exit', finish);
    });
  }
  s.seconds = (Date.now() - t0) / 1000;
  return s;
}

if (isMainThread) {
  test(`fuzz every format for ${SECONDS} s (seed ${SEED}): named errors only, no hang, bounded memory`, async () => {
    const s = await fuzz(SECONDS, SEED);
    console.log(
      `\n  fuzz: ${s.cases} files in ${s.seconds.toFixed(1)} s (seed ${SEED}); by format ${JSON.stringify(s.byKind)}; outcomes ${JSON.stringify(s.byOutcome)}; ` +
        `slowest ${s.slowestMs} ms (${s.slowest}); peak RSS ${s.peakRssMb} MB; failures ${s.failures.length}; hangs ${s.hangs.length}`,
    );
    for (const f of [...s.failures, ...s.hangs].slice(0, 20)) console.log(`  ${f}`);
    assert.ok(s.cases > 50, `only ${s.cases} cases ran`);
    assert.is(s.hangs.length, 0, s.hangs.join('\n'));
    assert.is(s.failures.length, 0, s.failures.slice(0, 5).join('\n'));
  });
  test.run();
} else {
  void workerMain();
}
