// Normalization ops, each forward dispatch next to its backward (kernels/norm.wgsl, kernels/weightnorm.wgsl):
//   layerNorm            over the last axis of [..., C]
//   layerNormChannels    over C of [B, C, T] for each (b, t), in place of transpose + LayerNorm + transpose
//   groupNormPerChannel  GroupNorm(num_groups = C) on [B, C, T]: each (b, c) over the whole time axis
//   weightNorm           w = g * v / ||v|| (PyTorch weight_norm(dim))
// Forward saves mean and rstd (f32, one per normalized group); backward gives grad input, weight and bias. Per-channel
// parameter gradients are partial sums per chunk plus a sumPartials pass (no float atomics).
import normFileSource from '../../kernels/norm.wgsl';
import activationSource from '../../kernels/activation.wgsl';
import weightNormSource from '../../kernels/weightnorm.wgsl';
import { defineKernel, type Defines, type KernelFamily } from '../runtime/kernel.js';
import type { Bindings, Runtime } from '../runtime/runtime.js';
import { scale } from './elementwise.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { bytesOf, ceilDiv, fixedSubgroupSize, grid1d } from './grid.js';

// the fused GELU of the channel layout uses activation.wgsl's GELU math (one copy of the erfc fit), at f32
const GELU_SECTION = /\/\/ ==== GELU math[\s\S]*?\/\/ ==== end GELU math\n/;
const geluMath = activationSource.match(GELU_SECTION);
if (!geluMath) throw new Error('kernels/activation.wgsl: the GELU math section is missing');
const normSource = `${normFileSource}\nalias VF = f32;\n${geluMath[0]}`;

export const normKernel = defineKernel('norm', normSource);
export const weightNormKernel = defineKernel('weightnorm', weightNormSource);

/** The same file with rowSum as one subgroupAdd: run with WG = a fixed subgroup size (one subgroup per row). */
const PORTABLE_ROW_SUM = /\/\/ ==== rowSum \(portable\)[\s\S]*?\/\/ ==== end rowSum\n/;
if (!PORTABLE_ROW_SUM.test(normSource)) throw new Error('kernels/norm.wgsl: the portable rowSum section is missing');
export const normSubgroupKernel = defineKernel(
  'norm_subgroups',
  `enable subgroups;\n${normSource.replace(PORTABLE_ROW_SUM, 'fn rowSum(lid: u32, v: vec4f) -> vec4f { return subgroupAdd(v); }\n')}`,
);

let subgroupsAllowed = true;
/** Tests and benches: false forces the portable row kernels where the subgroup ones would run. */
export function setNormSubgroups(allowed: boolean): void {
  subgroupsAllowed = allowed;
}

/**
 * The subgroup size the row kernels run with, or null for the portable ones: needs the 'subgroups' feature and a
 * subgroup size fixed at pipeline creation (adapter subgroupMinSize == subgroupMaxSize), since a workgroup must be
 * exactly one subgroup.
 */
export function normSubgroupSize(rt: Runtime): number | null {
  return subgroupsAllowed ? fixedSubgroupSize(rt) : null;
}

const WG = 128;
/** threads wanted in a parameter-gradient pass before the groups are split into chunks */
const AFFINE_TARGET_THREADS = 8192;
const MIN_CHUNK = 16;
/** elements per thread in weightNorm's elementwise passes (kernels/weightnorm.wgsl EPT) */
const WEIGHT_NORM_EPT = 4;

type NormParams = {
  rows: number;
  n: number;
  channels: number;
  inner: number;
  eps: number;
  hasWeight: number;
  hasBias: number;
  perRowAffine: number;
  rowSums: number;
  chunk: number;
  chunks: number;
};

function params(p: Partial<NormParams>): NormParams {
  return { rows: 0, n: 0, channels: 1, inner: 1, eps: 0, hasWeight: 0, hasBias: 0, perRowAffine: 0, rowSums: 0, chunk: 0, chunks: 0, ...p };
}

