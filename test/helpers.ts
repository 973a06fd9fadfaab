// Shared test utilities: one runtime per test process (allocations poisoned with NaN), deterministic random data,
// float64 reference helpers, relative L2 error, and a finite-difference gradient probe.
import * as assert from 'uvu/assert';
import { createNodeRuntime } from '../src/node/dawn.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { Tensor, type DType } from '../src/tensor.js';
import { allAttentionTiles, attentionTiles, type AttentionTile } from '../src/ops/attention.js';

let rtPromise: Promise<Runtime> | null = null;

export function getRuntime(): Promise<Runtime> {
  if (!rtPromise) {
    rtPromise = createNodeRuntime().then((rt) => {
      rt.poison = true;
      return rt;
    });
  }
  return rtPromise;
}

/** Deterministic generator (the engine's mulberry32) so failures reproduce. */
import { mulberry32 } from '../src/data/random.js';
export const rng = mulberry32;

/** Standard normal values (Box-Muller), rounded to f32 so the f64 reference sees exactly what the GPU sees. */
export function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    out[i] = Math.fround(scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return out;
}

export function uniform(n: number, seed: number, lo = -1, hi = 1): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

/** Rows of C values, three times (q, k, v) -> rows of [q | k | v] (a fused q/k/v projection's layout). */
export function packQkv(C: number, parts: ArrayLike<number>[]): Float64Array {
  const rows = parts[0].length / C;
  const out = new Float64Array(3 * parts[0].length);
  for (let r = 0; r < rows; r++) for (let s = 0; s < 3; s++) for (let e = 0; e < C; e++) out[(3 * r + s) * C + e] = parts[s][r * C + e];
  return out;
}

/** Third `part` (0 q, 1 k, 2 v) of rows of [q | k | v]. */
export function unpackQkv(C: number, packed: ArrayLike<number>, part: number): Float32Array {
  const rows = packed.length / (3 * C);
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) for (let e = 0; e < C; e++) out[r * C + e] = packed[(3 * r + part) * C + e];
  return out;
}

export function upload(rt: Runtime, data: ArrayLike<number>, shape: number[], opts: { dtype?: DType; requiresGrad?: boolean; label?: string } = {}): Tensor {
  const t = Tensor.fromData(rt, Float32Array.from(data as ArrayLike<number>), shape, opts.dtype ?? 'f32', opts.label ?? 'input');
  t.requiresGrad = opts.requiresGrad ?? false;
  return t;
}

export function relL2(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.is(got.length, ref.length, `length ${got.length} vs reference ${ref.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (!Number.isFinite(num)) return Infinity; // NaN (a poisoned, unwritten element) fails every tolerance
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export function maxAbs(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(got[i] - ref[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Assert relative L2 error at most tol, with a message naming what was compared. */
export function close(got: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  const e = relL2(got, ref);
  assert.ok(e <= tol, `${what}: relative L2 error ${e.toExponential(3)} > ${tol} (first values got ${Array.from(got).slice(0, 4).map((x) => x.toPrecision(5))} ref ${Array.from(ref).slice(0, 4).map((x) => x.toPrecision(5))})`);
}

/**
 * Finite-difference probe of a few gradient entries, independent of any reference implementation.
 * loss(x) = sum(forward(x) * w) evaluated in f64 from the GPU's f32 outputs; central differences with step h.
 * `forward` must return the op output for the given input values; `analytic` is the gradient the kernel produced
 * for the same loss (i.e. backward with gradOut = w).
 */
export async function finiteDifference(opts: {
  x: Float64Array;
  w: ArrayLike<number>;
  forward: (x: Float64Array) => Promise<ArrayLike<number>>;
  analytic: ArrayLike<number>;
  indices: number[];
  h?: number;
  tol?: number;
  what: string;
}): Promise<void> {
  const h = opts.h ?? 1e-2;
  const tol = opts.tol ?? 2e-2;
  for (const i of opts.indices) {
    const xp = Float64Array.from(opts.x);
    const xm = Float64Array.from(opts.x);
    xp[i] += h;
    xm[i] -= h;
    const yp = await opts.forward(xp);
    const ym = await opts.forward(xm);
    let lp = 0;
    let lm = 0;
    for (let k = 0; k < yp.length; k++) {
      lp += yp[k] * opts.w[k];
      lm += ym[k] * opts.w[k];
    }
    const num = (lp - lm) / (2 * h);
    const ana = opts.analytic[i];
    const err = Math.abs(num - ana) / Math.max(Math.abs(num), Math.abs(ana), 1e-3);
    assert.ok(err <= tol, `${opts.what}: finite difference at ${i}: numeric ${num.toPrecision(6)} vs analytic ${ana.toPrecision(6)} (rel err ${err.toExponential(2)})`);
  }
}

/** A few spread-out indices into an array of length n. */
export function probeIndices(n: number, count = 4, seed = 7): number[] {
  const r = rng(seed);
  const out = new Set<number>();
  while (out.size < Math.min(count, n)) out.add(Math.floor(r() * n));
  return [...out];
}

/**
 * Every attention tile of a kernel path, forward and backward paired up so that each candidate is forced once (the
 * shorter list padded with its default); the first pair is the two defaults.
 */
export function attentionTilePairs(path: AttentionTile['path']): { forward: AttentionTile; backward: AttentionTile; name: string }[] {
  const forward = allAttentionTiles('forward', path);
  const backward = allAttentionTiles('backward', path);
  return Array.from({ length: Math.max(forward.length, backward.length) }, (_, i) => {
    const pair = { forward: forward[i] ?? forward[0], backward: backward[i] ?? backward[0] };
    const id = (t: AttentionTile) => (t.path === 'subgroup' ? `${t.rowsPerLane} rows/lane, ${t.streamRows} streamed` : `${t.blockRows} rows x ${t.blockStream} streamed`);
    return { ...pair, name: `forward ${id(pair.forward)}; backward ${id(pair.backward)}` };
  });
}

/** Run fn with attention's tiles forced to a pair (restored after). */
export async function withAttentionTiles(pair: { forward: AttentionTile; backward: AttentionTile }, fn: () => Promise<void>): Promise<void> {
  attentionTiles.forward = pair.forward;
  attentionTiles.backward = pair.backward;
  try {
    await fn();
  } finally {
    attentionTiles.forward = null;
    attentionTiles.backward = null;
  }
}
