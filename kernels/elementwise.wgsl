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
alias T = f32;
alias S = f32;
const WG: u32 = 256u;

struct Params { n: u32, alpha: f32, beta: f32, value: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> a: array<T>;
@group(0) @binding(3) var<storage, read> b: array<T>;
@group(0) @binding(4) var<storage, read_write> acc: array<T>;
@group(0) @binding(5) var<storage, read> src: array<S>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = T(p.value); }
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = T(f32(a[i]) + p.alpha * f32(b[i])); }
}

@compute @workgroup_size(WG)
fn accumulate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { acc[i] = T(f32(acc[i]) + f32(b[i])); }
}

@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = T(f32(a[i]) * f32(b[i])); }
}

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = T(p.alpha * f32(a[i]) + p.beta); }
}

@compute @workgroup_size(WG)
fn convert(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] = T(src[i]); }
}
