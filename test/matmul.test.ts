import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { matmul, linear, matmulConfig, hasSubgroupGemm, gemmStrategy, type Activation, type GemmStrategy } from '../src/ops/matmul.js';
import { backward, tidy, noGrad, autocast, checkpoint } from '../src/autograd.js';
import type { Tensor } from '../src/tensor.js';
import { type Spec, act64, shapes, matmulReference as reference } from './op-references.js';

const strategies: GemmStrategy[] = ['tiled', 'subgroup'];

/**
 * Run with one strategy forced. `small` tiles (8-row subgroup tiles, 16x16 workgroup tiles) compile several times
 * faster on lavapipe, which keeps the many-variant tests quick; the default tiles are covered by the 'big' case.
 */
async function withStrategy(strategy: GemmStrategy | 'auto', fn: () => Promise<void>, small = true): Promise<boolean> {
  const rt = await getRuntime();
  if (strategy === 'subgroup' && !hasSubgroupGemm(rt)) return false;
  const prev = { strategy: matmulConfig.strategy, rowBlocks: matmulConfig.rowBlocks, tiled: matmulConfig.tiled };
  matmulConfig.strategy = strategy;
  if (small) {
    matmulConfig.rowBlocks = 1;
    matmulConfig.tiled = { wgM: 8, wgN: 8, tptM: 2, tptN: 2, bk: 8 };
  }
  try {
    await fn();
  } finally {
    Object.assign(matmulConfig, prev);
  }
  return true;
}

let seed = 100;

/** forward vs f64 (1e-5), and, when grads, every gradient (1e-4) */
async function check(s: Spec, opts: { act?: Activation; bias?: boolean; grads?: boolean; what: string }) {
  const rt = await getRuntime();
  const act = opts.act ?? 'none';
  const sh = shapes(s);
  const A = randn(sh.a.reduce((x, y) => x * y, 1), seed++);
  const B = randn(sh.b.reduce((x, y) => x * y, 1), seed++);
  const bias = opts.bias ? randn(s.N, seed++) : null;
  const W = randn(Math.max(1, s.batch) * s.M * s.N, seed++);
  const ref = reference(s, A, B, bias, act, W);
  const ta = upload(rt, A, sh.a, { requiresGrad: !!opts.grads });
  const tb = upload(rt, B, sh.b, { requiresGrad: !!opts.grads });
  const tbias = bias ? upload(rt, bias, [s.N], { requiresGrad: !!opts.grads }) : null;
  const y = matmul(ta, tb, { transA: s.transA, transB: s.transB, bias: tbias, activation: act });
  assert.equal([...y.shape], sh.y, `${opts.what}: output shape`);
  close(await y.read(), ref.Y, 1e-5, `${opts.what}: forward`);
  if (opts.grads) {
    const tw = upload(rt, W, sh.y);
    backward(y, tw);
    close(await ta.grad!.read(), ref.GA, 1e-4, `${opts.what}: grad a`);
    close(await tb.grad!.read(), ref.GB, 1e-4, `${opts.what}: grad b`);
    if (tbias) close(await tbias.grad!.read(), ref.GBias, 1e-4, `${opts.what}: grad bias`);
    for (const t of [ta.grad!, tb.grad!, tbias?.grad, tw]) t?.dispose();
  }
  for (const t of [ta, tb, tbias, y]) t?.dispose();
}

const odd = { M: 37, N: 29, K: 53 };

for (const strategy of strategies) {
  test(`${strategy}: forward, all transpose combinations, batched and shared b, 2-D`, async () => {
    await withStrategy(strategy, async () => {
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          await check({ ...odd, batch: 3, transA, transB, sharedB: false }, { what: `batched tA=${transA} tB=${transB}` });
          await check({ ...odd, batch: 3, transA, transB, sharedB: true }, { what: `shared tA=${transA} tB=${transB}` });
          await check({ ...odd, batch: 0, transA, transB, sharedB: true }, { what: `2-D tA=${transA} tB=${transB}` });
        }
    });
  });

  test(`${strategy}: every gradient, all transpose combinations, batched and shared b, bias + gelu / tanh`, async () => {
    await withStrategy(strategy, async () => {
      const acts: Activation[] = ['gelu', 'tanh', 'none'];
      let i = 0;
      for (const transA of [false, true])
        for (const transB of [false, true])
          for (const sharedB of [false, true]) {
            const act = acts[i++ % 3];
            await check({ ...odd, batch: 3, transA, transB, sharedB }, { act, bias: true, grads: true, what: `grads ${act} tA=${transA} tB=${transB} shared=${sharedB}` });
          }
    });
  });

  test(`${strategy}: 16-byte load paths (dims multiple of 4) with K tails`, async () => {
    await withStrategy(strategy, async () => {
      // multiples of 4 select the vec4 loads of the subgroup kernel; K = 51 leaves a tail for the transposed-A path
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          await check({ M: 36, N: 44, K: transA ? 51 : 52, batch: 2, transA, transB, sharedB: false }, { what: `vec tA=${transA} tB=${transB}` });
        }
    });
  });

  test(`${strategy}: default tiles, bigger than one tile in every dimension, with gradients`, async () => {
    await withStrategy(
      strategy,
      async () => {
        // > 64 rows / cols (tiled tile) and > 32 (subgroup tile) with partial last tiles, K > 16 (tiled slice);
        // multiples of 4 so no GEMM here needs the K-tail code (tails are covered above): halves compile time
        await check({ M: 132, N: 100, K: 68, batch: 2, transA: false, transB: true, sharedB: true }, { act: 'gelu', bias: true, grads: true, what: 'big' });
      },
      false,
    );
  });
}

