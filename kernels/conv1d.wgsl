// 1-D convolution (PyTorch Conv1d semantics: cross-correlation, zero padding, grouped), forward and backward.
//   x [B, Cin, Tin], w [Cout, Cin/G, K], bias [Cout], y [B, Cout, Tout], Tout = floor((Tin + 2P - K) / S) + 1
//   y[b,co,to]  = bias[co] + sum_{ci<CinG, k<K} w[co,ci,k] * x[b, g*CinG+ci, to*S - P + k]       (g = co / CoutG)
//   dx[b,ci,t]  = sum_{co in group, k} w[co,ci',k] * dy[b,co,(t+P-k)/S]          (only where S divides t+P-k)
//   dw[co,ci,k] = sum_{b,to} dy[b,co,to] * x[b, g*CinG+ci, to*S - P + k]
//   db[co]      = sum_{b,to} dy[b,co,to]
// Three kernel families (src/ops/conv.ts picks one per adapter, as matmul picks its GEMM):
//   direct    conv1dForward / conv1dBackwardInput / conv1dBackwardWeight (+ sumPartials): register-tiled direct
//             convolution, described next; CPU adapters without 8-wide subgroups, small channel counts.
//   tiled     conv1dTiled: implicit GEMM on workgroup-memory tiles (forward and input gradient), for GPUs.
//   subgroup  conv1dSubgroup / conv1dWeightGradSubgroup (after the SUBGROUP KERNEL marker): implicit GEMM on 8-wide
//             subgroups for CPU adapters, reading padded copies made by padRows, weights relaid by relayoutWeights.
// Direct kernels' register tiling: every thread owns TM channels x TN positions and keeps TM*TN accumulators in registers, so each
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

// Weights for the implicit-GEMM kernels, each (row, channel) run of taps padded with zeros to KP (a multiple of 4
// where the subgroup kernel loads its taps 4 at a time), so that every step's weights are one aligned vec4.
//   Forward (p.stride = 0):  wt[co][ci][i] = w[co, ci, i]                        (i < K, else 0), i < KP = p.chunk
//   Input gradient (p.stride = S), every stride phase in one pass: the input gradient of phase r (input times
//   t = q*S + r - P) is a stride-1 convolution of dy with the phase's J_r = ceil((K - r) / S) taps k = r + S*j
//   reversed (a phase with no tap, r >= K, gets J_r = 1 and zeros). Phase r's block, at the sum of the earlier
//   blocks' sizes, holds
//     wt_r[ci][c][i] = w[g*CoutG + c, ci - g*CinG, r + S*(J_r - 1 - i)]   (0 where i >= J_r or that tap is >= K)
//   for input channel ci of group g, c < CoutG, i < KP_r (J_r <= 2: J_r, else J_r rounded up to 4; as
//   src/ops/conv.ts's subgroupStep).
// p.n = elements of wt (forward), p.count = J (forward: K).
@group(0) @binding(10) var<storage, read_write> wt: array<T>;

fn phaseTaps(r: u32) -> u32 { return max(1u, (p.ksize - min(r, p.ksize) + p.stride - 1u) / p.stride); }
fn paddedTaps(J: u32) -> u32 { return select(J, (J + 3u) / 4u * 4u, J > 2u); }