function checkAffine(op: string, x: Tensor, t: Tensor | null, size: number, what: string): void {
  if (!t) return;
  if (t.shape.length !== 1 || t.shape[0] !== size) throw new Error(`${op}: ${what} [${t.shape}] must be [${size}]`);
  if (t.dtype !== x.dtype) throw new Error(`${op}: ${what} is ${t.dtype}, x is ${x.dtype}`);
}

function checkFloat(op: string, x: Tensor): void {
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new Error(`${op}: x must be f32 or f16, got ${x.dtype}`);
}

/** Workgroups for one workgroup per row, folded into 2-D past 65535. */
function rowGrid(rows: number): [number, number] {
  return grid1d(rows, 1);
}

/** Chunking of `groups` reduction items for `lanes` parallel sums: [items per chunk, chunks]. */
function chunking(groups: number, lanes: number): [number, number] {
  const chunks = Math.max(1, Math.min(ceilDiv(AFFINE_TARGET_THREADS, lanes), ceilDiv(groups, MIN_CHUNK)));
  const chunk = ceilDiv(groups, chunks);
  return [chunk, ceilDiv(groups, chunk)];
}

function sumPartials(rt: Runtime, parts: Tensor, n: number, count: number, dtype: Tensor['dtype'], label: string): Tensor {
  const out = Tensor.empty(rt, [n], dtype, label);
  rt.dispatch(normKernel, 'sumPartials', { p: params({ n, chunks: count }), parts, sum: out }, grid1d(n, WG), { defines: { T: dtype, WG }, cost: { bytes: 4 * n * count + out.byteLength } });
  return out;
}

/** Only the bindings the entry point declares (template constants can leave some unused). */
function used(kernel: KernelFamily, entry: string, defines: Defines, all: Bindings): Bindings {
  const names = new Set(kernel.entry(entry, defines).bindings.map((b) => b.name));
  return Object.fromEntries(Object.entries(all).filter(([k]) => names.has(k)));
}

/**
 * Row layout: x [rows, n], each row normalized over n. perRowAffine: weight/bias index = row % channels (GroupNorm
 * with C groups on [B, C, T]); otherwise weight/bias [n] (LayerNorm). With `residual`, the row normalized is
 * x + residual, and that sum is returned too (one forward pass; its gradient is the identity to x and residual).
 */