test('epilogue forward: bias + gelu / tanh (auto strategy), including large |z|', async () => {
  await withStrategy('auto', async () => {
    const rt = await getRuntime();
    for (const act of ['gelu', 'tanh'] as Activation[]) {
      await check({ ...odd, batch: 2, transA: false, transB: true, sharedB: true }, { act, bias: true, what: `${act} (${gemmStrategy(rt)})` });
    }
    // |z| up to ~40: gelu's tails (exp underflow, erfc) and tanh saturation stay finite and exact
    const x = upload(rt, [-40, -12, -6, -3, -1e-3, 0, 1e-3, 3, 6, 12, 40], [11, 1]);
    const w = upload(rt, [1], [1, 1]);
    const g = noGrad(() => matmul(x, w, { activation: 'gelu' }));
    const t = noGrad(() => matmul(x, w, { activation: 'tanh' }));
    const xs = [-40, -12, -6, -3, -1e-3, 0, 1e-3, 3, 6, 12, 40];
    close(await g.read(), xs.map((z) => act64(z, 'gelu')), 1e-6, 'gelu tails');
    close(await t.read(), xs.map((z) => Math.tanh(z)), 1e-6, 'tanh saturation');
    const gv = await g.read();
    assert.ok(Math.abs(gv[2]) < 1e-7 && gv[2] <= 0, `gelu(-6) ~ -6e-9, got ${gv[2]}`);
  });
});

test('linear: [B, T, in] x W[out, in]^T + bias, activation, gradients, finite differences', async () => {
  await withStrategy('auto', async () => {
    const rt = await getRuntime();
    const [Bt, T, IN, OUT] = [2, 11, 23, 20]; // B*T*OUT % 4 == 0: the 4-wide activation backward (odd sizes elsewhere take the scalar one)
    const X = randn(Bt * T * IN, 11);
    const Wt = randn(OUT * IN, 12, 0.3);
    const bias = randn(OUT, 13);
    const G = randn(Bt * T * OUT, 14);
    const spec: Spec = { batch: 0, M: Bt * T, N: OUT, K: IN, transA: false, transB: true, sharedB: true };
    for (const act of ['gelu', 'tanh', 'none'] as Activation[]) {
      const ref = reference(spec, X, Wt, bias, act, G);
      const x = upload(rt, X, [Bt, T, IN], { requiresGrad: true });
      const w = upload(rt, Wt, [OUT, IN], { requiresGrad: true });
      const b = upload(rt, bias, [OUT], { requiresGrad: true });
      const y = linear(x, w, b, act);
      assert.equal([...y.shape], [Bt, T, OUT]);
      close(await y.read(), ref.Y, 1e-5, `linear ${act} forward`);
      backward(y, upload(rt, G, [Bt, T, OUT]));
      const gx = await x.grad!.read();
      const gw = await w.grad!.read();
      const gb = await b.grad!.read();
      close(gx, ref.GA, 1e-4, `linear ${act} grad x`);
      close(gw, ref.GB, 1e-4, `linear ${act} grad weight`);
      close(gb, ref.GBias, 1e-4, `linear ${act} grad bias`);
      assert.equal([...x.grad!.shape], [Bt, T, IN]);
      // finite differences through the GPU forward only
      const fwd = (xv: Float64Array, wv: Float64Array, bv: Float64Array) =>
        tidy(() => noGrad(() => linear(upload(rt, xv, [Bt, T, IN]), upload(rt, wv, [OUT, IN]), upload(rt, bv, [OUT]), act))).read();
      await finiteDifference({ what: `linear ${act} dx`, x: X, w: G, analytic: gx, indices: probeIndices(X.length, 3, 1), forward: (v) => fwd(v, Wt, bias) });
      await finiteDifference({ what: `linear ${act} dW`, x: Wt, w: G, analytic: gw, indices: probeIndices(Wt.length, 3, 2), forward: (v) => fwd(X, v, bias) });
      await finiteDifference({ what: `linear ${act} dbias`, x: bias, w: G, analytic: gb, indices: probeIndices(OUT, 2, 3), forward: (v) => fwd(X, Wt, v) });
      for (const t of [x, w, b, x.grad!, w.grad!, b.grad!, y]) t.dispose();
    }
  });
});

