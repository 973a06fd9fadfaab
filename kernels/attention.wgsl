// Multi-head self-attention with a key-padding mask, flash style (online softmax; the T x T matrix never exists).
// Layout: out, grad_out [B, T, H*D] straight from nn.Linear: element [b, t, h, d] at ((b*T + t)*H + h)*D + d.
// q, k, v (and grad_q, grad_k, grad_v) are rows of p.qkv_stride elements from their own base: [b, t, h, d] of q at
// p.q_base + (b*T + t)*qkv_stride + h*D + d. Separate tensors: stride H*D, bases 0. One packed projection output
// [B, T, 3*H*D] (q | k | v per row, the fused q/k/v GEMM's output) bound as all three: stride 3*H*D, bases 0, H*D,
// 2*H*D, and its gradient is one [B, T, 3*H*D] buffer too (PACKED_GRAD_KV below).
// key_mask i32 [B, T] (0 = padded key: zero weight; ignored when p.masked == 0). lse, row_dot [B, H, T].
//   forward:   s_ij = scale * q_i . k_j (padded keys excluded), P = softmax_j(s), out_i = sum_j P_ij v_j,
//              lse_i = logsumexp_j s_ij (a row whose keys are all padding gets out = 0 and lse = POS_BIG: P = 0 later)
//   backward (FlashAttention-2, no float atomics): row_dot_i = dout_i . out_i, then with P_ij = exp(s_ij - lse_i),
//              dP_ij = dout_i . v_j, dS_ij = P_ij (dP_ij - row_dot_i):
//              dv_j = sum_i P_ij dout_i, dk_j = scale sum_i dS_ij q_i   (workgroups own key blocks, queries streamed)
//              dq_i = scale sum_j dS_ij k_j                            (workgroups own query blocks, keys streamed)
//   dropout on the probabilities (template flag DROPOUT, training only; p.threshold, p.keep_scale = 1/(1-p)):
//              Z_ij = keep_ij * keep_scale, keep_ij = random_bits(seed, offset + ((b*H + h)*T + i)*T + j) >= threshold
//              (the hash of activation.wgsl's dropout: the mask is a pure function of the counter, so backward and a
//              checkpoint replay regenerate it). The online softmax statistics (max, sum, lse) stay on the undropped P;
//              only the value accumulation uses P*Z: out_i = sum_j P_ij Z_ij v_j. Backward: row_dot_i = dout_i . out_i
//              as before (out includes dropout), dP_ij = Z_ij (dout_i . v_j), dS_ij = P_ij (dP_ij - row_dot_i),
//              dv_j = sum_i P_ij Z_ij dout_i; dk, dq from dS unchanged. With DROPOUT = false none of it is compiled.
//   relative position bias (template flag REL_BIAS, WavLM's gated bias; off: none of it is compiled):
//              s_ij += gate[b, h, i] * table[h, j - i + T - 1], with table[h, e] = E[bucket(e - T + 1), h] (E the
//              [num_buckets, H] embedding) and bucket() the T5-style bidirectional bucket (relative_bucket below, f32
//              log as PyTorch's). rel_bias packs [table (H x (2T-1)) | gate (B x H x T)]. The backward adds
//              dgate_i = sum_j dS_ij table[h, j - i + T - 1] (free: the dq kernels own query rows) and the per-diagonal
//              sums dtable[b, h, blk, e] = sum_{i in row block blk} gate_i dS_{i, i + e - T + 1}. Why per diagonal and
//              per block: dE needs a sum over (b, i, j) per bucket, and a bucket is a set of diagonals; the dq kernels
//              already hold dS for (own rows) x (streamed keys), so each step reduces gate*dS of its rows x keys to
//              the step's rows+keys-1 diagonal sums and adds them into its block's row of the partial buffer (portable:
//              through workgroup memory, diag_c; subgroup: gathered with subgroupShuffle, no barrier). Each diagonal e
//              is always added by the same invocation (the owner of e mod window), so the read-modify-write needs no
//              atomics and no storage barrier. Size B*H*blocks*(2T-1): T x T / block
//              rows, never T x T (blocks of 24 rows in the subgroup kernels, 64 in the portable ones: ~48 MB at B=4,
//              H=16, T=1500 with subgroups; very long batches can exceed maxStorageBufferBindingSize, which the
//              runtime reports by name). relative_bias_grad_embed then sums the partials per (bucket, h).
//              rel_bias_grad packs [dgate (B x H x T) | partial diagonal sums].
// Two implementations of the same math; src/ops/attention.ts picks one.
//  * Portable (this first part): each invocation owns one row (a query; a key in attention_backward_kv) in private
//    memory; the other side streams through workgroup memory in tiles of BLOCK_STREAM rows, read at addresses common
//    to all invocations (a broadcast on GPUs). Template parameters HEAD_DIM (D), BLOCK_ROWS (rows owned per
//    workgroup = invocations), BLOCK_STREAM.
//  * Subgroup (after the "==== subgroup kernels" line, compiled with `enable subgroups;`): for CPU adapters such as
//    lavapipe, where the portable inner loops become per-lane scalar loads. See the comment there.
const HEAD_DIM: u32 = 64u;
const BLOCK_ROWS: u32 = 64u;
const BLOCK_STREAM: u32 = 32u;
const DROPOUT: bool = false;
const REL_BIAS: bool = false;
// the dk/dv kernels write dv into grad_k at p.v_base (grad_v unused): the packed gradient of one [B, T, 3*H*D]
// projection output, which one buffer holds (two writable bindings may not share a buffer)
const PACKED_GRAD_KV: bool = false;
// workgroup floats for the dq kernels' gate*dS block (rows x streamed keys) with REL_BIAS, else 1
const DIAG_SIZE: u32 = 1u;

const HEAD_VEC: u32 = (HEAD_DIM + 3u) / 4u;
const TILE: u32 = BLOCK_STREAM * HEAD_DIM;
const TILE_LOADS: u32 = (TILE + BLOCK_ROWS - 1u) / BLOCK_ROWS;
// "minus infinity" for masked scores and "plus infinity" for the lse of a row with no real key; finite so that
// differences of two of them stay finite (exp(NEG_BIG - NEG_BIG) = 1 is harmless: those weights are masked to 0).
const NEG_BIG: f32 = -3.0e38;
const POS_BIG: f32 = 3.0e38;

