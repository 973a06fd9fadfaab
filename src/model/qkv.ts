// A layer's q, k and v projections as one GEMM: x [B, T, C] times the concatenated weights [3C, C] gives the packed
// [B, T, 3C] (per row q | k | v) that attentionPacked reads in place, and the backward produces one [B, T, 3C]
// gradient for that GEMM: no per-projection GEMM launches, no slicing, no summing of three input gradients.
// The parameters stay separate tensors under their Hugging Face names (loading, saving, freezing and the optimizer
// see them as checkpoints name them); the concatenation is redone on every call, since a training step changes them,
// and its backward hands each weight its rows of the gradient. Three contiguous buffer copies of C x C floats: about
// 1 ms for XLSR-large on lavapipe. bench/qkv.ts times this block against three GEMMs + attention().
import type { Tensor } from '../tensor.js';
import { tidy } from '../autograd.js';
import { full } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { concat } from '../ops/shape.js';
import { attentionPacked, type AttentionOptions } from '../ops/attention.js';

/** One nn.Linear's parameters; bias null where the module has none (Whisper's k_proj). */
export interface Projection {
  weight: Tensor;
  bias: Tensor | null;
}

/** attention(q(x), k(x), v(x), opts) with the three projections run as one GEMM on the packed weights. */
export function packedQkvAttention(x: Tensor, q: Projection, k: Projection, v: Projection, opts: AttentionOptions): Tensor {
  return tidy(() => {
    const weight = concat([q.weight, k.weight, v.weight], 0);
    let bias: Tensor | null = null;
    if (q.bias || k.bias || v.bias) {
      // a missing bias is a zero block of the packed one (it gets no gradient: nothing requires it)
      const zeros = (p: Projection) => full(x, [p.weight.shape[0]], 0, p.weight.dtype, 'qkv.zero_bias');
      bias = concat([q, k, v].map((p) => p.bias ?? zeros(p)), 0);
    }
    return attentionPacked(linear(x, weight, bias), opts);
  });
}
