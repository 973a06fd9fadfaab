// Autotuning (src/runtime/tune.ts): every candidate configuration of the GEMM and conv1d families against the float64
// references (odd sizes, NaN-poisoned outputs, every gradient, finite differences); the tune cache round-trips through
// its serialized form and the Node file; corrupt or hostile cache files are ignored with a warning; the tuner picks a
// valid candidate, stores it and reuses it without timing again.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { type Spec, shapes, matmulReference, type Cfg, toutOf, convReference } from './op-references.js';
import { matmul, matmulConfig, hasSubgroupGemm, allGemmCandidates, gemmCandidates, type GemmConfig, type Activation } from '../src/ops/matmul.js';
import { conv1d, convConfig, allConvCandidates, convCandidates, convGeometry, type ConvConfig } from '../src/ops/conv.js';
import { backward, tidy, noGrad } from '../src/autograd.js';
import {
  MemoryTuneCache, parseTuneCache, serializeTuneCache, chooseConfig, resetTuner, tuneCount, tuneResults, setTuneOptions, tuneKey,
  TUNE_MAX_BYTES, type TuneEntry,
} from '../src/runtime/tune.js';
import { FileTuneCache } from '../src/node/tune-cache.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const gemmId = (c: GemmConfig) => (c.strategy === 'subgroup' ? `sg-rb${c.rowBlocks}` : `tiled ${JSON.stringify(c.tiled)}`);

async function withGemm(rt: Runtime, c: GemmConfig, fn: () => Promise<void>): Promise<boolean> {
  if (c.strategy === 'subgroup' && !hasSubgroupGemm(rt)) return false;
  const prev = { strategy: matmulConfig.strategy, rowBlocks: matmulConfig.rowBlocks, tiled: matmulConfig.tiled };
  Object.assign(matmulConfig, { strategy: c.strategy, rowBlocks: c.rowBlocks, tiled: c.tiled });
  try {
    await fn();
  } finally {
    Object.assign(matmulConfig, prev);
  }
  return true;
}

let seed = 5000;
async function checkGemm(rt: Runtime, s: Spec, act: Activation, what: string, fd: boolean): Promise<void> {
  const sh = shapes(s);
  const A = randn(sh.a.reduce((x, y) => x * y, 1), seed++);
  const B = randn(sh.b.reduce((x, y) => x * y, 1), seed++);
  const bias = randn(s.N, seed++);
  const W = randn(Math.max(1, s.batch) * s.M * s.N, seed++);
  const ref = matmulReference(s, A, B, bias, act, W);
  const ta = upload(rt, A, sh.a, { requiresGrad: true });
  const tb = upload(rt, B, sh.b, { requiresGrad: true });
  const tbias = upload(rt, bias, [s.N], { requiresGrad: true });
  const opts = { transA: s.transA, transB: s.transB, bias: tbias, activation: act };
  const y = matmul(ta, tb, opts);
  close(await y.read(), ref.Y, 1e-5, `${what}: forward`);
  backward(y, upload(rt, W, sh.y));
  const ga = await ta.grad!.read();
  close(ga, ref.GA, 1e-4, `${what}: grad a`);
  close(await tb.grad!.read(), ref.GB, 1e-4, `${what}: grad b`);
  close(await tbias.grad!.read(), ref.GBias, 1e-4, `${what}: grad bias`);
  if (fd) {
    const fwd = (av: Float64Array) => tidy(() => noGrad(() => matmul(upload(rt, av, sh.a), upload(rt, B, sh.b), { ...opts, bias: upload(rt, bias, [s.N]) }))).read();
    await finiteDifference({ what: `${what}: grad a`, x: A, w: W, analytic: ga, indices: probeIndices(A.length, 2, seed), forward: fwd });
  }
  for (const t of [ta, tb, tbias]) {
    t.grad?.dispose();
    t.dispose();
  }
  y.dispose();
}

