// Peer: TensorFlow.js with its WebGPU backend, in the same Node process and on the same Dawn instance and adapter as
// our runtime (tfjs-backend-webgpu asks navigator.gpu for an adapter; we hand it our pinned GPU object, so both
// open a device on the same Vulkan driver). Same ops, same shapes, same data; inputs resident on the GPU on both
// sides (tfjs uploads a tensor at its first use: the warm-up runs do that); each repetition records several
// iterations (innerFor), submits, and waits for the queue once (no readback), and reports the time per iteration, on
// both sides alike. The two sides' repetitions alternate (ours, tfjs, ours, ...), so both see the same spells of a
// shared host.
// Results are read once (t.data(); dataSync() does not work in Node) and compared with ours.
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { tidy, noGrad, backward } from '../../src/autograd.js';
import { matmul } from '../../src/ops/matmul.js';
import { conv1d } from '../../src/ops/conv.js';
import { layerNorm } from '../../src/ops/norm.js';
import { attention } from '../../src/ops/attention.js';
import { sum, reduceToScalar } from '../../src/ops/reduce.js';
import { softmax } from '../../src/ops/loss.js';
import { gelu } from '../../src/ops/activation.js';
import { add } from '../../src/ops/elementwise.js';
import { AdamW } from '../../src/ops/optim.js';
import { nodeGPU } from '../../src/node/dawn.js';
import { timeGPU, summarize, type Row, type Timing } from './harness.js';
import { randArray, agree, type Peaks } from './peers-common.js';

type TF = typeof import('@tensorflow/tfjs');
type TFTensor = import('@tensorflow/tfjs').Tensor;

/** Load tfjs with the WebGPU backend on our Dawn instance; throws (section skipped) if either package is missing. */
async function loadTfjs(): Promise<TF> {
  const gpu = nodeGPU();
  const nav = (globalThis as any).navigator;
  if (!nav?.gpu) {
    // Node >= 21 has a read-only navigator without gpu: redefine it (configurable) rather than assign
    Object.defineProperty(globalThis, 'navigator', { value: { ...(nav ?? {}), gpu }, configurable: true, writable: true });
  }
  let tf: TF;
  try {
    const m = await import('@tensorflow/tfjs');
    tf = ((m as any).default?.matMul ? (m as any).default : m) as TF;
    // the backend registers itself at import time if navigator.gpu exists, hence after the line above
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    throw new Error(`@tensorflow/tfjs or @tensorflow/tfjs-backend-webgpu not installed (npm install): ${(e as Error).message.split('\n')[0]}`);
  }
  // small ops with CPU-resident inputs would otherwise run on tfjs's CPU path
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs could not start its WebGPU backend on this adapter');
  await tf.ready();
  return tf;
}

/** Submit what tfjs has recorded and wait for the GPU (the backend batches dispatches into one command encoder). */
async function tfSync(tf: TF): Promise<void> {
  const b = tf.backend() as any;
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await b.device.queue.onSubmittedWorkDone();
}

/**
 * Iterations per timed repetition, the same rule on both sides: as many as make a repetition last ~50 ms (from one
 * warm iteration's time), at most MAX_INNER; one submit + wait per repetition, time reported per iteration.
 */
const MAX_INNER = 10;
const TARGET_SECONDS = 0.05;
const TIMED = `device-resident inputs, up to ${MAX_INNER} iterations per submit + wait (a repetition ~${TARGET_SECONDS * 1000} ms), no transfers on either side, repetitions alternating between the two sides`;

function innerFor(seconds: number): number {
  return Math.max(1, Math.min(MAX_INNER, Math.ceil(TARGET_SECONDS / Math.max(seconds, 1e-6))));
}

/** One tfjs repetition: `inner` iterations recorded, one submit + wait; seconds per iteration. */
async function tfRep(tf: TF, fn: () => void, inner: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < inner; i++) tf.tidy(fn);
  await tfSync(tf);
  return (performance.now() - t0) / 1000 / inner;
}