function rowNorm(
  op: string,
  x: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  eps: number,
  rows: number,
  n: number,
  perRowAffine: boolean,
  channels: number,
  residual: Tensor | null = null,
): { y: Tensor; sum: Tensor | null } {
  const rt = x.rt;
  const dt = x.dtype;
  const vec4 = !perRowAffine && n % 4 === 0;
  const sg = normSubgroupSize(rt);
  const rowKernel = sg ? normSubgroupKernel : normKernel;
  const rowDefines = { T: dt, WG: sg ?? WG, RESIDUAL: residual ? 'true' : 'false' };
  const y = Tensor.empty(rt, x.shape, dt, op);
  const sum = residual ? Tensor.empty(rt, x.shape, dt, `${op}.sum`) : null;
  // writable stand-in for the unused sum output (a buffer may not be bound read-only and writable at once)
  const dummy = sum ? null : Tensor.empty(rt, [8], dt, `${op}.unused`);
  const mean = Tensor.empty(rt, [rows], 'f32', `${op}.mean`);
  const rstd = Tensor.empty(rt, [rows], 'f32', `${op}.rstd`);
  const p = params({ rows, n, channels, eps, hasWeight: weight ? 1 : 0, hasBias: bias ? 1 : 0, perRowAffine: perRowAffine ? 1 : 0 });
  const fwd = vec4 ? 'rowNormForward4' : 'rowNormForward';
  const all: Bindings = vec4
    ? { p, x4: x, weight4: weight ?? x, bias4: bias ?? x, y4: y, mean, rstd, res4: residual ?? x, sum4: sum ?? dummy! }
    : { p, x, weight: weight ?? x, bias: bias ?? x, y, mean, rstd, res: residual ?? x, sum: sum ?? dummy! };
  // cost: x (and residual) read once, y (and sum) written once, the affine parameters, mean and rstd
  const fwdBytes = bytesOf(x, residual, y, sum, weight, bias) + 8 * rows;
  rt.dispatch(rowKernel, fwd, used(rowKernel, fwd, rowDefines, all), rowGrid(rows), { defines: rowDefines, cost: { bytes: fwdBytes } });
  dummy?.dispose();
  // the residual sum's own node: gradient passes unchanged to x and residual
  let normed = x;
  if (sum && residual) {
    normed = record(`${op}.sum`, sum, [x, residual], [], (gs, needs) => [needs[0] ? gs : null, needs[1] ? gs : null]);
  }
  const bwdDefines = { ...rowDefines, RESIDUAL: 'false' };
  const inputs = [normed, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  const out = record(op, y, inputs, [normed, mean, rstd, ...(weight ? [weight] : [])], (gy, needs) => {
    const needW = weight ? needs[1] : false;
    const needB = bias ? needs[weight ? 2 : 1] : false;
    const xs = normed;
    const grads: { dw: Tensor | null; db: Tensor | null } = { dw: null, db: null };
    const dx = Tensor.empty(rt, x.shape, dt, `${op}.grad_x`);
    // GroupNorm's parameter gradients: per-row sums from the same pass, then a sum over the batch. Without them the
    // kernel writes nothing to partW / partB, which are then one-element stand-ins (every binding must be bound).
    const rowSums = perRowAffine && (needW || needB);
    const bwdBytes = bytesOf(xs, gy, dx, weight) + 8 * rows;
    if (vec4) {
      rt.dispatch(rowKernel, 'rowNormBackward4', { p, x4: xs, weight4: weight ?? xs, dy4: gy, savedMean: mean, savedRstd: rstd, dx4: dx }, rowGrid(rows), { defines: bwdDefines, cost: { bytes: bwdBytes } });
    } else {
      const partW = Tensor.empty(rt, [rowSums ? rows : 1], 'f32', `${op}.grad_w.rows`);
      const partB = Tensor.empty(rt, [rowSums ? rows : 1], 'f32', `${op}.grad_b.rows`);
      rt.dispatch(
        rowKernel,
        'rowNormBackward',
        { p: { ...p, rowSums: rowSums ? 1 : 0 }, x: xs, weight: weight ?? xs, dy: gy, savedMean: mean, savedRstd: rstd, dx, partW, partB },
        rowGrid(rows),
        { defines: bwdDefines, cost: { bytes: bwdBytes + (rowSums ? 8 * rows : 0) } },
      );
      if (rowSums) {
        // rows = B * C, row-major [B, C]: sum over B
        const batches = rows / channels;
        if (needW) grads.dw = sumPartials(rt, partW, channels, batches, dt, `${op}.grad_w`);
        if (needB) grads.db = sumPartials(rt, partB, channels, batches, dt, `${op}.grad_b`);
      }
      partW.dispose();
      partB.dispose();
    }
    if (!perRowAffine && (needW || needB)) {
      const lanes = vec4 ? n / 4 : n;
      const [chunk, chunks] = chunking(rows, lanes);
      const pw = Tensor.empty(rt, [chunks, n], 'f32', `${op}.grad_w.partial`);
      const pb = Tensor.empty(rt, [chunks, n], 'f32', `${op}.grad_b.partial`);
      const pa = { ...p, chunk, chunks };
      const affineCost = { bytes: bytesOf(xs, gy, pw, pb) + 8 * rows };
      if (vec4) {
        rt.dispatch(normKernel, 'rowAffineGrad4', { p: pa, x4: xs, dy4: gy, savedMean: mean, savedRstd: rstd, partW4: pw, partB4: pb }, grid1d(lanes * chunks, WG), { defines: { T: dt, WG }, cost: affineCost });
      } else {
        rt.dispatch(normKernel, 'rowAffineGrad', { p: pa, x: xs, dy: gy, savedMean: mean, savedRstd: rstd, partW: pw, partB: pb }, grid1d(lanes * chunks, WG), { defines: { T: dt, WG }, cost: affineCost });
      }
      if (needW) grads.dw = sumPartials(rt, pw, n, chunks, dt, `${op}.grad_w`);
      if (needB) grads.db = sumPartials(rt, pb, n, chunks, dt, `${op}.grad_b`);
      pw.dispose();
      pb.dispose();
    }
    const result: (Tensor | null)[] = [needs[0] ? dx : null];
    if (!needs[0]) dx.dispose();
    if (weight) result.push(grads.dw);
    if (bias) result.push(grads.db);
    return result;
  });
  // mean/rstd live on only as saved tensors of the node (or not at all without grad)
  mean.dispose();
  rstd.dispose();
  return { y: out, sum: sum && residual ? normed : null };
}

/** LayerNorm over the last axis of x [..., C]; weight/bias [C] or null. */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  checkFloat('layerNorm', x);
  const n = x.shape[x.shape.length - 1];
  if (!n) throw new Error(`layerNorm: x [${x.shape}] has an empty last axis`);
  checkAffine('layerNorm', x, weight, n, 'weight');
  checkAffine('layerNorm', x, bias, n, 'bias');
  return rowNorm('layerNorm', x, weight, bias, eps, x.size / n, n, false, 1).y;
}

