// Multi-head self-attention with a key-padding mask, flash style: the forward keeps an online softmax per query and
// saves its logsumexp; the backward recomputes the probabilities from it (FlashAttention-2: row dots, then dk/dv with
// workgroups owning key blocks and dq with workgroups owning query blocks, no atomics). Optional dropout on the
// probabilities (Hugging Face's attention_dropout) is hashed from a counter per (b, h, query, key), so backward
// regenerates the mask instead of storing it. Optional WavLM relative position bias (gate[b, h, query] times an embedding
// row picked by the T5 bucket of key - query) is added to the scores inside the same kernels, with gradients for the
// embedding and the gate. The math and both kernel sets are described in kernels/attention.wgsl.
import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import type { Runtime } from '../runtime/runtime.js';
import { record, nextRandom, backward, noGrad, withGrad } from '../autograd.js';
import { tuneInput } from './matmul.js';
import { chooseConfig, bucket, type Candidate } from '../runtime/tune.js';
import { dropoutThreshold } from './activation.js';
import { bytesOf, ceilDiv, grid1d } from './grid.js';

// The file's tail holds the subgroup kernels: the portable module stops before it, so it compiles without the feature.
const SUBGROUP_SECTION = '// ==== subgroup kernels';
export const attentionKernel = defineKernel('attention', source.slice(0, source.indexOf(SUBGROUP_SECTION)));
export const attentionSubgroupKernel = defineKernel('attention_subgroups', `enable subgroups;\n${source}`);

/** Portable kernels: rows owned per workgroup (one per invocation), rows streamed per workgroup-memory tile. */
const BLOCK_ROWS = 64;
const BLOCK_STREAM = 32;
/**
 * Subgroup kernels: rows owned per lane and rows streamed per hand-unrolled block (capped at the subgroup size). More
 * rows per lane means fewer loads per flop on lavapipe, but a bigger unrolled shader, and LLVM's compile time grows
 * faster than its size (D=64, cold shader cache: ~8 s for this forward, ~20 s for the two backward kernels; lavapipe
 * caches them on disk). Measured at T=1000 on lavapipe: forward 2 -> 4 rows per lane +25%, backward 2 -> 3 +20%.
 */
const SUBGROUP_FORWARD = { rowsPerLane: 4, streamRows: 4 };
const SUBGROUP_BACKWARD = { rowsPerLane: 3, streamRows: 4 };
/** Largest head dim: two [BLOCK_STREAM, D] f32 tiles of the default portable tile must fit 32 KiB of workgroup memory. */
const MAX_HEAD_DIM = 8192 / BLOCK_STREAM / 2;

/**
 * One configuration of a pass's kernels (the forward kernel, or the dq and dk/dv kernels of the backward): on the
 * subgroup path rows per lane and streamed rows per block, on the portable path rows per workgroup (= invocations) and
 * streamed rows per workgroup-memory tile. What the autotuner chooses between, per pass and shape class.
 */
export interface AttentionTile {
  path: 'subgroup' | 'portable';
  rowsPerLane: number;
  streamRows: number;
  blockRows: number;
  blockStream: number;
}
export type AttentionPass = 'forward' | 'backward';

const tileId = (t: AttentionTile) => (t.path === 'subgroup' ? `sg-r${t.rowsPerLane}-s${t.streamRows}` : `wg-${t.blockRows}x${t.blockStream}`);
const subgroupTile = (rowsPerLane: number, streamRows: number): AttentionTile => ({ path: 'subgroup', rowsPerLane, streamRows, blockRows: BLOCK_ROWS, blockStream: BLOCK_STREAM });
const portableTile = (blockRows: number, blockStream: number): AttentionTile => ({ path: 'portable', ...SUBGROUP_FORWARD, blockRows, blockStream });

/**
 * Every configuration any adapter may get, default first (tests run each against the float64 reference). Subgroup:
 * fewer rows per lane (less state, smaller shaders) and 8 streamed rows (fewer loop trips). Portable (GPUs): smaller
 * and larger workgroups, shallower tiles; the streamed rows never exceed the workgroup's (each invocation loads one
 * row's scalars).
 */
export function allAttentionTiles(pass: AttentionPass, path: AttentionTile['path']): AttentionTile[] {
  if (path === 'subgroup') {
    const d = pass === 'forward' ? SUBGROUP_FORWARD : SUBGROUP_BACKWARD;
    return [subgroupTile(d.rowsPerLane, d.streamRows), subgroupTile(2, 4), subgroupTile(d.rowsPerLane, 8)];
  }
  return [portableTile(BLOCK_ROWS, BLOCK_STREAM), portableTile(32, 32), portableTile(128, 16), portableTile(64, 16)];
}