// rel_*: relative position bias (unused without REL_BIAS): num_buckets, num_buckets / 2, max_exact = that / 2,
// f32(log(max_distance / max_exact)), row blocks of the dq kernel (rows of the partial diagonal sums)
struct Params {
  batch: u32, seq: u32, heads: u32, masked: u32, scale: f32, seed: u32, offset: u32, threshold: u32, keep_scale: f32,
  rel_buckets: u32, rel_half_buckets: u32, rel_max_exact: u32, rel_log_ratio: f32, rel_blocks: u32,
  qkv_stride: u32, q_base: u32, k_base: u32, v_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> key_mask: array<i32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read> out_saved: array<f32>;
@group(0) @binding(8) var<storage, read> grad_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> row_dot: array<f32>;
@group(0) @binding(10) var<storage, read> lse_saved: array<f32>;
@group(0) @binding(11) var<storage, read> row_dot_saved: array<f32>;
@group(0) @binding(12) var<storage, read_write> grad_q: array<f32>;
@group(0) @binding(13) var<storage, read_write> grad_k: array<f32>;
@group(0) @binding(14) var<storage, read_write> grad_v: array<f32>;
// relative position bias: [table H x (2T-1) | gate B x H x T] and [dgate B x H x T | partial diagonal sums]
@group(0) @binding(23) var<storage, read> rel_bias: array<f32>;
@group(0) @binding(24) var<storage, read_write> rel_bias_grad: array<f32>;
// bucket of each relative position e - (T - 1), e in [0, 2T-1); the embedding E [num_buckets, H], its gradient, and
// the table half of rel_bias as written by relative_bias_table
@group(0) @binding(25) var<storage, read_write> bucket_of: array<i32>;
@group(0) @binding(26) var<storage, read> rel_embed: array<f32>;
@group(0) @binding(27) var<storage, read_write> grad_rel_embed: array<f32>;
@group(0) @binding(28) var<storage, read_write> rel_table_out: array<f32>;

// streamed blocks: two [BLOCK_STREAM, HEAD_DIM] tiles and two per-row scalars
var<workgroup> tile_a: array<f32, TILE>;
var<workgroup> tile_b: array<f32, TILE>;
var<workgroup> row_a: array<f32, BLOCK_STREAM>;
var<workgroup> row_b: array<f32, BLOCK_STREAM>;
var<workgroup> row_c: array<f32, BLOCK_STREAM>;
// gate * dS of the dq kernels' rows x streamed keys (REL_BIAS), row-major
var<workgroup> diag_c: array<f32, DIAG_SIZE>;

// offset of element [b, t, h, 0] of out, grad_out (and gate_x)
fn row_offset(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.seq + t) * p.heads + h) * HEAD_DIM;
}

// offset of element [b, t, h, 0] of q, k, v and their gradients before their base (p.q_base, ...): rows of
// p.qkv_stride elements, H*D for separate tensors, 3*H*D for one packed [B, T, 3*H*D] projection output
fn in_offset(b: u32, t: u32, h: u32) -> u32 {
  return (b * p.seq + t) * p.qkv_stride + h * HEAD_DIM;
}

// PCG output permutation of one LCG step (Jarzynski & Olano 2020); pcgHash and randomBits in activation.wgsl, the same
// bits bit for bit (WGSL modules cannot share code)
fn pcg_hash(x: u32) -> u32 {
  let state = x * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// the random counter of probability (query i, key j) of head (b, h); wraps mod 2^32 like the caller's offset
fn dropout_counter(b: u32, h: u32, i: u32, j: u32) -> u32 {
  return p.offset + ((b * p.heads + h) * p.seq + i) * p.seq + j;
}

// whether dropout keeps the probability with this counter
fn dropout_keep_counter(counter: u32) -> bool {
  return pcg_hash(pcg_hash(counter) ^ pcg_hash(p.seed ^ 0x9e3779b9u)) >= p.threshold;
}

fn dropout_keep(b: u32, h: u32, i: u32, j: u32) -> bool {
  return dropout_keep_counter(dropout_counter(b, h, i, j));
}

// ---- relative position bias
// T5/WavLM bucket of relative position delta = key - query: (delta > 0) * nb + (|delta| if below max_exact, else
// min(nb - 1, trunc(max_exact + log(|delta| / max_exact) / log(max_distance / max_exact) * (nb - max_exact)))), every
// step in f32 as PyTorch computes it (the division by the Python-float log ratio happens in f32 too).
fn relative_bucket(delta: i32) -> u32 {
  let nb = p.rel_half_buckets;
  let max_exact = p.rel_max_exact;
  let side = select(0u, nb, delta > 0);
  let n = u32(abs(delta));
  if (n < max_exact) { return side + n; }
  let ratio = log(f32(n) / f32(max_exact)) / p.rel_log_ratio * f32(nb - max_exact);
  // n >= max_exact: ratio >= 0, so truncation is a floor; clamped before the conversion (huge n)
  let large = min(f32(max_exact) + ratio, f32(nb - 1u));
  return side + min(u32(large), nb - 1u);
}

fn rel_span() -> u32 { return 2u * p.seq - 1u; }

// table[h, key - query + T - 1] (query, key < T)
fn rel_table(h: u32, query: u32, key: u32) -> f32 {
  return rel_bias[h * rel_span() + key + p.seq - 1u - query];
}

fn rel_gate(b: u32, h: u32, query: u32) -> f32 {
  return rel_bias[p.heads * rel_span() + (b * p.heads + h) * p.seq + query];
}

// start of row block blk's partial diagonal sums for head (b, h) in rel_bias_grad
fn rel_partial_base(b: u32, h: u32, blk: u32) -> u32 {
  return p.batch * p.heads * p.seq + ((b * p.heads + h) * p.rel_blocks + blk) * rel_span();
}

// Zero this invocation's diagonals of a block's partial row: diagonal e belongs to invocation (e mod window) mod lanes,
// the same owner flush_diagonals uses, so the later read-modify-writes need no barrier between invocations.
fn zero_diagonals(base: u32, window: u32, lane: u32, lanes: u32) {
  for (var rho = lane; rho < window; rho += lanes) {
    for (var e = rho; e < rel_span(); e += window) { rel_bias_grad[base + e] = 0.0; }
  }
}

// Add the diagonal sums of diag_c (rows x cols: gate_i * dS_ij for query row0 + r, key start + jj) into the block's
// partial row at base: pair (r, jj) lies on e = start + jj - row0 - r + T - 1, so the block's window of rows + cols - 1
// diagonals starts at e_lo = start + T - row0 - rows. Pairs outside the sequence hold 0 and e outside [0, 2T-1) is
// skipped.
fn flush_diagonals(base: u32, row0: u32, start: u32, rows: u32, cols: u32, lane: u32, lanes: u32) {
  let window = rows + cols - 1u;
  let e_lo = i32(start + p.seq) - i32(row0 + rows);
  for (var rho = lane; rho < window; rho += lanes) {
    // the diagonal d of this window with e_lo + d = rho (mod window)
    let d = u32(((i32(rho) - e_lo) % i32(window) + i32(window)) % i32(window));
    let e = e_lo + i32(d);
    if (e < 0 || e >= i32(rel_span())) { continue; }
    var sum = 0.0;
    for (var jj = 0u; jj < cols; jj++) {
      let r = i32(jj + rows - 1u) - i32(d);
      if (r >= 0 && r < i32(rows)) { sum += diag_c[u32(r) * cols + jj]; }
    }
    rel_bias_grad[base + u32(e)] += sum;
  }
}

// bucket_of[e] = bucket(e - (T - 1)) for e < 2T - 1; x + y * width grid
@compute @workgroup_size(64)
fn relative_position_buckets(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = gid.x + gid.y * nwg.x * 64u;
  if (e >= rel_span()) { return; }
  bucket_of[e] = i32(relative_bucket(i32(e) - i32(p.seq - 1u)));
}

// rel_table_out[h * (2T-1) + e] = E[bucket_of[e], h]: the ungated bias of every relative position
@compute @workgroup_size(64)
fn relative_bias_table(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.heads * rel_span()) { return; }
  let h = i / rel_span();
  let e = i % rel_span();
  rel_table_out[i] = rel_embed[u32(bucket_of[e]) * p.heads + h];
}

