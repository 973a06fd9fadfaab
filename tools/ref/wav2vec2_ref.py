#!/usr/bin/python3
"""Our own float64 PyTorch reference of Hugging Face's Wav2Vec2Model (transformers 4.30.2 semantics) plus the
notebook's classification head (mean over time -> dropout -> dense -> tanh -> dropout -> out_proj) and its
cross-entropy loss.

Written from a reading of the public HF source, not copied from it; it uses plain torch.nn.functional on a flat dict of
parameters named like the HF checkpoint. Both layouts:

  * 'layer' + do_stable_layer_norm (XLSR / large-lv60): every conv layer is conv -> LayerNorm(channels) -> GELU;
    encoder layers are pre-LN; the encoder applies its LayerNorm AFTER the last layer.
  * 'group' (wav2vec2-base): conv layer 0 is conv -> GroupNorm(C groups, i.e. per channel over the WHOLE padded time
    axis, so padding changes the features of shorter items) -> GELU; the other conv layers have no norm; encoder
    layers are post-LN; the encoder applies its LayerNorm BEFORE the first layer.

Padding exactly as HF: valid frames per item come from the conv output-length formula applied to the number of real
samples; padded frames are zeroed once, at the encoder input; attention adds (1 - mask) * finfo(dtype).min to the
scores of padded keys. Nothing else is masked, so hidden states at padded frames are not zero after the encoder.

Run as a script it checks itself against fixtures written by the real HF code (default ../shared/fixtures/xlsr_tiny)
or by tools/ref/make_fixtures.py:  /usr/bin/python3 tools/ref/wav2vec2_ref.py [fixture_dir ...]
"""
import json
import math
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------------
# safetensors, by hand: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}} (plus
# an optional "__metadata__" of strings), then the raw little-endian data, offsets relative to the end of the header.

ST_DTYPES = {
    'F64': (np.float64, torch.float64), 'F32': (np.float32, torch.float32), 'F16': (np.float16, torch.float16),
    'I64': (np.int64, torch.int64), 'I32': (np.int32, torch.int32), 'I16': (np.int16, torch.int16),
    'I8': (np.int8, torch.int8), 'U8': (np.uint8, torch.uint8), 'BOOL': (np.bool_, torch.bool),
}
TORCH_TO_ST = {t: name for name, (_, t) in ST_DTYPES.items()}


