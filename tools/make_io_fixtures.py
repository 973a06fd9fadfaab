#!/usr/bin/env python3
"""Writes the small checkpoint fixtures of test/io.test.ts into test/fixtures/io/ (a few KB in all).

Run with a Python that has torch (1.13 here: /usr/bin/python3):   python3 tools/make_io_fixtures.py
Deterministic (fixed seeds); re-running rewrites the same content except where torch.save embeds nothing variable.

  dtypes.bin          torch.save of a real module's state_dict (OrderedDict + _metadata via BUILD) plus tensors of
                      every dtype (F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL), a transposed (non-contiguous) view, views
                      into a shared storage with offsets, an expanded (stride 0) view, a 0-d scalar, an empty tensor
                      and an nn.Parameter (_rebuild_parameter)
  dtypes.safetensors  the same tensors, contiguous, written by hand in the safetensors layout (the safetensors package
                      is not installed), with __metadata__
  expected.json       each tensor's dtype, shape and values as f32 bit patterns (torch's .float()), the ground truth for both
  rounding.json       f32 bit patterns (random, ties, overflow, subnormals, NaN) and torch's f16 / bf16 conversions of
                      them, to check the writer's round-to-nearest-even
  proto4.bin          a state dict pickled with protocol 4 (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE)
  nested.bin          a training checkpoint {'epoch': 3, 'state_dict': {...}}
  legacy.bin          the pre-1.6 non-zip format (_use_new_zipfile_serialization=False): must be refused with advice
  malicious.bin       a zip checkpoint whose pickle calls os.system: must be refused without running anything
  bad_opcode.bin      a zip checkpoint whose pickle uses the INST opcode: must be refused naming the opcode
  zip64.bin           dtypes.bin re-zipped with ZIP64 records everywhere (archives over 4 GiB have them)
  deflated.bin        dtypes.bin re-zipped with deflate: must be refused (PyTorch stores entries uncompressed)
  sharded_st/         model.safetensors.index.json + 2 shards;  sharded_pt/  pytorch_model.bin.index.json + 2 shards
"""
import collections
import io
import json
import os
import struct
import sys
import zipfile

try:
    import torch
except ImportError:
    sys.exit('make_io_fixtures.py needs PyTorch: run it with the system Python (e.g. /usr/bin/python3)')

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'io')

