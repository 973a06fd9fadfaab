import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices, relL2 } from './helpers.js';
import { gelu, tanh, dropout, dropoutThreshold } from '../src/ops/activation.js';
import { backward, checkpoint, manualSeed, nextRandom, tidy } from '../src/autograd.js';

const N = 1237;
const N4 = 4 * 251; // not a multiple of the 256-thread workgroup

// ---- float64 references -------------------------------------------------------------------------------------------

/** erfc(z) in f64: Taylor series of erf below 3 (at most ~4 digits of cancellation), Lentz continued fraction above. */
function erfc64(z: number): number {
  if (z < 0) return 2 - erfc64(-z);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + 1/2/(z + 1/(z + 3/2/(z + ...))))
  const tiny = 1e-300;
  let f = z;
  let c = z;
  let d = 0;
  for (let n = 1; n < 300; n++) {
    const a = n / 2;
    d = z + a * d;
    d = d === 0 ? tiny : 1 / d;
    c = z + a / c;
    if (c === 0) c = tiny;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / f;
}

const normalCdf64 = (x: number) => 0.5 * erfc64(-x / Math.SQRT2);
const gelu64 = (x: number) => x * normalCdf64(x);
const geluGrad64 = (x: number) => normalCdf64(x) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);

/** The kernel's dropout hash, in JS, so the test knows exactly which elements must be kept. */
function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}
const randomBits = (seed: number, counter: number) => pcgHash((pcgHash(counter >>> 0) ^ pcgHash((seed ^ 0x9e3779b9) >>> 0)) >>> 0);

/** Test inputs: normals plus the awkward spots (0, tiny, large, far tails). */
function inputs(n: number, seed: number, scale: number): Float64Array {
  const x = randn(n, seed, scale);
  const special = [0, 1e-6, -1e-6, 1e-3, -0.2, 0.2, 0.26, -0.24, 5, -5, 9, -9, 20, -20, 60, -60, 1e4, -1e4];
  special.forEach((v, i) => (x[(i * 67) % n] = v));
  return x;
}

// ---- gelu ------------------------------------------------------------------------------------------------------------

test('gelu forward/backward match f64 (erf form), finite differences agree', async () => {
  // odd n: scalar threads; n % 4 == 0: vec4 threads
  for (const n of [N, N4]) {
    const rt = await getRuntime();
    const x = inputs(n, 11, 2.5);
    const w = randn(n, 12);
    const tx = upload(rt, x, [n], { requiresGrad: true });
    const y = gelu(tx);
    close(await y.read(), Array.from(x, gelu64), 1e-5, `gelu forward n=${n}`);
    backward(y, upload(rt, w, [n]));
    close(await tx.grad!.read(), Array.from(x, (v, i) => geluGrad64(v) * w[i]), 1e-4, `gelu grad n=${n}`);
    await finiteDifference({
      what: `gelu grad n=${n}`,
      x,
      w,
      analytic: await tx.grad!.read(),
      indices: probeIndices(n),
      forward: async (xs) => tidy(() => gelu(upload(rt, xs, [n]))).read(),
    });
  }
});

test('gelu keeps relative accuracy in the negative tail (no 1 + erf cancellation)', async () => {
  const rt = await getRuntime();
  for (const n of [301, 300]) {
    const x = Float64Array.from({ length: n }, (_, i) => Math.fround(-9 + (8 * i) / (n - 1))); // [-9, -1]
    const got = await gelu(upload(rt, x, [n])).read();
    let worst = 0;
    x.forEach((v, i) => (worst = Math.max(worst, Math.abs(got[i] / gelu64(v) - 1))));
    assert.ok(worst < 1e-5, `worst elementwise relative error on [-9, -1], n=${n}: ${worst.toExponential(2)}`);
  }
});

// ---- tanh ------------------------------------------------------------------------------------------------------------

test('tanh forward/backward match f64, finite at large |x|, finite differences agree', async () => {
  // odd n: scalar threads; n % 4 == 0: vec4 threads
  for (const n of [N, N4]) {
    const rt = await getRuntime();
    const x = inputs(n, 21, 1.5);
    const w = randn(n, 22);
    const tx = upload(rt, x, [n], { requiresGrad: true });
    const y = tanh(tx);
    const got = await y.read();
    assert.ok(got.every(Number.isFinite), 'tanh is finite everywhere (no exp overflow at |x| = 1e4)');
    close(got, Array.from(x, Math.tanh), 1e-5, `tanh forward n=${n}`);
    let worst = 0;
    x.forEach((v, i) => (worst = v !== 0 ? Math.max(worst, Math.abs(got[i] / Math.tanh(v) - 1)) : worst));
    assert.ok(worst < 1e-5, `tanh worst elementwise relative error ${worst.toExponential(2)} (small |x| must not cancel)`);
    backward(y, upload(rt, w, [n]));
    close(await tx.grad!.read(), Array.from(x, (v, i) => (1 - Math.tanh(v) ** 2) * w[i]), 1e-4, `tanh grad n=${n}`);
    await finiteDifference({
      what: `tanh grad n=${n}`,
      x,
      w,
      analytic: await tx.grad!.read(),
      indices: probeIndices(n),
      forward: async (xs) => tidy(() => tanh(upload(rt, xs, [n]))).read(),
    });
  }
});

