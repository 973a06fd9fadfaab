// Generators for small hostile (and valid) checkpoint files, shared by test/hostile-checkpoint.test.ts and
// test/fuzz.test.ts: a pickle writer for the opcodes a state dict uses, a STORED zip writer in torch.save's layout,
// and a PyTorch state-dict archive built from them. Nothing here is committed as a blob; every file is made on the fly.

const te = new TextEncoder();

/** Builds a pickle opcode by opcode (protocol 2 subset). */
export class PickleWriter {
  private readonly out: number[] = [];
  bytes(...b: number[]): this {
    for (const x of b) this.out.push(x & 0xff);
    return this;
  }
  u32(n: number): this {
    return this.bytes(n, n >>> 8, n >>> 16, n >>> 24);
  }
  proto(v = 2): this {
    return this.bytes(0x80, v);
  }
  mark(): this {
    return this.bytes(0x28);
  }
  stop(): this {
    return this.bytes(0x2e);
  }
  int(n: number): this {
    return this.bytes(0x4a).u32(n); // BININT (signed 32-bit)
  }
  str(s: string): this {
    const b = te.encode(s);
    this.bytes(0x58).u32(b.length); // BINUNICODE
    for (const x of b) this.out.push(x);
    return this;
  }
  global(module: string, name: string): this {
    this.bytes(0x63);
    for (const x of te.encode(`${module}\n${name}\n`)) this.out.push(x);
    return this;
  }
  tuple(): this {
    return this.bytes(0x74);
  }
  emptyDict(): this {
    return this.bytes(0x7d);
  }
  emptyTuple(): this {
    return this.bytes(0x29);
  }
  setitems(): this {
    return this.bytes(0x75);
  }
  reduce(): this {
    return this.bytes(0x52);
  }
  binpersid(): this {
    return this.bytes(0x51);
  }
  bool(v: boolean): this {
    return this.bytes(v ? 0x88 : 0x89);
  }
  /** an int tuple built with MARK ... TUPLE */
  ints(xs: readonly number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

export interface TensorSpec {
  name: string;
  /** storage key, elements (F32) */
  key: string;
  storageNumel: number;
  offset: number;
  shape: number[];
  stride: number[];
}

/** data.pkl of an OrderedDict of F32 tensors, as torch.save writes it (persistent ids for storages). */
export function stateDictPickle(tensors: readonly TensorSpec[]): Uint8Array {
  const p = new PickleWriter().proto(2);
  p.global('collections', 'OrderedDict').emptyTuple().reduce();
  p.mark();
  for (const t of tensors) {
    p.str(t.name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.mark();
    p.mark().str('storage').global('torch', 'FloatStorage').str(t.key).str('cpu').int(t.storageNumel).tuple().binpersid();
    p.int(t.offset).ints(t.shape).ints(t.stride).bool(false);
    p.global('collections', 'OrderedDict').emptyTuple().reduce();
    p.tuple().reduce();
  }
  p.setitems();
  return p.stop().finish();
}

/** A zip of STORED entries (no CRCs: the reader does not check them), 64-byte aligned data as torch writes it. */
export function storedZip(entries: readonly { name: string; data: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = te.encode(e.name);
    const headerLen = 30 + name.length;
    const pad = (64 - ((pos + headerLen + 4) % 64)) % 64;
    const extraLen = 4 + pad; // an unknown extra field used as padding, as torch does
    const lh = new Uint8Array(30 + name.length + extraLen);
    const lv = new DataView(lh.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(18, e.data.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, extraLen, true);
    lh.set(name, 30);
    lv.setUint16(30 + name.length, 0xcafe, true);
    lv.setUint16(32 + name.length, pad, true);
    const ch = new Uint8Array(46 + name.length);
    const cv = new DataView(ch.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, pos, true);
    ch.set(name, 46);
    parts.push(lh, e.data);
    central.push(ch);
    pos += lh.length + e.data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, pos, true);
  const all = [...parts, ...central, eocd];
  const out = new Uint8Array(all.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of all) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A pytorch_model.bin: archive/data.pkl, archive/data/<key> per storage (F32 values i * 0.5), version. */
export function pytorchZip(tensors: readonly TensorSpec[], pickle = stateDictPickle(tensors)): Uint8Array {
  const storages = new Map<string, number>();
  for (const t of tensors) storages.set(t.key, Math.max(storages.get(t.key) ?? 0, t.storageNumel));
  const entries = [{ name: 'archive/data.pkl', data: pickle }];
  for (const [key, numel] of storages) {
    const f = new Float32Array(numel);
    for (let i = 0; i < numel; i++) f[i] = i * 0.5;
    entries.push({ name: `archive/data/${key}`, data: new Uint8Array(f.buffer) });
  }
  entries.push({ name: 'archive/version', data: te.encode('3\n') });
  return storedZip(entries);
}

/** The text git writes in place of an LFS-tracked file when git-lfs is not installed. */
export function gitLfsPointer(size = 1261707063): Uint8Array {
  return te.encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${'ab'.repeat(32)}\nsize ${size}\n`);
}

/** A safetensors file with a raw header text (padded with spaces to 8 bytes) and `dataBytes` zero bytes of data. */
export function safetensorsWithHeader(header: string, dataBytes = 0): Uint8Array {
  const h = te.encode(header);
  const padded = Math.ceil(h.length / 8) * 8;
  const out = new Uint8Array(8 + padded + dataBytes);
  new DataView(out.buffer).setUint32(0, padded, true);
  out.set(h, 8);
  out.fill(0x20, 8 + h.length, 8 + padded);
  return out;
}
