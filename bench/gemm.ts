// GEMM micro-bench: GFLOP/s of the matmul kernels for 1024^3 and the wav2vec2 (large) linear shapes, per strategy.
//   node build/bench/gemm.mjs [--strategy subgroup|tiled|all] [--reps N] [--rows R] [--f16] [--quick]
// Each case is timed as `reps` back-to-back dispatches between two rt.sync() calls (after a warm-up), best of 3.
// On CPU adapters the machine may be shared: the bench also reports the CPU time of the process's worker threads
// (the driver's; the main thread only waits), so 'per core' = GFLOP / worker-CPU-second is robust to other load,
// and 'cpu/wall' says how many cores the driver actually got.
import fs from 'node:fs';
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad } from '../src/autograd.js';
import { gemm, gemmStrategy, hasSubgroupGemm, matmulConfig, type GemmStrategy } from '../src/ops/matmul.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const rows = Number(opt('rows', '800')); // 4 utterances x 200 frames
const reps = Number(opt('reps', '0'));
const f16 = args.includes('--f16');
const quick = args.includes('--quick');

const rt = await createNodeRuntime();
const dtype = f16 && rt.hasF16 ? 'f16' : 'f32';
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU}, subgroups ${rt.hasSubgroups}, 8-wide subgroup GEMM ${hasSubgroupGemm(rt)}), dtype ${dtype}`);
console.log(`auto strategy: ${gemmStrategy(rt)}`);
const which = opt('strategy', 'auto');
const strategies: GemmStrategy[] = which === 'all' ? (hasSubgroupGemm(rt) ? ['subgroup', 'tiled'] : ['tiled']) : which === 'auto' ? [gemmStrategy(rt)] : [which as GemmStrategy];

interface Case {
  name: string;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}
const cases: Case[] = [
  { name: '1024^3 x W^T (linear)', M: 1024, N: 1024, K: 1024, transA: false, transB: true },
  { name: '1024^3 plain', M: 1024, N: 1024, K: 1024, transA: false, transB: false },
  { name: '1024^3 A^T', M: 1024, N: 1024, K: 1024, transA: true, transB: false },
  { name: '1024^3 A^T B^T', M: 1024, N: 1024, K: 1024, transA: true, transB: true },
  { name: `[${rows},1024]x[1024,1024]^T (attn proj)`, M: rows, N: 1024, K: 1024, transA: false, transB: true },
  { name: `[${rows},1024]x[4096,1024]^T (ffn in)`, M: rows, N: 4096, K: 1024, transA: false, transB: true },
  { name: `[${rows},4096]x[1024,4096]^T (ffn out)`, M: rows, N: 1024, K: 4096, transA: false, transB: true },
  { name: `dX [${rows},1024]x[1024,4096] (ffn out, bwd)`, M: rows, N: 4096, K: 1024, transA: false, transB: false },
  { name: `dW [${rows},4096]^Tx[${rows},1024] (ffn in, bwd)`, M: 4096, N: 1024, K: rows, transA: true, transB: false },
];

function workerCpuSeconds(): number {
  // utime + stime of every thread but the main one (Linux only; 0 elsewhere)
  let ticks = 0;
  try {
    for (const tid of fs.readdirSync('/proc/self/task')) {
      if (tid === String(process.pid)) continue;
      const f = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    }
  } catch {
    return 0;
  }
  return ticks / 100;
}

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    a[i] = x / 4294967296 - 0.5;
  }
  return a;
}

for (const strategy of strategies) {
  matmulConfig.strategy = strategy;
  console.log(`\nstrategy ${strategy}${strategy === 'subgroup' ? ` (rowBlocks ${matmulConfig.rowBlocks})` : ` (${JSON.stringify(matmulConfig.tiled)})`}`);
  const only = opt('only', '');
  for (const c of quick ? cases.slice(0, 1) : only ? cases.filter((c) => c.name.includes(only)) : cases) {
    const { M, N, K } = c;
    const a = Tensor.fromData(rt, fill(M * K, 1), c.transA ? [K, M] : [M, K], dtype, 'a');
    const b = Tensor.fromData(rt, fill(K * N, 2), c.transB ? [N, K] : [K, N], dtype, 'b');
    const y = Tensor.empty(rt, [M, N], dtype, 'y');
    const flops = 2 * M * N * K;
    const run = () => noGrad(() => gemm({ a, b, y, M, N, K, batch: 1, strideA: 0, strideB: 0, transA: c.transA, transB: c.transB }));
    const t0 = performance.now();
    run();
    await rt.sync();
    const first = performance.now() - t0;
    // enough repetitions for ~0.5 s per timing on this adapter
    const n = reps || Math.max(2, Math.min(50, Math.round(500 / Math.max(first, 1))));
    let best = Infinity;
    const c0 = workerCpuSeconds();
    const w0 = performance.now();
    for (let round = 0; round < 3; round++) {
      const s = performance.now();
      for (let i = 0; i < n; i++) run();
      await rt.sync();
      best = Math.min(best, (performance.now() - s) / n);
    }
    const cpu = workerCpuSeconds() - c0;
    const wall = (performance.now() - w0) / 1000;
    const perCore = cpu > 0 ? `, ${((flops * 3 * n) / cpu / 1e9).toFixed(1)} per worker-core, cpu/wall ${(cpu / wall).toFixed(2)}` : '';
    console.log(`  ${c.name.padEnd(40)} ${(flops / best / 1e6).toFixed(1).padStart(7)} GFLOP/s  (${best.toFixed(2)} ms, first call ${first.toFixed(0)} ms incl. compile${perCore})`);
    a.dispose();
    b.dispose();
    y.dispose();
  }
}
rt.destroy();
process.exit(0);
