// Classification loss and softmax over the last axis of x [R, L] (rows R, classes L). One WG-thread workgroup per
// row: threads stride over the row, then tree reductions in workgroup memory (max, then the shifted sum), so any L works
// and the result does not depend on scheduling.
//   crossEntropyForward:  lse[r] = m + log(sum_j exp(x[r, j] - m)), m = max_j x[r, j]   (max shift: no overflow)
//                         loss[r] = lse[r] - x[r, label[r]]  (NaN for a label outside [0, L), so bad data is loud)
//   crossEntropyBackward: gx[r, j] = g[0] * scale * (exp(x[r, j] - lse[r]) - (j == label[r])),  scale = 1 / R (mean)
//   softmaxRows:          y[r, j] = exp(x[r, j] - lse[r])   (softmaxRows4: the same on vec4 when L % 4 == 0); each
//                         workgroup takes ROWS_PER_WG consecutive rows, one after another
// Row reductions go through rowMax / rowTotal: the portable module uses workgroup trees; the subgroup module
// (src/ops/loss.ts builds it from this file) uses subgroupMax / subgroupAdd with WG = the adapter's fixed subgroup
// size, one subgroup per row, so no barrier.
// rows per workgroup of the softmax entries (template parameter): short rows share a workgroup, whose start-up costs
// about as much as a row of 200 on lavapipe
const ROWS_PER_WG: u32 = 1u;
const WG: u32 = 64u;

struct RowParams { rows: u32, len: u32, scale: f32 }

@group(0) @binding(0) var<uniform> rp: RowParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read> lseIn: array<f32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read_write> gx: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read> x4: array<vec4f>;
@group(0) @binding(10) var<storage, read_write> y4: array<vec4f>;

var<workgroup> red: array<f32, WG>;

fn rowIndex(wid: vec3u, nwg: vec3u) -> u32 { return wid.x + wid.y * nwg.x; }

// ==== row reductions (portable)
// max / sum of v over the row's invocations, returned to all (called in uniform control flow)
fn rowMax(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  return m;
}
fn rowTotal(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}
// ==== end row reductions

// log-sum-exp of row `base`, returned to every thread of the workgroup (called in uniform control flow)
fn rowLogSumExp(base: u32, lid: u32) -> f32 {
  var m = x[base];
  for (var j = lid; j < rp.len; j += WG) { m = max(m, x[base + j]); }
  let rowMaxV = rowMax(lid, m);
  var acc = 0.0;
  for (var j = lid; j < rp.len; j += WG) { acc += exp(x[base + j] - rowMaxV); }
  return rowMaxV + log(rowTotal(lid, acc));
}

@compute @workgroup_size(WG)
fn crossEntropyForward(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = rowIndex(wid, nwg);
  if (r >= rp.rows) { return; } // uniform: the whole workgroup leaves
  let base = r * rp.len;
  let l = rowLogSumExp(base, lid.x);
  if (lid.x == 0u) {
    let label = labels[r];
    let nanBits = 0x7fc00000u; // a runtime value: a NaN constant expression is rejected
    var v = bitcast<f32>(nanBits);
    if (label >= 0 && u32(label) < rp.len) { v = l - x[base + u32(label)]; }
    loss[r] = v;
    lse[r] = l;
  }
}

@compute @workgroup_size(WG)
fn crossEntropyBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= rp.rows * rp.len) { return; }
  let r = i / rp.len;
  let j = i - r * rp.len;
  let p = exp(x[i] - lseIn[r]);
  let onehot = select(0.0, 1.0, labels[r] == i32(j));
  gx[i] = g[0] * rp.scale * (p - onehot);
}

@compute @workgroup_size(WG)
fn softmaxRows(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = rowIndex(wid, nwg) * ROWS_PER_WG;
  let last = min(first + ROWS_PER_WG, rp.rows); // uniform: the row loop keeps the reductions in uniform control flow
  for (var r = first; r < last; r++) {
    let base = r * rp.len;
    let l = rowLogSumExp(base, lid.x);
    for (var j = lid.x; j < rp.len; j += WG) { y[base + j] = exp(x[base + j] - l); }
  }
}

@compute @workgroup_size(WG)
fn softmaxRows4(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let first = rowIndex(wid, nwg) * ROWS_PER_WG;
  let last = min(first + ROWS_PER_WG, rp.rows);
  let n4 = rp.len / 4u;
  for (var r = first; r < last; r++) {
    let base = r * n4;
    var m = vec4f(x4[base].x);
    for (var j = lid.x; j < n4; j += WG) { m = max(m, x4[base + j]); }
    let mx = rowMax(lid.x, max(max(m.x, m.y), max(m.z, m.w)));
    var acc = vec4f(0.0);
    for (var j = lid.x; j < n4; j += WG) { acc += exp(x4[base + j] - mx); }
    let l = mx + log(rowTotal(lid.x, dot(acc, vec4f(1.0))));
    for (var j = lid.x; j < n4; j += WG) { y4[base + j] = exp(x4[base + j] - l); }
  }
}
