// What a storage load costs on this adapter, next to an FMA: the probe behind "the GEMM is bound by lavapipe's
// per-lane loads" (README, bench/RESULTS.md). kernels/peak.wgsl's load_* entry points sum 8 loads per trip from a
// 64 KiB buffer (cache-resident: the cost of the load instruction, not of memory), per-lane addresses (f32 and vec4)
// or one address per workgroup, against fma_peak's 12 independent FMA chains.
//   node build/bench/loads.mjs [--reps N]
// Prints loads per ns (f32 components) and what one load costs in FMAs. On lavapipe a load is a gather done lane by
// lane, so a vec4 load costs about 4 scalar ones and a lane-uniform address is no cheaper (Mesa's storage load takes
// its one-load-and-broadcast path only for offsets it proves constant, nir_src_is_always_uniform); the subgroup GEMM
// does RB + c = 8 loads per 8 * RB * c = 128 FMAs per lane and step of k, which is what holds it near 60 GFLOP/s.
// The last row asks whether a texel fetch (textureLoad of rgba32float, a vec4 per lane) is a cheaper way in: the same
// addresses as the vec4 row, from a texture holding the same data (raw WebGPU here: the runtime binds buffers only).
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { peakKernel } from '../src/runtime/peaks.js';
import { timeGPU, timeAsync } from './lib/harness.js';

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

// texel fetch: load_lanes4's address pattern over a W x H rgba32float texture of the same n / 4 vec4s
{
  const device = rt.device;
  const W = 1024, H = n / 4 / W;
  const code = `
struct Params { iters: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(2) var tex: texture_2d<f32>;
fn at(e: u32) -> vec4f { let m = e & ${n / 4 - 1}u; return textureLoad(tex, vec2u(m % ${W}u, m / ${W}u), 0); }
@compute @workgroup_size(256)
fn load_texels(@builtin(global_invocation_id) gid: vec3u) {
  var j = gid.x * 8u;
  var acc = vec4f(0.0);
  for (var i = 0u; i < p.iters; i++) {
    acc += at(j) + at(j + 977u) + at(j + 1954u) + at(j + 2931u);
    acc += at(j + 3908u) + at(j + 4885u) + at(j + 5862u) + at(j + 6839u);
    j += 13u;
  }
  sink[gid.x] = acc.x + acc.y + acc.z + acc.w;
}`;
  const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(params, 0, new Uint32Array([iters, 0, 0, 0]));
  const texSink = device.createBuffer({ size: threads * 4, usage: GPUBufferUsage.STORAGE });
  const texture = device.createTexture({ size: [W, H], format: 'rgba32float', usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST });
  device.queue.writeTexture({ texture }, await xs.readFloat(), { bytesPerRow: W * 16 }, [W, H]);
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'load_texels' } });
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: params } }, { binding: 1, resource: { buffer: texSink } }, { binding: 2, resource: texture.createView() }] });
  const once = async () => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(threads / 256);
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  const t = await timeAsync(once, { reps });
  const perNs = (8 * iters * threads) / t.median / 1e9;
  console.log(`${'vec4 texel fetch (rgba32float)'.padEnd(36)} ${(perNs * 4).toFixed(2)} f32 per ns, ${perNs.toFixed(2)} loads per ns: one load costs ${(fmaPerNs / perNs).toFixed(1)} FMAs`);
  for (const b of [params, texSink]) b.destroy();
  texture.destroy();
}
process.exit(0);