/** Workgroup floats of the portable kernels: two [stream, D] tiles, three per-row scalars, and the dq kernel's gate*dS block with the bias. */
function portableWorkgroupBytes(t: AttentionTile, D: number, bias: boolean): number {
  return 4 * (2 * t.blockStream * D + 3 * t.blockStream + (bias ? t.blockRows * t.blockStream : 1));
}

/** The candidates that fit this adapter's limits for head dim D (and the bias's workgroup block). */
export function attentionCandidates(rt: Runtime, pass: AttentionPass, path: AttentionTile['path'], D: number, bias: boolean): Candidate<AttentionTile>[] {
  const fits = (t: AttentionTile) =>
    t.path === 'subgroup' ||
    (t.blockRows <= rt.limits.maxComputeInvocationsPerWorkgroup && t.blockRows <= rt.limits.maxComputeWorkgroupSizeX &&
      t.blockStream <= t.blockRows && portableWorkgroupBytes(t, D, bias) <= rt.limits.maxComputeWorkgroupStorageSize);
  return allAttentionTiles(pass, path).filter(fits).map((config) => ({ id: tileId(config), config }));
}

/** Tests and the tuner: a tile forced for a pass (null: tuned / cached / default). */
export const attentionTiles: { forward: AttentionTile | null; backward: AttentionTile | null } = { forward: null, backward: null };

/**
 * The tile a pass uses: forced, else the tuner's for the shape class (T, batch x heads bucketed; D, the bias exact:
 * they change which tiles fit). Dropout, masks and the packed layout do not enter the class: the tuner times plain
 * attention (drawing no random numbers), and its winner serves those variants too.
 */
function attentionTileFor(rt: Runtime, pass: AttentionPass, path: AttentionTile['path'], B: number, T: number, heads: number, D: number, bias: boolean): AttentionTile {
  const forced = attentionTiles[pass];
  if (forced) {
    if (forced.path !== path) throw new Error(`attention: the forced ${pass} tile is for the ${forced.path} kernels, but the ${path} ones run here`);
    return forced;
  }
  const candidates = attentionCandidates(rt, pass, path, D, bias);
  if (!candidates.length) {
    throw new Error(`attention: head dim ${D}${bias ? ' with a relative position bias' : ''} fits none of the ${path} kernels' tiles in this adapter's ${rt.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`);
  }
  // the hand-picked tile, or the first that fits when it does not (large D with the bias)
  const def = candidates.find((c) => c.id === tileId(allAttentionTiles(pass, path)[0])) ?? candidates[0];
  if (candidates.length === 1) return def.config;
  const shapeClass = `${pass} ${path} d${D} t${bucket(T)} bh${bucket(B * heads)}${bias ? ' bias' : ''}`;
  return chooseConfig(rt, 'attention', shapeClass, candidates, def.id, () => ({
    shape: `${pass} B=${B} T=${T} ${heads}x${D}${bias ? ' (tuned without the bias)' : ''}`,
    // forward: QK^T and PV; backward (forward + backward timed): those plus the backward's five products
    flops: (pass === 'forward' ? 4 : 14) * B * heads * T * T * D,
    prepare: () => attentionTuneProblem(rt, pass, B, T, heads, D),
  }));
}

/**
 * Random q, k, v of the class's representative shape; run(tile) records plain attention with the tile forced for the
 * pass (the backward class: forward with its own tuned tile, then backward with the candidate).
 */
function attentionTuneProblem(rt: Runtime, pass: AttentionPass, B: number, T: number, heads: number, D: number) {
  const C = heads * D;
  const [q, k, v, gy] = [1, 2, 3, 4].map((seed) => tuneInput(rt, [B, T, C], 'f32', `tune.attention.${seed}`, seed));
  return {
    run: (tile: AttentionTile) => {
      const before = attentionTiles[pass];
      attentionTiles[pass] = tile;
      try {
        if (pass === 'forward') {
          noGrad(() => attention(q, k, v, { heads })).dispose();
          return;
        }
        withGrad(() => {
          for (const t of [q, k, v]) t.requiresGrad = true;
          const out = attention(q, k, v, { heads });
          backward(out, gy);
          out.dispose();
          for (const t of [q, k, v]) {
            t.grad?.dispose();
            t.grad = null;
            t.requiresGrad = false;
          }
        });
      } finally {
        attentionTiles[pass] = before;
      }
    },
    dispose: () => {
      for (const t of [q, k, v, gy]) t.dispose();
    },
  };
}

/**
 * WavLM's gated relative position bias: score[b, h, i, j] += gate[b, h, i] * embedding[bucket(j - i), h], bucket()
 * the T5 bidirectional bucket of Hugging Face's WavLMAttention._relative_positions_bucket over the padded length.
 */
