// Shape and masking ops: transposeLast2, sliceLast, sliceAxis, concat, maskRows, replaceRows (SpecAugment time mask
// with a learned embedding), maskColumns (SpecAugment feature mask). Each forward dispatch sits next to its backward.
import source from '../../kernels/shape.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import { Tensor, bytesPerElement } from '../tensor.js';
import { record } from '../autograd.js';
import { bytesOf, grid1d, ceilDiv } from './grid.js';
import { full } from './elementwise.js'; // also registers the gradient helpers backward() needs

export const shapeKernel = defineKernel('shape', source);
const WG = 256;
const TILE = 16;
const WG_C = 64;

function floatInput(op: string, x: Tensor): void {
  if (x.dtype !== 'f32' && x.dtype !== 'f16') throw new Error(`${op}: ${x.label} is ${x.dtype}; expected f32 or f16`);
}

let transposeMode: 'auto' | 'tiled' | 'direct' = 'auto';
/** Tests and benches: force the workgroup-tiled or the direct transpose kernel ('auto': direct on CPU adapters). */
export function setTransposeKernel(mode: 'auto' | 'tiled' | 'direct'): void {
  transposeMode = mode;
}

/** [..., A, B] -> [..., B, A] */
export function transposeLast2(x: Tensor): Tensor {
  floatInput('transposeLast2', x);
  if (x.shape.length < 2) throw new Error(`transposeLast2: ${x.label} has shape [${x.shape}]; needs at least 2 dims`);
  const rows = x.shape[x.shape.length - 2];
  const cols = x.shape[x.shape.length - 1];
  const lead = x.shape.slice(0, -2);
  const run = (src: Tensor, r: number, c: number, label: string): Tensor => {
    const batch = src.size / Math.max(1, r * c);
    const dst = Tensor.empty(src.rt, [...lead, c, r], src.dtype, label);
    const direct = transposeMode === 'direct' || (transposeMode === 'auto' && src.rt.adapter.isCPU);
    if (direct) {
      src.rt.dispatch(shapeKernel, 'transposeLast2Direct', { tp: { batch, rows: r, cols: c }, x: src, y: dst }, grid1d(dst.size, WG), { defines: { T: src.dtype }, cost: { bytes: bytesOf(src, dst) } });
      return dst;
    }
    if (ceilDiv(r, TILE) > 65535 || ceilDiv(c, TILE) > 65535) throw new Error(`transposeLast2: ${r} x ${c} is too large for one dispatch`);
    src.rt.dispatch(shapeKernel, 'transposeLast2', { tp: { batch, rows: r, cols: c }, x: src, y: dst }, [ceilDiv(c, TILE), ceilDiv(r, TILE), Math.min(batch, 65535)], {
      defines: { T: src.dtype }, cost: { bytes: bytesOf(src, dst) },
    });
    return dst;
  };
  const y = run(x, rows, cols, 'transpose');
  return record('transposeLast2', y, [x], [], (gy) => [run(gy, cols, rows, 'transpose.grad')]);
}

/** x[..., start : start + length] along the last axis. */
export function sliceLast(x: Tensor, start: number, length: number): Tensor {
  floatInput('sliceLast', x);
  const width = x.shape[x.shape.length - 1];
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > width) {
    throw new Error(`sliceLast: [${start}, ${start + length}) is outside the last axis of ${x.label} [${x.shape}]`);
  }
  const lead = x.shape.slice(0, -1);
  const y = Tensor.empty(x.rt, [...lead, length], x.dtype, 'slice');
  const params = (n: number) => ({ sp: { n, width, start, len: length } });
  x.rt.dispatch(shapeKernel, 'sliceLast', { ...params(y.size), x, y }, grid1d(y.size, WG), { defines: { T: x.dtype }, cost: { bytes: 2 * y.byteLength } });
  return record('sliceLast', y, [x], [], (gy) => {
    const gx = Tensor.empty(x.rt, x.shape, x.dtype, 'slice.grad');
    x.rt.dispatch(shapeKernel, 'sliceLastBackward', { ...params(gx.size), x: gy, y: gx }, grid1d(gx.size, WG), { defines: { T: x.dtype }, cost: { bytes: bytesOf(gy, gx) } });
    return [gx];
  });
}