// For reports only (check-reference): the ungated bias as HF materialises it, [H, T, T] (row = query), and the
// buckets [T, T]. The attention kernels never need these.
@group(0) @binding(40) var<storage, read_write> dense_bias_out: array<f32>;
@group(0) @binding(41) var<storage, read_write> dense_bucket_out: array<i32>;
@compute @workgroup_size(64)
fn relative_bias_dense(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.heads * p.seq * p.seq) { return; }
  let h = i / (p.seq * p.seq);
  let query = (i / p.seq) % p.seq;
  let key = i % p.seq;
  let bucket = bucket_of[key + p.seq - 1u - query];
  dense_bias_out[i] = rel_embed[u32(bucket) * p.heads + h];
  if (h == 0u) { dense_bucket_out[query * p.seq + key] = bucket; }
}

// grad_rel_embed[bucket, h] = sum over e in the bucket, b and row blocks of the partial diagonal sums (buckets that no
// e of this T reaches, and the last one when num_buckets is odd, get 0)
@compute @workgroup_size(64)
fn relative_bias_grad_embed(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.rel_buckets * p.heads) { return; }
  let bucket = i32(i / p.heads);
  let h = i % p.heads;
  var sum = 0.0;
  for (var e = 0u; e < rel_span(); e++) {
    if (bucket_of[e] != bucket) { continue; }
    for (var b = 0u; b < p.batch; b++) {
      for (var blk = 0u; blk < p.rel_blocks; blk++) { sum += rel_bias_grad[rel_partial_base(b, h, blk) + e]; }
    }
  }
  grad_rel_embed[i] = sum;
}

// ---- the gate of the relative bias (WavLM), from the attention input x [B, T, H*D] (heads interleaved, before the
// q/k/v projections) and gru_rel_pos_linear (W [8, D], bias [8]) and gru_rel_pos_const [H]: per (b, h, t),
//   r = W x[b, t, h, :] + bias, a = sigmoid(r0 + r1 + r2 + r3), c = sigmoid(r4 + r5 + r6 + r7),
//   gate[b, h, t] = a * (c * k[h] - 1) + 2.
// backward: dza = dgate (c k - 1) a (1 - a), dzc = dgate a k c (1 - c), dx = dza (W0 + .. + W3) + dzc (W4 + .. + W7),
// dW[e<4] = sum dza x, dW[e>=4] = sum dzc x, dbias likewise, dk[h] = sum_{b,t} dgate a c. gate_dz keeps
// (dza, dzc, dgate a c) per (b, h, t) for the reductions. D = HEAD_DIM.
@group(0) @binding(29) var<storage, read> gate_x: array<f32>;
@group(0) @binding(30) var<storage, read> gate_weight: array<f32>;
@group(0) @binding(31) var<storage, read> gate_bias: array<f32>;
@group(0) @binding(32) var<storage, read> gate_const: array<f32>;
@group(0) @binding(33) var<storage, read_write> gate_out: array<f32>;
@group(0) @binding(34) var<storage, read> grad_gate_in: array<f32>;
@group(0) @binding(35) var<storage, read_write> gate_dz: array<f32>;
@group(0) @binding(36) var<storage, read_write> grad_gate_x: array<f32>;
@group(0) @binding(37) var<storage, read_write> grad_gate_weight: array<f32>;
@group(0) @binding(38) var<storage, read_write> grad_gate_bias: array<f32>;
@group(0) @binding(39) var<storage, read_write> grad_gate_const: array<f32>;

struct GateTerms { a: f32, c: f32 }

fn gate_terms(base: u32) -> GateTerms {
  var za = 0.0;
  var zc = 0.0;
  for (var e = 0u; e < 4u; e++) {
    var ra = gate_bias[e];
    var rc = gate_bias[e + 4u];
    for (var d = 0u; d < HEAD_DIM; d++) {
      ra += gate_weight[e * HEAD_DIM + d] * gate_x[base + d];
      rc += gate_weight[(e + 4u) * HEAD_DIM + d] * gate_x[base + d];
    }
    za += ra;
    zc += rc;
  }
  return GateTerms(1.0 / (1.0 + exp(-za)), 1.0 / (1.0 + exp(-zc)));
}

// gate index i = (b * H + h) * T + t; x + y * width grid
fn gate_site(i: u32) -> vec4u {
  let t = i % p.seq;
  let h = (i / p.seq) % p.heads;
  let b = i / (p.seq * p.heads);
  return vec4u(b, h, t, row_offset(b, t, h));
}

@compute @workgroup_size(64)
fn relative_gate_forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.batch * p.heads * p.seq) { return; }
  let site = gate_site(i);
  let g = gate_terms(site.w);
  gate_out[i] = g.a * (g.c * gate_const[site.y] - 1.0) + 2.0;
}

@compute @workgroup_size(64)
fn relative_gate_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.batch * p.heads * p.seq) { return; }
  let site = gate_site(i);
  let g = gate_terms(site.w);
  let k = gate_const[site.y];
  let dg = grad_gate_in[i];
  let dza = dg * (g.c * k - 1.0) * g.a * (1.0 - g.a);
  let dzc = dg * g.a * k * g.c * (1.0 - g.c);
  gate_dz[3u * i] = dza;
  gate_dz[3u * i + 1u] = dzc;
  gate_dz[3u * i + 2u] = dg * g.a * g.c;
  for (var d = 0u; d < HEAD_DIM; d++) {
    var wa = 0.0;
    var wc = 0.0;
    for (var e = 0u; e < 4u; e++) {
      wa += gate_weight[e * HEAD_DIM + d];
      wc += gate_weight[(e + 4u) * HEAD_DIM + d];
    }
    grad_gate_x[site.w + d] = dza * wa + dzc * wc;
  }
}

// One workgroup per output: o < 2D the weight column d = o % D of the first (o < D) or last four rows, o = 2D, 2D + 1
// the bias halves, o >= 2D + 2 the const of head o - 2D - 2. Strided partial sums, then a tree in workgroup memory.
var<workgroup> gate_sums: array<f32, 64>;
@compute @workgroup_size(64)
fn relative_gate_backward_params(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let o = wg.x;
  let n = p.batch * p.heads * p.seq;
  var sum = 0.0;
  if (o < 2u * HEAD_DIM) {
    let half = o / HEAD_DIM;
    let d = o % HEAD_DIM;
    for (var i = lane; i < n; i += 64u) { sum += gate_dz[3u * i + half] * gate_x[gate_site(i).w + d]; }
  } else if (o < 2u * HEAD_DIM + 2u) {
    for (var i = lane; i < n; i += 64u) { sum += gate_dz[3u * i + o - 2u * HEAD_DIM]; }
  } else {
    let h = o - 2u * HEAD_DIM - 2u;
    for (var i = lane; i < p.batch * p.seq; i += 64u) {
      sum += gate_dz[3u * ((i / p.seq * p.heads + h) * p.seq + i % p.seq) + 2u];
    }
  }
  gate_sums[lane] = sum;
  for (var width = 32u; width > 0u; width >>= 1u) {
    workgroupBarrier();
    if (lane < width) { gate_sums[lane] += gate_sums[lane + width]; }
  }
  if (lane == 0u) {
    let total = gate_sums[0];
    if (o < 2u * HEAD_DIM) {
      let half = o / HEAD_DIM;
      for (var e = 0u; e < 4u; e++) { grad_gate_weight[(4u * half + e) * HEAD_DIM + o % HEAD_DIM] = total; }
    } else if (o < 2u * HEAD_DIM + 2u) {
      for (var e = 0u; e < 4u; e++) { grad_gate_bias[4u * (o - 2u * HEAD_DIM) + e] = total; }
    } else {
      grad_gate_const[o - 2u * HEAD_DIM - 2u] = total;
    }
  }
}

