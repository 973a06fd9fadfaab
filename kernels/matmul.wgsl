// Matrix multiply family: Y = act(op(A) op(B) + bias), batched, plus the small kernels its backward needs.
//
// Layout (row-major, per batch b = workgroup_id.z; strideA / strideB are elements per batch, 0 = shared operand):
//   op(A) is M x K: A is stored [M, K], or [K, M] when TRANS_A.
//   op(B) is K x N: B is stored [K, N], or [N, K] when TRANS_B (nn.Linear weight layout).
//   Y and PRE are [batch, M, N]; bias is [N].
// Math: z[m, n] = sum_k op(A)[m, k] op(B)[k, n] (+ bias[n]);  y = act(z) with act = none | gelu (exact erf) | tanh.
//   PRE receives z when SAVE_PRE (gelu backward needs z; tanh backward uses y itself: tanh' = 1 - y^2).
// Storage type T is f32 or f16 (shader-f16); all arithmetic and accumulation is f32.
//
// Two GEMM strategies share the epilogue:
//   matmul_tiled      portable: workgroup-memory tiles (TILE_M x TILE_N outputs, BK-deep K slices), each thread a
//                     TPT_M x TPT_N register tile. What real GPUs want; needs no optional feature.
//   matmul_subgroup   CPU adapters (lavapipe): below the SUBGROUP KERNEL marker, compiled with `enable subgroups;`.
// The backward helpers (activation_backward[4], bias_grad, sum_batches) are 1-D elementwise/reduction kernels.

alias T = f32;
// Element type of the a / b bindings: vec4<T> lets the subgroup kernel load 4 values per lane at once (only when the
// operand's rows are a multiple of 4 elements, so every 4-aligned element index is a vec4 index); otherwise T.
alias VA = T;
alias VB = T;
const VEC_A: bool = false;
const VEC_B: bool = false;
const TRANS_A: bool = false;
const TRANS_B: bool = false;
const HAS_BIAS: bool = false;
// K % 4 != 0: the subgroup kernel needs its masked last k-step (compiled only then: it doubles the kernel's size)
const K_TAIL: bool = true;
const SAVE_PRE: bool = false;
// 0 none, 1 gelu (exact erf), 2 tanh
const ACT: u32 = 0u;

// mBase (subgroup kernel): rows before this dispatch's first tile (a GEMM whose M is not a multiple of the tile runs its
// last rows as a second dispatch with fewer row blocks, instead of computing up to 8*RB - 1 rows for nothing)
struct Dims { M: u32, N: u32, K: u32, strideA: u32, strideB: u32, mBase: u32 }

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<VA>;
@group(0) @binding(2) var<storage, read> b: array<VB>;
@group(0) @binding(3) var<storage, read> bias: array<T>;
@group(0) @binding(4) var<storage, read_write> y: array<T>;
@group(0) @binding(5) var<storage, read_write> pre: array<T>;

// ---- scalar and 4-wide loads that type-check for both VA = T and VA = vec4<T> (the unused form is const-folded) ----

fn loadA(e: u32) -> f32 { return f32(vec4<T>(a[e]).x); }
fn loadB(e: u32) -> f32 { return f32(vec4<T>(b[e]).x); }

// a[e .. e+3]; with VEC_A, e must be a multiple of 4
fn loadA4(e: u32) -> vec4f {
  if (VEC_A) { return vec4f(vec4<T>(a[e / 4u])); }
  return vec4f(loadA(e), loadA(e + 1u), loadA(e + 2u), loadA(e + 3u));
}
fn loadB4(e: u32) -> vec4f {
  if (VEC_B) { return vec4f(vec4<T>(b[e / 4u])); }
  return vec4f(loadB(e), loadB(e + 1u), loadB(e + 2u), loadB(e + 3u));
}

// ---- activations ----

const SQRT1_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

// erfc(x) for x >= 0 with relative error < 1.2e-7 (Numerical Recipes' Chebyshev fit), so that the normal CDF keeps
// full relative precision in the lower tail instead of computing 1 + erf(x) by cancellation.
fn erfcPos(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * x);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
          t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(p - x * x);
}

