// Shared by the peer sections (TensorFlow.js, ONNX Runtime, PyTorch): seeded inputs, result comparison, and the
// Peaks type re-exported so each peer file imports from one place.
export type { Peaks } from './kernels.js';

/** Deterministic uniform values in [-scale/2, scale/2) (LCG), the same on every run and for every peer. */
export function randArray(n: number, seed: number, scale = 1): Float32Array {
  const d = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = ((s >>> 8) / (1 << 24) - 0.5) * scale;
  }
  return d;
}

/** Relative L2 difference ||a - b|| / ||b|| (NaN when the lengths differ). */
export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length || a.length === 0) return NaN;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** "1.2e-7" for a row's note; "n/a" when not comparable. */
export function agree(a: ArrayLike<number>, b: ArrayLike<number>): string {
  const d = relDiff(a, b);
  return Number.isFinite(d) ? d.toExponential(1) : 'n/a';
}
