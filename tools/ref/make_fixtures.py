#!/usr/bin/python3
"""Writes Wav2Vec2 reference fixtures in the format of ../shared/fixtures/xlsr_tiny (made by the real Hugging Face
transformers 4.30.2 code): config.json, preprocessor_config.json, model.safetensors and pytorch_model.bin (identical F32
weights), reference.safetensors (inputs, activations, logits, losses, gradients in float64) and manifest.json (same
fields and tensor names). The numbers come from our re-implementation tools/ref/wav2vec2_ref.py, which is first checked
against the HF fixture (and the generator itself is checked by regenerating that fixture from its weights and
waveforms and comparing every file and tensor).

  /usr/bin/python3 tools/ref/make_fixtures.py                 # validate against HF, write every case to test/fixtures/
  /usr/bin/python3 tools/ref/make_fixtures.py w2v_base        # only some cases
  /usr/bin/python3 tools/ref/make_fixtures.py --validate-only # only the HF checks
"""
import copy
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wav2vec2_ref as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, '..', '..'))
HF_FIXTURE = os.path.normpath(os.path.join(REPO, '..', 'shared', 'fixtures', 'xlsr_tiny'))
OUT_ROOT = os.path.join(REPO, 'test', 'fixtures')
GRAD_LOSS = 'loss_masked_mean'  # what xlsr_tiny's grad.* are of (its manifest's loss_and_grads)

LABELS = ['anger', 'happiness', 'neutral', 'sadness', 'surprise']

# The Wav2Vec2Config fields as transformers 4.30.2 writes them (sort_keys, indent 2); the cases override a few.
BASE_CONFIG = {
    'activation_dropout': 0.0, 'adapter_attn_dim': None, 'adapter_kernel_size': 3, 'adapter_stride': 2,
    'add_adapter': False, 'apply_spec_augment': True, 'architectures': ['Wav2Vec2ForSpeechClassification'],
    'attention_dropout': 0.0, 'bos_token_id': 1, 'classifier_proj_size': 256, 'codevector_dim': 256,
    'contrastive_logits_temperature': 0.1, 'conv_bias': True, 'conv_dim': [32] * 7,
    'conv_kernel': [10, 3, 3, 3, 3, 2, 2], 'conv_stride': [5, 2, 2, 2, 2, 2, 2], 'ctc_loss_reduction': 'sum',
    'ctc_zero_infinity': False, 'diversity_loss_weight': 0.1, 'do_stable_layer_norm': True, 'eos_token_id': 2,
    'feat_extract_activation': 'gelu', 'feat_extract_norm': 'layer', 'feat_proj_dropout': 0.0,
    'feat_quantizer_dropout': 0.0, 'final_dropout': 0.0, 'finetuning_task': 'wav2vec2_clf', 'hidden_act': 'gelu',
    'hidden_dropout': 0.0, 'hidden_size': 64, 'id2label': {str(i): l for i, l in enumerate(LABELS)},
    'initializer_range': 0.02, 'intermediate_size': 128, 'label2id': {l: i for i, l in enumerate(LABELS)},
    'layer_norm_eps': 1e-05, 'layerdrop': 0.0, 'mask_feature_length': 10, 'mask_feature_min_masks': 0,
    'mask_feature_prob': 0.0, 'mask_time_length': 10, 'mask_time_min_masks': 2, 'mask_time_prob': 0.0,
    'model_type': 'wav2vec2', 'num_adapter_layers': 3, 'num_attention_heads': 4, 'num_codevector_groups': 2,
    'num_codevectors_per_group': 320, 'num_conv_pos_embedding_groups': 4, 'num_conv_pos_embeddings': 16,
    'num_feat_extract_layers': 7, 'num_hidden_layers': 2, 'num_negatives': 100, 'output_hidden_size': 64,
    'pad_token_id': 0, 'pooling_mode': 'mean', 'proj_codevector_dim': 256, 'tdnn_dilation': [1, 2, 3, 1, 1],
    'tdnn_dim': [512, 512, 512, 512, 1500], 'tdnn_kernel': [5, 3, 3, 1, 1], 'transformers_version': '4.30.2',
    'use_weighted_layer_sum': False, 'vocab_size': 32, 'xvector_output_dim': 512,
}
PREPROCESSOR = {'do_normalize': True, 'feature_extractor_type': 'Wav2Vec2FeatureExtractor', 'feature_size': 1,
                'padding_side': 'right', 'padding_value': 0.0, 'return_attention_mask': True, 'sampling_rate': 16000}

