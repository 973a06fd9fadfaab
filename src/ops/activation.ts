// Activations: gelu (exact erf form), tanh, dropout. Each forward dispatch sits next to its backward.
import source from '../../kernels/activation.wgsl';
import { defineKernel, type Defines } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import { record, nextRandom } from '../autograd.js';
import { grid1d } from './grid.js';
import './elementwise.js'; // registers the gradient helpers backward() needs

export const activationKernel = defineKernel('activation', source);
const WG = 256;

function floatInput(op: string, x: Tensor): void {
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new Error(`${op}: ${x.label} is ${x.dtype}; expected f32 or f16`);
}

/** Elementwise entries run on vec4 when n % 4 == 0 (kernels/activation.wgsl V / VF). */
/** Cost: every bound tensor read or written once. */
function dispatch(entry: string, bindings: Record<string, Tensor>, n: number, dtype: Tensor['dtype']): void {
  const rt = Object.values(bindings)[0].rt;
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  const defines: Defines = vec4 ? { T: dtype, V: `vec4<${dtype}>`, VF: 'vec4f' } : { T: dtype };
  let bytes = 0;
  for (const t of Object.values(bindings)) bytes += t.byteLength;
  rt.dispatch(activationKernel, entry, { ...bindings, sizes: { n: count } }, grid1d(count, WG), { defines, cost: { bytes } });
}

/** y = 0.5 x (1 + erf(x / sqrt 2)) */
export function gelu(x: Tensor): Tensor {
  floatInput('gelu', x);
  const y = Tensor.empty(x.rt, x.shape, x.dtype, 'gelu');
  dispatch('geluForward', { x, y }, x.size, x.dtype);
  return record('gelu', y, [x], [x], (gy) => {
    const gx = Tensor.empty(x.rt, x.shape, x.dtype, 'gelu.grad');
    dispatch('geluBackward', { x, gy, gx }, x.size, x.dtype);
    return [gx];
  });
}

export function tanh(x: Tensor): Tensor {
  floatInput('tanh', x);
  const y = Tensor.empty(x.rt, x.shape, x.dtype, 'tanh');
  dispatch('tanhForward', { x, y }, x.size, x.dtype);
  // the output is what backward needs (1 - y^2); it outlives the forward scope through the node's saved list
  return record('tanh', y, [x], [y], (gy) => {
    const gx = Tensor.empty(x.rt, x.shape, x.dtype, 'tanh.grad');
    dispatch('tanhBackward', { yIn: y, gy, gx }, x.size, x.dtype);
    return [gx];
  });
}

/** Keep threshold on the 32-bit hash: an element is kept when hash >= round(p * 2^32), i.e. with probability 1 - p. */
export function dropoutThreshold(p: number): number {
  return Math.min(0xffffffff, Math.round(p * 2 ** 32));
}

function dropoutApply(src: Tensor, dst: Tensor, seed: number, offset: number, p: number): void {
  const n = src.size;
  const params = { n, seed, offset, threshold: dropoutThreshold(p), scale: p >= 1 ? 0 : 1 / (1 - p) };
  const cost = { bytes: src.byteLength + dst.byteLength };
  if (n % 4 === 0) src.rt.dispatch(activationKernel, 'dropoutApply4', { dp: params, dropX4: src, dropY4: dst }, grid1d(n / 4, WG), { defines: { T: src.dtype }, cost });
  else src.rt.dispatch(activationKernel, 'dropoutApply', { dp: params, x: src, y: dst }, grid1d(n, WG), { defines: { T: src.dtype }, cost });
}

/**
 * Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p). Identity (returns x itself)
 * when !training or p == 0. The mask is hashed from (seed, offset + index) reserved with nextRandom(), so backward
 * regenerates it instead of storing it, and checkpoint() replays it.
 */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  floatInput('dropout', x);
  const { seed, offset } = nextRandom(x.size);
  const y = Tensor.empty(x.rt, x.shape, x.dtype, 'dropout');
  dropoutApply(x, y, seed, offset, p);
  return record('dropout', y, [x], [], (gy) => {
    const gx = Tensor.empty(x.rt, x.shape, x.dtype, 'dropout.grad');
    dropoutApply(gy, gx, seed, offset, p);
    return [gx];
  });
}