ST_DTYPE = {
    torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.float64: 'F64', torch.int64: 'I64',
    torch.int32: 'I32', torch.int16: 'I16', torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL',
}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """The safetensors layout: u64 LE header length, JSON header (space-padded to 8), row-major LE data."""
    header = {}
    if metadata:
        header['__metadata__'] = metadata
    blobs = []
    offset = 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {'dtype': ST_DTYPE[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def expected_entry(t):
    # f32 bit patterns: exact, and JSON has no inf/nan
    bits = t.float().contiguous().flatten().view(torch.int32).tolist()
    return {'dtype': ST_DTYPE[t.dtype], 'shape': list(t.shape), 'f32_bits': [b & 0xFFFFFFFF for b in bits]}


class Evil:
    """Pickles as a call to os.system; a safe loader must refuse it."""

    def __reduce__(self):
        return (os.system, ('echo this checkpoint ran code > /tmp/ser_io_fixture_pwned',))


def repack(src, dst, compression=zipfile.ZIP_STORED, force_zip64=False):
    with zipfile.ZipFile(src) as zin:
        items = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    saved = (zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT)
    if force_zip64:
        zipfile.ZIP64_LIMIT = 0
        zipfile.ZIP_FILECOUNT_LIMIT = 0
    try:
        with zipfile.ZipFile(dst, 'w', compression=compression) as zout:
            for name, data in items:
                zout.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=compression)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved


def zip_with_pickle(dst, pickle_bytes):
    with zipfile.ZipFile(dst, 'w', compression=zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo('archive/data.pkl', date_time=(2020, 1, 1, 0, 0, 0)), pickle_bytes)
        z.writestr(zipfile.ZipInfo('archive/version', date_time=(2020, 1, 1, 0, 0, 0)), b'3\n')


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20240611)

    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    sd = module.state_dict()  # OrderedDict with _metadata (pickled through BUILD)
    assert hasattr(sd, '_metadata')

    base = torch.randn(3, 5)
    shared = torch.arange(20, dtype=torch.float32) * 0.25 - 2.0
    extra = collections.OrderedDict()
    extra['f32'] = base
    extra['f16'] = (torch.randn(7) * 3).half()
    extra['f16_special'] = torch.tensor([0.0, -0.0, 6.1e-5, 5.96e-8, 65504.0, float('inf'), -float('inf')], dtype=torch.float16)
    extra['bf16'] = torch.randn(2, 3).bfloat16()
    extra['f64'] = torch.tensor([1.0 / 3.0, -2.5e-40, 1e39, 0.1], dtype=torch.float64)
    extra['i64'] = torch.tensor([0, -1, 7, 2**40 + 3, -(2**33) - 5], dtype=torch.int64)
    extra['i32'] = torch.tensor([-2147483648, 2147483647, 5], dtype=torch.int32)
    extra['i16'] = torch.tensor([-32768, 12345], dtype=torch.int16)
    extra['i8'] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    extra['u8'] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    extra['bool'] = torch.tensor([True, False, True])
    extra['transposed'] = base.t()  # [5, 3], strides (1, 5)
    extra['slice_offset'] = shared[5:11]  # offset 5 in the shared storage
    extra['grid_view'] = shared.view(4, 5)[1:, 1:4]  # [3, 3], strides (5, 1), offset 6
    extra['expanded'] = torch.tensor([1.5, -2.0, 3.25]).view(3, 1).expand(3, 4)  # stride (1, 0)
    extra['scalar'] = torch.tensor(4.5)
    extra['empty'] = torch.zeros(0, 3)
    for k, v in extra.items():
        sd[k] = v
    param = torch.nn.Parameter(torch.randn(2, 2))
    to_save = collections.OrderedDict(sd)
    to_save._metadata = sd._metadata
    to_save['param'] = param
    assert not extra['transposed'].is_contiguous() and not extra['grid_view'].is_contiguous()

    torch.save(to_save, os.path.join(OUT, 'dtypes.bin'))
    plain = collections.OrderedDict((k, v.detach().contiguous()) for k, v in to_save.items())
    write_safetensors(os.path.join(OUT, 'dtypes.safetensors'), plain, {'format': 'pt', 'note': 'io fixture'})
    expected = collections.OrderedDict((k, expected_entry(v.detach())) for k, v in to_save.items())
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, indent=1)
        f.write('\n')

    ties = [1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 70000.0, 65519.0, 65520.0, 1e-8,
            3e-5, 2**-25, 2**-24 * 1.5, -0.0, 0.0, float('nan'), float('inf'), -float('inf'), 3.4e38]
    src = torch.cat([torch.randn(40) * 10, torch.randn(10) * 1e-5, torch.tensor(ties, dtype=torch.float32)])
    bits = lambda t: [int(x) & 0xFFFF for x in t.view(torch.int16).tolist()]
    rounding = {'f32_bits': [int(x) & 0xFFFFFFFF for x in src.view(torch.int32).tolist()], 'f16_bits': bits(src.half()),
                'bf16_bits': bits(src.bfloat16())}
    with open(os.path.join(OUT, 'rounding.json'), 'w') as f:
        json.dump(rounding, f)
        f.write('\n')

    # sanity: torch reads back what was written
    back = torch.load(os.path.join(OUT, 'dtypes.bin'))
    for k, v in to_save.items():
        assert torch.equal(back[k], v.detach()), k

    small = collections.OrderedDict((k, plain[k]) for k in ['0.weight', '0.bias', 'f16', 'bf16'])
    torch.save(small, os.path.join(OUT, 'proto4.bin'), pickle_protocol=4)
    torch.save({'epoch': 3, 'state_dict': small}, os.path.join(OUT, 'nested.bin'))
    torch.save(small, os.path.join(OUT, 'legacy.bin'), _use_new_zipfile_serialization=False)
    torch.save({'weight': torch.zeros(2), 'payload': Evil()}, os.path.join(OUT, 'malicious.bin'))
    # protocol 0's INST opcode: builds an object by calling a class; never appears in a state dict
    zip_with_pickle(os.path.join(OUT, 'bad_opcode.bin'), b'\x80\x02(ibuiltins\nobject\n.')
    repack(os.path.join(OUT, 'dtypes.bin'), os.path.join(OUT, 'zip64.bin'), force_zip64=True)
    repack(os.path.join(OUT, 'dtypes.bin'), os.path.join(OUT, 'deflated.bin'), compression=zipfile.ZIP_DEFLATED)

    # sharded: the small dict split over two shards, in both formats
    names = list(small.keys())
    shards = [names[:2], names[2:]]
    for kind in ['st', 'pt']:
        d = os.path.join(OUT, f'sharded_{kind}')
        os.makedirs(d, exist_ok=True)
        weight_map = {}
        for i, keys in enumerate(shards):
            fname = f'model-0000{i + 1}-of-00002.safetensors' if kind == 'st' else f'pytorch_model-0000{i + 1}-of-00002.bin'
            part = collections.OrderedDict((k, small[k]) for k in keys)
            if kind == 'st':
                write_safetensors(os.path.join(d, fname), part, {'format': 'pt'})
            else:
                torch.save(part, os.path.join(d, fname))
            for k in keys:
                weight_map[k] = fname
        total = sum(v.numel() * v.element_size() for v in small.values())
        index = {'metadata': {'total_size': total}, 'weight_map': weight_map}
        iname = 'model.safetensors.index.json' if kind == 'st' else 'pytorch_model.bin.index.json'
        with open(os.path.join(d, iname), 'w') as f:
            json.dump(index, f, indent=2)
            f.write('\n')

    total = 0
    for root, _, files in os.walk(OUT):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print(f'wrote {OUT} ({total} bytes)')


if __name__ == '__main__':
    main()