@compute @workgroup_size(WG)
fn relayoutWeights(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = threadIndex(gid, nwg);
  if (p.stride == 0u) {
    // forward: 4 consecutive elements per thread (a quarter of the threads: their index math is most of the cost)
    let KP = p.chunk;
    for (var e = 4u * id; e < min(4u * id + 4u, p.n); e++) {
      let i = e % KP;
      let row = e / KP;  // co * CinG + ci
      wt[e] = select(T(0.0), w[row * p.ksize + min(i, p.ksize - 1u)], i < p.ksize);
    }
    return;
  }
  // input gradient: a transpose. One thread per input channel ci and 4 consecutive output channels c, writing their
  // taps of every phase (a (c, ci)'s K weights are adjacent in w); the WG = 64 threads of a workgroup cover 8 input x
  // 32 output channels, so that they read 32 runs of w and write 8 runs per phase block. (On a CPU adapter the cost
  // is mostly per invocation: 4 channels each, a quarter of the invocations of one per (ci, c).)
  let local = id % 64u;
  let tile = id / 64u;
  let cTiles = (p.coutG + 31u) / 32u;
  let c0 = (tile % cTiles) * 32u + (local % 8u) * 4u;
  let ci = (tile / cTiles) * 8u + local / 8u;
  if (c0 >= p.coutG || ci >= p.cin) { return; }
  let g = ci / p.cinG;
  var off = 0u;
  for (var r = 0u; r < p.stride; r++) {
    let J = phaseTaps(r);
    let KP = paddedTaps(J);
    for (var c = c0; c < min(c0 + 4u, p.coutG); c++) {
      let wrow = ((g * p.coutG + c) * p.cinG + ci - g * p.cinG) * p.ksize;
      for (var i = 0u; i < KP; i++) {
        let k = r + p.stride * (J - 1u - min(i, J - 1u));
        wt[off + (ci * p.coutG + c) * KP + i] = select(T(0.0), w[wrow + min(k, p.ksize - 1u)], i < J && k < p.ksize);
      }
    }
    off += p.cin * p.coutG * KP;
  }
}

// Padded copy for the implicit-GEMM kernels: dst[row, j] = src[row, j - p.padding] for 0 <= j - padding < tin, else 0;
// rows of p.chunk elements (a multiple of 4, so that every row starts 16-byte aligned), p.n = rows * p.chunk. The
// zeros are the convolution's padding and cover every window the kernel reads past the row, so its loads need no
// bounds checks, no masks and no realignment. p.tin = source row length; rows = p.count. One thread writes 4
// consecutive elements (one aligned vec4: a quarter of the threads and stores of a scalar copy).
@group(0) @binding(22) var<storage, read> padSrc: array<T>;
@group(0) @binding(23) var<storage, read_write> padDst: array<vec4<T>>;

@compute @workgroup_size(WG)
fn padRows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = threadIndex(gid, nwg);
  if (q >= p.n / 4u) { return; }
  let row = (4u * q) / p.chunk;
  let j0 = i32((4u * q) % p.chunk) - i32(p.padding);
  let last = i32(p.tin) - 1;
  let base = row * p.tin;
  var v: vec4<T>;
  for (var i = 0; i < 4; i++) {
    let j = j0 + i;
    v[i] = select(T(0.0), padSrc[base + u32(clamp(j, 0, last))], j >= 0 && j <= last);
  }
  padDst[q] = v;
}

// ---- portable implicit GEMM: workgroup-memory tiles (the GPU path), as kernels/matmul.wgsl's matmul_tiled ----
// Y[b, row, col] = bias[row] + sum_{c < inG, j < taps} A(row, c, j) * B(c, j, col), per group g (rows of one group):
//   A(row, c, j) = w[g*wGroupStride + rl*wRowStride + c*wChanStride + tap0 + tapStep*j]   (0 where that tap >= ksize)
//   B(c, j, col) = xin[b, g*inG + c, col*colStride + posOffset + tapDir*j]               (0 outside [0, tin))
// stored at Y[b, row, col*outStride + outOffset]. Forward: A = w, B = x (tapDir 1, posOffset -P). Input gradient,
// per stride phase r: rows = input channels, A = w transposed with taps r + S*j, B = dy (tapDir -1), see conv.ts.
// The contraction index kk = c*taps + j walks A's rows contiguously in the forward; im2col only exists tile by tile
// in workgroup memory.
const TG_M: u32 = 16u;   // threads along rows
const TG_N: u32 = 16u;   // threads along columns
const TT_M: u32 = 4u;    // outputs per thread along rows (ty + TG_M * r)
const TT_N: u32 = 4u;    // outputs per thread along columns (tx + TG_N * c)
const TBK: u32 = 16u;    // contraction slice held in workgroup memory
const TTILE_M: u32 = TG_M * TT_M;
const TTILE_N: u32 = TG_N * TT_N;

