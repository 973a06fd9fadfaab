// 1-D convolution (PyTorch Conv1d semantics: cross-correlation, zero padding, grouped), forward and backward.
//   x [B, Cin, Tin], w [Cout, Cin/G, K], bias [Cout], y [B, Cout, Tout], Tout = floor((Tin + 2P - K) / S) + 1
//   y[b,co,to]  = bias[co] + sum_{ci<CinG, k<K} w[co,ci,k] * x[b, g*CinG+ci, to*S - P + k]       (g = co / CoutG)
//   dx[b,ci,t]  = sum_{co in group, k} w[co,ci',k] * dy[b,co,(t+P-k)/S]          (only where S divides t+P-k)
//   dw[co,ci,k] = sum_{b,to} dy[b,co,to] * x[b, g*CinG+ci, to*S - P + k]
//   db[co]      = sum_{b,to} dy[b,co,to]
// Register tiling: every thread owns TM channels x TN positions. The TM weights a step needs are the same for the
// whole workgroup (uniform loads: one scalar load + broadcast on lavapipe), and the input values are reused through a
// sliding window. Splitting the taps by phase r = k mod S makes consecutive taps k = r + S*j walk the input with
// stride S, so the window of output n at tap j+1 is the window of output n+1 at tap j: one new load per tap for TN
// outputs, whatever the stride. The weight gradient reduces over (b, to) without float atomics: each thread sums a
// chunk of time into a partial buffer [chunks, Cout, CinG, K] and sumPartials adds the chunks.
alias T = f32;
const WG: u32 = 64u;
const TM: u32 = 8u;
const TN: u32 = 4u;

struct Conv {
  batch: u32, cin: u32, cout: u32, tin: u32, tout: u32,
  ksize: u32, stride: u32, padding: u32, cinG: u32, coutG: u32,
  hasBias: u32,
  // weight gradient: time steps per chunk, taps blocks per (ci, phase); sumPartials: elements and chunk count
  chunk: u32, tapBlocks: u32, n: u32, count: u32,
}

@group(0) @binding(0) var<uniform> p: Conv;
@group(0) @binding(1) var<storage, read> x: array<T>;
@group(0) @binding(2) var<storage, read> w: array<T>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read> dy: array<T>;
@group(0) @binding(6) var<storage, read_write> dx: array<T>;
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;
@group(0) @binding(8) var<storage, read> parts: array<f32>;
@group(0) @binding(9) var<storage, read_write> sum: array<T>;

// zero padding outside [0, Tin); the clamp keeps the address in bounds (robustness may be off)
fn loadX(base: u32, pos: i32) -> f32 {
  let last = i32(p.tin) - 1;
  return select(0.0, f32(x[base + u32(clamp(pos, 0, last))]), pos >= 0 && pos <= last);
}

fn loadDy(base: u32, pos: i32) -> f32 {
  let last = i32(p.tout) - 1;
  return select(0.0, f32(dy[base + u32(clamp(pos, 0, last))]), pos >= 0 && pos <= last);
}

// grid: x = blocks of WG*TN output times, y = blocks of TM output channels (TM divides CoutG, or G = 1), z = batch
@compute @workgroup_size(WG)
fn conv1dForward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let co0 = wid.y * TM;
  let t0 = (wid.x * WG + lid) * TN;
  if (t0 >= p.tout) { return; }
  let S = p.stride;
  let K = p.ksize;
  let g = co0 / p.coutG;
  var wrow: array<u32, TM>;
  for (var m = 0u; m < TM; m++) { wrow[m] = min(co0 + m, p.cout - 1u) * p.cinG * K; }
  var acc: array<array<f32, TN>, TM>;
  for (var ci = 0u; ci < p.cinG; ci++) {
    let xbase = (b * p.cin + g * p.cinG + ci) * p.tin;
    for (var r = 0u; r < min(S, K); r++) {
      // window before tap j = 0: v[n] holds output n-1's input
      var v: array<f32, TN>;
      var pos = i32(t0 * S + r) - i32(p.padding);
      for (var n = 1u; n < TN; n++) { v[n] = loadX(xbase, pos); pos += i32(S); }
      for (var k = r; k < K; k += S) {
        for (var n = 0u; n + 1u < TN; n++) { v[n] = v[n + 1u]; }
        v[TN - 1u] = loadX(xbase, pos);
        pos += i32(S);
        let wk = ci * K + k;
        for (var m = 0u; m < TM; m++) {
          let wv = f32(w[wrow[m] + wk]);
          for (var n = 0u; n < TN; n++) { acc[m][n] = fma(wv, v[n], acc[m][n]); }
        }
      }
    }
  }
  for (var m = 0u; m < TM; m++) {
    let co = co0 + m;
    if (co >= p.cout) { break; }
    let bv = select(0.0, f32(bias[co]), p.hasBias != 0u); // without bias, w is bound here
    let ybase = (b * p.cout + co) * p.tout;
    for (var n = 0u; n < TN; n++) {
      if (t0 + n < p.tout) { y[ybase + t0 + n] = T(acc[m][n] + bv); }
    }
  }
}

