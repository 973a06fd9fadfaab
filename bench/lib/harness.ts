// Bench plumbing: timing with spread, rows in the results.json schema, and the roofline probes (FMA peak, copy
// bandwidth) that every "fraction of peak" is measured against in the same run.
import { peakKernel as peak } from '../../src/runtime/peaks.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { grid1d } from '../../src/ops/grid.js';

export interface Row {
  name: string;
  unit: string;
  ours: number;
  peer?: string;
  peer_value?: number;
  speedup?: number;
  peak_fraction?: number;
  /** spread of our repetitions: [min, max] */
  spread?: [number, number];
  command?: string;
  note?: string;
}

export interface Timing {
  median: number;
  min: number;
  max: number;
  reps: number;
}

/** Time `fn` (which records GPU work) end to end: sync, run, sync; several repetitions after a warm-up. */
export async function timeGPU(rt: Runtime, fn: () => void, opts: { reps?: number; inner?: number; warmup?: number } = {}): Promise<Timing> {
  const reps = opts.reps ?? 5;
  const inner = opts.inner ?? 1;
  for (let i = 0; i < (opts.warmup ?? 1); i++) {
    fn();
    await rt.sync();
  }
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    await rt.sync();
    const t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    await rt.sync();
    times.push((performance.now() - t0) / 1000 / inner);
  }
  return summarize(times);
}

export async function timeAsync(fn: () => Promise<unknown>, opts: { reps?: number; warmup?: number } = {}): Promise<Timing> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) await fn();
  const times: number[] = [];
  for (let r = 0; r < (opts.reps ?? 5); r++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return summarize(times);
}

export function summarize(times: number[]): Timing {
  const s = [...times].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1], reps: s.length };
}


/** FMA throughput in GFLOP/s with 12 independent chains per thread. */
export async function measureFmaPeak(rt: Runtime, quick = false): Promise<number> {
  const threads = 256 * 64;
  const iters = quick ? 2048 : 8192;
  const sink = Tensor.empty(rt, [threads], 'f32', 'fma sink');
  const t = await timeGPU(rt, () => rt.dispatch(peak, 'fma_peak', { sink, p: { iters, n4: 0 } }, [threads / 256]), { reps: quick ? 3 : 5 });
  sink.dispose();
  return (2 * 12 * iters * threads) / t.median / 1e9;
}

/** Copy bandwidth in GB/s (read + write bytes). */
export async function measureCopyBandwidth(rt: Runtime, quick = false): Promise<number> {
  const n4 = (quick ? 4 : 16) << 18; // 16 or 64 MiB per buffer
  const x = Tensor.empty(rt, [n4 * 4], 'f32', 'copy src');
  const y = Tensor.empty(rt, [n4 * 4], 'f32', 'copy dst');
  const t = await timeGPU(rt, () => rt.dispatch(peak, 'copy', { x, y, p: { iters: 0, n4 } }, grid1d(n4, 256)), { reps: quick ? 3 : 9 });
  x.dispose();
  y.dispose();
  return (2 * 16 * n4) / t.median / 1e9;
}

export function fmt(x: number | undefined, digits = 3): string {
  if (x === undefined || x === null || Number.isNaN(x)) return '';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  return x.toPrecision(digits);
}