/**
 * Ours and tfjs on the same work: each side warmed up (two runs) and timed once to pick its iterations per repetition
 * (innerFor), then `reps` repetitions alternating ours, tfjs, ours, ...
 */
async function timeBoth(rt: Runtime, tf: TF, ours: () => void, theirs: () => void, reps: number): Promise<{ ours: Timing; peer: Timing }> {
  const oursInner = innerFor((await timeGPU(rt, ours, { reps: 1, warmup: 2 })).median);
  for (let i = 0; i < 2; i++) await tfRep(tf, theirs, 1);
  const tfInner = innerFor(await tfRep(tf, theirs, 1));
  const o: number[] = [];
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    o.push((await timeGPU(rt, ours, { reps: 1, warmup: 0, inner: oursInner })).median);
    t.push(await tfRep(tf, theirs, tfInner));
  }
  return { ours: summarize(o), peer: summarize(t) };
}

/** Layer norm over the last axis (eps 1e-5) from tfjs ops: tf.moments + elementwise (tfjs has no layer norm op). */
function tfLayerNorm(tf: TF, x: TFTensor, weight: TFTensor, bias: TFTensor): TFTensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return x.sub(mean).mul(tf.rsqrt(variance.add(1e-5))).mul(weight).add(bias);
}

/** [rows, cols] row-major -> [cols, rows] */
function transpose2(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** [A, B, C] -> [B, A, C] */
function swap01(a: Float32Array, A: number, B: number, C: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < A; i++) for (let j = 0; j < B; j++) out.set(a.subarray((i * B + j) * C, (i * B + j + 1) * C), (j * A + i) * C);
  return out;
}

interface Pair {
  name: string;
  unit: string;
  work: number;
  ours: Timing;
  peer: Timing;
  agreement: string;
  note?: string;
}

function row(p: Pair): Row {
  const rate = (t: number) => p.work / t / 1e9;
  return {
    name: `${p.name} vs TensorFlow.js WebGPU`,
    unit: p.unit,
    ours: rate(p.ours.median),
    spread: [rate(p.ours.max), rate(p.ours.min)],
    peer: 'TensorFlow.js 4.22 WebGPU backend',
    peer_value: rate(p.peer.median),
    speedup: p.peer.median / p.ours.median,
    note: `timed: ${TIMED}; results agree to rel. L2 ${p.agreement}${p.note ? `; ${p.note}` : ''}`,
  };
}