CASES = OrderedDict([
    ('w2v_base', dict(
        description='base layout (wav2vec2-base style): feat_extract_norm "group" (GroupNorm with one group per channel '
                    'on conv layer 0 only, statistics over the whole padded time axis), no conv bias, post-LN encoder '
                    'layers with the encoder LayerNorm before the first layer; a batch of 2 clips of different lengths',
        config=dict(feat_extract_norm='group', do_stable_layer_norm=False, conv_bias=False, hidden_size=40,
                    num_attention_heads=4, num_hidden_layers=2, intermediate_size=72,
                    conv_dim=[24, 24, 28, 28, 28, 20, 20], num_conv_pos_embeddings=16,
                    num_conv_pos_embedding_groups=4),
        lengths=[7001, 4567], seeds=dict(weights=2101, data=2102))),
    ('w2v_xlsr_b4', dict(
        description='XLSR layout (feat_extract_norm "layer", do_stable_layer_norm) with other sizes: hidden 36, 3 heads '
                    '(head dim 12), 3 layers, intermediate 60, non-uniform conv dims, other conv kernels/strides '
                    '(receptive field 389 samples, hop 256), odd positional-conv kernel 15 (no frame dropped), 3 '
                    'pos-conv groups; a batch of 4 clips of different lengths',
        config=dict(hidden_size=36, num_attention_heads=3, num_hidden_layers=3, intermediate_size=60,
                    conv_dim=[16, 20, 20, 24, 24, 28, 28], conv_kernel=[9, 4, 3, 3, 3, 3, 2],
                    conv_stride=[4, 2, 2, 2, 2, 2, 2], num_conv_pos_embeddings=15, num_conv_pos_embedding_groups=3),
        lengths=[3001, 2400, 1777, 1200], seeds=dict(weights=3101, data=3102))),
    ('w2v_400', dict(
        description='XLSR layout, standard conv kernels/strides, small sizes (hidden 32, 4 heads, 2 layers): a clip of '
                    'exactly 400 samples (the minimum that gives one frame with the standard conv stack) batched with a '
                    'longer one, so item 0 has 1 valid frame of 10',
        config=dict(hidden_size=32, num_attention_heads=4, intermediate_size=56, conv_dim=[24] * 7),
        lengths=[400, 3456], seeds=dict(weights=4101, data=4102))),
    ('w2v_400_single', dict(
        description='XLSR layout, standard conv kernels/strides, small sizes (hidden 32, 4 heads, 2 layers): a single '
                    'clip of exactly 400 samples alone (one frame, no padding): every softmax is over one key (so the '
                    'q_proj/k_proj gradients are exactly 0) and the positional conv sees only its own frame',
        config=dict(hidden_size=32, num_attention_heads=4, intermediate_size=56, conv_dim=[24] * 7),
        lengths=[400], seeds=dict(weights=4201, data=4202))),
])


# ----------------------------------------------------------------------------------------------------------------------
# Config, weights, data.

def make_config(overrides):
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg.update(copy.deepcopy(overrides))
    cfg['num_feat_extract_layers'] = len(cfg['conv_dim'])
    cfg['output_hidden_size'] = cfg['hidden_size']
    return cfg


def param_shapes(cfg):
    """Every tensor of the checkpoint in the order HF's state_dict lists them."""
    shapes = OrderedDict()
    H, I, C = cfg['hidden_size'], cfg['intermediate_size'], cfg['conv_dim']
    for i, k in enumerate(cfg['conv_kernel']):
        pre = 'wav2vec2.feature_extractor.conv_layers.%d.' % i
        shapes[pre + 'conv.weight'] = [C[i], C[i - 1] if i > 0 else 1, k]
        if cfg['conv_bias']:
            shapes[pre + 'conv.bias'] = [C[i]]
        if cfg['feat_extract_norm'] == 'layer' or i == 0:
            shapes[pre + 'layer_norm.weight'] = [C[i]]
            shapes[pre + 'layer_norm.bias'] = [C[i]]
    shapes['wav2vec2.feature_projection.layer_norm.weight'] = [C[-1]]
    shapes['wav2vec2.feature_projection.layer_norm.bias'] = [C[-1]]
    shapes['wav2vec2.feature_projection.projection.weight'] = [H, C[-1]]
    shapes['wav2vec2.feature_projection.projection.bias'] = [H]
    K, G = cfg['num_conv_pos_embeddings'], cfg['num_conv_pos_embedding_groups']
    shapes['wav2vec2.encoder.pos_conv_embed.conv.bias'] = [H]
    shapes['wav2vec2.encoder.pos_conv_embed.conv.weight_g'] = [1, 1, K]
    shapes['wav2vec2.encoder.pos_conv_embed.conv.weight_v'] = [H, H // G, K]
    shapes['wav2vec2.encoder.layer_norm.weight'] = [H]
    shapes['wav2vec2.encoder.layer_norm.bias'] = [H]
    for l in range(cfg['num_hidden_layers']):
        pre = 'wav2vec2.encoder.layers.%d.' % l
        for proj in ('k_proj', 'v_proj', 'q_proj', 'out_proj'):
            shapes[pre + 'attention.%s.weight' % proj] = [H, H]
            shapes[pre + 'attention.%s.bias' % proj] = [H]
        shapes[pre + 'layer_norm.weight'] = [H]
        shapes[pre + 'layer_norm.bias'] = [H]
        shapes[pre + 'feed_forward.intermediate_dense.weight'] = [I, H]
        shapes[pre + 'feed_forward.intermediate_dense.bias'] = [I]
        shapes[pre + 'feed_forward.output_dense.weight'] = [H, I]
        shapes[pre + 'feed_forward.output_dense.bias'] = [H]
        shapes[pre + 'final_layer_norm.weight'] = [H]
        shapes[pre + 'final_layer_norm.bias'] = [H]
    shapes['classifier.dense.weight'] = [H, H]
    shapes['classifier.dense.bias'] = [H]
    shapes['classifier.out_proj.weight'] = [len(cfg['id2label']), H]
    shapes['classifier.out_proj.bias'] = [len(cfg['id2label'])]
    return shapes


def state_dict_metadata(cfg):
    """The _metadata that nn.Module.state_dict() attaches (every submodule prefix -> {'version': 1}, registration
    order), so that pytorch_model.bin pickles exactly like a checkpoint saved from the real module tree."""
    mods = ['', 'wav2vec2', 'wav2vec2.feature_extractor', 'wav2vec2.feature_extractor.conv_layers']
    for i in range(len(cfg['conv_dim'])):
        pre = 'wav2vec2.feature_extractor.conv_layers.%d' % i
        if cfg['feat_extract_norm'] == 'layer':
            subs = ['conv', 'layer_norm', 'activation']
        else:
            subs = ['conv', 'activation', 'layer_norm'] if i == 0 else ['conv', 'activation']
        mods += [pre] + [pre + '.' + s for s in subs]
    mods += ['wav2vec2.feature_projection'] + ['wav2vec2.feature_projection.' + s for s in
                                               ('layer_norm', 'projection', 'dropout')]
    mods += ['wav2vec2.encoder', 'wav2vec2.encoder.pos_conv_embed'] + \
        ['wav2vec2.encoder.pos_conv_embed.' + s for s in ('conv', 'padding', 'activation')] + \
        ['wav2vec2.encoder.layer_norm', 'wav2vec2.encoder.dropout', 'wav2vec2.encoder.layers']
    for l in range(cfg['num_hidden_layers']):
        pre = 'wav2vec2.encoder.layers.%d' % l
        mods += [pre, pre + '.attention'] + [pre + '.attention.' + s for s in ('k_proj', 'v_proj', 'q_proj', 'out_proj')]
        mods += [pre + '.dropout', pre + '.layer_norm', pre + '.feed_forward']
        mods += [pre + '.feed_forward.' + s for s in ('intermediate_dropout', 'intermediate_dense', 'intermediate_act_fn',
                                                      'output_dense', 'output_dropout')]
        mods += [pre + '.final_layer_norm']
    mods += ['classifier', 'classifier.dense', 'classifier.dropout', 'classifier.out_proj']
    return OrderedDict((m, {'version': 1}) for m in mods)


def random_weights(cfg, seed):
    """Non-trivial F32 weights: matrices/kernels N(0, 1/fan_in), norm weights 1 + 0.1 N, biases 0.1 N, weight_g such
    that the effective pos-conv weight is also ~ N(0, 1/fan_in) times a per-tap factor in [0.5, 1.4]."""
    gen = torch.Generator().manual_seed(seed)
    H, K, G = cfg['hidden_size'], cfg['num_conv_pos_embeddings'], cfg['num_conv_pos_embedding_groups']
    weights = OrderedDict()
    for name, shape in param_shapes(cfg).items():
        if name.endswith('weight_g'):
            t = (H / K) ** 0.5 * (0.5 + 0.9 * torch.rand(shape, generator=gen, dtype=torch.float64))
        elif name.endswith('.bias'):
            t = 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        elif 'norm' in name:  # layer_norm / final_layer_norm / GroupNorm weights
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(shape, generator=gen, dtype=torch.float64) / fan_in ** 0.5
        weights[name] = t.to(torch.float32)
    return weights


def synthetic_waveforms(lengths, seed):
    """Speech-like float32 clips at 16 kHz: a few harmonics of a wandering f0, syllable-rate envelope, noise."""
    rng = np.random.default_rng(seed)
    waves = []
    for n in lengths:
        t = np.arange(n) / 16000.0
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 16000.0
        voiced = sum(rng.uniform(0.2, 1.0) / h * np.sin(h * phase + rng.uniform(0, 2 * np.pi)) for h in range(1, 6))
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 2 * np.pi))
        x = 0.12 * envelope * voiced + 0.02 * rng.standard_normal(n)
        waves.append(x.astype(np.float32))
    labels = rng.integers(0, len(LABELS), size=len(lengths))
    return waves, labels


