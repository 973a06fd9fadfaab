#!/usr/bin/python3
"""Our own float64 PyTorch reference of the wav2vec2-style families with Hugging Face's *ForSequenceClassification
head (transformers 4.30.2 semantics; the weighted layer sum as fixed in v4.37), and a generator of more fixtures than
../shared holds: other layouts, other head options, odd sizes, a 400-sample clip.

  HuBERT          wav2vec2's encoder under `hubert.`; feat_proj_layer_norm false drops the projection's LayerNorm
  data2vec-audio  LayerNorm in every conv layer; num_conv_pos_embeddings stacked positional convs (kernel
                  conv_pos_kernel_size, padding k//2, last frame dropped for even k, LayerNorm without affine, GELU);
                  post-LN encoder
  wav2vec2        as tools/ref/wav2vec2_ref.py, with HF's head instead of the notebook's

Written from a reading of the public HF source (not copied); plain torch.nn.functional on checkpoint-named tensors.
Validated against the real-HF fixtures ../shared/fixtures/{hubert_tiny,data2vec_audio_tiny} before anything is written.

  /usr/bin/python3 tools/ref/families_ref.py --validate-only   # compare with the HF fixtures, print the worst errors
  /usr/bin/python3 tools/ref/families_ref.py                   # validate, then (re)write test/fixtures/fam_*
"""
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wav2vec2_ref as W  # noqa: E402  (safetensors I/O, feature extractor, frame bookkeeping)

ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(ROOT, '..', 'shared', 'fixtures')
PREFIX = {'wav2vec2': 'wav2vec2.', 'hubert': 'hubert.', 'data2vec-audio': 'data2vec_audio.'}


def layer_norm(x, P, name, eps):
    return F.layer_norm(x, (x.shape[-1],), P[name + '.weight'], P[name + '.bias'], eps)


def feature_encoder(input_values, P, cfg, p):
    x = input_values[:, None, :]
    norm = 'layer' if cfg['model_type'] == 'data2vec-audio' else cfg.get('feat_extract_norm', 'group')
    for i, (k, s) in enumerate(zip(cfg['conv_kernel'], cfg['conv_stride'])):
        pre = '%sfeature_extractor.conv_layers.%d' % (p, i)
        x = F.conv1d(x, P[pre + '.conv.weight'], P.get(pre + '.conv.bias'), stride=s)
        if norm == 'layer':
            x = layer_norm(x.transpose(1, 2), P, pre + '.layer_norm', 1e-5).transpose(1, 2)
        elif i == 0:
            mean = x.mean(dim=2, keepdim=True)
            var = (x - mean).pow(2).mean(dim=2, keepdim=True)
            x = (x - mean) / torch.sqrt(var + 1e-5) * P[pre + '.layer_norm.weight'][None, :, None] + P[pre + '.layer_norm.bias'][None, :, None]
        x = F.gelu(x)
    return x


