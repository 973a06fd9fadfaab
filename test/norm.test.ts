// layerNorm, layerNormChannels, groupNormPerChannel and weightNorm against float64 references computed here (odd
// sizes, with and without affine parameters), plus finite-difference probes of every gradient.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { layerNorm, layerNormChannels, groupNormPerChannel, weightNorm, residualLayerNorm, setNormSubgroups, normSubgroupSize } from '../src/ops/norm.js';
import { add } from '../src/ops/elementwise.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() uses
import { backward, tidy, noGrad } from '../src/autograd.js';
import type { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/tensor.js';
import { act64, actGrad64 } from './op-references.js';

/**
 * f64 reference of a normalization: `groups` lists the element indices normalized together, `param(e)` the
 * weight/bias index of element e. Returns y and the gradients of sum(y * gy).
 */
function normReference(x: Float64Array, groups: number[][], param: (e: number) => number, w: Float64Array | null, b: Float64Array | null, eps: number, gy: Float64Array) {
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const np = w ? w.length : b ? b.length : 0;
  const dw = new Float64Array(np);
  const db = new Float64Array(np);
  for (const idx of groups) {
    const n = idx.length;
    let mean = 0;
    for (const e of idx) mean += x[e];
    mean /= n;
    let v = 0;
    for (const e of idx) v += (x[e] - mean) ** 2;
    v /= n;
    const rstd = 1 / Math.sqrt(v + eps);
    let sg = 0;
    let sgx = 0;
    for (const e of idx) {
      const xh = (x[e] - mean) * rstd;
      const k = param(e);
      y[e] = xh * (w ? w[k] : 1) + (b ? b[k] : 0);
      const g = gy[e] * (w ? w[k] : 1);
      sg += g;
      sgx += g * xh;
      dw[k] += gy[e] * xh;
      db[k] += gy[e];
    }
    for (const e of idx) {
      const xh = (x[e] - mean) * rstd;
      const g = gy[e] * (w ? w[param(e)] : 1);
      dx[e] = rstd * (g - sg / n - (xh * sgx) / n);
    }
  }
  return { y, dx, dw, db };
}

type NormOp = (x: Tensor, w: Tensor | null, b: Tensor | null, eps: number) => Tensor;

interface NormCase {
  name: string;
  op: NormOp;
  shape: number[];
  /** parameter length */
  params: number;
  groups: number[][];
  param: (e: number) => number;
  affine: 'both' | 'none' | 'weight';
  /** added to x: a large mean checks the variance does not cancel */
  offset?: number;
  fd?: boolean;
  /** the op applies GELU after the affine (the reference too: y = gelu(z), dz = dy * gelu'(z)) */
  gelu?: boolean;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** last-axis rows of [rows, n] */
function rowGroups(rows: number, n: number): number[][] {
  return range(rows).map((r) => range(n).map((i) => r * n + i));
}

/** [B, C, T] normalized over C for each (b, t) */
function channelGroups(B: number, C: number, T: number): number[][] {
  const out: number[][] = [];
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) out.push(range(C).map((c) => (b * C + c) * T + t));
  return out;
}

async function checkNorm(rt: Runtime, c: NormCase, seed: number): Promise<void> {
  const n = c.shape.reduce((a, b) => a * b, 1);
  const x = randn(n, seed).map((v) => Math.fround(v * 2 + (c.offset ?? 0)));
  const w = c.affine !== 'none' ? randn(c.params, seed + 1).map((v) => Math.fround(1 + 0.5 * v)) : null;
  const b = c.affine === 'both' ? randn(c.params, seed + 2) : null;
  const gy = randn(n, seed + 3);
  const eps = 1e-5;
  let ref = normReference(x, c.groups, c.param, w, b, eps, gy);
  if (c.gelu) {
    // the normalization's own output z is ref.y: GELU after it, and its gradients from dy * gelu'(z)
    const z = ref.y;
    ref = { ...normReference(x, c.groups, c.param, w, b, eps, gy.map((g, i) => g * actGrad64(z[i], 'gelu'))), y: z.map((v) => act64(v, 'gelu')) };
  }
  const tx = upload(rt, x, c.shape, { requiresGrad: true, label: 'x' });
  const tw = w ? upload(rt, w, [c.params], { requiresGrad: true, label: 'weight' }) : null;
  const tb = b ? upload(rt, b, [c.params], { requiresGrad: true, label: 'bias' }) : null;
  const y = c.op(tx, tw, tb, eps);
  assert.equal(y.shape, c.shape, `${c.name}: shape`);
  close(await y.read(), ref.y, 1e-5, `${c.name}: forward`);
  const tgy = upload(rt, gy, c.shape);
  backward(y, tgy);
  const gx = await tx.grad!.read();
  close(gx, ref.dx, 1e-4, `${c.name}: grad x`);
  const gw = tw ? await tw.grad!.read() : null;
  const gb = tb ? await tb.grad!.read() : null;
  if (tw) close(gw!, ref.dw, 1e-4, `${c.name}: grad weight`);
  if (tb) close(gb!, ref.db, 1e-4, `${c.name}: grad bias`);
  if (c.fd) {
    const fwd = (xv: Float64Array, wv: Float64Array | null, bv: Float64Array | null) =>
      tidy(() => noGrad(() => c.op(upload(rt, xv, c.shape), wv ? upload(rt, wv, [c.params]) : null, bv ? upload(rt, bv, [c.params]) : null, eps))).read();
    await finiteDifference({ what: `${c.name}: grad x`, x, w: gy, analytic: gx, indices: probeIndices(n, 3), forward: (v) => fwd(v, w, b), h: 1e-2 });
    if (w) await finiteDifference({ what: `${c.name}: grad weight`, x: w, w: gy, analytic: gw!, indices: probeIndices(w.length, 2), forward: (v) => fwd(x, v, b) });
    if (b) await finiteDifference({ what: `${c.name}: grad bias`, x: b, w: gy, analytic: gb!, indices: probeIndices(b.length, 2), forward: (v) => fwd(x, w, v) });
  }
  for (const t of [tx, tw, tb, tgy]) {
    t?.grad?.dispose();
    t?.dispose();
  }
  y.dispose();
}

/** Every row-kernel path this adapter has: the subgroup one (where available) and the portable one. */
async function eachRowPath(rt: Runtime, fn: (path: string) => Promise<void>): Promise<void> {
  const paths: [string, boolean][] = normSubgroupSize(rt) ? [['subgroup', true], ['portable', false]] : [['portable', false]];
  for (const [name, allowed] of paths) {
    setNormSubgroups(allowed);
    try {
      await fn(name);
    } finally {
      setNormSubgroups(true);
    }
  }
}

test('layerNorm over the last axis: odd sizes, with and without affine, large mean (scalar and vec4 rows, subgroup and portable)', async () => {
  const rt = await getRuntime();
  const cases: NormCase[] = [
    { name: 'layerNorm [3,7,37]', op: layerNorm, shape: [3, 7, 37], params: 37, groups: rowGroups(21, 37), param: (e) => e % 37, affine: 'both', fd: true },
    { name: 'layerNorm [5,1031] no affine', op: layerNorm, shape: [5, 1031], params: 1031, groups: rowGroups(5, 1031), param: (e) => e % 1031, affine: 'none', fd: true },
    { name: 'layerNorm [301,45] weight only', op: layerNorm, shape: [301, 45], params: 45, groups: rowGroups(301, 45), param: (e) => e % 45, affine: 'weight' },
    { name: 'layerNorm [9,133] offset 100', op: layerNorm, shape: [9, 133], params: 133, groups: rowGroups(9, 133), param: (e) => e % 133, affine: 'both', offset: 100 },
    // n % 4 == 0: the vec4 kernels (odd row counts, n not a multiple of any workgroup size)
    { name: 'layerNorm4 [3,7,36]', op: layerNorm, shape: [3, 7, 36], params: 36, groups: rowGroups(21, 36), param: (e) => e % 36, affine: 'both', fd: true },
    { name: 'layerNorm4 [5,1028] no affine', op: layerNorm, shape: [5, 1028], params: 1028, groups: rowGroups(5, 1028), param: (e) => e % 1028, affine: 'none', fd: true },
    { name: 'layerNorm4 [301,44] weight only', op: layerNorm, shape: [301, 44], params: 44, groups: rowGroups(301, 44), param: (e) => e % 44, affine: 'weight' },
    { name: 'layerNorm4 [9,4] offset 100', op: layerNorm, shape: [9, 4], params: 4, groups: rowGroups(9, 4), param: (e) => e % 4, affine: 'both', offset: 100 },
  ];
  await eachRowPath(rt, async (path) => {
    let seed = 1;
    for (const c of cases) await checkNorm(rt, { ...c, name: `${c.name} (${path})` }, (seed += 10));
  });
});

test('residualLayerNorm: y = LN(x + r) and the sum, forward and backward (scalar and vec4, subgroup and portable)', async () => {
  const rt = await getRuntime();
  for (const [rows, n, affine, fd] of [[7, 37, true, true], [5, 36, true, true], [3, 1028, false, true], [301, 44, true, false]] as [number, number, boolean, boolean][]) {
    await eachRowPath(rt, async (path) => {
      const what = `residualLayerNorm [${rows},${n}]${affine ? '' : ' no affine'} (${path})`;
      const size = rows * n;
      const seed = rows * 1000 + n;
      const x = randn(size, seed);
      const r = randn(size, seed + 1).map((v) => Math.fround(3 * v + 5));
      const s = x.map((v, i) => Math.fround(v + r[i]));
      const w = affine ? randn(n, seed + 2).map((v) => Math.fround(1 + 0.5 * v)) : null;
      const b = affine ? randn(n, seed + 3) : null;
      const g = randn(size, seed + 4);
      const eps = 1e-5;
      // loss = sum((y + sum) * g): sum's gradient is LN's backward of g plus g itself, and so are x's and r's
      const ref = normReference(s, rowGroups(rows, n), (e) => e % n, w, b, eps, g);
      const tx = upload(rt, x, [rows, n], { requiresGrad: true, label: 'x' });
      const tr = upload(rt, r, [rows, n], { requiresGrad: true, label: 'residual' });
      const tw = w ? upload(rt, w, [n], { requiresGrad: true, label: 'weight' }) : null;
      const tb = b ? upload(rt, b, [n], { requiresGrad: true, label: 'bias' }) : null;
      const out = residualLayerNorm(tx, tr, tw, tb, eps);
      close(await out.y.read(), ref.y, 1e-5, `${what}: y`);
      close(await out.sum.read(), s, 1e-7, `${what}: sum`);
      const total = add(out.y, out.sum);
      const tg = upload(rt, g, [rows, n]);
      backward(total, tg);
      const dref = ref.dx.map((v, i) => v + g[i]);
      const gx = await tx.grad!.read();
      close(gx, dref, 1e-4, `${what}: grad x`);
      close(await tr.grad!.read(), dref, 1e-4, `${what}: grad residual`);
      if (tw) close(await tw.grad!.read(), ref.dw, 1e-4, `${what}: grad weight`);
      if (tb) close(await tb.grad!.read(), ref.db, 1e-4, `${what}: grad bias`);
      if (fd) {
        const fwd = (xv: Float64Array) => tidy(() => noGrad(() => {
          const o = residualLayerNorm(upload(rt, xv, [rows, n]), upload(rt, r, [rows, n]), w ? upload(rt, w, [n]) : null, b ? upload(rt, b, [n]) : null, eps);
          return add(o.y, o.sum);
        })).read();
        await finiteDifference({ what: `${what}: grad x`, x, w: g, analytic: gx, indices: probeIndices(size, 3), forward: fwd, h: 1e-2 });
      }
      for (const t of [tx, tr, tw, tb, tg, out.y, out.sum, total]) {
        t?.grad?.dispose();
        t?.dispose();
      }
    });
  }
  const a = upload(rt, randn(12, 1), [3, 4]);
  assert.throws(() => residualLayerNorm(a, upload(rt, randn(12, 2), [4, 3]), null, null, 1e-5), /residualLayerNorm: residual/);
});

const channelsGelu: NormOp = (x, w, b, eps) => layerNormChannels(x, w, b, eps, { activation: 'gelu' });

test('layerNormChannels over C of [B, C, T], with and without the fused GELU', async () => {
  const rt = await getRuntime();
  const cases: NormCase[] = [
    { name: 'layerNormChannels [2,37,53]', op: layerNormChannels, shape: [2, 37, 53], params: 37, groups: channelGroups(2, 37, 53), param: (e) => Math.floor(e / 53) % 37, affine: 'both', fd: true },
    { name: 'layerNormChannels [3,24,301] no affine', op: layerNormChannels, shape: [3, 24, 301], params: 24, groups: channelGroups(3, 24, 301), param: (e) => Math.floor(e / 301) % 24, affine: 'none' },
    { name: 'layerNormChannels [1,515,7] offset 50', op: layerNormChannels, shape: [1, 515, 7], params: 515, groups: channelGroups(1, 515, 7), param: (e) => Math.floor(e / 7) % 515, affine: 'both', offset: 50 },
    // with the fused GELU (the feature encoder's LayerNorm + GELU)
    { name: 'layerNormChannels+gelu [2,37,53]', op: channelsGelu, shape: [2, 37, 53], params: 37, groups: channelGroups(2, 37, 53), param: (e) => Math.floor(e / 53) % 37, affine: 'both', fd: true, gelu: true },
    { name: 'layerNormChannels+gelu [3,24,31] no affine', op: channelsGelu, shape: [3, 24, 31], params: 24, groups: channelGroups(3, 24, 31), param: (e) => Math.floor(e / 31) % 24, affine: 'none', fd: true, gelu: true },
    { name: 'layerNormChannels+gelu [1,515,7] weight only, offset 50', op: channelsGelu, shape: [1, 515, 7], params: 515, groups: channelGroups(1, 515, 7), param: (e) => Math.floor(e / 7) % 515, affine: 'weight', offset: 50, gelu: true },
  ];
  let seed = 100;
  for (const c of cases) await checkNorm(rt, c, (seed += 10));
});

test('groupNormPerChannel over the whole time axis of [B, C, T]', async () => {
  const rt = await getRuntime();
  const cases: NormCase[] = [
    { name: 'groupNormPerChannel [2,5,1001]', op: groupNormPerChannel, shape: [2, 5, 1001], params: 5, groups: rowGroups(10, 1001), param: (e) => Math.floor(e / 1001) % 5, affine: 'both', fd: true },
    { name: 'groupNormPerChannel [3,17,99] no affine', op: groupNormPerChannel, shape: [3, 17, 99], params: 17, groups: rowGroups(51, 99), param: (e) => Math.floor(e / 99) % 17, affine: 'none' },
    { name: 'groupNormPerChannel [1,24,3203] offset 30', op: groupNormPerChannel, shape: [1, 24, 3203], params: 24, groups: rowGroups(24, 3203), param: (e) => Math.floor(e / 3203) % 24, affine: 'both', offset: 30 },
  ];
  let seed = 200;
  for (const c of cases) await checkNorm(rt, c, (seed += 10));
});

test('layerNorm with f16 storage where the adapter has shader-f16', async () => {
  const rt = await getRuntime();
  if (!rt.hasF16) return;
  const x = randn(7 * 129, 300);
  const w = randn(129, 301).map((v) => 1 + 0.5 * v);
  const b = randn(129, 302);
  const ref = normReference(x, rowGroups(7, 129), (e) => e % 129, w, b, 1e-5, new Float64Array(x.length));
  const y = layerNorm(upload(rt, x, [7, 129], { dtype: 'f16' }), upload(rt, w, [129], { dtype: 'f16' }), upload(rt, b, [129], { dtype: 'f16' }), 1e-5);
  assert.is(y.dtype, 'f16');
  close(await y.read(), ref.y, 1e-2, 'f16 layerNorm');
  // vec4<f16> rows
  const x4 = randn(7 * 132, 303);
  const ref4 = normReference(x4, rowGroups(7, 132), (e) => e % 132, null, null, 1e-5, new Float64Array(x4.length));
  const y4 = layerNorm(upload(rt, x4, [7, 132], { dtype: 'f16' }), null, null, 1e-5);
  close(await y4.read(), ref4.y, 1e-2, 'f16 layerNorm (vec4)');
});

/** f64 weight norm over every axis but dim, and the gradients of sum(w * gw). */
function weightNormReference(g: Float64Array, v: Float64Array, shape: number[], dim: number, gw: Float64Array) {
  const D = shape[dim];
  const inner = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const dOf = (e: number) => Math.floor(e / inner) % D;
  const sq = new Float64Array(D);
  for (let e = 0; e < v.length; e++) sq[dOf(e)] += v[e] * v[e];
  const norm = sq.map(Math.sqrt);
  const w = v.map((x, e) => (g[dOf(e)] * x) / norm[dOf(e)]);
  const s = new Float64Array(D);
  for (let e = 0; e < v.length; e++) s[dOf(e)] += gw[e] * v[e];
  const dg = s.map((x, d) => x / norm[d]);
  const dv = v.map((x, e) => {
    const d = dOf(e);
    return (g[d] / norm[d]) * (gw[e] - (x * s[d]) / (norm[d] * norm[d]));
  });
  return { w, dg, dv };
}

test('weightNorm over every axis but dim (pos-conv layout dim 2, and dims 0, 1)', async () => {
  const rt = await getRuntime();
  const cases: { shape: number[]; dim: number; fd: boolean }[] = [
    { shape: [48, 4, 33], dim: 2, fd: true }, // pos conv: v [C, C/groups, K], g [1, 1, K]
    { shape: [7, 5, 3], dim: 0, fd: true },
    { shape: [6, 11, 13], dim: 1, fd: false },
  ];
  let seed = 400;
  for (const c of cases) {
    seed += 10;
    const n = c.shape.reduce((a, b) => a * b, 1);
    const D = c.shape[c.dim];
    const gShape = c.shape.map((s, i) => (i === c.dim ? s : 1));
    const v = randn(n, seed);
    const g = randn(D, seed + 1).map((x) => Math.fround(1 + 0.3 * x));
    const gw = randn(n, seed + 2);
    const ref = weightNormReference(g, v, c.shape, c.dim, gw);
    const tg = upload(rt, g, gShape, { requiresGrad: true, label: 'g' });
    const tv = upload(rt, v, c.shape, { requiresGrad: true, label: 'v' });
    const w = weightNorm(tg, tv, c.dim);
    const what = `weightNorm [${c.shape}] dim ${c.dim}`;
    assert.equal(w.shape, c.shape, what);
    close(await w.read(), ref.w, 1e-5, `${what}: forward`);
    backward(w, upload(rt, gw, c.shape));
    const dg = await tg.grad!.read();
    const dv = await tv.grad!.read();
    assert.equal(tg.grad!.shape, gShape, `${what}: grad g shape`);
    close(dg, ref.dg, 1e-4, `${what}: grad g`);
    close(dv, ref.dv, 1e-4, `${what}: grad v`);
    if (c.fd) {
      const fwd = (gv: Float64Array, vv: Float64Array) => tidy(() => noGrad(() => weightNorm(upload(rt, gv, gShape), upload(rt, vv, c.shape), c.dim))).read();
      await finiteDifference({ what: `${what}: grad g`, x: g, w: gw, analytic: dg, indices: probeIndices(D, 2), forward: (x) => fwd(x, v) });
      await finiteDifference({ what: `${what}: grad v`, x: v, w: gw, analytic: dv, indices: probeIndices(n, 3), forward: (x) => fwd(g, x) });
    }
  }
  await rt.sync();
});

test('norm ops reject wrong parameter shapes', async () => {
  const rt = await getRuntime();
  const x = upload(rt, randn(2 * 3 * 5, 1), [2, 3, 5]);
  assert.throws(() => layerNorm(x, upload(rt, randn(3, 2), [3]), null, 1e-5), /weight \[3\] must be \[5\]/);
  assert.throws(() => layerNormChannels(x, null, upload(rt, randn(5, 2), [5]), 1e-5), /bias \[5\] must be \[3\]/);
  assert.throws(() => groupNormPerChannel(upload(rt, randn(6, 1), [6]), null, null, 1e-5), /\[B, C, T\]/);
  assert.throws(() => weightNorm(upload(rt, randn(5, 1), [1, 1, 5]), x, 1), /g \[1,1,5\] must be/);
  await rt.sync();
});

test.run();