# ----------------------------------------------------------------------------------------------------------------------
# The reference tensors and their descriptions.

def tensor_descriptions(cfg, lengths, names, grad_loss, num_frames):
    """name -> description, worded like xlsr_tiny's manifest, adapted to the layout."""
    stable = cfg['do_stable_layer_norm']
    L = cfg['num_hidden_layers']
    K = cfg['num_conv_pos_embeddings']
    kind = grad_loss[len('loss_'):]
    other = 'plain_mean' if kind == 'masked_mean' else 'masked_mean'
    d = OrderedDict()
    for i, n in enumerate(lengths):
        d['raw_waveform.%d' % i] = 'F32 waveform %d (%d samples, 16 kHz) fed to Wav2Vec2FeatureExtractor' % (i, n)
    d['input_values'] = ('Wav2Vec2FeatureExtractor(do_normalize=True) output, zero-padded to the longest; float32 values '
                         'stored as F64 (exact); this is the model input')
    d['attention_mask'] = 'sample-level mask from the feature extractor (1 = real sample)'
    d['labels'] = 'class labels (%s)' % ','.join('%s %s' % (i, l) for i, l in cfg['id2label'].items())
    d['input_lengths'] = 'attention_mask.sum(-1): real samples per item'
    d['frame_lengths'] = '_get_feat_extract_output_lengths(attention_mask.sum(-1)): valid frames per item'
    d['frame_mask'] = 'HF _get_feature_vector_attention_mask (1 = valid frame) that the encoder uses'
    d['extract_features'] = 'conv feature encoder output after transpose [B,T,C], before feature projection (no padding mask applied)'
    if cfg['feat_extract_norm'] == 'group':
        d['extract_features'] += ('; conv layer 0 GroupNorm normalizes each channel over the WHOLE padded time axis, so a '
                                  'padded item differs from the same clip run alone')
    d['extract_features_normed'] = ('feature_projection.layer_norm(extract_features) = what HF returns as '
                                    'Wav2Vec2BaseModelOutput.extract_features')
    d['feature_projection_output'] = ('feature_projection output (LayerNorm -> Linear) [B,T,H], before the encoder zeroes '
                                      'padded frames')
    d['pos_conv_embed_output'] = ('encoder.pos_conv_embed output (weight-norm grouped conv, %s, GELU) [B,T,H], computed on '
                                  'the padded-frames-zeroed input' % ('last frame removed for even kernel' if K % 2 == 0
                                                                      else 'odd kernel %d: no frame removed' % K))
    if stable:
        d['hidden_states.0'] = ('HF output_hidden_states[0]: input to layer 0 = (fp_out with padded frames zeroed) + '
                                'pos_conv (no LayerNorm yet) [B,T,H]')
    else:
        d['hidden_states.0'] = ('HF output_hidden_states[0]: input to layer 0 = encoder.layer_norm((fp_out with padded '
                                'frames zeroed) + pos_conv) [B,T,H]')
    for i in range(1, L):
        d['hidden_states.%d' % i] = 'HF output_hidden_states[%d]: output of layer %d [B,T,H]' % (i, i - 1)
    if stable:
        d['hidden_states.%d' % L] = ('HF output_hidden_states[%d]: encoder.layer_norm(output of the last layer) = '
                                     'last_hidden_state [B,T,H]' % L)
        d['encoder_last_layer_output'] = ('output of the last encoder layer BEFORE the final encoder.layer_norm (not part '
                                          'of HF hidden_states)')
    else:
        d['hidden_states.%d' % L] = ('HF output_hidden_states[%d]: output of the last layer = last_hidden_state (post-LN '
                                     'layout: no encoder LayerNorm after the layers) [B,T,H]' % L)
        d['encoder_last_layer_output'] = 'output of the last encoder layer (post-LN layout: identical to last_hidden_state)'
    d['last_hidden_state'] = 'Wav2Vec2Model last_hidden_state [B,T,H]'
    for i in range(L):
        d['attentions.%d' % i] = 'layer %d attention probabilities [B,heads,T,T] (padded keys masked)' % i
    d['pooled_plain_mean'] = ('torch.mean(last_hidden_state, dim=1) over ALL T frames incl. padding (the notebook\'s '
                              'pooling) [B,H]')
    d['pooled_masked_mean'] = 'mean of last_hidden_state over the first frame_lengths[b] frames [B,H]'
    d['classifier_hidden_' + kind] = 'tanh(classifier.dense(pooled_%s)) [B,H]' % kind
    d['logits_' + kind] = 'classifier(pooled_%s) [B,num_labels]' % kind
    d['logits_' + other] = 'classifier(pooled_%s) [B,num_labels]' % other
    d[grad_loss] = ('cross_entropy(logits_%s, labels), mean over batch; THE loss all grad.* tensors are of (shape [])'
                    % kind)
    d['loss_' + other] = ('cross_entropy(logits_%s, labels), mean over batch (no grads stored for it) (shape [])' % other)
    d['derived.wav2vec2.encoder.pos_conv_embed.conv.weight'] = (
        'effective pos-conv weight = weight_g * weight_v / ||weight_v|| (norm over dims 0,1; dim=2 kept) [H,H/groups,K]')
    for n in names:
        if n.startswith('grad.') and n[5:] not in d and not n.startswith('grad.derived.'):
            param = n[5:]
            if param.startswith('wav2vec2.') or param.startswith('classifier.'):
                d[n] = 'd %s / d %s' % (grad_loss, param)
                if num_frames == 1 and ('attention.k_proj.' in param or 'attention.q_proj.' in param):
                    d[n] += (' -- exactly 0 here: with a single frame every softmax is over one key, so scores do not '
                             'matter; compare with an absolute tolerance')
                elif param.endswith('attention.k_proj.bias'):
                    d[n] += (' -- analytically exactly 0 (adding q.b_k to every key score of a query is a softmax '
                             'no-op); stored values are float64 round-off, compare with an absolute tolerance')
    d['grad.derived.wav2vec2.encoder.pos_conv_embed.conv.weight'] = (
        'd loss / d effective pos-conv weight (before the weight-norm backward into weight_g / weight_v)')
    d['grad.extract_features'] = ('d loss / d extract_features [B,T,C] (transformer-side input; the conv encoder itself '
                                  'is frozen)')
    d['grad.feature_projection_output'] = ('d loss / d feature_projection_output [B,T,H] (zero on padded frames, which HF '
                                           'overwrites with 0)')
    for i in range(L + 1):
        d['grad.hidden_states.%d' % i] = 'd loss / d hidden_states.%d' % i
    d['grad.pooled_' + kind] = 'd loss / d pooled_' + kind
    d['grad.logits_' + kind] = 'd loss / d logits_' + kind
    return d


