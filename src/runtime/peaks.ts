// The two roofs a profile is classified against (Profile.roofline): the GEMM rate of this adapter (a 1024^3 f32
// matmul through the same GEMM path the model uses, tuned configuration included) and its copy bandwidth (a large
// vec4 buffer copy, kernels/peak.wgsl). Both are host-timed medians: sync, record, sync, after one warm-up.
import source from '../../kernels/peak.wgsl';
import { defineKernel } from './kernel.js';
import type { Runtime } from './runtime.js';
import { Tensor } from '../tensor.js';
import { noGrad, tidy } from '../autograd.js';
import { matmul } from '../ops/matmul.js';
import { grid1d } from '../ops/grid.js';

/** kernels/peak.wgsl: fma_peak and copy, the roofline probes (also used by bench/). */
export const peakKernel = defineKernel('peak', source);

async function medianSeconds(rt: Runtime, fn: () => void, reps: number): Promise<number> {
  fn();
  await rt.sync();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    await rt.sync();
    const t0 = performance.now();
    fn();
    await rt.sync();
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Values in [-0.5, 0.5) from a cheap LCG (speed does not depend on them). */
function filled(rt: Runtime, shape: number[], seed: number, label: string): Tensor {
  const n = shape.reduce((x, y) => x * y, 1);
  const d = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = (s >>> 8) / (1 << 24) - 0.5;
  }
  return Tensor.fromData(rt, d, shape, 'f32', label);
}

/** GFLOP/s of an n x n x n f32 matmul (default 1024), median of `reps`. */
export async function measureGemmGflops(rt: Runtime, opts: { n?: number; reps?: number } = {}): Promise<number> {
  const n = opts.n ?? 1024;
  const a = filled(rt, [n, n], 1, 'gemm probe a');
  const b = filled(rt, [n, n], 2, 'gemm probe b');
  try {
    const s = await medianSeconds(rt, () => noGrad(() => tidy(() => { matmul(a, b); })), opts.reps ?? 5);
    return (2 * n * n * n) / s / 1e9;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** GB/s (bytes read + written) of a vec4 copy between two buffers of `mib` MiB (default 64), median of `reps`. */
export async function measureCopyGBps(rt: Runtime, opts: { mib?: number; reps?: number } = {}): Promise<number> {
  const n4 = (opts.mib ?? 64) << 16; // vec4s of 16 bytes
  const x = Tensor.empty(rt, [n4 * 4], 'f32', 'copy probe src');
  const y = Tensor.empty(rt, [n4 * 4], 'f32', 'copy probe dst');
  try {
    const s = await medianSeconds(rt, () => rt.dispatch(peakKernel, 'copy', { x, y, p: { iters: 0, n4 } }, grid1d(n4, 256), { cost: { bytes: 32 * n4 } }), opts.reps ?? 5);
    return (32 * n4) / s / 1e9;
  } finally {
    x.dispose();
    y.dispose();
  }
}