/** GroupNorm with one group per channel on x [B, C, T]: each (b, c) normalized over all of T; weight/bias [C]. */
export function groupNormPerChannel(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  checkFloat('groupNormPerChannel', x);
  if (x.shape.length !== 3) throw new Error(`groupNormPerChannel: x must be [B, C, T], got [${x.shape}]`);
  const [b, c, t] = x.shape;
  checkAffine('groupNormPerChannel', x, weight, c, 'weight');
  checkAffine('groupNormPerChannel', x, bias, c, 'bias');
  return rowNorm('groupNormPerChannel', x, weight, bias, eps, b * c, t, true, c).y;
}

/**
 * Fused residual add + LayerNorm over the last axis: sum = x + residual, y = LayerNorm(sum), in one pass over x and
 * residual (the pre-LN transformer's residual stream: `sum` is the stream's next value, `y` the sublayer's input).
 * Backward: LayerNorm's backward into sum's gradient (added to whatever else flows into sum), then the identity to
 * x and residual.
 */
export function residualLayerNorm(x: Tensor, residual: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): { y: Tensor; sum: Tensor } {
  const op = 'residualLayerNorm';
  checkFloat(op, x);
  if (residual.dtype !== x.dtype || residual.shape.length !== x.shape.length || residual.shape.some((s, i) => s !== x.shape[i])) {
    throw new Error(`${op}: residual ${residual.dtype} [${residual.shape}] must match x ${x.dtype} [${x.shape}]`);
  }
  const n = x.shape[x.shape.length - 1];
  if (!n) throw new Error(`${op}: x [${x.shape}] has an empty last axis`);
  checkAffine(op, x, weight, n, 'weight');
  checkAffine(op, x, bias, n, 'bias');
  const { y, sum } = rowNorm(op, x, weight, bias, eps, x.size / n, n, false, 1, residual);
  return { y, sum: sum! };
}

/**
 * LayerNorm over the channels of x [B, C, T] for each (b, t): LayerNorm(x.transpose(1, 2)).transpose(1, 2); with
 * activation 'gelu', GELU of that in the same pass (the feature encoder's conv -> LayerNorm -> GELU: one pass over
 * the activations fewer, forward and backward).
 */