// standard normal CDF
fn normalCdf(z: f32) -> f32 {
  let c = 0.5 * erfcPos(abs(z) * SQRT1_2);
  return select(1.0 - c, c, z < 0.0);
}

fn activate(z: f32) -> f32 {
  if (ACT == 1u) { return z * normalCdf(z); }
  if (ACT == 2u) { return tanh(clamp(z, -15.0, 15.0)); }
  return z;
}

// d act / dz, from z (gelu) or from the output y (tanh)
fn activateGrad(v: f32) -> f32 {
  if (ACT == 1u) { return normalCdf(v) + v * INV_SQRT_2PI * exp(-0.5 * v * v); }
  if (ACT == 2u) { return 1.0 - v * v; }
  return 1.0;
}

// Adds the bias, applies the activation and stores one output element (m < M, n < N checked by the caller).
fn epilogue(yoff: u32, m: u32, n: u32, acc: f32) {
  var z = acc;
  if (HAS_BIAS) { z += f32(bias[n]); }
  let i = yoff + m * dims.N + n;
  y[i] = T(activate(z));
  if (SAVE_PRE) { pre[i] = T(z); }
}

// element (m, k) of op(A) and (k, n) of op(B) for batch offsets aoff / boff, or 0 outside the matrix
fn elemA(aoff: u32, m: u32, k: u32) -> f32 {
  if (m >= dims.M || k >= dims.K) { return 0.0; }
  if (TRANS_A) { return loadA(aoff + k * dims.M + m); }
  return loadA(aoff + m * dims.K + k);
}
fn elemB(boff: u32, k: u32, n: u32) -> f32 {
  if (k >= dims.K || n >= dims.N) { return 0.0; }
  if (TRANS_B) { return loadB(boff + n * dims.K + k); }
  return loadB(boff + k * dims.N + n);
}

// ---- portable kernel: workgroup-memory tiles ----

const WG_M: u32 = 16u;   // threads along M
const WG_N: u32 = 16u;   // threads along N
const TPT_M: u32 = 4u;   // outputs per thread along M (rows ty + WG_M * r)
const TPT_N: u32 = 4u;   // outputs per thread along N (cols tx + WG_N * c)
const BK: u32 = 16u;     // K slice held in workgroup memory
const TILE_M: u32 = WG_M * TPT_M;
const TILE_N: u32 = WG_N * TPT_N;
const THREADS: u32 = WG_M * WG_N;

var<workgroup> tileA: array<f32, BK * TILE_M>;   // [k][m]
var<workgroup> tileB: array<f32, BK * TILE_N>;   // [k][n]

@compute @workgroup_size(WG_N, WG_M)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
                @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * TILE_M;
  let n0 = wid.x * TILE_N;
  let aoff = wid.z * dims.strideA;
  let boff = wid.z * dims.strideB;
  var acc: array<array<f32, TPT_N>, TPT_M>;
  for (var k0 = 0u; k0 < dims.K; k0 += BK) {
    // cooperative loads; consecutive threads walk the operand's contiguous axis
    for (var e = li; e < BK * TILE_M; e += THREADS) {
      var kk: u32; var mm: u32;
      if (TRANS_A) { kk = e / TILE_M; mm = e % TILE_M; } else { mm = e / BK; kk = e % BK; }
      tileA[kk * TILE_M + mm] = elemA(aoff, m0 + mm, k0 + kk);
    }
    for (var e = li; e < BK * TILE_N; e += THREADS) {
      var kk: u32; var nn: u32;
      if (TRANS_B) { nn = e / BK; kk = e % BK; } else { kk = e / TILE_N; nn = e % TILE_N; }
      tileB[kk * TILE_N + nn] = elemB(boff, k0 + kk, n0 + nn);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, TPT_M>;
      var bv: array<f32, TPT_N>;
      for (var r = 0u; r < TPT_M; r++) { av[r] = tileA[kk * TILE_M + lid.y + WG_M * r]; }
      for (var c = 0u; c < TPT_N; c++) { bv[c] = tileB[kk * TILE_N + lid.x + WG_N * c]; }
      for (var r = 0u; r < TPT_M; r++) {
        for (var c = 0u; c < TPT_N; c++) { acc[r][c] = fma(av[r], bv[c], acc[r][c]); }
      }
    }
    workgroupBarrier();
  }
  let yoff = wid.z * dims.M * dims.N;
  for (var r = 0u; r < TPT_M; r++) {
    let m = m0 + lid.y + WG_M * r;
    for (var c = 0u; c < TPT_N; c++) {
      let n = n0 + lid.x + WG_N * c;
      if (m < dims.M && n < dims.N) { epilogue(yoff, m, n, acc[r][c]); }
    }
  }
}

