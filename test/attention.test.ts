import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn, upload, close, finiteDifference, probeIndices } from './helpers.js';
import { attention } from '../src/ops/attention.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() needs
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';
import type { Runtime } from '../src/runtime/runtime.js';

interface Case {
  B: number;
  T: number;
  H: number;
  D: number;
  /** real frames per batch element (keys past it are padding); null = no mask */
  lengths: number[] | null;
  scale?: number;
}

/** Plain softmax attention in float64, with the gradients of loss = sum(out * w). */
function reference(c: Case, q: Float64Array, k: Float64Array, v: Float64Array, w: Float64Array) {
  const { B, T, H, D } = c;
  const scale = c.scale ?? 1 / Math.sqrt(D);
  const n = B * T * H * D;
  const out = new Float64Array(n);
  const dq = new Float64Array(n);
  const dk = new Float64Array(n);
  const dv = new Float64Array(n);
  const at = (b: number, t: number, h: number) => ((b * T + t) * H + h) * D;
  const P = new Float64Array(T);
  const dP = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    const len = c.lengths ? c.lengths[b] : T;
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const qi = at(b, i, h);
        let m = -Infinity;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qi + d] * k[at(b, j, h) + d];
          P[j] = s * scale;
          m = Math.max(m, P[j]);
        }
        let l = 0;
        for (let j = 0; j < len; j++) l += P[j] = Math.exp(P[j] - m);
        if (len === 0) continue; // no real key: output and gradients stay 0
        for (let j = 0; j < len; j++) P[j] /= l;
        for (let j = 0; j < len; j++) for (let d = 0; d < D; d++) out[qi + d] += P[j] * v[at(b, j, h) + d];
        // backward of out_i = sum_j P_ij v_j with upstream w_i
        let rowDot = 0;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += w[qi + d] * v[at(b, j, h) + d];
          dP[j] = s;
          rowDot += P[j] * s;
        }
        for (let j = 0; j < len; j++) {
          const kj = at(b, j, h);
          const ds = P[j] * (dP[j] - rowDot) * scale;
          for (let d = 0; d < D; d++) {
            dv[kj + d] += P[j] * w[qi + d];
            dq[qi + d] += ds * k[kj + d];
            dk[kj + d] += ds * q[qi + d];
          }
        }
      }
    }
  }
  return { out, dq, dk, dv };
}

function maskTensor(rt: Runtime, c: Case): Tensor | null {
  if (!c.lengths) return null;
  const m = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) for (let t = 0; t < c.T; t++) m[b * c.T + t] = t < c.lengths[b] ? 1 : 0;
  return Tensor.fromData(rt, m, [c.B, c.T], 'i32', 'key_mask');
}

async function check(c: Case, seed: number, fdProbes = 0): Promise<void> {
  const rt = await getRuntime();
  const { B, T, H, D } = c;
  const n = B * T * H * D;
  const shape = [B, T, H * D];
  const qd = randn(n, seed);
  const kd = randn(n, seed + 1);
  const vd = randn(n, seed + 2);
  const wd = randn(n, seed + 3);
  const ref = reference(c, qd, kd, vd, wd);
  const mask = maskTensor(rt, c);
  const q = upload(rt, qd, shape, { requiresGrad: true, label: 'q' });
  const k = upload(rt, kd, shape, { requiresGrad: true, label: 'k' });
  const v = upload(rt, vd, shape, { requiresGrad: true, label: 'v' });
  const opts = { heads: H, keyMask: mask, scale: c.scale };
  const y = attention(q, k, v, opts);
  const what = `B=${B} T=${T} H=${H} D=${D} lengths=${c.lengths ?? 'none'}`;
  close(await y.read(), ref.out, 1e-5, `${what}: forward`);
  const w = upload(rt, wd, shape, { label: 'grad_out' });
  backward(y, w);
  const gq = await q.grad!.read();
  const gk = await k.grad!.read();
  const gv = await v.grad!.read();
  close(gq, ref.dq, 1e-4, `${what}: dq`);
  close(gk, ref.dk, 1e-4, `${what}: dk`);
  close(gv, ref.dv, 1e-4, `${what}: dv`);
  if (c.lengths) {
    // padded keys take no part: their dk and dv are exactly zero
    for (let b = 0; b < B; b++) {
      for (let t: number = c.lengths[b]; t < T; t++) {
        for (let e = 0; e < H * D; e++) {
          const i = (b * T + t) * H * D + e;
          assert.ok(gk[i] === 0 && gv[i] === 0, `${what}: padded key b=${b} t=${t} has dk=${gk[i]} dv=${gv[i]}`);
        }
      }
    }
  }
  if (fdProbes > 0) {
    const inputs = { q: qd, k: kd, v: vd };
    const analytic = { q: gq, k: gk, v: gv };
    for (const name of ['q', 'k', 'v'] as const) {
      await finiteDifference({
        what: `${what}: d${name}`,
        x: inputs[name],
        w: wd,
        analytic: analytic[name],
        indices: probeIndices(n, fdProbes, seed + 11),
        forward: async (x) => {
          const args = { ...inputs, [name]: x };
          const out = tidy(() => attention(upload(rt, args.q, shape), upload(rt, args.k, shape), upload(rt, args.v, shape), opts));
          const data = await out.read();
          out.dispose();
          return data;
        },
      });
    }
  }
  for (const t of [q, k, v, w, y, q.grad!, k.grad!, v.grad!]) t.dispose();
  mask?.dispose();
}

test('odd sizes with per-element padding (D=16, H=3, one element unpadded)', async () => {
  await check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23] }, 100, 4);
});

test('more than two blocks of queries and keys, D=24, uneven padding', async () => {
  await check({ B: 3, T: 150, H: 3, D: 24, lengths: [131, 150, 9] }, 200, 3);
});

test('D=64 at 2 heads, no mask, custom scale', async () => {
  await check({ B: 1, T: 70, H: 2, D: 64, lengths: null, scale: 0.2 }, 300, 2);
});

test('odd head dim (D=5) and a single frame', async () => {
  await check({ B: 2, T: 1, H: 3, D: 5, lengths: [1, 1] }, 400);
  await check({ B: 1, T: 45, H: 1, D: 5, lengths: [44] }, 410, 2);
});

test('an element whose keys are all padding gives zeros, not NaN', async () => {
  await check({ B: 2, T: 19, H: 2, D: 8, lengths: [0, 19] }, 500);
});

test('shape and mask errors are loud', async () => {
  const rt = await getRuntime();
  const x = Tensor.empty(rt, [1, 4, 6]);
  assert.throws(() => attention(x, x, x, { heads: 4 }), /do not split into 4 heads/);
  const y = Tensor.empty(rt, [1, 5, 6]);
  assert.throws(() => attention(x, y, x, { heads: 2 }), /differs from q/);
  const badMask = Tensor.empty(rt, [1, 4]);
  assert.throws(() => attention(x, x, x, { heads: 2, keyMask: badMask }), /keyMask must be i32/);
  for (const t of [x, y, badMask]) t.dispose();
});

test.run();
