// Roofline probes for the bench (not used by the model).
//   fma_peak: every thread runs CHAINS independent FMA chains for `iters` iterations, so the FMA pipes stay full;
//             flops = 2 * CHAINS * iters * threads. The result is stored so the compiler cannot drop the work.
//   copy:     y[i] = x[i] on vec4s; bytes moved = 2 * 16 * n4.
const CHAINS: u32 = 12u;
const WG: u32 = 256u;

struct Params { iters: u32, n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> sink: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn fma_peak(@builtin(global_invocation_id) gid: vec3u) {
  var acc: array<f32, CHAINS>;
  for (var c = 0u; c < CHAINS; c++) { acc[c] = f32(gid.x + c) * 1e-3; }
  let a = 0.999;
  let b = 1e-4;
  for (var i = 0u; i < p.iters; i++) {
    for (var c = 0u; c < CHAINS; c++) { acc[c] = fma(acc[c], a, b); }
  }
  var s = 0.0;
  for (var c = 0u; c < CHAINS; c++) { s += acc[c]; }
  sink[gid.x] = s;
}

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < p.n4) { y[i] = x[i]; }
}
