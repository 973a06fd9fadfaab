// Kernel-level benchmarks: GEMM, conv1d per feature-encoder layer, attention forward/backward, layer norm, AdamW.
// Every figure is a median over repetitions with its spread, and a fraction of the FMA peak or copy bandwidth
// measured in the same run.
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { tidy, noGrad, backward } from '../../src/autograd.js';
import { matmul } from '../../src/ops/matmul.js';
import { conv1d } from '../../src/ops/conv.js';
import { attention } from '../../src/ops/attention.js';
import { layerNorm, residualLayerNorm } from '../../src/ops/norm.js';
import { softmax } from '../../src/ops/loss.js';
import { AdamW } from '../../src/ops/optim.js';
import { gelu, dropout } from '../../src/ops/activation.js';
import { add } from '../../src/ops/elementwise.js';
import { reduceToScalar } from '../../src/ops/reduce.js';
import { timeGPU, summarize, type Row, type Timing } from './harness.js';

export function rand(rt: Runtime, shape: number[], label: string, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = ((s >>> 8) / (1 << 24) - 0.5) * scale;
  }
  return Tensor.fromData(rt, d, shape, 'f32', label);
}

export interface Peaks {
  fma: number; // GFLOP/s
  copy: number; // GB/s
  /** GFLOP/s of the 'gemm 1024x1024x1024' row, once the gemm section has run (the profiles' GEMM roof) */
  gemm1024?: number;
}

export async function benchGemm(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // [M, K, N, transB]: 1024^3, and the wav2vec2-large linear layers on 4 s of audio at batch 4 (4 x 200 frames)
  const shapes: [string, number, number, number, boolean][] = [
    ['gemm 1024x1024x1024', 1024, 1024, 1024, false],
    ['gemm qkv/out proj 800x1024 . 1024x1024^T', 800, 1024, 1024, true],
    ['gemm ffn up 800x1024 . 4096x1024^T', 800, 1024, 4096, true],
    ['gemm ffn down 800x4096 . 1024x4096^T', 800, 4096, 1024, true],
  ];
  for (const [name, M, K, N, transB] of quick ? shapes.slice(0, 2) : shapes) {
    const a = rand(rt, [M, K], 'a');
    const b = rand(rt, transB ? [N, K] : [K, N], 'b');
    // 9 repetitions: this row is the GEMM roof the conv rows and the profiles' roofline are measured against
    const t = await timeGPU(rt, () => noGrad(() => tidy(() => { matmul(a, b, { transB }); })), { reps: quick ? 3 : 9 });
    const gflops = (2 * M * N * K) / t.median / 1e9;
    if (M === 1024 && N === 1024 && K === 1024) peaks.gemm1024 = gflops;
    rows.push({ name, unit: 'GFLOP/s', ours: gflops, peak_fraction: gflops / peaks.fma, spread: [(2 * M * N * K) / t.max / 1e9, (2 * M * N * K) / t.min / 1e9] });
    a.dispose();
    b.dispose();
  }
  return rows;
}