export interface RelativePositionBias {
  /** f32 [numBuckets, H] (layer 0's rel_attn_embed.weight); gets a gradient when it requires one */
  embedding: Tensor;
  /** f32 [B, H, T], per (batch, head, query); gets a gradient when it requires one */
  gate: Tensor;
  numBuckets: number;
  maxDistance: number;
}

export interface AttentionOptions {
  heads: number;
  /** i32 [B, T]: 1 = real frame, 0 = padding (those keys get no weight) */
  keyMask?: Tensor | null;
  /** defaults to 1/sqrt(D) */
  scale?: number;
  /**
   * Dropout probability on the attention probabilities (pass 0 outside training; default 0). Kept ones are scaled
   * by 1/(1-p); the softmax itself is of the undropped scores. Each call reserves B*H*T*T counters of the random
   * stream with nextRandom() (counters wrap mod 2^32: beyond 2^32 per call, masks would repeat).
   */
  dropout?: number;
  relativeBias?: RelativePositionBias | null;
}

/** The bucket parameters the kernels get, checked: numBuckets >= 4 (max_exact >= 1), maxDistance > max_exact. */
function bucketParams(numBuckets: number, maxDistance: number): { rel_buckets: number; rel_half_buckets: number; rel_max_exact: number; rel_log_ratio: number } {
  if (!Number.isInteger(numBuckets) || numBuckets < 4 || numBuckets > 1 << 20) throw new Error(`relative position bias: numBuckets must be an integer in 4..2^20, got ${numBuckets}`);
  const half = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(half / 2);
  if (!Number.isInteger(maxDistance) || maxDistance <= maxExact || maxDistance > 2 ** 30) {
    throw new Error(`relative position bias: maxDistance must be an integer above max_exact = ${maxExact}, got ${maxDistance}`);
  }
  // PyTorch divides the f32 log by the Python float log(max_distance / max_exact): the divisor becomes f32
  return { rel_buckets: numBuckets, rel_half_buckets: half, rel_max_exact: maxExact, rel_log_ratio: Math.fround(Math.log(maxDistance / maxExact)) };
}

/**
 * Hugging Face's WavLM bucket of relative position delta = key - query, in the f32 steps PyTorch takes (JS reference;
 * the kernels compute their own).
 */
export function relativePositionBucket(delta: number, numBuckets: number, maxDistance: number): number {
  const { rel_half_buckets: nb, rel_max_exact: maxExact, rel_log_ratio: logRatio } = bucketParams(numBuckets, maxDistance);
  const side = delta > 0 ? nb : 0;
  const n = Math.abs(delta);
  if (n < maxExact) return side + n;
  const f = Math.fround;
  const large = f(maxExact + f(f(f(Math.log(f(n / maxExact))) / logRatio) * (nb - maxExact)));
  return side + Math.min(Math.trunc(large), nb - 1);
}

/** The buckets the kernel computes for relative positions -(T-1)..T-1, as i32 [2T-1] (index delta + T - 1). */
export function relativePositionBuckets(rt: Runtime, T: number, numBuckets: number, maxDistance: number): Tensor {
  if (!Number.isInteger(T) || T < 1) throw new Error(`relativePositionBuckets: T must be a positive integer, got ${T}`);
  const span = 2 * T - 1;
  const out = Tensor.empty(rt, [span], 'i32', 'attention.relative_buckets');
  const params = { ...plainParams(1, T, 1), ...bucketParams(numBuckets, maxDistance), rel_blocks: 1 };
  rt.dispatch(attentionKernel, 'relative_position_buckets', { p: params, bucket_of: out }, grid1d(span, 64), { cost: { bytes: out.byteLength } });
  return out;
}

/**
 * WavLM's gate of the relative bias, [B, H, T]: x [B, T, H*D] is the attention input (before the q/k/v projections),
 * split per head; r = linear(x[b, t, h, :], weight [8, D], bias [8]) (gru_rel_pos_linear); a, c = sigmoid of the sums of
 * r's first and last four; gate[b, h, t] = a * (c * gateConst[h] - 1) + 2, gateConst holding H values
 * (gru_rel_pos_const, any shape such as [1, H, 1, 1]). Gradients for x, weight, bias and gateConst.
 */
