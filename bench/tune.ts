// Autotuning bench: for the GEMM and conv1d shapes of bench/lib/kernels.ts and XLSR-large's attention (4 s of audio, batch
// 1 and 4), tune each shape class on this adapter (src/runtime/tune.ts, in-memory cache: the user's tune cache is neither read nor written),
// then time the tuned winner against today's hand-picked default, interleaved (default, winner, default, ...) in one
// process, wall clock around synchronised runs, and print GFLOP/s of each with the ratio.
//   node build/bench/tune.mjs [--quick] [--rounds N] [--reps N] [--json out.json]
import fs from 'node:fs';
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad, tidy, backward } from '../src/autograd.js';
import { matmul, gemmWith, gemmCandidates, defaultGemmConfig, gemmConfigId, type GemmConfig } from '../src/ops/matmul.js';
import { attention, attentionCandidates, attentionTiles, attentionUsesSubgroups, type AttentionPass } from '../src/ops/attention.js';
import { conv1d, conv1dPass, convCandidates, convGeometry, defaultConvConfig, effectiveId, type ConvConfig, type ConvPass } from '../src/ops/conv.js';
import { MemoryTuneCache, setTuneOptions, tuneResults, tuneTable, type TuneResult } from '../src/runtime/tune.js';
import type { Runtime } from '../src/runtime/runtime.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const quick = args.includes('--quick');
const rounds = Number(opt('rounds', quick ? '3' : '5'));
const reps = Number(opt('reps', quick ? '3' : '7'));

