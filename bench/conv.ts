// conv1d micro-bench: GFLOP/s of the conv kernels per strategy on the wav2vec2 (XLSR) feature encoder and positional
// conv, next to a GEMM of the same size (M = Cout/groups, N = output frames, K = Cin/groups * kernel, batched over
// the groups) timed in the same rounds.
//   node build/bench/conv.mjs [--rounds N] [--cases 0,1,2,6,pos] [--backward] [--parts] [--tiled]
// Variants are interleaved round by round (the machine may be shared). Two figures per variant: GFLOP/s from the
// median wall time, and GFLOP per CPU-second of the driver's worker threads (on a CPU adapter that is robust to
// other load on the machine; the main thread only waits). 'direct' = the register-tiled direct kernels (every path
// before the implicit GEMMs); 'subgroup' / 'tiled' = the implicit GEMMs (see src/ops/conv.ts). fwd+bwd times the
// forward, grad x and grad w (no bias) and counts 3x the forward's flops; --parts adds fwd+dx and fwd+dw (2x).
import fs from 'node:fs';
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad, tidy, backward } from '../src/autograd.js';
import { conv1d, convConfig, convStrategy, type ConvStrategy } from '../src/ops/conv.js';
import { matmul, hasSubgroupGemm } from '../src/ops/matmul.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt('rounds', '3'));
const withBackward = args.includes('--backward');
const withParts = args.includes('--parts');

const rt = await createNodeRuntime();
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU}, 8-wide subgroups ${hasSubgroupGemm(rt)})`);
// 'direct' (the kernels before the implicit GEMMs) and the implicit GEMM the adapter picks; --tiled adds the
// workgroup-memory implicit GEMM (the GPU path) where that is not the pick
const strategies: ConvStrategy[] = ['direct', convStrategy(rt)];
if (args.includes('--tiled') && !strategies.includes('tiled')) strategies.push('tiled');

function workerCpuSeconds(): number {
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

function rand(shape: number[], label: string, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = ((s >>> 8) / (1 << 24) - 0.5) * scale;
  }
  return Tensor.fromData(rt, d, shape, 'f32', label);
}

interface Case { key: string; name: string; cin: number; cout: number; k: number; s: number; p: number; g: number; tin: number }
const all: Case[] = [
  { key: '0', name: 'layer 0 (1->512, k10 s5, T=64000)', cin: 1, cout: 512, k: 10, s: 5, p: 0, g: 1, tin: 64000 },
  { key: '1', name: 'layer 1 (512->512, k3 s2, T=12799)', cin: 512, cout: 512, k: 3, s: 2, p: 0, g: 1, tin: 12799 },
  { key: '2', name: 'layer 2 (512->512, k3 s2, T=6399)', cin: 512, cout: 512, k: 3, s: 2, p: 0, g: 1, tin: 6399 },
  { key: '6', name: 'layer 6 (512->512, k2 s2, T=399)', cin: 512, cout: 512, k: 2, s: 2, p: 0, g: 1, tin: 399 },
  { key: 'pos', name: 'pos conv (1024, k128 p64, 16 groups, T=199)', cin: 1024, cout: 1024, k: 128, s: 1, p: 64, g: 16, tin: 199 },
];
const pick = opt('cases', '0,1,6,pos').split(',');
const cases = all.filter((c) => pick.includes(c.key));

interface Variant { name: string; flops: number; run: () => void }
const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];

for (const c of cases) {
  const tout = Math.floor((c.tin + 2 * c.p - c.k) / c.s) + 1;
  const cinG = c.cin / c.g;
  const flops = 2 * c.cout * cinG * c.k * tout;
  const x = rand([1, c.cin, c.tin], 'x');
  const w = rand([c.cout, cinG, c.k], 'w', 0.1);
  const gy = rand([1, c.cout, tout], 'gy');
  const ga = rand([c.g, c.cout / c.g, cinG * c.k], 'gemm a');
  const gb = rand([c.g, cinG * c.k, tout], 'gemm b');
  const opts = { stride: c.s, padding: c.p, groups: c.g };
  const variants: Variant[] = [{ name: 'GEMM', flops, run: () => noGrad(() => tidy(() => { matmul(ga, gb); })) }];
  for (const s of strategies) {
    variants.push({ name: `${s} fwd`, flops, run: () => { convConfig.strategy = s; noGrad(() => tidy(() => { conv1d(x, w, null, opts); })); } });
  }
  if (withParts) {
    // one gradient at a time: forward + grad x, forward + grad w (2x the forward's flops each)
    for (const s of strategies) {
      for (const which of ['dx', 'dw'] as const) {
        variants.push({
          name: `${s} fwd+${which}`,
          flops: 2 * flops,
          run: () => {
            convConfig.strategy = s;
            const t = which === 'dx' ? x : w;
            t.requiresGrad = true;
            tidy(() => {
              backward(conv1d(x, w, null, opts), gy);
              t.grad?.dispose();
              t.grad = null;
            });
            t.requiresGrad = false;
          },
        });
      }
    }
  }
  if (withBackward) {
    for (const s of strategies) {
      variants.push({
        name: `${s} fwd+bwd`,
        flops: 3 * flops,
        run: () => {
          convConfig.strategy = s;
          x.requiresGrad = true;
          w.requiresGrad = true;
          tidy(() => {
            backward(conv1d(x, w, null, opts), gy);
            for (const t of [x, w]) { t.grad?.dispose(); t.grad = null; }
          });
          x.requiresGrad = false;
          w.requiresGrad = false;
        },
      });
    }
  }
  const wall: number[][] = variants.map(() => []);
  const cpu: number[] = variants.map(() => 0);
  // warm-up (pipelines compiled), then enough back-to-back runs per timing for ~0.4 s (the CPU clock ticks at 10 ms)
  const inner: number[] = [];
  for (const v of variants) {
    v.run();
    await rt.sync();
    const t0 = performance.now();
    v.run();
    await rt.sync();
    inner.push(Math.max(1, Math.min(20, Math.round(400 / Math.max(performance.now() - t0, 1)))));
  }
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      await rt.sync();
      const c0 = workerCpuSeconds();
      const t0 = performance.now();
      for (let k = 0; k < inner[i]; k++) variants[i].run();
      await rt.sync();
      wall[i].push((performance.now() - t0) / 1000 / inner[i]);
      cpu[i] += (workerCpuSeconds() - c0) / inner[i];
    }
  }
  convConfig.strategy = 'auto';
  console.log(`${c.name}  (GFLOP/s from median wall time | GFLOP per worker CPU-second)`);
  const gemmWall = variants[0].flops / med(wall[0]);
  const gemmCpu = (variants[0].flops * rounds) / cpu[0];
  variants.forEach((v, i) => {
    const gw = v.flops / med(wall[i]);
    const gc = (v.flops * rounds) / cpu[i];
    const rel = i === 0 ? '' : `  (${((gw / gemmWall) * 100).toFixed(0)}% | ${((gc / gemmCpu) * 100).toFixed(0)}% of GEMM)`;
    console.log(`  ${v.name.padEnd(18)} ${(gw / 1e9).toFixed(1).padStart(6)} | ${(gc / 1e9).toFixed(1).padStart(6)}${rel}`);
  });
  for (const t of [x, w, gy, ga, gb]) t.dispose();
}
rt.destroy();
process.exit(0);