for (const cand of allGemmCandidates()) {
  test(`gemm candidate ${cand.id}: odd sizes, transposes, batched and shared b, bias + gelu/tanh, every gradient, finite differences`, async () => {
    const rt = await getRuntime();
    const ran = await withGemm(rt, cand.config, async () => {
      // shared b folded into M (backward: both other transpose forms), batched with transposed A, and a 4-aligned case
      await checkGemm(rt, { batch: 3, M: 37, N: 29, K: 53, transA: false, transB: true, sharedB: true }, 'gelu', `${cand.id} shared`, true);
      await checkGemm(rt, { batch: 2, M: 37, N: 29, K: 53, transA: true, transB: false, sharedB: false }, 'tanh', `${cand.id} batched tA`, false);
      await checkGemm(rt, { batch: 0, M: 68, N: 76, K: 36, transA: false, transB: false, sharedB: true }, 'none', `${cand.id} aligned, > one tile`, false);
    });
    if (!ran) console.log(`  (skipped ${gemmId(cand.config)}: the adapter has no 8-wide subgroups)`);
  });
}

async function withConv(rt: Runtime, c: ConvConfig, fn: () => Promise<void>): Promise<boolean> {
  if (c.strategy === 'subgroup' && !hasSubgroupGemm(rt)) return false;
  const prev = { strategy: convConfig.strategy, rowBlocks: convConfig.rowBlocks, timeSteps: convConfig.timeSteps, tiled: convConfig.tiled };
  Object.assign(convConfig, { strategy: c.strategy, rowBlocks: c.rowBlocks, timeSteps: c.timeSteps, tiled: c.tiled });
  try {
    await fn();
  } finally {
    Object.assign(convConfig, prev);
  }
  return true;
}

async function checkConv(rt: Runtime, c: Cfg, what: string, fd: boolean): Promise<void> {
  const Tout = toutOf(c);
  const xs = [c.B, c.Cin, c.T];
  const ws = [c.Cout, c.Cin / c.G, c.K];
  const x = randn(xs[0] * xs[1] * xs[2], seed++);
  const w = randn(ws[0] * ws[1] * ws[2], seed++, 1 / Math.sqrt(ws[1] * ws[2]));
  const b = c.bias ? randn(c.Cout, seed++) : null;
  const gy = randn(c.B * c.Cout * Tout, seed++);
  const ref = convReference(c, x, w, b, gy);
  const opts = { stride: c.S, padding: c.P, groups: c.G };
  const tx = upload(rt, x, xs, { requiresGrad: true });
  const tw = upload(rt, w, ws, { requiresGrad: true });
  const tb = b ? upload(rt, b, [c.Cout], { requiresGrad: true }) : null;
  const y = conv1d(tx, tw, tb, opts);
  close(await y.read(), ref.y, 1e-5, `${what}: forward`);
  backward(y, upload(rt, gy, [c.B, c.Cout, Tout]));
  const gx = await tx.grad!.read();
  const gw = await tw.grad!.read();
  close(gx, ref.dx, 1e-4, `${what}: grad x`);
  close(gw, ref.dw, 1e-4, `${what}: grad w`);
  if (tb) close(await tb.grad!.read(), ref.db, 1e-4, `${what}: grad bias`);
  if (fd) {
    const fwd = (xv: Float64Array, wv: Float64Array) => tidy(() => noGrad(() => conv1d(upload(rt, xv, xs), upload(rt, wv, ws), b ? upload(rt, b, [c.Cout]) : null, opts))).read();
    await finiteDifference({ what: `${what}: grad x`, x, w: gy, analytic: gx, indices: probeIndices(x.length, 2, seed), forward: (v) => fwd(v, w) });
    await finiteDifference({ what: `${what}: grad w`, x: w, w: gy, analytic: gw, indices: probeIndices(w.length, 2, seed), forward: (v) => fwd(x, v) });
  }
  for (const t of [tx, tw, tb]) {
    t?.grad?.dispose();
    t?.dispose();
  }
  y.dispose();
}

// odd sizes that reach every pass of every path (>= 8 input channels and >= 32 (channel, tap) columns for the
// subgroup gradients), a grouped long kernel (the positional conv's form) and a first-layer-like single channel
const convCases: Cfg[] = [
  { name: 'k3 s2 p1, 13 -> 11', B: 2, Cin: 13, Cout: 11, T: 47, K: 3, S: 2, P: 1, G: 1, bias: true },
  { name: 'k2 s2, 17 -> 9', B: 2, Cin: 17, Cout: 9, T: 35, K: 2, S: 2, P: 0, G: 1, bias: false },
  { name: 'k5 s3 p2, 9 -> 37', B: 1, Cin: 9, Cout: 37, T: 40, K: 5, S: 3, P: 2, G: 1, bias: true },
  { name: 'k10 s5, 1 -> 10', B: 2, Cin: 1, Cout: 10, T: 103, K: 10, S: 5, P: 0, G: 1, bias: false },
  { name: 'k16 p8 groups 4, 32 -> 32', B: 1, Cin: 32, Cout: 32, T: 29, K: 16, S: 1, P: 8, G: 4, bias: true },
];