fn key_is_real(b: u32, t: u32) -> bool {
  if (t >= p.seq) { return false; }
  if (p.masked == 0u) { return true; }
  return key_mask[b * p.seq + t] != 0;
}

// Copy keys and values start..start+BLOCK_STREAM of head (b, h) into tile_a/tile_b and whether each key is real into
// row_a (rows past T clamp to T-1: finite values whose weight the callers zero).
fn load_key_tiles(b: u32, h: u32, start: u32, lane: u32) {
  for (var r = 0u; r < TILE_LOADS; r++) {
    let i = r * BLOCK_ROWS + lane;
    if (i < TILE) {
      let t = min(start + i / HEAD_DIM, p.seq - 1u);
      let idx = in_offset(b, t, h) + i % HEAD_DIM;
      tile_a[i] = k[p.k_base + idx];
      tile_b[i] = v[p.v_base + idx];
    }
  }
  if (lane < BLOCK_STREAM) {
    row_a[lane] = select(0.0, 1.0, key_is_real(b, start + lane));
  }
}

@compute @workgroup_size(BLOCK_ROWS)
fn attention_forward(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  let t = wg.x * BLOCK_ROWS + lane;
  let base = row_offset(b, min(t, p.seq - 1u), h);
  let q_row = p.q_base + in_offset(b, min(t, p.seq - 1u), h);
  var qr: array<f32, HEAD_DIM>;
  var acc: array<f32, HEAD_DIM>;
  for (var d = 0u; d < HEAD_DIM; d++) {
    qr[d] = q[q_row + d] * p.scale;
    acc[d] = 0.0;
  }
  var m = NEG_BIG;
  var l = 0.0;
  let tc = min(t, p.seq - 1u);
  var gate = 0.0;
  if (REL_BIAS) { gate = rel_gate(b, h, tc); }
  for (var start = 0u; start < p.seq; start += BLOCK_STREAM) {
    workgroupBarrier();
    load_key_tiles(b, h, start, lane);
    workgroupBarrier();
    var s: array<f32, BLOCK_STREAM>;
    var m_new = m;
    for (var j = 0u; j < BLOCK_STREAM; j++) {
      var dot = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        dot += qr[d] * tile_a[j * HEAD_DIM + d];
      }
      if (REL_BIAS) { dot += gate * rel_table(h, tc, min(start + j, p.seq - 1u)); }
      s[j] = select(NEG_BIG, dot, row_a[j] != 0.0);
      m_new = max(m_new, s[j]);
    }
    let alpha = exp(m - m_new);
    l *= alpha;
    for (var j = 0u; j < BLOCK_STREAM; j++) {
      s[j] = select(0.0, exp(s[j] - m_new), row_a[j] != 0.0);
      l += s[j];
    }
    if (DROPOUT) {
      // l has the undropped sum; only the values see the dropped probabilities
      for (var j = 0u; j < BLOCK_STREAM; j++) {
        s[j] = select(0.0, s[j] * p.keep_scale, dropout_keep(b, h, t, start + j));
      }
    }
    for (var d = 0u; d < HEAD_DIM; d++) {
      var sum = acc[d] * alpha;
      for (var j = 0u; j < BLOCK_STREAM; j++) {
        sum += s[j] * tile_b[j * HEAD_DIM + d];
      }
      acc[d] = sum;
    }
    m = m_new;
  }
  if (t < p.seq) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var d = 0u; d < HEAD_DIM; d++) {
      out[base + d] = acc[d] * inv;
    }
    lse[(b * p.heads + h) * p.seq + t] = select(POS_BIG, m + log(l), l > 0.0);
  }
}

// row_dot[b, h, t] = grad_out[b, t, h, :] . out[b, t, h, :]; one invocation per (b, t, h) row, x + y * width grid.
@compute @workgroup_size(BLOCK_ROWS)
fn attention_backward_row_dot(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let r = gid.x + gid.y * nwg.x * BLOCK_ROWS;
  if (r >= p.batch * p.seq * p.heads) { return; }
  let h = r % p.heads;
  let bt = r / p.heads;
  let b = bt / p.seq;
  let t = bt % p.seq;
  var sum = 0.0;
  // nested so that NIR unrolls both loops (a loop of HEAD_DIM iterations stays rolled and costs lavapipe ~100 cycles
  // per iteration)
  for (var c = 0u; c < HEAD_VEC; c++) {
    for (var e = 0u; e < 4u; e++) {
      let d = min(4u * c + e, HEAD_DIM - 1u);
      sum += select(0.0, grad_out[r * HEAD_DIM + d] * out_saved[r * HEAD_DIM + d], 4u * c + e < HEAD_DIM);
    }
  }
  row_dot[(b * p.heads + h) * p.seq + t] = sum;
}

// dq for a block of BLOCK_ROWS queries of one (b, h); keys and values streamed.
@compute @workgroup_size(BLOCK_ROWS)
fn attention_backward_q(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  let t = wg.x * BLOCK_ROWS + lane;
  let tc = min(t, p.seq - 1u);
  let base = row_offset(b, tc, h);
  let q_row = p.q_base + in_offset(b, tc, h);
  var qr: array<f32, HEAD_DIM>;
  var gor: array<f32, HEAD_DIM>;
  var dq: array<f32, HEAD_DIM>;
  for (var d = 0u; d < HEAD_DIM; d++) {
    qr[d] = q[q_row + d] * p.scale;
    gor[d] = grad_out[base + d];
    dq[d] = 0.0;
  }
  let stat = (b * p.heads + h) * p.seq + tc;
  let row_lse = lse_saved[stat];
  let row_d = row_dot_saved[stat];
  var gate = 0.0;
  var dgate = 0.0;
  if (REL_BIAS) {
    gate = rel_gate(b, h, tc);
    zero_diagonals(rel_partial_base(b, h, wg.x), BLOCK_ROWS + BLOCK_STREAM - 1u, lane, BLOCK_ROWS);
  }
  for (var start = 0u; start < p.seq; start += BLOCK_STREAM) {
    workgroupBarrier();
    load_key_tiles(b, h, start, lane);
    workgroupBarrier();
    for (var j = 0u; j < BLOCK_STREAM; j++) {
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        s += qr[d] * tile_a[j * HEAD_DIM + d];
        dp += gor[d] * tile_b[j * HEAD_DIM + d];
      }
      var bias = 0.0;
      if (REL_BIAS) {
        bias = rel_table(h, tc, min(start + j, p.seq - 1u));
        s += gate * bias;
      }
      let prob = select(0.0, exp(s - row_lse), row_a[j] != 0.0 && row_lse != POS_BIG);
      if (DROPOUT) { dp = select(0.0, dp * p.keep_scale, dropout_keep(b, h, t, start + j)); }
      let ds = prob * (dp - row_d);
      for (var d = 0u; d < HEAD_DIM; d++) {
        dq[d] += ds * tile_a[j * HEAD_DIM + d];
      }
      if (REL_BIAS) {
        dgate += ds * bias;
        diag_c[lane * BLOCK_STREAM + j] = select(0.0, gate * ds, t < p.seq);
      }
    }
    if (REL_BIAS) {
      workgroupBarrier();
      flush_diagonals(rel_partial_base(b, h, wg.x), wg.x * BLOCK_ROWS, start, BLOCK_ROWS, BLOCK_STREAM, lane, BLOCK_ROWS);
    }
  }
  if (t < p.seq) {
    for (var d = 0u; d < HEAD_DIM; d++) {
      grad_q[q_row + d] = dq[d] * p.scale;
    }
    if (REL_BIAS) { rel_bias_grad[stat] = dgate; }
  }
}

