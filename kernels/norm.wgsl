// Normalization layers (PyTorch semantics: biased variance, eps inside the sqrt), forward and backward.
// Two layouts of the normalized group:
//   row*:     x [rows, n], each row normalized over its n contiguous elements, one workgroup per row.
//             layerNorm: affine per element (weight[i]); groupNormPerChannel (GroupNorm with one channel per group)
//             on [B, C, T]: rows = B*C, n = T, affine per row (weight[row % C]).
//   channel*: x [outer, C, inner], normalized over C for each (o, i), one thread per (o, i) looping over C
//             (layerNormChannels on [B, C, T]: LayerNorm over channels without transposing to [B, T, C]).
//   y = (x - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps); forward saves mean and rstd per group.
//   backward, xhat = (x - mean) * rstd, g = dy * weight, over the group's n elements:
//     dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//     dweight = sum over groups of dy * xhat,  dbias = sum over groups of dy  (per-channel sums: partial sums per
//     chunk of groups, then sumPartials; no float atomics)
//   *4 entry points: the row layout with per-element affine (LayerNorm) when n % 4 == 0, on vec4 loads and stores
//   (4x fewer memory operations, which lavapipe and GPUs both need to approach copy bandwidth).
//   RESIDUAL (rowNormForward, rowNormForward4): the normalized row is s = x + res, and s is written to `sum` / `sum4`
//   too (the residual stream's next value): y = LN(x + res) in one pass over x and res.
//   ACT (channel layout only): 1 = the output is GELU(y) (the feature encoder's LayerNorm + GELU in one pass); the
//   backward first turns dy into dy * GELU'(y) (channelNormActGrad, y recomputed from x and the saved statistics),
//   then runs as above. geluOf / geluGrad are kernels/activation.wgsl's, appended by src/ops/norm.ts.
// Row reductions go through rowSum: the portable module reduces with a workgroup tree; the subgroup module
// (src/ops/norm.ts builds it from this file) replaces rowSum by subgroupAdd and runs with WG = the adapter's fixed
// subgroup size, i.e. one subgroup per workgroup and per row: no workgroup barrier at all.
alias T = f32;
const WG: u32 = 128u;
const RESIDUAL: bool = false;
// 0: none, 1: GELU after the channel layout's affine (see above)
const ACT: u32 = 0u;

