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
import { type Cfg, toutOf, convReference as reference } from './op-references.js';

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
  // enough channels for the subgroup kernels' input- and weight-gradient paths (>= 8 input channels per group,
  // >= 32 (channel, tap) columns), with odd channel counts (partial steps and tiles), odd lengths and paddings
  { name: 'k3 s2 p1, 13 -> 11 channels', B: 2, Cin: 13, Cout: 11, T: 47, K: 3, S: 2, P: 1, G: 1, bias: true, fd: true },
  { name: 'k5 s3 p2, 9 -> 37 channels (stride 3, 5 taps in 2 blocks)', B: 1, Cin: 9, Cout: 37, T: 40, K: 5, S: 3, P: 2, G: 1, bias: false, fd: true },
  { name: 'k4 s1 p2 groups 3, 27 -> 15 (stride 1: reversed weights in place)', B: 2, Cin: 27, Cout: 15, T: 31, K: 4, S: 1, P: 2, G: 3, bias: true, fd: true },
  { name: 'k8 s1 p3, 9 -> 10 (two reversed tap blocks)', B: 1, Cin: 9, Cout: 10, T: 26, K: 8, S: 1, P: 3, G: 1, bias: true },
  { name: 'k2 s2, 17 -> 9 (odd channels: a partial 2-channel step)', B: 2, Cin: 17, Cout: 9, T: 35, K: 2, S: 2, P: 0, G: 1, bias: false, fd: true },
  { name: 'k1 s1, 34 -> 7 (a partial 4-channel step)', B: 1, Cin: 34, Cout: 7, T: 21, K: 1, S: 1, P: 0, G: 1, bias: true },
  { name: 'k7 s4 p5, 10 -> 12 (padding > stride)', B: 2, Cin: 10, Cout: 12, T: 45, K: 7, S: 4, P: 5, G: 1, bias: true },
  // input gradient by phase: phases 0, 1 have one tap each, phase 2 none (its dx entries are zeros, still written)
  { name: 'k2 s3 p1, 9 -> 10 (a stride phase with no tap)', B: 2, Cin: 9, Cout: 10, T: 41, K: 2, S: 3, P: 1, G: 1, bias: true, fd: true },
];

interface Path {
  tag: string;
  strategy: ConvStrategy;
  rowBlocks?: number;
  timeSteps?: 4 | 8;
  tiled?: typeof convConfig.tiled;
}

/**
 * Run with one strategy forced (and its tile configuration); false when the adapter cannot run it.
 * 'subgroup' and 'tiled' are the implicit GEMMs, 'direct' the register-tiled direct kernels.
 */
async function withPath(rt: Runtime, path: Path, fn: () => Promise<void>): Promise<boolean> {
  if (path.strategy === 'subgroup' && !hasSubgroupGemm(rt)) return false;
  const prev = { ...convConfig };
  convConfig.strategy = path.strategy;
  if (path.rowBlocks) convConfig.rowBlocks = path.rowBlocks;
  if (path.timeSteps) convConfig.timeSteps = path.timeSteps;
  if (path.tiled) convConfig.tiled = path.tiled;
  try {
    await fn();
  } finally {
    Object.assign(convConfig, prev);
  }
  return true;
}

// every path and every tile configuration: the subgroup kernel's row blocks 1..4 x weight-gradient time steps 8, 4 (4 ships; fewer are used when a group
// has fewer channels), the tiled kernel's default tiles and small ones (several tiles along every dimension)
const paths: Path[] = [
  { tag: 'direct', strategy: 'direct' },
  { tag: 'tiled', strategy: 'tiled', tiled: { tgM: 16, tgN: 16, ttM: 4, ttN: 4, bk: 16 } },
  { tag: 'tiled small tiles', strategy: 'tiled', tiled: { tgM: 4, tgN: 8, ttM: 2, ttN: 2, bk: 4 } },
  { tag: 'subgroup rb4', strategy: 'subgroup', rowBlocks: 4 },
  { tag: 'subgroup rb1', strategy: 'subgroup', rowBlocks: 1 },
  { tag: 'subgroup rb2', strategy: 'subgroup', rowBlocks: 2 },
  { tag: 'subgroup rb3', strategy: 'subgroup', rowBlocks: 3 },
  // the weight gradient's 4-step variant (the other passes do not use timeSteps)
  { tag: 'subgroup rb4 t4', strategy: 'subgroup', rowBlocks: 4, timeSteps: 4 },
  { tag: 'subgroup rb1 t4', strategy: 'subgroup', rowBlocks: 1, timeSteps: 4 },
  { tag: 'subgroup rb2 t4', strategy: 'subgroup', rowBlocks: 2, timeSteps: 4 },
  { tag: 'subgroup rb3 t4', strategy: 'subgroup', rowBlocks: 3, timeSteps: 4 },
];
// finite differences on the shipped configurations (each probe costs two forward passes)
const fdPaths = new Set(['direct', 'tiled', 'subgroup rb4']);

for (const path of paths) {
  test(`${path.tag}: conv1d on odd sizes: forward, grads of x, w, bias, finite differences`, async () => {
    const rt = await getRuntime();
    let seed = 10;
    const ran = await withPath(rt, path, async () => {
      for (const c of odd) await checkConv(rt, { ...c, fd: c.fd && fdPaths.has(path.tag) }, (seed += 10));
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

for (const path of paths) {
  test(`${path.tag}: conv1d on wav2vec2 configurations (reduced channels)`, async () => {
    const rt = await getRuntime();
    let seed = 200;
    const ran = await withPath(rt, path, async () => {
      for (const c of wav2vec2) await checkConv(rt, { ...c, fd: c.fd && fdPaths.has(path.tag) }, (seed += 10));
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
