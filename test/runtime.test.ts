// The runtime's promises: real limits and features exposed, pooled buffers with usage accounting, and GPU errors
// surfacing as JavaScript errors that name the kernel or allocation at fault (never a silent wrong result).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, upload, randn, close } from './helpers.js';
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { elementwiseKernel, add } from '../src/ops/elementwise.js';
import { sizeClass } from '../src/runtime/pool.js';
import { KernelFamily } from '../src/runtime/kernel.js';

test('adapter limits and features are the real ones', async () => {
  const rt = await getRuntime();
  assert.ok(rt.limits.maxStorageBufferBindingSize >= 128 << 20, `maxStorageBufferBindingSize ${rt.limits.maxStorageBufferBindingSize}`);
  assert.ok(rt.limits.maxComputeWorkgroupStorageSize >= 16384);
  assert.is(rt.hasF16, rt.features.has('shader-f16'));
  assert.type(rt.adapter.isCPU, 'boolean');
});

test('pool: size classes, reuse, current and peak bytes', async () => {
  const rt = await getRuntime();
  assert.is(sizeClass(1), 256);
  assert.is(sizeClass(1000), 1024);
  assert.is(sizeClass(5000), 5120);
  assert.ok(sizeClass(3 << 20) >= 3 << 20 && sizeClass(3 << 20) <= 3.75 * (1 << 20));
  const base = rt.pool.inUseBytes;
  rt.pool.resetPeak();
  const a = Tensor.empty(rt, [1000]);
  const b = Tensor.empty(rt, [1000]);
  assert.is(rt.pool.inUseBytes - base, 2 * 4096);
  a.dispose();
  const allocs = rt.pool.allocations;
  const c = Tensor.empty(rt, [1001]);
  assert.is(rt.pool.allocations, allocs, 'a freed buffer of the same class is reused');
  assert.is(rt.pool.peakBytes - base, 2 * 4096);
  b.dispose();
  c.dispose();
  assert.is(rt.pool.inUseBytes, base);
});

test('an allocation over maxBufferSize names the allocation', async () => {
  const rt = await getRuntime();
  assert.throws(() => Tensor.empty(rt, [Number(rt.limits.maxBufferSize) / 2 + 16], 'f32', 'huge activations'), /allocation 'huge activations'.*maxBufferSize/);
});

test('a GPU validation error surfaces at the next sync, naming the kernel', async () => {
  const rt = await getRuntime();
  const t = Tensor.empty(rt, [64]);
  // the same buffer bound read-only and writable in one dispatch: only the GPU's validation sees this
  rt.dispatch(elementwiseKernel, 'accumulate', { acc: t, b: t, p: { n: 64, alpha: 1, beta: 0, value: 0 } }, [1]);
  let err: Error | null = null;
  try {
    await rt.sync();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'sync must throw');
  assert.match(err!.message, /elementwise\.accumulate/);
  // the runtime stays usable afterwards
  const x = randn(300, 1);
  const y = add(upload(rt, x, [300]), upload(rt, x, [300]));
  close(await y.read(), x.map((v) => 2 * v), 1e-7, 'after error');
});

test('a WGSL compile error names the kernel', async () => {
  const rt = await getRuntime();
  const bad = new KernelFamily('broken', '@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n@compute @workgroup_size(1) fn main() { y[0] = undefined_thing; }');
  let err: Error | null = null;
  try {
    rt.dispatch(bad, 'main', { y: Tensor.empty(rt, [1]) }, [1]);
    await rt.sync();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'compile error must surface');
  assert.match(err!.message, /broken/);
});

test('device loss is a JavaScript error, not a hang', async () => {
  const rt = await createNodeRuntime();
  const t = Tensor.empty(rt, [16]);
  rt.device.destroy();
  await new Promise((r) => setTimeout(r, 50));
  let err: Error | null = null;
  try {
    rt.dispatch(elementwiseKernel, 'fill', { y: t, p: { n: 16, alpha: 1, beta: 0, value: 1 } }, [1]);
    await t.read();
  } catch (e) {
    err = e as Error;
  }
  assert.ok(err, 'must throw');
  assert.match(err!.message, /lost|destroy/i);
});

test.run();
