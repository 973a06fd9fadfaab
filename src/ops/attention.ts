// Multi-head self-attention with a key-padding mask, flash style: forward saves logsumexp, backward recomputes the
// probabilities (FlashAttention-2: row dots, then dk/dv over key blocks and dq over query blocks, no atomics).
import source from '../../kernels/attention.wgsl';
import { defineKernel } from '../runtime/kernel.js';
import { Tensor } from '../tensor.js';
import { record } from '../autograd.js';
import { ceilDiv, grid1d } from './grid.js';

// The file's tail holds the subgroup kernels; the portable module stops before it so it compiles without the feature.
const SUBGROUP_SECTION = '// ==== subgroup kernels';
export const attentionKernel = defineKernel('attention', source.slice(0, source.indexOf(SUBGROUP_SECTION)));
export const attentionSubgroupKernel = defineKernel('attention_subgroups', `enable subgroups;\n${source}`);

let subgroupsAllowed = true;
/** Tests: force the portable (workgroup-memory) kernels even where the subgroup ones could run. */
export function setAttentionSubgroups(allowed: boolean): void {
  subgroupsAllowed = allowed;
}

/** The adapter's subgroup size when the subgroup kernels can run (feature present, size fixed), else null. */
function fixedSubgroupSize(rt: Tensor['rt']): number | null {
  if (!subgroupsAllowed || !rt.hasSubgroups) return null;
  const info = (rt.device as unknown as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  const min = info?.subgroupMinSize;
  if (!min || min !== info?.subgroupMaxSize || min < 4 || min > 128) return null;
  return min;
}

/** Rows owned per workgroup (one per invocation) and rows streamed per block through workgroup memory. */
const BLOCK_ROWS = 64;
const BLOCK_STREAM = 32;
/** Subgroup kernels: rows owned per lane. */
const ROWS_PER_LANE = 2;

export interface AttentionOptions {
  heads: number;
  /** i32 [B, T]: 1 = real frame, 0 = padding (those keys get no weight) */
  keyMask?: Tensor | null;
  /** defaults to 1/sqrt(D) */
  scale?: number;
}

function defines(headDim: number) {
  return { HEAD_DIM: `${headDim}u`, BLOCK_ROWS: `${BLOCK_ROWS}u`, BLOCK_STREAM: `${BLOCK_STREAM}u` };
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
  const maxD = Math.floor(8192 / BLOCK_STREAM / 2); // two [BLOCK_STREAM, D] f32 tiles within 32 KiB of workgroup memory
  if (D > maxD) throw new Error(`attention: head dim ${D} exceeds the supported ${maxD}`);
  const mask = opts.keyMask ?? null;
  if (mask && (mask.dtype !== 'i32' || mask.shape.join() !== [B, T].join())) {
    throw new Error(`attention: keyMask must be i32 [${B}, ${T}], got ${mask.dtype} [${mask.shape}]`);
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const rt = q.rt;
  const params = { batch: B, seq: T, heads, masked: mask ? 1 : 0, scale };
  // without a mask the kernel never reads key_mask, but the binding must exist
  const maskBuf = mask ?? Tensor.fromData(rt, new Int32Array(1), [1], 'i32', 'attention.no_mask');
  const out = Tensor.empty(rt, [B, T, C], 'f32', 'attention');
  const lse = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.lse');
  const def = defines(D);
  const blocks: [number, number] = [ceilDiv(T, BLOCK_ROWS), B * heads];
  const sg = fixedSubgroupSize(rt);
  const sgDefines = { ...def, SG: `${sg}u`, ROWS_PER_LANE: `${ROWS_PER_LANE}u` };
  const sgBlocks: [number, number] = [ceilDiv(T, (sg ?? 1) * ROWS_PER_LANE), B * heads];
  const views = { q, k, v, q4: q, k4: k, v4: v };
  if (B * T > 0 && sg) {
    rt.dispatch(attentionSubgroupKernel, 'attention_forward_sg', { p: params, ...views, key_mask: maskBuf, out, lse }, sgBlocks, { defines: sgDefines });
  } else if (B * T > 0) rt.dispatch(attentionKernel, 'attention_forward', { p: params, q, k, v, key_mask: maskBuf, out, lse }, blocks, { defines: def });
  const saved = [q, k, v, out, lse, maskBuf];
  const result = record('attention', out, [q, k, v], saved, (gradOut, needs) => {
    const rowDot = Tensor.empty(rt, [B, heads, T], 'f32', 'attention.row_dot');
    const gq = needs[0] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_q') : null;
    const gk = needs[1] || needs[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_k') : null;
    const gv = needs[1] || needs[2] ? Tensor.empty(rt, [B, T, C], 'f32', 'attention.grad_v') : null;
    if (B * T > 0) {
      rt.dispatch(attentionKernel, 'attention_backward_row_dot', { p: params, grad_out: gradOut, out_saved: out, row_dot: rowDot }, grid1d(B * T * heads, BLOCK_ROWS), { defines: def });
      const common = { p: params, q, k, v, key_mask: maskBuf, grad_out: gradOut, lse_saved: lse, row_dot_saved: rowDot };
      if (sg) {
        const sgCommon = { ...common, ...views, grad_out4: gradOut };
        if (gk && gv) rt.dispatch(attentionSubgroupKernel, 'attention_backward_kv_sg', { ...sgCommon, grad_k: gk, grad_v: gv }, sgBlocks, { defines: sgDefines });
        if (gq) rt.dispatch(attentionSubgroupKernel, 'attention_backward_q_sg', { ...sgCommon, grad_q: gq }, sgBlocks, { defines: sgDefines });
      } else {
        if (gk && gv) rt.dispatch(attentionKernel, 'attention_backward_kv', { ...common, grad_k: gk, grad_v: gv }, blocks, { defines: def });
        if (gq) rt.dispatch(attentionKernel, 'attention_backward_q', { ...common, grad_q: gq }, blocks, { defines: def });
      }
    }
    rowDot.dispose();
    return [gq, needs[1] ? gk : (gk?.dispose(), null), needs[2] ? gv : (gv?.dispose(), null)];
  });
  // a recorded backward holds its own reference to the dummy mask
  if (!mask) maskBuf.dispose();
  return result;
}
