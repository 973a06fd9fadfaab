// Deterministic reductions: fixed summation order, no float atomics, so the same inputs give the same bits.
//   partialSums:  partials[outOffset + g] = finish(scale * sum over chunk g of term(i)), term = x | x^2 | x * other,
//                 chunk = WG * PER_THREAD elements: each thread adds PER_THREAD values (stride WG, coalesced), then a
//                 tree over the workgroup. Passes repeat over the partials until one value is left, so the rounding
//                 error grows like PER_THREAD + log2(n), not n. finish = sqrt gives an L2 norm.
//   partialSums4: the same chunks (WG * PER_THREAD elements) on vec4 loads when n % 4 == 0 (rp.n still counts
//                 elements): each thread adds PER_THREAD / 4 vec4s, then the same tree.
//   broadcastScalar:        gx[i] = scale * g[0]                              (backward of sum / mean)
//   poolTimeSum:            x [B, T, C] -> y[b, c] = sum over real t of x[b, t, c] (/ real count for mean)
//   poolTimeMax:            y[b, c] = max over real t, argmax[b, c] = first such t (-1 when no real frame: y = 0)
//                           Both: a WG_C x LANES workgroup per (channel tile, b); lanes take interleaved frames,
//                           summing BLOCK at a time (blocked partial sums), then combine in lane order.
//   maskCounts:             counts[b] = number of real frames (T without a mask)
//   poolTimeSumBackward:    gx[b, t, c] = real(b, t) ? gy[b, c] (/ max(count[b], 1) for mean) : 0
//   poolTimeMaxBackward:    gx[b, t, c] = t == argmax[b, c] ? gy[b, c] : 0
//   layerSoftmax:           weights = softmax(logits [L]) (one invocation: L is the number of hidden layers)
//   weightedAccumulate:     y = (first ? 0 : y) + sum_{k < count} weights[layer + k] * x_k     (up to 4 layers a pass)
//   scaleByWeight:          gx = weights[layer] * gy
//   layerSoftmaxBackward:   glogits[j] = w[j] (dots[j] - sum_l w[l] dots[l]),  dots[l] = <gy, x_l>
// A mean over zero real frames is 0 (HF would give NaN); a real-frame mask is any nonzero i32.
const WG: u32 = 256u;
const PER_THREAD: u32 = 8u;
const WG_C: u32 = 64u;
const LANES: u32 = 4u;
const BLOCK: u32 = 32u;

struct ReduceParams { n: u32, groups: u32, outOffset: u32, term: u32, finish: u32, scale: f32 }
struct BroadcastParams { n: u32, scale: f32 }
struct PoolParams { batch: u32, frames: u32, channels: u32, hasMask: u32, mean: u32 }
struct LayerParams { n: u32, layers: u32, layer: u32, count: u32, first: u32 }

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<uniform> bp: BroadcastParams;
@group(0) @binding(2) var<uniform> pp: PoolParams;
@group(0) @binding(3) var<uniform> lp: LayerParams;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> other: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read> mask: array<i32>;
@group(0) @binding(9) var<storage, read_write> argmax: array<i32>;
@group(0) @binding(10) var<storage, read> argmaxIn: array<i32>;
@group(0) @binding(11) var<storage, read_write> counts: array<f32>;
@group(0) @binding(12) var<storage, read> frameCounts: array<f32>;
@group(0) @binding(13) var<storage, read> g: array<f32>;
@group(0) @binding(14) var<storage, read> gy: array<f32>;
@group(0) @binding(15) var<storage, read_write> gx: array<f32>;
@group(0) @binding(16) var<storage, read> logits: array<f32>;
@group(0) @binding(17) var<storage, read_write> weights: array<f32>;
@group(0) @binding(18) var<storage, read> weightsIn: array<f32>;
@group(0) @binding(19) var<storage, read> x0: array<f32>;
@group(0) @binding(20) var<storage, read> x1: array<f32>;
@group(0) @binding(21) var<storage, read> x2: array<f32>;
@group(0) @binding(22) var<storage, read> x3: array<f32>;
@group(0) @binding(23) var<storage, read> dots: array<f32>;
@group(0) @binding(24) var<storage, read_write> glogits: array<f32>;
@group(0) @binding(25) var<storage, read> x4: array<vec4f>;
@group(0) @binding(26) var<storage, read> other4: array<vec4f>;