def reference_tensors(cfg, weights, waves, labels, pre, grad_loss):
    """All tensors of reference.safetensors, in manifest order (float64 from the F32 weights)."""
    values, mask = ref.feature_extractor(waves, pre['do_normalize'], pre['return_attention_mask'], pre['padding_value'])
    input_values = torch.from_numpy(values).to(torch.float64)
    attention_mask = torch.from_numpy(mask) if mask is not None else torch.ones(values.shape, dtype=torch.int32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    res = ref.run_reference(weights, cfg, input_values, attention_mask, labels, loss=grad_loss)
    kind = grad_loss[len('loss_'):]
    other = 'plain_mean' if kind == 'masked_mean' else 'masked_mean'
    L = cfg['num_hidden_layers']
    out = OrderedDict()
    for i, w in enumerate(waves):
        out['raw_waveform.%d' % i] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    out['input_values'] = input_values
    out['attention_mask'] = attention_mask.to(torch.int32)
    out['labels'] = labels
    out['input_lengths'] = attention_mask.to(torch.int64).sum(-1)
    out['frame_lengths'] = res['frame_lengths'].to(torch.int64)
    out['frame_mask'] = res['frame_mask'].to(torch.int32)
    names = ['extract_features', 'extract_features_normed', 'feature_projection_output', 'pos_conv_embed_output']
    names += ['hidden_states.%d' % i for i in range(L + 1)]
    names += ['encoder_last_layer_output', 'last_hidden_state'] + ['attentions.%d' % i for i in range(L)]
    names += ['pooled_plain_mean', 'pooled_masked_mean', 'classifier_hidden_' + kind, 'logits_' + kind,
              'logits_' + other, grad_loss, 'loss_' + other, 'derived.wav2vec2.encoder.pos_conv_embed.conv.weight']
    for n in names:
        out[n] = res[n]
    for n in weights:
        if not n.startswith(ref.FROZEN_PREFIX):
            out['grad.' + n] = res['grad.' + n]
    for n in res:
        if n.startswith('grad.') and n not in out:
            out[n] = res[n]
    return out, input_values, attention_mask, labels


# ----------------------------------------------------------------------------------------------------------------------
# Checks recorded in the manifest.

def float_errors(x, reference_tensors, skip):
    """Per-tensor max|x - ref| / max|ref| for the float tensors (reference analytically zero -> absolute, separately)."""
    per, zero = OrderedDict(), OrderedDict()
    for name, r in reference_tensors.items():
        if name in skip or not r.is_floating_point() or name.startswith('raw_waveform.'):
            continue
        rel, abs_err, scale = ref.compare(x[name], r)
        if scale < ref.ZERO_SCALE:
            zero[name] = {'ref_max_abs': scale, 'float32_max_abs_err': abs_err}
        else:
            per[name] = rel
    return per, zero


def verification_block(cfg, weights, tensors, input_values, attention_mask, labels, grad_loss, fixture_dir):
    skip = {'input_values'}
    f32 = ref.run_reference(weights, cfg, input_values.to(torch.float32), attention_mask, labels,
                            dtype=torch.float32, loss=grad_loss)
    per, zero = float_errors(f32, tensors, skip)
    fwd = {k: v for k, v in per.items() if not k.startswith('grad.')}
    grads = {k: v for k, v in per.items() if k.startswith('grad.')}
    fwd_worst = max(fwd, key=fwd.get)
    grad_worst = max(grads, key=grads.get)
    # the pickled copy, loaded back, must give the same float32 numbers
    bin_weights = ref.canonical_weight_names(torch.load(os.path.join(fixture_dir, 'pytorch_model.bin')))
    with torch.no_grad():
        f32_bin = ref.forward({k: v for k, v in bin_weights.items()}, cfg, input_values.to(torch.float32),
                              attention_mask, labels)
    # and everything recomputed in float64 from the written files must be bit-identical
    files = ref.read_safetensors(os.path.join(fixture_dir, 'reference.safetensors'))[0]
    again = ref.run_reference(ref.load_weights(fixture_dir), ref.load_config(fixture_dir), files['input_values'],
                              files['attention_mask'], files['labels'], loss=grad_loss)
    recomputed = max((again[n].to(torch.float64) - files[n].to(torch.float64)).abs().max().item()
                     for n in files if n in again)
    fd_worst, fd_count = ref.finite_difference_check(weights, cfg, input_values, attention_mask, labels, tensors,
                                                     loss=grad_loss)
    return OrderedDict([
        ('metric', 'per tensor: max|x - ref| / max|ref| over all elements (padded frames included); tensors whose '
                   'reference is analytically zero (max|ref| < 1e-12, e.g. grad of attention.k_proj.bias, which softmax '
                   'shift-invariance makes exactly 0) are listed separately with absolute errors'),
        ('float32_from_model_safetensors', OrderedDict([
            ('forward_max_rel_err', fwd[fwd_worst]), ('forward_worst', fwd_worst),
            ('logits_masked_mean_rel_err', fwd['logits_masked_mean']),
            ('logits_plain_mean_rel_err', fwd['logits_plain_mean']),
            ('last_hidden_state_rel_err', fwd['last_hidden_state']),
            ('grads_max_rel_err', grads[grad_worst]), ('grads_worst', grad_worst),
            ('grads_median_rel_err', float(np.median(list(grads.values())))),
            ('analytically_zero_reference', zero)])),
        ('float32_from_pytorch_model_bin_via_torch_load', OrderedDict([
            ('logits_masked_mean_rel_err', ref.compare(f32_bin['logits_masked_mean'], tensors['logits_masked_mean'])[0]),
            ('last_hidden_state_rel_err', ref.compare(f32_bin['last_hidden_state'], tensors['last_hidden_state'])[0])])),
        ('float64_recomputed_from_files_max_abs_err', recomputed),
        ('finite_difference_check', OrderedDict([
            ('what', 'float64 central differences (step 1e-6) of %s at 2 random entries of every trainable tensor '
                     'vs the stored grads; error relative to max|grad| of that tensor' % grad_loss),
            ('entries', fd_count), ('max_rel_err', fd_worst)])),
        ('module_cross_check_max_abs_diff', ref.module_cross_check()),
        ('float32_note', 'float32 numbers are tools/ref/wav2vec2_ref.py run in float32 on the F32 weights (CPU, torch '
                         '%s): what a correct float32 implementation should roughly achieve' % torch.__version__),
        ('per_tensor_float32_rel_err', OrderedDict((k, float('%.4g' % v)) for k, v in sorted(per.items()))),
    ])


def semantics_checks(cfg, weights, waves, tensors, pre):
    """Each item alone (no padding) vs its valid frames in the padded batch; padded frames; plain vs masked mean."""
    items = []
    fl = tensors['frame_lengths']
    for i, w in enumerate(waves):
        values, mask = ref.feature_extractor([w], pre['do_normalize'], pre['return_attention_mask'], pre['padding_value'])
        with torch.no_grad():
            single = ref.forward({k: v.to(torch.float64) for k, v in weights.items()}, cfg,
                                 torch.from_numpy(values).to(torch.float64),
                                 torch.from_numpy(mask) if mask is not None else None)
        n = int(fl[i])
        items.append(OrderedDict([
            ('item', i), ('samples', len(w)), ('frames', n),
            ('max_abs_diff_extract_features_valid_frames',
             (single['extract_features'][0, :n] - tensors['extract_features'][i, :n]).abs().max().item()),
            ('max_abs_diff_last_hidden_state_valid_frames',
             (single['last_hidden_state'][0, :n] - tensors['last_hidden_state'][i, :n]).abs().max().item()),
            ('max_abs_diff_logits_single_vs_batched_masked_mean',
             (single['logits_masked_mean'][0] - tensors['logits_masked_mean'][i]).abs().max().item()),
        ]))
    padded = ~tensors['frame_mask'].bool()
    lhs = tensors['last_hidden_state']
    checks = OrderedDict()
    checks['unpadded_single_item_vs_padded_batch'] = OrderedDict([
        ('what', 'each item run alone without padding (attention_mask all ones) vs its valid frames in the padded batch '
                 'run with attention_mask (computed with tools/ref/wav2vec2_ref.py)'),
        ('items', items)])
    if cfg['feat_extract_norm'] == 'group':
        checks['unpadded_single_item_vs_padded_batch']['group_norm_note'] = (
            'feat_extract_norm "group": conv layer 0 GroupNorm takes its mean/variance over the whole padded time axis, '
            'so every padded (shorter) item differs from the same clip run alone (nonzero diffs above are expected, '
            'they are HF behaviour); the longest item is unaffected. Real wav2vec2-base preprocessors set '
            'return_attention_mask false; this fixture passes the mask anyway (preprocessor_config says so).')
    checks['padded_frames_of_last_hidden_state_max_abs'] = lhs[padded].abs().max().item() if padded.any() else 0.0
    checks['padded_frames_note'] = (
        'HF zeroes padded frames only at the encoder input; later hidden states at padded frames are NOT zero (pos-conv, '
        'FFN, LayerNorm act on them; attention keys are masked), so the notebook\'s plain mean differs from the masked mean.')
    checks['plain_vs_masked_pooled_max_abs_diff'] = \
        (tensors['pooled_plain_mean'] - tensors['pooled_masked_mean']).abs().max().item()
    checks['min_samples_for_one_frame'] = min_samples_for_one_frame(cfg)
    checks['min_samples_note'] = (
        'fewer samples than this give 0 frames: HF then fails alone, and in a padded batch its '
        '_get_feature_vector_attention_mask writes mask[b, -1] = 1 and flip-cumsum-flips, marking EVERY frame of that '
        'item valid; feed at least this many samples')
    return checks


def min_samples_for_one_frame(cfg):
    n = 1
    while ref.conv_output_length(n, cfg) < 1:
        n += 1
    return n


# ----------------------------------------------------------------------------------------------------------------------
# Writing one fixture.

def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_fixture(out_dir, name, description, cfg, pre, weights, waves, labels, seeds, grad_loss=GRAD_LOSS,
                  hf_validation=None):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + '\n')
    with open(os.path.join(out_dir, 'preprocessor_config.json'), 'w') as f:
        f.write(json.dumps(pre, indent=2, sort_keys=True) + '\n')
    ref.write_safetensors(os.path.join(out_dir, 'model.safetensors'), weights, {'format': 'pt'})
    state = OrderedDict((k, v.clone()) for k, v in weights.items())
    state._metadata = state_dict_metadata(cfg)
    torch.save(state, os.path.join(out_dir, 'pytorch_model.bin'))

    tensors, input_values, attention_mask, labels_t = reference_tensors(cfg, weights, waves, labels, pre, grad_loss)
    ref.write_safetensors(os.path.join(out_dir, 'reference.safetensors'), tensors, {'format': 'fixture'})
    desc = tensor_descriptions(cfg, [len(w) for w in waves], list(tensors), grad_loss, tensors['frame_mask'].shape[1])

    frozen = [k for k in weights if k.startswith(ref.FROZEN_PREFIX)]
    manifest = OrderedDict()
    manifest['set'] = name
    manifest['description'] = ('Reference outputs of our float64 re-implementation of the Hugging Face Wav2Vec2Model '
                               '(transformers 4.30.2 semantics) with the notebook\'s mean-pool + classification head, '
                               'random non-trivial weights: ' + description)
    manifest['provenance'] = OrderedDict([
        ('generator', 'tools/ref/make_fixtures.py'),
        ('reference_implementation', 'tools/ref/wav2vec2_ref.py (plain torch, float64; transformers itself not used)'),
        ('semantics_of', 'transformers v4.30.2 models/wav2vec2/modeling_wav2vec2.py and feature_extraction_wav2vec2.py'),
        ('validated_against_hf', hf_validation),
        ('torch_version', torch.__version__), ('numpy_version', np.__version__),
        ('python_version', platform.python_version()),
    ])
    manifest['architecture'] = OrderedDict([(k, cfg[k]) for k in (
        'feat_extract_norm', 'do_stable_layer_norm', 'conv_bias', 'hidden_size', 'num_hidden_layers',
        'num_attention_heads', 'intermediate_size', 'conv_dim', 'conv_kernel', 'conv_stride', 'num_conv_pos_embeddings',
        'num_conv_pos_embedding_groups')])
    manifest['architecture']['num_labels'] = len(cfg['id2label'])
    manifest['architecture']['layer_norm_eps'] = cfg['layer_norm_eps']
    manifest['architecture']['dropouts_and_layerdrop'] = 0.0
    manifest['architecture']['mask_time_prob'] = cfg['mask_time_prob']
    manifest['seeds'] = OrderedDict(seeds)
    manifest['batch'] = OrderedDict([
        ('input_lengths', [len(w) for w in waves]), ('num_frames_padded', int(tensors['frame_mask'].shape[1])),
        ('frame_lengths', tensors['frame_lengths'].tolist()), ('labels', labels_t.tolist())])
    manifest['files'] = OrderedDict((f, {'bytes': os.path.getsize(os.path.join(out_dir, f)),
                                         'sha256': sha256(os.path.join(out_dir, f))})
                                    for f in ('config.json', 'preprocessor_config.json', 'model.safetensors',
                                              'pytorch_model.bin', 'reference.safetensors'))
    manifest['weights'] = OrderedDict([
        ('dtype', 'F32 in model.safetensors and pytorch_model.bin (identical values); the F64 reference used exactly '
                  'these values upcast to float64'),
        ('num_tensors', len(weights)), ('num_parameters', sum(v.numel() for v in weights.values())),
        ('keys', [{'name': k, 'shape': list(v.shape)} for k, v in weights.items()]),
        ('frozen_parameters', frozen),
        ('trainable_parameters', sum(v.numel() for k, v in weights.items() if k not in frozen)),
        ('weight_norm_note', 'torch < 2.1 (here 1.13) stores the weight-normed positional conv as '
                             'wav2vec2.encoder.pos_conv_embed.conv.weight_g [1,1,K] and .weight_v [H,H/groups,K] '
                             '(weight_norm dim=2), as real HF checkpoints do. torch >= 2.1 with transformers that use '
                             'nn.utils.parametrizations.weight_norm writes them as '
                             'wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0 (= weight_g) and '
                             '.parametrizations.weight.original1 (= weight_v). A loader should accept both spellings.'),
        ('not_in_this_checkpoint', 'wav2vec2.masked_spec_embed is absent because mask_time_prob = mask_feature_prob = 0 '
                                   'here; real XLSR fine-tuned checkpoints (mask_time_prob > 0) contain it [hidden] '
                                   '(used only for SpecAugment).'),
    ])
    kind = grad_loss[len('loss_'):]
    zero_names = [n for n in tensors if n.endswith('attention.k_proj.bias') and n.startswith('grad.')]
    manifest['loss_and_grads'] = (
        '%s = cross_entropy(logits_%s, labels) (mean). All grad.* are of that loss, computed in float64, train mode '
        '(dropout p=0, layerdrop 0, no SpecAugment), with wav2vec2.feature_extractor.* frozen (requires_grad False, so '
        'no grads for them). grad.*.attention.k_proj.bias is analytically zero (softmax shift invariance): ~%.0e '
        'round-off here.' % (grad_loss, kind, max(tensors[n].abs().max().item() for n in zero_names) or 1e-18))
    manifest['tensors'] = [OrderedDict([('name', n), ('dtype', ref.TORCH_TO_ST[t.dtype]), ('shape', list(t.shape)),
                                        ('description', desc[n])]) for n, t in tensors.items()]
    manifest['hf_semantics_checks'] = semantics_checks(cfg, weights, waves, tensors, pre)
    manifest['verification'] = verification_block(cfg, weights, tensors, input_values, attention_mask, labels_t,
                                                  grad_loss, out_dir)
    with open(os.path.join(out_dir, 'manifest.json'), 'w') as f:
        f.write(json.dumps(manifest, indent=1) + '\n')
    return manifest