test('finite differences: batched matmul with transposes and shared b', async () => {
  await withStrategy('auto', async () => {
    const rt = await getRuntime();
    const s: Spec = { batch: 2, M: 9, N: 7, K: 11, transA: true, transB: false, sharedB: true };
    const sh = shapes(s);
    const A = randn(2 * 9 * 11, 21);
    const B = randn(11 * 7, 22);
    const W = randn(2 * 9 * 7, 23);
    const ta = upload(rt, A, sh.a, { requiresGrad: true });
    const tb = upload(rt, B, sh.b, { requiresGrad: true });
    backward(matmul(ta, tb, { transA: true, activation: 'gelu' }), upload(rt, W, sh.y));
    const fwd = (av: Float64Array, bv: Float64Array) => tidy(() => noGrad(() => matmul(upload(rt, av, sh.a), upload(rt, bv, sh.b), { transA: true, activation: 'gelu' }))).read();
    await finiteDifference({ what: 'dA', x: A, w: W, analytic: await ta.grad!.read(), indices: probeIndices(A.length, 4, 4), forward: (v) => fwd(v, B) });
    await finiteDifference({ what: 'dB', x: B, w: W, analytic: await tb.grad!.read(), indices: probeIndices(B.length, 4, 5), forward: (v) => fwd(A, v) });
  });
});

test('f16 storage (f32 accumulate) where the adapter has shader-f16', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) return;
  const cases: Record<GemmStrategy, [boolean, boolean, number, number, number]> = { tiled: [false, true, 37, 29, 53], subgroup: [true, false, 36, 44, 52] };
  for (const strategy of strategies) {
    await withStrategy(strategy, async () => {
      for (const [transA, transB, M, N, K] of [cases[strategy]]) {
        const s: Spec = { batch: 2, M, N, K, transA, transB, sharedB: false };
        const sh = shapes(s);
        const A = randn(2 * M * K, 31).map((v) => fround16(v));
        const B = randn(2 * K * N, 32).map((v) => fround16(v));
        const bias = randn(N, 33).map((v) => fround16(v));
        const W = randn(2 * M * N, 34);
        const ref = reference(s, A, B, bias, 'gelu', W);
        const ta = upload(rt, A, sh.a, { dtype: 'f16', requiresGrad: true });
        const tb = upload(rt, B, sh.b, { dtype: 'f16', requiresGrad: true });
        const tbias = upload(rt, bias, [N], { dtype: 'f16' });
        const y = matmul(ta, tb, { transA, transB, bias: tbias, activation: 'gelu' });
        assert.is(y.dtype, 'f16');
        close(await y.read(), ref.Y, 1e-2, `f16 ${strategy} forward tA=${transA} tB=${transB}`);
        backward(y, upload(rt, W, sh.y, { dtype: 'f16' }));
        close(await ta.grad!.read(), ref.GA, 1e-2, `f16 ${strategy} grad a`);
        close(await tb.grad!.read(), ref.GB, 1e-2, `f16 ${strategy} grad b`);
      }
    });
  }
});

