#!/usr/bin/python3
"""Our own float64 PyTorch reference of WavLM and Whisper with Hugging Face's classification heads (transformers
4.30.2 semantics; Whisper's weighted layer sum as fixed in v4.37), and a generator of fixtures ../shared does not hold.

  WavLM    wav2vec2's encoder (both layouts) + the gated relative position bias: layer 0's rel_attn_embed
           [num_buckets, heads] looked up at the T5 bucket of (key - query) over the padded length (float32 log,
           truncation; nb = num_buckets // 2 per direction, so an odd num_buckets leaves the last row unused), reused
           by every layer; each layer's gate from its attention input split per head: r = gru_rel_pos_linear(x_h),
           pairs of four summed, a, c = sigmoid, gate = a * (c * gru_rel_pos_const - 1) + 2; scores
           q k^T / sqrt(d) + gate[b, h, query] * bias[h, query, key], padded keys -inf (torch's key_padding_mask).
  Whisper  WhisperFeatureExtractor (numpy, as v4.30: f32 clip padded/truncated to chunk_length s, reflect pad n_fft/2,
           periodic Hann, rfft in float64 stored as complex64, |X|^2 in float64, Slaney mel bank, log10(max(., 1e-10))
           cast to f32, last frame dropped, max - 8 floor, (x + 4) / 4); encoder conv1 (k3 p1) GELU conv2 (k3 s2 p1)
           GELU + ALL embed_positions rows, pre-LN layers (k_proj without bias), final LayerNorm; head: [softmax(
           layer_weights)-weighted sum of hidden_states] -> projector -> mean over all frames -> classifier.

Written from a reading of the public HF source (not copied); plain torch.nn.functional on checkpoint-named tensors.
Validated against the real-HF fixtures ../shared/fixtures/{wavlm_tiny,whisper_tiny_cls} (every stored tensor,
gradients included) before anything is written; it refuses to write when they disagree.

  /usr/bin/python3 tools/ref/wavlm_whisper_ref.py --validate-only
  /usr/bin/python3 tools/ref/wavlm_whisper_ref.py            # validate, then (re)write test/fixtures/fam_{wavlm,whisper}_*
  /usr/bin/python3 tools/ref/wavlm_whisper_ref.py fam_wavlm_base_cap   # validate, then one case
"""
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wav2vec2_ref as W  # noqa: E402
import families_ref as FR  # noqa: E402
from wavlm_bias_ref import bucket as relative_bucket  # noqa: E402  (HF's _relative_positions_bucket)

FR.PREFIX['wavlm'] = 'wavlm.'
ROOT, SHARED = FR.ROOT, FR.SHARED


# ----------------------------------------------------------------------------------------------------------------------
# WavLM

def wavlm_attention(x, P, pre, heads, frame_mask, position_bias, out, index):
    B, T, H = x.shape
    hd = H // heads
    r = F.linear(x.view(B, T, heads, hd).permute(0, 2, 1, 3), P[pre + '.gru_rel_pos_linear.weight'], P[pre + '.gru_rel_pos_linear.bias'])
    a, c = torch.sigmoid(r.view(B, heads, T, 2, 4).sum(-1)).chunk(2, dim=-1)
    gate = a * (c * P[pre + '.gru_rel_pos_const'] - 1.0) + 2.0  # [B, heads, T, 1]
    out['gate.%d' % index] = gate[..., 0]
    split = lambda t: t.view(B, T, heads, hd).transpose(1, 2)
    q = split(F.linear(x, P[pre + '.q_proj.weight'], P[pre + '.q_proj.bias']))
    k = split(F.linear(x, P[pre + '.k_proj.weight'], P[pre + '.k_proj.bias']))
    v = split(F.linear(x, P[pre + '.v_proj.weight'], P[pre + '.v_proj.bias']))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd) + gate * position_bias[None]
    scores = scores.masked_fill(~frame_mask[:, None, None, :], float('-inf'))
    ctx = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, H)
    return F.linear(ctx, P[pre + '.out_proj.weight'], P[pre + '.out_proj.bias'])


def wavlm_layer(x, P, cfg, pre, frame_mask, position_bias, stable, out, index):
    eps, heads = cfg['layer_norm_eps'], cfg['num_attention_heads']
    ff = lambda h: F.linear(F.gelu(F.linear(h, P[pre + '.feed_forward.intermediate_dense.weight'], P[pre + '.feed_forward.intermediate_dense.bias'])),
                            P[pre + '.feed_forward.output_dense.weight'], P[pre + '.feed_forward.output_dense.bias'])
    attn = lambda h: wavlm_attention(h, P, pre + '.attention', heads, frame_mask, position_bias, out, index)
    if stable:
        x = x + attn(FR.layer_norm(x, P, pre + '.layer_norm', eps))
        return x + ff(FR.layer_norm(x, P, pre + '.final_layer_norm', eps))
    x = FR.layer_norm(x + attn(x), P, pre + '.layer_norm', eps)
    return FR.layer_norm(x + ff(x), P, pre + '.final_layer_norm', eps)


