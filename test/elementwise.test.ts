import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { add, mul, scale, full, cast } from '../src/ops/elementwise.js';
import { f32ToF16, f16ToF32 } from '../src/tensor.js';
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';

const N = 1237; // not a multiple of the 256-thread workgroup
const N4 = 4 * 309; // n % 4 == 0: the vec4 threads

test('add / mul / scale forward match f64 and gradients flow', async () => {
  const rt = await getRuntime();
  for (const n of [N, N4]) {
    const a = randn(n, 1);
    const b = randn(n, 2);
    const w = randn(n, 3);
    const ta = upload(rt, a, [n], { requiresGrad: true });
    const tb = upload(rt, b, [n], { requiresGrad: true });
    // y = (a + 0.5 b) * b * 3 - 1  ; dy/da = 3b ; dy/db = 3(a + 0.5b) + 1.5 b = 3a + 3b
    const y = scale(mul(add(ta, tb, 0.5), tb), 3, -1);
    const yref = a.map((x, i) => (x + 0.5 * b[i]) * b[i] * 3 - 1);
    close(await y.read(), yref, 1e-6, `forward n=${n}`);
    backward(y, upload(rt, w, [n]));
    close(await ta.grad!.read(), a.map((_, i) => 3 * b[i] * w[i]), 1e-6, `grad a n=${n}`);
    close(await tb.grad!.read(), a.map((x, i) => (3 * x + 3 * b[i]) * w[i]), 1e-6, `grad b n=${n}`);
    await finiteDifference({
      what: 'grad a',
      x: a,
      w,
      analytic: await ta.grad!.read(),
      indices: probeIndices(n),
      forward: async (x) => tidy(() => scale(mul(add(upload(rt, x, [n]), tb, 0.5), tb), 3, -1)).read(),
    });
  }
});

// add hands its incoming gradient to an input instead of copying it: the engine must give the other input a copy
// (gradients are accumulated in place) and never hand over the caller's seed gradient
test('add: gradient handed over, never aliased, seed never mutated', async () => {
  const rt = await getRuntime();
  const n = N;
  const a = randn(n, 21);
  const b = randn(n, 22);
  const w = randn(n, 23);
  const ta = upload(rt, a, [n], { requiresGrad: true });
  const tb = upload(rt, b, [n], { requiresGrad: true });
  const seed = upload(rt, w, [n]);
  // the root is the add itself: its gradient is the caller's seed
  backward(add(ta, tb), seed);
  // twice more, through an inner add (its gradient is the engine's own: handed to ta, copied for tb), accumulating
  // into the leaves' .grad in place
  backward(scale(add(ta, tb), 2), seed);
  backward(scale(add(ta, ta), 1), seed);
  close(await seed.read(), w, 0, 'seed gradient unchanged');
  close(await ta.grad!.read(), w.map((v) => 5 * v), 1e-6, 'grad a = (1 + 2 + 2) w');
  close(await tb.grad!.read(), w.map((v) => 3 * v), 1e-6, 'grad b = (1 + 2) w');
  for (const t of [ta, tb]) {
    t.grad!.dispose();
    t.dispose();
  }
  seed.dispose();
});

test('f16 storage where the adapter has shader-f16', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) return;
  for (const n of [N, N4]) {
    const a = randn(n, 4);
    const b = randn(n, 5);
    const y = add(upload(rt, a, [n], { dtype: 'f16' }), upload(rt, b, [n], { dtype: 'f16' }), 2);
    assert.is(y.dtype, 'f16');
    close(await y.read(), a.map((x, i) => x + 2 * b[i]), 1e-2, `f16 add n=${n}`);
  }
});

