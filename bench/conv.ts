// conv1d micro-bench: GFLOP/s of the conv kernels per strategy on the wav2vec2 (XLSR) feature encoder and positional
// conv, with a GEMM of the same size (M = Cout, N = output frames, K = Cin/groups * kernel) timed in the same rounds.
//   node build/bench/conv.mjs [--rounds N] [--cases 0,1,6,pos] [--backward]
// Strategies are interleaved round by round (the machine may be shared); each figure is the median over rounds.
// 'tiled' = the register-tiled kernels (the portable path, and every path before the implicit GEMM), 'subgroup' =
// the implicit-GEMM subgroup kernel. Forward+backward times forward, grad x and grad w (no bias).
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad, tidy, backward } from '../src/autograd.js';
import { conv1d, convConfig, type ConvStrategy } from '../src/ops/conv.js';
import { matmul, hasSubgroupGemm } from '../src/ops/matmul.js';
import { timeGPU } from './lib/harness.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt('rounds', '3'));
const withBackward = args.includes('--backward');

const rt = await createNodeRuntime();
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU}, 8-wide subgroups ${hasSubgroupGemm(rt)})`);
const strategies: ConvStrategy[] = hasSubgroupGemm(rt) ? ['tiled', 'subgroup'] : ['tiled'];

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

const fmt = (x: number) => x.toFixed(1).padStart(6);
for (const c of cases) {
  const tout = Math.floor((c.tin + 2 * c.p - c.k) / c.s) + 1;
  const cinG = c.cin / c.g;
  const flops = 2 * c.cout * cinG * c.k * tout;
  const x = rand([1, c.cin, c.tin], 'x');
  const w = rand([c.cout, cinG, c.k], 'w', 0.1);
  const gy = rand([1, c.cout, tout], 'gy');
  // the GEMM of the same size: one group's [Cout/g, CinG*K] x [CinG*K, Tout], g times (batched)
  const ga = rand([c.g, c.cout / c.g, cinG * c.k], 'gemm a');
  const gb = rand([c.g, cinG * c.k, tout], 'gemm b');
  const fwd: Record<string, number[]> = {};
  const fb: Record<string, number[]> = {};
  const gemmT: number[] = [];
  for (let r = 0; r < rounds; r++) {
    gemmT.push((await timeGPU(rt, () => noGrad(() => tidy(() => { matmul(ga, gb); })), { reps: 1 })).median);
    for (const s of strategies) {
      convConfig.strategy = s;
      (fwd[s] ??= []).push((await timeGPU(rt, () => noGrad(() => tidy(() => { conv1d(x, w, null, { stride: c.s, padding: c.p, groups: c.g }); })), { reps: 1 })).median);
      if (withBackward) {
        x.requiresGrad = true;
        w.requiresGrad = true;
        (fb[s] ??= []).push((await timeGPU(rt, () => tidy(() => {
          const y = conv1d(x, w, null, { stride: c.s, padding: c.p, groups: c.g });
          backward(y, gy);
          for (const t of [x, w]) { t.grad?.dispose(); t.grad = null; }
        }), { reps: 1 })).median);
        x.requiresGrad = false;
        w.requiresGrad = false;
      }
    }
  }
  convConfig.strategy = 'auto';
  const med = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
  const gemmG = flops / med(gemmT) / 1e9;
  const parts = [`${c.name}: GEMM ${fmt(gemmG)}`];
  for (const s of strategies) parts.push(`${s} fwd ${fmt(flops / med(fwd[s]) / 1e9)} (${((flops / med(fwd[s]) / 1e9 / gemmG) * 100).toFixed(0)}% of GEMM)`);
  if (withBackward) for (const s of strategies) parts.push(`${s} fwd+bwd ${fmt((3 * flops) / med(fb[s]) / 1e9)}`);
  console.log(parts.join(' | ') + '  GFLOP/s');
  for (const t of [x, w, gy, ga, gb]) t.dispose();
}