var<workgroup> scratch: array<f32, WG>;
var<workgroup> laneSums: array<array<f32, WG_C>, LANES>;
var<workgroup> laneArg: array<array<i32, WG_C>, LANES>;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(WG)
fn partialSums(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let group = wid.x + wid.y * nwg.x;
  if (group >= rp.groups) { return; } // the whole workgroup leaves together
  let base = group * WG * PER_THREAD + lid.x;
  var acc = 0.0;
  for (var k = 0u; k < PER_THREAD; k++) {
    let i = base + k * WG;
    if (i < rp.n) {
      let v = x[i];
      if (rp.term == 0u) { acc += v; } else if (rp.term == 1u) { acc += v * v; } else { acc += v * other[i]; }
    }
  }
  finishPartial(lid.x, group, acc);
}

@compute @workgroup_size(WG)
fn partialSums4(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let group = wid.x + wid.y * nwg.x;
  if (group >= rp.groups) { return; }
  let n4 = rp.n / 4u;
  let base = group * WG * (PER_THREAD / 4u) + lid.x;
  var acc = vec4f(0.0);
  for (var k = 0u; k < PER_THREAD / 4u; k++) {
    let i = base + k * WG;
    if (i < n4) {
      let v = x4[i];
      if (rp.term == 0u) { acc += v; } else if (rp.term == 1u) { acc += v * v; } else { acc += v * other4[i]; }
    }
  }
  finishPartial(lid.x, group, (acc.x + acc.y) + (acc.z + acc.w));
}

// workgroup tree over the threads' sums; thread 0 writes the (scaled, maybe square-rooted) partial.
// The subgroup module (src/ops/reduce.ts) replaces this section by one subgroupAdd and runs with WG = the adapter's
// fixed subgroup size and PER_THREAD = the same chunk / WG: no workgroup barrier (8 of them per chunk here, each
// costly on a CPU adapter), the same partials.
// ==== finishPartial (portable)
fn finishPartial(lid: u32, group: u32, acc: f32) {
  scratch[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { scratch[lid] += scratch[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    var r = scratch[0] * rp.scale;
    if (rp.finish == 1u) { r = sqrt(r); }
    partials[rp.outOffset + group] = r;
  }
}
// ==== end finishPartial

@compute @workgroup_size(WG)
fn broadcastScalar(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < bp.n) { gx[i] = bp.scale * g[0]; }
}

fn isReal(b: u32, t: u32) -> bool {
  return pp.hasMask == 0u || mask[b * pp.frames + t] != 0;
}

@compute @workgroup_size(WG_C, LANES)
fn poolTimeSum(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let c = wid.x * WG_C + lid.x;
  let b = wid.y;
  let C = pp.channels;
  var total = 0.0;
  var real = 0u;
  if (c < C) {
    var t = lid.y;
    while (t < pp.frames) {
      var blockSum = 0.0;
      let end = min(pp.frames, t + LANES * BLOCK);
      while (t < end) {
        if (isReal(b, t)) {
          blockSum += x[(b * pp.frames + t) * C + c];
          real += 1u;
        }
        t += LANES;
      }
      total += blockSum;
    }
  }
  laneSums[lid.y][lid.x] = total;
  laneArg[lid.y][lid.x] = i32(real);
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    var s = 0.0;
    var count = 0;
    for (var l = 0u; l < LANES; l++) {
      s += laneSums[l][lid.x];
      count += laneArg[l][lid.x];
    }
    if (pp.mean == 1u) { s = s / f32(max(count, 1)); }
    y[b * C + c] = s;
  }
}

