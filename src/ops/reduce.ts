// Reductions: sum, mean, poolTime (mean/sum/max over frames with an optional padding mask), weightedLayerSum
// (HF use_weighted_layer_sum). All deterministic (fixed-order trees, no float atomics). reduceInto/reducePass are the
// building blocks other ops use (loss mean, gradient norm) without autograd.
import source from '../../kernels/reduce.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../tensor.js';
import { record, keep } from '../autograd.js';
import { bytesOf, grid1d, ceilDiv, fixedSubgroupSize } from './grid.js';
import './elementwise.js'; // registers the gradient helpers backward() needs

export const reduceKernel = defineKernel('reduce', source);
const WG = 256;
const PER_THREAD = 8;
const WG_C = 64;
/** elements one workgroup of partialSums reduces */
export const REDUCE_CHUNK = WG * PER_THREAD;

/** The same file with finishPartial as one subgroupAdd: run with WG = a fixed subgroup size (one subgroup per chunk). */
const PORTABLE_FINISH = /\/\/ ==== finishPartial \(portable\)[\s\S]*?\/\/ ==== end finishPartial\n/;
if (!PORTABLE_FINISH.test(source)) throw new Error('kernels/reduce.wgsl: the portable finishPartial section is missing');
const reduceSubgroupKernel = defineKernel(
  'reduce_subgroups',
  `enable subgroups;\n${source.replace(PORTABLE_FINISH, `fn finishPartial(lid: u32, group: u32, acc: f32) {
  let total = subgroupAdd(acc);
  if (lid == 0u) {
    var r = total * rp.scale;
    if (rp.finish == 1u) { r = sqrt(r); }
    partials[rp.outOffset + group] = r;
  }
}
`)}`,
);

let subgroupsAllowed = true;
/** Tests and benches: false forces the portable partial sums where the subgroup ones would run. */
export function setReduceSubgroups(allowed: boolean): void {
  subgroupsAllowed = allowed;
}

export type ReduceTerm = 'value' | 'square' | 'product';
const TERM = { value: 0, square: 1, product: 2 } as const;

function f32Input(op: string, x: Tensor): void {
  if (x.dtype !== 'f32') throw new Error(`${op}: ${x.label} is ${x.dtype}; only f32 is supported`);
}

/**
 * One pass: dst[dstOffset + g] = (sqrt?)(scale * sum of term over chunk g of x), for g < ceil(n / REDUCE_CHUNK).
 * Returns the number of partial sums written. No autograd.
 */
export function reducePass(x: Tensor, dst: Tensor, dstOffset: number, opts: { term?: ReduceTerm; other?: Tensor; scale?: number; sqrt?: boolean; n?: number } = {}): number {
  const n = opts.n ?? x.size;
  const groups = Math.max(1, ceilDiv(n, REDUCE_CHUNK));
  const term = opts.term ?? 'value';
  if (term === 'product' && !opts.other) throw new Error('reducePass: a product needs `other`');
  const rp = { n, groups, outOffset: dstOffset, term: TERM[term], finish: opts.sqrt ? 1 : 0, scale: opts.scale ?? 1 };
  // vec4 loads when the elements fill whole vec4s (x, and other, hold at least n elements from offset 0)
  const cost = { bytes: 4 * n * (term === 'product' ? 2 : 1) + 4 * groups };
  // one subgroup per chunk where the adapter has a fixed subgroup size dividing the chunk (lavapipe: 8 lanes)
  const sg = subgroupsAllowed ? fixedSubgroupSize(x.rt) : null;
  const kernel = sg && REDUCE_CHUNK % (4 * sg) === 0 ? reduceSubgroupKernel : reduceKernel;
  const defines = kernel === reduceSubgroupKernel ? { WG: sg!, PER_THREAD: REDUCE_CHUNK / sg! } : undefined;
  if (n % 4 === 0) x.rt.dispatch(kernel, 'partialSums4', { rp, x4: x, other4: opts.other ?? x, partials: dst }, grid1d(groups, 1), { cost, defines });
  else x.rt.dispatch(kernel, 'partialSums', { rp, x, other: opts.other ?? x, partials: dst }, grid1d(groups, 1), { cost, defines });
  return groups;
}

/**
 * out[outIndex] = (sqrt?)(scale * sum_i term(x[i])): a first pass over x, then passes over the partial sums until one
 * is left (the last pass applies scale and sqrt and writes straight into out). No autograd.
 */
