// Classification loss and softmax over the last axis of x [R, L] (rows R, classes L). One WG-thread workgroup per
// row: threads stride over the row, then tree reductions in workgroup memory (max, then the shifted sum), so any L works
// and the result does not depend on scheduling.
//   crossEntropyForward:  lse[r] = m + log(sum_j exp(x[r, j] - m)), m = max_j x[r, j]   (max shift: no overflow)
//                         loss[r] = lse[r] - x[r, label[r]]  (NaN for a label outside [0, L), so bad data is loud)
//   crossEntropyBackward: gx[r, j] = g[0] * scale * (exp(x[r, j] - lse[r]) - (j == label[r])),  scale = 1 / R (mean)
//   softmaxRows:          y[r, j] = exp(x[r, j] - lse[r])
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

var<workgroup> red: array<f32, WG>;

fn rowIndex(wid: vec3u, nwg: vec3u) -> u32 { return wid.x + wid.y * nwg.x; }

// log-sum-exp of row `base`, returned to every thread of the workgroup (called in uniform control flow)
fn rowLogSumExp(base: u32, lid: u32) -> f32 {
  var m = x[base];
  for (var j = lid; j < rp.len; j += WG) { m = max(m, x[base + j]); }
  red[lid] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let rowMax = red[0];
  workgroupBarrier();
  var acc = 0.0;
  for (var j = lid; j < rp.len; j += WG) { acc += exp(x[base + j] - rowMax); }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier();
  return rowMax + log(total);
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
  let r = rowIndex(wid, nwg);
  if (r >= rp.rows) { return; }
  let base = r * rp.len;
  let l = rowLogSumExp(base, lid.x);
  for (var j = lid.x; j < rp.len; j += WG) { y[base + j] = exp(x[base + j] - l); }
}
