#!/usr/bin/python3
"""Float64 reference of WavLM's gated relative position bias, checked against the real Hugging Face fixture.

Our own re-statement of the semantics the engine implements (kernels/attention.wgsl, src/ops/attention.ts), in
plain torch float64, compared with what transformers 4.30.2 stored in ../shared/fixtures/wavlm_tiny:

  * relative_position_bucket [T, T]: the T5 bucket of key - query (f32 log, truncation), here recomputed in float32
    and float64 for |delta| < 4000 at the fixture's (32, 100) and HF's default (320, 800) parameters;
  * position_bias [H, T, T] = rel_attn_embed.weight[bucket].permute(2, 0, 1);
  * gate.L [B, H, T] from the attention input of layer L (stable layout: layers.L.layer_norm(hidden_states.L)) split
    per head, gru_rel_pos_linear, pairs of four summed, sigmoid, a * (c * gru_rel_pos_const - 1) + 2;
  * one attention layer's softmax with scores q k^T / sqrt(d) + gate * position_bias and padded keys masked, against
    hidden_states.1 through the rest of layer 0.

Usage: /usr/bin/python3 tools/ref/wavlm_bias_ref.py [fixture_dir]   (default ../shared/fixtures/wavlm_tiny)
Prints one line per check with its max abs / relative error and exits non-zero when one fails.
"""
import json
import math
import struct
import sys

import torch

DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'I32': torch.int32, 'I64': torch.int64}


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        t = torch.frombuffer(bytearray(data[8 + n + a:8 + n + b]), dtype=DTYPES[e['dtype']])
        out[name] = t.reshape(e['shape']) if e['shape'] else t.reshape(())
    return out


def bucket(delta, num_buckets, max_distance, dtype):
    """HF's _relative_positions_bucket on an integer tensor, its log and arithmetic in `dtype`."""
    nb = num_buckets // 2
    max_exact = nb // 2
    side = (delta > 0).long() * nb
    n = delta.abs()
    ratio = torch.log(n.to(dtype) / max_exact) / torch.tensor(math.log(max_distance / max_exact), dtype=dtype)
    large = (max_exact + ratio * (nb - max_exact)).long()
    large = torch.minimum(large, torch.full_like(large, nb - 1))
    return side + torch.where(n < max_exact, n, large)


def main():
    fixture = sys.argv[1] if len(sys.argv) > 1 else '../shared/fixtures/wavlm_tiny'
    config = json.load(open(f'{fixture}/config.json'))
    ref = read_safetensors(f'{fixture}/reference.safetensors')
    w = {k: v.double() for k, v in read_safetensors(f'{fixture}/model.safetensors').items()}
    nbk, maxd, H = config['num_buckets'], config['max_bucket_distance'], config['num_attention_heads']
    eps = config['layer_norm_eps']
    T = ref['relative_position_bucket'].shape[0]
    failures = []

    def report(name, got, want, tol):
        err = (got - want).abs().max().item()
        rel = err / max(want.abs().max().item(), 1e-30)
        ok = rel <= tol
        print(f'{"ok  " if ok else "FAIL"} {name}: max abs {err:.3e}, rel {rel:.3e} (limit {tol:g})')
        if not ok:
            failures.append(name)

    pos = torch.arange(T)
    rel = pos[None, :] - pos[:, None]  # key - query, row = query
    buckets = bucket(rel, nbk, maxd, torch.float32)
    report('relative_position_bucket', buckets.double(), ref['relative_position_bucket'].double(), 0)
    deltas = torch.arange(-3999, 4000)
    for params in [(nbk, maxd), (320, 800)]:
        diff = (bucket(deltas, *params, torch.float32) != bucket(deltas, *params, torch.float64)).sum().item()
        print(f'{"ok  " if diff == 0 else "FAIL"} buckets {params}: float32 vs float64 log differ at {diff} of {len(deltas)} positions')
        if diff:
            failures.append(f'buckets {params}')

    E = w['wavlm.encoder.layers.0.attention.rel_attn_embed.weight']
    position_bias = E[buckets].permute(2, 0, 1)
    report('position_bias', position_bias, ref['position_bias'], 0)

    stable = config['do_stable_layer_norm']
    frame_mask = ref['frame_mask'].bool()
    for layer in range(config['num_hidden_layers']):
        p = f'wavlm.encoder.layers.{layer}'
        x = ref[f'hidden_states.{layer}']
        if stable:
            x = torch.nn.functional.layer_norm(x, (x.shape[-1],), w[f'{p}.layer_norm.weight'], w[f'{p}.layer_norm.bias'], eps)
        B = x.shape[0]
        xh = x.reshape(B, T, H, -1)
        r = xh @ w[f'{p}.attention.gru_rel_pos_linear.weight'].T + w[f'{p}.attention.gru_rel_pos_linear.bias']
        a = torch.sigmoid(r[..., :4].sum(-1))
        c = torch.sigmoid(r[..., 4:].sum(-1))
        k = w[f'{p}.attention.gru_rel_pos_const'].reshape(H)
        gate = (a * (c * k - 1) + 2).permute(0, 2, 1)  # [B, H, T]
        report(f'gate.{layer}', gate, ref[f'gate.{layer}'], 1e-12)
        if layer == 0 and stable:
            # the whole attention block of layer 0: hidden_states.0 + out_proj(softmax(...) v), then the feed forward
            D = x.shape[-1] // H
            lin = lambda t, n: t @ w[f'{p}.attention.{n}.weight'].T + w[f'{p}.attention.{n}.bias']
            q = lin(x, 'q_proj').reshape(B, T, H, D).permute(0, 2, 1, 3)
            kk = lin(x, 'k_proj').reshape(B, T, H, D).permute(0, 2, 1, 3)
            v = lin(x, 'v_proj').reshape(B, T, H, D).permute(0, 2, 1, 3)
            scores = q @ kk.transpose(-1, -2) / math.sqrt(D) + gate[..., None] * position_bias[None]
            scores = scores.masked_fill(~frame_mask[:, None, None, :], float('-inf'))
            ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, T, H * D)
            h1 = ref['hidden_states.0'] + lin(ctx, 'out_proj')
            f = torch.nn.functional
            y = f.layer_norm(h1, (H * D,), w[f'{p}.final_layer_norm.weight'], w[f'{p}.final_layer_norm.bias'], eps)
            y = f.gelu(y @ w[f'{p}.feed_forward.intermediate_dense.weight'].T + w[f'{p}.feed_forward.intermediate_dense.bias'])
            y = y @ w[f'{p}.feed_forward.output_dense.weight'].T + w[f'{p}.feed_forward.output_dense.bias']
            report('hidden_states.1 (layer 0 with the gated bias)', h1 + y, ref['hidden_states.1'], 1e-12)
    if failures:
        print(f'{len(failures)} check(s) failed: {", ".join(failures)}')
        sys.exit(1)


if __name__ == '__main__':
    main()