for (const config of allConvCandidates()) {
  const tag = config.strategy === 'subgroup' ? `sg-rb${config.rowBlocks}-t${config.timeSteps}` : config.strategy === 'direct' ? 'direct' : `tiled ${JSON.stringify(config.tiled)}`;
  test(`conv1d candidate ${tag}: odd sizes, groups, forward and every gradient, finite differences`, async () => {
    const rt = await getRuntime();
    const ran = await withConv(rt, config, async () => {
      for (const [i, c] of convCases.entries()) await checkConv(rt, c, `${tag} ${c.name}`, i === 0);
    });
    if (!ran) console.log(`  (skipped ${tag}: the adapter has no 8-wide subgroups)`);
  });
}

// ---- the cache ----

const entry = (winner: string, ms = 1.5): TuneEntry => ({ winner, medianMs: ms, defaultMs: 2, candidates: 5, measuredAt: '2026-12-02T16:00:00.000Z' });

test('tune cache: serialized form and the Node file round-trip; writes are whole files', () => {
  const m = new MemoryTuneCache();
  m.set('a|b#gemm#f32 nt m1024', entry('sg-rb3'));
  m.set('a|b#conv1d#forward f32', entry('direct', 0.25));
  const warnings: string[] = [];
  const back = parseTuneCache(serializeTuneCache(new Map(m.entries())), 'memory', (w) => warnings.push(w));
  assert.equal([...back], m.entries().sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  assert.equal(warnings, []);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-tune-'));
  const file = path.join(dir, 'sub', 'tune.json');
  const f1 = new FileTuneCache(file, (w) => warnings.push(w));
  assert.equal(f1.entries(), [], 'a missing file is an empty cache, silently');
  for (const [k, e] of m.entries()) f1.set(k, e);
  assert.ok(fs.existsSync(file));
  assert.equal(fs.readdirSync(path.dirname(file)), ['tune.json'], 'no temporary file left');
  const f2 = new FileTuneCache(file, (w) => warnings.push(w));
  assert.equal(f2.get('a|b#gemm#f32 nt m1024'), entry('sg-rb3'));
  assert.equal(f2.entries().length, 2);
  assert.equal(warnings, []);
  fs.rmSync(dir, { recursive: true });
});

test('tune cache: corrupt or hostile files are ignored with a warning; bad entries dropped, good ones kept', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-tune-'));
  const file = path.join(dir, 'tune.json');
  const cases: [string, string | Buffer, number, RegExp][] = [
    ['garbage bytes', Buffer.from([0xff, 0x00, 0x7b, 0x22, 0x13]), 0, /not JSON/],
    ['truncated JSON', '{"format":1,"entries":{"k":{"winner":"sg-rb', 0, /not JSON/],
    ['an array', '[1,2,3]', 0, /not an object/],
    ['another format', JSON.stringify({ format: 99, entries: {} }), 0, /format/],
    ['entries not an object', JSON.stringify({ format: 1, entries: 'x' }), 0, /entries/],
    [
      'bad entries among good',
      JSON.stringify({
        format: 1,
        entries: {
          good: entry('sg-rb2'),
          nanTime: { ...entry('sg-rb2'), medianMs: 'NaN' },
          negative: { ...entry('sg-rb2'), medianMs: -1 },
          injected: { ...entry('x'), winner: '../../etc/passwd' },
          proto: { ...entry('direct'), candidates: 1e9 },
          notObject: 7,
          badDate: { ...entry('direct'), measuredAt: 'yesterday' },
        },
      }),
      1,
      /dropped/,
    ],
    ['over the size limit', '{"format":1,"entries":{}}' + ' '.repeat(TUNE_MAX_BYTES), 0, /limit/],
    ['too many entries', JSON.stringify({ format: 1, entries: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, entry('direct')])) }), 0, /entries, over/],
  ];
  for (const [what, content, kept, warnRe] of cases) {
    fs.writeFileSync(file, content);
    const warnings: string[] = [];
    const c = new FileTuneCache(file, (w) => warnings.push(w));
    assert.is(c.entries().length, kept, `${what}: ${kept} entries kept`);
    assert.ok(warnings.length >= 1 && warnings.some((w) => warnRe.test(w) && w.includes(file)), `${what}: a warning naming the file (${warnings.join(' / ')})`);
  }
  // a directory where the file should be: ignored, and a write failure is a warning, not an error
  fs.rmSync(file);
  fs.mkdirSync(file);
  const warnings: string[] = [];
  const c = new FileTuneCache(file, (w) => warnings.push(w));
  c.set('k', entry('direct'));
  assert.is(c.get('k')?.winner, 'direct', 'kept in memory');
  assert.ok(warnings.some((w) => /not written/.test(w)), warnings.join(' / '));
  fs.rmSync(dir, { recursive: true });
});