test('cast f32 <-> f16: round to nearest like the host converter, overflow to inf, gradient cast back', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) {
    assert.throws(() => cast(upload(rt, [1], [1]), 'f16'), /shader-f16/);
    return;
  }
  const x = randn(N, 7, 3);
  // also values that need rounding ties, subnormals, and beyond f16's range (65504)
  const special = [65504, 65519, 65520, -70000, 1e6, 6e-8, 3e-5, -2.5e-6, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 0, -0];
  special.forEach((v, i) => { x[i] = v; });
  const tx = upload(rt, x, [N], { requiresGrad: true });
  const h = cast(tx, 'f16');
  assert.is(h.dtype, 'f16');
  assert.is(cast(h, 'f16'), h, 'same dtype: no copy');
  const ref = Array.from(x, (v) => f16ToF32(f32ToF16(Math.fround(v))));
  const identical = (got: ArrayLike<number>, what: string) => {
    for (let i = 0; i < N; i++) {
      // WGSL lets an implementation flush f16 subnormals (below 2^-14) to zero
      if (Object.is(got[i], ref[i]) || (Math.abs(ref[i]) < 2 ** -14 && got[i] === 0)) continue;
      assert.unreachable(`${what}, element ${i}: f16(${x[i]}) = ${got[i]} on the GPU, ${ref[i]} on the host`);
    }
  };
  const got = await h.read();
  identical(got, 'f32 -> f16');
  assert.is(got[1], 65504, 'rounds down to the largest finite f16');
  assert.is(got[2], Infinity, '65520 rounds to inf');
  assert.is(got[4], Infinity, 'overflow is inf (what loss scaling detects)');
  const back = cast(h, 'f32');
  identical(await back.read(), 'f16 -> f32 is exact');
  const w = randn(N, 8);
  backward(back, upload(rt, w, [N]));
  // d cast / dx = 1: the gradient passes through both casts, rounded to f16 on the way
  close(await tx.grad!.read(), Array.from(w, (v) => f16ToF32(f32ToF16(Math.fround(v)))), 0, 'gradient through f32 -> f16 -> f32');
  assert.throws(() => cast(upload(rt, [1], [1], { dtype: 'i32' }), 'f16'), /only f32 <-> f16/);
  // vec4 threads (n % 4 == 0), both directions
  const x4 = randn(N4, 9, 3);
  x4[5] = 65520;
  const h4 = cast(upload(rt, x4, [N4]), 'f16');
  const got4 = await h4.read();
  const back4 = await cast(h4, 'f32').read();
  for (let i = 0; i < N4; i++) {
    const r = f16ToF32(f32ToF16(Math.fround(x4[i])));
    const ok = (v: number) => Object.is(v, r) || (Math.abs(r) < 2 ** -14 && v === 0);
    if (!ok(got4[i]) || !ok(back4[i])) assert.unreachable(`vec4 cast, element ${i}: f16(${x4[i]}) = ${got4[i]} / back ${back4[i]} on the GPU, ${r} on the host`);
  }
});

test('tidy frees intermediates; pool reuses buffers; backward frees saved tensors', async () => {
  const rt = await getRuntime();
  const before = rt.pool.inUseBytes;
  const x = upload(rt, randn(N, 6), [N], { requiresGrad: true });
  const loss = tidy(() => mul(scale(x, 2), x));
  const mid = rt.pool.inUseBytes;
  assert.ok(mid > before, 'saved tensors are alive until backward');
  const seed = full(x, [N], 1);
  backward(loss, seed);
  seed.dispose();
  loss.dispose();
  const g = await x.grad!.read();
  close(g, randn(N, 6).map((v) => 4 * v), 1e-6, 'd(2x*x)/dx');
  x.grad!.dispose();
  x.dispose();
  assert.is(rt.pool.inUseBytes, before, 'everything released');
});

test('binding errors name the kernel and binding', async () => {
  const rt = await getRuntime();
  const { elementwiseKernel } = await import('../src/ops/elementwise.js');
  const t = Tensor.empty(rt, [4]);
  assert.throws(() => rt.dispatch(elementwiseKernel, 'add', { y: t, a: t, p: { n: 4, alpha: 1, beta: 0, value: 0 } }, [1]), /elementwise\.add: binding 'b' is missing/);
  assert.throws(() => rt.dispatch(elementwiseKernel, 'fill', { y: t, a: t, p: { n: 4, alpha: 1, beta: 0, value: 0 } }, [1]), /elementwise\.fill: unexpected binding\(s\) a/);
  const i = Tensor.empty(rt, [4], 'i32');
  assert.throws(() => rt.dispatch(elementwiseKernel, 'fill', { y: i, p: { n: 4, alpha: 1, beta: 0, value: 0 } }, [1]), /expects f32 elements, got a i32/);
  assert.throws(() => rt.dispatch(elementwiseKernel, 'fill', { y: t, p: { n: 4, alpha: 1, beta: 0 } }, [1]), /uniform 'p.value' is missing/);
  assert.throws(() => rt.dispatch(elementwiseKernel, 'nope', {}, [1]), /no entry point 'nope'/);
  await rt.sync();
});

test.run();
