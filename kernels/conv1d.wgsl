// 1-D convolution (PyTorch Conv1d semantics: cross-correlation, zero padding, grouped), forward and backward.
//   x [B, Cin, Tin], w [Cout, Cin/G, K], bias [Cout], y [B, Cout, Tout], Tout = floor((Tin + 2P - K) / S) + 1
//   y[b,co,to]  = bias[co] + sum_{ci<CinG, k<K} w[co,ci,k] * x[b, g*CinG+ci, to*S - P + k]       (g = co / CoutG)
//   dx[b,ci,t]  = sum_{co in group, k} w[co,ci',k] * dy[b,co,(t+P-k)/S]          (only where S divides t+P-k)
//   dw[co,ci,k] = sum_{b,to} dy[b,co,to] * x[b, g*CinG+ci, to*S - P + k]
//   db[co]      = sum_{b,to} dy[b,co,to]
// Register tiling: every thread owns TM channels x TN positions and keeps TM*TN accumulators in registers, so each
// weight it loads feeds TN FMAs (on lavapipe a storage load costs ~5 FMAs, uniform or not). Input values are reused
// through a sliding window: splitting the taps by phase r = k mod S makes consecutive taps k = r + S*j walk the input
// with stride S, so output n's window at tap j+1 is output n+1's window at tap j: one new load per tap for TN
// outputs, whatever the stride. The weight gradient reduces over (b, to) without float atomics: each thread sums a
// chunk of time into a partial buffer [chunks, Cout, CinG, K] and sumPartials adds the chunks (or, with one chunk,
// the thread writes the gradient itself).
alias T = f32;
const WG: u32 = 64u;
const TM: u32 = 8u;
const TN: u32 = 4u;
// kernel size and stride baked in when nonzero (small kernels: the tap loops unroll), else read from p
const KFIX: u32 = 0u;
const SFIX: u32 = 0u;
// weight gradient: input channels per thread
const CI: u32 = 1u;

struct Conv {
  batch: u32, cin: u32, cout: u32, tin: u32, tout: u32,
  ksize: u32, stride: u32, padding: u32, cinG: u32, coutG: u32,
  hasBias: u32,
  // weight gradient: time steps per chunk, tap blocks (ceil(K / TN)), chunk count; sumPartials: elements, count
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

// One thread per (b, channel tile, time tile), time fastest, on a flat 2-D grid. Lanes are packed densely because on
// lavapipe an idle lane costs as much as a busy one, and a uniform load costs as much as a divergent one.
fn threadIndex(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// thread: TM output channels (TM divides CoutG, or G = 1) x TN consecutive output times
@compute @workgroup_size(WG)
fn conv1dForward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = threadIndex(gid, nwg);
  let tTiles = (p.tout + TN - 1u) / TN;
  let cTiles = (p.cout + TM - 1u) / TM;
  if (id >= tTiles * cTiles * p.batch) { return; }
  let t0 = (id % tTiles) * TN;
  let co0 = ((id / tTiles) % cTiles) * TM;
  let b = id / (tTiles * cTiles);
  let S = select(p.stride, SFIX, SFIX > 0u);
  let K = select(p.ksize, KFIX, KFIX > 0u);
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

// Input gradient as a transposed convolution by stride phase: t = q*S + r - P receives taps k = r + S*j from
// dy[q - j]. Thread: TM input channels x TN consecutive q of one phase r; the dy window slides by one per tap.
// (Owning all S phases per thread would share the window between phases, but measured no faster on lavapipe.)
// Thread index: (b, r, input channel tile, q tile), q fastest; TM divides CinG, or G = 1.
@compute @workgroup_size(WG)
fn conv1dBackwardInput(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let S = select(p.stride, SFIX, SFIX > 0u);
  let K = select(p.ksize, KFIX, KFIX > 0u);
  let id = threadIndex(gid, nwg);
  let qmin = p.padding / S;                         // smallest q with t >= 0 in some phase
  let qCount = (p.tin - 1u + p.padding) / S - qmin + 1u;
  let qTiles = (qCount + TN - 1u) / TN;
  let cTiles = (p.cin + TM - 1u) / TM;
  if (id >= qTiles * cTiles * S * p.batch) { return; }
  let q0 = qmin + (id % qTiles) * TN;
  let ci0 = ((id / qTiles) % cTiles) * TM;
  let r = (id / (qTiles * cTiles)) % S;
  let b = id / (qTiles * cTiles * S);
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
      for (var i = 1u; i < TN; i++) { v[TN - i] = v[TN - 1u - i]; } // counting up: the loop unrolls
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
      let t = i32((q0 + n) * S + r) - i32(p.padding);
      if (t >= 0 && t < i32(p.tin)) { dx[xbase + u32(t)] = T(acc[m][n]); }
    }
  }
}

