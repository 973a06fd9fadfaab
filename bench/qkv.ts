// q/k/v projections of one attention block as three GEMMs against one GEMM over the concatenated weights (see
// bench/lib/qkv.ts for the variants), interleaved in one process.
//   node build/bench/qkv.mjs [--rounds N] [--frames T] [--batches 1,4] [--hidden 1024] [--heads 16]
import { createNodeRuntime } from '../src/node/dawn.js';
import { QKV_VARIANTS, timeQkvBlock } from './lib/qkv.js';

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
for (const B of batches) {
  const ms = await timeQkvBlock(rt, B, T, C, heads, rounds);
  for (const v of QKV_VARIANTS) {
    const base = ms.get(v.startsWith('forward') ? 'forward separate' : 'fwd+bwd separate')!;
    const gflops = (2 * B * T * C * 3 * C) / ms.get(v)! / 1e6;
    console.log(`B=${B} ${v.padEnd(22)} ${ms.get(v)!.toFixed(1).padStart(8)} ms  ${(base / ms.get(v)!).toFixed(2)}x vs separate  (the projection GEMMs' flops alone: ${gflops.toFixed(1)} GFLOP/s)`);
  }
}
process.exit(0);