struct ConvTiled {
  rows: u32, rowsG: u32, inG: u32, inTotal: u32, tin: u32, cols: u32, taps: u32, ksize: u32,
  colStride: u32, posOffset: i32, tapDir: i32,
  wGroupStride: u32, wRowStride: u32, wChanStride: u32, tap0: u32, tapStep: u32,
  yRowLen: u32, outStride: u32, outOffset: u32, hasBias: u32,
}

@group(0) @binding(24) var<uniform> ct: ConvTiled;
@group(0) @binding(25) var<storage, read> tx: array<T>;
@group(0) @binding(26) var<storage, read> tw: array<T>;
@group(0) @binding(27) var<storage, read> tbias: array<T>;
@group(0) @binding(28) var<storage, read_write> ty: array<T>;

var<workgroup> ctA: array<f32, TBK * TTILE_M>;   // [kk][m]
var<workgroup> ctB: array<f32, TBK * TTILE_N>;   // [kk][n]

fn tiledA(wg0: u32, rl: u32, kk: u32) -> f32 {
  if (rl >= ct.rowsG || kk >= ct.inG * ct.taps) { return 0.0; }
  let c = kk / ct.taps;
  let j = kk % ct.taps;
  let tap = ct.tap0 + ct.tapStep * j;
  if (tap >= ct.ksize) { return 0.0; }
  return f32(tw[wg0 + rl * ct.wRowStride + c * ct.wChanStride + tap]);
}

fn tiledB(xg0: u32, kk: u32, col: u32) -> f32 {
  if (col >= ct.cols || kk >= ct.inG * ct.taps) { return 0.0; }
  let c = kk / ct.taps;
  let j = kk % ct.taps;
  let pos = i32(col * ct.colStride) + ct.posOffset + ct.tapDir * i32(j);
  if (pos < 0 || pos >= i32(ct.tin)) { return 0.0; }
  return f32(tx[xg0 + c * ct.tin + u32(pos)]);
}