// ---- choosing ----

test('chooseConfig: cached winner only when it is a candidate; default otherwise; no timing without autotune', async () => {
  const rt = await getRuntime();
  const saved = { cache: rt.tuneCache, autotune: rt.autotune };
  try {
    resetTuner(rt);
    rt.autotune = false;
    const cache = new MemoryTuneCache();
    rt.tuneCache = cache;
    const cands = [{ id: 'one', config: 1 }, { id: 'two', config: 2 }, { id: 'three', config: 3 }];
    const never = () => {
      throw new Error('problem() must not be called without autotune');
    };
    assert.is(chooseConfig(rt, 'fam', 'cls', cands, 'two', never), 2, 'default without a cache entry');
    cache.set(tuneKey(rt, 'fam', 'cls2'), entry('three'));
    assert.is(chooseConfig(rt, 'fam', 'cls2', cands, 'two', never), 3, 'cached winner');
    cache.set(tuneKey(rt, 'fam', 'cls3'), entry('nine'));
    assert.is(chooseConfig(rt, 'fam', 'cls3', cands, 'two', never), 2, 'a winner that is not a candidate is ignored');
    assert.is(rt.pendingTune, null);
    assert.is(tuneCount(rt), 0);
  } finally {
    Object.assign(rt, { tuneCache: saved.cache, autotune: saved.autotune });
    resetTuner(rt);
  }
});

test('autotune: first use runs the default and queues the class; the next sync times every candidate, picks a valid one, caches it; reuse times nothing', async () => {
  const rt = await getRuntime();
  const saved = { cache: rt.tuneCache, autotune: rt.autotune };
  try {
    resetTuner(rt);
    const cache = new MemoryTuneCache();
    rt.tuneCache = cache;
    rt.autotune = true;
    setTuneOptions(rt, { rounds: 2 });
    const s: Spec = { batch: 0, M: 45, N: 40, K: 33, transA: false, transB: true, sharedB: true };
    const sh = shapes(s);
    const A = randn(45 * 33, 1);
    const B = randn(40 * 33, 2);
    const ref = matmulReference(s, A, B, null, 'none', new Float64Array(45 * 40));
    const run = async (what: string) => {
      const y = noGrad(() => matmul(upload(rt, A, sh.a), upload(rt, B, sh.b), { transB: true }));
      close(await y.read(), ref.Y, 1e-5, what);
      y.dispose();
    };
    await run('first use (default)');
    assert.is(tuneCount(rt), 1, 'the class was timed at the read');
    const r = tuneResults(rt)[0];
    const ids = gemmCandidates(rt).map((c) => c.id);
    assert.ok(ids.includes(r.winner), `winner ${r.winner} is one of ${ids}`);
    assert.equal(r.timings.map((t) => t.id), ids, 'every candidate timed');
    for (const t of r.timings) assert.ok(Number.isFinite(t.medianMs) && t.medianMs >= 0 && t.samples.length === (t.pruned ? 1 : 2), `${t.id}: ${t.pruned ? 1 : 2} samples, finite median`);
    assert.ok(!r.timings.find((t) => t.id === r.winner)!.pruned, 'the winner was timed every round');
    assert.is(cache.entries().length, 1);
    assert.is(cache.entries()[0][1].winner, r.winner);
    await run('second use (winner)');
    await run('third use');
    assert.is(tuneCount(rt), 1, 'not timed again');
    assert.is(rt.pendingTune, null);
    // a new process on this adapter (a fresh tuner, the cache kept), autotune off: the winner without timing
    resetTuner(rt);
    rt.autotune = false;
    await run('from the cache');
    assert.is(tuneCount(rt), 0);

    // conv1d: each pass is its own class (forward, grad input, grad weight)
    resetTuner(rt);
    rt.autotune = true;
    const c: Cfg = { name: 'tuned', B: 1, Cin: 16, Cout: 24, T: 61, K: 3, S: 2, P: 0, G: 1, bias: false };
    const x = randn(16 * 61, 3);
    const w = randn(24 * 16 * 3, 4, 0.2);
    const gy = randn(24 * toutOf(c), 5);
    const cref = convReference(c, x, w, null, gy);
    for (const round of ['first use', 'tuned']) {
      const tx = upload(rt, x, [1, 16, 61], { requiresGrad: true });
      const tw = upload(rt, w, [24, 16, 3], { requiresGrad: true });
      const y = conv1d(tx, tw, null, { stride: 2 });
      backward(y, upload(rt, gy, [1, 24, toutOf(c)]));
      close(await y.read(), cref.y, 1e-5, `conv ${round}: forward`);
      close(await tx.grad!.read(), cref.dx, 1e-4, `conv ${round}: grad x`);
      close(await tw.grad!.read(), cref.dw, 1e-4, `conv ${round}: grad w`);
      for (const t of [tx, tw]) {
        t.grad!.dispose();
        t.dispose();
      }
      y.dispose();
    }
    const g = convGeometry([1, 16, 61], [24, 16, 3], { stride: 2 });
    const conv = tuneResults(rt).filter((t) => t.family === 'conv1d');
    assert.equal(conv.map((t) => t.shapeClass.split(' ')[0]).sort(), ['forward', 'grad-input', 'grad-weight']);
    for (const t of conv) {
      const pass = t.shapeClass.split(' ')[0] as 'forward' | 'grad-input' | 'grad-weight';
      const ids = convCandidates(rt, pass, g).map((x) => x.id);
      assert.ok(ids.includes(t.winner), `${pass}: winner ${t.winner} among ${ids}`);
    }
    assert.is(tuneCount(rt), 3, 'three classes timed once each');
  } finally {
    Object.assign(rt, { tuneCache: saved.cache, autotune: saved.autotune });
    setTuneOptions(rt, {});
    resetTuner(rt);
  }
});

