// Dispatch-size helpers shared by the op wrappers.
import type { Runtime } from '../runtime/runtime.js';

/** Workgroups for n threads of a 1-D kernel laid out as x + y * width (see kernels' flat()). */
export function grid1d(n: number, wg: number, maxPerDim = 65535): [number, number] {
  const groups = Math.ceil(n / wg);
  if (groups <= maxPerDim) return [groups, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

export function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Summed byte lengths of the given tensors (absent ones count 0): a memory-bound dispatch's stated cost. */
export function bytesOf(...tensors: ({ byteLength: number } | null | undefined)[]): number {
  let n = 0;
  for (const t of tensors) if (t) n += t.byteLength;
  return n;
}

/**
 * The adapter's subgroup size when it is fixed (min = max), a power of two from 4 to 128, and the adapter has the
 * 'subgroups' feature; else null. Kernels that replace a workgroup tree by one subgroupAdd run with WG = this size.
 */
export function fixedSubgroupSize(rt: Runtime): number | null {
  if (!rt.hasSubgroups) return null;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  const size = info?.subgroupMinSize;
  if (!size || size !== info?.subgroupMaxSize || size < 4 || size > 128 || (size & (size - 1)) !== 0) return null;
  return size;
}