const rt = await createNodeRuntime();
rt.tuneCache = new MemoryTuneCache();
rt.autotune = true;
setTuneOptions(rt, { rounds });
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU}, timestamps ${rt.hasTimestamps}); tuning ${rounds} rounds, A/B ${reps} interleaved reps`);
console.log(`load average at start: ${fs.existsSync('/proc/loadavg') ? fs.readFileSync('/proc/loadavg', 'utf8').trim() : 'n/a'}`);

function rand(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    d[i] = (s >>> 8) / (1 << 24) - 0.5;
  }
  return Tensor.fromData(rt, d, shape, 'f32', 'bench');
}

/** Interleaved A/B wall-clock timing (seconds), after one warm-up each. */
async function ab(r: Runtime, fa: () => void, fb: () => void, n: number): Promise<[number, number]> {
  const once = async (f: () => void) => {
    await r.sync();
    const t0 = performance.now();
    f();
    await r.sync();
    return (performance.now() - t0) / 1000;
  };
  await once(fa);
  await once(fb);
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2) {
      tb.push(await once(fb));
      ta.push(await once(fa));
    } else {
      ta.push(await once(fa));
      tb.push(await once(fb));
    }
  }
  const med = (x: number[]) => [...x].sort((p, q) => p - q)[x.length >> 1];
  return [med(ta), med(tb)];
}

interface Line {
  name: string;
  defaultId: string;
  winner: string;
  defaultGflops: number;
  winnerGflops: number;
}
const lines: Line[] = [];

const gemms: [string, number, number, number, boolean][] = [
  ['gemm 1024x1024x1024', 1024, 1024, 1024, false],
  ['gemm qkv/out proj 800x1024 . 1024x1024^T', 800, 1024, 1024, true],
  ['gemm ffn up 800x1024 . 4096x1024^T', 800, 1024, 4096, true],
  ['gemm ffn down 800x4096 . 1024x4096^T', 800, 4096, 1024, true],
];
for (const [name, M, K, N, transB] of quick ? gemms.slice(0, 2) : gemms) {
  const a = rand([M, K], 1);
  const b = rand(transB ? [N, K] : [K, N], 2);
  const before = tuneResults(rt).length;
  noGrad(() => tidy(() => void matmul(a, b, { transB })));
  await rt.sync(); // times the class
  const res = tuneResults(rt).slice(before).find((x) => x.family === 'gemm') as TuneResult;
  const byId = new Map(gemmCandidates(rt).map((c) => [c.id, c.config]));
  const def = defaultGemmConfig(rt);
  const win = byId.get(res.winner) as GemmConfig;
  const y = Tensor.empty(rt, [M * N], 'f32', 'y');
  const run = (c: GemmConfig) => () => gemmWith({ a, b, y, M, N, K, batch: 1, strideA: M * K, strideB: K * N, transA: false, transB }, c);
  const [td, tw] = await ab(rt, run(def), run(win), reps);
  const flops = 2 * M * N * K;
  lines.push({ name, defaultId: gemmConfigId(def), winner: res.winner, defaultGflops: flops / td / 1e9, winnerGflops: flops / tw / 1e9 });
  for (const t of [a, b, y]) t.dispose();
}

const convs: [string, number, number, number, number, number, number, number][] = [
  ['feature-encoder layer 0', 1, 512, 10, 5, 64000, 0, 1],
  ['feature-encoder layer 1', 512, 512, 3, 2, 12799, 0, 1],
  ['feature-encoder layer 2', 512, 512, 3, 2, 6399, 0, 1],
  ['feature-encoder layer 3', 512, 512, 3, 2, 3199, 0, 1],
  ['feature-encoder layer 4', 512, 512, 3, 2, 1599, 0, 1],
  ['feature-encoder layer 5', 512, 512, 2, 2, 799, 0, 1],
  ['feature-encoder layer 6', 512, 512, 2, 2, 399, 0, 1],
  ['positional conv', 1024, 1024, 128, 1, 199, 64, 16],
];
for (const [name, cin, cout, k, stride, tin, padding, groups] of quick ? [convs[0], convs[1], convs[6], convs[7]] : convs) {
  const opts = { stride, padding, groups };
  const g = convGeometry([1, cin, tin], [cout, cin / groups, k], opts);
  const x = rand([1, cin, tin], 3);
  const w = rand([cout, cin / groups, k], 4);
  const gy = rand([1, cout, g.tout], 5);
  x.requiresGrad = cin > 1;
  w.requiresGrad = true;
  const before = tuneResults(rt).length;
  tidy(() => backward(conv1d(x, w, null, opts), gy));
  for (const t of [x, w]) {
    t.grad?.dispose();
    t.grad = null;
  }
  await rt.sync(); // times the classes (forward, grad input, grad weight)
  const fresh = tuneResults(rt).slice(before);
  const flops = (2 * cout * cin * k * g.tout) / groups;
  const passes: ConvPass[] = cin > 1 ? ['forward', 'grad-input', 'grad-weight'] : ['forward', 'grad-weight'];
  for (const pass of passes) {
    const res = fresh.find((r) => r.shapeClass.startsWith(`${pass} `));
    const cands = convCandidates(rt, pass, g);
    const def = defaultConvConfig(rt);
    const defId = effectiveId(pass, g, def);
    const win = res ? (cands.find((c) => c.id === res.winner)!.config as ConvConfig) : def;
    const run = (c: ConvConfig) => () => conv1dPass(rt, pass, g, c, x, w, gy).dispose();
    const [td, tw] = await ab(rt, run(def), run(win), reps);
    lines.push({ name: `conv1d ${name} ${pass} (${cin}->${cout} k${k} s${stride}${groups > 1 ? ` g${groups}` : ''}, T=${tin})`, defaultId: res?.defaultId ?? defId, winner: res?.winner ?? `${defId} (one candidate)`, defaultGflops: flops / td / 1e9, winnerGflops: flops / tw / 1e9 });
  }
  for (const t of [x, w, gy]) t.dispose();
}

// attention of XLSR-large's layers (16 heads x 64, 199 frames), batch 1 (inference) and 4 (training); the backward class
// times forward + backward with the candidate's dq and dk/dv kernels (the forward on its own tuned tile)
const attentionShapes = quick ? [1] : [1, 4];
for (const B of attentionShapes) {
  const T = 199, H = 16, D = 64;
  const [q, k, v, gy] = [6, 7, 8, 9].map((seed) => rand([B, T, H * D], seed));
  const forward = () => noGrad(() => tidy(() => void attention(q, k, v, { heads: H })));
  const forwardBackward = () => {
    for (const t of [q, k, v]) t.requiresGrad = true;
    tidy(() => backward(attention(q, k, v, { heads: H }), gy));
    for (const t of [q, k, v]) {
      t.grad?.dispose();
      t.grad = null;
      t.requiresGrad = false;
    }
  };
  const before = tuneResults(rt).length;
  forwardBackward();
  await rt.sync(); // times the forward and backward classes
  const fresh = tuneResults(rt).slice(before);
  const path = attentionUsesSubgroups(rt) ? 'subgroup' : 'portable';
  for (const pass of ['forward', 'backward'] as AttentionPass[]) {
    const res = fresh.find((r) => r.family === 'attention' && r.shapeClass.startsWith(`${pass} `));
    const cands = attentionCandidates(rt, pass, path, D, false);
    const def = cands[0];
    const win = res ? cands.find((c) => c.id === res.winner)! : def;
    const run = (tile: typeof def.config) => () => {
      attentionTiles[pass] = tile;
      try {
        if (pass === 'forward') forward();
        else forwardBackward();
      } finally {
        attentionTiles[pass] = null;
      }
    };
    const [td, tw] = await ab(rt, run(def.config), run(win.config), reps);
    const flops = (pass === 'forward' ? 4 : 14) * B * H * T * T * D;
    lines.push({ name: `attention ${pass === 'forward' ? 'forward' : 'forward+backward'} B=${B} T=${T} ${H}x${D}`, defaultId: res?.defaultId ?? def.id, winner: res?.winner ?? `${def.id} (one candidate)`, defaultGflops: flops / td / 1e9, winnerGflops: flops / tw / 1e9 });
  }
  for (const t of [q, k, v, gy]) t.dispose();
}

console.log('\n' + tuneTable(tuneResults(rt)));
console.log('\nwinner vs default, interleaved A/B in this process (wall clock around synchronised runs, median; rows whose winner is\nthe default time the same configuration twice: their ratio shows the noise of this run):');
const w0 = Math.max(...lines.map((l) => l.name.length));
console.log(`${'shape'.padEnd(w0)}  ${'default'.padEnd(24)} ${'GFLOP/s'.padStart(8)}  ${'winner'.padEnd(24)} ${'GFLOP/s'.padStart(8)}  ratio`);
for (const l of lines) {
  console.log(`${l.name.padEnd(w0)}  ${l.defaultId.padEnd(24)} ${l.defaultGflops.toFixed(1).padStart(8)}  ${l.winner.padEnd(24)} ${l.winnerGflops.toFixed(1).padStart(8)}  ${(l.winnerGflops / l.defaultGflops).toFixed(2)}x`);
}
console.log(`load average at end: ${fs.existsSync('/proc/loadavg') ? fs.readFileSync('/proc/loadavg', 'utf8').trim() : 'n/a'}`);
const out = opt('json', '');
if (out) fs.writeFileSync(out, JSON.stringify({ adapter: rt.adapter, rounds, reps, lines, results: tuneResults(rt).map((r) => ({ ...r, timings: r.timings.map((t) => ({ ...t, medianMs: Number.isFinite(t.medianMs) ? t.medianMs : null })) })) }, null, 1));
rt.destroy();
