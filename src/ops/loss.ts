// Classification loss (mean cross-entropy over the batch), regression loss (MSE) and softmax over the last axis, with the forward dispatch
// next to its backward.
import source from '../../kernels/loss.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { bytesOf, ceilDiv, grid1d } from './grid.js';
import { mean, reduceToScalar } from './reduce.js';
import { normSubgroupSize } from './norm.js';
import { mul, sub } from './elementwise.js'; // also registers the gradient helpers backward() needs

export const lossKernel = defineKernel('loss', source);
const WG = 64;

const PORTABLE_ROW_REDUCTIONS = /\/\/ ==== row reductions \(portable\)[\s\S]*?\/\/ ==== end row reductions\n/;
if (!PORTABLE_ROW_REDUCTIONS.test(source)) throw new Error('kernels/loss.wgsl: the portable row reductions section is missing');
/** The same file with the row reductions as subgroup operations: run with WG = a fixed subgroup size. */
export const lossSubgroupKernel = defineKernel(
  'loss_subgroups',
  `enable subgroups;\n${source.replace(
    PORTABLE_ROW_REDUCTIONS,
    'fn rowMax(lid: u32, v: f32) -> f32 { return subgroupMax(v); }\nfn rowTotal(lid: u32, v: f32) -> f32 { return subgroupAdd(v); }\n',
  )}`,
);

/**
 * logits [B, L], labels i32 [B] (class indices in [0, L)) -> [1]: mean over the batch of -log softmax(logits)[label].
 * A label outside [0, L) makes the loss NaN rather than silently wrong.
 */
export function crossEntropy(logits: Tensor, labels: Tensor): Tensor {
  if (logits.dtype !== 'f32' || logits.shape.length !== 2) throw new Error(`crossEntropy: logits must be f32 [B, L], got ${logits.dtype} [${logits.shape}]`);
  const [B, L] = logits.shape;
  if (labels.dtype !== 'i32' || labels.shape.join() !== `${B}`) throw new Error(`crossEntropy: labels must be i32 [${B}], got ${labels.dtype} [${labels.shape}]`);
  if (L === 0) throw new Error('crossEntropy: no classes');
  const rt = logits.rt;
  const rp = { rows: B, len: L, scale: 1 / Math.max(1, B) };
  const rowLoss = Tensor.empty(rt, [B], 'f32', 'crossEntropy.rows');
  const lse = Tensor.empty(rt, [B], 'f32', 'crossEntropy.lse');
  rt.dispatch(lossKernel, 'crossEntropyForward', { rp, x: logits, labels, loss: rowLoss, lse }, grid1d(B, 1), { cost: { bytes: bytesOf(logits, labels, rowLoss, lse) } });
  const out = reduceToScalar(rowLoss, { scale: rp.scale });
  rowLoss.dispose();
  record('crossEntropy', out, [logits], [logits, labels, lse], (g) => {
    const gx = Tensor.empty(rt, logits.shape, 'f32', 'crossEntropy.grad');
    rt.dispatch(lossKernel, 'crossEntropyBackward', { rp, x: logits, labels, lseIn: lse, g, gx }, grid1d(gx.size, WG), { cost: { bytes: bytesOf(logits, labels, lse, g, gx) } });
    return [gx];
  });
  lse.dispose(); // kept alive by the node's saved reference when there is one
  return out;
}

const SOFTMAX_MAX_ROWS_PER_WG = 16;

/** Softmax over the last axis (for predictions: no gradient). */
export function softmax(x: Tensor): Tensor {
  if (x.dtype !== 'f32' || x.shape.length < 1) throw new Error(`softmax: expected f32 with at least one axis, got ${x.dtype} [${x.shape}]`);
  const L = x.shape[x.shape.length - 1];
  const rows = L === 0 ? 0 : x.size / L;
  const y = Tensor.empty(x.rt, x.shape, 'f32', 'softmax');
  // the same subgroup-size rule as the norm rows (one subgroup per row)
  const sg = normSubgroupSize(x.rt);
  const kernel = sg ? lossSubgroupKernel : lossKernel;
  // short rows share a workgroup (a workgroup's start-up costs about a row of 200 on lavapipe): up to 16 rows, about
  // 4096 elements per workgroup (3200 rows of 200: 1.1-1.5x over one row per workgroup, measured on lavapipe)
  const rowsPerWorkgroup = Math.max(1, Math.min(SOFTMAX_MAX_ROWS_PER_WG, Math.floor(4096 / Math.max(1, L))));
  const defines = { WG: sg ?? WG, ROWS_PER_WG: `${rowsPerWorkgroup}u` };
  const rp = { rows, len: L, scale: 1 };
  const cost = { bytes: bytesOf(x, y) };
  const groups = grid1d(ceilDiv(rows, rowsPerWorkgroup), 1);
  if (L % 4 === 0) x.rt.dispatch(kernel, 'softmaxRows4', { rp, x4: x, y4: y }, groups, { defines, cost });
  else x.rt.dispatch(kernel, 'softmaxRows', { rp, x, y }, groups, { defines, cost });
  return y;
}

/**
 * Regression loss: mean over all B*L elements of (predictions - targets)^2 (torch's MSELoss(), as the notebook's
 * problem_type "regression" branch). Built from sub, mul and mean, whose backward passes are tested on their own.
 */
export function mseLoss(predictions: Tensor, targets: Tensor): Tensor {
  if (predictions.dtype !== 'f32' || targets.dtype !== 'f32' || predictions.shape.join() !== targets.shape.join()) {
    throw new Error(`mseLoss: predictions ${predictions.dtype} [${predictions.shape}] and targets ${targets.dtype} [${targets.shape}] must be f32 of one shape`);
  }
  const d = sub(predictions, targets);
  const sq = mul(d, d);
  d.dispose();
  const out = mean(sq);
  sq.dispose();
  return out;
}
