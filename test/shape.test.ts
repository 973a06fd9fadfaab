import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices, rng } from './helpers.js';
import { setTransposeKernel, transposeLast2, sliceLast, sliceAxis, concat, maskRows, replaceRows, maskColumns } from '../src/ops/shape.js';
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';

// odd sizes: none is a multiple of the 16x16 transpose tile, the 64-channel tile or the 256-thread workgroup
const [B, T, C] = [3, 37, 29];

function randomMask(n: number, seed: number, pOne: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => (r() < pOne ? 1 : 0));
}

// both kernels on every adapter: workgroup-tiled (GPUs) and direct (CPU adapters' default)
for (const kernel of ['tiled', 'direct'] as const) {
  test(`[${kernel}] transposeLast2 forward/backward match f64 on [2, 3, 37, 53], finite differences agree`, async () => {
    const rt = await getRuntime();
    setTransposeKernel(kernel);
    const shape = [2, 3, 37, 53];
    const [b0, b1, A, Bc] = shape;
    const n = b0 * b1 * A * Bc;
    const x = randn(n, 1);
    const w = randn(n, 2);
    const tx = upload(rt, x, shape, { requiresGrad: true });
    const y = transposeLast2(tx);
    assert.equal(y.shape, [2, 3, 53, 37]);
    const ref = new Float64Array(n);
    const gref = new Float64Array(n);
    for (let b = 0; b < b0 * b1; b++) {
      for (let i = 0; i < A; i++) {
        for (let j = 0; j < Bc; j++) {
          ref[b * A * Bc + j * A + i] = x[b * A * Bc + i * Bc + j];
          gref[b * A * Bc + i * Bc + j] = w[b * A * Bc + j * A + i];
        }
      }
    }
    close(await y.read(), ref, 1e-6, `${kernel} transpose forward`);
    backward(y, upload(rt, w, [2, 3, 53, 37]));
    close(await tx.grad!.read(), gref, 1e-6, `${kernel} transpose grad`);
    await finiteDifference({
      what: `${kernel} transpose grad`,
      x,
      w,
      analytic: await tx.grad!.read(),
      indices: probeIndices(n),
      forward: async (xs) => tidy(() => transposeLast2(upload(rt, xs, shape))).read(),
    });
    setTransposeKernel('auto');
  });

  test(`[${kernel}] transposeLast2 on a 2-D tensor and in f16`, async () => {
    const rt = await getRuntime();
    setTransposeKernel(kernel);
    const [A, Bc] = [17, 19];
    const x = randn(A * Bc, 3);
    const ref = new Float64Array(A * Bc);
    for (let i = 0; i < A; i++) for (let j = 0; j < Bc; j++) ref[j * A + i] = x[i * Bc + j];
    close(await transposeLast2(upload(rt, x, [A, Bc])).read(), ref, 0, '2-D transpose');
    if (rt.hasF16) close(await transposeLast2(upload(rt, x, [A, Bc], { dtype: 'f16' })).read(), ref, 1e-3, 'f16 transpose');
    setTransposeKernel('auto');
  });
}

test('sliceLast forward/backward match f64, finite differences agree', async () => {
  const rt = await getRuntime();
  const W = 41;
  const [start, len] = [5, 23];
  const n = B * T * W;
  const x = randn(n, 4);
  const m = B * T * len;
  const w = randn(m, 5);
  const tx = upload(rt, x, [B, T, W], { requiresGrad: true });
  const y = sliceLast(tx, start, len);
  assert.equal(y.shape, [B, T, len]);
  const ref = new Float64Array(m);
  const gref = new Float64Array(n);
  for (let r = 0; r < B * T; r++) {
    for (let j = 0; j < len; j++) {
      ref[r * len + j] = x[r * W + start + j];
      gref[r * W + start + j] = w[r * len + j];
    }
  }
  close(await y.read(), ref, 0, 'slice forward');
  backward(y, upload(rt, w, [B, T, len]));
  close(await tx.grad!.read(), gref, 0, 'slice grad (zeros outside the window are written, not left poisoned)');
  await finiteDifference({
    what: 'slice grad',
    x,
    w,
    analytic: await tx.grad!.read(),
    indices: [...probeIndices(n), start, start + len, start - 1],
    forward: async (xs) => tidy(() => sliceLast(upload(rt, xs, [B, T, W]), start, len)).read(),
  });
  assert.throws(() => sliceLast(tx, 30, 12), /outside the last axis/);
});