export async function benchConv(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // XLSR feature encoder on 4 s of audio (64000 samples), batch 1: (Cin, Cout, K, stride, Tin); then the positional
  // conv (1024 channels, K = 128, padding 64, 16 groups) on those 4 s (199 frames). On CPU adapters with 8-wide
  // subgroups these run the implicit-GEMM subgroup kernels (src/ops/conv.ts picks them like matmul picks its GEMM).
  const layers: [string, number, number, number, number, number, number, number][] = [
    ['feature-encoder layer 0', 1, 512, 10, 5, 64000, 0, 1],
    ['feature-encoder layer 1', 512, 512, 3, 2, 12799, 0, 1],
    ['feature-encoder layer 2', 512, 512, 3, 2, 6399, 0, 1],
    ['feature-encoder layer 3', 512, 512, 3, 2, 3199, 0, 1],
    ['feature-encoder layer 4', 512, 512, 3, 2, 1599, 0, 1],
    ['feature-encoder layer 5', 512, 512, 2, 2, 799, 0, 1],
    ['feature-encoder layer 6', 512, 512, 2, 2, 399, 0, 1],
    ['positional conv', 1024, 1024, 128, 1, 199, 64, 16],
  ];
  const list = quick ? [layers[0], layers[1], layers[6], layers[7]] : layers;
  for (const [name, cin, cout, k, stride, tin, padding, groups] of list) {
    const x = rand(rt, [1, cin, tin], 'x');
    const w = rand(rt, [cout, cin / groups, k], 'w', 0.1);
    const tout = Math.floor((tin + 2 * padding - k) / stride) + 1;
    const flops = (2 * cout * cin * k * tout) / groups;
    const opts = { stride, padding, groups };
    const shape = `(${cin}->${cout}, k${k} s${stride}${padding ? ` p${padding}` : ''}${groups > 1 ? ` g${groups}` : ''}, T=${tin})`;
    const t = await timeGPU(rt, () => noGrad(() => tidy(() => { conv1d(x, w, null, opts); })), { reps: quick ? 3 : 9 });
    const g = flops / t.median / 1e9;
    // the issue's yardstick: the conv against this run's GEMM (a k3/k2 conv is a GEMM of M = Cout, N = Tout, K = Cin*k)
    const ofGemm = (v: number) => (peaks.gemm1024 ? `${((100 * v) / peaks.gemm1024).toFixed(0)}% of this run's gemm 1024^3` : undefined);
    rows.push({ name: `conv1d ${name} ${shape}`, unit: 'GFLOP/s', ours: g, peak_fraction: g / peaks.fma, spread: [flops / t.max / 1e9, flops / t.min / 1e9], note: ofGemm(g) });
    // forward + both gradients (grad x, grad w: 3x the forward's flops), for the 512-channel layers and the pos conv
    if (cin > 1 && (!quick || name !== 'feature-encoder layer 0')) {
      const gy = rand(rt, [1, cout, tout], 'gy');
      x.requiresGrad = true;
      w.requiresGrad = true;
      const tb = await timeGPU(rt, () => tidy(() => {
        backward(conv1d(x, w, null, opts), gy);
        for (const p of [x, w]) {
          p.grad?.dispose();
          p.grad = null;
        }
      }), { reps: quick ? 3 : 9 });
      const gb = (3 * flops) / tb.median / 1e9;
      const vsGemm = ofGemm(gb);
      rows.push({ name: `conv1d ${name} forward+backward ${shape}`, unit: 'GFLOP/s', ours: gb, peak_fraction: gb / peaks.fma, spread: [(3 * flops) / tb.max / 1e9, (3 * flops) / tb.min / 1e9], note: `forward, grad x and grad w: 3x the forward flops${vsGemm ? `; ${vsGemm}` : ''}` });
      gy.dispose();
    }
    x.dispose();
    w.dispose();
  }
  return rows;
}

export async function benchAttention(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const H = 16;
  const D = 64;
  for (const T of quick ? [200] : [200, 1000]) {
    const q = rand(rt, [1, T, H * D], 'q');
    const k = rand(rt, [1, T, H * D], 'k');
    const v = rand(rt, [1, T, H * D], 'v');
    const fwdFlops = 4 * H * T * T * D;
    const tf = await timeGPU(rt, () => noGrad(() => tidy(() => { attention(q, k, v, { heads: H }); })), { reps: quick ? 3 : 5 });
    rows.push({ name: `attention forward T=${T} 16x64`, unit: 'GFLOP/s', ours: fwdFlops / tf.median / 1e9, peak_fraction: fwdFlops / tf.median / 1e9 / peaks.fma, spread: [fwdFlops / tf.max / 1e9, fwdFlops / tf.min / 1e9] });
    q.requiresGrad = true;
    k.requiresGrad = true;
    v.requiresGrad = true;
    const gy = rand(rt, [1, T, H * D], 'gy');
    // forward + backward; backward ~2.5x the forward's flops (dq, dk, dv and the recomputed scores)
    const bwdFlops = fwdFlops * 2.5;
    const tb = await timeGPU(rt, () => tidy(() => {
      const o = attention(q, k, v, { heads: H });
      backward(o, gy);
      for (const t of [q, k, v]) {
        t.grad?.dispose();
        t.grad = null;
      }
    }), { reps: quick ? 3 : 5 });
    const tBwd = Math.max(tb.median - tf.median, 1e-9);
    rows.push({ name: `attention backward T=${T} 16x64`, unit: 'GFLOP/s', ours: bwdFlops / tBwd / 1e9, peak_fraction: bwdFlops / tBwd / 1e9 / peaks.fma, note: 'time of forward+backward minus forward' });
    for (const t of [q, k, v, gy]) t.dispose();
  }
  return rows;
}

/** GB/s row from bytes moved per call and a timing (spread from the fastest and slowest repetition). */
function bandwidthRow(name: string, bytes: number, t: { median: number; min: number; max: number }, peaks: Peaks, note: string): Row {
  const gbs = bytes / t.median / 1e9;
  return { name, unit: 'GB/s', ours: gbs, peak_fraction: gbs / peaks.copy, spread: [bytes / t.max / 1e9, bytes / t.min / 1e9], note };
}

