// Child process of bench/run.ts: a fixed GEMM workload with a host wait after each step (like a training loop
// reading its loss). Run once with SER_NICE=0 and once with SER_NICE=1 to measure the Dawn busy-wait fix.
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad, tidy } from '../src/autograd.js';
import { matmul } from '../src/ops/matmul.js';

const quick = process.argv.includes('--quick');
const rt = await createNodeRuntime();
const n = 512;
const a = Tensor.fromData(rt, Float32Array.from({ length: n * n }, (_, i) => Math.sin(i)), [n, n]);
const b = Tensor.fromData(rt, Float32Array.from({ length: n * n }, (_, i) => Math.cos(i)), [n, n]);
const steps = quick ? 8 : 24;
noGrad(() => tidy(() => { matmul(a, b); }));
await rt.sync();
const t0 = performance.now();
for (let s = 0; s < steps; s++) {
  const c = noGrad(() => tidy(() => matmul(matmul(a, b), b)));
  await c.read();
  c.dispose();
}
console.log(`SECONDS=${(performance.now() - t0) / 1000}`);
rt.destroy();
process.exit(0);