export function relativePositionGate(x: Tensor, weight: Tensor, bias: Tensor, gateConst: Tensor, heads: number): Tensor {
  if (x.dtype !== 'f32' || x.shape.length !== 3) throw new Error(`relativePositionGate: x must be f32 [B, T, H*D], got ${x.dtype} [${x.shape}]`);
  const [B, T, C] = x.shape;
  if (!Number.isInteger(heads) || heads <= 0 || C % heads !== 0) throw new Error(`relativePositionGate: ${C} channels do not split into ${heads} heads`);
  const D = C / heads;
  const expect = (t: Tensor, name: string, shape: number[], anyShape = false) => {
    const ok = t.dtype === 'f32' && (anyShape ? t.size === shape[0] : t.shape.join() === shape.join());
    if (!ok) throw new Error(`relativePositionGate: ${name} must be f32 ${anyShape ? `with ${shape[0]} values` : `[${shape}]`}, got ${t.dtype} [${t.shape}]`);
  };
  expect(weight, 'weight', [8, D]);
  expect(bias, 'bias', [8]);
  expect(gateConst, 'gateConst', [heads], true);
  const rt = x.rt;
  const gate = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.gate');
  const n = B * heads * T;
  const params = { ...plainParams(B, T, heads), ...NO_REL_BIAS };
  const options = { defines: { HEAD_DIM: `${D}u` } };
  // cost (memory-bound): the gate's 8 x D linear map is 16 flops per input value, far below a GEMM's reuse
  const forwardCost = { bytes: bytesOf(x, weight, bias, gateConst, gate) };
  const inputs = { p: params, gate_x: x, gate_weight: weight, gate_bias: bias, gate_const: gateConst };
  rt.dispatch(attentionKernel, 'relative_gate_forward', { ...inputs, gate_out: gate }, grid1d(n, 64), { ...options, cost: forwardCost });
  return record('relative_gate', gate, [x, weight, bias, gateConst], [x, weight, bias, gateConst], (gradGate, needs) => {
    const dz = Tensor.empty(rt, [n, 3], 'f32', 'attention.gate_dz');
    const gx = Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_gate_x');
    rt.dispatch(attentionKernel, 'relative_gate_backward', { ...inputs, grad_gate_in: gradGate, gate_dz: dz, grad_gate_x: gx }, grid1d(n, 64), { ...options, cost: { bytes: bytesOf(x, weight, bias, gateConst, gradGate, dz, gx) } });
    const gw = Tensor.empty(rt, [8, D], 'f32', 'attention.grad_gate_weight');
    const gb = Tensor.empty(rt, [8], 'f32', 'attention.grad_gate_bias');
    const gk = Tensor.empty(rt, gateConst.shape, 'f32', 'attention.grad_gate_const');
    if (needs[1] || needs[2] || needs[3]) {
      const bindings = { p: params, gate_x: x, gate_dz: dz, grad_gate_weight: gw, grad_gate_bias: gb, grad_gate_const: gk };
      rt.dispatch(attentionKernel, 'relative_gate_backward_params', bindings, [2 * D + 2 + heads], { ...options, cost: { bytes: bytesOf(x, dz, gw, gb, gk) } });
    }
    dz.dispose();
    const keep = (t: Tensor, needed: boolean): Tensor | null => {
      if (needed) return t;
      t.dispose();
      return null;
    };
    return [keep(gx, needs[0]), keep(gw, needs[1]), keep(gb, needs[2]), keep(gk, needs[3])];
  });
}

/**
 * The ungated bias as Hugging Face materialises it, f32 [H, T, T] (row = query), and the buckets, i32 [T, T], for
 * reports and reference checks (no gradient; the attention kernels never build these T x T arrays).
 */
export function relativePositionBiasMatrix(embedding: Tensor, T: number, numBuckets: number, maxDistance: number): { bias: Tensor; buckets: Tensor } {
  if (embedding.dtype !== 'f32' || embedding.shape.length !== 2 || embedding.shape[0] !== numBuckets) {
    throw new Error(`relativePositionBiasMatrix: embedding must be f32 [${numBuckets}, H], got ${embedding.dtype} [${embedding.shape}]`);
  }
  const H = embedding.shape[1];
  const rt = embedding.rt;
  const bucketOf = relativePositionBuckets(rt, T, numBuckets, maxDistance);
  const bias = Tensor.empty(rt, [H, T, T], 'f32', 'attention.position_bias');
  const buckets = Tensor.empty(rt, [T, T], 'i32', 'attention.relative_position_bucket');
  const params = { ...plainParams(1, T, H), ...bucketParams(numBuckets, maxDistance), rel_blocks: 1 };
  const bindings = { p: params, bucket_of: bucketOf, rel_embed: embedding, dense_bias_out: bias, dense_bucket_out: buckets };
  rt.dispatch(attentionKernel, 'relative_bias_dense', bindings, grid1d(H * T * T, 64), { cost: { bytes: bytesOf(bucketOf, embedding, bias, buckets) } });
  bucketOf.dispose();
  return { bias, buckets };
}