struct Norm {
  rows: u32, n: u32, channels: u32, inner: u32, eps: f32,
  hasWeight: u32, hasBias: u32, perRowAffine: u32, rowSums: u32,
  // affine gradients: groups per chunk and chunk count; sumPartials: elements and count
  chunk: u32, chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Norm;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> weight: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(7) var<storage, read> savedMean: array<f32>;
@group(0) @binding(8) var<storage, read> savedRstd: array<f32>;
@group(0) @binding(9) var<storage, read> dy: array<T>;
@group(0) @binding(10) var<storage, read_write> dx: array<T>;
@group(0) @binding(11) var<storage, read_write> partW: array<f32>;
@group(0) @binding(12) var<storage, read_write> partB: array<f32>;
@group(0) @binding(13) var<storage, read> parts: array<f32>;
@group(0) @binding(14) var<storage, read_write> sum: array<T>;
@group(0) @binding(15) var<storage, read> x4: array<vec4<T>>;
@group(0) @binding(16) var<storage, read> weight4: array<vec4<T>>;
@group(0) @binding(17) var<storage, read> bias4: array<vec4<T>>;
@group(0) @binding(18) var<storage, read_write> y4: array<vec4<T>>;
@group(0) @binding(19) var<storage, read> dy4: array<vec4<T>>;
@group(0) @binding(20) var<storage, read_write> dx4: array<vec4<T>>;
@group(0) @binding(21) var<storage, read> res: array<T>;
@group(0) @binding(22) var<storage, read> res4: array<vec4<T>>;
@group(0) @binding(23) var<storage, read_write> sum4: array<vec4<T>>;
@group(0) @binding(24) var<storage, read_write> partW4: array<vec4f>;
@group(0) @binding(25) var<storage, read_write> partB4: array<vec4f>;

var<workgroup> red: array<vec4f, WG>;

// Sum of v over the row's invocations (every invocation gets it). Must be reached by the whole workgroup.
// ==== rowSum (portable)
fn rowSum(lid: u32, v: vec4f) -> vec4f {
  red[lid] = v;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h /= 2u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  let s = red[0];
  workgroupBarrier();
  return s;
}
// ==== end rowSum

// weight/bias index of element i of a row; rowParam = row % channels, computed once per row
fn affineIndex(rowParam: u32, i: u32) -> u32 { return select(i, rowParam, p.perRowAffine != 0u); }
fn gamma(k: u32) -> f32 { return select(1.0, f32(weight[k]), p.hasWeight != 0u); }
fn beta(k: u32) -> f32 { return select(0.0, f32(bias[k]), p.hasBias != 0u); }

fn rowValue(e: u32) -> f32 {
  if (RESIDUAL) { return f32(x[e] + res[e]); }
  return f32(x[e]);
}
fn rowValue4(e: u32) -> vec4f {
  if (RESIDUAL) { return vec4f(x4[e] + res4[e]); }
  return vec4f(x4[e]);
}
fn gamma4(i: u32) -> vec4f { return select(vec4f(1.0), vec4f(weight4[i]), p.hasWeight != 0u); }
fn beta4(i: u32) -> vec4f { return select(vec4f(0.0), vec4f(bias4[i]), p.hasBias != 0u); }

// LayerNorm rows on vec4 (n % 4 == 0), one workgroup per row
@compute @workgroup_size(WG)
fn rowNormForward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let n4 = p.n / 4u;
  let base = row * n4;
  let inv = 1.0 / f32(p.n);
  var s = vec4f(0.0);
  for (var i = lid; i < n4; i += WG) {
    var v = vec4f(x4[base + i]);
    if (RESIDUAL) {
      let st = x4[base + i] + res4[base + i];
      sum4[base + i] = st;
      v = vec4f(st);
    }
    s += v;
  }
  let mu = dot(rowSum(lid, s), vec4f(1.0)) * inv;
  var q = vec4f(0.0);
  for (var i = lid; i < n4; i += WG) { let d = rowValue4(base + i) - mu; q += d * d; }
  let rs = inverseSqrt(dot(rowSum(lid, q), vec4f(1.0)) * inv + p.eps);
  for (var i = lid; i < n4; i += WG) {
    y4[base + i] = vec4<T>((rowValue4(base + i) - mu) * rs * gamma4(i) + beta4(i));
  }
  if (lid == 0u) { mean[row] = mu; rstd[row] = rs; }
}

// dx of LayerNorm rows on vec4 (n % 4 == 0)
@compute @workgroup_size(WG)
fn rowNormBackward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let n4 = p.n / 4u;
  let base = row * n4;
  let mu = savedMean[row];
  let rs = savedRstd[row];
  var sg = vec4f(0.0);
  var sgx = vec4f(0.0);
  for (var i = lid; i < n4; i += WG) {
    let xh = (vec4f(x4[base + i]) - mu) * rs;
    let g = vec4f(dy4[base + i]) * gamma4(i);
    sg += g;
    sgx += g * xh;
  }
  let t = rowSum(lid, vec4f(dot(sg, vec4f(1.0)), dot(sgx, vec4f(1.0)), 0.0, 0.0));
  let inv = 1.0 / f32(p.n);
  let meanG = t.x * inv;
  let meanGX = t.y * inv;
  for (var i = lid; i < n4; i += WG) {
    let xh = (vec4f(x4[base + i]) - mu) * rs;
    let g = vec4f(dy4[base + i]) * gamma4(i);
    dx4[base + i] = vec4<T>(rs * (g - meanG - xh * meanGX));
  }
}

