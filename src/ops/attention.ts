// Multi-head self-attention with a key-padding mask, flash style: the forward keeps an online softmax per query and
// saves its logsumexp; the backward recomputes the probabilities from it (FlashAttention-2: row dots, then dk/dv with
// workgroups owning key blocks and dq with workgroups owning query blocks, no atomics). Optional dropout on the
// probabilities (Hugging Face's attention_dropout) is hashed from a counter per (b, h, query, key), so backward
// regenerates the mask instead of storing it. The math and both kernel sets are described in kernels/attention.wgsl.
import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import type { Runtime } from '../runtime/runtime.js';
import { record, nextRandom } from '../autograd.js';
import { dropoutThreshold } from './activation.js';
import { ceilDiv, grid1d } from './grid.js';

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
/** Largest head dim: two [BLOCK_STREAM, D] f32 tiles must fit 32 KiB of workgroup memory. */
const MAX_HEAD_DIM = 8192 / BLOCK_STREAM / 2;

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
}

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
const SUBGROUP_STORAGE_BUFFERS = 15;

function subgroupKernelSize(rt: Runtime): number | null {
  if (!subgroupsAllowed || !rt.hasSubgroups || !rt.adapter.isCPU) return null;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  const size = info?.subgroupMinSize;
  if (!size || size !== info?.subgroupMaxSize || size < 4 || size > 64) return null;
  // the subgroup backward binds 15 storage buffers; browsers often allow only the WebGPU default of 8-10 per stage
  if (rt.limits.maxStorageBuffersPerShaderStage < SUBGROUP_STORAGE_BUFFERS) return null;
  return size;
}

/** q, k, v [B, T, H*D] (heads interleaved, as nn.Linear produces them) -> [B, T, H*D]. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Tensor {
  const { heads } = opts;
  if (q.shape.length !== 3) throw new Error(`attention: q must be [B, T, H*D], got [${q.shape}]`);
  for (const [name, x] of [['k', k], ['v', v]] as const) {
    if (x.shape.join() !== q.shape.join()) throw new Error(`attention: ${name} [${x.shape}] differs from q [${q.shape}]`);
  }
  for (const x of [q, k, v]) if (x.dtype !== 'f32') throw new Error(`attention: ${x.label} is ${x.dtype}; only f32 is supported`);
  const [B, T, C] = q.shape;
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
  // drawn before any early return, so the random stream advances the same whatever the sizes
  const random = dropout > 0 ? nextRandom(B * heads * T * T) : { seed: 0, offset: 0 };
  const rt = q.rt;
  const out = Tensor.empty(rt, [B, T, C], 'f32', 'attention');
  const lse = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.lse');
  if (B * T === 0) return out;

  const params = {
    batch: B, seq: T, heads, masked: mask ? 1 : 0, scale,
    ...random, threshold: dropoutThreshold(dropout), keep_scale: dropout >= 1 ? 0 : 1 / (1 - dropout),
  };
  // Placeholders bind what a kernel declares but never touches: key_mask without a mask, and in the subgroup kernels
  // the view of each tensor (vec4 or scalar) that this D does not use.
  const unusedBuffer = (dtype: 'f32' | 'i32', what: string): Tensor =>
    Tensor.fromData(rt, dtype === 'i32' ? new Int32Array(4) : new Float32Array(4), [4], dtype, `attention.unused_${what}`);
  const keyMask = mask ?? unusedBuffer('i32', 'key_mask');
  const sg = subgroupKernelSize(rt);
  // DROPOUT is a template flag: with p = 0 the dropout code is not compiled at all
  const portable = { defines: { HEAD_DIM: `${D}u`, BLOCK_ROWS: `${BLOCK_ROWS}u`, BLOCK_STREAM: `${BLOCK_STREAM}u`, DROPOUT: dropout > 0 ? 'true' : 'false' } };
  // the row dot is the same with or without dropout (out already has it): one pipeline for both
  const rowDotOptions = { defines: { ...portable.defines, DROPOUT: 'false' } };
  const portableBlocks: [number, number] = [ceilDiv(T, BLOCK_ROWS), B * heads];
  const subgroupShape = (shape: { rowsPerLane: number; streamRows: number }) => ({
    options: { defines: { ...portable.defines, SG: `${sg}u`, ROWS_PER_LANE: `${shape.rowsPerLane}u`, STREAM_ROWS: `${Math.min(shape.streamRows, sg ?? 4)}u` } },
    blocks: [ceilDiv(T, (sg ?? 1) * shape.rowsPerLane), B * heads] as [number, number],
  });
  const subgroupForward = subgroupShape(SUBGROUP_FORWARD);
  const subgroupBackward = subgroupShape(SUBGROUP_BACKWARD);
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

  const inputs = { p: params, q, k, v, key_mask: keyMask };
  const inputViews = { q4: vec4View(q), k4: vec4View(k), v4: vec4View(v) };
  const forwardPlaceholders: Tensor[] = [];
  if (sg) {
    const bindings = { ...inputs, ...inputViews, ...outputViews('out', out, forwardPlaceholders), lse };
    rt.dispatch(attentionSubgroupKernel, 'attention_forward_sg', bindings, subgroupForward.blocks, subgroupForward.options);
  } else rt.dispatch(attentionKernel, 'attention_forward', { ...inputs, out, lse }, portableBlocks, portable);
  for (const t of forwardPlaceholders) t.dispose();

  const saved = [q, k, v, out, lse, keyMask, ...(unusedVec4 ? [unusedVec4] : [])];
  const result = record('attention', out, [q, k, v], saved, (gradOut, needs) => {
    const rowDot = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.row_dot');
    rt.dispatch(attentionKernel, 'attention_backward_row_dot', { p: params, grad_out: gradOut, out_saved: out, row_dot: rowDot }, grid1d(B * T * heads, BLOCK_ROWS), rowDotOptions);
    const gq = needs[0] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_q') : null;
    // one kernel makes dk and dv together
    const gk = needs[1] || needs[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_k') : null;
    const gv = needs[1] || needs[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_v') : null;
    const common = { ...inputs, grad_out: gradOut, lse_saved: lse, row_dot_saved: rowDot };
    if (sg) {
      const views = { ...common, ...inputViews, grad_out4: vec4View(gradOut) };
      const placeholders: Tensor[] = [];
      if (gk && gv) {
        const bindings = { ...views, ...outputViews('grad_k', gk, placeholders), ...outputViews('grad_v', gv, placeholders) };
        rt.dispatch(attentionSubgroupKernel, 'attention_backward_kv_sg', bindings, subgroupBackward.blocks, subgroupBackward.options);
      }
      if (gq) {
        const bindings = { ...views, ...outputViews('grad_q', gq, placeholders) };
        rt.dispatch(attentionSubgroupKernel, 'attention_backward_q_sg', bindings, subgroupBackward.blocks, subgroupBackward.options);
      }
      for (const t of placeholders) t.dispose();
    } else {
      if (gk && gv) rt.dispatch(attentionKernel, 'attention_backward_kv', { ...common, grad_k: gk, grad_v: gv }, portableBlocks, portable);
      if (gq) rt.dispatch(attentionKernel, 'attention_backward_q', { ...common, grad_q: gq }, portableBlocks, portable);
    }
    rowDot.dispose();
    if (!needs[1]) gk?.dispose();
    if (!needs[2]) gv?.dispose();
    return [gq, needs[1] ? gk : null, needs[2] ? gv : null];
  });
  // a recorded backward holds its own references to the placeholders it reads
  if (!mask) keyMask.dispose();
  unusedVec4?.dispose();
  return result;
}