/** Params of the kernels with dropout and relative bias off (the q/k/v layout is set by attention() alone). */
function plainParams(batch: number, seq: number, heads: number) {
  return { batch, seq, heads, masked: 0, scale: 1, seed: 0, offset: 0, threshold: 0, keep_scale: 1, qkv_stride: 0, q_base: 0, k_base: 0, v_base: 0 };
}
const NO_REL_BIAS = { rel_buckets: 0, rel_half_buckets: 0, rel_max_exact: 0, rel_log_ratio: 1, rel_blocks: 0 };

let subgroupsAllowed = true;
/** Tests and benches: false forces the portable kernels where the subgroup ones would run. */
export function setAttentionSubgroups(allowed: boolean): void {
  subgroupsAllowed = allowed;
}

/** Whether attention() runs the subgroup kernels on this runtime (as currently allowed). */
export function attentionUsesSubgroups(rt: Runtime): boolean {
  return subgroupKernelSize(rt) !== null;
}

/**
 * The subgroup size the subgroup kernels are built for, or null to use the portable ones. The subgroup kernels are
 * for CPU adapters (lavapipe: see the kernel file) and need a subgroup size fixed at pipeline creation (min == max).
 * GPUs keep the portable kernels, the usual GPU design: there the subgroup kernels' large per-lane state would spill
 * registers (not measured here: no GPU).
 */
/** storage buffers bound by the widest subgroup entry point (attention_backward_kv_sg) */
const SUBGROUP_STORAGE_BUFFERS = 16;

function subgroupKernelSize(rt: Runtime): number | null {
  if (!subgroupsAllowed || !rt.hasSubgroups || !rt.adapter.isCPU) return null;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  const size = info?.subgroupMinSize;
  if (!size || size !== info?.subgroupMaxSize || size < 4 || size > 64) return null;
  // the subgroup backward binds 16 storage buffers (the bias buffers are declared, so bound, even when unused);
  // browsers often allow only the WebGPU default of 8-10 per stage
  if (rt.limits.maxStorageBuffersPerShaderStage < SUBGROUP_STORAGE_BUFFERS) return null;
  return size;
}

/** q, k, v [B, T, H*D] (heads interleaved, as nn.Linear produces them) -> [B, T, H*D]. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  if (q.shape.length !== 3) throw new Error(`attention: q must be [B, T, H*D], got [${q.shape}]`);
  for (const [name, x] of [['k', k], ['v', v]] as const) {
    if (x.shape.join() !== q.shape.join()) throw new Error(`attention: ${name} [${x.shape}] differs from q [${q.shape}]`);
  }
  for (const x of [q, k, v]) if (x.dtype !== 'f32') throw new Error(`attention: ${x.label} is ${x.dtype}; only f32 is supported`);
  const [B, T, C] = q.shape;
  return flashAttention({ packed: false, q, k, v }, B, T, C, opts);
}

/**
 * Attention on one packed projection output qkv [B, T, 3*H*D] (per row: q | k | v, each heads-interleaved; what a
 * linear over the concatenated q, k, v weights gives) -> [B, T, H*D]. The kernels read q, k and v in place and the
 * backward writes one [B, T, 3*H*D] gradient: no slicing and no concatenation on either side.
 */
export function attentionPacked(qkv: Tensor, opts: AttentionOptions): Tensor {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) throw new Error(`attentionPacked: qkv must be [B, T, 3*H*D], got [${qkv.shape}]`);
  if (qkv.dtype !== 'f32') throw new Error(`attentionPacked: ${qkv.label} is ${qkv.dtype}; only f32 is supported`);
  const [B, T, C3] = qkv.shape;
  return flashAttention({ packed: true, q: qkv, k: qkv, v: qkv }, B, T, C3 / 3, opts);
}

/** q, k, v as separate [B, T, C] tensors, or one packed [B, T, 3C] tensor bound as all three. */
type QkvInputs = { packed: false; q: Tensor; k: Tensor; v: Tensor } | { packed: true; q: Tensor; k: Tensor; v: Tensor };