function checkRowMask(op: string, x: Tensor, mask: Tensor): { B: number; T: number; C: number } {
  floatInput(op, x);
  if (x.shape.length !== 3) throw new Error(`${op}: ${x.label} has shape [${x.shape}]; expected [B, T, C]`);
  const [B, T, C] = x.shape;
  if (mask.dtype !== 'i32' || mask.shape.join() !== `${B},${T}`) {
    throw new Error(`${op}: mask must be i32 [${B}, ${T}], got ${mask.dtype} [${mask.shape}]`);
  }
  return { B, T, C };
}

function maskRowsInto(src: Tensor, mask: Tensor, invert: boolean, label: string, dims: { B: number; T: number; C: number }): Tensor {
  const dst = Tensor.empty(src.rt, src.shape, src.dtype, label);
  const mp = { n: dst.size, rows: dims.B * dims.T, frames: dims.T, channels: dims.C, invert: invert ? 1 : 0 };
  src.rt.dispatch(shapeKernel, 'maskRows', { mp, x: src, mask, y: dst }, grid1d(dst.size, WG), { defines: { T: src.dtype }, cost: { bytes: bytesOf(src, mask, dst) } });
  return dst;
}

/** x [B, T, C], mask i32 [B, T]: rows whose mask is 0 become 0 (and get no gradient). */
export function maskRows(x: Tensor, mask: Tensor): Tensor {
  const dims = checkRowMask('maskRows', x, mask);
  const y = maskRowsInto(x, mask, false, 'maskRows', dims);
  return record('maskRows', y, [x], [mask], (gy) => [maskRowsInto(gy, mask, false, 'maskRows.grad', dims)]);
}

/**
 * SpecAugment time mask: rows whose mask is 1 are replaced by `row` [C] (wav2vec2's masked_spec_embed).
 * Gradients: x's kept rows get gy, row gets the sum of gy over the replaced rows.
 */
export function replaceRows(x: Tensor, mask: Tensor, row: Tensor): Tensor {
  const dims = checkRowMask('replaceRows', x, mask);
  if (row.shape.join() !== `${dims.C}` || row.dtype !== x.dtype) {
    throw new Error(`replaceRows: row must be ${x.dtype} [${dims.C}], got ${row.dtype} [${row.shape}]`);
  }
  const y = Tensor.empty(x.rt, x.shape, x.dtype, 'replaceRows');
  const mp = { n: y.size, rows: dims.B * dims.T, frames: dims.T, channels: dims.C, invert: 0 };
  x.rt.dispatch(shapeKernel, 'replaceRows', { mp, x, mask, row, y }, grid1d(y.size, WG), { defines: { T: x.dtype }, cost: { bytes: bytesOf(x, mask, row, y) } });
  return record('replaceRows', y, [x, row], [mask], (gy, needs) => {
    const gx = needs[0] ? maskRowsInto(gy, mask, true, 'replaceRows.grad_x', dims) : null;
    let grow: Tensor | null = null;
    if (needs[1]) {
      grow = Tensor.empty(x.rt, row.shape, row.dtype, 'replaceRows.grad_row');
      x.rt.dispatch(shapeKernel, 'replaceRowsGradRow', { mp, x: gy, mask, grow }, [ceilDiv(dims.C, WG_C)], { defines: { T: x.dtype }, cost: { bytes: bytesOf(gy, mask, grow) } });
    }
    return [gx, grow];
  });
}

/** SpecAugment feature mask: x [B, T, C], mask i32 [B, C] (1 = zero this channel for every frame of batch b). */
export function maskColumns(x: Tensor, mask: Tensor): Tensor {
  floatInput('maskColumns', x);
  if (x.shape.length !== 3) throw new Error(`maskColumns: ${x.label} has shape [${x.shape}]; expected [B, T, C]`);
  const [B, T, C] = x.shape;
  if (mask.dtype !== 'i32' || mask.shape.join() !== `${B},${C}`) {
    throw new Error(`maskColumns: mask must be i32 [${B}, ${C}], got ${mask.dtype} [${mask.shape}]`);
  }
  const run = (src: Tensor, label: string): Tensor => {
    const dst = Tensor.empty(src.rt, src.shape, src.dtype, label);
    const mp = { n: dst.size, rows: B * T, frames: T, channels: C, invert: 0 };
    src.rt.dispatch(shapeKernel, 'maskColumns', { mp, x: src, mask, y: dst }, grid1d(dst.size, WG), { defines: { T: src.dtype }, cost: { bytes: bytesOf(src, mask, dst) } });
    return dst;
  };
  const y = run(x, 'maskColumns');
  return record('maskColumns', y, [x], [mask], (gy) => [run(gy, 'maskColumns.grad')]);
}

