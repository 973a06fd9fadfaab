#!/usr/bin/env python3
"""PyTorch peer for the benchmark: the XLSR-large wav2vec2 stack in plain torch (no transformers), random weights,
real shapes, timed forward and training step. Prints one JSON object on the last line of stdout.

Model (transformers v4.30 Wav2Vec2 with do_stable_layer_norm, feat_extract_norm='layer', conv_bias, as XLSR-53):
  feature encoder: 7 Conv1d (512 ch, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) each -> LayerNorm(C) -> GELU
  feature projection: LayerNorm(512) -> Linear(512, 1024) -> dropout
  encoder: + GELU(weight-normed Conv1d(1024, 1024, k128, groups 16), last frame dropped), dropout,
           24 pre-LN layers (16 heads, FFN 4096), final LayerNorm
  head (the SER notebook's): mean over time -> dropout -> Linear(1024, 1024) -> tanh -> dropout -> Linear(1024, L)
Training step = what our Trainer does: forward (train mode: dropout 0.1, no layerdrop, no SpecAugment, feature
encoder frozen and run without autograd) -> cross entropy -> backward -> clip_grad_norm_(1.0) -> AdamW step ->
zero_grad. Attention-probability dropout is left out, as in our model (the flash kernel never forms the probabilities).

  python3 tools/bench_torch.py [--device cpu|cuda] [--dtype fp32|fp16] [--threads 2] [--seconds 4] [--layers 24]
                               [--forward-batch 1] [--train-batch 2] [--reps 3] [--no-train] [--serve]
--serve: build the model, print one JSON line with 'ready', then time one repetition per stdin line ('forward',
'train'; 'quit' ends), printing one JSON line each: the bench interleaves these with its own repetitions.
CPU runs should be started with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads then sleep instead of spinning).
fp16 on CUDA: forward in half precision weights; training with autocast(float16) + GradScaler (fp32 master weights).
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16000


class FeatureEncoder(nn.Module):
    def __init__(self, dim=512, kernels=(10, 3, 3, 3, 3, 2, 2), strides=(5, 2, 2, 2, 2, 2, 2)):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        cin = 1
        for k, s in zip(kernels, strides):
            self.convs.append(nn.Conv1d(cin, dim, k, stride=s, bias=True))
            self.norms.append(nn.LayerNorm(dim))
            cin = dim

    def forward(self, x):  # [B, S] -> [B, T, C]
        x = x[:, None, :]
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            x = norm(x.transpose(1, 2)).transpose(1, 2)
            x = F.gelu(x)
        return x.transpose(1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, hidden, heads, ffn, dropout):
        super().__init__()
        self.heads = heads
        self.layer_norm = nn.LayerNorm(hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        self.final_layer_norm = nn.LayerNorm(hidden)
        self.intermediate_dense = nn.Linear(hidden, ffn)
        self.output_dense = nn.Linear(ffn, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        H = self.heads
        D = C // H
        a = self.layer_norm(x)
        q = self.q_proj(a).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(a).view(B, T, H, D).transpose(1, 2)
        v = self.v_proj(a).view(B, T, H, D).transpose(1, 2)
        p = torch.softmax((q @ k.transpose(-1, -2)) * (D ** -0.5), dim=-1)
        ctx = (p @ v).transpose(1, 2).reshape(B, T, C)
        h = x + self.dropout(self.out_proj(ctx))
        f = self.output_dense(F.gelu(self.intermediate_dense(self.final_layer_norm(h))))
        return h + self.dropout(f)


class XLSR(nn.Module):
    def __init__(self, layers=24, hidden=1024, heads=16, ffn=4096, conv_dim=512, pos_k=128, pos_groups=16, labels=5, dropout=0.1):
        super().__init__()
        self.feature_encoder = FeatureEncoder(conv_dim)
        self.fp_norm = nn.LayerNorm(conv_dim)
        self.fp_proj = nn.Linear(conv_dim, hidden)
        conv = nn.Conv1d(hidden, hidden, pos_k, padding=pos_k // 2, groups=pos_groups)
        self.pos_conv = nn.utils.weight_norm(conv, name='weight', dim=2)
        self.pos_k = pos_k
        self.layers = nn.ModuleList([EncoderLayer(hidden, heads, ffn, dropout) for _ in range(layers)])
        self.final_norm = nn.LayerNorm(hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, labels)
        self.dropout = nn.Dropout(dropout)

    def freeze_feature_encoder(self):
        for p in self.feature_encoder.parameters():
            p.requires_grad = False

    def forward(self, x):
        if not any(p.requires_grad for p in self.feature_encoder.parameters()):
            with torch.no_grad():
                feats = self.feature_encoder(x)
        else:
            feats = self.feature_encoder(x)
        h = self.dropout(self.fp_proj(self.fp_norm(feats)))
        pos = self.pos_conv(h.transpose(1, 2))
        if self.pos_k % 2 == 0:
            pos = pos[:, :, :-1]
        h = self.dropout(h + F.gelu(pos).transpose(1, 2))
        for layer in self.layers:
            h = layer(h)
        h = self.final_norm(h)
        z = self.dropout(h.mean(dim=1))
        z = self.dropout(torch.tanh(self.dense(z)))
        return self.out_proj(z)


def frames(samples):
    t = samples
    for k, s in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)):
        t = (t - k) // s + 1
    return t


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn, device, reps, warmup):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {'median': statistics.median(times), 'min': min(times), 'max': max(times), 'reps': reps}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--dtype', default='fp32', choices=['fp32', 'fp16'])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seconds', type=float, default=4.0)
    ap.add_argument('--layers', type=int, default=24)
    ap.add_argument('--forward-batch', type=int, default=1)
    ap.add_argument('--train-batch', type=int, default=2)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--no-train', action='store_true')
    ap.add_argument('--serve', action='store_true', help='time one repetition per stdin command (forward, train, quit)')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()

    device = torch.device(a.device)
    if device.type == 'cpu':
        torch.set_num_threads(a.threads)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('CUDA requested but torch.cuda.is_available() is False')
    if a.dtype == 'fp16' and device.type != 'cuda':
        raise SystemExit('fp16 is for CUDA only here')
    torch.manual_seed(a.seed)
    samples = int(round(a.seconds * SAMPLE_RATE))
    t0 = time.perf_counter()
    model = XLSR(layers=a.layers).to(device)
    model.freeze_feature_encoder()
    init_s = time.perf_counter() - t0
    nparams = sum(p.numel() for p in model.parameters())
    out = {
        'torch': torch.__version__,
        'python': platform.python_version(),
        'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu ({platform.processor() or platform.machine()})',
        'threads': torch.get_num_threads() if device.type == 'cpu' else None,
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'blas': 'mkl' if torch.backends.mkl.is_available() else 'openblas/other',
        'dtype': a.dtype,
        'layers': a.layers,
        'parameters': nparams,
        'audio_seconds': a.seconds,
        'frames': frames(samples),
        'init_seconds': init_s,
    }

    # forward (eval mode, no autograd)
    fwd_model = model
    x = torch.randn(a.forward_batch, samples, device=device)
    if a.dtype == 'fp16':
        import copy
        fwd_model = copy.deepcopy(model).half()
        x = x.half()

    def forward():
        fwd_model.eval()
        with torch.no_grad():
            fwd_model(x)
        return None

    step = None
    params = [p for p in model.parameters() if p.requires_grad]
    if not a.no_train:
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
        scaler = torch.cuda.amp.GradScaler() if a.dtype == 'fp16' else None
        xb = torch.randn(a.train_batch, samples, device=device)
        labels = torch.randint(0, 5, (a.train_batch,), device=device)

        def step():
            model.train()
            if scaler is not None:
                with torch.autocast('cuda', dtype=torch.float16):
                    loss = F.cross_entropy(model(xb).float(), labels)
                loss_value = loss.item()
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(opt)
                scaler.update()
            else:
                loss = F.cross_entropy(model(xb), labels)
                loss_value = loss.item()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
            opt.zero_grad(set_to_none=True)
            if not math.isfinite(loss_value):
                raise SystemExit(f'non-finite loss {loss_value}')
            return loss_value

    out['trainable_parameters'] = sum(p.numel() for p in params)
    if a.serve:
        serve(out, forward, step, device)
        return

    t = timed(forward, device, a.reps, a.warmup)
    out['forward'] = {**t, 'batch': a.forward_batch, 'seconds_per_audio_second': t['median'] / (a.forward_batch * a.seconds)}
    if step is not None:
        t = timed(step, device, a.reps, a.warmup)
        out['train_step'] = {**t, 'batch': a.train_batch, 'seconds_per_audio_second': t['median'] / (a.train_batch * a.seconds), 'trainable_parameters': out['trainable_parameters']}

    print(json.dumps(out))


def serve(meta, forward, step, device):
    """Time one repetition per command read from stdin ('forward', 'train', 'quit'), one JSON line each, so that a
    caller can interleave these repetitions with its own on a shared machine (both see the same slow and fast spells;
    between commands this process sleeps, with OMP_WAIT_POLICY=PASSIVE its OpenMP threads too)."""
    print(json.dumps({'ready': True, **meta}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'quit':
            return
        fn = {'forward': forward, 'train': step}.get(cmd)
        if fn is None:
            print(json.dumps({'error': f'unknown command {cmd!r} (forward, train, quit)'}), flush=True)
            continue
        sync(device)
        t0 = time.perf_counter()
        value = fn()
        sync(device)
        print(json.dumps({'cmd': cmd, 'seconds': time.perf_counter() - t0, 'loss': value}), flush=True)


if __name__ == '__main__':
    main()