def read_safetensors(path):
    """Returns (OrderedDict name -> torch tensor in the file's dtype, metadata dict or None)."""
    with open(path, 'rb') as f:
        blob = f.read()
    (header_len,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + header_len].decode('utf-8'))
    data_start = 8 + header_len
    metadata = header.pop('__metadata__', None)
    tensors = OrderedDict()
    for name, entry in header.items():
        np_dtype, _ = ST_DTYPES[entry['dtype']]
        begin, end = entry['data_offsets']
        array = np.frombuffer(blob, dtype=np.dtype(np_dtype).newbyteorder('<'), count=(end - begin) //
                              np.dtype(np_dtype).itemsize, offset=data_start + begin)
        tensors[name] = torch.from_numpy(array.reshape(entry['shape']).copy())
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes tensors (name -> torch tensor) as the xlsr_tiny files are laid out: ordered by element size (largest
    first, which keeps every tensor aligned to its element size) then name, data contiguous in that order, compact
    JSON header padded with spaces to a multiple of 8 bytes."""
    header = OrderedDict()
    if metadata is not None:
        header['__metadata__'] = metadata
    chunks, offset = [], 0
    for name in sorted(tensors, key=lambda n: (-tensors[n].element_size(), n)):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': TORCH_TO_ST[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)


def canonical_weight_names(state):
    """torch >= 2.1 checkpoints spell the weight-normed pos conv as parametrizations.weight.original0/1."""
    out = OrderedDict()
    for name, t in state.items():
        name = name.replace('pos_conv_embed.conv.parametrizations.weight.original0', 'pos_conv_embed.conv.weight_g')
        name = name.replace('pos_conv_embed.conv.parametrizations.weight.original1', 'pos_conv_embed.conv.weight_v')
        out[name] = t
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Inputs: the Wav2Vec2FeatureExtractor and the sample -> frame bookkeeping.

def feature_extractor(waveforms, do_normalize=True, return_attention_mask=True, padding_value=0.0):
    """Wav2Vec2FeatureExtractor(padding='longest'): float32 waveforms zero-padded on the right; with do_normalize each
    item is (x - mean) / sqrt(var + 1e-7) over its real samples (over the whole padded row when no attention mask is
    returned, as HF does), padded samples set to padding_value. All in float32 numpy, like HF."""
    waves = [np.asarray(w, dtype=np.float32) for w in waveforms]
    length = max(len(w) for w in waves)
    values = np.full((len(waves), length), padding_value, dtype=np.float32)
    mask = np.zeros((len(waves), length), dtype=np.int32)
    for i, w in enumerate(waves):
        values[i, :len(w)] = w
        mask[i, :len(w)] = 1
    if do_normalize:
        for i in range(len(waves)):
            n = int(mask[i].sum()) if return_attention_mask else length
            row = values[i]
            normed = (row - row[:n].mean()) / np.sqrt(row[:n].var() + 1e-7)
            if n < length:
                normed[n:] = padding_value
            values[i] = normed
    return values, (mask if return_attention_mask else None)


def conv_output_length(num_samples, cfg):
    """Frames the conv stack makes from num_samples (tensor or int): floor((L - k) / s) + 1 per layer. With the standard
    stack (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) 400 samples is the minimum that gives one frame."""
    length = num_samples
    for k, s in zip(cfg['conv_kernel'], cfg['conv_stride']):
        length = torch.div(length - k, s, rounding_mode='floor') + 1 if torch.is_tensor(length) else (length - k) // s + 1
    return length


def frame_mask_from_sample_mask(attention_mask, num_frames, cfg):
    """HF _get_feature_vector_attention_mask: the first conv_output_length(sum(mask)) frames of each item are valid.
    (HF sets mask[b, len-1] = 1 then flip-cumsum-flips; a clip shorter than the receptive field gives len 0, index -1,
    so ALL its frames would count as valid: feed at least 400 samples with the standard stack.)"""
    lengths = conv_output_length(attention_mask.to(torch.long).sum(-1), cfg)
    return torch.arange(num_frames)[None, :] < lengths[:, None], lengths


# ----------------------------------------------------------------------------------------------------------------------
# The model. P is a dict name -> tensor (HF checkpoint names, float64 for the reference); cfg is config.json as a dict.

def gelu(x):
    return F.gelu(x)  # exact erf GELU, HF's "gelu"


def linear(x, P, prefix):
    return F.linear(x, P[prefix + '.weight'], P.get(prefix + '.bias'))


def layer_norm(x, P, prefix, eps):
    return F.layer_norm(x, (x.shape[-1],), P[prefix + '.weight'], P[prefix + '.bias'], eps)


def dropout(x, p, training):
    return F.dropout(x, p, training) if p > 0 else x


def feature_encoder(input_values, P, cfg):
    """[B, samples] -> [B, C, T]. conv_layers.i.layer_norm is a LayerNorm over channels (eps 1e-5, not the config
    eps) in the 'layer' layout, a per-channel GroupNorm over time on layer 0 only in the 'group' layout."""
    x = input_values[:, None, :]
    for i, (k, s) in enumerate(zip(cfg['conv_kernel'], cfg['conv_stride'])):
        pre = 'wav2vec2.feature_extractor.conv_layers.%d' % i
        x = F.conv1d(x, P[pre + '.conv.weight'], P.get(pre + '.conv.bias'), stride=s)
        if cfg['feat_extract_norm'] == 'layer':
            x = layer_norm(x.transpose(1, 2), P, pre + '.layer_norm', 1e-5).transpose(1, 2)
        elif i == 0:  # GroupNorm(num_groups = C): statistics over the whole (padded) time axis, per item and channel
            mean = x.mean(dim=2, keepdim=True)
            var = (x - mean).pow(2).mean(dim=2, keepdim=True)
            x = (x - mean) / torch.sqrt(var + 1e-5)
            x = x * P[pre + '.layer_norm.weight'][None, :, None] + P[pre + '.layer_norm.bias'][None, :, None]
        x = gelu(x)
    return x


def pos_conv_weight(P):
    """weight_norm(dim=2): w = g * v / ||v||, the norm taken over dims 0 and 1 for each kernel tap."""
    g = P['wav2vec2.encoder.pos_conv_embed.conv.weight_g']
    v = P['wav2vec2.encoder.pos_conv_embed.conv.weight_v']
    return g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()


def pos_conv_embed(x, weight, P, cfg):
    """[B,T,H] -> [B,T,H]: grouped conv with padding K//2, drop the last output frame for even K, GELU."""
    K = cfg['num_conv_pos_embeddings']
    y = F.conv1d(x.transpose(1, 2), weight, P['wav2vec2.encoder.pos_conv_embed.conv.bias'], padding=K // 2,
                 groups=cfg['num_conv_pos_embedding_groups'])
    if K % 2 == 0:
        y = y[:, :, :-1]
    # GELU on a contiguous [B,T,H]: Debian's torch 1.13 float32 gelu backward returns garbage when the incoming
    # gradient is non-contiguous (as it is after a transpose); float64 is unaffected, but keep float32 runs sane.
    return gelu(y.transpose(1, 2).contiguous())