// ---- backward helpers ----

const WG1: u32 = 256u;

struct Flat { n: u32, cols: u32, rows: u32 }
@group(0) @binding(6) var<uniform> flat: Flat;
@group(0) @binding(7) var<storage, read> gradOut: array<T>;
@group(0) @binding(8) var<storage, read> saved: array<T>;
@group(0) @binding(9) var<storage, read_write> gradIn: array<T>;
@group(0) @binding(10) var<storage, read> src: array<T>;
@group(0) @binding(11) var<storage, read_write> dst: array<T>;

fn flatIndex(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG1; }

// gradIn = gradOut * act'(saved), n elements (saved = z for gelu, y for tanh)
@compute @workgroup_size(WG1)
fn activation_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i < flat.n) { gradIn[i] = T(f32(gradOut[i]) * activateGrad(f32(saved[i]))); }
}

// the same, 4 elements per thread (n % 4 == 0): on lavapipe a vec4 load costs little more than a scalar one
@group(0) @binding(12) var<storage, read> gradOut4: array<vec4<T>>;
@group(0) @binding(13) var<storage, read> saved4: array<vec4<T>>;
@group(0) @binding(14) var<storage, read_write> gradIn4: array<vec4<T>>;

@compute @workgroup_size(WG1)
fn activation_backward4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i >= flat.n / 4u) { return; }
  let s = vec4f(saved4[i]);
  let d = vec4f(activateGrad(s.x), activateGrad(s.y), activateGrad(s.z), activateGrad(s.w));
  gradIn4[i] = vec4<T>(vec4f(gradOut4[i]) * d);
}

// dst[c] = sum over rows r of src[r * cols + c]   (bias gradient: column sums of dZ)
@compute @workgroup_size(WG1)
fn bias_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let c = flatIndex(gid, nwg);
  if (c >= flat.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < flat.rows; r++) { s += f32(src[r * flat.cols + c]); }
  dst[c] = T(s);
}

// dst[i] = sum over batches r of src[r * n + i]   (gradient of an operand shared by all batches)
@compute @workgroup_size(WG1)
fn sum_batches(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flatIndex(gid, nwg);
  if (i >= flat.n) { return; }
  var s = 0.0;
  for (var r = 0u; r < flat.rows; r++) { s += f32(src[r * flat.n + i]); }
  dst[i] = T(s);
}

// ==== SUBGROUP KERNEL ====
// Compiled only where the adapter has 'subgroups' (the op wrapper prepends `enable subgroups;` and this part).
//
// matmul_subgroup, for CPU adapters with 8-wide subgroups (lavapipe on AVX2): there every storage-buffer load is an
// 8-iteration scalar loop over the lanes (~50 FMAs' worth), so loads, not FMAs, bound a GEMM. One workgroup is one
// subgroup of SG = 8 lanes computing a tile of 8*RB rows x 32 columns; lane l owns columns n0 + 4l .. 4l+3 (a vec4
// accumulator per row). Per step of 4 k's each lane loads, without redundancy across lanes:
//   A: one vec4 per 8-row block. !TRANS_A: row m0 + 8i + l, k..k+3.  TRANS_A: k-row k + l%4, rows 4(l/4)..+3.
//      Every row's 4 k values are then shared across the subgroup with constant-lane shuffles (register broadcasts).
//   B: four vec4s: its 4 columns x 4 k's (TRANS_B: one per column along k; else one per k along its 4 columns).
// Then each row is 4 vec4 FMAs per lane. Row blocks are written out (not a loop) because the shader compiler only
// keeps the accumulators in registers when every index is constant after unrolling, and it declines to unroll a
// loop around the whole block.