test('ser tune --model (tiny wav2vec2 fixture, training step): every class timed, winners among the candidates, written to SER_TUNE_CACHE', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const model = path.join(root, 'test/fixtures/w2v_400_single');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-tune-cli-'));
  const cacheFile = path.join(dir, 'tune.json');
  const env = { ...process.env, SER_TUNE_CACHE: cacheFile };
  try {
    const r = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'tune', '--model', model, '--train', '--seconds', '0.2', '--rounds', '1', '--json'], { cwd: root, env, encoding: 'utf8', timeout: 600000 });
    assert.is(r.status, 0, `ser tune exited with ${r.status ?? r.signal}: ${(r.stderr || '').slice(-2000)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const results: { key: string; family: string; winner: string; defaultId: string; timings: { id: string; medianMs: number | null }[] }[] = out.results;
    assert.ok(results.some((x) => x.family === 'gemm') && results.some((x) => x.family === 'conv1d'), `families: ${results.map((x) => x.family)}`);
    assert.ok(results.some((x) => x.key.includes('#conv1d#grad-weight')), 'backward passes tuned with --train');
    for (const x of results) {
      assert.ok(x.timings.some((t) => t.id === x.winner && t.medianMs !== null), `${x.key}: winner ${x.winner} was timed`);
      assert.ok(x.timings.some((t) => t.id === x.defaultId), `${x.key}: default ${x.defaultId} among the candidates`);
    }
    const warnings: string[] = [];
    const cache = new FileTuneCache(cacheFile, (w) => warnings.push(w));
    assert.equal(warnings, []);
    assert.is(cache.entries().length, new Set(results.map((x) => x.key)).size, 'one cache entry per class');
    for (const x of results) assert.is(cache.get(x.key)?.winner, x.winner);
    // the table
    const t = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'tune', '--model', model, '--seconds', '0.2', '--rounds', '1'], { cwd: root, env, encoding: 'utf8', timeout: 600000 });
    assert.is(t.status, 0, t.stderr);
    assert.match(t.stdout, /gemm f32 .* winner/s);
    assert.match(t.stdout, /winners written to /);
    const bad = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'tune', '--rounds', '0'], { cwd: root, env, encoding: 'utf8', timeout: 60000 });
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /--rounds must be a positive integer/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