def positional(x, P, cfg, p):
    """[B, T, H] -> the positional embedding [B, T, H] that the encoder adds to x."""
    T = x.shape[1]
    if cfg['model_type'] == 'data2vec-audio':
        k = cfg.get('conv_pos_kernel_size', 19)
        y = x.transpose(1, 2)
        for j in range(cfg.get('num_conv_pos_embeddings', 5)):
            pre = '%sencoder.pos_conv_embed.layers.%d.conv' % (p, j)
            y = F.conv1d(y, P[pre + '.weight'], P[pre + '.bias'], padding=k // 2, groups=cfg['num_conv_pos_embedding_groups'])
            y = y[:, :, :T]
            y = F.gelu(F.layer_norm(y.transpose(1, 2), (y.shape[1],), None, None, 1e-5).contiguous()).transpose(1, 2)
        return y.transpose(1, 2), None
    g = P[p + 'encoder.pos_conv_embed.conv.weight_g']
    v = P[p + 'encoder.pos_conv_embed.conv.weight_v']
    w = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    K = cfg['num_conv_pos_embeddings']
    y = F.conv1d(x.transpose(1, 2), w, P[p + 'encoder.pos_conv_embed.conv.bias'], padding=K // 2, groups=cfg['num_conv_pos_embedding_groups'])
    return F.gelu(y[:, :, :T].transpose(1, 2).contiguous()), w


def attention(x, P, pre, heads, additive_mask):
    B, T, H = x.shape
    hd = H // heads
    split = lambda t: t.view(B, T, heads, hd).transpose(1, 2)
    q = split(F.linear(x, P[pre + '.q_proj.weight'], P[pre + '.q_proj.bias']) * hd ** -0.5)
    k = split(F.linear(x, P[pre + '.k_proj.weight'], P[pre + '.k_proj.bias']))
    v = split(F.linear(x, P[pre + '.v_proj.weight'], P[pre + '.v_proj.bias']))
    probs = torch.softmax(q @ k.transpose(-1, -2) + additive_mask, dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(B, T, H)
    return F.linear(out, P[pre + '.out_proj.weight'], P[pre + '.out_proj.bias'])


def layer(x, P, cfg, pre, additive_mask, stable):
    eps, heads = cfg['layer_norm_eps'], cfg['num_attention_heads']
    ff = lambda h: F.linear(F.gelu(F.linear(h, P[pre + '.feed_forward.intermediate_dense.weight'], P[pre + '.feed_forward.intermediate_dense.bias'])),
                            P[pre + '.feed_forward.output_dense.weight'], P[pre + '.feed_forward.output_dense.bias'])
    if stable:
        x = x + attention(layer_norm(x, P, pre + '.layer_norm', eps), P, pre + '.attention', heads, additive_mask)
        return x + ff(layer_norm(x, P, pre + '.final_layer_norm', eps))
    x = layer_norm(x + attention(x, P, pre + '.attention', heads, additive_mask), P, pre + '.layer_norm', eps)
    return layer_norm(x + ff(x), P, pre + '.final_layer_norm', eps)


def forward(P, cfg, input_values, attention_mask, labels, keep_grads=True):
    """The family's base model and HF's sequence-classification head; returns every named tensor."""
    out = OrderedDict()
    fam = cfg['model_type']
    p = PREFIX[fam]
    eps = cfg['layer_norm_eps']
    stable = fam != 'data2vec-audio' and cfg.get('do_stable_layer_norm', False)
    extract = feature_encoder(input_values, P, cfg, p).transpose(1, 2).detach().requires_grad_(True)
    extract.retain_grad()
    B, T, _ = extract.shape
    out['extract_features'] = extract
    frame_mask, frame_lengths = W.frame_mask_from_sample_mask(attention_mask, T, cfg)
    out['frame_mask'] = frame_mask.to(torch.int32)
    out['frame_lengths'] = frame_lengths
    h = extract
    if fam != 'hubert' or cfg.get('feat_proj_layer_norm', True):
        h = layer_norm(extract, P, p + 'feature_projection.layer_norm', eps)
        out['extract_features_normed'] = h
    fp = F.linear(h, P[p + 'feature_projection.projection.weight'], P[p + 'feature_projection.projection.bias'])
    fp.retain_grad()
    out['feature_projection_output'] = fp
    x = fp.masked_fill(~frame_mask[:, :, None], 0.0)
    additive = (1.0 - frame_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    pos, w_pos = positional(x, P, cfg, p)
    if w_pos is not None:
        w_pos.retain_grad()
        out['derived.%sencoder.pos_conv_embed.conv.weight' % p] = w_pos
    out['pos_conv_embed_output'] = pos
    x = x + pos
    if not stable:
        x = layer_norm(x, P, p + 'encoder.layer_norm', eps)
    hidden = []
    for i in range(cfg['num_hidden_layers']):
        hidden.append(x)
        x = layer(x, P, cfg, '%sencoder.layers.%d' % (p, i), additive, stable)
    out['encoder_last_layer_output'] = x
    if stable:
        x = layer_norm(x, P, p + 'encoder.layer_norm', eps)
    hidden.append(x)
    for i, t in enumerate(hidden):
        t.retain_grad()
        out['hidden_states.%d' % i] = t
    out['last_hidden_state'] = x
    src = x
    if cfg.get('use_weighted_layer_sum', False):
        weights = torch.softmax(P['layer_weights'], dim=-1)
        src = (torch.stack(hidden, dim=1) * weights.view(-1, 1, 1)).sum(dim=1)
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


GRAD_ACTIVATIONS = ('extract_features', 'feature_projection_output', 'projected_states', 'pooled_output', 'logits')


def run(weights, cfg, input_values, attention_mask, labels):
    """Forward + backward in float64 with the feature encoder frozen: forward tensors and grad.<name> of the loss."""
    p = PREFIX[cfg['model_type']]
    P = OrderedDict((k, v.to(torch.float64).requires_grad_(not k.startswith(p + 'feature_extractor.'))) for k, v in weights.items())
    out = forward(P, cfg, torch.as_tensor(input_values, dtype=torch.float64), torch.as_tensor(attention_mask), torch.as_tensor(labels))
    out['loss'].backward()
    res = OrderedDict((k, v.detach()) for k, v in out.items())
    for k, v in P.items():
        if v.grad is not None:
            res['grad.' + k] = v.grad.detach()
    for k, v in out.items():
        if (k in GRAD_ACTIVATIONS or k.startswith('hidden_states.') or k.startswith('derived.')) and v.grad is not None:
            res['grad.' + k] = v.grad.detach()
    return res


def validate(name, verbose=True):
    d = os.path.join(SHARED, name)
    cfg = json.load(open(os.path.join(d, 'config.json')))
    weights = W.read_safetensors(os.path.join(d, 'model.safetensors'))[0]
    ref = W.read_safetensors(os.path.join(d, 'reference.safetensors'))[0]
    ours = run(weights, cfg, ref['input_values'], ref['attention_mask'], ref['labels'])
    worst, compared = 0.0, 0
    for k, v in ours.items():
        if k not in ref or k in ('frame_mask', 'frame_lengths'):
            continue
        r = ref[k].to(torch.float64)
        scale = float(r.abs().max())
        if scale < 1e-12:
            continue
        err = float((v.to(torch.float64) - r).abs().max()) / scale
        worst = max(worst, err)
        compared += 1
        if err > 1e-9:
            raise SystemExit('%s: %s differs from the HF reference by %.3g' % (name, k, err))
    if verbose:
        print('%s: %d tensors agree with the real HF code, worst relative error %.2g' % (name, compared, worst))
    return worst


# ----------------------------------------------------------------------------------------------------------------------
# fixture generation

def shapes_of(cfg):
    """Parameter names and shapes in state_dict order (layer_weights first: registered on the model itself)."""
    fam, p = cfg['model_type'], PREFIX[cfg['model_type']]
    H, C = cfg['hidden_size'], cfg['conv_dim'][-1]
    s = OrderedDict()
    if cfg.get('use_weighted_layer_sum'):
        s['layer_weights'] = [cfg['num_hidden_layers'] + 1]
    if cfg.get('mask_time_prob', 0.05) > 0:
        s[p + 'masked_spec_embed'] = [H]
    layer_norm_convs = fam == 'data2vec-audio' or cfg.get('feat_extract_norm') == 'layer'
    for i, (c, k) in enumerate(zip(cfg['conv_dim'], cfg['conv_kernel'])):
        pre = '%sfeature_extractor.conv_layers.%d.' % (p, i)
        s[pre + 'conv.weight'] = [c, 1 if i == 0 else cfg['conv_dim'][i - 1], k]
        if cfg.get('conv_bias'):
            s[pre + 'conv.bias'] = [c]
        if layer_norm_convs or i == 0:
            s[pre + 'layer_norm.weight'] = [c]
            s[pre + 'layer_norm.bias'] = [c]
    if fam != 'hubert' or cfg.get('feat_proj_layer_norm', True):
        s[p + 'feature_projection.layer_norm.weight'] = [C]
        s[p + 'feature_projection.layer_norm.bias'] = [C]
    s[p + 'feature_projection.projection.weight'] = [H, C]
    s[p + 'feature_projection.projection.bias'] = [H]
    G = cfg['num_conv_pos_embedding_groups']
    if fam == 'data2vec-audio':
        for j in range(cfg['num_conv_pos_embeddings']):
            s['%sencoder.pos_conv_embed.layers.%d.conv.weight' % (p, j)] = [H, H // G, cfg['conv_pos_kernel_size']]
            s['%sencoder.pos_conv_embed.layers.%d.conv.bias' % (p, j)] = [H]
    else:
        K = cfg['num_conv_pos_embeddings']
        s[p + 'encoder.pos_conv_embed.conv.bias'] = [H]
        s[p + 'encoder.pos_conv_embed.conv.weight_g'] = [1, 1, K]
        s[p + 'encoder.pos_conv_embed.conv.weight_v'] = [H, H // G, K]
    s[p + 'encoder.layer_norm.weight'] = [H]
    s[p + 'encoder.layer_norm.bias'] = [H]
    I = cfg['intermediate_size']
    for l in range(cfg['num_hidden_layers']):
        pre = '%sencoder.layers.%d.' % (p, l)
        for proj in ('k_proj', 'v_proj', 'q_proj', 'out_proj'):
            s[pre + 'attention.%s.weight' % proj] = [H, H]
            s[pre + 'attention.%s.bias' % proj] = [H]
        s[pre + 'layer_norm.weight'] = [H]
        s[pre + 'layer_norm.bias'] = [H]
        s[pre + 'feed_forward.intermediate_dense.weight'] = [I, H]
        s[pre + 'feed_forward.intermediate_dense.bias'] = [I]
        s[pre + 'feed_forward.output_dense.weight'] = [H, I]
        s[pre + 'feed_forward.output_dense.bias'] = [H]
        s[pre + 'final_layer_norm.weight'] = [H]
        s[pre + 'final_layer_norm.bias'] = [H]
    P = cfg['classifier_proj_size']
    s['projector.weight'] = [P, H]
    s['projector.bias'] = [P]
    s['classifier.weight'] = [len(cfg['id2label']), P]
    s['classifier.bias'] = [len(cfg['id2label'])]
    return s


def random_weights(cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for name, shape in shapes_of(cfg).items():
        if name.endswith('weight_g'):
            t = (cfg['hidden_size'] / shape[2]) ** 0.5 * (0.5 + 0.9 * torch.rand(shape, generator=gen, dtype=torch.float64))
        elif name.endswith('.bias') or name in ('layer_weights',) or name.endswith('masked_spec_embed'):
            t = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif 'norm' in name:
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float64) / int(np.prod(shape[1:])) ** 0.5
        out[name] = t.to(torch.float32)
    return out


def waves(lengths, seed):
    rng = np.random.default_rng(seed)
    res = []
    for n in lengths:
        t = np.arange(n) / 16000.0
        f0 = 120 + 60 * rng.random() + 20 * np.sin(2 * np.pi * rng.random() * t)
        x = sum(np.sin(2 * np.pi * f0 * (h + 1) * t) / (h + 1) for h in range(4)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        res.append((x + 0.05 * rng.standard_normal(n)).astype(np.float32) * 0.3)
    return res


CASES = {
    # HuBERT base layout (GroupNorm conv 0, post-LN), no projection LayerNorm (distilhubert), odd positional kernel,
    # no conv bias, 3 heads of 16, a 400-sample clip (exactly one frame) in the batch
    'fam_hubert_base_noprojln': dict(model_type='hubert', feat_extract_norm='group', do_stable_layer_norm=False, feat_proj_layer_norm=False,
                                     conv_bias=False, hidden_size=48, num_attention_heads=3, intermediate_size=80, num_hidden_layers=3,
                                     num_conv_pos_embeddings=15, num_conv_pos_embedding_groups=3, conv_dim=[24] * 7,
                                     use_weighted_layer_sum=False, classifier_proj_size=20, lengths=[9000, 400, 6321], labels=[1, 3, 0]),
    # data2vec-audio with an EVEN positional kernel (last frame dropped), 3 stacked positional convs, the weighted
    # layer sum, 4 items, 5 heads of 8
    'fam_d2v_even_weighted': dict(model_type='data2vec-audio', conv_bias=True, hidden_size=40, num_attention_heads=5, intermediate_size=72,
                                  num_hidden_layers=2, num_conv_pos_embeddings=3, conv_pos_kernel_size=6, num_conv_pos_embedding_groups=4,
                                  conv_dim=[16] * 7, use_weighted_layer_sum=True, classifier_proj_size=12,
                                  lengths=[7000, 12000, 3100, 401], labels=[4, 2, 0, 1]),
    # HuBERT in the stable (XLSR-like) layout with the weighted layer sum and one clip per batch (no padding at all)
    'fam_hubert_stable_single': dict(model_type='hubert', feat_extract_norm='layer', do_stable_layer_norm=True, feat_proj_layer_norm=True,
                                     conv_bias=True, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2,
                                     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, conv_dim=[16] * 7,
                                     use_weighted_layer_sum=True, classifier_proj_size=16, lengths=[5555], labels=[3]),
}

LABELS = ['anger', 'happiness', 'neutral', 'sadness', 'surprise']


def write_case(name, spec, seed):
    spec = dict(spec)
    lengths, labels = spec.pop('lengths'), spec.pop('labels')
    cfg = dict(spec, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], layer_norm_eps=1e-5,
               hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
               layerdrop=0.0, apply_spec_augment=False, mask_time_prob=0.05, hidden_act='gelu', feat_extract_activation='gelu',
               id2label={str(i): l for i, l in enumerate(LABELS)}, label2id={l: i for i, l in enumerate(LABELS)},
               architectures={'hubert': ['HubertForSequenceClassification'], 'data2vec-audio': ['Data2VecAudioForSequenceClassification']}[spec['model_type']])
    weights = random_weights(cfg, seed)
    input_values, mask = W.feature_extractor(waves(lengths, seed + 1))
    ours = run(weights, cfg, input_values, mask, np.asarray(labels, dtype=np.int64))
    d = os.path.join(ROOT, 'test', 'fixtures', name)
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'), indent=2, sort_keys=True)
    json.dump({'feature_extractor_type': 'Wav2Vec2FeatureExtractor', 'feature_size': 1, 'sampling_rate': 16000, 'padding_value': 0.0,
               'do_normalize': True, 'return_attention_mask': True, 'padding_side': 'right'},
              open(os.path.join(d, 'preprocessor_config.json'), 'w'), indent=2, sort_keys=True)
    W.write_safetensors(os.path.join(d, 'model.safetensors'), weights, {'format': 'pt'})
    torch.save(OrderedDict((k, v.clone()) for k, v in weights.items()), os.path.join(d, 'pytorch_model.bin'))
    ref = OrderedDict()
    ref['input_values'] = torch.as_tensor(input_values)
    ref['attention_mask'] = torch.as_tensor(mask)
    ref['labels'] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    for k, v in ours.items():
        if k in ('frame_lengths',):
            ref[k] = v.to(torch.int64)
        elif k == 'frame_mask':
            ref[k] = v.to(torch.int32)
        else:
            ref[k] = v.to(torch.float64)
    W.write_safetensors(os.path.join(d, 'reference.safetensors'), ref)
    manifest = {
        'set': name,
        'family': cfg['model_type'],
        'description': 'Generated by tools/ref/families_ref.py (our float64 reimplementation, validated against the real-HF fixtures in ../shared): '
                       '%s with HF\'s sequence-classification head, random weights.' % cfg['model_type'],
        'batch': {'input_lengths': lengths, 'labels': labels},
        'tensors': [{'name': k, 'shape': list(v.shape)} for k, v in ref.items()],
        'weights': {'keys': [{'name': k, 'shape': list(v.shape)} for k, v in weights.items()]},
    }
    json.dump(manifest, open(os.path.join(d, 'manifest.json'), 'w'), indent=1)
    print('wrote %s (%d reference tensors)' % (d, len(ref)))


def main(argv):
    torch.set_num_threads(1)
    for name in ('hubert_tiny', 'data2vec_audio_tiny'):
        if os.path.isdir(os.path.join(SHARED, name)):
            validate(name)
        else:
            print('(%s absent: cannot validate against real HF output)' % name)
            if '--force' not in argv:
                raise SystemExit('refusing to write fixtures without validation (--force overrides)')
    if '--validate-only' in argv:
        return
    for i, (name, spec) in enumerate(CASES.items()):
        write_case(name, spec, 7000 + 10 * i)


if __name__ == '__main__':
    main(sys.argv[1:])
