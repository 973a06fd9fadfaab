// q/k/v projections of one XLSR-large attention block: three GEMMs + attention() against one GEMM over the
// concatenated weights + attentionPacked(), interleaved in one process (this host's timings drift 20-50% between runs,
// so only the ratios within one run mean much).
//   node build/bench/qkv.mjs [--rounds N] [--frames T] [--batches 1,4] [--hidden 1024] [--heads 16]
// Variants, each the whole projection + attention block (out_proj excluded: the same in all):
//   separate        three linear() [B*T, C] x [C, C]^T, attention(q, k, v)
//   packed+concat   concat(W_q, W_k, W_v) then one linear() [B*T, C] x [3C, C]^T, attentionPacked(qkv) (what a
//                   training step runs: the weights change every step)
//   packed          the same on weights concatenated once (inference with the cached concatenation)
// Forward under noGrad, and forward + backward (all weights and x requiring gradients) for separate and packed+concat.
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { backward, noGrad, tidy } from '../src/autograd.js';
import { linear } from '../src/ops/matmul.js';
import { concat } from '../src/ops/shape.js';
import { attention, attentionPacked } from '../src/ops/attention.js';
import '../src/ops/elementwise.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt('rounds', '5'));
const T = Number(opt('frames', '199')); // 4 s of audio
const batches = opt('batches', '1,4').split(',').map(Number);
const C = Number(opt('hidden', '1024'));
const heads = Number(opt('heads', '16'));

const rt = await createNodeRuntime();
console.log(`adapter: ${rt.adapter.description || rt.adapter.device} (isCPU ${rt.adapter.isCPU}); C=${C}, heads=${heads}, T=${T}; median of ${rounds} interleaved rounds`);

function randomTensor(shape: number[], scale: number, label: string): Tensor {
  let n = 1;
  for (const d of shape) n *= d;
  const data = new Float32Array(n);
  let s = 12345 + n;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return Tensor.fromData(rt, data, shape, 'f32', label);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const B of batches) {
  const x = randomTensor([B, T, C], 1, 'x');
  const w = [0, 1, 2].map((i) => randomTensor([C, C], 0.03, `w${i}`));
  const b = [0, 1, 2].map((i) => randomTensor([C], 0.1, `b${i}`));
  const wPacked = noGrad(() => concat(w, 0));
  const bPacked = noGrad(() => concat(b, 0));
  const seed = randomTensor([B, T, C], 1, 'grad_out');
  const separate = () => attention(linear(x, w[0], b[0]), linear(x, w[1], b[1]), linear(x, w[2], b[2]), { heads });
  const packedConcat = () => attentionPacked(linear(x, concat(w, 0), concat(b, 0)), { heads });
  const packed = () => attentionPacked(linear(x, wPacked, bPacked), { heads });
  const forward = (fn: () => Tensor) => () => noGrad(() => tidy(() => void fn()));
  const train = (fn: () => Tensor) => () =>
    tidy(() => {
      for (const t of [x, ...w, ...b]) t.requiresGrad = true;
      backward(fn(), seed);
      for (const t of [x, ...w, ...b]) {
        t.grad?.dispose();
        t.grad = null;
        t.requiresGrad = false;
      }
    });
  const variants: [string, () => void][] = [
    ['forward separate', forward(separate)],
    ['forward packed+concat', forward(packedConcat)],
    ['forward packed', forward(packed)],
    ['fwd+bwd separate', train(separate)],
    ['fwd+bwd packed+concat', train(packedConcat)],
  ];
  const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
  for (const [, fn] of variants) {
    fn(); // warm-up: pipelines
    await rt.sync();
  }
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of variants) {
      await rt.sync();
      const t0 = performance.now();
      fn();
      await rt.sync();
      times.get(name)!.push(performance.now() - t0);
    }
  }
  const gemmFlops = 2 * B * T * C * 3 * C;
  for (const [name] of variants) {
    const ms = median(times.get(name)!);
    const base = median(times.get(name.startsWith('forward') ? 'forward separate' : 'fwd+bwd separate')!);
    console.log(`B=${B} ${name.padEnd(22)} ${ms.toFixed(1).padStart(8)} ms  ${(base / ms).toFixed(2)}x vs separate  (projection GEMMs alone would be ${(gemmFlops / ms / 1e6).toFixed(1)} GFLOP/s)`);
  }
  for (const t of [x, ...w, ...b, wPacked, bPacked, seed]) t.dispose();
}
process.exit(0);