// LayerNorm's affine gradient on vec4: thread (chunk, i4), i4 fastest, into partW4 / partB4 [chunks, n / 4]
@compute @workgroup_size(WG)
fn rowAffineGrad4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  let n4 = p.n / 4u;
  if (id >= n4 * p.chunks) { return; }
  let i = id % n4;
  let c = id / n4;
  let end = min((c + 1u) * p.chunk, p.rows);
  var sw = vec4f(0.0);
  var sb = vec4f(0.0);
  for (var row = c * p.chunk; row < end; row++) {
    let d = vec4f(dy4[row * n4 + i]);
    sw += d * (vec4f(x4[row * n4 + i]) - savedMean[row]) * savedRstd[row];
    sb += d;
  }
  partW4[id] = sw;
  partB4[id] = sb;
}

// one workgroup per row (row = wid.x + wid.y * nwg.x)
@compute @workgroup_size(WG)
fn rowNormForward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  let rowParam = row % p.channels;
  let inv = 1.0 / f32(p.n);
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    var v = f32(x[base + i]);
    if (RESIDUAL) {
      // the sum is rounded to T first: y normalizes exactly the s it returns
      let st = x[base + i] + res[base + i];
      sum[base + i] = st;
      v = f32(st);
    }
    s += v;
  }
  let mu = rowSum(lid, vec4f(s, 0.0, 0.0, 0.0)).x * inv;
  // two passes: the centered sum of squares does not cancel (RESIDUAL re-reads x + res, not sum: no read-after-write
  // across invocations without a barrier)
  var q = 0.0;
  for (var i = lid; i < p.n; i += WG) { let d = rowValue(base + i) - mu; q += d * d; }
  let rs = inverseSqrt(rowSum(lid, vec4f(q, 0.0, 0.0, 0.0)).x * inv + p.eps);
  for (var i = lid; i < p.n; i += WG) {
    let k = affineIndex(rowParam, i);
    y[base + i] = T((rowValue(base + i) - mu) * rs * gamma(k) + beta(k));
  }
  if (lid == 0u) { mean[row] = mu; rstd[row] = rs; }
}

// dx per row; with rowSums (GroupNorm's parameter gradients) also the row's sum(dy * xhat) and sum(dy) into
// partW / partB [rows]
@compute @workgroup_size(WG)
fn rowNormBackward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  let rowParam = row % p.channels;
  let mu = savedMean[row];
  let r = savedRstd[row];
  var acc = vec4f(0.0);
  for (var i = lid; i < p.n; i += WG) {
    let d = f32(dy[base + i]);
    let xh = (f32(x[base + i]) - mu) * r;
    let g = d * gamma(affineIndex(rowParam, i));
    acc += vec4f(g, g * xh, d * xh, d);
  }
  let s = rowSum(lid, acc);
  let inv = 1.0 / f32(p.n);
  let meanG = s.x * inv;
  let meanGX = s.y * inv;
  for (var i = lid; i < p.n; i += WG) {
    let xh = (f32(x[base + i]) - mu) * r;
    let g = f32(dy[base + i]) * gamma(affineIndex(rowParam, i));
    dx[base + i] = T(r * (g - meanG - xh * meanGX));
  }
  if (lid == 0u && p.rowSums != 0u) { partW[row] = s.z; partB[row] = s.w; }
}

// Per-element affine gradient of the row layout (LayerNorm): thread (chunk, i), i fastest, sums dy * xhat and dy
// over the rows of its chunk into partW / partB [chunks, n].
@compute @workgroup_size(WG)
fn rowAffineGrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= p.n * p.chunks) { return; }
  let i = id % p.n;
  let c = id / p.n;
  let end = min((c + 1u) * p.chunk, p.rows);
  var sw = 0.0;
  var sb = 0.0;
  for (var row = c * p.chunk; row < end; row++) {
    let d = f32(dy[row * p.n + i]);
    sw += d * (f32(x[row * p.n + i]) - savedMean[row]) * savedRstd[row];
    sb += d;
  }
  partW[id] = sw;
  partB[id] = sb;
}