@compute @workgroup_size(TG_N, TG_M)
fn conv1dTiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
               @builtin(local_invocation_index) li: u32) {
  let rowTiles = (ct.rowsG + TTILE_M - 1u) / TTILE_M;
  let g = wid.y / rowTiles;
  let m0 = (wid.y % rowTiles) * TTILE_M;
  let n0 = wid.x * TTILE_N;
  let b = wid.z;
  let wg0 = g * ct.wGroupStride;
  let xg0 = (b * ct.inTotal + g * ct.inG) * ct.tin;
  let KK = ct.inG * ct.taps;
  var acc: array<array<f32, TT_N>, TT_M>;
  for (var k0 = 0u; k0 < KK; k0 += TBK) {
    // cooperative loads; consecutive threads walk A's contraction axis (contiguous in the forward) and B's columns
    for (var e = li; e < TBK * TTILE_M; e += TG_M * TG_N) {
      let mm = e / TBK;
      let kk = e % TBK;
      ctA[kk * TTILE_M + mm] = tiledA(wg0, m0 + mm, k0 + kk);
    }
    for (var e = li; e < TBK * TTILE_N; e += TG_M * TG_N) {
      let kk = e / TTILE_N;
      let nn = e % TTILE_N;
      ctB[kk * TTILE_N + nn] = tiledB(xg0, k0 + kk, n0 + nn);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TBK; kk++) {
      var av: array<f32, TT_M>;
      var bv: array<f32, TT_N>;
      for (var r = 0u; r < TT_M; r++) { av[r] = ctA[kk * TTILE_M + lid.y + TG_M * r]; }
      for (var c = 0u; c < TT_N; c++) { bv[c] = ctB[kk * TTILE_N + lid.x + TG_N * c]; }
      for (var r = 0u; r < TT_M; r++) {
        for (var c = 0u; c < TT_N; c++) { acc[r][c] = fma(av[r], bv[c], acc[r][c]); }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < TT_M; r++) {
    let rl = m0 + lid.y + TG_M * r;
    if (rl >= ct.rowsG) { break; }
    let row = g * ct.rowsG + rl;
    let bv = select(0.0, f32(tbias[min(row, arrayLength(&tbias) - 1u)]), ct.hasBias != 0u);
    for (var c = 0u; c < TT_N; c++) {
      let col = n0 + lid.x + TG_N * c;
      let t = col * ct.outStride + ct.outOffset;
      if (col < ct.cols && t < ct.yRowLen) { ty[(b * ct.rows + row) * ct.yRowLen + t] = T(acc[r][c] + bv); }
    }
  }
}

// ==== SUBGROUP KERNEL ====
// Compiled only where the adapter has 'subgroups' (the op wrapper prepends `enable subgroups;` and this part).
//
// conv1dSubgroup: the convolution as an implicit GEMM in the style of kernels/matmul.wgsl's matmul_subgroup (for CPU
// adapters with 8-wide subgroups, where every storage load is a loop over the lanes, so loads, not FMAs, bound the
// speed). GEMM view: rows = output channels (per group), columns = output times, contraction over (input channel,
// tap):   out[b, row, col] = bias[row] + sum_{ci < inG, k < K} w[row, ci, k] * x[b, g*inG + ci, col*S - P + k]
// The input is read from a padded copy xp (padRows: rows of `pitch` elements, a multiple of 4, holding x shifted
// right by the left padding, zeros around), so that x[.., t] = xp[.., t + PL] and every window is in bounds.
// One workgroup = one subgroup of 8 lanes = a tile of 8*RB rows x 32 columns; lane l owns columns col0 = 4l .. +3
// (a vec4 accumulator per row). A step covers CS input channels x KB taps (CS*KB <= 4: K=1: 4x1, K=2: 2x2, K=3: 1x3,
// K >= 4: 1x4 per tap block). Per step each lane loads
//   weights: one vec4 of its own row per 8-row block (the weights are laid out with each channel's taps padded to KP,
//            see relayoutWeights, so the vec4 is aligned), shared with the subgroup by constant-lane shuffles;
//   input:   per channel one window win[i] = xp[col0*S + shift + k0 + i], i < NW = 3S + KB: column j's tap q is
//            win[j*S + q]. No im2col buffer: the window is read as NCH aligned vec4 chunks; the misalignment
//            ASH = shift % 4 is a compile-time constant (columns start at multiples of 4S, rows 16-byte aligned).
// Per step: RB + CS*NCH loads for 32*RB*CS*KB vec4 FMAs (K=3, S=2: 7 loads for 3 taps; the GEMM: 8 for 4).
// The step's loop body is kept as small as the GEMM's: the shader compiler only keeps the accumulators in registers
// when every index is constant after unrolling, and it declines to unroll big bodies (measured: 4 channels x 3 taps
// per step ran at half the speed). Realigning windows at run time with selects cost a quarter of the speed: hence
// the padded copy.
// The same kernel computes the input gradient, one dispatch per stride phase: x = padded dy, w = the phase's relaid
// weights (or, for stride 1 and K % 4 == 0, w itself read transposed with the taps reversed), S = 1, outputs stored
// at time col*outStride + outOffset (see src/ops/conv.ts).

const SG: u32 = 8u;
const RB: u32 = 4u;          // 8-row blocks per tile (1..4)
const KB: u32 = 3u;          // taps per step
const CS: u32 = 1u;          // input channels per step
const SS: u32 = 2u;          // stride
const NW: u32 = 9u;          // window length 3*SS + KB
const ASH: u32 = 0u;         // window misalignment: shift % 4
const NCH: u32 = 3u;         // vec4 chunks per window: ceil((NW + ASH) / 4)
const VEC_W: bool = false;   // weight rows (and so every step) start 16-byte aligned
const MASK_W: bool = true;   // a step can run past the channels (inG % CS != 0): zero those weights and inputs
// weights read in reverse tap order (the stride-1 input gradient straight from w: no relayout; needs KB = 4)
const REVERSE: bool = false;
const ONE_TAP_BLOCK: bool = false;   // cg.tapBlocks == 1

struct ConvGemm {
  rows: u32, rowsG: u32, inG: u32, inTotal: u32, pitch: u32, cols: u32, ksize: u32, shift: u32,
  // weight (row rl of group g, channel c, tap k) at wBase + g*wGroupStride + rl*wRowStride + c*wChanStride + k
  // (REVERSE: tap kpad - 1 - k)
  wGroupStride: u32, wRowStride: u32, wChanStride: u32, wBase: u32,
  yRowLen: u32, outStride: u32, outOffset: u32, hasBias: u32, tapBlocks: u32, kpad: u32, wLen: u32,
}

@group(0) @binding(11) var<uniform> cg: ConvGemm;
@group(0) @binding(12) var<storage, read> xv: array<vec4<T>>;
@group(0) @binding(14) var<storage, read> wv: array<vec4<T>>;
@group(0) @binding(15) var<storage, read> ws: array<T>;
@group(0) @binding(16) var<storage, read> cbias: array<T>;
@group(0) @binding(17) var<storage, read_write> cy: array<T>;

// win[i] = xp[at + i] for a 16-byte aligned `at` - ASH
fn loadWindow(at: u32) -> array<f32, NW> {
  let c0 = (at - ASH) / 4u;
  var f: array<f32, NCH * 4u>;
  for (var c = 0u; c < NCH; c++) {
    let v = vec4f(xv[c0 + c]);
    f[4u * c] = v.x;
    f[4u * c + 1u] = v.y;
    f[4u * c + 2u] = v.z;
    f[4u * c + 3u] = v.w;
  }
  var win: array<f32, NW>;
  for (var i = 0u; i < NW; i++) { win[i] = f[i + ASH]; }
  return win;
}

// the step's weights of one row (element offset `at`): e = c*KB + q for channel ci0 + c, tap k0 + q. Lanes
// e >= CS*KB are never used (their FMAs are compiled out); taps past K are zeros in the relaid layouts.
fn loadWeights(at: u32, ci0: u32) -> vec4f {
  var v: vec4f;
  if (VEC_W) {
    // only a step past the channels (MASK_W) can address past the weights
    v = vec4f(wv[select(at / 4u, min(at / 4u, cg.wLen / 4u - 1u), MASK_W)]);
    if (REVERSE) { v = v.wzyx; }
  } else {
    let last = cg.wLen - 1u;
    v = vec4f(f32(ws[min(at, last)]), f32(ws[min(at + 1u, last)]), f32(ws[min(at + 2u, last)]), f32(ws[min(at + 3u, last)]));
  }
  if (MASK_W) {
    for (var e = 0u; e < 4u; e++) {
      if (ci0 + e / KB >= cg.inG) { v[e] = 0.0; }
    }
  }
  return v;
}

fn bcastConv(v: f32, lane: u32) -> f32 { return subgroupShuffle(v, lane); }

// B values of the step: bs[e] = this lane's 4 columns at (channel c, tap q), e = c*KB + q (zero for e >= CS*KB)
struct ConvB { x: vec4f, y: vec4f, z: vec4f, w: vec4f }

fn accumulateConv(acc: ptr<function, array<vec4f, 8>>, wl: vec4f, bs: ConvB) {
  for (var r = 0u; r < 8u; r++) {
    var a = fma(vec4f(bcastConv(wl.x, r)), bs.x, (*acc)[r]);
    if (CS * KB > 1u) { a = fma(vec4f(bcastConv(wl.y, r)), bs.y, a); }
    if (CS * KB > 2u) { a = fma(vec4f(bcastConv(wl.z, r)), bs.z, a); }
    if (CS * KB > 3u) { a = fma(vec4f(bcastConv(wl.w, r)), bs.w, a); }
    (*acc)[r] = a;
  }
}

fn storeConv(tile: array<vec4f, 8>, b: u32, g: u32, rowLocal0: u32, col0: u32) {
  for (var r = 0u; r < 8u; r++) {
    let rl = rowLocal0 + r;
    if (rl >= cg.rowsG) { break; }
    let row = g * cg.rowsG + rl;
    let bv = select(0.0, f32(cbias[min(row, arrayLength(&cbias) - 1u)]), cg.hasBias != 0u);
    let ybase = (b * cg.rows + row) * cg.yRowLen;
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + j;
      let t = col * cg.outStride + cg.outOffset;
      if (col < cg.cols && t < cg.yRowLen) { cy[ybase + t] = T(tile[r][j] + bv); }
    }
  }
}

struct ConvAcc { b0: array<vec4f, 8>, b1: array<vec4f, 8>, b2: array<vec4f, 8>, b3: array<vec4f, 8> }

fn convStep(acc: ptr<function, ConvAcc>, wrow: vec4u, xb: u32, pos0: u32, ci0: u32, k0: u32) {
  // all loads first, then the FMAs
  let at = ci0 * cg.wChanStride + select(k0, cg.kpad - 4u - k0, REVERSE);
  let w0 = loadWeights(wrow.x + at, ci0);
  var w1 = vec4f(0.0);
  var w2 = vec4f(0.0);
  var w3 = vec4f(0.0);
  if (RB > 1u) { w1 = loadWeights(wrow.y + at, ci0); }
  if (RB > 2u) { w2 = loadWeights(wrow.z + at, ci0); }
  if (RB > 3u) { w3 = loadWeights(wrow.w + at, ci0); }
  var b: array<vec4f, 4>;
  for (var c = 0u; c < CS; c++) {
    let ci = select(ci0 + c, min(ci0 + c, cg.inG - 1u), MASK_W);
    let win = loadWindow(xb + ci * cg.pitch + pos0 + k0);
    for (var q = 0u; q < KB; q++) {
      b[c * KB + q] = vec4f(win[q], win[SS + q], win[2u * SS + q], win[3u * SS + q]);
    }
  }
  let bs = ConvB(b[0], b[1], b[2], b[3]);
  accumulateConv(&(*acc).b0, w0, bs);
  if (RB > 1u) { accumulateConv(&(*acc).b1, w1, bs); }
  if (RB > 2u) { accumulateConv(&(*acc).b2, w2, bs); }
  if (RB > 3u) { accumulateConv(&(*acc).b3, w3, bs); }
}

@compute @workgroup_size(SG)
fn conv1dSubgroup(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let rowTiles = (cg.rowsG + 8u * RB - 1u) / (8u * RB);
  // row tiles fastest: consecutive workgroups share the input windows and stream the weights
  let g = wid.x / rowTiles;
  let rl0 = (wid.x % rowTiles) * 8u * RB;
  let col0 = wid.y * 32u + 4u * lane;
  let b = wid.z;
  // this lane's weight row in each block (clamped: rows past the group are computed and not stored)
  let rowsLast = cg.rowsG - 1u;
  let wrow = cg.wBase + g * cg.wGroupStride + cg.wRowStride * min(vec4u(rl0 + lane) + vec4u(0u, 8u, 16u, 24u), vec4u(rowsLast));
  let xb = (b * cg.inTotal + g * cg.inG) * cg.pitch;
  let pos0 = col0 * SS + cg.shift;
  var acc: ConvAcc;
  for (var ci0 = 0u; ci0 < cg.inG; ci0 += CS) {
    // one tap block (K <= 4, every 512-channel layer): no inner loop around the step
    if (ONE_TAP_BLOCK) {
      convStep(&acc, wrow, xb, pos0, ci0, 0u);
    } else {
      for (var tb = 0u; tb < cg.tapBlocks; tb++) { convStep(&acc, wrow, xb, pos0, ci0, tb * KB); }
    }
  }
  storeConv(acc.b0, b, g, rl0, col0);
  if (RB > 1u) { storeConv(acc.b1, b, g, rl0 + 8u, col0); }
  if (RB > 2u) { storeConv(acc.b2, b, g, rl0 + 16u, col0); }
  if (RB > 3u) { storeConv(acc.b3, b, g, rl0 + 24u, col0); }
}

// conv1dWeightGradSubgroup: the weight gradient as an implicit GEMM on the same scheme.
//   dw[co, ci, k] = sum_{b, to} dy[b, co, to] * x[b, g*CinG + ci, to*S - P + k]
// GEMM view per group: rows = output channels, columns = (input channel, tap) with the taps padded to KP (as the
// forward's weight layout), contraction over (b, to) in steps of WT (4 or 8, tuned) time steps. Lane l owns 4
// columns: CS channels x KB taps (K <= 2: 4/K channels; else one channel, taps k0 .. k0+3). Reads padded copies: xp
// as the forward's (x[.., t] = xp[.., t + P]), dyp with rows of wg.dyPitch (a multiple of 8) and zeros past Tout.
// Per step each lane loads
//   dy: its own row of each 8-row block, WT consecutive values (WT/4 aligned vec4), shared by constant-lane shuffles;
//   x:  per channel one window xp[to*S + k0 + i], i < WNW = (WT-1)S + KB: time step l, tap q is win[l*S + q].
// Per step: RB*WT/4 + CS*WNCH loads for 8*WT*RB vec4 FMAs (WT=8, K=3, S=2: 13 loads for 256; the GEMM: 16 for 256).
// The batch and time loops are one flat loop (see below).
// The whole contraction runs in one workgroup (no split over time): the gradient has Cout*CinG*K elements, enough
// workgroups for a CPU adapter.
const WT: u32 = 8u;          // time steps per step: 4 or 8
const WNW: u32 = 18u;        // x window: (WT - 1)*SS + KB
const WNCH: u32 = 5u;        // its vec4 chunks: ceil(WNW / 4)
const WCOLS: u32 = 4u;       // columns per lane that are real taps: 3 for K = 3 (taps padded to 4), else 4

struct ConvWGrad {
  rows: u32, rowsG: u32, inG: u32, inTotal: u32, pitch: u32, tout: u32, dyPitch: u32, batch: u32, ksize: u32, kpad: u32,
}

@group(0) @binding(18) var<uniform> wg: ConvWGrad;
@group(0) @binding(19) var<storage, read> dyv: array<vec4<T>>;
@group(0) @binding(21) var<storage, read_write> dwOut: array<T>;

// win[i] = xp[at + i], `at` 16-byte aligned
fn loadWindowW(at: u32) -> array<f32, WNW> {
  let c0 = at / 4u;
  var f: array<f32, WNCH * 4u>;
  for (var c = 0u; c < WNCH; c++) {
    let v = vec4f(xv[c0 + c]);
    f[4u * c] = v.x;
    f[4u * c + 1u] = v.y;
    f[4u * c + 2u] = v.z;
    f[4u * c + 3u] = v.w;
  }
  var win: array<f32, WNW>;
  for (var i = 0u; i < WNW; i++) { win[i] = f[i]; }
  return win;
}

struct Dy8 { lo: vec4f, hi: vec4f }
// WT consecutive dy values from an aligned `at` (hi only when WT = 8)
fn loadDyStep(at: u32) -> Dy8 {
  var d = Dy8(vec4f(dyv[at / 4u]), vec4f(0.0));
  if (WT == 8u) { d.hi = vec4f(dyv[at / 4u + 1u]); }
  return d;
}

// x values of this lane's 4 columns at 4 time steps
struct WB { x: vec4f, y: vec4f, z: vec4f, w: vec4f }

fn accumulateW(acc: ptr<function, array<vec4f, 8>>, d: vec4f, bs: WB) {
  for (var r = 0u; r < 8u; r++) {
    var a = fma(vec4f(bcastConv(d.x, r)), bs.x, (*acc)[r]);
    a = fma(vec4f(bcastConv(d.y, r)), bs.y, a);
    a = fma(vec4f(bcastConv(d.z, r)), bs.z, a);
    a = fma(vec4f(bcastConv(d.w, r)), bs.w, a);
    // a lane's 4th column is a padding tap (K = 3): a constant zero lets the compiler drop its FMAs (a quarter)
    if (WCOLS == 3u) { a.w = 0.0; }
    (*acc)[r] = a;
  }
}

fn storeW(tile: array<vec4f, 8>, g: u32, rowLocal0: u32, ci0: u32, k0: u32) {
  for (var r = 0u; r < 8u; r++) {
    let rl = rowLocal0 + r;
    if (rl >= wg.rowsG) { break; }
    let co = g * wg.rowsG + rl;
    for (var e = 0u; e < 4u; e++) {
      let ci = ci0 + e / KB;
      let k = k0 + e % KB;
      if (ci < wg.inG && k < wg.ksize) { dwOut[(co * wg.inG + ci) * wg.ksize + k] = T(tile[r][e]); }
    }
  }
}

@compute @workgroup_size(SG)
fn conv1dWeightGradSubgroup(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let rowTiles = (wg.rowsG + 8u * RB - 1u) / (8u * RB);
  let g = wid.x / rowTiles;
  let rl0 = (wid.x % rowTiles) * 8u * RB;
  // this lane's 4 columns: channels ci0 .. ci0+CS-1 (clamped; the extra ones are not stored), taps k0 .. k0+KB-1
  let n0 = wid.y * 32u + 4u * lane;
  let ci0 = n0 / wg.kpad;
  let k0 = n0 % wg.kpad;
  let rowsLast = wg.rowsG - 1u;
  let rows = g * wg.rowsG + min(vec4u(rl0 + lane) + vec4u(0u, 8u, 16u, 24u), vec4u(rowsLast));
  var acc: ConvAcc;
  // one flat loop over (batch, WT-step block): a loop nest around the step keeps the compiler from holding the
  // accumulators in registers (measured on lavapipe: the forward's 1-trip inner loop cost a third of its speed)
  let blocks = (wg.tout + WT - 1u) / WT;
  for (var s = 0u; s < wg.batch * blocks; s++) {
    let b = s / blocks;
    let to = (s - b * blocks) * WT;
    let dyrow = (b * wg.rows + rows) * wg.dyPitch;
    let xb = (b * wg.inTotal + g * wg.inG) * wg.pitch;
    // all loads first, then the FMAs
    let d0 = loadDyStep(dyrow.x + to);
    var d1: Dy8;
    var d2: Dy8;
    var d3: Dy8;
    if (RB > 1u) { d1 = loadDyStep(dyrow.y + to); }
    if (RB > 2u) { d2 = loadDyStep(dyrow.z + to); }
    if (RB > 3u) { d3 = loadDyStep(dyrow.w + to); }
    var bl: array<vec4f, 8>;
    for (var c = 0u; c < CS; c++) {
      let ci = min(ci0 + c, wg.inG - 1u);
      let win = loadWindowW(xb + ci * wg.pitch + to * SS + k0);
      for (var l = 0u; l < WT; l++) {
        for (var q = 0u; q < KB; q++) { bl[l][c * KB + q] = win[l * SS + q]; }
      }
    }
    let lo = WB(bl[0], bl[1], bl[2], bl[3]);
    let hi = WB(bl[4], bl[5], bl[6], bl[7]);
    accumulateW(&acc.b0, d0.lo, lo);
    if (RB > 1u) { accumulateW(&acc.b1, d1.lo, lo); }
    if (RB > 2u) { accumulateW(&acc.b2, d2.lo, lo); }
    if (RB > 3u) { accumulateW(&acc.b3, d3.lo, lo); }
    if (WT == 8u) {
      accumulateW(&acc.b0, d0.hi, hi);
      if (RB > 1u) { accumulateW(&acc.b1, d1.hi, hi); }
      if (RB > 2u) { accumulateW(&acc.b2, d2.hi, hi); }
      if (RB > 3u) { accumulateW(&acc.b3, d3.hi, hi); }
    }
  }
  storeW(acc.b0, g, rl0, ci0, k0);
  if (RB > 1u) { storeW(acc.b1, g, rl0 + 8u, ci0, k0); }
  if (RB > 2u) { storeW(acc.b2, g, rl0 + 16u, ci0, k0); }
  if (RB > 3u) { storeW(acc.b3, g, rl0 + 24u, ci0, k0); }
}