def wavlm_forward(P, cfg, input_values, attention_mask, labels):
    """WavLMModel and WavLMForSequenceClassification's head; returns every named tensor."""
    out = OrderedDict()
    p = 'wavlm.'
    eps = cfg['layer_norm_eps']
    stable = cfg.get('do_stable_layer_norm', False)
    extract = FR.feature_encoder(input_values, P, cfg, p).transpose(1, 2).detach().requires_grad_(True)
    extract.retain_grad()
    B, T, _ = extract.shape
    out['extract_features'] = extract
    frame_mask, frame_lengths = W.frame_mask_from_sample_mask(attention_mask, T, cfg)
    out['frame_mask'] = frame_mask.to(torch.int32)
    out['frame_lengths'] = frame_lengths
    h = FR.layer_norm(extract, P, p + 'feature_projection.layer_norm', eps)
    out['extract_features_normed'] = h
    fp = F.linear(h, P[p + 'feature_projection.projection.weight'], P[p + 'feature_projection.projection.bias'])
    fp.retain_grad()
    out['feature_projection_output'] = fp
    x = fp.masked_fill(~frame_mask[:, :, None], 0.0)
    pos, w_pos = FR.positional(x, P, cfg, p)
    w_pos.retain_grad()
    out['derived.%sencoder.pos_conv_embed.conv.weight' % p] = w_pos
    out['pos_conv_embed_output'] = pos
    x = x + pos
    if not stable:
        x = FR.layer_norm(x, P, p + 'encoder.layer_norm', eps)
    positions = torch.arange(T)
    buckets = relative_bucket(positions[None, :] - positions[:, None], cfg['num_buckets'], cfg['max_bucket_distance'], torch.float32)
    out['relative_position_bucket'] = buckets.to(torch.int32)
    position_bias = P[p + 'encoder.layers.0.attention.rel_attn_embed.weight'][buckets].permute(2, 0, 1)
    out['position_bias'] = position_bias
    hidden = []
    for i in range(cfg['num_hidden_layers']):
        hidden.append(x)
        x = wavlm_layer(x, P, cfg, '%sencoder.layers.%d' % (p, i), frame_mask, position_bias, stable, out, i)
    out['encoder_last_layer_output'] = x
    if stable:
        x = FR.layer_norm(x, P, p + 'encoder.layer_norm', eps)
    hidden.append(x)
    for i, t in enumerate(hidden):
        t.retain_grad()
        out['hidden_states.%d' % i] = t
    out['last_hidden_state'] = x
    src = x
    if cfg.get('use_weighted_layer_sum', False):
        src = (torch.stack(hidden, dim=1) * torch.softmax(P['layer_weights'], dim=-1).view(-1, 1, 1)).sum(dim=1)
    projected = F.linear(src, P['projector.weight'], P['projector.bias'])
    projected.retain_grad()
    out['projected_states'] = projected
    pooled = projected.masked_fill(~frame_mask[:, :, None], 0.0).sum(dim=1) / frame_mask.sum(dim=1, keepdim=True).to(x.dtype)
    pooled.retain_grad()
    out['pooled_output'] = pooled
    logits = F.linear(pooled, P['classifier.weight'], P['classifier.bias'])
    logits.retain_grad()
    out['logits'] = logits
    out['loss'] = F.cross_entropy(logits, labels)
    return out


def wavlm_shapes(cfg):
    """WavLMForSequenceClassification's state_dict order: wav2vec2's, with each attention's gru_rel_pos_const (a
    Parameter of the module itself, so before its submodules), gru_rel_pos_linear and layer 0's rel_attn_embed."""
    H, heads = cfg['hidden_size'], cfg['num_attention_heads']
    out = OrderedDict()
    for name, shape in FR.shapes_of(cfg).items():
        if name.endswith('.attention.k_proj.weight'):
            out[name.replace('k_proj.weight', 'gru_rel_pos_const')] = [1, heads, 1, 1]
        out[name] = shape
        if name.endswith('.attention.out_proj.bias'):
            pre = name[:-len('out_proj.bias')]
            out[pre + 'gru_rel_pos_linear.weight'] = [8, H // heads]
            out[pre + 'gru_rel_pos_linear.bias'] = [8]
            if pre.startswith('wavlm.encoder.layers.0.'):
                out[pre + 'rel_attn_embed.weight'] = [cfg['num_buckets'], heads]
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Whisper

def hertz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    mels = 3.0 * f / 200.0
    log = f >= 1000.0
    mels = np.where(log, 15.0 + np.log(np.where(log, f, 1000.0) / 1000.0) * (27.0 / np.log(6.4)), mels)
    return mels


def mel_to_hertz(m):
    m = np.asarray(m, dtype=np.float64)
    f = 200.0 * m / 3.0
    log = m >= 15.0
    return np.where(log, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), f)