export function reduceInto(x: Tensor, out: Tensor, outIndex: number, opts: { term?: ReduceTerm; other?: Tensor; scale?: number; sqrt?: boolean } = {}): void {
  let src = x;
  let n = x.size;
  let term: ReduceTerm = opts.term ?? 'value';
  let other = opts.other;
  for (;;) {
    const groups = Math.max(1, ceilDiv(n, REDUCE_CHUNK));
    const last = groups === 1;
    const dst = last ? out : Tensor.empty(x.rt, [groups], 'f32', 'reduce.partials');
    reducePass(src, dst, last ? outIndex : 0, { term, other, n, scale: last ? opts.scale : 1, sqrt: last && opts.sqrt });
    if (src !== x) src.dispose(); // the pass that reads it is already recorded; the stream keeps the order
    if (last) return;
    src = dst;
    n = groups;
    term = 'value';
    other = undefined;
  }
}

/** A new [1] tensor holding (sqrt?)(scale * sum term(x)). No autograd. */
export function reduceToScalar(x: Tensor, opts: { term?: ReduceTerm; other?: Tensor; scale?: number; sqrt?: boolean } = {}): Tensor {
  const out = Tensor.empty(x.rt, [1], 'f32', 'reduce');
  reduceInto(x, out, 0, opts);
  return out;
}

function broadcastScalar(g: Tensor, shape: readonly number[], scale: number, label: string): Tensor {
  const gx = Tensor.empty(g.rt, shape, 'f32', label);
  g.rt.dispatch(reduceKernel, 'broadcastScalar', { bp: { n: gx.size, scale }, g, gx }, grid1d(gx.size, WG), { cost: { bytes: bytesOf(g, gx) } });
  return gx;
}

/** Sum of all elements -> [1]. */
export function sum(x: Tensor): Tensor {
  f32Input('sum', x);
  const y = reduceToScalar(x);
  return record('sum', y, [x], [], (gy) => [broadcastScalar(gy, x.shape, 1, 'sum.grad')]);
}

/** Mean of all elements -> [1]. */
export function mean(x: Tensor): Tensor {
  f32Input('mean', x);
  const scale = 1 / Math.max(1, x.size);
  const y = reduceToScalar(x, { scale });
  return record('mean', y, [x], [], (gy) => [broadcastScalar(gy, x.shape, scale, 'mean.grad')]);
}

// A bound-but-unread stand-in for an absent mask (every binding must be bound); one per runtime, never disposed.
const dummyMasks = new WeakMap<Runtime, Tensor>();
function dummyMask(rt: Runtime): Tensor {
  let m = dummyMasks.get(rt);
  if (!m || m.disposed) {
    m = keep(Tensor.empty(rt, [1], 'i32', 'no-mask'));
    dummyMasks.set(rt, m);
  }
  return m;
}

/**
 * x [B, T, C] -> [B, C], pooling over frames. With a mask (i32 [B, T], nonzero = real frame) only real frames count:
 * mean divides by the real count (0 when there is none), max routes its gradient to the (first) argmax frame.
 */
export function poolTime(x: Tensor, mode: 'mean' | 'sum' | 'max', mask?: Tensor | null): Tensor {
  f32Input('poolTime', x);
  if (x.shape.length !== 3) throw new Error(`poolTime: ${x.label} has shape [${x.shape}]; expected [B, T, C]`);
  const [B, T, C] = x.shape;
  if (mask && (mask.dtype !== 'i32' || mask.shape.join() !== `${B},${T}`)) {
    throw new Error(`poolTime: mask must be i32 [${B}, ${T}], got ${mask.dtype} [${mask.shape}]`);
  }
  if (B > 65535) throw new Error(`poolTime: batch ${B} exceeds one dispatch`);
  const rt = x.rt;
  const m = mask ?? dummyMask(rt);
  const pp = { batch: B, frames: T, channels: C, hasMask: mask ? 1 : 0, mean: mode === 'mean' ? 1 : 0 };
  const y = Tensor.empty(rt, [B, C], 'f32', `poolTime.${mode}`);
  const wgs: [number, number] = [ceilDiv(C, WG_C), B];
  if (mode === 'max') {
    const argmax = Tensor.empty(rt, [B, C], 'i32', 'poolTime.argmax');
    rt.dispatch(reduceKernel, 'poolTimeMax', { pp, x, mask: m, y, argmax }, wgs, { cost: { bytes: bytesOf(x, mask, y, argmax) } });
    record('poolTime.max', y, [x], [argmax], (gy) => {
      const gx = Tensor.empty(rt, x.shape, 'f32', 'poolTime.grad');
      rt.dispatch(reduceKernel, 'poolTimeMaxBackward', { pp, gy, argmaxIn: argmax, gx }, grid1d(gx.size, WG), { cost: { bytes: bytesOf(gy, argmax, gx) } });
      return [gx];
    });
    argmax.dispose(); // the node's saved reference (if any) keeps it until backward
    return y;
  }
  if (mode !== 'mean' && mode !== 'sum') throw new Error(`poolTime: unknown mode '${mode}'`);
  rt.dispatch(reduceKernel, 'poolTimeSum', { pp, x, mask: m, y }, wgs, { cost: { bytes: bytesOf(x, mask, y) } });
  return record(`poolTime.${mode}`, y, [x], [m], (gy) => {
    const counts = Tensor.empty(rt, [B], 'f32', 'poolTime.counts');
    rt.dispatch(reduceKernel, 'maskCounts', { pp, mask: m, counts }, [ceilDiv(B, WG)], { cost: { bytes: bytesOf(mask, counts) } });
    const gx = Tensor.empty(rt, x.shape, 'f32', 'poolTime.grad');
    rt.dispatch(reduceKernel, 'poolTimeSumBackward', { pp, gy, mask: m, frameCounts: counts, gx }, grid1d(gx.size, WG), { cost: { bytes: bytesOf(gy, mask, counts, gx) } });
    counts.dispose();
    return [gx];
  });
}