const SG: u32 = 8u;   // subgroup width this kernel is written for (the wrapper checks the adapter's)
const RB: u32 = 4u;   // 8-row blocks per tile (1..4)
// Grid order: consecutive workgroups (which run close together in time, so share cache) walk along M when true, else
// along N. The operand that stays resident should be the one whose tile is strided in memory (B when it is [K, N]).
const M_FASTEST: bool = false;

// Lane `lane`'s v, for every lane. Callers pass a lane that is constant once the row loop is unrolled, and then the
// shuffle compiles to a register broadcast. (subgroupBroadcast wants a constant-expression lane, and writing it as a
// switch over the 8 lanes makes the compiler's unroll heuristic decline the transposed-A loop: 2.5x slower.)
fn bcast(v: f32, lane: u32) -> f32 { return subgroupShuffle(v, lane); }

// the 4 k values of row r (0..7) of an 8-row block whose A values this lane holds in av
fn rowValues(av: vec4f, r: u32) -> vec4f {
  if (TRANS_A) {
    // lane q + 4h holds k-row q, rows 4h..4h+3 of the block
    let h = 4u * (r / 4u);
    let v = av[r % 4u];
    return vec4f(bcast(v, h), bcast(v, h + 1u), bcast(v, h + 2u), bcast(v, h + 3u));
  }
  return vec4f(bcast(av.x, r), bcast(av.y, r), bcast(av.z, r), bcast(av.w, r));
}

// B values of this lane's 4 columns for k .. k+3: bk[q] = (B[k+q, n], .., B[k+q, n+3])
struct BStep { x: vec4f, y: vec4f, z: vec4f, w: vec4f }

fn accumulateBlock(acc: ptr<function, array<vec4f, 8>>, av: vec4f, bs: BStep) {
  for (var r = 0u; r < 8u; r++) {
    let ar = rowValues(av, r);
    (*acc)[r] = fma(vec4f(ar.w), bs.w, fma(vec4f(ar.z), bs.z, fma(vec4f(ar.y), bs.y, fma(vec4f(ar.x), bs.x, (*acc)[r]))));
  }
}

// Clamped 4-wide loads: indices past the matrix read a valid element (never out of the buffer); the caller zeroes
// what lies outside. `full` (constant in the main loop) skips the per-element clamps.
fn loadRowA(aoff: u32, blockRow0: u32, lane: u32, k: u32, kn: u32) -> vec4f {
  if (TRANS_A) {
    let q = lane % 4u;
    let kq = min(k + q, dims.K - 1u);
    let mg = blockRow0 + 4u * (lane / 4u);
    var v: vec4f;
    if (VEC_A) {
      v = loadA4(aoff + kq * dims.M + min(mg, dims.M - 4u));
    } else {
      let base = aoff + kq * dims.M;
      let last = dims.M - 1u;
      v = vec4f(loadA(base + min(mg, last)), loadA(base + min(mg + 1u, last)), loadA(base + min(mg + 2u, last)),
                loadA(base + min(mg + 3u, last)));
    }
    return select(vec4f(0.0), v, q < kn);
  }
  let m = min(blockRow0 + lane, dims.M - 1u);
  let base = aoff + m * dims.K + k;
  if (kn >= 4u) { return loadA4(base); }
  // K tail (scalar A rows only: VEC_A implies K % 4 == 0)
  let last = aoff + m * dims.K + dims.K - 1u;
  let v = vec4f(loadA(base), loadA(min(base + 1u, last)), loadA(min(base + 2u, last)), loadA(min(base + 3u, last)));
  return select(vec4f(0.0), v, vec4u(0u, 1u, 2u, 3u) < vec4u(kn));
}