@compute @workgroup_size(WG_C, LANES)
fn poolTimeMax(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let c = wid.x * WG_C + lid.x;
  let b = wid.y;
  let C = pp.channels;
  var best = 0.0;
  var bestT = -1;
  if (c < C) {
    for (var t = lid.y; t < pp.frames; t += LANES) {
      if (isReal(b, t)) {
        let v = x[(b * pp.frames + t) * C + c];
        // strictly greater: within a lane t only grows, so ties keep the first frame
        if (bestT < 0 || v > best) {
          best = v;
          bestT = i32(t);
        }
      }
    }
  }
  laneSums[lid.y][lid.x] = best;
  laneArg[lid.y][lid.x] = bestT;
  workgroupBarrier();
  if (lid.y == 0u && c < C) {
    var m = 0.0;
    var arg = -1;
    for (var l = 0u; l < LANES; l++) {
      let v = laneSums[l][lid.x];
      let a = laneArg[l][lid.x];
      if (a >= 0 && (arg < 0 || v > m || (v == m && a < arg))) {
        m = v;
        arg = a;
      }
    }
    y[b * C + c] = m;
    argmax[b * C + c] = arg;
  }
}

@compute @workgroup_size(WG)
fn maskCounts(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.x;
  if (b >= pp.batch) { return; }
  var n = 0u;
  for (var t = 0u; t < pp.frames; t++) {
    if (isReal(b, t)) { n += 1u; }
  }
  counts[b] = f32(n);
}

@compute @workgroup_size(WG)
fn poolTimeSumBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let C = pp.channels;
  if (i >= pp.batch * pp.frames * C) { return; }
  let c = i % C;
  let bt = i / C;
  let b = bt / pp.frames;
  let t = bt - b * pp.frames;
  var v = 0.0;
  if (isReal(b, t)) {
    v = gy[b * C + c];
    if (pp.mean == 1u) { v = v / max(frameCounts[b], 1.0); }
  }
  gx[i] = v;
}

@compute @workgroup_size(WG)
fn poolTimeMaxBackward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  let C = pp.channels;
  if (i >= pp.batch * pp.frames * C) { return; }
  let c = i % C;
  let bt = i / C;
  let b = bt / pp.frames;
  let t = bt - b * pp.frames;
  gx[i] = select(0.0, gy[b * C + c], argmaxIn[b * C + c] == i32(t));
}

@compute @workgroup_size(1)
fn layerSoftmax() {
  var m = logits[0];
  for (var l = 1u; l < lp.layers; l++) { m = max(m, logits[l]); }
  var s = 0.0;
  for (var l = 0u; l < lp.layers; l++) { s += exp(logits[l] - m); }
  for (var l = 0u; l < lp.layers; l++) { weights[l] = exp(logits[l] - m) / s; }
}

@compute @workgroup_size(WG)
fn weightedAccumulate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= lp.n) { return; }
  var acc = 0.0;
  if (lp.first == 0u) { acc = y[i]; }
  let l = lp.layer;
  acc += weightsIn[l] * x0[i];
  if (lp.count > 1u) { acc += weightsIn[l + 1u] * x1[i]; }
  if (lp.count > 2u) { acc += weightsIn[l + 2u] * x2[i]; }
  if (lp.count > 3u) { acc += weightsIn[l + 3u] * x3[i]; }
  y[i] = acc;
}

@compute @workgroup_size(WG)
fn scaleByWeight(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < lp.n) { gx[i] = weightsIn[lp.layer] * gy[i]; }
}

@compute @workgroup_size(1)
fn layerSoftmaxBackward() {
  var wd = 0.0;
  for (var l = 0u; l < lp.layers; l++) { wd += weightsIn[l] * dots[l]; }
  for (var l = 0u; l < lp.layers; l++) { glogits[l] = weightsIn[l] * (dots[l] - wd); }
}
