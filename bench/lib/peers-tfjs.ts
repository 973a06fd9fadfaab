// Peer: TensorFlow.js with its WebGPU backend, in the same Node process and on the same Dawn instance and adapter as
// our runtime (tfjs-backend-webgpu asks navigator.gpu for an adapter; we hand it our pinned GPU object, so both
// open a device on the same Vulkan driver). Same ops, same shapes, same data; inputs resident on the GPU on both
// sides (tfjs uploads a tensor at its first use: the warm-up runs do that); each repetition records several
// iterations (innerFor), submits, and waits for the queue once (no readback), and reports the time per iteration, on
// both sides alike.
// Results are read once (t.data(); dataSync() does not work in Node) and compared with ours.
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { tidy, noGrad, backward } from '../../src/autograd.js';
import { matmul } from '../../src/ops/matmul.js';
import { conv1d } from '../../src/ops/conv.js';
import { layerNorm } from '../../src/ops/norm.js';
import { attention } from '../../src/ops/attention.js';
import { sum } from '../../src/ops/reduce.js';
import { softmax } from '../../src/ops/loss.js';
import { nodeGPU } from '../../src/node/dawn.js';
import { timeGPU, timeAsync, type Row, type Timing } from './harness.js';
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
const TIMED = `device-resident inputs, up to ${MAX_INNER} iterations per submit + wait (a repetition ~${TARGET_SECONDS * 1000} ms), no transfers on either side`;

function innerFor(seconds: number): number {
  return Math.max(1, Math.min(MAX_INNER, Math.ceil(TARGET_SECONDS / Math.max(seconds, 1e-6))));
}

async function timeTf(tf: TF, fn: () => void, reps: number): Promise<Timing> {
  const once = async () => {
    tf.tidy(fn);
    await tfSync(tf);
  };
  const single = await timeAsync(once, { reps: 1, warmup: 2 });
  const inner = innerFor(single.median);
  const t = await timeAsync(async () => {
    for (let i = 0; i < inner; i++) tf.tidy(fn);
    await tfSync(tf);
  }, { reps, warmup: 0 });
  return { ...t, median: t.median / inner, min: t.min / inner, max: t.max / inner };
}

/** Ours, with the same iteration rule as timeTf. */
async function timeOurs(rt: Runtime, fn: () => void, reps: number): Promise<Timing> {
  const single = await timeGPU(rt, fn, { reps: 1, warmup: 2 });
  return timeGPU(rt, fn, { reps, warmup: 0, inner: innerFor(single.median) });
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
  const ourTime = (fn: () => void) => timeOurs(rt, () => noGrad(() => tidy(fn)), reps);
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
        const ours = await ourTime(() => { matmul(a, b, { transB }); });
        const peer = await timeTf(tf, () => { tf.matMul(ta, tb, false, transB); }, reps);
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
        const ours = await ourTime(() => { conv1d(x, w, null, { stride }); });
        const peer = await timeTf(tf, () => { tf.conv1d(tx, tw, stride, 'valid'); }, reps);
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
      const tfLN = () => {
        const { mean, variance } = tf.moments(tx, -1, true);
        return tx.sub(mean).mul(tf.rsqrt(variance.add(1e-5))).mul(tg).add(tb);
      };
      try {
        const ours = await ourTime(() => { layerNorm(x, g, b, 1e-5); });
        const peer = await timeTf(tf, () => { tfLN(); }, reps);
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

  // softmax over the last axis of attention-score-sized rows (16 heads x T x T at T = 200)
  {
    const R = 16 * 200, C = 200;
    const name = `softmax ${R}x${C} (last axis)`;
    await attempt(name, 'GB/s', async () => {
      const xd = randArray(R * C, 18, 8);
      const x = up(xd, [R, C], 'x');
      const tx = tf.tensor2d(xd, [R, C]);
      try {
        const ours = await ourTime(() => { softmax(x); });
        const peer = await timeTf(tf, () => { tf.softmax(tx); }, reps);
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
        const ours = await ourTime(() => { attention(q, k, v, { heads: H }); });
        const peer = await timeTf(tf, () => { tfAttn(); }, reps);
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
        const ours = await timeOurs(rt, () => { ourStep(); clear(); }, reps);
        const peer = await timeTf(tf, () => { tfGrads([ta, tb]); }, reps);
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
