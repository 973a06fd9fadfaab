// conv1d forward and backward against a float64 reference computed here, on odd sizes and on wav2vec2's shapes at
// reduced channel counts, plus finite-difference probes of every gradient.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { conv1d, convConfig, type ConvStrategy } from '../src/ops/conv.js';
import { hasSubgroupGemm } from '../src/ops/matmul.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() uses
import { backward, tidy, noGrad } from '../src/autograd.js';
import type { Runtime } from '../src/runtime/runtime.js';

interface Cfg {
  name: string;
  B: number;
  Cin: number;
  Cout: number;
  T: number;
  K: number;
  S: number;
  P: number;
  G: number;
  bias: boolean;
  /** finite-difference probes (each costs two forward passes) */
  fd?: boolean;
}

function toutOf(c: Cfg): number {
  return Math.floor((c.T + 2 * c.P - c.K) / c.S) + 1;
}

/** f64 reference: y, and the gradients of sum(y * gy). */
function reference(c: Cfg, x: Float64Array, w: Float64Array, b: Float64Array | null, gy: Float64Array) {
  const Tout = toutOf(c);
  const cinG = c.Cin / c.G;
  const coutG = c.Cout / c.G;
  const y = new Float64Array(c.B * c.Cout * Tout);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(c.Cout);
  for (let bb = 0; bb < c.B; bb++) {
    for (let co = 0; co < c.Cout; co++) {
      const g = Math.floor(co / coutG);
      for (let to = 0; to < Tout; to++) {
        const yi = (bb * c.Cout + co) * Tout + to;
        let s = b ? b[co] : 0;
        const d = gy[yi];
        db[co] += d;
        for (let ci = 0; ci < cinG; ci++) {
          const xrow = (bb * c.Cin + g * cinG + ci) * c.T;
          const wrow = (co * cinG + ci) * c.K;
          for (let k = 0; k < c.K; k++) {
            const t = to * c.S - c.P + k;
            if (t < 0 || t >= c.T) continue;
            s += w[wrow + k] * x[xrow + t];
            dx[xrow + t] += w[wrow + k] * d;
            dw[wrow + k] += x[xrow + t] * d;
          }
        }
        y[yi] = s;
      }
    }
  }
  return { y, dx, dw, db };
}

async function checkConv(rt: Runtime, c: Cfg, seed: number): Promise<void> {
  const Tout = toutOf(c);
  const xs = [c.B, c.Cin, c.T];
  const ws = [c.Cout, c.Cin / c.G, c.K];
  const x = randn(xs[0] * xs[1] * xs[2], seed);
  const w = randn(ws[0] * ws[1] * ws[2], seed + 1, 1 / Math.sqrt(ws[1] * ws[2]));
  const b = c.bias ? randn(c.Cout, seed + 2) : null;
  const gy = randn(c.B * c.Cout * Tout, seed + 3);
  const ref = reference(c, x, w, b, gy);
  const opts = { stride: c.S, padding: c.P, groups: c.G };

  const tx = upload(rt, x, xs, { requiresGrad: true, label: 'x' });
  const tw = upload(rt, w, ws, { requiresGrad: true, label: 'w' });
  const tb = b ? upload(rt, b, [c.Cout], { requiresGrad: true, label: 'bias' }) : null;
  const y = conv1d(tx, tw, tb, opts);
  assert.equal(y.shape, [c.B, c.Cout, Tout], `${c.name}: output shape`);
  close(await y.read(), ref.y, 1e-5, `${c.name}: forward`);
  const tgy = upload(rt, gy, [c.B, c.Cout, Tout]);
  backward(y, tgy);
  const gx = await tx.grad!.read();
  const gw = await tw.grad!.read();
  close(gx, ref.dx, 1e-4, `${c.name}: grad x`);
  close(gw, ref.dw, 1e-4, `${c.name}: grad w`);
  const gb = tb ? await tb.grad!.read() : null;
  if (tb) close(gb!, ref.db, 1e-4, `${c.name}: grad bias`);

  if (c.fd) {
    const fwd = (xv: Float64Array, wv: Float64Array, bv: Float64Array | null) =>
      tidy(() => noGrad(() => conv1d(upload(rt, xv, xs), upload(rt, wv, ws), bv ? upload(rt, bv, [c.Cout]) : null, opts))).read();
    await finiteDifference({ what: `${c.name}: grad x`, x, w: gy, analytic: gx, indices: probeIndices(x.length, 3), forward: (v) => fwd(v, w, b) });
    await finiteDifference({ what: `${c.name}: grad w`, x: w, w: gy, analytic: gw, indices: probeIndices(w.length, 3), forward: (v) => fwd(x, v, b) });
    if (b) await finiteDifference({ what: `${c.name}: grad bias`, x: b, w: gy, analytic: gb!, indices: probeIndices(b.length, 2), forward: (v) => fwd(x, w, v) });
  }
  for (const t of [tx, tw, tb, tgy]) {
    t?.grad?.dispose();
    t?.dispose();
  }
  y.dispose();
}