// channel layout: thread per (o, i), i fastest; element (o, c, i) at (o * C + c) * inner + i; group index o*inner + i
// element of channel 0 of group id
fn channelBase(id: u32) -> u32 { return (id / p.inner) * p.channels * p.inner + id % p.inner; }
// the affine normalized value of element e (channel c) of a group with mean mu and rstd r
fn channelAffine(e: u32, c: u32, mu: f32, r: f32) -> f32 { return (f32(x[e]) - mu) * r * gamma(c) + beta(c); }

@compute @workgroup_size(WG)
fn channelNormForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= p.rows) { return; }
  let C = p.channels;
  let base = channelBase(id);
  let inv = 1.0 / f32(C);
  var s = 0.0;
  for (var c = 0u; c < C; c++) { s += f32(x[base + c * p.inner]); }
  let mu = s * inv;
  var q = 0.0;
  for (var c = 0u; c < C; c++) { let d = f32(x[base + c * p.inner]) - mu; q += d * d; }
  let r = inverseSqrt(q * inv + p.eps);
  for (var c = 0u; c < C; c++) {
    let e = base + c * p.inner;
    var z = channelAffine(e, c, mu, r);
    if (ACT == 1u) { z = geluOf(z); }
    y[e] = T(z);
  }
  mean[id] = mu;
  rstd[id] = r;
}

// ACT: dz = dy * GELU'(z), z = (x - mean) * rstd * weight + bias recomputed; written to dx, the input of the backward
@compute @workgroup_size(WG)
fn channelNormActGrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= p.rows) { return; }
  let C = p.channels;
  let base = channelBase(id);
  let mu = savedMean[id];
  let r = savedRstd[id];
  for (var c = 0u; c < C; c++) {
    let e = base + c * p.inner;
    dx[e] = T(f32(dy[e]) * geluGrad(channelAffine(e, c, mu, r)));
  }
}

@compute @workgroup_size(WG)
fn channelNormBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= p.rows) { return; }
  let C = p.channels;
  let base = channelBase(id);
  let mu = savedMean[id];
  let r = savedRstd[id];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = 0u; c < C; c++) {
    let e = base + c * p.inner;
    let g = f32(dy[e]) * gamma(c);
    sg += g;
    sgx += g * (f32(x[e]) - mu) * r;
  }
  let inv = 1.0 / f32(C);
  let meanG = sg * inv;
  let meanGX = sgx * inv;
  for (var c = 0u; c < C; c++) {
    let e = base + c * p.inner;
    let g = f32(dy[e]) * gamma(c);
    dx[e] = T(r * (g - meanG - (f32(x[e]) - mu) * r * meanGX));
  }
}

// Affine gradient of the channel layout: thread (chunk, c), c fastest, sums over the groups (o, i) of its chunk.
@compute @workgroup_size(WG)
fn channelAffineGrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  let C = p.channels;
  if (id >= C * p.chunks) { return; }
  let c = id % C;
  let chunk = id / C;
  let end = min((chunk + 1u) * p.chunk, p.rows);
  var sw = 0.0;
  var sb = 0.0;
  // walk (o, i) incrementally: a runtime division per element would cost more than the loads
  let start = chunk * p.chunk;
  var i = start % p.inner;
  var e = ((start / p.inner) * C + c) * p.inner + i;
  for (var gi = start; gi < end; gi++) {
    let d = f32(dy[e]);
    sw += d * (f32(x[e]) - savedMean[gi]) * savedRstd[gi];
    sb += d;
    i++;
    e++;
    if (i == p.inner) { i = 0u; e += (C - 1u) * p.inner; } // next o: skip the other channels
  }
  partW[id] = sw;
  partB[id] = sb;
}

// sum[i] = sum_{c < chunks} parts[c * n + i]
@compute @workgroup_size(WG)
fn sumPartials(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) { s += parts[c * p.n + i]; }
  sum[i] = T(s);
}
