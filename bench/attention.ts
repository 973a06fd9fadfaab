// Micro-bench of the fused attention kernels: forward and backward at 16 heads x 64, batch 1, T = 200 and 1000.
//   node build/bench/attention.mjs [T ...]
// Forward counts 4*B*H*T*T*D flops (QK^T and PV); backward counts 10*B*H*T*T*D (the five matmuls of
// FlashAttention-2's backward, not counting the recomputation of QK^T in its two passes).
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { attention } from '../src/ops/attention.js';
import { backward, tidy } from '../src/autograd.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() needs

const H = 16;
const D = 64;
const B = 1;

function randomData(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296) * 2 - 1;
  }
  return out;
}

async function main(): Promise<void> {
  const rt = await createNodeRuntime();
  console.log(`adapter: ${rt.adapter.description || rt.adapter.device || rt.adapter.vendor}`);
  const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
  for (const T of sizes.length ? sizes : [200, 1000]) {
    const n = B * T * H * D;
    const q = Tensor.fromData(rt, randomData(n, 1), [B, T, H * D]);
    const k = Tensor.fromData(rt, randomData(n, 2), [B, T, H * D]);
    const v = Tensor.fromData(rt, randomData(n, 3), [B, T, H * D]);
    const g = Tensor.fromData(rt, randomData(n, 4), [B, T, H * D]);
    const mask = Tensor.fromData(rt, new Int32Array(B * T).fill(1), [B, T], 'i32');
    q.requiresGrad = k.requiresGrad = v.requiresGrad = true;
    const fwdFlops = 4 * B * H * T * T * D;
    const bwdFlops = 10 * B * H * T * T * D;
    const reps = T <= 300 ? 10 : 3;

    const forward = () => tidy(() => attention(q, k, v, { heads: H, keyMask: mask }));
    forward().dispose(); // compile
    await rt.sync();
    let t0 = performance.now();
    for (let i = 0; i < reps; i++) forward().dispose();
    await rt.sync();
    const fwd = (performance.now() - t0) / reps;

    const step = () => {
      const y = attention(q, k, v, { heads: H, keyMask: mask });
      backward(y, g);
      y.dispose();
      for (const x of [q, k, v]) {
        x.grad?.dispose();
        x.grad = null;
      }
    };
    step();
    await rt.sync();
    t0 = performance.now();
    for (let i = 0; i < reps; i++) step();
    await rt.sync();
    const bwd = (performance.now() - t0) / reps - fwd;
    console.log(
      `T=${T} H=${H} D=${D} B=${B}: forward ${fwd.toFixed(1)} ms ${(fwdFlops / fwd / 1e6).toFixed(1)} GFLOP/s; ` +
        `backward ${bwd.toFixed(1)} ms ${(bwdFlops / bwd / 1e6).toFixed(1)} GFLOP/s`,
    );
    for (const x of [q, k, v, g, mask]) x.dispose();
  }
  rt.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
