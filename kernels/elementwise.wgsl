// Elementwise ops on flat arrays of n elements (any shape, contiguous). Each thread handles one element; the grid is
// 2-D (x + y * width) so more than 65535 workgroups' worth of elements fit one dispatch.
//   fill:        y[i] = value
//   add:         y[i] = a[i] + alpha * b[i]          (backward: ga = gy, gb = alpha * gy)
//   accumulate:  a[i] += b[i]                         (gradient accumulation)
//   mul:         y[i] = a[i] * b[i]                   (backward: ga = gy * b, gb = gy * a)
//   scale:       y[i] = alpha * a[i] + beta           (backward: ga = alpha * gy)
//   convert:     y[i] = T(src[i])                     (S -> T, round to nearest even; backward: convert back)
// T is the storage type (f32, or f16 where the adapter has shader-f16); arithmetic is done in f32. S is the source
// type of convert (the cast op) only. An f32 beyond f16's range becomes +-inf in f16 on IEEE hardware (WGSL leaves it indeterminate;
// lavapipe and NVIDIA give inf), which is what mixed-precision loss scaling relies on to see an overflow.
// V / VF / VS: one thread's element, arithmetic and source types: T / f32 / S, or vec4<T> / vec4f / vec4<S> when
// n % 4 == 0 (n then counts vec4s: 4x fewer memory operations).
alias T = f32;
alias S = f32;
alias V = T;
alias VF = f32;
alias VS = S;
const WG: u32 = 256u;

struct Params { n: u32, alpha: f32, beta: f32, value: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<V>;
@group(0) @binding(2) var<storage, read> a: array<V>;
@group(0) @binding(3) var<storage, read> b: array<V>;
@group(0) @binding(4) var<storage, read_write> acc: array<V>;
@group(0) @binding(5) var<storage, read> src: array<VS>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = V(VF(p.value)); }
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = V(VF(a[i]) + p.alpha * VF(b[i])); }
}

@compute @workgroup_size(WG)
fn accumulate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { acc[i] = V(VF(acc[i]) + VF(b[i])); }
}

@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = V(VF(a[i]) * VF(b[i])); }
}

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = V(p.alpha * VF(a[i]) + p.beta); }
}

@compute @workgroup_size(WG)
fn convert(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = V(src[i]); }
}
