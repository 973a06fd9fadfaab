// Tensors derived from parameters (the weight-normed positional conv weight, conv weights relaid for the implicit
// GEMM), kept between forwards while their sources are unchanged. Unchanged is decided by the buffers' write stamps
// (PooledBuffer.writeStamp): the runtime re-stamps a buffer on every dispatch that binds it read_write, every copy
// into it and every upload, so an optimizer step, a checkpoint load or any in-place kernel invalidates what was
// derived from it, with no list of writers to keep in sync. A source disposed (or its buffer handed back to the pool)
// invalidates too: entries hold the buffer object they saw, and the pool makes a new one per allocation.
import { Tensor } from '../tensor.js';
import { isGradEnabled, keep, noGrad } from '../autograd.js';
import type { PooledBuffer } from './pool.js';

interface Source {
  tensor: Tensor;
  gpu: PooledBuffer;
  stamp: number;
}

interface Entry {
  value: Tensor;
  /** the value's own stamp: a write into the cached tensor (through a view handed out) invalidates it too */
  stamp: number;
  sources: Source[];
}

export class DerivedCache {
  private readonly entries = new Map<string, Entry>();
  hits = 0;
  misses = 0;

  /**
   * `compute()` (which must derive its result from `sources` alone), or the value it gave last time under `key` if
   * no source has been written since. Returns a view the caller owns and may dispose; the cached tensor stays with
   * the cache. When autograd would record a gradient through the result (gradients on and a source requires one),
   * nothing is cached: compute() runs as usual and its result is returned as is.
   */
  get(key: string, sources: readonly Tensor[], compute: () => Tensor): Tensor {
    if (isGradEnabled() && sources.some((s) => s.requiresGrad)) return compute();
    this.dropStale();
    const hit = this.entries.get(key);
    if (hit && this.fresh(hit, sources)) {
      this.hits++;
      return hit.value.reshape(hit.value.shape);
    }
    if (hit) this.drop(key, hit);
    this.misses++;
    const value = keep(noGrad(compute));
    if (sources.includes(value)) return value; // compute() handed a source back: nothing derived to keep
    this.entries.set(key, {
      value,
      stamp: value.gpu.writeStamp,
      sources: sources.map((tensor) => ({ tensor, gpu: tensor.gpu, stamp: tensor.gpu.writeStamp })),
    });
    return value.reshape(value.shape);
  }

  /** Number of tensors kept. */
  get size(): number {
    return this.entries.size;
  }

  /** Free every kept tensor (views handed out keep their buffer until they are disposed). */
  dispose(): void {
    for (const [key, e] of this.entries) this.drop(key, e);
  }

  private fresh(e: Entry, sources: readonly Tensor[]): boolean {
    if (e.value.gpu.writeStamp !== e.stamp || e.sources.length !== sources.length) return false;
    return e.sources.every((s, i) => s.tensor === sources[i] && this.unchanged(s));
  }

  private unchanged(s: Source): boolean {
    return !s.tensor.disposed && s.tensor.gpu === s.gpu && !s.gpu.released && s.gpu.writeStamp === s.stamp;
  }

  /** Entries whose sources were disposed can never hit again: free them now rather than at dispose(). */
  private dropStale(): void {
    for (const [key, e] of this.entries) if (e.sources.some((s) => s.tensor.disposed || s.gpu.released)) this.drop(key, e);
  }

  private drop(key: string, e: Entry): void {
    this.entries.delete(key);
    e.value.dispose();
  }
}