def mel_filter_bank(num_frequency_bins, num_mel_filters, sampling_rate, fmin=0.0, fmax=8000.0):
    """HF audio_utils.mel_filter_bank(norm='slaney', mel_scale='slaney'): [num_frequency_bins, num_mel_filters]."""
    filter_freqs = mel_to_hertz(np.linspace(hertz_to_mel(fmin), hertz_to_mel(fmax), num_mel_filters + 2))
    fft_freqs = np.linspace(0, sampling_rate // 2, num_frequency_bins)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    bank = np.maximum(np.zeros(1), np.minimum(down, up))
    return bank * (2.0 / (filter_freqs[2:num_mel_filters + 2] - filter_freqs[:num_mel_filters]))[None, :]


def whisper_log_mel(waveform, pp):
    """One clip -> [feature_size, frames] float32, as WhisperFeatureExtractor v4.30 (numpy path)."""
    n_fft, hop, n_samples = pp['n_fft'], pp['hop_length'], pp['chunk_length'] * pp['sampling_rate']
    x = np.asarray(waveform, dtype=np.float32)[:n_samples]
    x = np.concatenate([x, np.full(n_samples - len(x), pp.get('padding_value', 0.0), dtype=np.float32)])
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode='reflect').astype(np.float64)
    window = np.hanning(n_fft + 1)[:-1]
    frames = 1 + (len(x) - n_fft) // hop
    spec = np.empty((frames, n_fft // 2 + 1), dtype=np.complex64)
    for t in range(frames):
        spec[t] = np.fft.rfft(x[t * hop:t * hop + n_fft] * window)
    power = (np.abs(spec, dtype=np.float64) ** 2.0).T
    mel = np.maximum(1e-10, mel_filter_bank(n_fft // 2 + 1, pp['feature_size'], pp['sampling_rate']).T @ power)
    log = np.asarray(np.log10(mel), dtype=np.float32)[:, :-1]
    log = np.maximum(log, log.max() - 8.0)
    return (log + 4.0) / 4.0


def whisper_forward(P, cfg, input_features, labels):
    out = OrderedDict()
    p = 'encoder.'
    heads = cfg['encoder_attention_heads']
    ln = lambda t, name: F.layer_norm(t, (t.shape[-1],), P[name + '.weight'], P[name + '.bias'], 1e-5)
    x = F.gelu(F.conv1d(input_features, P[p + 'conv1.weight'], P[p + 'conv1.bias'], padding=1))
    x = F.gelu(F.conv1d(x, P[p + 'conv2.weight'], P[p + 'conv2.bias'], stride=2, padding=1))
    extract = x.permute(0, 2, 1)
    out['extract_features'] = extract
    h = extract + P[p + 'embed_positions.weight']
    B, T, D = h.shape
    hd = D // heads
    split = lambda t: t.view(B, T, heads, hd).transpose(1, 2)
    hidden = []
    for i in range(cfg['encoder_layers']):
        hidden.append(h)
        L = '%slayers.%d.' % (p, i)
        a = ln(h, L + 'self_attn_layer_norm')
        q = split(F.linear(a, P[L + 'self_attn.q_proj.weight'], P[L + 'self_attn.q_proj.bias']) * hd ** -0.5)
        k = split(F.linear(a, P[L + 'self_attn.k_proj.weight']))
        v = split(F.linear(a, P[L + 'self_attn.v_proj.weight'], P[L + 'self_attn.v_proj.bias']))
        ctx = (torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        h = h + F.linear(ctx, P[L + 'self_attn.out_proj.weight'], P[L + 'self_attn.out_proj.bias'])
        f = F.gelu(F.linear(ln(h, L + 'final_layer_norm'), P[L + 'fc1.weight'], P[L + 'fc1.bias']))
        h = h + F.linear(f, P[L + 'fc2.weight'], P[L + 'fc2.bias'])
    out['encoder_last_layer_output'] = h
    h = ln(h, p + 'layer_norm')
    hidden.append(h)
    for i, t in enumerate(hidden):
        t.retain_grad()
        out['hidden_states.%d' % i] = t
    src = h
    if cfg.get('use_weighted_layer_sum', False):
        w = torch.softmax(P['layer_weights'], dim=-1)
        out['layer_weights_softmax'] = w
        src = (torch.stack(hidden, dim=1) * w.view(-1, 1, 1)).sum(dim=1)
    projected = F.linear(src, P['projector.weight'], P['projector.bias'])
    projected.retain_grad()
    out['projected_states'] = projected
    pooled = projected.mean(dim=1)
    pooled.retain_grad()
    out['pooled_output'] = pooled
    logits = F.linear(pooled, P['classifier.weight'], P['classifier.bias'])
    logits.retain_grad()
    out['logits'] = logits
    out['loss'] = F.cross_entropy(logits, labels)
    return out


def whisper_shapes(cfg, head=True):
    D, I, mels = cfg['d_model'], cfg['encoder_ffn_dim'], cfg['num_mel_bins']
    s = OrderedDict()
    if head and cfg.get('use_weighted_layer_sum'):
        s['layer_weights'] = [cfg['encoder_layers'] + 1]
    s['encoder.conv1.weight'] = [D, mels, 3]
    s['encoder.conv1.bias'] = [D]
    s['encoder.conv2.weight'] = [D, D, 3]
    s['encoder.conv2.bias'] = [D]
    s['encoder.embed_positions.weight'] = [cfg['max_source_positions'], D]
    for i in range(cfg['encoder_layers']):
        L = 'encoder.layers.%d.' % i
        s[L + 'self_attn.k_proj.weight'] = [D, D]
        for proj in ('v_proj', 'q_proj', 'out_proj'):
            s[L + 'self_attn.%s.weight' % proj] = [D, D]
            s[L + 'self_attn.%s.bias' % proj] = [D]
        s[L + 'self_attn_layer_norm.weight'] = [D]
        s[L + 'self_attn_layer_norm.bias'] = [D]
        s[L + 'fc1.weight'] = [I, D]
        s[L + 'fc1.bias'] = [I]
        s[L + 'fc2.weight'] = [D, I]
        s[L + 'fc2.bias'] = [D]
        s[L + 'final_layer_norm.weight'] = [D]
        s[L + 'final_layer_norm.bias'] = [D]
    s['encoder.layer_norm.weight'] = [D]
    s['encoder.layer_norm.bias'] = [D]
    if head:
        s['projector.weight'] = [cfg['classifier_proj_size'], D]
        s['projector.bias'] = [cfg['classifier_proj_size']]
        s['classifier.weight'] = [len(cfg['id2label']), cfg['classifier_proj_size']]
        s['classifier.bias'] = [len(cfg['id2label'])]
    return s


# ----------------------------------------------------------------------------------------------------------------------
# running and validation

WAVLM_GRAD_ACTIVATIONS = FR.GRAD_ACTIVATIONS


def run(weights, cfg, inputs, labels):
    """Forward + backward in float64; wavlm: inputs = (input_values, attention_mask), feature encoder frozen (HF's
    freeze_feature_encoder, as wavlm_tiny); whisper: inputs = input_features, every parameter trainable (as
    whisper_tiny_cls). Returns forward tensors and grad.<name> of the loss."""
    fam = cfg['model_type']
    frozen = (lambda k: k.startswith('wavlm.feature_extractor.')) if fam == 'wavlm' else (lambda k: False)
    P = OrderedDict((k, v.to(torch.float64).requires_grad_(not frozen(k))) for k, v in weights.items())
    lab = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if fam == 'wavlm':
        out = wavlm_forward(P, cfg, torch.as_tensor(inputs[0], dtype=torch.float64), torch.as_tensor(inputs[1]), lab)
        tapped = lambda k: k in WAVLM_GRAD_ACTIVATIONS or k.startswith('hidden_states.') or k.startswith('derived.')
    else:
        out = whisper_forward(P, cfg, torch.as_tensor(np.asarray(inputs), dtype=torch.float64), lab)
        tapped = lambda k: k in ('pooled_output', 'logits', 'projected_states') or k.startswith('hidden_states.')
    out['loss'].backward()
    res = OrderedDict((k, v.detach()) for k, v in out.items())
    for k, v in P.items():
        if v.grad is not None:
            res['grad.' + k] = v.grad.detach()
    for k, v in out.items():
        if tapped(k) and v.grad is not None:
            res['grad.' + k] = v.grad.detach()
    return res


def compare_all(name, ours, ref, limit=1e-12, skip=()):
    """Every reference tensor we also computed: worst max|x - ref| / max|ref|; analytically zero ones by abs error."""
    worst, worst_name, compared, zero_abs = 0.0, None, 0, 0.0
    missing = [k for k in ref if k not in ours and k not in skip]
    for k, r in ref.items():
        if k not in ours or k in skip:
            continue
        r = r.to(torch.float64)
        v = ours[k].to(torch.float64)
        if tuple(v.shape) != tuple(r.shape):
            raise SystemExit('%s: %s has shape %s, HF %s' % (name, k, list(v.shape), list(r.shape)))
        scale = float(r.abs().max()) if r.numel() else 0.0
        err = float((v - r).abs().max()) if r.numel() else 0.0
        compared += 1
        if scale < 1e-12:
            zero_abs = max(zero_abs, err)
            if err > 1e-15:
                raise SystemExit('%s: %s (analytically zero) differs by %.3g' % (name, k, err))
            continue
        if err / scale > worst:
            worst, worst_name = err / scale, k
        if err / scale > limit:
            raise SystemExit('%s: %s differs from the HF reference by %.3g (limit %g)' % (name, k, err / scale, limit))
    return {'compared': compared, 'worst_rel': worst, 'worst': worst_name, 'zero_reference_max_abs': zero_abs, 'not_computed': missing}


def validate_wavlm(verbose=True):
    d = os.path.join(SHARED, 'wavlm_tiny')
    cfg = json.load(open(os.path.join(d, 'config.json')))
    manifest = json.load(open(os.path.join(d, 'manifest.json')))
    weights = W.read_safetensors(os.path.join(d, 'model.safetensors'))[0]
    order = [(k, v) for k, v in wavlm_shapes(cfg).items()]
    if order != [(k['name'], k['shape']) for k in manifest['weights']['keys']]:
        raise SystemExit('wavlm_tiny: our parameter list/order differs from the manifest\'s weights.keys')
    ref = W.read_safetensors(os.path.join(d, 'reference.safetensors'))[0]
    # the feature extractor from the raw waveforms, bit for bit
    waves = [ref['raw_waveform.%d' % i].numpy() for i in range(len(manifest['batch']['input_lengths']))]
    values, mask = W.feature_extractor(waves)
    fe_err = float(np.abs(values - ref['input_values'].numpy()).max())
    if fe_err != 0 or not np.array_equal(mask, ref['attention_mask'].numpy()):
        raise SystemExit('wavlm_tiny: input_values/attention_mask differ from the feature extractor (%.3g)' % fe_err)
    ours = run(weights, cfg, (ref['input_values'], ref['attention_mask']), ref['labels'])
    inputs = {'input_values', 'attention_mask', 'labels', 'input_lengths'} | {k for k in ref if k.startswith('raw_waveform.')}
    res = compare_all('wavlm_tiny', ours, ref, skip=inputs)
    exact = all(torch.equal(ours[k].to(torch.int64), ref[k].to(torch.int64)) for k in ('relative_position_bucket', 'frame_mask', 'frame_lengths'))
    if not exact or res['not_computed']:
        raise SystemExit('wavlm_tiny: integer tensors differ or tensors not computed: %s' % res['not_computed'])
    res['input_values_max_abs'] = fe_err
    grads = sum(1 for k in ref if k.startswith('grad.'))
    if verbose:
        print('wavlm_tiny: %d tensors (%d gradients) agree with the real HF code, worst relative error %.2g (%s); '
              'analytically zero grads within %.2g abs; buckets, frame mask, input_values exact'
              % (res['compared'], grads, res['worst_rel'], res['worst'], res['zero_reference_max_abs']))
    return res


def validate_whisper(verbose=True):
    d = os.path.join(SHARED, 'whisper_tiny_cls')
    cfg = json.load(open(os.path.join(d, 'config.json')))
    pp = json.load(open(os.path.join(d, 'preprocessor_config.json')))
    manifest = json.load(open(os.path.join(d, 'manifest.json')))
    if [(k, v) for k, v in whisper_shapes(cfg).items()] != [(k['name'], k['shape']) for k in manifest['weights']['keys']]:
        raise SystemExit('whisper_tiny_cls: our parameter list/order differs from the manifest\'s weights.keys')
    weights = W.read_safetensors(os.path.join(d, 'model.safetensors'))[0]
    ref = W.read_safetensors(os.path.join(d, 'reference.safetensors'))[0]
    n = len(manifest['batch']['input_lengths'])
    feats = np.stack([whisper_log_mel(ref['raw_waveform.%d' % i].numpy(), pp) for i in range(n)])
    fe_err = float(np.abs(feats - ref['input_features'].numpy()).max())
    bank_err = float(np.abs(mel_filter_bank(pp['n_fft'] // 2 + 1, pp['feature_size'], pp['sampling_rate']) - ref['feature_extractor.mel_filters'].numpy()).max())
    win_err = float(np.abs(np.hanning(pp['n_fft'] + 1)[:-1] - ref['feature_extractor.window'].numpy()).max())
    if fe_err > 0 or bank_err > 1e-15 or win_err > 0:
        raise SystemExit('whisper_tiny_cls: feature extractor differs: features %.3g, mel bank %.3g, window %.3g' % (fe_err, bank_err, win_err))
    ours = run(weights, cfg, ref['input_features'].numpy(), ref['labels'])
    ours['last_hidden_state'] = ours['hidden_states.%d' % cfg['encoder_layers']]
    skip = {'input_features', 'labels', 'input_lengths', 'feature_extractor.window', 'feature_extractor.mel_filters'} | {k for k in ref if k.startswith('raw_waveform.')}
    res = compare_all('whisper_tiny_cls', ours, ref, skip=skip)
    if res['not_computed']:
        raise SystemExit('whisper_tiny_cls: not computed: %s' % res['not_computed'])
    res.update(input_features_max_abs=fe_err, mel_filters_max_abs=bank_err, window_max_abs=win_err)
    grads = sum(1 for k in ref if k.startswith('grad.'))
    if verbose:
        print('whisper_tiny_cls: %d tensors (%d gradients) agree with the real HF code, worst relative error %.2g (%s: 0 means bit-identical); '
              'input_features from the raw waveforms max abs %.2g, mel filters %.2g, window %.2g'
              % (res['compared'], grads, res['worst_rel'], res['worst'], fe_err, bank_err, win_err))
    return res



# ----------------------------------------------------------------------------------------------------------------------
# fixture generation

LABELS = FR.LABELS


def random_weights(shapes, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, shape in shapes.items():
        rnd = lambda: torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.endswith('weight_g'):
            t = (cfg['hidden_size'] / shape[2]) ** 0.5 * (0.5 + 0.9 * torch.rand(shape, generator=gen, dtype=torch.float64))
        elif name.endswith('gru_rel_pos_const'):
            t = 1.0 + 0.5 * rnd()  # HF: ones; spread so the gate differs per head
        elif name.endswith('rel_attn_embed.weight') or name.endswith('embed_positions.weight'):
            t = rnd()  # nn.Embedding's N(0, 1): the bias and the positions matter
        elif name.endswith('.bias') or name in ('layer_weights',) or name.endswith('masked_spec_embed'):
            t = 0.3 * rnd()
        elif 'norm' in name:
            t = 1.0 + 0.1 * rnd()
        else:
            t = rnd() / int(np.prod(shape[1:])) ** 0.5
        out[name] = t.to(torch.float32)
    return out


def waves(lengths, seed):
    return FR.waves(lengths, seed)


CASES = OrderedDict([
    # WavLM base layout (GroupNorm conv 0, post-LN, conv_bias false as microsoft/wavlm-base): 3 heads of 12, 3 layers
    # (the bias from layer 0 re-gated by each), 20 buckets (10 per direction, 5 exact) with max_bucket_distance 24 and
    # 41 padded frames: distances 5..17 take the log branch, 18..40 the last bucket per side (9 and 19; the min() cap
    # binds from 24 on); a 400-sample clip
    # (one frame: softmax over one key) in the batch
    ('fam_wavlm_base_cap', dict(family='wavlm', cfg=dict(
        model_type='wavlm', feat_extract_norm='group', do_stable_layer_norm=False, conv_bias=False, hidden_size=36,
        num_attention_heads=3, intermediate_size=60, num_hidden_layers=3, num_conv_pos_embeddings=12,
        num_conv_pos_embedding_groups=3, conv_dim=[20] * 7, num_buckets=20, max_bucket_distance=24,
        use_weighted_layer_sum=False, classifier_proj_size=14), lengths=[13300, 400, 7777], labels=[2, 0, 4])),
    # WavLM stable layout (wavlm-large's) with the weighted layer sum and an ODD num_buckets (HF allows it: nb = 15 // 2
    # = 7 per direction, the 15th row is never looked up and gets a zero gradient), 5 heads of 8, 4 items
    ('fam_wavlm_stable_weighted_oddbuckets', dict(family='wavlm', cfg=dict(
        model_type='wavlm', feat_extract_norm='layer', do_stable_layer_norm=True, conv_bias=True, hidden_size=40,
        num_attention_heads=5, intermediate_size=56, num_hidden_layers=2, num_conv_pos_embeddings=9,
        num_conv_pos_embedding_groups=5, conv_dim=[16] * 7, num_buckets=15, max_bucket_distance=13,
        use_weighted_layer_sum=True, classifier_proj_size=10), lengths=[9000, 6001, 3333, 11111], labels=[1, 3, 0, 2])),
    # Whisper large-v3 style: 128 mel bins, no weighted sum, chunk_length 2 s (200 log-mel frames, so
    # max_source_positions = 100), 3 heads of 16, clips of odd lengths: 401 samples, and one longer than the chunk
    # (truncated to 2 s)
    ('fam_whisper_mel128_2s', dict(family='whisper', cfg=dict(
        model_type='whisper', num_mel_bins=128, d_model=48, encoder_layers=2, encoder_attention_heads=3,
        encoder_ffn_dim=80, max_source_positions=100, use_weighted_layer_sum=False, classifier_proj_size=12),
        chunk_length=2, lengths=[12345, 401, 40001], labels=[3, 1, 4])),
    # a seq2seq checkpoint (WhisperForConditionalGeneration naming: model.encoder.*, some model.decoder.*, proj_out)
    # without head weights; the reference holds the encoder's outputs only: loading must skip the decoder with a
    # notice and initialise the head, and the encoder then reproduce the reference
    ('fam_whisper_seq2seq_encoder', dict(family='whisper', seq2seq=True, cfg=dict(
        model_type='whisper', num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2,
        encoder_ffn_dim=64, max_source_positions=50, use_weighted_layer_sum=True, classifier_proj_size=8,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, vocab_size=60, max_target_positions=16),
        chunk_length=1, lengths=[9999, 16000], labels=[0, 1])),
])


def wavlm_config(spec):
    cfg = dict(spec, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], layer_norm_eps=1e-5,
               hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
               layerdrop=0.0, apply_spec_augment=False, mask_time_prob=0.05, hidden_act='gelu', feat_extract_activation='gelu',
               id2label={str(i): l for i, l in enumerate(LABELS)}, label2id={l: i for i, l in enumerate(LABELS)},
               architectures=['WavLMForSequenceClassification'])
    return cfg


def whisper_config(spec, seq2seq):
    cfg = dict(activation_dropout=0.0, activation_function='gelu', attention_dropout=0.0, dropout=0.0, encoder_layerdrop=0.0,
               decoder_layerdrop=0.0, init_std=0.02, scale_embedding=False, is_encoder_decoder=True, apply_spec_augment=False,
               decoder_layers=2, decoder_attention_heads=spec['encoder_attention_heads'], decoder_ffn_dim=spec['encoder_ffn_dim'],
               max_target_positions=448, vocab_size=51865, num_hidden_layers=spec['encoder_layers'],
               pad_token_id=50256, bos_token_id=50257, eos_token_id=50256, decoder_start_token_id=50257,
               id2label={str(i): l for i, l in enumerate(LABELS)}, label2id={l: i for i, l in enumerate(LABELS)},
               architectures=['WhisperForConditionalGeneration' if seq2seq else 'WhisperForAudioClassification'])
    cfg.update(spec)
    if seq2seq:
        cfg['pad_token_id'] = cfg['eos_token_id'] = cfg['vocab_size'] - 2
        cfg['bos_token_id'] = cfg['decoder_start_token_id'] = cfg['vocab_size'] - 1
    return cfg


def whisper_preprocessor(mels, chunk_length):
    sr, hop = 16000, 160
    return {'chunk_length': chunk_length, 'feature_extractor_type': 'WhisperFeatureExtractor', 'feature_size': mels,
            'hop_length': hop, 'n_fft': 400, 'n_samples': chunk_length * sr, 'nb_max_frames': chunk_length * sr // hop,
            'padding_side': 'right', 'padding_value': 0.0, 'return_attention_mask': False, 'sampling_rate': sr}


def decoder_shapes(cfg):
    """A few of WhisperForConditionalGeneration's decoder keys (enough to be skipped; not a working decoder)."""
    D, V, I = cfg['d_model'], cfg['vocab_size'], cfg['decoder_ffn_dim']
    s = OrderedDict()
    s['model.decoder.embed_tokens.weight'] = [V, D]
    s['model.decoder.embed_positions.weight'] = [cfg['max_target_positions'], D]
    for i in range(cfg['decoder_layers']):
        L = 'model.decoder.layers.%d.' % i
        s[L + 'self_attn.k_proj.weight'] = [D, D]
        s[L + 'encoder_attn.q_proj.weight'] = [D, D]
        s[L + 'encoder_attn.q_proj.bias'] = [D]
        s[L + 'fc1.weight'] = [I, D]
        s[L + 'fc1.bias'] = [I]
        s[L + 'final_layer_norm.weight'] = [D]
    s['model.decoder.layer_norm.weight'] = [D]
    s['model.decoder.layer_norm.bias'] = [D]
    return s


def relative_position_facts(cfg, T):
    nb = cfg['num_buckets'] // 2
    max_exact = nb // 2
    delta = torch.arange(-(T - 1), T)
    b = relative_bucket(delta, cfg['num_buckets'], cfg['max_bucket_distance'], torch.float32)
    log_branch = [int(d) for d, k in zip(delta.abs(), b) if d >= max_exact and k % nb < nb - 1]
    capped = [int(d) for d, k in zip(delta.abs(), b) if k % nb == nb - 1]
    return {'T': T, 'buckets_per_direction': nb, 'max_exact': max_exact, 'max_distance_in_batch': T - 1,
            'distinct_buckets_used': sorted(set(int(x) for x in b)), 'num_buckets_rows': cfg['num_buckets'],
            'log_branch_distances': [min(log_branch), max(log_branch)] if log_branch else None,
            'capped_distances': [min(capped), max(capped)] if capped else None,
            'float32_vs_float64_bucket_mismatches': int((b != relative_bucket(delta, cfg['num_buckets'], cfg['max_bucket_distance'], torch.float64)).sum())}


def float32_check(weights, cfg, inputs, labels, ours):
    """Our reference in float32 against the float64 values (what a correct f32 engine roughly reaches)."""
    torch.backends.mkldnn.enabled = False  # torch 1.13's oneDNN f32 GELU backward bug (see whisper_tiny_cls's manifest)
    try:
        fam = cfg['model_type']
        P = OrderedDict((k, v.clone().requires_grad_(not k.startswith('wavlm.feature_extractor.'))) for k, v in weights.items())
        lab = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if fam == 'wavlm':
            o = wavlm_forward(P, cfg, torch.as_tensor(inputs[0], dtype=torch.float32), torch.as_tensor(inputs[1]), lab)
        else:
            o = whisper_forward(P, cfg, torch.as_tensor(np.asarray(inputs), dtype=torch.float32), lab)
        o['loss'].backward()
        rel = lambda a, b: float((a.double() - b).abs().max()) / max(float(b.abs().max()), 1e-300)
        fwd = max(rel(o[k].detach(), ours[k]) for k in ('logits', 'loss', 'hidden_states.%d' % (cfg.get('num_hidden_layers') or cfg['encoder_layers'])))
        grads = [rel(v.grad, ours['grad.' + k]) for k, v in P.items() if v.grad is not None and float(ours['grad.' + k].abs().max()) > 1e-12]
        return {'forward_max_rel_err': fwd, 'grads_max_rel_err': max(grads), 'grads_median_rel_err': float(np.median(grads))}
    finally:
        torch.backends.mkldnn.enabled = True


def write_case(name, case, seed, validation):
    fam, seq2seq = case['family'], case.get('seq2seq', False)
    lengths, labels = case['lengths'], case['labels']
    d = os.path.join(ROOT, 'test', 'fixtures', name)
    os.makedirs(d, exist_ok=True)
    clips = waves(lengths, seed + 1)
    ref = OrderedDict()
    extra = {}
    if fam == 'wavlm':
        cfg = wavlm_config(case['cfg'])
        shapes = wavlm_shapes(cfg)
        pp = {'feature_extractor_type': 'Wav2Vec2FeatureExtractor', 'feature_size': 1, 'sampling_rate': 16000, 'padding_value': 0.0,
              'do_normalize': True, 'return_attention_mask': True, 'padding_side': 'right'}
        weights = random_weights(shapes, cfg, seed)
        input_values, mask = W.feature_extractor(clips)
        inputs = (input_values, mask)
        for i, c in enumerate(clips):
            ref['raw_waveform.%d' % i] = torch.as_tensor(c)
        ref['input_values'] = torch.as_tensor(input_values).to(torch.float64)
        ref['attention_mask'] = torch.as_tensor(mask).to(torch.int32)
    else:
        cfg = whisper_config(case['cfg'], seq2seq)
        pp = whisper_preprocessor(cfg['num_mel_bins'], case['chunk_length'])
        if 2 * cfg['max_source_positions'] != pp['nb_max_frames']:
            raise SystemExit('%s: max_source_positions must be half of the chunk\'s frames' % name)
        shapes = whisper_shapes(cfg)
        weights = random_weights(shapes, dict(cfg, hidden_size=cfg['d_model']), seed)
        feats = np.stack([whisper_log_mel(c, pp) for c in clips])
        inputs = feats
        for i, c in enumerate(clips):
            ref['raw_waveform.%d' % i] = torch.as_tensor(c)
        ref['input_features'] = torch.as_tensor(feats)
        bank = mel_filter_bank(pp['n_fft'] // 2 + 1, pp['feature_size'], pp['sampling_rate'])
        extra['mel_filters_all_zero_columns'] = [int(i) for i in np.where(bank.max(axis=0) == 0.0)[0]]
        extra['clips_truncated_to_chunk'] = [i for i, n in enumerate(lengths) if n > pp['chunk_length'] * pp['sampling_rate']]
    ref['labels'] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    ref['input_lengths'] = torch.as_tensor(np.asarray(lengths, dtype=np.int64))
    ours = run(weights, cfg, inputs, labels)
    f32 = float32_check(weights, cfg, inputs, labels, ours)
    for k, v in ours.items():
        if seq2seq and (k.startswith('grad.') or k in ('projected_states', 'pooled_output', 'logits', 'loss', 'layer_weights_softmax')):
            continue  # no head in the checkpoint: the reference is the encoder's
        if k == 'frame_lengths':
            ref[k] = v.to(torch.int64)
        elif k in ('frame_mask', 'relative_position_bucket'):
            ref[k] = v.to(torch.int32)
        else:
            ref[k] = v.to(torch.float64)
    if seq2seq:
        del ref['labels']
        dec = random_weights(decoder_shapes(cfg), dict(cfg, hidden_size=cfg['d_model']), seed + 5)
        saved = OrderedDict([('model.' + k, v) for k, v in weights.items() if k.startswith('encoder.')])
        saved.update(dec)
        saved['proj_out.weight'] = dec['model.decoder.embed_tokens.weight']  # tied in the real model
    else:
        saved = weights
    json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'), indent=2, sort_keys=True)
    json.dump(pp, open(os.path.join(d, 'preprocessor_config.json'), 'w'), indent=2, sort_keys=True)
    # safetensors refuses tensors sharing storage (HF drops tied proj_out there); the .bin keeps both names
    W.write_safetensors(os.path.join(d, 'model.safetensors'), OrderedDict((k, v) for k, v in saved.items() if k != 'proj_out.weight'), {'format': 'pt'})
    torch.save(OrderedDict((k, v.clone()) for k, v in saved.items()), os.path.join(d, 'pytorch_model.bin'))
    W.write_safetensors(os.path.join(d, 'reference.safetensors'), ref)
    what = {'wavlm': 'WavLM with HF\'s sequence-classification head (WavLMForSequenceClassification), feature encoder frozen',
            'whisper': 'Whisper encoder with HF\'s WhisperForAudioClassification head (weighted layer sum with the v4.37-fixed semantics), every parameter trainable'}[fam]
    if seq2seq:
        what = ('Whisper encoder saved as WhisperForConditionalGeneration names it (model.encoder.*, a few model.decoder.* keys, proj_out.weight '
                'in the .bin only, as safetensors drops the tied copy) WITHOUT head weights: a loading test. The reference holds the encoder\'s outputs '
                '(no head, no loss, no gradients); loading must skip the decoder with a notice and initialise projector/classifier/layer_weights.')
    manifest = OrderedDict([
        ('set', name),
        ('family', fam),
        ('description', 'Generated by tools/ref/wavlm_whisper_ref.py (our float64 reimplementation, validated against the real-HF fixtures '
                        'in ../shared before writing): %s; random weights.' % what),
        ('checkpoint', 'seq2seq_encoder_only' if seq2seq else 'sequence_classification'),
        ('seeds', {'weights': seed, 'data': seed + 1}),
        ('batch', {'input_lengths': lengths, 'labels': labels}),
        ('provenance', {'validated_against_hf': validation, 'generator': 'tools/ref/wavlm_whisper_ref.py',
                        'torch_version': torch.__version__, 'numpy_version': np.__version__}),
        ('verification', {'float32_reference_vs_float64': f32}),
        ('tensors', [{'name': k, 'dtype': W.TORCH_TO_ST[v.dtype], 'shape': list(v.shape)} for k, v in ref.items()]),
        ('weights', {'keys': [{'name': k, 'shape': list(v.shape)} for k, v in saved.items()],
                     'frozen_parameters': [k for k in saved if k.startswith('wavlm.feature_extractor.')]}),
    ])
    if fam == 'wavlm':
        manifest['wavlm_relative_position_bias'] = relative_position_facts(cfg, int(ref['relative_position_bucket'].shape[0]))
        manifest['analytically_zero_gradients'] = sorted(k for k, v in ref.items() if k.startswith('grad.') and float(v.abs().max()) < 1e-12)
    else:
        manifest['whisper_features'] = extra
    if seq2seq:
        manifest['expected_loading'] = {
            'skipped_keys': [k for k in saved if not k.startswith('model.encoder.')],
            'newly_initialized': [k for k in shapes if not k.startswith('encoder.')],
        }
    json.dump(manifest, open(os.path.join(d, 'manifest.json'), 'w'), indent=1)
    sizes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print('wrote %s (%d reference tensors, %.2f MB; f32 vs f64: forward %.1e, grads max %.1e)' % (d, len(ref), sizes / 1e6, f32['forward_max_rel_err'], f32['grads_max_rel_err']))


def main(argv):
    torch.set_num_threads(1)
    names = [a for a in argv if not a.startswith('--')]
    validation = {}
    for label, fn in (('wavlm_tiny', validate_wavlm), ('whisper_tiny_cls', validate_whisper)):
        if os.path.isdir(os.path.join(SHARED, label)):
            r = fn()
            validation[label] = {k: r[k] for k in r if k != 'not_computed'}
        elif '--force' not in argv:
            raise SystemExit('%s absent: refusing to write fixtures without validation (--force overrides)' % label)
    if '--validate-only' in argv:
        return
    for i, (name, case) in enumerate(CASES.items()):
        if not names or name in names:
            v = {k: validation[k] for k in validation if k.startswith(case['family'])}
            write_case(name, case, 9000 + 10 * i, v)


if __name__ == '__main__':
    main(sys.argv[1:])