// Weight gradient partial sums. Thread: TM output channels x CI input channels x TN consecutive taps
// k0..k0+TN-1, summed over every batch and the time steps of one chunk. From one time step to the next the taps'
// input window moves by S: with S baked in (SFIX) the overlap is shifted in registers and only min(S, TN) values per
// input channel are loaded; per step a thread loads TM + CI*min(S, TN) values for TM*CI*TN FMAs.
// Thread index: (time chunk, output channel tile, input channel tile, tap block), tap block fastest;
// p.tapBlocks = ceil(K / TN), p.count = number of chunks.
@compute @workgroup_size(WG)
fn conv1dBackwardWeight(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let S = select(p.stride, SFIX, SFIX > 0u);
  let K = select(p.ksize, KFIX, KFIX > 0u);
  let id = threadIndex(gid, nwg);
  let ciTiles = (p.cinG + CI - 1u) / CI;
  let cTiles = (p.cout + TM - 1u) / TM;
  if (id >= p.tapBlocks * ciTiles * cTiles * p.count) { return; }
  let k0 = (id % p.tapBlocks) * TN;
  let ci0 = ((id / p.tapBlocks) % ciTiles) * CI;
  let co0 = ((id / (p.tapBlocks * ciTiles)) % cTiles) * TM;
  let chunk = id / (p.tapBlocks * ciTiles * cTiles);
  let g = co0 / p.coutG;
  let toStart = chunk * p.chunk;
  let toEnd = min(toStart + p.chunk, p.tout);
  var dyrow: array<u32, TM>;
  for (var m = 0u; m < TM; m++) { dyrow[m] = min(co0 + m, p.cout - 1u) * p.tout; }
  var acc: array<array<f32, CI * TN>, TM>;
  for (var b = 0u; b < p.batch; b++) {
    var xbase: array<u32, CI>;
    for (var c = 0u; c < CI; c++) { xbase[c] = (b * p.cin + g * p.cinG + min(ci0 + c, p.cinG - 1u)) * p.tin; }
    let dybase = b * p.cout * p.tout;
    // v[c][i] at time to holds x[to*S - P + k0 + i]; before the loop it holds the window of toStart - 1
    var pos = i32(toStart * S + k0) - i32(S) - i32(p.padding);
    var v: array<array<f32, TN>, CI>;
    for (var c = 0u; c < CI; c++) {
      for (var i = 0u; i < TN; i++) { v[c][i] = loadX(xbase[c], pos + i32(i)); }
    }
    for (var to = toStart; to < toEnd; to++) {
      pos += i32(S);
      for (var c = 0u; c < CI; c++) {
        for (var i = 0u; i < TN; i++) {
          if (SFIX > 0u && i + SFIX < TN) { v[c][i] = v[c][i + SFIX]; } else { v[c][i] = loadX(xbase[c], pos + i32(i)); }
        }
      }
      for (var m = 0u; m < TM; m++) {
        let d = f32(dy[dybase + dyrow[m] + to]);
        for (var c = 0u; c < CI; c++) {
          for (var i = 0u; i < TN; i++) { acc[m][c * TN + i] = fma(d, v[c][i], acc[m][c * TN + i]); }
        }
      }
    }
  }
  let total = p.cout * p.cinG * K;
  for (var m = 0u; m < TM; m++) {
    let co = co0 + m;
    if (co >= p.cout) { break; }
    for (var c = 0u; c < CI; c++) {
      let ci = ci0 + c;
      if (ci >= p.cinG) { break; }
      for (var i = 0u; i < TN; i++) {
        let k = k0 + i;
        if (k < K) { partial[chunk * total + (co * p.cinG + ci) * K + k] = acc[m][c * TN + i]; }
      }
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
  let i = threadIndex(gid, nwg);
  if (i >= p.n) { return; }
  var s = 0.0;
  for (var c = 0u; c < p.count; c++) { s += parts[c * p.n + i]; }
  sum[i] = T(s);
}
