// Micro-bench of the fused attention kernels: forward and backward at 16 heads x 64, batch 1, T = 200 and 1000.
//   node build/bench/attention.mjs [T ...] [--forward] [--portable] [--bias] [--reps=N]
//     --forward   forward only;  --portable  the workgroup-memory kernels even where subgroup ones can run
//     --bias      WavLM's gated relative position bias (320 buckets, max distance 800) against plain attention,
//                 alternating plain / bias call by call; prints medians of wall time and of worker CPU time, and the
//                 bias / plain ratios (the CPU-time ratio is the steadier one on a shared machine)
// Forward counts 4*B*H*T*T*D flops (QK^T and PV); backward counts 10*B*H*T*T*D (the five matmuls of
// FlashAttention-2's backward, not counting the recomputation of QK^T in its two passes).
// Besides wall time it prints the CPU time of the process's non-main threads (where lavapipe runs shaders), read from
// /proc on Linux: on a machine shared with other jobs, flops per worker-CPU-second is the steadier number.
import fs from 'node:fs';
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { attention, setAttentionSubgroups } from '../src/ops/attention.js';
import { backward, tidy } from '../src/autograd.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() needs

const H = 16;
const D = 64;
const B = 1;

function randomData(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

/** CPU seconds used so far by every thread of this process except the main (JS) one; NaN where /proc is missing. */
function workerCpuSeconds(): number {
  try {
    let ticks = 0;
    for (const tid of fs.readdirSync('/proc/self/task')) {
      if (Number(tid) === process.pid) continue;
      const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    }
    return ticks / 100;
  } catch {
    return NaN;
  }
}

interface Timing {
  ms: number;
  cpuSeconds: number;
}

async function time(rt: Awaited<ReturnType<typeof createNodeRuntime>>, reps: number, fn: () => void): Promise<Timing> {
  fn(); // compile and warm up
  await rt.sync();
  const cpu0 = workerCpuSeconds();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await rt.sync();
  return { ms: (performance.now() - t0) / reps, cpuSeconds: (workerCpuSeconds() - cpu0) / reps };
}

function report(what: string, flops: number, t: Timing): string {
  const cpu = Number.isFinite(t.cpuSeconds) && t.cpuSeconds > 0 ? `, ${(flops / t.cpuSeconds / 1e9).toFixed(1)} GFLOP per worker-CPU-second` : '';
  return `${what} ${t.ms.toFixed(1)} ms ${(flops / t.ms / 1e6).toFixed(1)} GFLOP/s${cpu}`;
}

/** One call of fn (then a sync): wall ms and worker CPU seconds. */
async function once(rt: Awaited<ReturnType<typeof createNodeRuntime>>, fn: () => void): Promise<Timing> {
  await rt.sync();
  const cpu0 = workerCpuSeconds();
  const t0 = performance.now();
  fn();
  await rt.sync();
  return { ms: performance.now() - t0, cpuSeconds: workerCpuSeconds() - cpu0 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Plain vs relative-bias attention, alternating call by call, forward and forward+backward. */
async function benchBias(rt: Awaited<ReturnType<typeof createNodeRuntime>>, T: number, reps: number, forwardOnly: boolean): Promise<void> {
  const n = B * T * H * D;
  const q = Tensor.fromData(rt, randomData(n, 1), [B, T, H * D]);
  const k = Tensor.fromData(rt, randomData(n, 2), [B, T, H * D]);
  const v = Tensor.fromData(rt, randomData(n, 3), [B, T, H * D]);
  const g = Tensor.fromData(rt, randomData(n, 4), [B, T, H * D]);
  const embedding = Tensor.fromData(rt, randomData(320 * H, 5), [320, H]);
  const gate = Tensor.fromData(rt, randomData(B * H * T, 6).map((x) => 1 + 0.5 * x), [B, H, T]);
  const mask = Tensor.fromData(rt, new Int32Array(B * T).fill(1), [B, T], 'i32');
  const bias = { embedding, gate, numBuckets: 320, maxDistance: 800 };
  const inputs = [q, k, v, embedding, gate];
  const call = (withBias: boolean, withBackward: boolean) => () => {
    const y = attention(q, k, v, { heads: H, keyMask: mask, relativeBias: withBias ? bias : null });
    if (withBackward) backward(y, g);
    y.dispose();
    for (const x of inputs) {
      x.grad?.dispose();
      x.grad = null;
    }
  };
  const modes = forwardOnly ? [false] : [false, true];
  for (const withBackward of modes) {
    for (const x of inputs) x.requiresGrad = withBackward;
    await once(rt, call(false, withBackward)); // compile and warm up
    await once(rt, call(true, withBackward));
    const plain: Timing[] = [];
    const biased: Timing[] = [];
    for (let r = 0; r < reps; r++) {
      plain.push(await once(rt, call(false, withBackward)));
      biased.push(await once(rt, call(true, withBackward)));
    }
    const ms = [median(plain.map((t) => t.ms)), median(biased.map((t) => t.ms))];
    // CPU time is read in 10 ms ticks: the mean over the reps, not the median of per-call tick counts
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const cpu = [mean(plain.map((t) => t.cpuSeconds)), mean(biased.map((t) => t.cpuSeconds))];
    const what = withBackward ? 'forward+backward' : 'forward';
    console.log(`T=${T} ${what}: plain ${ms[0].toFixed(1)} ms / ${cpu[0].toFixed(3)} CPU-s, bias ${ms[1].toFixed(1)} ms / ${cpu[1].toFixed(3)} CPU-s; bias/plain wall ${(ms[1] / ms[0]).toFixed(3)}x, CPU ${(cpu[1] / cpu[0]).toFixed(3)}x (wall: medians, CPU: means of ${reps}, alternating)`);
  }
  for (const x of [...inputs, g, mask]) x.dispose();
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const forwardOnly = args.includes('--forward');
  if (args.includes('--portable')) setAttentionSubgroups(false);
  const rt = await createNodeRuntime();
  console.log(`adapter: ${rt.adapter.description || rt.adapter.device || rt.adapter.vendor}`);
  const sizes = args.map(Number).filter((x) => x > 0);
  if (args.includes('--bias')) {
    const reps = Number(args.find((a) => a.startsWith('--reps='))?.slice(7) ?? 7);
    for (const T of sizes.length ? sizes : [200, 1000]) await benchBias(rt, T, reps, forwardOnly);
    rt.destroy();
    return;
  }
  for (const T of sizes.length ? sizes : [200, 1000]) {
    const n = B * T * H * D;
    const q = Tensor.fromData(rt, randomData(n, 1), [B, T, H * D]);
    const k = Tensor.fromData(rt, randomData(n, 2), [B, T, H * D]);
    const v = Tensor.fromData(rt, randomData(n, 3), [B, T, H * D]);
    const g = Tensor.fromData(rt, randomData(n, 4), [B, T, H * D]);
    const mask = Tensor.fromData(rt, new Int32Array(B * T).fill(1), [B, T], 'i32');
    q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
    const reps = T <= 300 ? 10 : 3;
    const fwd = await time(rt, reps, () => tidy(() => attention(q, k, v, { heads: H, keyMask: mask })).dispose());
    const lines = [report('forward', 4 * B * H * T * T * D, fwd)];
    if (!forwardOnly) {
      const both = await time(rt, reps, () => {
        const y = attention(q, k, v, { heads: H, keyMask: mask });
        backward(y, g);
        y.dispose();
        for (const x of [q, k, v]) {
          x.grad?.dispose();
          x.grad = null;
        }
      });
      const bwd = { ms: both.ms - fwd.ms, cpuSeconds: both.cpuSeconds - fwd.cpuSeconds };
      lines.push(report('backward', 10 * B * H * T * T * D, bwd));
    }
    console.log(`T=${T} H=${H} D=${D} B=${B}: ${lines.join('; ')}`);
    for (const x of [q, k, v, g, mask]) x.dispose();
  }
  rt.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