// dk, dv for a block of BLOCK_ROWS keys of one (b, h); queries, grad_out, lse and row_dot streamed. A padded key's
// invocation keeps prob = 0, so it gets dk = dv = 0.
@compute @workgroup_size(BLOCK_ROWS)
fn attention_backward_kv(@builtin(local_invocation_index) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  let t = wg.x * BLOCK_ROWS + lane;
  let base = in_offset(b, min(t, p.seq - 1u), h);
  let real = key_is_real(b, t);
  var kr: array<f32, HEAD_DIM>;
  var vr: array<f32, HEAD_DIM>;
  var dk: array<f32, HEAD_DIM>;
  var dv: array<f32, HEAD_DIM>;
  for (var d = 0u; d < HEAD_DIM; d++) {
    kr[d] = k[p.k_base + base + d] * p.scale;
    vr[d] = v[p.v_base + base + d];
    dk[d] = 0.0;
    dv[d] = 0.0;
  }
  for (var start = 0u; start < p.seq; start += BLOCK_STREAM) {
    workgroupBarrier();
    for (var r = 0u; r < TILE_LOADS; r++) {
      let i = r * BLOCK_ROWS + lane;
      if (i < TILE) {
        let tq = min(start + i / HEAD_DIM, p.seq - 1u);
        tile_a[i] = q[p.q_base + in_offset(b, tq, h) + i % HEAD_DIM];
        tile_b[i] = grad_out[row_offset(b, tq, h) + i % HEAD_DIM];
      }
    }
    if (lane < BLOCK_STREAM) {
      let tq = start + lane;
      let stat = (b * p.heads + h) * p.seq + min(tq, p.seq - 1u);
      // queries past T get lse = +BIG: zero probability
      row_a[lane] = select(POS_BIG, lse_saved[stat], tq < p.seq);
      row_b[lane] = row_dot_saved[stat];
      if (REL_BIAS) { row_c[lane] = rel_gate(b, h, min(tq, p.seq - 1u)); }
    }
    workgroupBarrier();
    for (var i = 0u; i < BLOCK_STREAM; i++) {
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < HEAD_DIM; d++) {
        s += kr[d] * tile_a[i * HEAD_DIM + d];
        dp += vr[d] * tile_b[i * HEAD_DIM + d];
      }
      if (REL_BIAS) { s += row_c[i] * rel_table(h, min(start + i, p.seq - 1u), min(t, p.seq - 1u)); }
      let prob = select(0.0, exp(s - row_a[i]), real && row_a[i] != POS_BIG);
      var prob_dropped = prob;
      if (DROPOUT) {
        let kept = dropout_keep(b, h, start + i, t);
        dp = select(0.0, dp * p.keep_scale, kept);
        prob_dropped = select(0.0, prob * p.keep_scale, kept);
      }
      let ds = prob * (dp - row_b[i]);
      for (var d = 0u; d < HEAD_DIM; d++) {
        dv[d] += prob_dropped * tile_b[i * HEAD_DIM + d];
        dk[d] += ds * tile_a[i * HEAD_DIM + d];
      }
    }
  }
  if (t < p.seq) {
    for (var d = 0u; d < HEAD_DIM; d++) {
      grad_k[p.k_base + base + d] = dk[d] * p.scale;
      if (PACKED_GRAD_KV) { grad_k[p.v_base + base + d] = dv[d]; } else { grad_v[p.v_base + base + d] = dv[d]; }
    }
  }
}

// ==== subgroup kernels (compiled with `enable subgroups;`; used on CPU adapters with a fixed subgroup size) ====
// Why a second set: lavapipe runs 8 invocations as the lanes of one AVX2 vector, and it turns every load whose address
// it cannot prove constant into 8 scalar loads with bounds checks, even when all lanes read the same address, and
// workgroup memory is no exception. So the portable kernels' broadcast reads cost 8 loads per element, while a
// subgroupShuffle is one permute instruction per component.
// Layout: one workgroup = one subgroup of SG lanes. Each lane owns ROWS_PER_LANE rows (row r*SG + lane of the
// workgroup's block) and keeps them in private memory as HEAD_VEC vec4 chunks. The other side streams STREAM_ROWS
// rows at a time: each streamed row is loaded once per subgroup (lane l holds its chunks l, l+SG, ...), and
// subgroupShuffle hands every chunk to all lanes, where it meets ROWS_PER_LANE owned rows.
// The per-row helpers are called with literal row indices (dot_block, accumulate_block): every private-array index is
// then a compile-time constant, which lavapipe keeps in registers; a variable index becomes a per-lane gather.
// Template parameters: SG, ROWS_PER_LANE, STREAM_ROWS (4, 8 or more, at most SG), HEAD_DIM.
const SG: u32 = 8u;
const ROWS_PER_LANE: u32 = 2u;
const STREAM_ROWS: u32 = 4u;
const CHUNKS_PER_LANE: u32 = (HEAD_VEC + SG - 1u) / SG;
const VEC_LOADS: bool = HEAD_DIM % 4u == 0u;

@group(0) @binding(15) var<storage, read> q4: array<vec4f>;
@group(0) @binding(16) var<storage, read> k4: array<vec4f>;
@group(0) @binding(17) var<storage, read> v4: array<vec4f>;
@group(0) @binding(18) var<storage, read> grad_out4: array<vec4f>;
// vec4 views of the outputs; attention.ts binds the tensor to either the scalar or the vec4 binding (per VEC_LOADS)
// and a placeholder to the other, since one buffer may not be bound twice where one binding is writable
@group(0) @binding(19) var<storage, read_write> out4: array<vec4f>;
@group(0) @binding(20) var<storage, read_write> grad_q4: array<vec4f>;
@group(0) @binding(21) var<storage, read_write> grad_k4: array<vec4f>;
@group(0) @binding(22) var<storage, read_write> grad_v4: array<vec4f>;