def self_attention(x, P, prefix, num_heads, additive_mask):
    """BART-style: q scaled by head_dim^-0.5 after its bias; additive_mask [B,1,1,T] on keys. Returns out, probs."""
    B, T, H = x.shape
    hd = H // num_heads
    split = lambda t: t.view(B, T, num_heads, hd).transpose(1, 2)  # -> [B, heads, T, hd]
    q = split(linear(x, P, prefix + '.q_proj') * hd ** -0.5)
    k = split(linear(x, P, prefix + '.k_proj'))
    v = split(linear(x, P, prefix + '.v_proj'))
    scores = q @ k.transpose(-1, -2)
    if additive_mask is not None:
        scores = scores + additive_mask
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, T, H)
    return linear(out, P, prefix + '.out_proj'), probs


def feed_forward(x, P, prefix, cfg, training):
    h = dropout(gelu(linear(x, P, prefix + '.intermediate_dense')), cfg['activation_dropout'], training)
    return dropout(linear(h, P, prefix + '.output_dense'), cfg['hidden_dropout'], training)


def encoder_layer(x, P, i, cfg, additive_mask, training):
    pre = 'wav2vec2.encoder.layers.%d' % i
    eps, heads, p = cfg['layer_norm_eps'], cfg['num_attention_heads'], cfg['hidden_dropout']
    if cfg['do_stable_layer_norm']:  # pre-LN
        a, probs = self_attention(layer_norm(x, P, pre + '.layer_norm', eps), P, pre + '.attention', heads, additive_mask)
        x = x + dropout(a, p, training)
        x = x + feed_forward(layer_norm(x, P, pre + '.final_layer_norm', eps), P, pre + '.feed_forward', cfg, training)
    else:  # post-LN
        a, probs = self_attention(x, P, pre + '.attention', heads, additive_mask)
        x = layer_norm(x + dropout(a, p, training), P, pre + '.layer_norm', eps)
        x = layer_norm(x + feed_forward(x, P, pre + '.feed_forward', cfg, training), P, pre + '.final_layer_norm', eps)
    return x, probs


def classifier_head(pooled, P, cfg, training):
    h = torch.tanh(linear(dropout(pooled, cfg['final_dropout'], training), P, 'classifier.dense'))
    return linear(dropout(h, cfg['final_dropout'], training), P, 'classifier.out_proj'), h