export async function benchTfjs(rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const tf = await loadTfjs();
  const reps = quick ? 3 : 5;
  const rows: Row[] = [];
  const up = (d: Float32Array, shape: number[], label: string) => Tensor.fromData(rt, d, shape, 'f32', label);
  // ours inside noGrad + tidy (nothing recorded for backward, every intermediate freed), against tfjs's fn
  const both = (ours: () => void, theirs: () => void) => timeBoth(rt, tf, () => noGrad(() => tidy(ours)), theirs, reps);
  const attempt = async (name: string, unit: string, fn: () => Promise<Pair>) => {
    try {
      rows.push(row(await fn()));
    } catch (e) {
      rows.push({ name: `${name} vs TensorFlow.js WebGPU`, unit, ours: NaN, note: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  };

  // matmul: square, and a wav2vec2 projection (frames x hidden . weight^T, nn.Linear layout)
  const mmShapes: [string, number, number, number, boolean][] = quick
    ? [['matmul 512x512x512', 512, 512, 512, false], ['matmul wav2vec2 proj 200x1024 . (1024x1024)^T', 200, 1024, 1024, true]]
    : [['matmul 1024x1024x1024', 1024, 1024, 1024, false], ['matmul wav2vec2 ffn up 800x1024 . (4096x1024)^T', 800, 1024, 4096, true]];
  for (const [name, M, K, N, transB] of mmShapes) {
    await attempt(name, 'GFLOP/s', async () => {
      const ad = randArray(M * K, 11);
      const bd = randArray(K * N, 12, 1 / Math.sqrt(K));
      const bShape = transB ? [N, K] : [K, N];
      const a = up(ad, [M, K], 'a');
      const b = up(bd, bShape, 'b');
      const ta = tf.tensor2d(ad, [M, K]);
      const tb = tf.tensor2d(bd, bShape as [number, number]);
      try {
        const { ours, peer } = await both(() => { matmul(a, b, { transB }); }, () => { tf.matMul(ta, tb, false, transB); });
        const y = noGrad(() => matmul(a, b, { transB }));
        const oy = await y.readFloat();
        y.dispose();
        const ty = tf.matMul(ta, tb, false, transB);
        const py = (await ty.data()) as Float32Array;
        ty.dispose();
        return { name, unit: 'GFLOP/s', work: 2 * M * N * K, ours, peer, agreement: agree(oy, py) };
      } finally {
        a.dispose();
        b.dispose();
        tf.dispose([ta, tb]);
      }
    });
  }

  // conv1d: feature-encoder layer 1 (512 -> 512, k3 s2). tfjs conv1d is NWC with [k, Cin, Cout] filters (its only
  // layout); ours is PyTorch's NCW with [Cout, Cin, k]. Same data, permuted.
  {
    const cin = 512, cout = 512, k = 3, stride = 2, T = quick ? 1599 : 12799;
    const tout = Math.floor((T - k) / stride) + 1;
    const name = `conv1d feature-encoder layer ${cin}->${cout} k${k} s${stride} T=${T}`;
    await attempt(name, 'GFLOP/s', async () => {
      const xd = randArray(cin * T, 13); // [Cin, T]
      const wd = randArray(cout * cin * k, 14, 1 / Math.sqrt(cin * k)); // [Cout, Cin, k]
      const x = up(xd, [1, cin, T], 'x');
      const w = up(wd, [cout, cin, k], 'w');
      const wNWC = new Float32Array(wd.length); // [k, Cin, Cout]
      for (let o = 0; o < cout; o++) for (let i = 0; i < cin; i++) for (let j = 0; j < k; j++) wNWC[(j * cin + i) * cout + o] = wd[(o * cin + i) * k + j];
      const tx = tf.tensor3d(transpose2(xd, cin, T), [1, T, cin]);
      const tw = tf.tensor3d(wNWC, [k, cin, cout]);
      try {
        const { ours, peer } = await both(() => { conv1d(x, w, null, { stride }); }, () => { tf.conv1d(tx, tw, stride, 'valid'); });
        const y = noGrad(() => conv1d(x, w, null, { stride }));
        const oy = await y.readFloat();
        y.dispose();
        const ty = tf.conv1d(tx, tw, stride, 'valid');
        const py = transpose2((await ty.data()) as Float32Array, tout, cout);
        ty.dispose();
        return { name, unit: 'GFLOP/s', work: 2 * cout * cin * k * tout, ours, peer, agreement: agree(oy, py), note: 'tfjs in its NWC layout' };
      } finally {
        x.dispose();
        w.dispose();
        tf.dispose([tx, tw]);
      }
    });
  }

  // layer norm over 1024 channels: tf.moments + elementwise (tfjs has no fused layer norm op)
  {
    const R = quick ? 200 : 800, C = 1024;
    const name = `layer norm ${R}x${C}`;
    await attempt(name, 'GB/s', async () => {
      const xd = randArray(R * C, 15);
      const gd = randArray(C, 16);
      const bd = randArray(C, 17);
      const x = up(xd, [R, C], 'x');
      const g = up(gd, [C], 'g');
      const b = up(bd, [C], 'b');
      const tx = tf.tensor2d(xd, [R, C]);
      const tg = tf.tensor1d(gd);
      const tb = tf.tensor1d(bd);
      const tfLN = () => tfLayerNorm(tf, tx, tg, tb);
      try {
        const { ours, peer } = await both(() => { layerNorm(x, g, b, 1e-5); }, () => { tfLN(); });
        const y = noGrad(() => layerNorm(x, g, b, 1e-5));
        const oy = await y.readFloat();
        y.dispose();
        const ty = tf.tidy(tfLN);
        const py = (await ty.data()) as Float32Array;
        ty.dispose();
        return { name, unit: 'GB/s', work: 2 * R * C * 4, ours, peer, agreement: agree(oy, py), note: 'GB/s = (read x + write y) / time; tfjs: tf.moments-based' };
      } finally {
        for (const t of [x, g, b]) t.dispose();
        tf.dispose([tx, tg, tb]);
      }
    });
  }

  // layer norm backward (dx, dweight, dbias) through tf.grads of the same moments-based layer norm; both sides time
  // forward + backward with a given output gradient, and the row's time is that minus the forward's
  {
    const R = quick ? 200 : 800, C = 1024;
    const name = `layer norm backward ${R}x${C} (dx, dweight, dbias)`;
    await attempt(name, 'GB/s', async () => {
      const [xd, gd, bd, dyd] = [41, 42, 43, 44].map((seed, i) => randArray(i === 1 || i === 2 ? C : R * C, seed));
      const x = up(xd, [R, C], 'x');
      const g = up(gd, [C], 'g');
      const b = up(bd, [C], 'b');
      const dy = up(dyd, [R, C], 'dy');
      const [tx, tdy] = [xd, dyd].map((d) => tf.tensor2d(d, [R, C]));
      const [tg, tb] = [gd, bd].map((d) => tf.tensor1d(d));
      const tfGrads = tf.grads((xx: TFTensor, gg: TFTensor, bb: TFTensor) => tfLayerNorm(tf, xx, gg, bb));
      for (const t of [x, g, b]) t.requiresGrad = true;
      const clear = () => {
        for (const t of [x, g, b]) {
          t.grad?.dispose();
          t.grad = null;
        }
      };
      const ourStep = () => tidy(() => backward(layerNorm(x, g, b, 1e-5), dy));
      try {
        const fwd = await both(() => { layerNorm(x, g, b, 1e-5); }, () => { tfLayerNorm(tf, tx, tg, tb); });
        const fwdBwd = await timeBoth(rt, tf, () => { ourStep(); clear(); }, () => { tfGrads([tx, tg, tb], tdy); }, reps);
        ourStep();
        const og = [...(await x.grad!.readFloat()), ...(await g.grad!.readFloat()), ...(await b.grad!.readFloat())];
        clear();
        const pgT = tfGrads([tx, tg, tb], tdy);
        const pg: number[] = [];
        for (const t of pgT) for (const value of (await t.data()) as Float32Array) pg.push(value);
        tf.dispose(pgT);
        const minus = (both: Timing, fwd: Timing): Timing => ({ ...both, median: Math.max(both.median - fwd.median, 1e-9), min: Math.max(both.min - fwd.median, 1e-9), max: Math.max(both.max - fwd.median, 1e-9) });
        return { name, unit: 'GB/s', work: 5 * R * C * 4, ours: minus(fwdBwd.ours, fwd.ours), peer: minus(fwdBwd.peer, fwd.peer), agreement: agree(og, pg), note: 'GB/s = (read x, dy twice + write dx) / time; time = forward+backward minus forward on each side; tfjs: tf.grads of the tf.moments-based layer norm' };
      } finally {
        clear();
        for (const t of [x, g, b, dy]) t.dispose();
        tf.dispose([tx, tdy, tg, tb]);
      }
    });
  }

  // the other memory-bound ops of a training step, on the bench's memory-bound size: GELU (exact erf form; tfjs has
  // no GELU op, so x * 0.5 * (1 + erf(x / sqrt 2)) from its ops), residual add, the L2 norm of gradient clipping
  {
    const R = quick ? 200 : 4000, C = 1024, n = R * C;
    const xd = randArray(n, 51);
    const rd = randArray(n, 52);
    const x = up(xd, [R, C], 'x');
    const r = up(rd, [R, C], 'residual');
    const tx = tf.tensor2d(xd, [R, C]);
    const tr = tf.tensor2d(rd, [R, C]);
    const tfGelu = () => tx.mul(0.5).mul(tf.erf(tx.mul(Math.SQRT1_2)).add(1));
    const tfNorm = () => tf.sqrt(tf.sum(tf.square(tx)));
    const cases: [string, number, string, () => Tensor, () => TFTensor][] = [
      [`GELU ${R}x${C}`, 2 * n * 4, 'GB/s = (read x + write y) / time; tfjs: erf-based GELU from its ops', () => gelu(x), tfGelu],
      [`add ${R}x${C}`, 3 * n * 4, 'GB/s = (read a, b + write y) / time', () => add(x, r), () => tf.add(tx, tr)],
      [`L2 norm of ${n} values`, n * 4, 'GB/s = (read x) / time; every pass until one value; tfjs: sqrt(sum(square(x)))', () => reduceToScalar(x, { term: 'square', sqrt: true }), tfNorm],
    ];
    try {
      for (const [name, bytes, note, oursOp, tfOp] of cases) {
        await attempt(name, 'GB/s', async () => {
          const { ours, peer } = await both(() => { oursOp(); }, () => { tfOp(); });
          const y = noGrad(() => oursOp());
          const oy = await y.readFloat();
          y.dispose();
          const ty = tf.tidy(tfOp);
          const py = (await ty.data()) as Float32Array;
          ty.dispose();
          return { name, unit: 'GB/s', work: bytes, ours, peer, agreement: agree(oy, py), note };
        });
      }
    } finally {
      x.dispose();
      r.dispose();
      tf.dispose([tx, tr]);
    }
  }

  // AdamW step (decoupled weight decay, PyTorch's update) on one parameter tensor; tfjs has no AdamW optimizer, so its
  // side is the same update written with its ops on variables (tf.train.adam lacks the decoupled decay)
  {
    const n = quick ? 1 << 18 : 1 << 22;
    const name = `AdamW step ${n} params`;
    await attempt(name, 'GB/s', async () => {
      const lr = 1e-3, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
      const pd = randArray(n, 61);
      const gd = randArray(n, 62);
      const p = up(pd, [n], 'param');
      p.requiresGrad = true;
      p.grad = up(gd, [n], 'grad');
      const opt = new AdamW([p], { lr, weightDecay: wd, betas: [b1, b2], eps });
      const tp = tf.variable(tf.tensor1d(pd));
      const tm = tf.variable(tf.zeros([n]));
      const tv = tf.variable(tf.zeros([n]));
      const tgr = tf.tensor1d(gd);
      let tfStep = 0;
      const tfAdamW = () => {
        tfStep++;
        const m = tm.mul(b1).add(tgr.mul(1 - b1));
        const v = tv.mul(b2).add(tgr.square().mul(1 - b2));
        const update = m.div(1 - b1 ** tfStep).div(v.div(1 - b2 ** tfStep).sqrt().add(eps));
        tp.assign(tp.mul(1 - lr * wd).sub(update.mul(lr)));
        tm.assign(m);
        tv.assign(v);
      };
      try {
        // one step from the same start on both sides, compared; then both keep stepping for the timing
        opt.step();
        const op = await p.readFloat();
        tf.tidy(tfAdamW);
        const pp = (await tp.data()) as Float32Array;
        const { ours, peer } = await timeBoth(rt, tf, () => opt.step(), tfAdamW, reps);
        return { name, unit: 'GB/s', work: 7 * 4 * n, ours, peer, agreement: agree(op, pp), note: 'GB/s = (read p, g, m, v + write p, m, v) / time; results compared after the first step; tfjs: the update from its ops on variables' };
      } finally {
        p.grad?.dispose();
        p.dispose();
        tf.dispose([tp, tm, tv, tgr]);
      }
    });
  }

  // softmax over the last axis of attention-score-sized rows (16 heads x T x T at T = 200)
  {
    const R = 16 * 200, C = 200;
    const name = `softmax ${R}x${C} (last axis)`;
    await attempt(name, 'GB/s', async () => {
      const xd = randArray(R * C, 18, 8);
      const x = up(xd, [R, C], 'x');
      const tx = tf.tensor2d(xd, [R, C]);
      try {
        const { ours, peer } = await both(() => { softmax(x); }, () => { tf.softmax(tx); });
        const y = noGrad(() => softmax(x));
        const oy = await y.readFloat();
        y.dispose();
        const ty = tf.softmax(tx);
        const py = (await ty.data()) as Float32Array;
        ty.dispose();
        return { name, unit: 'GB/s', work: 2 * R * C * 4, ours, peer, agreement: agree(oy, py), note: 'GB/s = (read x + write y) / time' };
      } finally {
        x.dispose();
        tx.dispose();
      }
    });
  }

  // attention T=200, 16 heads x 64: ours is the fused flash kernel on [B, T, H*D]; tfjs is matmul-softmax-matmul on
  // head-major [H, T, D] (given that layout for free: no reshape/transpose counted on its side)
  {
    const T = 200, H = 16, D = 64;
    const name = `attention T=${T} ${H}x${D} (matmul-softmax-matmul)`;
    await attempt(name, 'GFLOP/s', async () => {
      const [qd, kd, vd] = [21, 22, 23].map((s) => randArray(T * H * D, s));
      const [q, k, v] = [qd, kd, vd].map((d, i) => up(d, [1, T, H * D], 'qkv'[i]));
      const [tq, tk, tv] = [qd, kd, vd].map((d) => tf.tensor3d(swap01(d, T, H, D), [H, T, D]));
      const scale = 1 / Math.sqrt(D);
      const tfAttn = () => tf.matMul(tf.softmax(tf.matMul(tq, tk, false, true).mul(scale)), tv);
      try {
        const { ours, peer } = await both(() => { attention(q, k, v, { heads: H }); }, () => { tfAttn(); });
        const y = noGrad(() => attention(q, k, v, { heads: H }));
        const oy = await y.readFloat();
        y.dispose();
        const ty = tf.tidy(tfAttn);
        const py = swap01((await ty.data()) as Float32Array, H, T, D);
        ty.dispose();
        return { name, unit: 'GFLOP/s', work: 4 * H * T * T * D, ours, peer, agreement: agree(oy, py), note: 'tfjs given head-major [H, T, D] inputs' };
      } finally {
        for (const t of [q, k, v]) t.dispose();
        tf.dispose([tq, tk, tv]);
      }
    });
  }

  // backward: gradients of sum(A . B) with respect to A and B (forward + two GEMMs), tf.grads vs our autograd
  {
    const n = quick ? 512 : 1024;
    const name = `backward of sum(A.B) ${n}^3 (forward + dA + dB)`;
    await attempt(name, 'GFLOP/s', async () => {
      const ad = randArray(n * n, 31);
      const bd = randArray(n * n, 32, 1 / Math.sqrt(n));
      const a = up(ad, [n, n], 'a');
      const b = up(bd, [n, n], 'b');
      a.requiresGrad = true;
      b.requiresGrad = true;
      const ta = tf.tensor2d(ad, [n, n]);
      const tb = tf.tensor2d(bd, [n, n]);
      const tfGrads = tf.grads((x: TFTensor, y: TFTensor) => tf.matMul(x, y).sum());
      const ourStep = () => {
        tidy(() => backward(sum(matmul(a, b))));
      };
      const clear = () => {
        for (const t of [a, b]) {
          t.grad?.dispose();
          t.grad = null;
        }
      };
      try {
        const { ours, peer } = await timeBoth(rt, tf, () => { ourStep(); clear(); }, () => { tfGrads([ta, tb]); }, reps);
        ourStep();
        const og = [...(await a.grad!.readFloat()), ...(await b.grad!.readFloat())];
        clear();
        const [ga, gb] = tfGrads([ta, tb]);
        const pg = [...((await ga.data()) as Float32Array), ...((await gb.data()) as Float32Array)];
        tf.dispose([ga, gb]);
        return { name, unit: 'GFLOP/s', work: 6 * n * n * n, ours, peer, agreement: agree(og, pg) };
      } finally {
        a.dispose();
        b.dispose();
        tf.dispose([ta, tb]);
      }
    });
  }

  tf.disposeVariables();
  tf.removeBackend('webgpu');
  return rows;
}