test('maskRows forward/backward match f64, finite differences agree', async () => {
  const rt = await getRuntime();
  const n = B * T * C;
  const x = randn(n, 6);
  const w = randn(n, 7);
  const mask = randomMask(B * T, 8, 0.7);
  const tm = Tensor.fromData(rt, mask, [B, T], 'i32', 'mask');
  const tx = upload(rt, x, [B, T, C], { requiresGrad: true });
  const y = maskRows(tx, tm);
  const keep = (i: number) => mask[Math.floor(i / C)] !== 0;
  close(await y.read(), Array.from(x, (v, i) => (keep(i) ? v : 0)), 0, 'maskRows forward');
  backward(y, upload(rt, w, [B, T, C]));
  close(await tx.grad!.read(), Array.from(w, (v, i) => (keep(i) ? v : 0)), 0, 'maskRows grad');
  await finiteDifference({
    what: 'maskRows grad',
    x,
    w,
    analytic: await tx.grad!.read(),
    indices: probeIndices(n, 6),
    forward: async (xs) => tidy(() => maskRows(upload(rt, xs, [B, T, C]), tm)).read(),
  });
  assert.throws(() => maskRows(tx, Tensor.fromData(rt, new Int32Array(B * C), [B, C], 'i32')), /mask must be i32/);
});

test('replaceRows forward/backward (x and the embedding row) match f64, finite differences agree', async () => {
  const rt = await getRuntime();
  // enough rows that the row-gradient's blocked lane sums run several blocks
  const [b, t, c] = [3, 301, 67];
  const n = b * t * c;
  const x = randn(n, 9);
  const row = randn(c, 10);
  const w = randn(n, 11);
  const mask = randomMask(b * t, 12, 0.4);
  const tm = Tensor.fromData(rt, mask, [b, t], 'i32', 'mask');
  const tx = upload(rt, x, [b, t, c], { requiresGrad: true });
  const trow = upload(rt, row, [c], { requiresGrad: true });
  const y = replaceRows(tx, tm, trow);
  const replaced = (i: number) => mask[Math.floor(i / c)] !== 0;
  close(await y.read(), Array.from(x, (v, i) => (replaced(i) ? row[i % c] : v)), 0, 'replaceRows forward');
  backward(y, upload(rt, w, [b, t, c]));
  close(await tx.grad!.read(), Array.from(w, (v, i) => (replaced(i) ? 0 : v)), 0, 'replaceRows grad x');
  const growRef = new Float64Array(c);
  for (let r = 0; r < b * t; r++) if (mask[r]) for (let k = 0; k < c; k++) growRef[k] += w[r * c + k];
  close(await trow.grad!.read(), growRef, 1e-5, 'replaceRows grad row');
  await finiteDifference({
    what: 'replaceRows grad row',
    x: row,
    w,
    analytic: await trow.grad!.read(),
    indices: probeIndices(c),
    forward: async (rs) => tidy(() => replaceRows(tx.detach(), tm, upload(rt, rs, [c]))).read(),
  });
  await finiteDifference({
    what: 'replaceRows grad x',
    x,
    w,
    analytic: await tx.grad!.read(),
    indices: probeIndices(n),
    forward: async (xs) => tidy(() => replaceRows(upload(rt, xs, [b, t, c]), tm, trow.detach())).read(),
  });
});

