import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, uniform, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { sum, mean, poolTime, weightedLayerSum, reduceToScalar, setReduceSubgroups } from '../src/ops/reduce.js';
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';

/** f64 sum with Neumaier compensation: the reference must be far more accurate than what it checks */
function sum64(x: ArrayLike<number>): number {
  let s = 0;
  let comp = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const t = s + v;
    comp += Math.abs(s) >= Math.abs(v) ? s - t + v : v - t + s;
    s = t;
  }
  return s + comp;
}

// the partial sums run one subgroup per chunk where the adapter has a fixed subgroup size, else a workgroup tree:
// both paths (on an adapter without subgroups the first runs the portable one twice)
for (const subgroups of [true, false]) {
  test(`sum / mean of 5,000,011 and 5,000,012 values (three passes; scalar and vec4 first pass) match f64 to 1e-6, bit-identical on rerun (${subgroups ? 'subgroup' : 'portable'} partial sums)`, async () => {
    const rt = await getRuntime();
    setReduceSubgroups(subgroups);
    try {
      for (const n of [5_000_011, 5_000_012]) {
        const x = uniform(n, 1, 0, 2); // all positive: a sequential f32 sum would drift by ~1e-4 here
        const tx = upload(rt, x, [n]);
        const ref = sum64(x);
        const s1 = await sum(tx).read();
        const s2 = await sum(tx).read();
        const m = await mean(tx).read();
        close(s1, [ref], 1e-6, `sum n=${n}`);
        close(m, [ref / n], 1e-6, `mean n=${n}`);
        assert.is(s1[0], s2[0], 'deterministic');
        const ss = await reduceToScalar(tx, { term: 'square', sqrt: true }).read();
        close(ss, [Math.sqrt(sum64(Array.from(x, (v) => v * v)))], 1e-6, `L2 norm n=${n}`);
        tx.dispose();
      }
      // the product term on both paths (the second pass over 3 partials is scalar, over 4 vec4)
      for (const n of [3 * 2048 - 5, 4 * 2048]) {
        const a = randn(n, 5);
        const b = randn(n, 6);
        const dot = await reduceToScalar(upload(rt, a, [n]), { term: 'product', other: upload(rt, b, [n]) }).read();
        close(dot, [sum64(Array.from(a, (v, i) => v * b[i]))], 1e-5, `dot n=${n}`);
      }
    } finally {
      setReduceSubgroups(true);
    }
  });
}

test('sum / mean forward and backward on an odd size, with cancellation; finite differences agree', async () => {
  const rt = await getRuntime();
  const shape = [7, 293];
  const n = 7 * 293;
  const x = randn(n, 2);
  const tx = upload(rt, x, shape, { requiresGrad: true });
  const s = sum(tx);
  close(await s.read(), [sum64(x)], 1e-5, 'sum');
  backward(s, upload(rt, [0.75], [1]));
  close(await tx.grad!.read(), new Float64Array(n).fill(0.75), 0, 'sum grad');
  const ty = upload(rt, x, shape, { requiresGrad: true });
  const m = mean(ty);
  close(await m.read(), [sum64(x) / n], 1e-5, 'mean');
  backward(m, upload(rt, [-2], [1]));
  close(await ty.grad!.read(), new Float64Array(n).fill(-2 / n), 1e-7, 'mean grad');
  await finiteDifference({
    what: 'mean grad',
    x,
    w: [-2],
    analytic: await ty.grad!.read(),
    indices: probeIndices(n),
    h: 0.5,
    forward: async (xs) => tidy(() => mean(upload(rt, xs, shape))).read(),
  });
});

// ---- poolTime --------------------------------------------------------------------------------------------------------

const [B, T, C] = [3, 301, 71]; // T spans several lane blocks, C two channel tiles
const lengths = [301, 173, 0]; // the last utterance has no real frame at all

function poolRef(x: Float64Array, mode: 'mean' | 'sum' | 'max', mask: Int32Array | null) {
  const y = new Float64Array(B * C);
  const arg = new Int32Array(B * C).fill(-1);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      let s = 0;
      let count = 0;
      let best = 0;
      for (let t = 0; t < T; t++) {
        if (mask && !mask[b * T + t]) continue;
        const v = x[(b * T + t) * C + c];
        s += v;
        count++;
        if (arg[b * C + c] < 0 || v > best) {
          best = v;
          arg[b * C + c] = t;
        }
      }
      y[b * C + c] = mode === 'max' ? best : mode === 'mean' ? s / Math.max(count, 1) : s;
    }
  }
  return { y, arg };
}

function poolGradRef(gy: Float64Array, mode: 'mean' | 'sum' | 'max', mask: Int32Array | null, arg: Int32Array) {
  const gx = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    let count = 0;
    for (let t = 0; t < T; t++) if (!mask || mask[b * T + t]) count++;
    for (let t = 0; t < T; t++) {
      for (let c = 0; c < C; c++) {
        const real = !mask || mask[b * T + t] !== 0;
        let v = 0;
        if (mode === 'max') v = arg[b * C + c] === t ? gy[b * C + c] : 0;
        else if (real) v = mode === 'mean' ? gy[b * C + c] / Math.max(count, 1) : gy[b * C + c];
        gx[(b * T + t) * C + c] = v;
      }
    }
  }
  return gx;
}