alias OwnRows = array<array<vec4f, HEAD_VEC>, ROWS_PER_LANE>;
alias StreamBlock = array<array<vec4f, CHUNKS_PER_LANE>, STREAM_ROWS>;
alias PairBlock = array<array<f32, STREAM_ROWS>, ROWS_PER_LANE>;

// per-lane state (private = per invocation; module scope so the helpers below reach it without copies)
var<private> own_a: OwnRows;     // q (forward, dq) or k (dk/dv), pre-scaled
var<private> own_b: OwnRows;     // grad_out (dq) or v (dk/dv)
var<private> acc_a: OwnRows;     // out (forward), dq, or dk
var<private> acc_b: OwnRows;     // dv
var<private> stream_a: StreamBlock;  // this lane's chunks of the streamed k (forward, dq) or q (dk/dv)
var<private> stream_b: StreamBlock;  // ... of v (forward, dq) or grad_out (dk/dv)
var<private> pair_a: PairBlock;  // per (own row, streamed row): scores, then probabilities or dS
var<private> pair_b: PairBlock;  // dP, then probabilities (dk/dv)

// chunk c (elements 4c..4c+3, zero past HEAD_DIM) of the row that starts at element `base`
fn chunk_q(base: u32, c: u32) -> vec4f {
  if (VEC_LOADS) { return q4[(p.q_base + base) / 4u + c]; }
  var x = vec4f(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { x[e] = q[p.q_base + base + 4u * c + e]; } }
  return x;
}
fn chunk_k(base: u32, c: u32) -> vec4f {
  if (VEC_LOADS) { return k4[(p.k_base + base) / 4u + c]; }
  var x = vec4f(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { x[e] = k[p.k_base + base + 4u * c + e]; } }
  return x;
}
fn chunk_v(base: u32, c: u32) -> vec4f {
  if (VEC_LOADS) { return v4[(p.v_base + base) / 4u + c]; }
  var x = vec4f(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { x[e] = v[p.v_base + base + 4u * c + e]; } }
  return x;
}
fn chunk_grad_out(base: u32, c: u32) -> vec4f {
  if (VEC_LOADS) { return grad_out4[base / 4u + c]; }
  var x = vec4f(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { x[e] = grad_out[base + 4u * c + e]; } }
  return x;
}

// store chunk c (elements past HEAD_DIM dropped) of the output row that starts at element `base`
fn store_out(base: u32, c: u32, x: vec4f) {
  if (VEC_LOADS) { out4[base / 4u + c] = x; return; }
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { out[base + 4u * c + e] = x[e]; } }
}
fn store_grad_q(base: u32, c: u32, x: vec4f) {
  if (VEC_LOADS) { grad_q4[(p.q_base + base) / 4u + c] = x; return; }
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { grad_q[p.q_base + base + 4u * c + e] = x[e]; } }
}
fn store_grad_k(base: u32, c: u32, x: vec4f) {
  if (VEC_LOADS) { grad_k4[(p.k_base + base) / 4u + c] = x; return; }
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { grad_k[p.k_base + base + 4u * c + e] = x[e]; } }
}
fn store_grad_v(base: u32, c: u32, x: vec4f) {
  let at = p.v_base + base;
  if (PACKED_GRAD_KV) {
    if (VEC_LOADS) { grad_k4[at / 4u + c] = x; return; }
    for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { grad_k[at + 4u * c + e] = x[e]; } }
    return;
  }
  if (VEC_LOADS) { grad_v4[at / 4u + c] = x; return; }
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < HEAD_DIM) { grad_v[at + 4u * c + e] = x[e]; } }
}

fn hsum(x: vec4f) -> f32 { return (x.x + x.y) + (x.z + x.w); }

// the sequence position of own row r of this lane
fn own_row(row_block: u32, r: u32, lane: u32) -> u32 { return row_block * SG * ROWS_PER_LANE + r * SG + lane; }

// this lane's chunks of k and v (into stream_a, stream_b) for keys start..start+STREAM_ROWS (past T: clamped, callers
// mask)
fn stream_keys(b: u32, h: u32, start: u32, lane: u32) {
  for (var j = 0u; j < STREAM_ROWS; j++) {
    let base = in_offset(b, min(start + j, p.seq - 1u), h);
    for (var s = 0u; s < CHUNKS_PER_LANE; s++) {
      let c = min(s * SG + lane, HEAD_VEC - 1u);
      stream_a[j][s] = chunk_k(base, c);
      stream_b[j][s] = chunk_v(base, c);
    }
  }
}

// this lane's chunks of q and grad_out (into stream_a, stream_b) for queries start..start+STREAM_ROWS
fn stream_queries(b: u32, h: u32, start: u32, lane: u32) {
  for (var i = 0u; i < STREAM_ROWS; i++) {
    let t = min(start + i, p.seq - 1u);
    for (var s = 0u; s < CHUNKS_PER_LANE; s++) {
      let c = min(s * SG + lane, HEAD_VEC - 1u);
      stream_a[i][s] = chunk_q(in_offset(b, t, h), c);
      stream_b[i][s] = chunk_grad_out(row_offset(b, t, h), c);
    }
  }
}

// (*pairs)[r][j] = own row r . streamed row j (the rows in *own, the streamed chunks in *streamed)
fn dot_streamed(own: ptr<private, OwnRows>, streamed: ptr<private, StreamBlock>, pairs: ptr<private, PairBlock>, j: u32) {
  // zeroed explicitly: on lavapipe a `var` declared without initializer kept its value from the previous call
  var part: array<vec4f, ROWS_PER_LANE>;
  for (var r = 0u; r < ROWS_PER_LANE; r++) { part[r] = vec4f(0.0); }
  for (var c = 0u; c < HEAD_VEC; c++) {
    let x = subgroupShuffle((*streamed)[j][c / SG], c % SG);
    for (var r = 0u; r < ROWS_PER_LANE; r++) { part[r] = fma((*own)[r][c], x, part[r]); }
  }
  for (var r = 0u; r < ROWS_PER_LANE; r++) { (*pairs)[r][j] = hsum(part[r]); }
}

// (*acc)[r] += (*weights)[r][j] * streamed row j
fn accumulate_streamed(acc: ptr<private, OwnRows>, weights: ptr<private, PairBlock>, streamed: ptr<private, StreamBlock>, j: u32) {
  for (var c = 0u; c < HEAD_VEC; c++) {
    let x = subgroupShuffle((*streamed)[j][c / SG], c % SG);
    for (var r = 0u; r < ROWS_PER_LANE; r++) { (*acc)[r][c] = fma(vec4f((*weights)[r][j]), x, (*acc)[r][c]); }
  }
}