test('autocast: linear in f16 (f32 accumulate) between f32 tensors; f32 gradients for f32 weights; checkpoint replays it', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) return;
  const [rows, inF, outF] = [37, 53, 29];
  const X = randn(rows * inF, 41);
  const Wt = randn(outF * inF, 42, 0.2);
  const bias = randn(outF, 43);
  const G = randn(rows * outF, 44);
  // f64 reference of tanh(x W^T + b), its input and weight gradients for the upstream gradient G
  const Y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let acc = bias[o];
      for (let k = 0; k < inF; k++) acc += X[r * inF + k] * Wt[o * inF + k];
      Y[r * outF + o] = Math.tanh(acc);
    }
  }
  const D = Y.map((y, i) => G[i] * (1 - y * y));
  const GX = new Float64Array(rows * inF);
  const GW = new Float64Array(outF * inF);
  const GB = new Float64Array(outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      const d = D[r * outF + o];
      GB[o] += d;
      for (let k = 0; k < inF; k++) {
        GX[r * inF + k] += d * Wt[o * inF + k];
        GW[o * inF + k] += d * X[r * inF + k];
      }
    }
  }
  const grads: Float32Array[][] = [];
  for (const useCheckpoint of [false, true]) {
    const tx = upload(rt, X, [rows, inF], { requiresGrad: true });
    const tw = upload(rt, Wt, [outF, inF], { requiresGrad: true });
    const tb = upload(rt, bias, [outF], { requiresGrad: true });
    const y = autocast(() => (useCheckpoint ? checkpoint((a) => linear(a, tw, tb, 'tanh'), [tx]) : linear(tx, tw, tb, 'tanh')));
    assert.is(y.dtype, 'f32', 'autocast output is f32');
    close(await y.read(), Y, 1e-2, `autocast forward${useCheckpoint ? ' (checkpointed)' : ''}`);
    backward(y, upload(rt, G, [rows, outF]));
    for (const t of [tx, tw, tb]) assert.is(t.grad!.dtype, 'f32', `${t.label} gradient is f32`);
    close(await tx.grad!.read(), GX, 1e-2, 'autocast grad x');
    close(await tw.grad!.read(), GW, 1e-2, 'autocast grad weight');
    close(await tb.grad!.read(), GB, 1e-2, 'autocast grad bias');
    grads.push([await tx.grad!.readFloat(), await tw.grad!.readFloat(), await tb.grad!.readFloat()]);
  }
  // the checkpoint's recomputation ran in f16 as its forward did, so the gradients are the very same
  grads[0].forEach((g, i) => assert.equal(Array.from(grads[1][i]), Array.from(g), `checkpointed grad ${i} bit-identical`));
  // outside autocast the same call is plain f32 again
  const plain = linear(upload(rt, X, [rows, inF]), upload(rt, Wt, [outF, inF]), upload(rt, bias, [outF]), 'tanh');
  close(await plain.read(), Y, 1e-5, 'f32 outside autocast');
});

test('shape and dtype errors name the operands', async () => {
  const rt = await getRuntime();
  const a = upload(rt, randn(6, 1), [2, 3]);
  const b = upload(rt, randn(8, 2), [4, 2]);
  assert.throws(() => matmul(a, b), /inner dimensions differ/);
  assert.throws(() => matmul(a, upload(rt, randn(6, 3), [2, 3, 1])), /must be 2-D or have a's batch dims/);
  assert.throws(() => linear(a, b), /does not end in 2/);
  assert.throws(() => matmul(a, upload(rt, randn(3, 1), [3, 1]), { bias: upload(rt, randn(2, 1), [2]) }), /bias must be \[1\]/);
  await rt.sync();
});

test('no graph is recorded (and nothing saved) under noGrad or without inputs that need grad', async () => {
  const rt = await getRuntime();
  const a = upload(rt, randn(12, 1), [3, 4], { requiresGrad: true });
  const w = upload(rt, randn(8, 2), [2, 4]);
  const before = rt.pool.inUseBytes;
  const y = noGrad(() => linear(a, w, null, 'gelu'));
  assert.is(y.node, null);
  y.dispose();
  assert.is(rt.pool.inUseBytes, before, 'no pre-activation kept without grad');
  const y2 = linear(upload(rt, randn(12, 1), [3, 4]), w);
  assert.is(y2.node, null);
  y2.dispose();
});

test('backward releases everything the forward kept (inputs, saved z for gelu, gradients aside)', async () => {
  const rt = await getRuntime();
  const x = upload(rt, randn(3 * 5 * 6, 1), [3, 5, 6], { requiresGrad: true });
  const w = upload(rt, randn(7 * 6, 2), [7, 6], { requiresGrad: true });
  const b = upload(rt, randn(7, 3), [7], { requiresGrad: true });
  const g = upload(rt, randn(3 * 5 * 7, 4), [3, 5, 7]);
  const before = rt.pool.inUseBytes;
  for (const act of ['gelu', 'tanh', 'none'] as Activation[]) {
    const y = linear(x, w, b, act);
    backward(y, g);
    y.dispose();
    for (const t of [x, w, b]) {
      t.grad!.dispose();
      t.grad = null;
    }
    assert.is(rt.pool.inUseBytes, before, `${act}: nothing left in use after backward`);
  }
  await rt.sync();
});

function fround16(v: number): number {
  // round to the nearest f16 so the f64 reference sees what the GPU sees
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0];
  const exp = ((u >>> 23) & 0xff) - 127;
  const shift = exp < -14 ? 13 + (-14 - exp) : 13;
  const scale = 2 ** (exp - 23 + shift);
  return Math.round(v / scale) * scale;
}

test.run();