/** Memory-bound rows (layer norm forward/backward, fused residual + layer norm, softmax): device-resident data. */
/** Time fnA and fnB alternately (A, B, A, B, ...) so that load from other jobs hits both alike. */
async function timeInterleaved(rt: Runtime, fnA: () => void, fnB: () => void, reps: number): Promise<[Timing, Timing]> {
  const once = async (fn: () => void): Promise<number> => {
    await rt.sync();
    const t0 = performance.now();
    fn();
    await rt.sync();
    return (performance.now() - t0) / 1000;
  };
  await once(fnA); // compile and warm up
  await once(fnB);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < reps; r++) {
    a.push(await once(fnA));
    b.push(await once(fnB));
  }
  return [summarize(a), summarize(b)];
}

/**
 * WavLM-large-sized attention (16 heads x 64) with the gated relative position bias (HF defaults: 320 buckets, max
 * distance 800) against plain attention, interleaved in one process; rows give the bias path's GFLOP/s (flops of the
 * plain attention) and the time ratio bias / plain in the note (goal for the forward: under 1.25).
 */
export async function benchAttentionRelativeBias(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const H = 16;
  const D = 64;
  const numBuckets = 320;
  for (const T of quick ? [200] : [200, 1000]) {
    const q = rand(rt, [1, T, H * D], 'q');
    const k = rand(rt, [1, T, H * D], 'k', 0.9);
    const v = rand(rt, [1, T, H * D], 'v', 1.1);
    const embedding = rand(rt, [numBuckets, H], 'rel_attn_embed');
    const gate = rand(rt, [1, H, T], 'gate', 0.5);
    const bias = { embedding, gate, numBuckets, maxDistance: 800 };
    const fwdFlops = 4 * H * T * T * D;
    const reps = quick ? 3 : 5;
    const [plain, biased] = await timeInterleaved(
      rt,
      () => noGrad(() => tidy(() => { attention(q, k, v, { heads: H }); })),
      () => noGrad(() => tidy(() => { attention(q, k, v, { heads: H, relativeBias: bias }); })),
      reps,
    );
    const ratio = biased.median / plain.median;
    rows.push({ name: `attention+rel. bias forward T=${T} 16x64`, unit: 'GFLOP/s', ours: fwdFlops / biased.median / 1e9, peak_fraction: fwdFlops / biased.median / 1e9 / peaks.fma, spread: [fwdFlops / biased.max / 1e9, fwdFlops / biased.min / 1e9], note: `time ${ratio.toFixed(3)}x plain attention (interleaved medians ${(plain.median * 1e3).toFixed(1)} / ${(biased.median * 1e3).toFixed(1)} ms; goal < 1.25x)` });
    for (const t of [q, k, v, embedding, gate]) t.requiresGrad = true;
    const gy = rand(rt, [1, T, H * D], 'gy');
    const step = (withBias: boolean) => () => tidy(() => {
      const o = attention(q, k, v, { heads: H, relativeBias: withBias ? bias : null });
      backward(o, gy);
      for (const t of [q, k, v, embedding, gate]) {
        t.grad?.dispose();
        t.grad = null;
      }
    });
    const [plainStep, biasedStep] = await timeInterleaved(rt, step(false), step(true), reps);
    const bwdFlops = fwdFlops * 2.5;
    const plainBwd = Math.max(plainStep.median - plain.median, 1e-9);
    const biasedBwd = Math.max(biasedStep.median - biased.median, 1e-9);
    rows.push({ name: `attention+rel. bias backward T=${T} 16x64`, unit: 'GFLOP/s', ours: bwdFlops / biasedBwd / 1e9, peak_fraction: bwdFlops / biasedBwd / 1e9 / peaks.fma, note: `time of forward+backward minus forward; ${(biasedBwd / plainBwd).toFixed(3)}x plain attention's backward (interleaved, ${(plainBwd * 1e3).toFixed(1)} / ${(biasedBwd * 1e3).toFixed(1)} ms; includes dE and dgate)` });
    for (const t of [q, k, v, embedding, gate, gy]) t.dispose();
  }
  return rows;
}

/** The memory-bound rows' problem size and timing: a [R, 1024] f32 activation, device-resident. */
function memoryBoundSetup(quick: boolean) {
  const R = quick ? 800 : 4000;
  const C = 1024;
  // a call takes a few ms: many of them, so that one preempted repetition does not decide the row
  const reps = quick ? 3 : 9;
  const inner = quick ? 2 : 8;
  return { R, C, bytes: R * C * 4, reps, inner, timed: `device-resident data, ${inner} calls per submit + wait, median of ${reps}` };
}

