// Roofline probes for the bench (not used by the model).
//   fma_peak: every thread runs 12 independent FMA chains (three vec4) for `iters` iterations, so the FMA pipes stay
//             full; flops = 2 * 12 * iters * threads. The result is stored so the compiler cannot drop the work.
//   copy:     y[i] = x[i] on vec4s; bytes moved = 2 * 16 * n4.
//   load_lanes / load_lanes4 / load_uniform: the cost of one storage load, not of memory: every invocation sums
//             8 * iters loads from a small, cache-resident buffer (p.n4 elements of `xs`, a power of two) at addresses
//             that differ per invocation (load_lanes: f32, load_lanes4: vec4) or are the same for the whole
//             workgroup (load_uniform). bench/loads.ts sets them against fma_peak: on lavapipe a load is a
//             per-lane gather, so its cost, not the FMA rate, bounds the GEMM.
const WG: u32 = 256u;

struct Params { iters: u32, n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> xs: array<f32>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(global_invocation_id) gid: vec3u) {
  // 12 independent chains as three vec4 registers, written out so no chain lives in an indexed (spillable) array
  let s0 = f32(gid.x) * 1e-3;
  var a0 = vec4<f32>(s0, s0 + 1.0, s0 + 2.0, s0 + 3.0);
  var a1 = a0 + vec4<f32>(4.0);
  var a2 = a0 + vec4<f32>(8.0);
  let m = vec4<f32>(0.999);
  let b = vec4<f32>(1e-4);
  // unrolled 8x so loop overhead is small against 96 FMAs per trip (iters is a multiple of 8)
  for (var i = 0u; i < p.iters; i += 8u) {
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
    a0 = fma(a0, m, b); a1 = fma(a1, m, b); a2 = fma(a2, m, b);
  }
  let t = a0 + a1 + a2;
  sink[gid.x] = t.x + t.y + t.z + t.w;
}

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n4) { y[i] = x[i]; }
}

// 8 loads per trip at addresses 977 apart, from `start` moving by 13 each trip; `& mask` keeps them in the buffer
fn sum_loads(start: u32) -> f32 {
  let mask = p.n4 - 1u;
  var j = start;
  var acc = 0.0;
  for (var i = 0u; i < p.iters; i++) {
    acc += xs[j & mask] + xs[(j + 977u) & mask] + xs[(j + 1954u) & mask] + xs[(j + 2931u) & mask];
    acc += xs[(j + 3908u) & mask] + xs[(j + 4885u) & mask] + xs[(j + 5862u) & mask] + xs[(j + 6839u) & mask];
    j += 13u;
  }
  return acc;
}

@compute @workgroup_size(WG)
fn load_lanes(@builtin(global_invocation_id) gid: vec3u) {
  sink[gid.x] = sum_loads(gid.x * 8u);
}

@compute @workgroup_size(WG)
fn load_lanes4(@builtin(global_invocation_id) gid: vec3u) {
  let mask = p.n4 / 4u - 1u;
  var j = gid.x * 8u;
  var acc = vec4<f32>(0.0);
  for (var i = 0u; i < p.iters; i++) {
    acc += x[j & mask] + x[(j + 977u) & mask] + x[(j + 1954u) & mask] + x[(j + 2931u) & mask];
    acc += x[(j + 3908u) & mask] + x[(j + 4885u) & mask] + x[(j + 5862u) & mask] + x[(j + 6839u) & mask];
    j += 13u;
  }
  sink[gid.x] = acc.x + acc.y + acc.z + acc.w;
}

@compute @workgroup_size(WG)
fn load_uniform(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  sink[gid.x] = sum_loads(wid.x * 8u);
}