function flashAttention(input: QkvInputs, B: number, T: number, C: number, opts: AttentionOptions): Tensor {
  const { heads } = opts;
  const { q, k, v, packed } = input;
  if (!Number.isInteger(heads) || heads <= 0 || C % heads !== 0) throw new Error(`attention: ${C} channels do not split into ${heads} heads`);
  const D = C / heads;
  if (D > MAX_HEAD_DIM) throw new Error(`attention: head dim ${D} exceeds the supported ${MAX_HEAD_DIM}`);
  const mask = opts.keyMask ?? null;
  if (mask && (mask.dtype !== 'i32' || mask.shape.join() !== [B, T].join())) {
    throw new Error(`attention: keyMask must be i32 [${B}, ${T}], got ${mask.dtype} [${mask.shape}]`);
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const dropout = opts.dropout ?? 0;
  if (!(dropout >= 0 && dropout <= 1)) throw new Error(`attention: dropout must be in [0, 1], got ${dropout}`);
  const bias = opts.relativeBias ?? null;
  const biasParams = bias ? bucketParams(bias.numBuckets, bias.maxDistance) : null;
  if (bias) {
    const { embedding, gate } = bias;
    if (embedding.dtype !== 'f32' || embedding.shape.join() !== [bias.numBuckets, heads].join()) {
      throw new Error(`attention: relativeBias.embedding must be f32 [${bias.numBuckets}, ${heads}], got ${embedding.dtype} [${embedding.shape}]`);
    }
    if (gate.dtype !== 'f32' || gate.shape.join() !== [B, heads, T].join()) {
      throw new Error(`attention: relativeBias.gate must be f32 [${B}, ${heads}, ${T}], got ${gate.dtype} [${gate.shape}]`);
    }
  }
  // drawn before any early return, so the random stream advances the same whatever the sizes
  const random = dropout > 0 ? nextRandom(B * heads * T * T) : { seed: 0, offset: 0 };
  const rt = q.rt;
  const out = Tensor.empty(rt, [B, T, C], 'f32', 'attention');
  const lse = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.lse');
  if (B * T === 0) return out;

  const sg = subgroupKernelSize(rt);
  const path = sg ? 'subgroup' : 'portable';
  const forwardTile = attentionTileFor(rt, 'forward', path, B, T, heads, D, !!bias);
  const backwardTile = attentionTileFor(rt, 'backward', path, B, T, heads, D, !!bias);
  // rows of the dq kernel's blocks: the partial diagonal sums have one row per block
  const dqBlockRows = sg ? sg * backwardTile.rowsPerLane : backwardTile.blockRows;
  const relBlocks = ceilDiv(T, dqBlockRows);
  const span = 2 * T - 1;
  const params = {
    ...plainParams(B, T, heads), masked: mask ? 1 : 0, scale,
    ...random, threshold: dropoutThreshold(dropout), keep_scale: dropout >= 1 ? 0 : 1 / (1 - dropout),
    ...(biasParams ? { ...biasParams, rel_blocks: relBlocks } : NO_REL_BIAS),
    // rows of q, k, v (and of their gradients) and where each starts: see the kernel header
    qkv_stride: packed ? 3 * C : C, q_base: 0, k_base: packed ? C : 0, v_base: packed ? 2 * C : 0,
  };
  // Placeholders bind what a kernel declares but never touches: key_mask without a mask, the bias buffers without a
  // bias, and in the subgroup kernels the view of each tensor (vec4 or scalar) that this D does not use.
  const unusedBuffer = (dtype: 'f32' | 'i32', what: string): Tensor =>
    Tensor.fromData(rt, dtype === 'i32' ? new Int32Array(4) : new Float32Array(4), [4], dtype, `attention.unused_${what}`);
  const keyMask = mask ?? unusedBuffer('i32', 'key_mask');
  // the bias as the kernels read it: [table H x (2T-1) | gate B x H x T]; buckets kept for dE
  let buckets: Tensor | null = null;
  let relBias: Tensor;
  if (bias && biasParams) {
    buckets = Tensor.empty(rt, [span], 'i32', 'attention.relative_buckets');
    rt.dispatch(attentionKernel, 'relative_position_buckets', { p: params, bucket_of: buckets }, grid1d(span, 64), { cost: { bytes: buckets.byteLength } });
    relBias = Tensor.empty(rt, [heads * span + B * heads * T], 'f32', 'attention.relative_bias');
    rt.dispatch(attentionKernel, 'relative_bias_table', { p: params, bucket_of: buckets, rel_embed: bias.embedding, rel_table_out: relBias }, grid1d(heads * span, 64), { cost: { bytes: bytesOf(buckets, bias.embedding) + 4 * heads * span } });
    rt.copy(bias.gate, relBias, B * heads * T * 4, 0, heads * span * 4);
  } else relBias = unusedBuffer('f32', 'rel_bias');
  // DROPOUT and REL_BIAS are template flags: off, their code is not compiled at all
  const flags = { HEAD_DIM: `${D}u`, DROPOUT: dropout > 0 ? 'true' : 'false', REL_BIAS: bias ? 'true' : 'false', PACKED_GRAD_KV: packed ? 'true' : 'false' };
  const portableShape = (tile: AttentionTile) => ({
    options: {
      defines: { ...flags, BLOCK_ROWS: `${tile.blockRows}u`, BLOCK_STREAM: `${tile.blockStream}u`, DIAG_SIZE: `${bias ? tile.blockRows * tile.blockStream : 1}u` },
    },
    blocks: [ceilDiv(T, tile.blockRows), B * heads] as [number, number],
  });
  // the row dot is the same with or without dropout and bias (out already has them): one pipeline for all
  const rowDotOptions = { defines: { HEAD_DIM: `${D}u`, BLOCK_ROWS: `${BLOCK_ROWS}u`, BLOCK_STREAM: `${BLOCK_STREAM}u`, DROPOUT: 'false', REL_BIAS: 'false', DIAG_SIZE: '1u', PACKED_GRAD_KV: 'false' } };
  const subgroupShape = (tile: AttentionTile) => {
    const streamRows = Math.min(tile.streamRows, sg ?? 4);
    const rows = (sg ?? 1) * tile.rowsPerLane;
    return {
      options: {
        defines: {
          // (the portable tile constants are unused by the subgroup kernels: the defaults, one pipeline)
          ...flags, BLOCK_ROWS: `${BLOCK_ROWS}u`, BLOCK_STREAM: `${BLOCK_STREAM}u`,
          SG: `${sg}u`, ROWS_PER_LANE: `${tile.rowsPerLane}u`, STREAM_ROWS: `${streamRows}u`,
          // the subgroup dq kernel reduces its diagonals with shuffles: no workgroup block
          DIAG_SIZE: '1u',
        },
      },
      blocks: [ceilDiv(T, rows), B * heads] as [number, number],
    };
  };
  const subgroupForward = subgroupShape(forwardTile);
  const subgroupBackward = subgroupShape(backwardTile);
  const portableForward = portableShape(forwardTile);
  const portableBackward = portableShape(backwardTile);
  // The subgroup kernels read q, k, v, grad_out through vec4 views when D % 4 == 0 (else through the scalar ones)...
  const unusedVec4 = sg && D % 4 !== 0 ? unusedBuffer('f32', 'vec4') : null;
  const vec4View = (x: Tensor): Tensor => unusedVec4 ?? x;
  // ... and write each output through one of its views; the other gets a placeholder of its own, as writable
  // bindings may not share a buffer (the caller disposes the placeholders once the dispatch is recorded).
  const outputViews = (name: string, x: Tensor, placeholders: Tensor[]): Record<string, Tensor> => {
    const other = unusedBuffer('f32', name);
    placeholders.push(other);
    return D % 4 === 0 ? { [name]: other, [`${name}4`]: x } : { [name]: x, [`${name}4`]: other };
  };

  const inputs = { p: params, q, k, v, key_mask: keyMask, rel_bias: relBias };
  // GEMM-class cost as bench/attention.ts counts it: forward 4*B*H*T*T*D (QK^T and PV); backward 10*B*H*T*T*D, the
  // five matmuls of FlashAttention-2's backward: the dk/dv kernel's QK^T, dO V^T, P^T dO and dS^T Q (8), the dq
  // kernel's dS K (2; its recomputed QK^T and dO V^T are not counted)
  const attnUnit = 2 * B * heads * T * T * D;
  const inputViews = { q4: vec4View(q), k4: vec4View(k), v4: vec4View(v) };
  const forwardPlaceholders: Tensor[] = [];
  if (sg) {
    const bindings = { ...inputs, ...inputViews, ...outputViews('out', out, forwardPlaceholders), lse };
    rt.dispatch(attentionSubgroupKernel, 'attention_forward_sg', bindings, subgroupForward.blocks, { ...subgroupForward.options, cost: { flops: 2 * attnUnit } });
  } else rt.dispatch(attentionKernel, 'attention_forward', { ...inputs, out, lse }, portableForward.blocks, { ...portableForward.options, cost: { flops: 2 * attnUnit } });
  for (const t of forwardPlaceholders) t.dispose();

  const inputTensors = packed ? [q] : [q, k, v];
  const differentiable = bias ? [...inputTensors, bias.embedding, bias.gate] : inputTensors;
  const saved = [...inputTensors, out, lse, keyMask, relBias, ...(buckets ? [buckets] : []), ...(unusedVec4 ? [unusedVec4] : [])];
  const result = record(packed ? 'attention_packed' : 'attention', out, differentiable, saved, (gradOut, needs) => {
    const rowDot = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.row_dot');
    rt.dispatch(attentionKernel, 'attention_backward_row_dot', { p: params, grad_out: gradOut, out_saved: out, row_dot: rowDot }, grid1d(B * T * heads, BLOCK_ROWS), { ...rowDotOptions, cost: { bytes: bytesOf(gradOut, out, rowDot) } });
    // needs of [q, k, v, embedding, gate]; packed, needs[0] is the whole qkv's
    const need = packed ? [needs[0], needs[0], needs[0], needs[1], needs[2]] : needs;
    const needsBias = !!bias && (need[3] || need[4]);
    // Packed: one [B, T, 3C] gradient, its q third written by the dq kernel and its k, v thirds by the dk/dv kernel
    // (PACKED_GRAD_KV: both through grad_k; grad_v gets a placeholder).
    const gqkv = packed && (need[0] || needsBias) ? Tensor.empty(rt, [B, T, 3 * C], 'f32', 'attention.grad_qkv') : null;
    const kvPlaceholder = gqkv ? unusedBuffer('f32', 'grad_v') : null;
    // the dq kernel also makes the bias gradients: it runs when either is needed
    const gq = gqkv ?? (need[0] || needsBias ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_q') : null);
    // one kernel makes dk and dv together
    const gk = gqkv ? (need[1] ? gqkv : null) : need[1] || need[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_k') : null;
    const gv = gqkv ? (need[1] ? kvPlaceholder : null) : need[1] || need[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_v') : null;
    // [dgate B x H x T | partial diagonal sums B x H x blocks x (2T-1)]
    const relBiasGrad = needsBias
      ? Tensor.empty(rt, [B * heads * T + B * heads * relBlocks * span], 'f32', 'attention.relative_bias_grad')
      : unusedBuffer('f32', 'rel_bias_grad');
    const common = { ...inputs, grad_out: gradOut, lse_saved: lse, row_dot_saved: rowDot };
    if (sg) {
      const views = { ...common, ...inputViews, grad_out4: vec4View(gradOut) };
      const placeholders: Tensor[] = [];
      if (gk && gv) {
        const bindings = { ...views, ...outputViews('grad_k', gk, placeholders), ...outputViews('grad_v', gv, placeholders) };
        rt.dispatch(attentionSubgroupKernel, 'attention_backward_kv_sg', bindings, subgroupBackward.blocks, { ...subgroupBackward.options, cost: { flops: 4 * attnUnit } });
      }
      if (gq) {
        const bindings = { ...views, ...outputViews('grad_q', gq, placeholders), rel_bias_grad: relBiasGrad };
        rt.dispatch(attentionSubgroupKernel, 'attention_backward_q_sg', bindings, subgroupBackward.blocks, { ...subgroupBackward.options, cost: { flops: attnUnit } });
      }
      for (const t of placeholders) t.dispose();
    } else {
      if (gk && gv) rt.dispatch(attentionKernel, 'attention_backward_kv', { ...common, grad_k: gk, grad_v: gv }, portableBackward.blocks, { ...portableBackward.options, cost: { flops: 4 * attnUnit } });
      if (gq) rt.dispatch(attentionKernel, 'attention_backward_q', { ...common, grad_q: gq, rel_bias_grad: relBiasGrad }, portableBackward.blocks, { ...portableBackward.options, cost: { flops: attnUnit } });
    }
    rowDot.dispose();
    let gEmbed: Tensor | null = null;
    let gGate: Tensor | null = null;
    if (bias && needsBias && buckets) {
      if (need[3]) {
        gEmbed = Tensor.empty(rt, [bias.numBuckets, heads], 'f32', 'attention.grad_relative_embedding');
        const bindings = { p: params, bucket_of: buckets, rel_bias_grad: relBiasGrad, grad_rel_embed: gEmbed };
        rt.dispatch(attentionKernel, 'relative_bias_grad_embed', bindings, grid1d(bias.numBuckets * heads, 64), { cost: { bytes: bytesOf(buckets, relBiasGrad, gEmbed) } });
      }
      if (need[4]) {
        gGate = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.grad_gate');
        rt.copy(relBiasGrad, gGate, B * heads * T * 4);
      }
    }
    relBiasGrad.dispose();
    kvPlaceholder?.dispose();
    let grads: (Tensor | null)[];
    if (gqkv) {
      if (!need[0]) gqkv.dispose();
      grads = [need[0] ? gqkv : null];
    } else {
      if (!need[0]) gq?.dispose();
      if (!need[1]) gk?.dispose();
      if (!need[2]) gv?.dispose();
      grads = [need[0] ? gq : null, need[1] ? gk : null, need[2] ? gv : null];
    }
    return bias ? [...grads, gEmbed, gGate] : grads;
  });
  // a recorded backward holds its own references to the placeholders and the bias buffers it reads
  if (!mask) keyMask.dispose();
  unusedVec4?.dispose();
  relBias.dispose();
  buckets?.dispose();
  return result;
}
