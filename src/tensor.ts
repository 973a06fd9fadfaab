// Tensor: a shape, a dtype and a pooled GPU buffer, plus what autograd needs (requiresGrad, grad, the node that
// made it). GPU memory is not left to the JS garbage collector: a tensor is freed when its owner disposes it (or the
// tidy() scope that made it ends) and no autograd node still holds it for backward.
import type { Runtime, Bindable } from './runtime/runtime.js';
import type { PooledBuffer } from './runtime/pool.js';
import type { ScalarType } from './runtime/kernel.js';
import { trackTensor, type GraphNode } from './autograd.js';

export type DType = 'f32' | 'f16' | 'i32';

export function bytesPerElement(dtype: DType | ScalarType): number {
  return dtype === 'f16' ? 2 : 4;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

let nextId = 1;

export class Tensor implements Bindable {
  readonly id = nextId++;
  readonly rt: Runtime;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly gpu: PooledBuffer;
  label: string;
  requiresGrad = false;
  grad: Tensor | null = null;
  /** the autograd node that produced this tensor (null for leaves and after backward consumed it) */
  node: GraphNode | null = null;
  /** owner's reference (dropped by dispose) and references held by autograd nodes for backward */
  private ownerAlive = true;
  private savedRefs = 0;
  /** a view shares another tensor's buffer and never frees it */
  private readonly base: Tensor | null;

  constructor(rt: Runtime, shape: readonly number[], dtype: DType, gpu: PooledBuffer, label: string, base: Tensor | null = null) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`tensor ${label}: bad shape [${shape.join(', ')}]`);
    }
    this.rt = rt;
    this.shape = shape;
    this.dtype = dtype;
    this.gpu = gpu;
    this.label = label;
    this.base = base;
    if (base) base.retain();
    trackTensor(this);
  }

  get size(): number {
    return numel(this.shape);
  }

  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  get disposed(): boolean {
    return !this.ownerAlive && this.savedRefs === 0;
  }

  /** A new tensor with no buffer contents defined (the pool may hand back old data). */
  static empty(rt: Runtime, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    const bytes = Math.max(4, numel(shape) * bytesPerElement(dtype));
    return new Tensor(rt, [...shape], dtype, rt.alloc(bytes, label), label);
  }

  static fromData(rt: Runtime, data: ArrayLike<number> | Float32Array | Int32Array, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    const n = numel(shape);
    if (data.length !== n) throw new Error(`tensor ${label}: ${data.length} values for shape [${shape.join(', ')}] (${n} elements)`);
    const t = Tensor.empty(rt, shape, dtype, label);
    t.write(data);
    return t;
  }

  write(data: ArrayLike<number>): void {
    let view: ArrayBufferView;
    if (this.dtype === 'f32') view = data instanceof Float32Array ? data : Float32Array.from(data);
    else if (this.dtype === 'i32') view = data instanceof Int32Array ? data : Int32Array.from(data);
    else view = f32ToF16Array(data);
    this.rt.write(this, view);
  }

  /** Download as f32 (f16 is widened) or i32. */
  async read(): Promise<Float32Array | Int32Array> {
    this.assertLive('read');
    const raw = await this.rt.readBytes(this, this.byteLength);
    if (this.dtype === 'f32') return new Float32Array(raw);
    if (this.dtype === 'i32') return new Int32Array(raw);
    return f16ToF32Array(new Uint16Array(raw));
  }

  async readFloat(): Promise<Float32Array> {
    const d = await this.read();
    return d instanceof Float32Array ? d : Float32Array.from(d);
  }

  /** Same buffer, another shape with the same element count. Views keep the base alive. */
  reshape(shape: readonly number[]): Tensor {
    const resolved = resolveShape(shape, this.size, this.label);
    const v = new Tensor(this.rt, resolved, this.dtype, this.gpu, this.label, this.base ?? this);
    return v;
  }

  /** A leaf that shares this tensor's storage but not its graph. */
  detach(): Tensor {
    return new Tensor(this.rt, this.shape, this.dtype, this.gpu, this.label, this.base ?? this);
  }

  assertLive(what: string): void {
    if (this.disposed || this.gpu.released) throw new Error(`tensor ${this.label} [${this.shape.join(', ')}] was disposed; cannot ${what}`);
  }

  /** An autograd node keeps this tensor until its backward has run. */
  retain(): void {
    this.assertLive('retain');
    this.savedRefs++;
  }

  releaseSaved(): void {
    if (this.savedRefs <= 0) throw new Error(`tensor ${this.label}: released more often than retained`);
    this.savedRefs--;
    this.maybeFree();
  }

  dispose(): void {
    if (!this.ownerAlive) return;
    this.ownerAlive = false;
    this.maybeFree();
  }

  private maybeFree(): void {
    if (this.ownerAlive || this.savedRefs > 0) return;
    if (this.base) this.base.releaseSaved();
    else if (!this.gpu.released) this.rt.pool.release(this.gpu);
  }
}

function resolveShape(shape: readonly number[], size: number, label: string): number[] {
  const out = [...shape];
  const infer = out.indexOf(-1);
  if (infer >= 0) {
    const rest = numel(out.filter((_, i) => i !== infer));
    out[infer] = rest === 0 ? 0 : size / rest;
  }
  if (numel(out) !== size || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`tensor ${label}: cannot reshape ${size} elements to [${shape.join(', ')}]`);
  }
  return out;
}

// f16 <-> f32 on the CPU (Node 20 has no Float16Array). Round to nearest even.
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

export function f32ToF16(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

export function f32ToF16Array(data: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32ToF16(data[i]);
  return out;
}

export function f16ToF32Array(data: Uint16Array): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f16ToF32(data[i]);
  return out;
}