fn loadStepB(boff: u32, nb: u32, k: u32, kn: u32) -> BStep {
  let kmask = vec4u(0u, 1u, 2u, 3u) < vec4u(kn);
  if (TRANS_B) {
    // one vec4 along k per column, then transpose to one vec4 along the columns per k
    var col: array<vec4f, 4>;
    for (var c = 0u; c < 4u; c++) {
      let n = min(nb + c, dims.N - 1u);
      let base = boff + n * dims.K + k;
      if (kn >= 4u) {
        col[c] = loadB4(base);
      } else {
        let last = boff + n * dims.K + dims.K - 1u;
        col[c] = select(vec4f(0.0), vec4f(loadB(base), loadB(min(base + 1u, last)), loadB(min(base + 2u, last)),
                                          loadB(min(base + 3u, last))), kmask);
      }
    }
    return BStep(vec4f(col[0].x, col[1].x, col[2].x, col[3].x), vec4f(col[0].y, col[1].y, col[2].y, col[3].y),
                 vec4f(col[0].z, col[1].z, col[2].z, col[3].z), vec4f(col[0].w, col[1].w, col[2].w, col[3].w));
  }
  var row: array<vec4f, 4>;
  for (var q = 0u; q < 4u; q++) {
    let kq = min(k + q, dims.K - 1u);
    var v: vec4f;
    if (VEC_B) {
      v = loadB4(boff + kq * dims.N + min(nb, dims.N - 4u));
    } else {
      let base = boff + kq * dims.N;
      let last = dims.N - 1u;
      v = vec4f(loadB(base + min(nb, last)), loadB(base + min(nb + 1u, last)), loadB(base + min(nb + 2u, last)),
                loadB(base + min(nb + 3u, last)));
    }
    row[q] = select(vec4f(0.0), v, q < kn);
  }
  return BStep(row[0], row[1], row[2], row[3]);
}

struct Acc { b0: array<vec4f, 8>, b1: array<vec4f, 8>, b2: array<vec4f, 8>, b3: array<vec4f, 8> }

fn subgroupStep(acc: ptr<function, Acc>, aoff: u32, boff: u32, m0: u32, nb: u32, lane: u32, k: u32, kn: u32) {
  // all loads first, then the FMAs: keeps the per-lane load loops out of the stretch where the accumulators are live
  let bs = loadStepB(boff, nb, k, kn);
  let a0 = loadRowA(aoff, m0, lane, k, kn);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  if (RB > 1u) { a1 = loadRowA(aoff, m0 + 8u, lane, k, kn); }
  if (RB > 2u) { a2 = loadRowA(aoff, m0 + 16u, lane, k, kn); }
  if (RB > 3u) { a3 = loadRowA(aoff, m0 + 24u, lane, k, kn); }
  accumulateBlock(&(*acc).b0, a0, bs);
  if (RB > 1u) { accumulateBlock(&(*acc).b1, a1, bs); }
  if (RB > 2u) { accumulateBlock(&(*acc).b2, a2, bs); }
  if (RB > 3u) { accumulateBlock(&(*acc).b3, a3, bs); }
}

fn storeBlock(tile: array<vec4f, 8>, yoff: u32, row0: u32, nb: u32) {
  for (var r = 0u; r < 8u; r++) {
    let m = row0 + r;
    let v = tile[r];
    for (var c = 0u; c < 4u; c++) {
      let n = nb + c;
      if (m < dims.M && n < dims.N) { epilogue(yoff, m, n, v[c]); }
    }
  }
}

@compute @workgroup_size(SG)
fn matmul_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let tiles = select(wid.xy, wid.yx, M_FASTEST);   // (n tile, m tile)
  let m0 = dims.mBase + tiles.y * 8u * RB;
  let nb = tiles.x * 4u * SG + 4u * lane;
  let aoff = wid.z * dims.strideA;
  let boff = wid.z * dims.strideB;
  var acc: Acc;
  var k = 0u;
  for (; k + 4u <= dims.K; k += 4u) { subgroupStep(&acc, aoff, boff, m0, nb, lane, k, 4u); }
  if (K_TAIL && k < dims.K) { subgroupStep(&acc, aoff, boff, m0, nb, lane, k, dims.K - k); }
  let yoff = wid.z * dims.M * dims.N;
  storeBlock(acc.b0, yoff, m0, nb);
  if (RB > 1u) { storeBlock(acc.b1, yoff, m0 + 8u, nb); }
  if (RB > 2u) { storeBlock(acc.b2, yoff, m0 + 16u, nb); }
  if (RB > 3u) { storeBlock(acc.b3, yoff, m0 + 24u, nb); }
}