const odd: Cfg[] = [
  { name: 'k3 s2 p1', B: 2, Cin: 3, Cout: 5, T: 101, K: 3, S: 2, P: 1, G: 1, bias: true, fd: true },
  { name: 'k10 s5', B: 2, Cin: 3, Cout: 5, T: 101, K: 10, S: 5, P: 0, G: 1, bias: false, fd: true },
  { name: 'k3 s1 p2 groups 3', B: 2, Cin: 6, Cout: 9, T: 101, K: 3, S: 1, P: 2, G: 3, bias: true, fd: true },
  { name: 'k4 s1 p2 groups 3 (even kernel)', B: 3, Cin: 9, Cout: 6, T: 37, K: 4, S: 1, P: 2, G: 3, bias: true },
  { name: 'k2 s3 (stride > kernel)', B: 2, Cin: 3, Cout: 5, T: 100, K: 2, S: 3, P: 1, G: 1, bias: true, fd: true },
  { name: 'k5 s2 p3, one output channel', B: 1, Cin: 7, Cout: 1, T: 23, K: 5, S: 2, P: 3, G: 1, bias: true },
  { name: '1x1 conv', B: 2, Cin: 11, Cout: 13, T: 29, K: 1, S: 1, P: 0, G: 1, bias: true },
];

/**
 * Run with one strategy forced (and the subgroup kernel's row blocks); false when the adapter cannot run it.
 * 'subgroup' is the implicit GEMM (forward, input gradient), 'tiled' the register-tiled portable kernels.
 */
async function withStrategy(rt: Runtime, strategy: ConvStrategy, rowBlocks: number, fn: () => Promise<void>): Promise<boolean> {
  if (strategy === 'subgroup' && !hasSubgroupGemm(rt)) return false;
  const prev = { ...convConfig };
  convConfig.strategy = strategy;
  convConfig.rowBlocks = rowBlocks;
  try {
    await fn();
  } finally {
    Object.assign(convConfig, prev);
  }
  return true;
}

// every path and every row-block count the subgroup kernel can be given (the default, 4, is what ships)
const paths: [ConvStrategy, number][] = [['tiled', 4], ['subgroup', 4], ['subgroup', 1], ['subgroup', 2], ['subgroup', 3]];

for (const [strategy, rb] of paths) {
  const tag = strategy === 'subgroup' ? `subgroup rb${rb}` : strategy;
  test(`${tag}: conv1d on odd sizes: forward, grads of x, w, bias, finite differences`, async () => {
    const rt = await getRuntime();
    let seed = 10;
    const ran = await withStrategy(rt, strategy, rb, async () => {
      for (const c of odd) await checkConv(rt, { ...c, fd: c.fd && rb === 4 }, (seed += 10));
    });
    if (!ran) console.log(`  (skipped: the adapter has no 8-wide subgroups)`);
  });
}

