// Elementwise ops: each forward dispatch sits next to its backward.
import source from '../../kernels/elementwise.wgsl';
import { defineKernel, type Defines } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import { record, registerGradHelpers } from '../autograd.js';
import { grid1d } from './grid.js';

export const elementwiseKernel = defineKernel('elementwise', source);
const WG = 256;

/** Runs on vec4 threads when n % 4 == 0 (kernels/elementwise.wgsl V / VF / VS). */
function run(entry: string, bindings: Record<string, Tensor>, n: number, dtype: string, params: Partial<{ alpha: number; beta: number; value: number }> = {}, srcDtype = 'f32'): void {
  const rt = Object.values(bindings)[0].rt;
  const vec4 = n % 4 === 0;
  const count = vec4 ? n / 4 : n;
  const defines: Defines = vec4 ? { T: dtype, S: srcDtype, V: `vec4<${dtype}>`, VF: 'vec4f', VS: `vec4<${srcDtype}>` } : { T: dtype, S: srcDtype };
  // every bound tensor is read or written once (accumulate reads acc and writes it: twice)
  let bytes = 0;
  for (const t of Object.values(bindings)) bytes += t.byteLength;
  if (entry === 'accumulate') bytes += bindings.acc.byteLength;
  rt.dispatch(elementwiseKernel, entry, { ...bindings, p: { n: count, alpha: params.alpha ?? 1, beta: params.beta ?? 0, value: params.value ?? 0 } }, grid1d(count, WG), { defines, cost: { bytes } });
}

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.join() !== b.shape.join() || a.dtype !== b.dtype) {
    throw new Error(`${op}: shapes/dtypes differ: ${a.label} [${a.shape}] ${a.dtype} vs ${b.label} [${b.shape}] ${b.dtype}`);
  }
}

export function full(like: { rt: Tensor['rt'] }, shape: readonly number[], value: number, dtype: Tensor['dtype'] = 'f32', label = 'full'): Tensor {
  const y = Tensor.empty(like.rt, shape, dtype, label);
  if (dtype === 'i32') {
    y.write(new Int32Array(y.size).fill(value));
    return y;
  }
  run('fill', { y }, y.size, dtype, { value });
  return y;
}

export function zerosLike(t: Tensor): Tensor {
  return full(t, t.shape, 0, t.dtype, `${t.label}.zeros`);
}

export function onesLike(t: Tensor): Tensor {
  return full(t, t.shape, 1, t.dtype, `${t.label}.ones`);
}

/** y = a + alpha * b */
export function add(a: Tensor, b: Tensor, alpha = 1): Tensor {
  sameShape('add', a, b);
  const y = Tensor.empty(a.rt, a.shape, a.dtype, 'add');
  run('add', { y, a, b }, y.size, a.dtype, { alpha });
  // the gradient itself goes to a (the engine copies it for b when b needs it too): no copy per residual add
  return record('add', y, [a, b], [], (gy, needs) => [
    needs[0] ? gy : null,
    needs[1] ? (alpha === 1 ? gy : scale(gy, alpha)) : null,
  ]);
}

export function sub(a: Tensor, b: Tensor): Tensor {
  return add(a, b, -1);
}

/** a += b in place (no autograd: for gradient accumulation and optimizers). */
export function accumulate(acc: Tensor, b: Tensor): void {
  sameShape('accumulate', acc, b);
  run('accumulate', { acc, b }, acc.size, acc.dtype);
}

export function mul(a: Tensor, b: Tensor): Tensor {
  sameShape('mul', a, b);
  const y = Tensor.empty(a.rt, a.shape, a.dtype, 'mul');
  run('mul', { y, a, b }, y.size, a.dtype);
  return record('mul', y, [a, b], [a, b], (gy, needs) => {
    const ga = needs[0] ? Tensor.empty(a.rt, a.shape, a.dtype, 'mul.grad_a') : null;
    if (ga) run('mul', { y: ga, a: gy, b }, ga.size, a.dtype);
    const gb = needs[1] ? Tensor.empty(a.rt, a.shape, a.dtype, 'mul.grad_b') : null;
    if (gb) run('mul', { y: gb, a: gy, b: a }, gb.size, a.dtype);
    return [ga, gb];
  });
}

/** y = alpha * a + beta */
export function scale(a: Tensor, alpha: number, beta = 0): Tensor {
  const y = Tensor.empty(a.rt, a.shape, a.dtype, 'scale');
  run('scale', { y, a }, y.size, a.dtype, { alpha, beta });
  return record('scale', y, [a], [], (gy) => [scale(gy, alpha)]);
}

/**
 * Convert between f32 and f16 storage (round to nearest even; beyond f16's range gives +-inf on IEEE hardware).
 * Backward converts the gradient back to the input's dtype. Casting to the same dtype returns x itself.
 */
export function cast(x: Tensor, dtype: 'f32' | 'f16'): Tensor {
  if (x.dtype === dtype) return x;
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new Error(`cast: ${x.label} is ${x.dtype}; only f32 <-> f16 casts exist`);
  if (dtype === 'f16' && !x.rt.hasF16) throw new Error(`cast: ${x.label} to f16 needs the adapter feature shader-f16, which this adapter lacks`);
  const from = x.dtype;
  const y = Tensor.empty(x.rt, x.shape, dtype, `${x.label}.${dtype}`);
  run('convert', { y, src: x }, y.size, dtype, {}, from);
  return record('cast', y, [x], [], (gy) => [cast(gy, from)]);
}

registerGradHelpers(accumulate, onesLike, (t) => scale(t, 1));
