// Weight normalization (PyTorch weight_norm(dim)): w = g * v / ||v||, the norm taken over every axis except `dim`.
// v viewed as [outer, D, inner] (D = v.shape[dim]); element (o, d, i) at (o * D + d) * inner + i; g and norm [D].
//   forward:  norm[d] = sqrt(sum_{o,i} v^2),  w = g[d] * v / norm[d]
//   backward: s[d] = sum_{o,i} dw * v,  dg[d] = s[d] / norm[d],
//             dv = g[d] / norm[d] * (dw - v * s[d] / norm[d]^2) = g[d] / norm[d] * (dw - v * dg[d] / norm[d])
// The per-d sums are partial sums: thread (chunk, d), d fastest, so neighbouring lanes read neighbouring elements
// when inner = 1 (the pos conv's dim 2: a column sum of a [65536, 128] matrix; one workgroup per d would walk the
// whole array once per d, a cache line per element); weightNormFinish* add the chunks (no float atomics).
// Integer division by a runtime value is scalarized on lavapipe (~2.5 loads' worth per lane): the partial sums walk
// (o, i) incrementally, and when inner and D are powers of two the elementwise passes use shifts and masks baked into
// the pipeline: INNER_SHIFT = log2(inner) (or -1: divide), DIM_MASK = D - 1 (or 0: divide).
alias T = f32;
const WG: u32 = 128u;
const INNER_SHIFT: i32 = -1;
const DIM_MASK: u32 = 0u;
const EPT: u32 = 4u;

// chunk: (o, i) pairs per chunk; chunks: their count; backward: 1 for sum(dw * v), 0 for sum(v * v)
struct WeightNorm { outer: u32, dim: u32, inner: u32, n: u32, chunk: u32, chunks: u32, backward: u32 }

@group(0) @binding(0) var<uniform> p: WeightNorm;
@group(0) @binding(1) var<storage, read> v: array<T>;
@group(0) @binding(2) var<storage, read> g: array<T>;
@group(0) @binding(3) var<storage, read_write> norm: array<f32>;
@group(0) @binding(4) var<storage, read> savedNorm: array<f32>;
@group(0) @binding(5) var<storage, read_write> w: array<T>;
@group(0) @binding(6) var<storage, read> dw: array<T>;
@group(0) @binding(7) var<storage, read_write> dg: array<T>;
@group(0) @binding(8) var<storage, read_write> dv: array<T>;
@group(0) @binding(9) var<storage, read_write> partial: array<f32>;
@group(0) @binding(10) var<storage, read> parts: array<f32>;

fn threadIndex(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// d of flat element e
fn dimIndex(e: u32) -> u32 {
  if (INNER_SHIFT >= 0 && DIM_MASK != 0u) { return (e >> u32(max(INNER_SHIFT, 0))) & DIM_MASK; }
  return (e / p.inner) % p.dim;
}

// partial[chunk * D + d] = sum over the chunk's (o, i) of v^2 (forward) or dw * v (backward)
@compute @workgroup_size(WG)
fn weightNormPartial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = threadIndex(gid, nwg);
  if (id >= p.dim * p.chunks) { return; }
  let d = id % p.dim;
  let start = (id / p.dim) * p.chunk;
  let end = min(start + p.chunk, p.outer * p.inner);
  var i = start % p.inner;
  var e = ((start / p.inner) * p.dim + d) * p.inner + i;
  var s = 0.0;
  for (var k = start; k < end; k++) {
    let a = f32(v[e]);
    s += a * select(a, f32(dw[e]), p.backward != 0u); // forward binds v as dw
    i++;
    e++;
    if (i == p.inner) { i = 0u; e += (p.dim - 1u) * p.inner; } // next o: skip the other d
  }
  partial[id] = s;
}

// forward: norm[d] = sqrt(sum of the chunks)
@compute @workgroup_size(WG)
fn weightNormFinishNorm(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let d = threadIndex(gid, nwg);
  if (d >= p.dim) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += parts[c * p.dim + d]; }
  norm[d] = sqrt(s);
}

// backward: dg[d] = (sum of the chunks) / norm[d]
@compute @workgroup_size(WG)
fn weightNormFinishGrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let d = threadIndex(gid, nwg);
  if (d >= p.dim) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += parts[c * p.dim + d]; }
  dg[d] = T(s / savedNorm[d]);
}

// EPT consecutive elements per thread: on lavapipe a thread's fixed cost is many loads' worth, so one element per
// thread would spend most of the time starting threads
@compute @workgroup_size(WG)
fn weightNormForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e0 = threadIndex(gid, nwg) * EPT;
  for (var j = 0u; j < EPT; j++) {
    let e = e0 + j;
    if (e >= p.n) { return; }
    let d = dimIndex(e);
    w[e] = T(f32(g[d]) * f32(v[e]) / savedNorm[d]);
  }
}

// EPT consecutive elements per thread, after weightNormFinishGrad (reads dg)
@compute @workgroup_size(WG)
fn weightNormBackwardV(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e0 = threadIndex(gid, nwg) * EPT;
  for (var j = 0u; j < EPT; j++) {
    let e = e0 + j;
    if (e >= p.n) { return; }
    let d = dimIndex(e);
    let nd = savedNorm[d];
    dv[e] = T(f32(g[d]) / nd * (f32(dw[e]) - f32(v[e]) * f32(dg[d]) / nd));
  }
}