export function layerNormChannels(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number, opts: { activation?: 'none' | 'gelu' } = {}): Tensor {
  const op = 'layerNormChannels';
  checkFloat(op, x);
  if (x.shape.length !== 3) throw new Error(`${op}: x must be [B, C, T], got [${x.shape}]`);
  const [batch, C, T] = x.shape;
  checkAffine(op, x, weight, C, 'weight');
  checkAffine(op, x, bias, C, 'bias');
  const rt = x.rt;
  const dt = x.dtype;
  const gelu = opts.activation === 'gelu';
  const groups = batch * T;
  const y = Tensor.empty(rt, x.shape, dt, gelu ? `${op}.gelu` : op);
  const mean = Tensor.empty(rt, [groups], 'f32', `${op}.mean`);
  const rstd = Tensor.empty(rt, [groups], 'f32', `${op}.rstd`);
  const p = params({ rows: groups, n: C, channels: C, inner: T, eps, hasWeight: weight ? 1 : 0, hasBias: bias ? 1 : 0 });
  const defines = { T: dt, WG, ACT: gelu ? '1u' : '0u' };
  rt.dispatch(normKernel, 'channelNormForward', { p, x, weight: weight ?? x, bias: bias ?? x, y, mean, rstd }, grid1d(groups, WG), { defines, cost: { bytes: bytesOf(x, y, weight, bias, mean, rstd) } });
  const inputs = [x, ...(weight ? [weight] : []), ...(bias ? [bias] : [])];
  // the GELU's backward recomputes the normalized value, which needs the bias too
  const saved = [x, mean, rstd, ...(weight ? [weight] : []), ...(gelu && bias ? [bias] : [])];
  const out = record(op, y, inputs, saved, (gyOut, needs) => {
    const needW = weight ? needs[1] : false;
    const needB = bias ? needs[weight ? 2 : 1] : false;
    // through the GELU first: the rest is the plain LayerNorm backward of dz
    let gy = gyOut;
    if (gelu) {
      gy = Tensor.empty(rt, x.shape, dt, `${op}.grad_gelu`);
      rt.dispatch(normKernel, 'channelNormActGrad', { p, x, weight: weight ?? x, bias: bias ?? x, dy: gyOut, savedMean: mean, savedRstd: rstd, dx: gy }, grid1d(groups, WG), { defines, cost: { bytes: bytesOf(x, gyOut, gy, weight, bias, mean, rstd) } });
    }
    let dx: Tensor | null = null;
    if (needs[0]) {
      dx = Tensor.empty(rt, x.shape, dt, `${op}.grad_x`);
      rt.dispatch(normKernel, 'channelNormBackward', { p, x, weight: weight ?? x, dy: gy, savedMean: mean, savedRstd: rstd, dx }, grid1d(groups, WG), { defines: { T: dt, WG }, cost: { bytes: bytesOf(x, gy, dx, weight, mean, rstd) } });
    }
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (needW || needB) {
      const [chunk, chunks] = chunking(groups, C);
      const pw = Tensor.empty(rt, [chunks, C], 'f32', `${op}.grad_w.partial`);
      const pb = Tensor.empty(rt, [chunks, C], 'f32', `${op}.grad_b.partial`);
      rt.dispatch(normKernel, 'channelAffineGrad', { p: { ...p, chunk, chunks }, x, dy: gy, savedMean: mean, savedRstd: rstd, partW: pw, partB: pb }, grid1d(C * chunks, WG), {
        defines: { T: dt, WG }, cost: { bytes: bytesOf(x, gy, mean, rstd, pw, pb) },
      });
      if (needW) dw = sumPartials(rt, pw, C, chunks, dt, `${op}.grad_w`);
      if (needB) db = sumPartials(rt, pb, C, chunks, dt, `${op}.grad_b`);
      pw.dispose();
      pb.dispose();
    }
    if (gy !== gyOut) gy.dispose();
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(dw);
    if (bias) grads.push(db);
    return grads;
  });
  mean.dispose();
  rstd.dispose();
  return out;
}

/**
 * Weight normalization: w = g * v / ||v||, the norm over every axis of v except `dim` (PyTorch weight_norm(dim)).
 * g has v's rank with 1 everywhere but dim (or is 1-D [v.shape[dim]]). Output has v's shape.
 */