// Input gradient as a transposed convolution, one stride phase at a time: t = q*S + r - P receives taps
// k = r + S*j from dy[q - j]. Thread: TM input channels x TN consecutive q of one phase.
// grid: x = blocks of WG*TN values of q, y = blocks of TM input channels (TM divides CinG, or G = 1), z = b*S + r
@compute @workgroup_size(WG)
fn conv1dBackwardInput(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let S = p.stride;
  let K = p.ksize;
  let b = wid.z / S;
  let r = wid.z % S;
  let qlo = (p.padding + S - 1u - r) / S; // first q with t >= 0
  let q0 = qlo + (wid.x * WG + lid) * TN;
  let t0 = i32(q0 * S + r) - i32(p.padding);
  if (t0 >= i32(p.tin)) { return; }
  let ci0 = wid.y * TM;
  let g = ci0 / p.cinG;
  let cig0 = ci0 - g * p.cinG;
  var wcol: array<u32, TM>;
  for (var m = 0u; m < TM; m++) { wcol[m] = min(cig0 + m, p.cinG - 1u) * K; }
  var acc: array<array<f32, TN>, TM>;
  for (var c = 0u; c < p.coutG; c++) {
    let co = g * p.coutG + c;
    let dybase = (b * p.cout + co) * p.tout;
    let wbase = co * p.cinG * K;
    // window before tap j = 0: v[n] holds dy[q0 + n + 1]
    var v: array<f32, TN>;
    for (var n = 0u; n + 1u < TN; n++) { v[n] = loadDy(dybase, i32(q0 + n + 1u)); }
    var pos = i32(q0);
    for (var k = r; k < K; k += S) {
      for (var n = TN - 1u; n > 0u; n--) { v[n] = v[n - 1u]; }
      v[0] = loadDy(dybase, pos);
      pos -= 1;
      for (var m = 0u; m < TM; m++) {
        let wv = f32(w[wbase + wcol[m] + k]);
        for (var n = 0u; n < TN; n++) { acc[m][n] = fma(wv, v[n], acc[m][n]); }
      }
    }
  }
  for (var m = 0u; m < TM; m++) {
    let ci = ci0 + m;
    if (ci >= p.cin) { break; }
    let xbase = (b * p.cin + ci) * p.tin;
    for (var n = 0u; n < TN; n++) {
      let t = t0 + i32(n * S);
      if (t < i32(p.tin)) { dx[xbase + u32(t)] = T(acc[m][n]); }
    }
  }
}

// Weight gradient partial sums. Thread: TM output channels x TN taps k = r + S*(jb*TN + n) of one input channel,
// summed over every batch and the time steps of chunk z. Consecutive time steps slide the taps' window by one.
// grid: x = blocks of WG lanes over (ci, r, jb), y = blocks of TM output channels, z = time chunks
@compute @workgroup_size(WG)
fn conv1dBackwardWeight(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let S = p.stride;
  let K = p.ksize;
  let lane = wid.x * WG + lid;
  let perCi = S * p.tapBlocks;
  let ci = lane / perCi;
  let r = (lane % perCi) / p.tapBlocks;
  let jb = lane % p.tapBlocks;
  if (ci >= p.cinG || r >= K) { return; }
  let co0 = wid.y * TM;
  let g = co0 / p.coutG;
  let toStart = wid.z * p.chunk;
  let toEnd = min(toStart + p.chunk, p.tout);
  var dyrow: array<u32, TM>;
  for (var m = 0u; m < TM; m++) { dyrow[m] = min(co0 + m, p.cout - 1u) * p.tout; }
  let j0 = jb * TN;
  var acc: array<array<f32, TN>, TM>;
  for (var b = 0u; b < p.batch; b++) {
    let xbase = (b * p.cin + g * p.cinG + ci) * p.tin;
    let dybase = b * p.cout * p.tout;
    // v[n] at time to holds x[(to + j0 + n)*S + r - P]; before toStart it holds the window of toStart - 1
    let p0 = i32((toStart + j0) * S + r) - i32(S) - i32(p.padding);
    var v: array<f32, TN>;
    for (var n = 1u; n < TN; n++) { v[n] = loadX(xbase, p0 + i32(n * S)); }
    var pos = p0 + i32(TN * S);
    for (var to = toStart; to < toEnd; to++) {
      for (var n = 0u; n + 1u < TN; n++) { v[n] = v[n + 1u]; }
      v[TN - 1u] = loadX(xbase, pos);
      pos += i32(S);
      for (var m = 0u; m < TM; m++) {
        let d = f32(dy[dybase + dyrow[m] + to]);
        for (var n = 0u; n < TN; n++) { acc[m][n] = fma(d, v[n], acc[m][n]); }
      }
    }
  }
  let total = p.cout * p.cinG * K;
  for (var m = 0u; m < TM; m++) {
    let co = co0 + m;
    if (co >= p.cout) { break; }
    for (var n = 0u; n < TN; n++) {
      let k = r + S * (j0 + n);
      if (k < K) { partial[wid.z * total + (co * p.cinG + ci) * K + k] = acc[m][n]; }
    }
  }
}

var<workgroup> red: array<f32, WG>;

// Bias gradient: one workgroup per output channel sums dy over (b, to), tree reduction in workgroup memory.
@compute @workgroup_size(WG)
fn conv1dBackwardBias(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let co = wid.x;
  var s = 0.0;
  for (var b = 0u; b < p.batch; b++) {
    let base = (b * p.cout + co) * p.tout;
    for (var t = lid; t < p.tout; t += WG) { s += f32(dy[base + t]); }
  }
  red[lid] = s;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h /= 2u) {
    if (lid < h) { red[lid] += red[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { sum[co] = T(red[0]); }
}

// sum[i] = sum_{c < count} parts[c*n + i]: adds the weight gradient's time chunks.
@compute @workgroup_size(WG)
fn sumPartials(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.count; c++) { s += parts[c * p.n + i]; }
  sum[i] = T(s);
}
