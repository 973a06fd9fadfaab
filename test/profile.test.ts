// The profiler: one record per dispatch named kernel.entry, non-negative GPU times, sections that nest, a Chrome
// trace that parses with the Trace Event Format's fields, both timing methods (timestamp queries where the device
// has them, and the forced submit-per-dispatch fallback), and section() as a plain call when not profiling.
// The roofline classification: hand-computed shares on a synthetic profile, and the costs real ops state.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, upload, randn, close } from './helpers.js';
import { add, mul, onesLike, scale } from '../src/ops/elementwise.js';
import { layerNorm } from '../src/ops/norm.js';
import { backward, tidy, noGrad } from '../src/autograd.js';
import { Profile, rooflineTable, type DispatchRecord } from '../src/runtime/profile.js';
import { matmul } from '../src/ops/matmul.js';
import type { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/tensor.js';

const N = 3001;

/** a few ops in nested sections; returns the result so the profile's result passing can be checked */
function work(rt: Runtime, a: Tensor, b: Tensor): Tensor {
  return rt.section('outer', () => {
    const s = rt.section('inner.add', () => add(a, b));
    const m = rt.section('inner.mul', () => rt.section('deepest', () => mul(s, b)));
    s.dispose();
    const t = scale(m, 2);
    m.dispose();
    return t;
  });
}

function checkProfile(p: Profile, method: string): void {
  assert.is(p.method, method);

  assert.is(p.dispatches.length, 3, 'one record per dispatch');
  for (const d of p.dispatches) {
    assert.ok(/^elementwise\.\w+$/.test(d.kernel), `kernel name ${d.kernel}`);
    assert.ok(Number.isFinite(d.durMs) && d.durMs >= 0, `duration ${d.durMs}`);
    assert.ok(Number.isFinite(d.startMs) && d.startMs >= 0, `start ${d.startMs}`);
  }
  assert.equal(p.dispatches[0].sections, ['outer', 'inner.add']);
  assert.equal(p.dispatches[1].sections, ['outer', 'inner.mul', 'deepest']);
  assert.equal(p.dispatches[2].sections, ['outer']);
  const sections = p.bySection();
  const byName = new Map(sections.map((r) => [r.name, r]));
  assert.equal([...byName.keys()].sort(), ['outer', 'outer/inner.add', 'outer/inner.mul', 'outer/inner.mul/deepest']);
  // inclusive times: outer = all three dispatches; inner.mul = deepest
  const gpu = p.dispatches.reduce((s, d) => s + d.durMs, 0);
  assert.ok(Math.abs(byName.get('outer')!.totalMs - gpu) <= 1e-9 * Math.max(1, gpu));
  assert.is(byName.get('outer/inner.mul')!.totalMs, byName.get('outer/inner.mul/deepest')!.totalMs);
  assert.is(byName.get('outer')!.calls, 1);
  const kernels = p.byKernel();
  assert.is(kernels.reduce((s, r) => s + r.calls, 0), 3);
  for (let i = 1; i < kernels.length; i++) assert.ok(kernels[i - 1].totalMs >= kernels[i].totalMs, 'sorted by total time');
  if (gpu > 0) assert.ok(Math.abs(kernels.reduce((s, r) => s + r.share, 0) - 1) < 1e-9, 'kernel shares sum to 1');
  assert.match(p.table(), /elementwise\.mul/);

  // the trace parses as JSON and every event has the Trace Event Format fields of a complete event
  const trace = JSON.parse(JSON.stringify(p.trace()));
  assert.ok(Array.isArray(trace.traceEvents));
  assert.is(trace.traceEvents.length, 3 + 4, '3 kernels + 4 sections');
  for (const e of trace.traceEvents) {
    for (const f of ['name', 'cat', 'ph', 'ts', 'dur', 'pid', 'tid', 'args']) assert.ok(f in e, `trace event lacks ${f}`);
    assert.is(e.ph, 'X');
    assert.ok(e.dur >= 0 && e.ts >= 0);
  }
  // nesting: every kernel lies within each of its sections' spans
  const spans = trace.traceEvents.filter((e: any) => e.cat === 'section');
  for (const k of trace.traceEvents.filter((e: any) => e.cat === 'kernel')) {
    const path: string = k.args.section;
    for (const s of spans) {
      if (path === s.args.path || path.startsWith(`${s.args.path}/`)) {
        assert.ok(k.ts >= s.ts - 1e-6 && k.ts + k.dur <= s.ts + s.dur + 1e-6, `${k.name} inside section ${s.args.path}`);
      }
    }
  }
}

async function profileWork(rt: Runtime, method: 'auto' | 'fallback') {
  const x = randn(N, 1);
  const y = randn(N, 2);
  const a = upload(rt, x, [N]);
  const b = upload(rt, y, [N]);
  const { result, profile } = await rt.profile(() => noGrad(() => work(rt, a, b)), { method });
  const got = await result.read();
  close(got, Array.from(x, (v, i) => 2 * (v + y[i]) * y[i]), 1e-6, 'result of the profiled function');
  for (const t of [a, b, result]) t.dispose();
  return profile;
}

test('timestamp queries (where the device has them): one record per dispatch, sections, trace', async () => {
  const rt = await getRuntime();
  if (!rt.hasTimestamps) {
    console.log('  (no timestamp-query on this device: only the fallback is exercised)');
    return;
  }
  const p = await profileWork(rt, 'auto');
  checkProfile(p, 'timestamps');
});

test('forced fallback (submit + onSubmittedWorkDone per dispatch)', async () => {
  const rt = await getRuntime();
  const p = await profileWork(rt, 'fallback');
  checkProfile(p, 'fallback');
  // fallback records follow each other on the queue
  for (let i = 1; i < p.dispatches.length; i++) {
    assert.ok(p.dispatches[i].startMs >= p.dispatches[i - 1].startMs + p.dispatches[i - 1].durMs - 1e-9, 'in queue order');
  }
});

test('timestamp path past one query set (more than 1024 dispatches), async sections', async () => {
  const rt = await getRuntime();
  if (!rt.hasTimestamps) return;
  const a = upload(rt, randn(37, 3), [37]);
  const { profile } = await rt.profile(async () => {
    for (let i = 0; i < 1100; i++) noGrad(() => tidy(() => { scale(a, 1.5); }));
    await rt.section('async', async () => {
      await rt.sync();
      noGrad(() => tidy(() => { add(a, a); }));
    });
  });
  assert.is(profile.dispatches.length, 1101);
  assert.ok(profile.dispatches.every((d) => d.durMs >= 0));
  assert.equal(profile.dispatches[1100].sections, ['async']);
  assert.is(profile.byKernel()[0].calls + (profile.byKernel()[1]?.calls ?? 0), 1101);
  a.dispose();
});

test('not profiling: section() is a plain call, dispatches are batched as usual', async () => {
  const rt = await getRuntime();
  assert.is(rt.profiling, false);
  const a = upload(rt, randn(N, 4), [N]);
  await rt.sync();
  // (poisoning flushes at each allocation: off for this count)
  rt.poison = false;
  const submits = rt.submitCount;
  const r = rt.section('nothing', () => noGrad(() => tidy(() => { scale(a, 3); scale(a, 3); return 7; })));
  assert.is(r, 7);
  await rt.sync();
  rt.poison = true;
  assert.is(rt.submitCount - submits, 1, 'two dispatches in one submit');
  // a throwing section leaves no state behind, profiling or not
  assert.throws(() => rt.section('boom', () => { throw new Error('boom'); }), /boom/);
  const { profile } = await rt.profile(() => {
    try {
      rt.section('boom', () => { throw new Error('boom'); });
    } catch {
      // expected
    }
    rt.section('after', () => noGrad(() => tidy(() => { scale(a, 2); })));
  });
  assert.equal(profile.dispatches[0].sections, ['after']);
  await assert.not.throws(() => rt.profile(() => 1));
  // a profiled function that throws after some dispatches: the error comes through, the runtime stays usable
  let err: Error | null = null;
  try {
    await rt.profile(() => {
      noGrad(() => tidy(() => { scale(a, 2); }));
      throw new Error('inside profile');
    });
  } catch (e) {
    err = e as Error;
  }
  assert.match(err?.message ?? '', /inside profile/);
  assert.is(rt.profiling, false);
  await rt.sync();
  close(await noGrad(() => scale(a, 2)).read(), Array.from(randn(N, 4), (v) => 2 * v), 1e-6, 'after a failed profile');
  a.dispose();
});

test('layer norm forward+backward profile names norm kernels', async () => {
  const rt = await getRuntime();
  const x = upload(rt, randn(5 * 33, 5), [5, 33], { requiresGrad: true });
  const { profile } = await rt.profile(() => noGrad(() => tidy(() => { layerNorm(x, null, null, 1e-5); })));
  assert.ok(profile.dispatches.length >= 1 && profile.dispatches.every((d) => /^norm(_subgroups)?\./.test(d.kernel)), profile.dispatches.map((d) => d.kernel).join());
  x.dispose();
});

test('backward time is booked under the sections the forward ran in (backward/<forward sections>)', async () => {
  const rt = await getRuntime();
  const x = upload(rt, randn(5 * 33, 6), [5, 33], { requiresGrad: true });
  const { profile } = await rt.profile(() => {
    const y = rt.section('fwd', () => rt.section('norm', () => layerNorm(x, null, null, 1e-5)));
    const loss = rt.section('fwd', () => rt.section('square', () => mul(y, y)));
    rt.section('backward', () => backward(loss, onesLike(loss)));
    y.dispose();
    loss.dispose();
  });
  const paths = profile.bySection().map((r) => r.name);
  for (const p of ['fwd/norm', 'fwd/square', 'backward/fwd/norm', 'backward/fwd/square']) assert.ok(paths.includes(p), `${p} in ${paths.join(', ')}`);
  const normBackward = profile.bySection().find((r) => r.name === 'backward/fwd/norm')!;
  assert.ok(normBackward.calls >= 1);
  const inNormBackward = profile.sections.filter((s) => [...s.parents, s.name].join('/') === 'backward/fwd/norm').flatMap((s) => profile.dispatches.slice(s.first, s.end).map((d) => d.kernel));
  assert.ok(inNormBackward.some((k) => /^norm(_subgroups)?\./.test(k)), `layer norm backward kernels under backward/fwd/norm: ${inNormBackward.join()}`);
  x.grad?.dispose();
  x.dispose();
});

test('ser profile --train on the tiny XLSR fixture: JSON summary and a Chrome trace (skipped without ../shared)', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const model = path.join(root, '../shared/fixtures/xlsr_tiny');
  if (!fs.existsSync(path.join(model, 'config.json'))) {
    console.log(`  (${model} absent: skipped)`);
    return;
  }
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-profile-'));
  try {
    const trace = path.join(out, 'trace.json');
    const r = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'profile', '--model', model, '--train', '--seconds', '0.5', '--trace', trace, '--json', '--roofline'], { cwd: root, encoding: 'utf8', timeout: 300000 });
    assert.is(r.status, 0, `ser profile exited with ${r.status ?? r.signal}: ${(r.stderr || '').slice(-2000)}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.ok(summary.dispatches > 10, `dispatches ${summary.dispatches}`);
    const names: string[] = summary.sections.map((x: { name: string }) => x.name);
    assert.equal(names.filter((n) => !n.includes('/')).sort(), ['backward', 'forward', 'optimizer']);
    // the model's own sections, and backward time booked under the forward sections it belongs to
    for (const n of ['forward/feature_projection', 'forward/encoder.layer.0', 'forward/encoder.layer.1', 'forward/head', 'backward/forward/encoder.layer.1', 'backward/forward/head']) {
      assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
    }
    assert.ok(summary.kernels.some((k: { name: string }) => k.name.endsWith('.adamwStep4') || k.name.endsWith('.adamwStep')), 'the optimizer step is profiled');
    // --roofline: GEMM rate and copy bandwidth measured on the adapter, every dispatch in a kernel row, shares in [0, 1]
    const rl = summary.roofline;
    assert.ok(rl && rl.peaks.gemmGflops > 0 && rl.peaks.copyGBps > 0, `roofline peaks ${JSON.stringify(rl?.peaks)}`);
    assert.equal(rl.measured, { gemm: true, copy: true });
    assert.is(rl.rows.reduce((s: number, x: { calls: number }) => s + x.calls, 0), summary.dispatches);
    for (const k of ['belowShare', 'unclassifiedShare', 'gemmBelowShare', 'memoryBelowShare']) assert.ok(rl.summary[k] >= 0 && rl.summary[k] <= 1, `${k} ${rl.summary[k]}`);
    const unclassified = rl.rows.filter((x: { class: string }) => x.class === 'unclassified').map((x: { kernel: string }) => x.kernel);
    assert.equal(unclassified, [], `kernels without a stated cost: ${unclassified}`);
    assert.ok(rl.rows.some((x: { class: string }) => x.class === 'gemm') && rl.rows.some((x: { class: string }) => x.class === 'memory'));
    const events = JSON.parse(fs.readFileSync(trace, 'utf8')).traceEvents;
    assert.is(events.filter((e: { cat: string }) => e.cat === 'kernel').length, summary.dispatches);
    const bad = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'profile', '--model', model, '--seconds', '0'], { cwd: root, encoding: 'utf8', timeout: 60000 });
    assert.is(bad.status, 1);
    assert.match(bad.stderr, /--seconds must be a positive number/);
    const badPeak = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'profile', '--model', model, '--roofline', '--gemm-gflops', '-3'], { cwd: root, encoding: 'utf8', timeout: 60000 });
    assert.is(badPeak.status, 1);
    assert.match(badPeak.stderr, /--gemm-gflops must be a positive number/);
    // given roofs print the table without measuring
    const text = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'profile', '--model', model, '--seconds', '0.5', '--roofline', '--gemm-gflops', '40', '--copy-gbps', '8'], { cwd: root, encoding: 'utf8', timeout: 300000 });
    assert.is(text.status, 0, text.stderr.slice(-2000));
    assert.match(text.stdout, /roofline: GEMM 40\.0 GFLOP\/s \(given/);
    assert.match(text.stdout, /of GPU time in dispatches below 50% of their roofline/);
    // a folder with only config.json profiles a randomly initialised model (predictions are never shown)
    const configOnly = path.join(out, 'config-only');
    fs.mkdirSync(configOnly);
    fs.copyFileSync(path.join(model, 'config.json'), path.join(configOnly, 'config.json'));
    const random = spawnSync(process.execPath, [path.join(root, 'build/cli.mjs'), 'profile', '--model', configOnly, '--seconds', '0.3', '--json'], { cwd: root, encoding: 'utf8', timeout: 300000 });
    assert.is(random.status, 0, random.stderr.slice(-2000));
    assert.ok(JSON.parse(random.stdout.trim().split('\n').pop()!).dispatches > 10);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

/** A synthetic dispatch record (only kernel, duration and cost matter to roofline()). */
function rec(kernel: string, durMs: number, cost: { flops?: number; bytes?: number } = {}): DispatchRecord {
  return { kernel, sections: [], workgroups: [1, 1, 1], startMs: 0, durMs, ...cost };
}

test('roofline on a synthetic profile: per-dispatch fractions, kernel rows and shares (hand-computed)', () => {
  // roofs: GEMM 100 GFLOP/s = 1e8 flops per ms, copy 10 GB/s = 1e7 bytes per ms
  const p = new Profile('timestamps', [
    rec('k.gemm', 2, { flops: 2e8 }), //   1e8 flops/ms = 100% of the GEMM roof
    rec('k.gemm', 4, { flops: 1e8 }), //   2.5e7 flops/ms = 25%: below 50%
    rec('k.mem', 1, { bytes: 4e6 }), //    4e6 bytes/ms = 40%: below
    rec('k.mem', 1, { bytes: 8e6 }), //    80%
    rec('k.mem', 0, { bytes: 100 }), //    no measurable time: not below, adds no time
    rec('k.none', 2), //                   unclassified
    rec('k.both', 1, { flops: 1e7, bytes: 6e6 }), // max(10%, 60%) = 60%: not below; states flops: GEMM-class
  ], [], 0);
  const r = p.roofline({ gemmGflops: 100, copyGBps: 10 });
  const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  // GPU time 2 + 4 + 1 + 1 + 0 + 2 + 1 = 11 ms; below 50%: 4 (gemm) + 1 (mem) = 5 ms; unclassified 2 ms
  const s = r.summary;
  near(s.gpuMs, 11, 'gpu ms');
  near(s.belowMs, 5, 'below ms');
  near(s.belowShare, 5 / 11, 'below share');
  near(s.gemmBelowShare, 4 / 11, 'GEMM-class below share');
  near(s.memoryBelowShare, 1 / 11, 'memory-bound below share');
  near(s.unclassifiedShare, 2 / 11, 'unclassified share');
  near(s.gemmMs, 2 + 4 + 1, 'GEMM-class ms');
  near(s.memoryMs, 1 + 1 + 0, 'memory-bound ms');
  assert.is(r.threshold, 0.5);
  // rows, longest first (ties by name): k.gemm 6 ms, k.mem 2, k.none 2, k.both 1
  assert.equal(r.rows.map((x) => x.kernel), ['k.gemm', 'k.mem', 'k.none', 'k.both']);
  const [g, m, n, b] = r.rows;
  assert.is(g.class, 'gemm');
  assert.is(g.calls, 2);
  near(g.totalMs, 6, 'k.gemm ms');
  near(g.share, 6 / 11, 'k.gemm share');
  near(g.flops, 3e8, 'k.gemm flops');
  near(g.attained!, 3e8 / 6 / 1e8, 'k.gemm attained'); // 0.5
  near(g.belowMs, 4, 'k.gemm below ms');
  assert.is(m.class, 'memory');
  assert.is(m.calls, 3);
  near(m.bytes, 4e6 + 8e6 + 100, 'k.mem bytes');
  near(m.attained!, (4e6 + 8e6 + 100) / 2 / 1e7, 'k.mem attained'); // ~0.6
  near(m.belowMs, 1, 'k.mem below ms');
  assert.is(n.class, 'unclassified');
  assert.is(n.attained, null);
  near(n.unclassifiedMs, 2, 'k.none unclassified ms');
  near(n.belowMs, 0, 'unclassified time is not counted as below');
  assert.is(b.class, 'gemm');
  near(b.attained!, 0.6, 'k.both attained');
  // the table names every kernel and carries the summary
  const table = rooflineTable(r);
  for (const k of ['k.gemm', 'k.mem', 'k.none', 'k.both']) assert.match(table, k);
  assert.match(table, /45\.5% of GPU time in dispatches below 50% of their roofline/);
  assert.match(table, /18\.2% unclassified/);
  // a stricter threshold moves k.mem's 80% dispatch and k.both's 60% one below: 5 + 1 + 1 = 7 ms
  near(p.roofline({ gemmGflops: 100, copyGBps: 10 }, 0.9).summary.belowMs, 7, 'below 90%');
  assert.throws(() => p.roofline({ gemmGflops: 0, copyGBps: 10 }), /positive/);
  assert.throws(() => p.roofline({ gemmGflops: 100, copyGBps: NaN }), /positive/);
  // an empty profile: all shares 0, no rows
  const e = new Profile('fallback', [], [], 0).roofline({ gemmGflops: 1, copyGBps: 1 });
  assert.equal([e.rows.length, e.summary.belowShare, e.summary.unclassifiedShare], [0, 0, 0]);
});

test('real profile: matmul states 2*M*N*K flops (per batch), layer norm its bytes, every dispatch classified', async () => {
  const rt = await getRuntime();
  const [M, K, N, batch, rows, C] = [37, 19, 23, 3, 5, 33];
  const a2 = upload(rt, randn(M * K, 7), [M, K]);
  const b2 = upload(rt, randn(K * N, 8), [K, N]);
  const a3 = upload(rt, randn(batch * M * K, 9), [batch, M, K]);
  const b3 = upload(rt, randn(batch * K * N, 10), [batch, K, N]);
  const x = upload(rt, randn(rows * C, 11), [rows, C]);
  const w = upload(rt, randn(C, 12), [C]);
  const bias = upload(rt, randn(C, 13), [C]);
  const { profile } = await rt.profile(() => noGrad(() => tidy(() => {
    rt.section('mm', () => matmul(a2, b2));
    rt.section('bmm', () => matmul(a3, b3));
    rt.section('ln', () => layerNorm(x, w, bias, 1e-5));
  })));
  const inSection = (name: string) => profile.dispatches.filter((d) => d.sections[0] === name);
  // an M that leaves most of the last row tile empty runs as two dispatches (whole tiles, then the last rows): the
  // section's dispatches together state the GEMM's flops
  const flopsOf = (ds: DispatchRecord[]) => ds.reduce((sum, d) => sum + (d.flops ?? 0), 0);
  const mm = inSection('mm');
  assert.ok(mm.length >= 1 && mm.length <= 2, `${mm.length} matmul dispatches`);
  for (const d of mm) {
    assert.ok(/^matmul(_subgroup)?\.matmul_/.test(d.kernel), d.kernel);
    assert.is(d.bytes, undefined);
  }
  assert.is(flopsOf(mm), 2 * M * N * K);
  const bmm = inSection('bmm');
  assert.ok(bmm.length >= 1 && bmm.length <= 2, `${bmm.length} batched matmul dispatches`);
  assert.is(flopsOf(bmm), 2 * M * N * K * batch);
  const ln = inSection('ln');
  assert.is(ln.length, 1);
  assert.ok(/^norm(_subgroups)?\.rowNormForward/.test(ln[0].kernel), ln[0].kernel);
  // x read and y written (f32), weight and bias read, mean and rstd (f32 per row) written
  assert.is(ln[0].bytes, 2 * rows * C * 4 + 2 * C * 4 + 2 * rows * 4);
  assert.is(ln[0].flops, undefined);
  const r = profile.roofline({ gemmGflops: 50, copyGBps: 10 });
  assert.is(r.summary.unclassifiedShare, 0);
  assert.is(r.rows.reduce((s, x) => s + x.calls, 0), profile.dispatches.length);
  const classes = new Map(r.rows.map((x) => [x.kernel, x.class]));
  assert.is(classes.get(mm[0].kernel), 'gemm');
  assert.is(classes.get(ln[0].kernel), 'memory');
  for (const x of r.rows) assert.ok(x.attained === null || (Number.isFinite(x.attained) && x.attained >= 0) || x.totalMs === 0, `${x.kernel}: attained ${x.attained}`);
  // the costs travel into the Chrome trace
  const ev = profile.trace().traceEvents.find((e) => e.cat === 'kernel' && e.name === mm[0].kernel);
  assert.ok(ev && typeof ev.args.flops === 'number');
  for (const t of [a2, b2, a3, b3, x, w, bias]) t.dispose();
});

test.run();