export function weightNorm(g: Tensor, v: Tensor, dim: number): Tensor {
  const op = 'weightNorm';
  checkFloat(op, v);
  if (!Number.isInteger(dim) || dim < 0 || dim >= v.shape.length) throw new Error(`${op}: dim ${dim} out of range for v [${v.shape}]`);
  const D = v.shape[dim];
  const gOk = g.size === D && (g.shape.length === 1 || (g.shape.length === v.shape.length && g.shape.every((s, i) => s === (i === dim ? D : 1))));
  if (!gOk) throw new Error(`${op}: g [${g.shape}] must be [${v.shape.map((s, i) => (i === dim ? s : 1))}] for v [${v.shape}] and dim ${dim}`);
  if (g.dtype !== v.dtype) throw new Error(`${op}: g is ${g.dtype}, v is ${v.dtype}`);
  const rt = v.rt;
  const dt = v.dtype;
  const outer = v.shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const inner = v.shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const pairs = outer * inner;
  const [chunk, chunks] = chunking(pairs, D);
  const p = { outer, dim: D, inner, n: v.size, chunk, chunks, backward: 0 };
  const pow2 = (k: number) => (k & (k - 1)) === 0;
  const defines = { T: dt, WG, EPT: WEIGHT_NORM_EPT, INNER_SHIFT: pow2(inner) ? Math.log2(inner) : -1, DIM_MASK: pow2(D) && D > 1 ? D - 1 : 0 };
  const norm = Tensor.empty(rt, [D], 'f32', `${op}.norm`);
  const partial = Tensor.empty(rt, [chunks, D], 'f32', `${op}.partial`);
  // forward binds v as the unused dw: the kernel selects v * v there
  rt.dispatch(weightNormKernel, 'weightNormPartial', { p, v, dw: v, partial }, grid1d(D * chunks, WG), { defines, cost: { bytes: bytesOf(v, partial) } });
  rt.dispatch(weightNormKernel, 'weightNormFinishNorm', { p, parts: partial, norm }, grid1d(D, WG), { defines, cost: { bytes: bytesOf(partial, norm) } });
  partial.dispose();
  const w = Tensor.empty(rt, v.shape, dt, op);
  rt.dispatch(weightNormKernel, 'weightNormForward', { p, v, g, savedNorm: norm, w }, grid1d(ceilDiv(v.size, WEIGHT_NORM_EPT), WG), { defines, cost: { bytes: bytesOf(v, g, norm, w) } });
  const out = record(op, w, [g, v], [g, v, norm], (gw, needs) => {
    const pb = { ...p, backward: 1 };
    const dg = Tensor.empty(rt, g.shape, dt, `${op}.grad_g`);
    const part = Tensor.empty(rt, [chunks, D], 'f32', `${op}.grad_g.partial`);
    rt.dispatch(weightNormKernel, 'weightNormPartial', { p: pb, v, dw: gw, partial: part }, grid1d(D * chunks, WG), { defines, cost: { bytes: bytesOf(v, gw, part) } });
    rt.dispatch(weightNormKernel, 'weightNormFinishGrad', { p: pb, parts: part, savedNorm: norm, dg }, grid1d(D, WG), { defines, cost: { bytes: bytesOf(part, norm, dg) } });
    part.dispose();
    let dv: Tensor | null = null;
    if (needs[1]) {
      dv = Tensor.empty(rt, v.shape, dt, `${op}.grad_v`);
      rt.dispatch(weightNormKernel, 'weightNormBackwardV', { p, v, g, dw: gw, savedNorm: norm, dg, dv }, grid1d(ceilDiv(v.size, WEIGHT_NORM_EPT), WG), { defines, cost: { bytes: bytesOf(v, g, gw, norm, dg, dv) } });
    }
    if (!needs[0]) {
      dg.dispose();
      return [null, dv];
    }
    return [dg, dv];
  });
  norm.dispose();
  return out;
}
