// What a storage load costs on this adapter, next to an FMA: the probe behind "the GEMM is bound by lavapipe's
// per-lane loads" (README, bench/RESULTS.md). kernels/peak.wgsl's load_* entry points sum 8 loads per trip from a
// 64 KiB buffer (cache-resident: the cost of the load instruction, not of memory), per-lane addresses (f32 and vec4)
// or one address per workgroup, against fma_peak's 12 independent FMA chains.
//   node build/bench/loads.mjs [--reps N]
// Prints loads per ns (f32 components) and what one load costs in FMAs. On lavapipe a load is a gather done lane by
// lane, so a vec4 load costs about 4 scalar ones and a lane-uniform address is no cheaper; the subgroup GEMM does
// RB + c = 8 loads per 8 * RB * c = 128 FMAs per lane and step of k, which is what holds it near 60 GFLOP/s.
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { peakKernel } from '../src/runtime/peaks.js';
import { timeGPU } from './lib/harness.js';

const args = process.argv.slice(2);
const repsArg = args.indexOf('--reps');
const reps = repsArg >= 0 ? Number(args[repsArg + 1]) : 7;

const rt = await createNodeRuntime();
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU})`);
const threads = 256 * 64;
const iters = 2048;
const n = 16384; // f32 elements: 64 KiB
const sink = Tensor.empty(rt, [threads], 'f32', 'load sink');
const xs = Tensor.fromData(rt, Float32Array.from({ length: n }, (_, i) => (i % 7) * 0.25), [n], 'f32', 'load source');
const time = (entry: string, bindings: Record<string, Tensor>) =>
  timeGPU(rt, () => rt.dispatch(peakKernel, entry, { sink, p: { iters, n4: n }, ...bindings }, [threads / 256]), { reps });
const fma = await timeGPU(rt, () => rt.dispatch(peakKernel, 'fma_peak', { sink, p: { iters: 8192, n4: 0 } }, [threads / 256]), { reps });
const fmaPerNs = (12 * 8192 * threads) / fma.median / 1e9;
console.log(`FMA:                           ${fmaPerNs.toFixed(1)} per ns (${(2 * fmaPerNs).toFixed(0)} GFLOP/s)`);
const rows: [string, string, Record<string, Tensor>, number][] = [
  ['f32 load, per-lane address', 'load_lanes', { xs }, 1],
  ['vec4 load, per-lane address', 'load_lanes4', { x: xs }, 4],
  ['f32 load, one address per workgroup', 'load_uniform', { xs }, 1],
];
for (const [name, entry, bindings, width] of rows) {
  const t = await time(entry, bindings);
  const loads = 8 * iters * threads;
  const perNs = loads / t.median / 1e9;
  console.log(`${name.padEnd(36)} ${(perNs * width).toFixed(2)} f32 per ns, ${perNs.toFixed(2)} loads per ns: one load costs ${(fmaPerNs / perNs).toFixed(1)} FMAs`);
}
process.exit(0);