// wav2vec2 shapes, channels reduced (feature encoder 512 -> 24/40, positional conv 1024 -> 64 with 16 groups)
const wav2vec2: Cfg[] = [
  { name: 'feature encoder layer 0 (1->40, k10 s5)', B: 2, Cin: 1, Cout: 40, T: 1603, K: 10, S: 5, P: 0, G: 1, bias: false, fd: true },
  { name: 'feature encoder k3 s2 (24->24)', B: 2, Cin: 24, Cout: 24, T: 319, K: 3, S: 2, P: 0, G: 1, bias: false },
  { name: 'feature encoder k2 s2 (24->24)', B: 2, Cin: 24, Cout: 24, T: 79, K: 2, S: 2, P: 0, G: 1, bias: false },
  { name: 'feature encoder k3 s2 (40->36, bigger than a tile)', B: 1, Cin: 40, Cout: 36, T: 163, K: 3, S: 2, P: 0, G: 1, bias: true },
  { name: 'positional conv (64 ch, k128 p64, 16 groups)', B: 2, Cin: 64, Cout: 64, T: 57, K: 128, S: 1, P: 64, G: 16, bias: true, fd: true },
  { name: 'positional conv (256 ch, k128 p64, 16 groups)', B: 1, Cin: 256, Cout: 256, T: 33, K: 128, S: 1, P: 64, G: 16, bias: true },
  { name: 'positional conv (2 groups of 40 ch, k128 p64)', B: 1, Cin: 80, Cout: 80, T: 41, K: 128, S: 1, P: 64, G: 2, bias: true },
];

for (const [strategy, rb] of paths) {
  const tag = strategy === 'subgroup' ? `subgroup rb${rb}` : strategy;
  test(`${tag}: conv1d on wav2vec2 configurations (reduced channels)`, async () => {
    const rt = await getRuntime();
    let seed = 200;
    const ran = await withStrategy(rt, strategy, rb, async () => {
      for (const c of wav2vec2) await checkConv(rt, { ...c, fd: c.fd && rb === 4 }, (seed += 10));
    });
    if (!ran) console.log(`  (skipped: the adapter has no 8-wide subgroups)`);
  });
}

test('conv1d with f16 storage where the adapter has shader-f16', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) return;
  const c: Cfg = { name: 'f16 k3 s2 p1', B: 2, Cin: 6, Cout: 5, T: 67, K: 3, S: 2, P: 1, G: 1, bias: true };
  const x = randn(c.B * c.Cin * c.T, 900);
  const w = randn(c.Cout * c.Cin * c.K, 901, 0.3);
  const b = randn(c.Cout, 902);
  const ref = reference(c, x, w, b, new Float64Array(c.B * c.Cout * toutOf(c)));
  const y = conv1d(upload(rt, x, [c.B, c.Cin, c.T], { dtype: 'f16' }), upload(rt, w, [c.Cout, c.Cin, c.K], { dtype: 'f16' }), upload(rt, b, [c.Cout], { dtype: 'f16' }), { stride: 2, padding: 1 });
  assert.is(y.dtype, 'f16');
  close(await y.read(), ref.y, 1e-2, 'f16 conv1d forward');
});

test('conv1d rejects mismatched shapes', async () => {
  const rt = await getRuntime();
  const x = upload(rt, randn(2 * 6 * 10, 1), [2, 6, 10]);
  const w = upload(rt, randn(4 * 3 * 3, 2), [4, 3, 3]);
  assert.throws(() => conv1d(x, w, null, {}), /Cin\/groups/);
  assert.throws(() => conv1d(x, w, null, { groups: 4 }), /divisible/);
  assert.throws(() => conv1d(x, upload(rt, randn(4 * 3 * 30, 2), [4, 3, 30]), null, { groups: 2 }), /does not fit/);
  assert.equal(conv1d(x, w, null, { groups: 2 }).shape, [2, 4, 8]);
  await rt.sync();
});

test.run();
