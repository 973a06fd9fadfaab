// The q/k/v block of one attention layer (projections + attention; out_proj is the same in every variant), timed
// interleaved in one process because this host's timings drift 20-50% between runs:
//   separate        three linear() [B*T, C] x [C, C]^T, attention(q, k, v)            (before the fusion)
//   packed+concat   concat(W_q, W_k, W_v) and one linear() [B*T, C] x [3C, C]^T, attentionPacked(qkv): what every
//                   family now runs (src/model/qkv.ts), concatenating on each call
//   packed          the same GEMM on weights concatenated once: what a cached concatenation would give
// Forward under noGrad; forward + backward (x and every weight requiring gradients) for separate and packed+concat.
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/tensor.js';
import { backward, noGrad, tidy } from '../../src/autograd.js';
import { linear } from '../../src/ops/matmul.js';
import { concat } from '../../src/ops/shape.js';
import { attention, attentionPacked } from '../../src/ops/attention.js';
import '../../src/ops/elementwise.js';
import type { Row } from './harness.js';
import { rand, type Peaks } from './kernels.js';

export const QKV_VARIANTS = ['forward separate', 'forward packed+concat', 'forward packed', 'fwd+bwd separate', 'fwd+bwd packed+concat'] as const;
export type QkvVariant = (typeof QKV_VARIANTS)[number];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median ms of each variant over `rounds` interleaved rounds (after one warm-up call each). */
export async function timeQkvBlock(rt: Runtime, B: number, T: number, C: number, heads: number, rounds: number): Promise<Map<QkvVariant, number>> {
  const x = rand(rt, [B, T, C], 'x', 2);
  const w = [0, 1, 2].map((i) => rand(rt, [C, C], `w${i}`, 0.06));
  const b = [0, 1, 2].map((i) => rand(rt, [C], `b${i}`, 0.2));
  const wPacked = noGrad(() => concat(w, 0));
  const bPacked = noGrad(() => concat(b, 0));
  const seed = rand(rt, [B, T, C], 'grad_out', 2);
  const separate = () => attention(linear(x, w[0], b[0]), linear(x, w[1], b[1]), linear(x, w[2], b[2]), { heads });
  const packedConcat = () => attentionPacked(linear(x, concat(w, 0), concat(b, 0)), { heads });
  const packed = () => attentionPacked(linear(x, wPacked, bPacked), { heads });
  const forward = (fn: () => Tensor) => () => noGrad(() => tidy(() => void fn()));
  const train = (fn: () => Tensor) => () =>
    tidy(() => {
      for (const t of [x, ...w, ...b]) t.requiresGrad = true;
      backward(fn(), seed);
      for (const t of [x, ...w, ...b]) {
        t.grad?.dispose();
        t.grad = null;
        t.requiresGrad = false;
      }
    });
  const run: Record<QkvVariant, () => void> = {
    'forward separate': forward(separate),
    'forward packed+concat': forward(packedConcat),
    'forward packed': forward(packed),
    'fwd+bwd separate': train(separate),
    'fwd+bwd packed+concat': train(packedConcat),
  };
  const times = new Map<QkvVariant, number[]>(QKV_VARIANTS.map((v) => [v, []]));
  for (const v of QKV_VARIANTS) {
    run[v](); // pipelines
    await rt.sync();
  }
  for (let r = 0; r < rounds; r++) {
    for (const v of QKV_VARIANTS) {
      await rt.sync();
      const t0 = performance.now();
      run[v]();
      await rt.sync();
      times.get(v)!.push(performance.now() - t0);
    }
  }
  for (const t of [x, ...w, ...b, wPacked, bPacked, seed]) t.dispose();
  return new Map(QKV_VARIANTS.map((v) => [v, median(times.get(v)!)]));
}

/** Bench rows: XLSR-large's block (C = 1024, 16 heads) on 4 s of audio (199 frames), batch 1 and 4. */
export async function benchQkv(rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const T = 199;
  for (const B of quick ? [1] : [1, 4]) {
    const ms = await timeQkvBlock(rt, B, T, 1024, 16, quick ? 3 : 7);
    for (const [variant, base] of [['forward packed+concat', 'forward separate'], ['forward packed', 'forward separate'], ['fwd+bwd packed+concat', 'fwd+bwd separate']] as const) {
      rows.push({
        name: `q/k/v block ${variant} B=${B} T=${T} 1024/16 heads`,
        unit: 'ms',
        ours: ms.get(variant)!,
        peer: variant.replace(/packed(\+concat)?/, 'separate'),
        peer_value: ms.get(base)!,
        speedup: ms.get(base)! / ms.get(variant)!,
        command: 'node build/bench/qkv.mjs',
        note: 'speedup = three GEMMs + attention() / this, interleaved medians in one process',
      });
    }
  }
  return rows;
}