test('maskColumns forward/backward match f64, finite differences agree', async () => {
  const rt = await getRuntime();
  const n = B * T * C;
  const x = randn(n, 13);
  const w = randn(n, 14);
  const mask = randomMask(B * C, 15, 0.3);
  const tm = Tensor.fromData(rt, mask, [B, C], 'i32', 'mask');
  const tx = upload(rt, x, [B, T, C], { requiresGrad: true });
  const y = maskColumns(tx, tm);
  const zeroed = (i: number) => mask[Math.floor(i / (T * C)) * C + (i % C)] !== 0;
  close(await y.read(), Array.from(x, (v, i) => (zeroed(i) ? 0 : v)), 0, 'maskColumns forward');
  backward(y, upload(rt, w, [B, T, C]));
  close(await tx.grad!.read(), Array.from(w, (v, i) => (zeroed(i) ? 0 : v)), 0, 'maskColumns grad');
  await finiteDifference({
    what: 'maskColumns grad',
    x,
    w,
    analytic: await tx.grad!.read(),
    indices: probeIndices(n, 6),
    forward: async (xs) => tidy(() => maskColumns(upload(rt, xs, [B, T, C]), tm)).read(),
  });
});

/** f64 reference of torch.cat along `axis` for row-major arrays. */
function catRef(parts: { data: Float64Array; shape: number[] }[], axis: number): Float64Array {
  const inner = parts[0].shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = parts[0].shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    for (const p of parts) {
      const block = p.shape[axis] * inner;
      for (let i = 0; i < block; i++) out.push(p.data[o * block + i]);
    }
  }
  return Float64Array.from(out);
}

for (const axis of [0, 1, 2]) {
  test(`concat along axis ${axis}: forward/backward match f64 on odd sizes, finite differences agree`, async () => {
    const rt = await getRuntime();
    const sizes = [7, 1, 13];
    const shapes = sizes.map((n) => {
      const s = [B, T, C];
      s[axis] = n;
      return s;
    });
    const data = shapes.map((s, i) => randn(s.reduce((a, b) => a * b, 1), 20 + i));
    const ts = data.map((d, i) => upload(rt, d, shapes[i], { requiresGrad: i !== 1 }));
    const y = concat(ts, axis);
    const outShape = [B, T, C];
    outShape[axis] = sizes.reduce((a, b) => a + b, 0);
    assert.equal(y.shape, outShape);
    close(await y.read(), catRef(data.map((d, i) => ({ data: d, shape: shapes[i] })), axis), 0, `concat axis ${axis} forward (every element written)`);
    const w = randn(y.size, 30);
    backward(y, upload(rt, w, outShape));
    assert.is(ts[1].grad, null, 'no gradient for a part that does not require one');
    // the gradient of part i is its block of w: cat(grads) == w
    const g0 = await ts[0].grad!.read();
    const g2 = await ts[2].grad!.read();
    const g1 = new Float64Array(ts[1].size);
    const wBlocks = catRef([{ data: Float64Array.from(g0), shape: shapes[0] }, { data: g1, shape: shapes[1] }, { data: Float64Array.from(g2), shape: shapes[2] }], axis);
    const wMasked = Float64Array.from(w);
    // zero the middle part's block in w for comparison (it has no gradient)
    const mark = catRef([{ data: new Float64Array(ts[0].size), shape: shapes[0] }, { data: new Float64Array(ts[1].size).fill(1), shape: shapes[1] }, { data: new Float64Array(ts[2].size), shape: shapes[2] }], axis);
    for (let i = 0; i < w.length; i++) if (mark[i]) wMasked[i] = 0;
    close(wBlocks, wMasked, 0, `concat axis ${axis} grads`);
    await finiteDifference({
      what: `concat axis ${axis} grad of part 2`,
      x: data[2],
      w,
      analytic: g2,
      indices: probeIndices(data[2].length),
      forward: async (xs) => tidy(() => concat([upload(rt, data[0], shapes[0]), upload(rt, data[1], shapes[1]), upload(rt, xs, shapes[2])], axis)).read(),
    });
  });
}