# ----------------------------------------------------------------------------------------------------------------------
# Validation against the real-HF fixture.

def safetensors_header(path):
    with open(path, 'rb') as f:
        n = int.from_bytes(f.read(8), 'little')
        return f.read(n)


def validate_against_hf(hf_dir=HF_FIXTURE, verbose=True):
    """(1) our reference vs HF's numbers, (2) the generator regenerating HF's case from its weights + waveforms: every
    reference tensor, the manifest's structure and the byte-level formats. Returns a summary dict (None if absent)."""
    if not os.path.isdir(hf_dir):
        print('note: %s not found; HF validation skipped' % hf_dir)
        return None
    worst, failures = ref.verify_fixture(hf_dir, verbose=verbose)
    with open(os.path.join(hf_dir, 'manifest.json')) as f:
        hf_manifest = json.load(f)
    hf_tensors, _ = ref.read_safetensors(os.path.join(hf_dir, 'reference.safetensors'))
    cfg = ref.load_config(hf_dir)
    with open(os.path.join(hf_dir, 'preprocessor_config.json')) as f:
        pre = json.load(f)
    weights, _ = ref.read_safetensors(os.path.join(hf_dir, 'model.safetensors'))
    weights = OrderedDict((k['name'], weights[k['name']]) for k in hf_manifest['weights']['keys'])  # state-dict order
    n = len(hf_manifest['batch']['input_lengths'])
    waves = [hf_tensors['raw_waveform.%d' % i].numpy() for i in range(n)]
    problems = list(failures)
    tmp = tempfile.mkdtemp(prefix='w2v_regen_')
    try:
        mine = write_fixture(tmp, hf_manifest['set'], 'regenerated', cfg, pre, weights, waves,
                             hf_tensors['labels'].numpy(), hf_manifest['seeds'])
        my_tensors, _ = ref.read_safetensors(os.path.join(tmp, 'reference.safetensors'))
        regen_worst, regen_zero_abs = 0.0, 0.0
        if list(my_tensors) != list(hf_tensors):
            problems.append('reference.safetensors tensor names differ')
        for name, t in hf_tensors.items():
            if name not in my_tensors or my_tensors[name].dtype != t.dtype or my_tensors[name].shape != t.shape:
                problems.append('tensor %s: missing or dtype/shape differs' % name)
                continue
            rel, abs_err, scale = ref.compare(my_tensors[name], t)
            if scale < ref.ZERO_SCALE:
                regen_zero_abs = max(regen_zero_abs, abs_err)
            else:
                regen_worst = max(regen_worst, rel)
        if [(e['name'], e['dtype'], e['shape']) for e in mine['tensors']] != \
                [(e['name'], e['dtype'], e['shape']) for e in hf_manifest['tensors']]:
            problems.append('manifest tensors list differs (name/dtype/shape/order)')
        described_differently = [e['name'] for e, h in zip(mine['tensors'], hf_manifest['tensors'])
                                 if e['description'] != h['description']]
        if list(mine) != list(hf_manifest):
            problems.append('manifest top-level fields differ: %s vs %s' % (list(mine), list(hf_manifest)))
        for section in ('architecture', 'batch', 'seeds'):
            if json.loads(json.dumps(mine[section])) != hf_manifest[section]:
                problems.append('manifest %s differs' % section)
        for key in ('keys', 'frozen_parameters', 'trainable_parameters', 'num_parameters', 'num_tensors'):
            if json.loads(json.dumps(mine['weights'][key])) != hf_manifest['weights'][key]:
                problems.append('manifest weights.%s differs' % key)
        same_bytes = OrderedDict((f, mine['files'][f]['sha256'] == hf_manifest['files'][f]['sha256'])
                                 for f in mine['files'])
        for f in ('config.json', 'preprocessor_config.json', 'model.safetensors', 'pytorch_model.bin'):
            if not same_bytes[f]:
                problems.append('%s is not byte-identical' % f)
        headers = [safetensors_header(os.path.join(d, 'reference.safetensors')) for d in (tmp, hf_dir)]
        if headers[0] != headers[1]:
            problems.append('reference.safetensors header (names, dtypes, shapes, offsets) differs')
        hf_checks = hf_manifest['hf_semantics_checks']
        my_checks = mine['hf_semantics_checks']
        checks_diff = max(abs(my_checks[k] - hf_checks[k]) for k in
                          ('padded_frames_of_last_hidden_state_max_abs', 'plain_vs_masked_pooled_max_abs_diff'))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = OrderedDict([
        ('hf_fixture', 'shared/fixtures/xlsr_tiny (real transformers 4.30.2, float64)'),
        ('reference_max_rel_err_over_all_tensors', worst),
        ('regenerated_fixture_max_rel_err', regen_worst),
        ('regenerated_analytically_zero_max_abs_err', regen_zero_abs),
        ('byte_identical_files', same_bytes),
        ('reference_safetensors_header_identical', headers[0] == headers[1]),
        ('semantics_checks_max_abs_diff', checks_diff),
        ('descriptions_differing_from_hf', described_differently),
        ('problems', problems),
    ])
    if verbose:
        print('regenerated %s with make_fixtures.py: max rel err %.3e over %d tensors (analytically-zero max abs '
              '%.1e); byte-identical files: %s; reference.safetensors header identical: %s; tensor list/manifest structure: %s' % (
                  hf_manifest['set'], regen_worst, len(hf_tensors), regen_zero_abs,
                  ', '.join('%s %s' % (f, 'yes' if s else 'no') for f, s in same_bytes.items()),
                  'yes' if summary['reference_safetensors_header_identical'] else 'no',
                  'same' if not problems else 'PROBLEMS: ' + '; '.join(problems)))
        if described_differently:
            print('  descriptions worded differently from HF for: %s' % ', '.join(described_differently))
    return summary