for (const mode of ['mean', 'sum', 'max'] as const) {
  for (const masked of [false, true]) {
    test(`poolTime ${mode}${masked ? ' with a padding mask (one utterance empty)' : ''}: forward/backward match f64`, async () => {
      const rt = await getRuntime();
      const n = B * T * C;
      const x = randn(n, 10 + mode.length);
      // a tie for the maximum: the gradient goes to the first frame
      x[(0 * T + 5) * C + 3] = 9;
      x[(0 * T + 250) * C + 3] = 9;
      const mask = masked ? Int32Array.from({ length: B * T }, (_, i) => (i % T < lengths[Math.floor(i / T)] ? 1 : 0)) : null;
      const tm = mask ? Tensor.fromData(rt, mask, [B, T], 'i32', 'mask') : null;
      const w = randn(B * C, 20);
      const tx = upload(rt, x, [B, T, C], { requiresGrad: true });
      const y = poolTime(tx, mode, tm);
      assert.equal(y.shape, [B, C]);
      const ref = poolRef(x, mode, mask);
      close(await y.read(), ref.y, 1e-5, `poolTime ${mode} forward`);
      backward(y, upload(rt, w, [B, C]));
      const g = await tx.grad!.read();
      close(g, poolGradRef(w, mode, mask, ref.arg), 1e-5, `poolTime ${mode} grad`);
      if (mode === 'max') assert.is(g[(0 * T + 5) * C + 3], Math.fround(w[3]), 'tie: first frame gets the gradient');
      // probe a maximum's frame too (its gradient is nonzero for max)
      const indices = [...probeIndices(n, 3), (ref.arg[C + 7] >= 0 ? C * ref.arg[C + 7] + T * C : 0) + 7];
      await finiteDifference({
        what: `poolTime ${mode} grad`,
        x,
        w,
        analytic: g,
        indices,
        h: 1e-3,
        forward: async (xs) => tidy(() => poolTime(upload(rt, xs, [B, T, C]), mode, tm)).read(),
      });
    });
  }
}

// ---- weightedLayerSum ------------------------------------------------------------------------------------------------

test('weightedLayerSum of 13 layers: forward, grads of layers and logits match f64; finite differences agree', async () => {
  const rt = await getRuntime();
  const L = 13; // not a multiple of the 4 layers per pass
  const shape = [2, 7, 33];
  const n = 2 * 7 * 33;
  const xs = Array.from({ length: L }, (_, l) => randn(n, 100 + l));
  const logits = randn(L, 99);
  const w = randn(n, 98);
  const txs = xs.map((x) => upload(rt, x, shape, { requiresGrad: true }));
  const tl = upload(rt, logits, [L], { requiresGrad: true });
  const y = weightedLayerSum(txs, tl);
  const mx = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - mx));
  const z = e.reduce((a, b) => a + b, 0);
  const sw = e.map((v) => v / z);
  const ref = new Float64Array(n);
  for (let l = 0; l < L; l++) for (let i = 0; i < n; i++) ref[i] += sw[l] * xs[l][i];
  close(await y.read(), ref, 1e-6, 'weightedLayerSum forward');
  backward(y, upload(rt, w, shape));
  for (let l = 0; l < L; l++) close(await txs[l].grad!.read(), Array.from(w, (v) => sw[l] * v), 1e-6, `grad layer ${l}`);
  const dots = xs.map((x) => sum64(Array.from(x, (v, i) => v * w[i])));
  const wd = sw.reduce((a, v, l) => a + v * dots[l], 0);
  const gl = sw.map((v, l) => v * (dots[l] - wd));
  close(await tl.grad!.read(), gl, 1e-5, 'grad logits');
  await finiteDifference({
    what: 'weightedLayerSum grad logits',
    x: logits,
    w,
    analytic: await tl.grad!.read(),
    indices: [0, 5, 12],
    forward: async (ls) => tidy(() => weightedLayerSum(txs.map((t) => t.detach()), upload(rt, ls, [L]))).read(),
  });
  await finiteDifference({
    what: 'weightedLayerSum grad layer 6',
    x: xs[6],
    w,
    analytic: await txs[6].grad!.read(),
    indices: probeIndices(n),
    forward: async (x6) => tidy(() => weightedLayerSum(txs.map((t, l) => (l === 6 ? upload(rt, x6, shape) : t.detach())), tl.detach())).read(),
  });
});

test('weightedLayerSum with frozen layers computes only the logits gradient', async () => {
  const rt = await getRuntime();
  const L = 3;
  const xs = Array.from({ length: L }, (_, l) => upload(rt, randn(55, 200 + l), [5, 11]));
  const tl = upload(rt, [0.1, -0.3, 0.7], [L], { requiresGrad: true });
  const y = weightedLayerSum(xs, tl);
  backward(y, upload(rt, randn(55, 210), [5, 11]));
  assert.ok(xs.every((x) => x.grad === null));
  assert.equal(tl.grad!.shape, [L]);
  assert.ok((await tl.grad!.read()).every(Number.isFinite));
});

test.run();