/** [outer, rows along axis, inner] of a shape split at `axis`. */
function splitAt(shape: readonly number[], axis: number): { outer: number; rows: number; inner: number } {
  const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);
  return { outer: prod(shape.slice(0, axis)), rows: shape[axis], inner: prod(shape.slice(axis + 1)) };
}

/** Copies rows [srcOff, srcOff + len) of src's `axis` into rows [dstOff, ...) of dst's (same shapes otherwise). */
function copyBlock(src: Tensor, dst: Tensor, axis: number, srcOff: number, dstOff: number, len: number): void {
  const s = splitAt(src.shape, axis);
  const d = splitAt(dst.shape, axis);
  const n = s.outer * len * s.inner;
  const bpe = bytesPerElement(src.dtype);
  // one contiguous block (axis 0, or only size-1 axes before it): a buffer copy, several times a kernel's speed on
  // lavapipe (concatenating XLSR-large's q, k, v weights: 12 MB)
  const aligned = (elements: number) => (elements * bpe) % 4 === 0;
  if (s.outer === 1 && aligned(srcOff * s.inner) && aligned(dstOff * s.inner) && aligned(n)) {
    if (n > 0) src.rt.copy(src, dst, n * bpe, srcOff * s.inner * bpe, dstOff * s.inner * bpe);
    return;
  }
  const cp = { n, inner: s.inner, len, srcRows: s.rows, srcOff, dstRows: d.rows, dstOff };
  src.rt.dispatch(shapeKernel, 'copyBlock', { cp, x: src, y: dst }, grid1d(n, WG), { defines: { T: src.dtype }, cost: { bytes: 2 * n * bpe } });
}

function checkAxis(op: string, x: Tensor, axis: number): void {
  if (!Number.isInteger(axis) || axis < 0 || axis >= x.shape.length) throw new Error(`${op}: axis ${axis} is outside ${x.label} [${x.shape}]`);
}

/** x[..., start : start + length, ...] along `axis`. Backward: gy placed into a zero gradient. */
export function sliceAxis(x: Tensor, axis: number, start: number, length: number): Tensor {
  floatInput('sliceAxis', x);
  checkAxis('sliceAxis', x, axis);
  const rows = x.shape[axis];
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > rows) {
    throw new Error(`sliceAxis: [${start}, ${start + length}) is outside axis ${axis} of ${x.label} [${x.shape}]`);
  }
  const shape = [...x.shape];
  shape[axis] = length;
  const y = Tensor.empty(x.rt, shape, x.dtype, 'sliceAxis');
  copyBlock(x, y, axis, start, 0, length);
  return record('sliceAxis', y, [x], [], (gy) => {
    const gx = full(x, x.shape, 0, x.dtype, 'sliceAxis.grad');
    copyBlock(gy, gx, axis, 0, start, length);
    return [gx];
  });
}

/**
 * Concatenation along `axis` (torch.cat): every part has the same shape except along `axis`. Backward: each part
 * gets its block of gy.
 */
export function concat(parts: readonly Tensor[], axis: number): Tensor {
  if (parts.length === 0) throw new Error('concat: no tensors');
  const first = parts[0];
  for (const p of parts) {
    floatInput('concat', p);
    checkAxis('concat', p, axis);
    const same = p.dtype === first.dtype && p.shape.length === first.shape.length && p.shape.every((n, i) => i === axis || n === first.shape[i]);
    if (!same) throw new Error(`concat: ${p.label} ${p.dtype} [${p.shape}] does not match ${first.label} ${first.dtype} [${first.shape}] outside axis ${axis}`);
  }
  const offsets: number[] = [];
  let total = 0;
  for (const p of parts) {
    offsets.push(total);
    total += p.shape[axis];
  }
  const shape = [...first.shape];
  shape[axis] = total;
  const y = Tensor.empty(first.rt, shape, first.dtype, 'concat');
  parts.forEach((p, i) => copyBlock(p, y, axis, 0, offsets[i], p.shape[axis]));
  return record('concat', y, [...parts], [], (gy, needs) =>
    parts.map((p, i) => {
      if (!needs[i]) return null;
      const gx = Tensor.empty(p.rt, p.shape, p.dtype, 'concat.grad');
      copyBlock(gy, gx, axis, offsets[i], 0, p.shape[axis]);
      return gx;
    }),
  );
}