def forward(P, cfg, input_values, attention_mask=None, labels=None, training=False, keep_grads=False):
    """Full forward. Returns an OrderedDict of named tensors (the names the fixtures use). With keep_grads, the
    intermediate tensors the fixtures store gradients of get retain_grad() (extract_features becomes a leaf that
    requires grad, which is exact because the conv feature encoder is frozen in the fixtures)."""
    out = OrderedDict()
    eps = cfg['layer_norm_eps']
    extract = feature_encoder(input_values, P, cfg).transpose(1, 2)  # [B,T,C]
    if keep_grads:
        extract = extract.detach().requires_grad_(True) if not extract.requires_grad else extract
        extract.retain_grad()
    B, T, _ = extract.shape
    out['extract_features'] = extract

    if attention_mask is None:
        attention_mask = torch.ones(input_values.shape, dtype=torch.int32)
    frame_mask, frame_lengths = frame_mask_from_sample_mask(attention_mask, T, cfg)
    out['frame_mask'] = frame_mask.to(torch.int32)
    out['frame_lengths'] = frame_lengths

    normed = layer_norm(extract, P, 'wav2vec2.feature_projection.layer_norm', eps)
    fp_out = dropout(linear(normed, P, 'wav2vec2.feature_projection.projection'), cfg['feat_proj_dropout'], training)
    if keep_grads:
        fp_out.retain_grad()
    out['extract_features_normed'] = normed
    out['feature_projection_output'] = fp_out

    # Encoder input: padded frames zeroed (only here), keys of padded frames masked in every layer.
    x = fp_out.masked_fill(~frame_mask[:, :, None], 0.0)
    additive_mask = (1.0 - frame_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    w_pos = pos_conv_weight(P)
    if keep_grads and w_pos.requires_grad:
        w_pos.retain_grad()
    out['derived.wav2vec2.encoder.pos_conv_embed.conv.weight'] = w_pos
    pos = pos_conv_embed(x, w_pos, P, cfg)
    out['pos_conv_embed_output'] = pos
    x = x + pos
    if not cfg['do_stable_layer_norm']:
        x = layer_norm(x, P, 'wav2vec2.encoder.layer_norm', eps)
    x = dropout(x, cfg['hidden_dropout'], training)

    hidden_states, attentions = [], []
    for i in range(cfg['num_hidden_layers']):
        hidden_states.append(x)
        x, probs = encoder_layer(x, P, i, cfg, additive_mask, training)
        attentions.append(probs)
    out['encoder_last_layer_output'] = x
    if cfg['do_stable_layer_norm']:
        x = layer_norm(x, P, 'wav2vec2.encoder.layer_norm', eps)
    hidden_states.append(x)
    for i, h in enumerate(hidden_states):
        if keep_grads:
            h.retain_grad()
        out['hidden_states.%d' % i] = h
    out['last_hidden_state'] = x
    for i, a in enumerate(attentions):
        out['attentions.%d' % i] = a

    # The notebook's head: plain mean over ALL frames (padding included), and the masked mean over valid frames.
    valid = frame_mask.to(x.dtype)[:, :, None]
    pooled = {'plain_mean': x.mean(dim=1), 'masked_mean': (x * valid).sum(dim=1) / frame_lengths.to(x.dtype)[:, None]}
    for kind in ('plain_mean', 'masked_mean'):
        logits, hidden = classifier_head(pooled[kind], P, cfg, training)
        if keep_grads:
            pooled[kind].retain_grad()
            logits.retain_grad()
        out['pooled_' + kind] = pooled[kind]
        out['classifier_hidden_' + kind] = hidden
        out['logits_' + kind] = logits
        if labels is not None:
            out['loss_' + kind] = F.cross_entropy(logits, labels)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Reference run: forward in `dtype` with the feature encoder frozen, backward of one loss, everything named.

FROZEN_PREFIX = 'wav2vec2.feature_extractor.'
GRAD_ACTIVATIONS = ['extract_features', 'feature_projection_output', 'hidden_states.*', 'pooled_{kind}', 'logits_{kind}']


def load_config(fixture_dir):
    with open(os.path.join(fixture_dir, 'config.json')) as f:
        return json.load(f)


def load_weights(fixture_dir):
    state, _ = read_safetensors(os.path.join(fixture_dir, 'model.safetensors'))
    return canonical_weight_names(state)


def run_reference(weights, cfg, input_values, attention_mask, labels, dtype=torch.float64, loss='loss_masked_mean',
                  training=True):
    """Returns an OrderedDict: every forward tensor, then grad.<param> for every trainable parameter (checkpoint
    order), grad.derived.<pos conv weight>, and grad.<activation> for GRAD_ACTIVATIONS; all of `loss`. training=True
    only matters for dropout, which is p=0 in the fixtures (HF's fixture was made in train mode)."""
    P = OrderedDict()
    for name, t in weights.items():
        P[name] = t.to(dtype).clone().requires_grad_(not name.startswith(FROZEN_PREFIX))
    out = forward(P, cfg, input_values.to(dtype), attention_mask, labels, training=training, keep_grads=True)
    out[loss].backward()
    kind = loss[len('loss_'):]
    res = OrderedDict((k, v.detach()) for k, v in out.items())
    for name, p in P.items():
        if p.requires_grad:
            res['grad.' + name] = p.grad.detach()
    res['grad.derived.wav2vec2.encoder.pos_conv_embed.conv.weight'] = \
        out['derived.wav2vec2.encoder.pos_conv_embed.conv.weight'].grad.detach()
    for pattern in GRAD_ACTIVATIONS:
        names = [k for k in out if k.startswith('hidden_states.')] if pattern == 'hidden_states.*' \
            else [pattern.format(kind=kind)]
        for n in names:
            res['grad.' + n] = out[n].grad.detach()
    return res


def compare(x, ref):
    """(max|x - ref| / max|ref|, max|x - ref|, max|ref|) over all elements."""
    x, ref = x.to(torch.float64), ref.to(torch.float64)
    abs_err = (x - ref).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return (abs_err / scale if scale > 0 else float('inf') if abs_err > 0 else 0.0), abs_err, scale


# ----------------------------------------------------------------------------------------------------------------------
# Self-check against a fixture directory.

ZERO_SCALE = 1e-12  # tensors whose reference is analytically zero (grad of attention.k_proj.bias) are judged absolutely


def verify_fixture(fixture_dir, rel_tol=1e-10, abs_tol=1e-12, verbose=True):
    cfg = load_config(fixture_dir)
    with open(os.path.join(fixture_dir, 'preprocessor_config.json')) as f:
        pre = json.load(f)
    with open(os.path.join(fixture_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    ref, _ = read_safetensors(os.path.join(fixture_dir, 'reference.safetensors'))
    weights = load_weights(fixture_dir)
    loss_name = 'loss_plain_mean' if manifest['loss_and_grads'].lstrip().startswith('loss_plain_mean') else 'loss_masked_mean'

    # 1. the input pipeline from the raw waveforms
    waves = [ref['raw_waveform.%d' % i].numpy() for i in range(len(manifest['batch']['input_lengths']))]
    values, mask = feature_extractor(waves, pre.get('do_normalize', True), pre.get('return_attention_mask', True),
                                     pre.get('padding_value', 0.0))
    rows = []
    rows.append(('input_values (feature extractor, exact)', *compare(torch.from_numpy(values), ref['input_values'])))
    if mask is not None:
        rows.append(('attention_mask (exact)', *compare(torch.from_numpy(mask), ref['attention_mask'])))

    # 2. the model, from the stored inputs
    res = run_reference(weights, cfg, ref['input_values'], ref['attention_mask'], ref['labels'], loss=loss_name)
    res['input_lengths'] = ref['attention_mask'].to(torch.long).sum(-1)
    res['input_values'], res['attention_mask'], res['labels'] = ref['input_values'], ref['attention_mask'], ref['labels']
    worst, failures, zero_rows = 0.0, [], []
    for entry in manifest['tensors']:
        name = entry['name']
        if name.startswith('raw_waveform.') or name in ('input_values', 'attention_mask', 'labels'):
            continue
        if name not in res:
            failures.append(name + ' (not computed)')
            continue
        rel, abs_err, scale = compare(res[name], ref[name])
        if list(res[name].shape) != list(ref[name].shape):
            failures.append(name + ' (shape)')
        if scale < ZERO_SCALE:
            zero_rows.append((name, abs_err, scale))
            if abs_err > abs_tol:
                failures.append(name)
            continue
        rows.append((name, rel, abs_err, scale))
        worst = max(worst, rel)
        if rel > rel_tol:
            failures.append(name)
    if verbose:
        print('fixture %s (grads of %s)' % (fixture_dir, loss_name))
        print('  %-70s %12s %12s %12s' % ('tensor', 'max rel err', 'max abs err', 'max |ref|'))
        for name, rel, abs_err, scale in rows:
            print('  %-70s %12.3e %12.3e %12.3e' % (name, rel, abs_err, scale))
        for name, abs_err, scale in zero_rows:
            print('  %-70s %12s %12.3e %12.3e  (analytically zero: absolute)' % (name, '-', abs_err, scale))
        print('  worst relative error %.3e over %d tensors; %d analytically-zero tensors; %s' %
              (worst, len(rows), len(zero_rows), 'FAIL: ' + ', '.join(failures) if failures else 'OK'))
    return worst, failures


def module_cross_check(seed=0):
    """The pieces the HF fixture does not exercise (the 'group' layout, odd pos-conv kernels), checked against torch's
    own modules: conv layer 0 as nn.Conv1d(bias=False) + nn.GroupNorm(C, C) + GELU, and the positional conv as
    nn.utils.weight_norm(nn.Conv1d(..., groups=G), dim=2). Returns the max abs differences (float64)."""
    gen = torch.Generator().manual_seed(seed)
    cfg = {'conv_kernel': [10, 3], 'conv_stride': [5, 2], 'feat_extract_norm': 'group', 'conv_dim': [7, 5]}
    P = {'wav2vec2.feature_extractor.conv_layers.0.conv.weight': torch.randn(7, 1, 10, generator=gen, dtype=torch.float64),
         'wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight': 1 + 0.1 * torch.randn(7, generator=gen, dtype=torch.float64),
         'wav2vec2.feature_extractor.conv_layers.0.layer_norm.bias': 0.1 * torch.randn(7, generator=gen, dtype=torch.float64),
         'wav2vec2.feature_extractor.conv_layers.1.conv.weight': torch.randn(5, 7, 3, generator=gen, dtype=torch.float64)}
    x = torch.randn(3, 1234, generator=gen, dtype=torch.float64)
    conv0 = torch.nn.Conv1d(1, 7, 10, stride=5, bias=False).double()
    norm0 = torch.nn.GroupNorm(7, 7, affine=True).double()
    conv1 = torch.nn.Conv1d(7, 5, 3, stride=2, bias=False).double()
    with torch.no_grad():
        conv0.weight.copy_(P['wav2vec2.feature_extractor.conv_layers.0.conv.weight'])
        norm0.weight.copy_(P['wav2vec2.feature_extractor.conv_layers.0.layer_norm.weight'])
        norm0.bias.copy_(P['wav2vec2.feature_extractor.conv_layers.0.layer_norm.bias'])
        conv1.weight.copy_(P['wav2vec2.feature_extractor.conv_layers.1.conv.weight'])
        expected = F.gelu(conv1(F.gelu(norm0(conv0(x[:, None, :])))))
        group_diff = (feature_encoder(x, P, cfg) - expected).abs().max().item()
    pos_diffs = []
    for H, G, K in ((12, 3, 7), (12, 4, 8)):
        conv = torch.nn.Conv1d(H, H, K, padding=K // 2, groups=G).double()
        conv = torch.nn.utils.weight_norm(conv, name='weight', dim=2)
        with torch.no_grad():
            conv.weight_g.copy_(0.5 + torch.rand(conv.weight_g.shape, generator=gen, dtype=torch.float64))
            conv.weight_v.copy_(torch.randn(conv.weight_v.shape, generator=gen, dtype=torch.float64))
            conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=gen, dtype=torch.float64))
            h = torch.randn(2, 9, H, generator=gen, dtype=torch.float64)
            y = conv(h.transpose(1, 2))
            expected = F.gelu(y[:, :, :-1] if K % 2 == 0 else y).transpose(1, 2)
            Q = {'wav2vec2.encoder.pos_conv_embed.conv.weight_g': conv.weight_g,
                 'wav2vec2.encoder.pos_conv_embed.conv.weight_v': conv.weight_v,
                 'wav2vec2.encoder.pos_conv_embed.conv.bias': conv.bias}
            got = pos_conv_embed(h, pos_conv_weight(Q), Q, {'num_conv_pos_embeddings': K,
                                                            'num_conv_pos_embedding_groups': G})
            pos_diffs.append((got - expected).abs().max().item())
    return {'group_norm_feature_encoder_vs_nn_GroupNorm': group_diff, 'pos_conv_vs_nn_utils_weight_norm': max(pos_diffs)}


def finite_difference_check(weights, cfg, input_values, attention_mask, labels, grads, loss='loss_masked_mean',
                            per_tensor=2, h=1e-6, seed=0):
    """Central differences (float64) of `loss` for a few random entries of every trainable tensor, against the
    autograd grads. Returns (max |fd - grad| / max|grad of that tensor|, number of entries checked)."""
    gen = torch.Generator().manual_seed(seed)
    P = OrderedDict((k, v.to(torch.float64)) for k, v in weights.items())

    def loss_at(name, idx, delta):
        Q = dict(P)
        t = P[name].clone()
        t.view(-1)[idx] += delta
        Q[name] = t
        with torch.no_grad():
            return forward(Q, cfg, input_values.to(torch.float64), attention_mask, labels)[loss].item()
    worst, count = 0.0, 0
    for name in P:
        if name.startswith(FROZEN_PREFIX):
            continue
        g = grads['grad.' + name]
        scale = g.abs().max().item()
        if scale < ZERO_SCALE:
            continue
        for idx in torch.randint(0, g.numel(), (per_tensor,), generator=gen).tolist():
            fd = (loss_at(name, idx, h) - loss_at(name, idx, -h)) / (2 * h)
            worst = max(worst, abs(fd - g.view(-1)[idx].item()) / scale)
            count += 1
    return worst, count


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = argv[1:] or [os.path.normpath(os.path.join(here, '..', '..', '..', 'shared', 'fixtures', 'xlsr_tiny'))]
    checks = module_cross_check()
    print('module cross-check (max abs diff vs torch.nn modules): %s' % ', '.join('%s %.1e' % kv for kv in checks.items()))
    bad = max(checks.values()) > 1e-12
    for d in dirs:
        _, failures = verify_fixture(d)
        bad = bad or bool(failures)
    return 1 if bad else 0


if __name__ == '__main__':
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sys.exit(main(sys.argv))
