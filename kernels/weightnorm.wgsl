// Weight normalization (PyTorch weight_norm(dim)): w = g * v / ||v||, the norm taken over every axis except `dim`.
// v viewed as [outer, D, inner] (D = v.shape[dim]); element (o, d, i) at (o * D + d) * inner + i; g and norm [D].
//   forward:  norm[d] = sqrt(sum_{o,i} v^2),  w = g[d] * v / norm[d]
//   backward: s[d] = sum_{o,i} dw * v,  dg[d] = s[d] / norm[d],
//             dv = g[d] / norm[d] * (dw - v * s[d] / norm[d]^2) = g[d] / norm[d] * (dw - v * dg[d] / norm[d])
// The per-d sums run one workgroup per d with a tree reduction in workgroup memory (no float atomics).
// Integer division by a runtime value is scalarized on lavapipe (~2.5 loads' worth per lane), so when inner is a power
// of two (the pos conv's dim 2: inner = 1) index math uses shifts and masks, baked into the pipeline:
// INNER_SHIFT = log2(inner) (or -1: divide), DIM_MASK = dim - 1 when dim is a power of two (or 0: divide).
alias T = f32;
const WG: u32 = 128u;
const INNER_SHIFT: i32 = -1;
const DIM_MASK: u32 = 0u;

struct WeightNorm { outer: u32, dim: u32, inner: u32, n: u32 }

@group(0) @binding(0) var<uniform> p: WeightNorm;
@group(0) @binding(1) var<storage, read> v: array<T>;
@group(0) @binding(2) var<storage, read> g: array<T>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;
@group(0) @binding(4) var<storage, read> savedNorm: array<f32>;
@group(0) @binding(5) var<storage, read_write> w: array<T>;
@group(0) @binding(6) var<storage, read> dw: array<T>;
@group(0) @binding(7) var<storage, read_write> dg: array<T>;
@group(0) @binding(8) var<storage, read_write> dv: array<T>;

var<workgroup> red: array<f32, WG>;

fn workgroupSum(lid: u32, s: f32) -> f32 {
  red[lid] = s;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h /= 2u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  return red[0];
}

// element (o, d, i) of the e-th (o, i) pair
fn element(d: u32, e: u32) -> u32 {
  if (INNER_SHIFT >= 0) {
    let s = u32(max(INNER_SHIFT, 0));
    return (((e >> s) * p.dim + d) << s) + (e & (p.inner - 1u));
  }
  return ((e / p.inner) * p.dim + d) * p.inner + e % p.inner;
}

// d of flat element e
fn dimIndex(e: u32) -> u32 {
  if (INNER_SHIFT >= 0 && DIM_MASK != 0u) { return (e >> u32(max(INNER_SHIFT, 0))) & DIM_MASK; }
  return (e / p.inner) % p.dim;
}

// one workgroup per d
@compute @workgroup_size(WG)
fn weightNormNorms(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let d = wid.x;
  var s = 0.0;
  for (var e = lid; e < p.outer * p.inner; e += WG) { let a = f32(v[element(d, e)]); s += a * a; }
  let total = workgroupSum(lid, s);
  if (lid == 0u) { norm[d] = sqrt(total); }
}

// one thread per element
@compute @workgroup_size(WG)
fn weightNormForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = gid.x + gid.y * nwg.x * WG;
  if (e >= p.n) { return; }
  let d = dimIndex(e);
  w[e] = T(f32(g[d]) * f32(v[e]) / savedNorm[d]);
}

// one workgroup per d: dg[d] = sum(dw * v) / norm[d]
@compute @workgroup_size(WG)
fn weightNormBackwardG(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let d = wid.x;
  var s = 0.0;
  for (var e = lid; e < p.outer * p.inner; e += WG) { let k = element(d, e); s += f32(dw[k]) * f32(v[k]); }
  let total = workgroupSum(lid, s);
  if (lid == 0u) { dg[d] = T(total / savedNorm[d]); }
}

// one thread per element, after weightNormBackwardG (reads dg)
@compute @workgroup_size(WG)
fn weightNormBackwardV(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = gid.x + gid.y * nwg.x * WG;
  if (e >= p.n) { return; }
  let d = dimIndex(e);
  let nd = savedNorm[d];
  dv[e] = T(f32(g[d]) / nd * (f32(dw[e]) - f32(v[e]) * f32(dg[d]) / nd));
}