test('concat refuses mismatched shapes and dtypes; sliceAxis forward/backward match f64 with finite differences', async () => {
  const rt = await getRuntime();
  const a = upload(rt, randn(B * T * C, 40), [B, T, C]);
  const b = upload(rt, randn(B * 5 * (C + 1), 41), [B, 5, C + 1]);
  assert.throws(() => concat([a, b], 1), /does not match/);
  assert.throws(() => concat([a], 3), /axis 3 is outside/);
  const [start, len] = [4, 19];
  const x = randn(B * T * C, 42);
  const tx = upload(rt, x, [B, T, C], { requiresGrad: true });
  const y = sliceAxis(tx, 1, start, len);
  assert.equal(y.shape, [B, len, C]);
  const ref = new Float64Array(B * len * C);
  const w = randn(ref.length, 43);
  const gref = new Float64Array(x.length);
  for (let bb = 0; bb < B; bb++) {
    for (let t = 0; t < len; t++) {
      for (let c = 0; c < C; c++) {
        ref[(bb * len + t) * C + c] = x[(bb * T + start + t) * C + c];
        gref[(bb * T + start + t) * C + c] = w[(bb * len + t) * C + c];
      }
    }
  }
  close(await y.read(), ref, 0, 'sliceAxis forward');
  backward(y, upload(rt, w, [B, len, C]));
  close(await tx.grad!.read(), gref, 0, 'sliceAxis grad (zeros outside the window written)');
  await finiteDifference({
    what: 'sliceAxis grad',
    x,
    w,
    analytic: await tx.grad!.read(),
    indices: [...probeIndices(x.length), start * C, (start + len) * C],
    forward: async (xs) => tidy(() => sliceAxis(upload(rt, xs, [B, T, C]), 1, start, len)).read(),
  });
  assert.throws(() => sliceAxis(tx, 1, 30, 12), /outside axis 1/);
  if (rt.hasF16) close(await concat([upload(rt, x, [B, T, C], { dtype: 'f16' }), upload(rt, x, [B, T, C], { dtype: 'f16' })], 0).read(), catRef([{ data: x, shape: [B, T, C] }, { data: x, shape: [B, T, C] }], 0), 1e-3, 'f16 concat');
});

test('contiguous blocks (axis 0, or after size-1 axes) go by buffer copy, others by the kernel: the same values, gradients included', async () => {
  const rt = await getRuntime();
  // f32 parts of 3*5 and 7*5 rows: whole-buffer offsets, the buffer-copy path; sliceAxis on axis 0 and on axis 1
  // behind a size-1 axis too
  const a = randn(3 * 5, 60);
  const b = randn(7 * 5, 61);
  const ta = upload(rt, a, [3, 5], { requiresGrad: true });
  const tb = upload(rt, b, [7, 5], { requiresGrad: true });
  const y = concat([ta, tb], 0);
  close(await y.read(), Float64Array.from([...a, ...b]), 0, 'concat axis 0 (buffer copy)');
  const w = randn(10 * 5, 62);
  backward(y, upload(rt, w, [10, 5]));
  close(await ta.grad!.read(), w.subarray(0, 15), 0, 'concat axis 0: first part grad');
  close(await tb.grad!.read(), w.subarray(15), 0, 'concat axis 0: second part grad');
  const x = randn(11 * 3, 63);
  const s0 = sliceAxis(upload(rt, x, [11, 3]), 0, 4, 5);
  close(await s0.read(), x.subarray(12, 27), 0, 'sliceAxis axis 0 (buffer copy)');
  const s1 = sliceAxis(upload(rt, x, [1, 11, 3]), 1, 4, 5);
  close(await s1.read(), x.subarray(12, 27), 0, 'sliceAxis behind a size-1 axis (buffer copy)');
  if (rt.hasF16) {
    // f16 blocks of odd length (3 and 5 halves: not whole 4-byte words) take the kernel
    const h = [1, 2, 3, 4, 5, 6, 7, 8];
    const y16 = concat([upload(rt, h.slice(0, 3), [3], { dtype: 'f16' }), upload(rt, h.slice(3), [5], { dtype: 'f16' })], 0);
    close(await y16.read(), Float64Array.from(h), 0, 'f16 concat of odd blocks (kernel)');
    const s16 = sliceAxis(upload(rt, h, [8], { dtype: 'f16' }), 0, 1, 5);
    close(await s16.read(), Float64Array.from(h.slice(1, 6)), 0, 'f16 slice at an odd offset (kernel)');
  }
});

test.run();