const LAYERS_PER_PASS = 4;

/** softmax(logits [L])-weighted sum of L same-shape tensors (HF use_weighted_layer_sum). */
export function weightedLayerSum(xs: Tensor[], logits: Tensor): Tensor {
  const L = xs.length;
  if (L === 0) throw new Error('weightedLayerSum: no tensors');
  f32Input('weightedLayerSum', logits);
  if (logits.shape.join() !== `${L}`) throw new Error(`weightedLayerSum: logits must be [${L}], got [${logits.shape}]`);
  const shape = xs[0].shape;
  for (const x of xs) {
    f32Input('weightedLayerSum', x);
    if (x.shape.join() !== shape.join()) throw new Error(`weightedLayerSum: ${x.label} [${x.shape}] differs from [${shape}]`);
  }
  const rt = logits.rt;
  const n = xs[0].size;
  const lp = (layer: number, count: number, first: boolean) => ({ n, layers: L, layer, count, first: first ? 1 : 0 });
  const w = Tensor.empty(rt, [L], 'f32', 'layerWeights');
  rt.dispatch(reduceKernel, 'layerSoftmax', { lp: lp(0, 0, false), logits, weights: w }, [1], { cost: { bytes: bytesOf(logits, w) } });
  const y = Tensor.empty(rt, shape, 'f32', 'weightedLayerSum');
  for (let l = 0; l < L; l += LAYERS_PER_PASS) {
    const count = Math.min(LAYERS_PER_PASS, L - l);
    // unused slots are bound to x0 (read-only bindings may alias) and skipped by `count`
    const [x0, x1, x2, x3] = [0, 1, 2, 3].map((k) => xs[l + Math.min(k, count - 1)]);
    rt.dispatch(reduceKernel, 'weightedAccumulate', { lp: lp(l, count, l === 0), weightsIn: w, x0, x1, x2, x3, y }, grid1d(n, WG), { cost: { bytes: 4 * n * (count + (l === 0 ? 1 : 2)) + w.byteLength } });
  }
  // the layers themselves are only needed for the logits' gradient
  const saved = logits.requiresGrad ? [w, ...xs] : [w];
  record('weightedLayerSum', y, [...xs, logits], saved, (gy, needs) => {
    const grads: (Tensor | null)[] = xs.map((x, l) => {
      if (!needs[l]) return null;
      const gx = Tensor.empty(rt, shape, 'f32', 'weightedLayerSum.grad');
      rt.dispatch(reduceKernel, 'scaleByWeight', { lp: lp(l, 1, false), weightsIn: w, gy, gx }, grid1d(n, WG), { cost: { bytes: bytesOf(w, gy, gx) } });
      return gx;
    });
    let glogits: Tensor | null = null;
    if (needs[L]) {
      const dots = Tensor.empty(rt, [L], 'f32', 'weightedLayerSum.dots');
      xs.forEach((x, l) => reduceInto(gy, dots, l, { term: 'product', other: x }));
      glogits = Tensor.empty(rt, [L], 'f32', 'weightedLayerSum.grad_logits');
      rt.dispatch(reduceKernel, 'layerSoftmaxBackward', { lp: lp(0, 0, false), weightsIn: w, dots, glogits }, [1], { cost: { bytes: bytesOf(w, dots, glogits) } });
      dots.dispose();
    }
    return [...grads, glogits];
  });
  w.dispose();
  return y;
}