// The hand-unrolled loops over the STREAM_ROWS streamed rows of a block (4, 8 or more; see attention.ts).
fn dot_block(own: ptr<private, OwnRows>, streamed: ptr<private, StreamBlock>, pairs: ptr<private, PairBlock>) {
  dot_streamed(own, streamed, pairs, 0u); dot_streamed(own, streamed, pairs, 1u);
  dot_streamed(own, streamed, pairs, 2u); dot_streamed(own, streamed, pairs, 3u);
  if (STREAM_ROWS > 4u) {
    dot_streamed(own, streamed, pairs, 4u); dot_streamed(own, streamed, pairs, 5u);
    dot_streamed(own, streamed, pairs, 6u); dot_streamed(own, streamed, pairs, 7u);
  }
  if (STREAM_ROWS > 8u) {
    for (var j = 8u; j < STREAM_ROWS; j++) { dot_streamed(own, streamed, pairs, j); }
  }
}
fn accumulate_block(acc: ptr<private, OwnRows>, weights: ptr<private, PairBlock>, streamed: ptr<private, StreamBlock>) {
  accumulate_streamed(acc, weights, streamed, 0u); accumulate_streamed(acc, weights, streamed, 1u);
  accumulate_streamed(acc, weights, streamed, 2u); accumulate_streamed(acc, weights, streamed, 3u);
  if (STREAM_ROWS > 4u) {
    accumulate_streamed(acc, weights, streamed, 4u); accumulate_streamed(acc, weights, streamed, 5u);
    accumulate_streamed(acc, weights, streamed, 6u); accumulate_streamed(acc, weights, streamed, 7u);
  }
  if (STREAM_ROWS > 8u) {
    for (var j = 8u; j < STREAM_ROWS; j++) { accumulate_streamed(acc, weights, streamed, j); }
  }
}

// in_offset of own row r of this lane (clamped to the last row: finite data whose results are not stored)
fn own_base(b: u32, h: u32, row_block: u32, r: u32, lane: u32) -> u32 {
  return in_offset(b, min(own_row(row_block, r, lane), p.seq - 1u), h);
}

// REL_BIAS: pair_a[r][j] += gate[r] * table(own row r, key start + j), for the forward and dq kernels
fn add_bias_own_queries(h: u32, row_block: u32, start: u32, lane: u32, gate: ptr<function, array<f32, ROWS_PER_LANE>>) {
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let query = min(own_row(row_block, r, lane), p.seq - 1u);
    for (var j = 0u; j < STREAM_ROWS; j++) {
      pair_a[r][j] += (*gate)[r] * rel_table(h, query, min(start + j, p.seq - 1u));
    }
  }
}

// The subgroup kernels' flush_diagonals, without workgroup memory or barriers (a barrier here makes lavapipe save and
// restore every lane's private rows: measured +30% on forward+backward at T=1000): pair (own row r of lane l, key
// start + j) holds gate * dS in pair_b[r][j] and lies on diagonal d = j - (r * SG + l) + rows - 1; the lane that owns
// diagonal d (as in zero_diagonals) gathers its pairs with subgroupShuffle, one per (r, j).
fn flush_diagonals_sg(base: u32, row0: u32, start: u32, lane: u32) {
  let rows = SG * ROWS_PER_LANE;
  let window = rows + STREAM_ROWS - 1u;
  let e_lo = i32(start + p.seq) - i32(row0 + rows);
  // the same number of iterations on every lane: the shuffles need uniform control flow
  for (var k = 0u; k < (window + SG - 1u) / SG; k++) {
    let rho = lane + k * SG;
    let d = ((i32(rho) - e_lo) % i32(window) + i32(window)) % i32(window);
    var sum = 0.0;
    for (var r = 0u; r < ROWS_PER_LANE; r++) {
      for (var j = 0u; j < STREAM_ROWS; j++) {
        let src = i32(j + rows - 1u - r * SG) - d;
        let v = subgroupShuffle(pair_b[r][j], u32(clamp(src, 0, i32(SG) - 1)));
        sum += select(0.0, v, src >= 0 && src < i32(SG));
      }
    }
    let e = e_lo + d;
    if (rho < window && e >= 0 && e < i32(rel_span())) { rel_bias_grad[base + u32(e)] += sum; }
  }
}

fn clear_rows(acc: ptr<private, OwnRows>) {
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    for (var c = 0u; c < HEAD_VEC; c++) { (*acc)[r][c] = vec4f(0.0); }
  }
}

// one workgroup per (block of SG * ROWS_PER_LANE queries, b * H + h)
@compute @workgroup_size(SG)
fn attention_forward_sg(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let base = own_base(b, h, wg.x, r, lane);
    for (var c = 0u; c < HEAD_VEC; c++) { own_a[r][c] = chunk_q(base, c) * p.scale; }
  }
  clear_rows(&acc_a);
  var m: array<f32, ROWS_PER_LANE>;
  var l: array<f32, ROWS_PER_LANE>;
  var gate: array<f32, ROWS_PER_LANE>;
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    m[r] = NEG_BIG;
    l[r] = 0.0;
    gate[r] = 0.0;
    if (REL_BIAS) { gate[r] = rel_gate(b, h, min(own_row(wg.x, r, lane), p.seq - 1u)); }
  }
  for (var start = 0u; start < p.seq; start += STREAM_ROWS) {
    stream_keys(b, h, start, lane);
    let lane_key_real = select(0.0, 1.0, key_is_real(b, start + lane));
    dot_block(&own_a, &stream_a, &pair_a);
    if (REL_BIAS) { add_bias_own_queries(h, wg.x, start, lane, &gate); }
    for (var r = 0u; r < ROWS_PER_LANE; r++) {
      var m_new = m[r];
      for (var j = 0u; j < STREAM_ROWS; j++) {
        pair_a[r][j] = select(NEG_BIG, pair_a[r][j], subgroupShuffle(lane_key_real, j) != 0.0);
        m_new = max(m_new, pair_a[r][j]);
      }
      let alpha = exp(m[r] - m_new);
      var sum = 0.0;
      for (var j = 0u; j < STREAM_ROWS; j++) {
        let prob = select(0.0, exp(pair_a[r][j] - m_new), pair_a[r][j] != NEG_BIG);
        pair_a[r][j] = prob;
        sum += prob;
      }
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
      // the running max rarely moves after the first blocks: skip the rescale when no lane needs it
      if (alpha != 1.0) {
        for (var c = 0u; c < HEAD_VEC; c++) { acc_a[r][c] *= alpha; }
      }
    }
    if (DROPOUT) {
      // l got the undropped sums; only the values see the dropped probabilities (a loop nest of its own: inside the
      // one above, the bigger body kept lavapipe from unrolling it: forward 4.5x slower at T=1000)
      for (var r = 0u; r < ROWS_PER_LANE; r++) {
        let row_counter = dropout_counter(b, h, own_row(wg.x, r, lane), start);
        for (var j = 0u; j < STREAM_ROWS; j++) {
          pair_a[r][j] = select(0.0, pair_a[r][j] * p.keep_scale, dropout_keep_counter(row_counter + j));
        }
      }
    }
    accumulate_block(&acc_a, &pair_a, &stream_b);
  }
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let t = own_row(wg.x, r, lane);
    if (t < p.seq) {
      let base = row_offset(b, t, h);
      let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
      for (var c = 0u; c < HEAD_VEC; c++) { store_out(base, c, acc_a[r][c] * inv); }
      lse[(b * p.heads + h) * p.seq + t] = select(POS_BIG, m[r] + log(l[r]), l[r] > 0.0);
    }
  }
}