def main(argv):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    args = [a for a in argv[1:] if not a.startswith('--')]
    hf = validate_against_hf()
    if hf is not None and (hf['problems'] or hf['reference_max_rel_err_over_all_tensors'] > 1e-10 or
                           hf['regenerated_fixture_max_rel_err'] > 1e-10):
        print('HF validation FAILED; no fixtures written')
        return 1
    if '--validate-only' in argv:
        return 0
    if hf is not None:  # keep the manifests stable: record the numbers, not the temp-dir details
        hf = OrderedDict((k, v) for k, v in hf.items() if k != 'problems')
    for name in (args or list(CASES)):
        case = CASES[name]
        cfg = make_config(case['config'])
        weights = random_weights(cfg, case['seeds']['weights'])
        waves, labels = synthetic_waveforms(case['lengths'], case['seeds']['data'])
        out_dir = os.path.join(OUT_ROOT, name)
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        manifest = write_fixture(out_dir, name, case['description'], cfg, dict(PREPROCESSOR), weights, waves, labels,
                                 case['seeds'], hf_validation=hf)
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        ver = manifest['verification']
        print('%-16s %8.1f kB  frames %-14s f32 fwd %.1e (%s)  f32 grads %.1e  recomputed %.1e  finite-diff %.1e' % (
            name, size / 1024, manifest['batch']['frame_lengths'], ver['float32_from_model_safetensors'][
                'forward_max_rel_err'], ver['float32_from_model_safetensors']['forward_worst'],
            ver['float32_from_model_safetensors']['grads_max_rel_err'], ver['float64_recomputed_from_files_max_abs_err'],
            ver['finite_difference_check']['max_rel_err']))
        if size > 1.5 * 1024 * 1024:
            print('  WARNING: %s is over 1.5 MB' % name)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