export async function benchLayerNorm(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const { R, C, bytes, reps, inner, timed } = memoryBoundSetup(quick);
  const x = rand(rt, [R, C], 'x');
  const r = rand(rt, [R, C], 'residual');
  const w = rand(rt, [C], 'w');
  const b = rand(rt, [C], 'b');
  const gy = rand(rt, [R, C], 'gy');
  const tf = await timeGPU(rt, () => noGrad(() => tidy(() => { layerNorm(x, w, b, 1e-5); })), { reps, inner });
  rows.push(bandwidthRow(`layer norm ${R}x${C}`, 2 * bytes, tf, peaks, `GB/s = (read x + write y) / time; ${timed}`));
  x.requiresGrad = true;
  w.requiresGrad = true;
  b.requiresGrad = true;
  const tfb = await timeGPU(rt, () => tidy(() => {
    backward(layerNorm(x, w, b, 1e-5), gy);
    for (const t of [x, w, b]) {
      t.grad?.dispose();
      t.grad = null;
    }
  }), { reps, inner });
  x.requiresGrad = false;
  w.requiresGrad = false;
  b.requiresGrad = false;
  // backward: dx pass reads x, dy and writes dx; the affine-gradient pass reads x and dy again
  const tb = { median: Math.max(tfb.median - tf.median, 1e-9), min: Math.max(tfb.min - tf.median, 1e-9), max: Math.max(tfb.max - tf.median, 1e-9) };
  rows.push(bandwidthRow(`layer norm backward ${R}x${C} (dx, dweight, dbias)`, 5 * bytes, tb, peaks, `GB/s = (read x, dy twice + write dx) / time; time = forward+backward minus forward; ${timed}`));
  const tr = await timeGPU(rt, () => noGrad(() => tidy(() => { residualLayerNorm(x, r, w, b, 1e-5); })), { reps, inner });
  rows.push(bandwidthRow(`residual add + layer norm ${R}x${C} (fused)`, 4 * bytes, tr, peaks, `GB/s = (read x, residual + write sum, y) / time; ${timed}`));
  const ts = await timeGPU(rt, () => noGrad(() => tidy(() => { softmax(x); })), { reps, inner });
  rows.push(bandwidthRow(`softmax ${R}x${C} (last axis)`, 2 * bytes, ts, peaks, `GB/s = (read x + write y) / time; ${timed}`));
  for (const t of [x, r, w, b, gy]) t.dispose();
  return rows;
}

/** The other memory-bound kernels a training step runs: GELU, residual add, dropout, the gradient-norm reduction. */
export async function benchElementwise(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const { R, C, bytes, reps, inner, timed } = memoryBoundSetup(quick);
  const x = rand(rt, [R, C], 'x');
  const r = rand(rt, [R, C], 'residual');
  const tg = await timeGPU(rt, () => noGrad(() => tidy(() => { gelu(x); })), { reps, inner });
  rows.push(bandwidthRow(`GELU ${R}x${C}`, 2 * bytes, tg, peaks, `GB/s = (read x + write y) / time; ${timed}`));
  const ta = await timeGPU(rt, () => noGrad(() => tidy(() => { add(x, r); })), { reps, inner });
  rows.push(bandwidthRow(`add ${R}x${C}`, 3 * bytes, ta, peaks, `GB/s = (read a, b + write y) / time; ${timed}`));
  const td = await timeGPU(rt, () => noGrad(() => tidy(() => { dropout(x, 0.1, true); })), { reps, inner });
  rows.push(bandwidthRow(`dropout ${R}x${C} (p = 0.1, training)`, 2 * bytes, td, peaks, `GB/s = (read x + write y) / time; the mask is hashed, not stored; ${timed}`));
  const tn = await timeGPU(rt, () => noGrad(() => tidy(() => { reduceToScalar(x, { term: 'square', sqrt: true }); })), { reps, inner });
  rows.push(bandwidthRow(`L2 norm of ${R * C} values (gradient-norm clipping's reduction)`, bytes, tn, peaks, `GB/s = (read x) / time; every pass until one value; ${timed}`));
  for (const t of [x, r]) t.dispose();
  return rows;
}

export async function benchAdamW(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const n = quick ? 1 << 20 : 1 << 23;
  const p = rand(rt, [n], 'param');
  p.requiresGrad = true;
  p.grad = rand(rt, [n], 'grad');
  const opt = new AdamW([p], { lr: 1e-3, weightDecay: 0.01 });
  const reps = quick ? 3 : 5;
  const inner = quick ? 2 : 4;
  const t = await timeGPU(rt, () => opt.step(), { reps, inner });
  p.grad.dispose();
  p.dispose();
  // reads p, g, m, v; writes p, m, v
  return [bandwidthRow(`AdamW step ${n} params`, 7 * 4 * n, t, peaks, `GB/s = (read p, g, m, v + write p, m, v) / time; device-resident data, ${inner} steps per submit + wait, median of ${reps}`)];
}