test('f16 gelu and tanh where the adapter has shader-f16', async () => {
  // odd n: scalar threads; n % 4 == 0: vec4 threads
  for (const n of [N, N4]) {
    const rt = await getRuntime();
    if (!rt.hasF16) return;
    const x = randn(n, 31, 2);
    const tx = upload(rt, x, [n], { dtype: 'f16' });
    const g = gelu(tx);
    const t = tanh(tx);
    assert.is(g.dtype, 'f16');
    close(await g.read(), Array.from(x, gelu64), 1e-2, 'f16 gelu');
    close(await t.read(), Array.from(x, Math.tanh), 1e-2, 'f16 tanh');
  }
});

// ---- dropout ---------------------------------------------------------------------------------------------------------

// n % 4 == 0 runs dropoutApply4 (4 elements per thread), else the scalar entry: the same mask either way
for (const n of [100003, 100004]) {
  test(`dropout: exact hash mask, kept fraction within 5 sigma, kept values scaled by 1/(1-p) (n = ${n})`, async () => {
    const rt = await getRuntime();
    const p = 0.3;
    const x = randn(n, 41);
    manualSeed(1234);
    const { seed, offset } = nextRandom(0); // what the dropout call below will get (nextRandom(0) reserves 1)
    manualSeed(1234);
    const y = await dropout(upload(rt, x, [n]), p, true).read();
    assert.is(seed, 1234);
    const thr = dropoutThreshold(p);
    let kept = 0;
    let mismatches = 0;
    const ref = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const keep = randomBits(seed, offset + i) >= thr;
      ref[i] = keep ? x[i] / (1 - p) : 0;
      if (y[i] !== 0) kept++;
      if ((y[i] !== 0) !== keep && x[i] !== 0) mismatches++;
    }
    assert.is(mismatches, 0, 'mask equals the documented hash');
    close(y, ref, 1e-6, 'dropout values');
    const sigma = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(kept - n * (1 - p)) < 5 * sigma, `kept ${kept} of ${n}, expected ${n * (1 - p)} +- ${5 * sigma}`);
  });
}

test('dropout: deterministic for a seed/offset, different for the next offset; identity when off', async () => {
  const rt = await getRuntime();
  const n = 4099;
  const tx = upload(rt, randn(n, 42), [n]);
  manualSeed(7);
  const a = await dropout(tx, 0.5, true).read();
  const b = await dropout(tx, 0.5, true).read(); // next offset
  manualSeed(7);
  const c = await dropout(tx, 0.5, true).read();
  assert.equal(Array.from(a), Array.from(c), 'same seed and offset give the same output');
  let differ = 0;
  for (let i = 0; i < n; i++) if ((a[i] === 0) !== (b[i] === 0)) differ++;
  // independent masks at p = 0.5 differ in half the places
  assert.ok(Math.abs(differ - n / 2) < 5 * Math.sqrt(n / 4), `masks at consecutive offsets differ in ${differ} of ${n}`);
  manualSeed(8);
  const d = await dropout(tx, 0.5, true).read();
  let differSeed = 0;
  for (let i = 0; i < n; i++) if ((a[i] === 0) !== (d[i] === 0)) differSeed++;
  assert.ok(Math.abs(differSeed - n / 2) < 5 * Math.sqrt(n / 4), `masks of seeds 7 and 8 differ in ${differSeed} of ${n}`);
  assert.is(dropout(tx, 0.5, false), tx, 'eval mode returns x itself');
  assert.is(dropout(tx, 0, true), tx, 'p = 0 returns x itself');
  const all = await dropout(tx, 1, true).read();
  assert.ok(all.every((v) => v === 0), 'p = 1 drops everything');
  assert.throws(() => dropout(tx, 1.5, true), /p must be in \[0, 1\]/);
});

test('dropout backward uses the forward mask; checkpoint replays it', async () => {
  const rt = await getRuntime();
  const n = 2053;
  const p = 0.25;
  const x = randn(n, 43);
  const w = randn(n, 44);
  const tx = upload(rt, x, [n], { requiresGrad: true });
  manualSeed(99);
  const y = dropout(tx, p, true);
  const yv = await y.read();
  backward(y, upload(rt, w, [n]));
  const g = await tx.grad!.read();
  close(g, Array.from(yv, (v, i) => (v !== 0 ? w[i] / (1 - p) : 0)), 1e-6, 'grad = w * mask / (1 - p) with the forward mask');
  // finite differences: the mask is fixed by (seed, offset), so replaying the seed makes dropout a linear map
  await finiteDifference({
    what: 'dropout grad',
    x,
    w,
    analytic: g,
    indices: probeIndices(n),
    forward: async (xs) => {
      manualSeed(99);
      return tidy(() => dropout(upload(rt, xs, [n]), p, true)).read();
    },
  });
  // checkpointed: forward runs without a graph, backward recomputes with the same random stream
  const tx2 = upload(rt, x, [n], { requiresGrad: true });
  manualSeed(99);
  const y2 = checkpoint((a) => dropout(a, p, true), [tx2]);
  close(await y2.read(), yv, 0, 'checkpointed forward equals the plain forward');
  nextRandom(12345); // the stream moves on before backward, as it would in training
  backward(y2, upload(rt, w, [n]));
  assert.ok(relL2(await tx2.grad!.read(), g) === 0, 'checkpoint backward regenerates the same mask');
});

test.run();