// dq for SG * ROWS_PER_LANE queries of one (b, h); keys and values streamed.
@compute @workgroup_size(SG)
fn attention_backward_q_sg(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let base = own_base(b, h, wg.x, r, lane);
    for (var c = 0u; c < HEAD_VEC; c++) {
      own_a[r][c] = chunk_q(base, c) * p.scale;
      own_b[r][c] = chunk_grad_out(row_offset(b, min(own_row(wg.x, r, lane), p.seq - 1u), h), c);
    }
  }
  clear_rows(&acc_a);
  var row_lse: array<f32, ROWS_PER_LANE>;
  var row_d: array<f32, ROWS_PER_LANE>;
  var gate: array<f32, ROWS_PER_LANE>;
  var dgate: array<f32, ROWS_PER_LANE>;
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let stat = (b * p.heads + h) * p.seq + min(own_row(wg.x, r, lane), p.seq - 1u);
    row_lse[r] = lse_saved[stat];
    row_d[r] = row_dot_saved[stat];
    gate[r] = 0.0;
    dgate[r] = 0.0;
    if (REL_BIAS) { gate[r] = rel_gate(b, h, min(own_row(wg.x, r, lane), p.seq - 1u)); }
  }
  let block_rows = SG * ROWS_PER_LANE;
  if (REL_BIAS) { zero_diagonals(rel_partial_base(b, h, wg.x), block_rows + STREAM_ROWS - 1u, lane, SG); }
  for (var start = 0u; start < p.seq; start += STREAM_ROWS) {
    stream_keys(b, h, start, lane);
    let lane_key_real = key_is_real(b, start + lane);
    dot_block(&own_a, &stream_a, &pair_a);
    dot_block(&own_b, &stream_b, &pair_b);
    if (REL_BIAS) { add_bias_own_queries(h, wg.x, start, lane, &gate); }
    for (var r = 0u; r < ROWS_PER_LANE; r++) {
      for (var j = 0u; j < STREAM_ROWS; j++) {
        let real = subgroupShuffle(select(0.0, 1.0, lane_key_real), j) != 0.0 && row_lse[r] != POS_BIG;
        let prob = select(0.0, exp(pair_a[r][j] - row_lse[r]), real);
        var dp = pair_b[r][j];
        if (DROPOUT) { dp = select(0.0, dp * p.keep_scale, dropout_keep(b, h, own_row(wg.x, r, lane), start + j)); }
        pair_a[r][j] = prob * (dp - row_d[r]);
      }
    }
    if (REL_BIAS) {
      // dgate from the table values (reloaded: cached, and cheaper than keeping them live across the dots); gate * dS
      // of this lane's rows into pair_b (free after the dS step), then the step's diagonal sums to the partial row
      for (var r = 0u; r < ROWS_PER_LANE; r++) {
        let t = own_row(wg.x, r, lane);
        let query = min(t, p.seq - 1u);
        for (var j = 0u; j < STREAM_ROWS; j++) {
          dgate[r] += pair_a[r][j] * rel_table(h, query, min(start + j, p.seq - 1u));
          pair_b[r][j] = select(0.0, gate[r] * pair_a[r][j], t < p.seq);
        }
      }
      flush_diagonals_sg(rel_partial_base(b, h, wg.x), wg.x * block_rows, start, lane);
    }
    accumulate_block(&acc_a, &pair_a, &stream_a);
  }
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let t = own_row(wg.x, r, lane);
    if (t < p.seq) {
      let base = in_offset(b, t, h);
      for (var c = 0u; c < HEAD_VEC; c++) { store_grad_q(base, c, acc_a[r][c] * p.scale); }
      if (REL_BIAS) { rel_bias_grad[(b * p.heads + h) * p.seq + t] = dgate[r]; }
    }
  }
}

// dk, dv for SG * ROWS_PER_LANE keys of one (b, h); queries, grad_out, lse and row_dot streamed. A padded key's
// probabilities are all 0, so it gets dk = dv = 0.
@compute @workgroup_size(SG)
fn attention_backward_kv_sg(@builtin(subgroup_invocation_id) lane: u32, @builtin(workgroup_id) wg: vec3u) {
  let b = wg.y / p.heads;
  let h = wg.y % p.heads;
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let base = own_base(b, h, wg.x, r, lane);
    for (var c = 0u; c < HEAD_VEC; c++) {
      own_a[r][c] = chunk_k(base, c) * p.scale;
      own_b[r][c] = chunk_v(base, c);
    }
  }
  clear_rows(&acc_a);
  clear_rows(&acc_b);
  var own_real: array<bool, ROWS_PER_LANE>;
  for (var r = 0u; r < ROWS_PER_LANE; r++) { own_real[r] = key_is_real(b, own_row(wg.x, r, lane)); }
  for (var start = 0u; start < p.seq; start += STREAM_ROWS) {
    stream_queries(b, h, start, lane);
    // query start+lane's lse (+BIG past T or when all its keys are padding: zero probability) and row dot
    let stat = (b * p.heads + h) * p.seq + min(start + lane, p.seq - 1u);
    let lane_lse = select(POS_BIG, lse_saved[stat], start + lane < p.seq);
    let lane_d = row_dot_saved[stat];
    var lane_gate = 0.0;
    if (REL_BIAS) { lane_gate = rel_gate(b, h, min(start + lane, p.seq - 1u)); }
    dot_block(&own_a, &stream_a, &pair_a);
    dot_block(&own_b, &stream_b, &pair_b);
    for (var i = 0u; i < STREAM_ROWS; i++) {
      let query_lse = subgroupShuffle(lane_lse, i);
      let query_d = subgroupShuffle(lane_d, i);
      var query_gate = 0.0;
      if (REL_BIAS) { query_gate = subgroupShuffle(lane_gate, i); }
      for (var r = 0u; r < ROWS_PER_LANE; r++) {
        if (REL_BIAS) {
          let key = min(own_row(wg.x, r, lane), p.seq - 1u);
          pair_a[r][i] += query_gate * rel_table(h, min(start + i, p.seq - 1u), key);
        }
        let prob = select(0.0, exp(pair_a[r][i] - query_lse), own_real[r] && query_lse != POS_BIG);
        var dp = pair_b[r][i];
        var prob_dropped = prob;
        if (DROPOUT) {
          let kept = dropout_keep(b, h, start + i, own_row(wg.x, r, lane));
          dp = select(0.0, dp * p.keep_scale, kept);
          prob_dropped = select(0.0, prob * p.keep_scale, kept);
        }
        pair_a[r][i] = prob * (dp - query_d);
        pair_b[r][i] = prob_dropped;
      }
    }
    accumulate_block(&acc_b, &pair_b, &stream_b);
    accumulate_block(&acc_a, &pair_a, &stream_a);
  }
  for (var r = 0u; r < ROWS_PER_LANE; r++) {
    let t = own_row(wg.x, r, lane);
    if (t < p.seq) {
      let base = in_offset(b, t, h);
      for (var c = 0u; c < HEAD_VEC; c++) {
        store_grad_k(base, c, acc_a[r][c] * p.scale);
        store_grad_v(base, c, acc_b[r][c]);
      }
    }
  }
}
