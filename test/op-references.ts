// float64 references of the GEMM (matmul / linear with bias and activation) and of conv1d, with the gradients of
// loss = sum(y * upstream): shared by test/matmul.test.ts, test/conv1d.test.ts and test/tune.test.ts.
import type { Activation } from '../src/ops/matmul.js';

// ---- GEMM ----

export interface Spec {
  batch: number; // 0: a is 2-D
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  sharedB: boolean;
}

const SQRT1_2 = Math.SQRT1_2;
// erf to ~1e-15 (series / continued fraction), independent of the kernel's approximation
export function erf(x: number): number {
  const ax = Math.abs(x);
  let r: number;
  if (ax < 2.5) {
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 60; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction (Lentz)
    let f = ax;
    let C = ax;
    let D = 0;
    for (let n = 1; n < 200; n++) {
      const an = n / 2;
      D = ax + an * D;
      D = 1 / D;
      C = ax + an / C;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}
export const act64 = (z: number, act: Activation) => (act === 'gelu' ? 0.5 * z * (1 + erf(z * SQRT1_2)) : act === 'tanh' ? Math.tanh(z) : z);
export const actGrad64 = (z: number, act: Activation) =>
  act === 'gelu' ? 0.5 * (1 + erf(z * SQRT1_2)) + (z * Math.exp(-0.5 * z * z)) / Math.sqrt(2 * Math.PI) : act === 'tanh' ? 1 - Math.tanh(z) ** 2 : 1;

export function shapes(s: Spec) {
  const bd = s.batch ? [s.batch] : [];
  return {
    a: [...bd, ...(s.transA ? [s.K, s.M] : [s.M, s.K])],
    b: [...(s.sharedB ? [] : bd), ...(s.transB ? [s.N, s.K] : [s.K, s.N])],
    y: [...bd, s.M, s.N],
  };
}

// index helpers into the stored layouts
const ia = (s: Spec, bt: number, m: number, k: number) => bt * s.M * s.K + (s.transA ? k * s.M + m : m * s.K + k);
const ib = (s: Spec, bt: number, k: number, n: number) => (s.sharedB ? 0 : bt * s.K * s.N) + (s.transB ? n * s.K + k : k * s.N + n);

/** z (pre-activation, with bias) and the three gradients for loss = sum(y * w) */
export function matmulReference(s: Spec, A: Float64Array, B: Float64Array, bias: Float64Array | null, act: Activation, W: Float64Array) {
  const nb = Math.max(1, s.batch);
  const Z = new Float64Array(nb * s.M * s.N);
  for (let bt = 0; bt < nb; bt++)
    for (let m = 0; m < s.M; m++)
      for (let n = 0; n < s.N; n++) {
        let acc = bias ? bias[n] : 0;
        for (let k = 0; k < s.K; k++) acc += A[ia(s, bt, m, k)] * B[ib(s, bt, k, n)];
        Z[(bt * s.M + m) * s.N + n] = acc;
      }
  const Y = Z.map((z) => act64(z, act));
  const GZ = Z.map((z, i) => W[i] * actGrad64(z, act));
  const GA = new Float64Array(A.length);
  const GB = new Float64Array(B.length);
  const GBias = new Float64Array(s.N);
  for (let bt = 0; bt < nb; bt++)
    for (let m = 0; m < s.M; m++)
      for (let n = 0; n < s.N; n++) {
        const g = GZ[(bt * s.M + m) * s.N + n];
        GBias[n] += g;
        for (let k = 0; k < s.K; k++) {
          GA[ia(s, bt, m, k)] += g * B[ib(s, bt, k, n)];
          GB[ib(s, bt, k, n)] += g * A[ia(s, bt, m, k)];
        }
      }
  return { Y, GA, GB, GBias };
}

// ---- conv1d ----

export interface Cfg {
  name: string;
  B: number;
  Cin: number;
  Cout: number;
  T: number;
  K: number;
  S: number;
  P: number;
  G: number;
  bias: boolean;
  /** finite-difference probes (each costs two forward passes) */
  fd?: boolean;
}

export function toutOf(c: Cfg): number {
  return Math.floor((c.T + 2 * c.P - c.K) / c.S) + 1;
}

/** f64 reference: y, and the gradients of sum(y * gy). */
export function convReference(c: Cfg, x: Float64Array, w: Float64Array, b: Float64Array | null, gy: Float64Array) {
  const Tout = toutOf(c);
  const cinG = c.Cin / c.G;
  const coutG = c.Cout / c.G;
  const y = new Float64Array(c.B * c.Cout * Tout);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(c.Cout);
  for (let bb = 0; bb < c.B; bb++) {
    for (let co = 0; co < c.Cout; co++) {
      const g = Math.floor(co / coutG);
      for (let to = 0; to < Tout; to++) {
        const yi = (bb * c.Cout + co) * Tout + to;
        let s = b ? b[co] : 0;
        const d = gy[yi];
        db[co] += d;
        for (let ci = 0; ci < cinG; ci++) {
          const xrow = (bb * c.Cin + g * cinG + ci) * c.T;
          const wrow = (co * cinG + ci) * c.K;
          for (let k = 0; k < c.K; k++) {
            const t = to * c.S - c.P + k;
            if (t < 0 || t >= c.T) continue;
            s += w[wrow + k] * x[xrow + t];
            dx[xrow + t] += w[wrow + k] * d;
            dw[wrow + k] += x[xrow + t] * d;
          }
        }
        y[yi] = s;
      }
    }
  }
  return { y, dx, dw, db };
}

