#!/usr/bin/env python3
"""Checks a safetensors file written by this project from the PyTorch side.

The safetensors file is parsed by hand (the safetensors package is not installed here): header length, JSON header,
dtype/shape/offset consistency, tensors tiling the data region, metadata "format" == "pt" (which transformers'
from_pretrained requires). Each tensor becomes a torch tensor; with --against, its values are compared with a reference
checkpoint (another .safetensors, or a pytorch_model.bin loaded by torch.load with weights_only=True), key sets and
shapes included. Exit status 0 when everything matches.

  python3 tools/torch_load_check.py OUT/model.safetensors --against ../shared/fixtures/xlsr_tiny/pytorch_model.bin
  python3 tools/torch_load_check.py OUT/model.safetensors --against ref.safetensors --atol 1e-6 --ignore 'classifier.*'

Run with a Python that has torch (here /usr/bin/python3).
"""
import argparse
import fnmatch
import json
import struct
import sys

try:
    import torch
except ImportError:
    sys.exit('torch_load_check.py needs PyTorch: run it with the system Python (e.g. /usr/bin/python3)')

DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64,
    'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool,
}


def read_safetensors(path):
    """(tensors: dict name -> torch.Tensor, metadata: dict), validating the layout."""
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f'{path}: too short for safetensors')
    (n,) = struct.unpack('<Q', data[:8])
    if n > len(data) - 8:
        raise ValueError(f'{path}: header length {n} exceeds the file')
    header = json.loads(data[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', {}) or {}
    body = memoryview(data)[8 + n:]
    spans = []
    out = {}
    for name, info in header.items():
        dt = DTYPES[info['dtype']]
        shape = info['shape']
        b, e = info['data_offsets']
        numel = 1
        for d in shape:
            numel *= d
        itemsize = torch.empty((), dtype=dt).element_size()
        if e - b != numel * itemsize:
            raise ValueError(f'{path}: {name}: offsets [{b}, {e}] do not fit {info["dtype"]} {shape}')
        spans.append((b, e, name))
        raw = bytes(body[b:e])
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dt)
        else:
            out[name] = torch.frombuffer(bytearray(raw), dtype=dt).reshape(shape).clone()
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            raise ValueError(f'{path}: {name} starts at {b}, expected {pos} (gap or overlap)')
        pos = e
    if pos != len(body):
        raise ValueError(f'{path}: {len(body) - pos} trailing bytes not described by the header')
    return out, meta


def load_reference(path):
    if path.endswith('.safetensors'):
        return read_safetensors(path)[0]
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except TypeError:  # torch < 1.13 has no weights_only
        obj = torch.load(path, map_location='cpu')
    if 'state_dict' in obj and isinstance(obj['state_dict'], dict):
        obj = obj['state_dict']
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('file')
    ap.add_argument('--against', help='reference checkpoint (.safetensors or a torch.save file)')
    ap.add_argument('--atol', type=float, default=0.0, help='allowed max |difference| (default 0: bit-identical values)')
    ap.add_argument('--ignore', action='append', default=[], help='glob of keys to leave out of the comparison')
    args = ap.parse_args()

    tensors, meta = read_safetensors(args.file)
    params = sum(t.numel() for t in tensors.values())
    dtypes = sorted({str(t.dtype).replace('torch.', '') for t in tensors.values()})
    print(f'{args.file}: {len(tensors)} tensors, {params} values, dtypes {dtypes}, metadata {meta}')
    ok = True
    if meta.get('format') != 'pt':
        print('  WARNING: metadata "format" is not "pt"; transformers from_pretrained refuses such files')
        ok = False
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t.float()).all()]
    if bad:
        print(f'  non-finite values in: {bad[:10]}')
        ok = False

    if args.against:
        ref = load_reference(args.against)
        keep = lambda k: not any(fnmatch.fnmatch(k, g) for g in args.ignore)
        a = {k for k in tensors if keep(k)}
        b = {k for k in ref if keep(k)}
        if a - b:
            print(f'  only in {args.file}: {sorted(a - b)[:20]}')
            ok = False
        if b - a:
            print(f'  only in {args.against}: {sorted(b - a)[:20]}')
            ok = False
        worst = (0.0, None)
        mismatched = 0
        for k in sorted(a & b):
            x, y = tensors[k], ref[k]
            if tuple(x.shape) != tuple(y.shape):
                print(f'  {k}: shape {tuple(x.shape)} vs {tuple(y.shape)}')
                ok = False
                continue
            d = (x.double() - y.double()).abs().max().item() if x.numel() else 0.0
            if d > worst[0]:
                worst = (d, k)
            if d > args.atol:
                mismatched += 1
        print(f'  compared {len(a & b)} tensors with {args.against}: max |diff| {worst[0]:.3g}' + (f' ({worst[1]})' if worst[1] else '') + f', {mismatched} over atol {args.atol}')
        ok = ok and mismatched == 0
    print('OK' if ok else 'MISMATCH')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
