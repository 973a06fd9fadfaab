// PyTorch checkpoints (pytorch_model.bin as written by torch.save since 1.6: a zip of STORED entries):
//   <prefix>/data.pkl      the pickled state dict; tensors appear as
//                          _rebuild_tensor_v2(persistent_id(('storage', torch.FloatStorage, '<key>', 'cpu', numel)),
//                                             storage_offset, size, stride, requires_grad, backward_hooks)
//   <prefix>/data/<key>    the raw little-endian bytes of storage <key>
//   <prefix>/version, <prefix>/byteorder (newer torch)
// data.pkl is read by a restricted unpickler: it knows only the data opcodes a state dict uses and a short list of
// globals (OrderedDict, the tensor/parameter rebuild functions, storage types), which it interprets itself. Nothing
// from the file is ever imported or executed; any other global (os.system, a model class, ...) or unknown opcode is
// refused with an error that names it. Tensor bytes are not read until an entry's read() is called.
// Hostile pickles: the interpreter is a loop over opcodes (no recursion), and bounds the opcodes run, the values it
// creates, the stack, MARK nesting and the memo (UnpickleOptions' limits), so 30 MB of EMPTY_DICT is one error, not an
// out-of-memory abort. A tensor view (size, stride, offset) must stay inside its storage, and the bytes it makes must
// fit in the file (a stride-0 view of a 4-byte storage cannot become gigabytes).
import {
  type ByteReader,
  type CheckpointDType,
  type TensorEntry,
  type TensorSource,
  DTYPE_BYTES,
  MAX_TENSOR_RANK,
  gitLfsPointerMessage,
  isGitLfsPointer,
  numelOf,
  shapeString,
  toFloat32,
} from './source.js';
import { type ZipEntry, readZipDirectory, zipEntryDataOffset } from './zip.js';

// ---------------------------------------------------------------------------------------------------------------
// values the unpickler builds

export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export class PyDict {
  readonly map = new Map<PyValue, PyValue>();
  /** attributes set by BUILD (OrderedDict's _metadata) */
  attributes: PyDict | null = null;
}

export class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: CheckpointDType,
    readonly numel: number,
    readonly location: string,
  ) {}
}

export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | StorageRef | TensorRef;

/** torch's legacy storage class names (what torch.save still writes into persistent ids) */
const STORAGE_TYPES: Record<string, CheckpointDType> = {
  'torch.FloatStorage': 'F32',
  'torch.DoubleStorage': 'F64',
  'torch.HalfStorage': 'F16',
  'torch.BFloat16Storage': 'BF16',
  'torch.LongStorage': 'I64',
  'torch.IntStorage': 'I32',
  'torch.ShortStorage': 'I16',
  'torch.CharStorage': 'I8',
  'torch.ByteStorage': 'U8',
  'torch.BoolStorage': 'BOOL',
};

/** globals that may appear as plain values (types), never called */
const TYPE_GLOBALS = new Set(['torch.Tensor', 'torch.nn.parameter.Parameter', ...Object.keys(STORAGE_TYPES)]);

type Callable = (args: PyValue[], where: string) => PyValue;

function tensorArg(v: PyValue, fn: string, where: string): TensorRef {
  if (!(v instanceof TensorRef)) throw new Error(`${where}: ${fn} expects a tensor as its first argument`);
  return v;
}

function intTuple(v: PyValue, what: string, where: string): number[] {
  const items = v instanceof PyTuple ? v.items : Array.isArray(v) ? v : null;
  if (!items || items.length > MAX_TENSOR_RANK || !items.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new Error(`${where}: tensor ${what} is not a tuple of at most ${MAX_TENSOR_RANK} non-negative integers`);
  }
  return items as number[];
}

const CALLABLES: Record<string, Callable> = {
  'collections.OrderedDict': (args, where) => {
    const d = new PyDict();
    if (args.length === 0) return d;
    const pairs = args[0];
    if (args.length === 1 && Array.isArray(pairs)) {
      for (const p of pairs) {
        if (!(p instanceof PyTuple) || p.items.length !== 2) throw new Error(`${where}: OrderedDict(...) expects (key, value) pairs`);
        d.map.set(p.items[0], p.items[1]);
      }
      return d;
    }
    throw new Error(`${where}: unsupported OrderedDict(...) arguments`);
  },
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  'torch._utils._rebuild_tensor_v2': (args, where) => {
    if (args.length < 4) throw new Error(`${where}: _rebuild_tensor_v2 needs at least 4 arguments, got ${args.length}`);
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef)) throw new Error(`${where}: _rebuild_tensor_v2's first argument is not a storage`);
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw new Error(`${where}: bad storage offset ${String(offset)}`);
    const shape = intTuple(size, 'size', where);
    const strides = intTuple(stride, 'stride', where);
    if (shape.length !== strides.length) throw new Error(`${where}: tensor size ${shapeString(shape)} and stride ${shapeString(strides)} differ in rank`);
    return new TensorRef(storage, offset, shape, strides);
  },
  // (data, requires_grad, backward_hooks)
  'torch._utils._rebuild_parameter': (args, where) => tensorArg(args[0], '_rebuild_parameter', where),
  // (data, requires_grad, backward_hooks, state)
  'torch._utils._rebuild_parameter_with_state': (args, where) => tensorArg(args[0], '_rebuild_parameter_with_state', where),
  // torch >= 2 for tensor subclasses: (func, new_type, args, state) -> func(*args) viewed as new_type
  'torch._tensor._rebuild_from_type_v2': (args, where) => {
    const [func, type, inner] = args;
    if (!(type instanceof PyGlobal) || (type.qualified !== 'torch.Tensor' && type.qualified !== 'torch.nn.parameter.Parameter')) {
      throw new Error(`${where}: _rebuild_from_type_v2 to an unsupported type`);
    }
    if (!(func instanceof PyGlobal) || !(inner instanceof PyTuple)) throw new Error(`${where}: malformed _rebuild_from_type_v2`);
    return callGlobal(func, inner.items, where);
  },
};

function callGlobal(fn: PyValue, args: PyValue[], where: string): PyValue {
  if (!(fn instanceof PyGlobal)) throw new Error(`${where}: REDUCE on a value that is not a callable global`);
  const impl = CALLABLES[fn.qualified];
  if (!impl) throw new Error(`${where}: calling '${fn.qualified}' is not supported`);
  return impl(args, where);
}

export const ALLOWED_GLOBALS: readonly string[] = [...Object.keys(CALLABLES), ...TYPE_GLOBALS];

// ---------------------------------------------------------------------------------------------------------------
// the restricted unpickler

/** every pickle opcode's name, so an unsupported one is reported by name */
const OPCODE_NAMES: Record<number, string> = {};
for (const [ch, name] of Object.entries({
  '(': 'MARK', '.': 'STOP', '0': 'POP', '1': 'POP_MARK', '2': 'DUP', F: 'FLOAT', I: 'INT', J: 'BININT', K: 'BININT1',
  L: 'LONG', M: 'BININT2', N: 'NONE', P: 'PERSID', Q: 'BINPERSID', R: 'REDUCE', S: 'STRING', T: 'BINSTRING',
  U: 'SHORT_BINSTRING', V: 'UNICODE', X: 'BINUNICODE', a: 'APPEND', b: 'BUILD', c: 'GLOBAL', d: 'DICT', '}': 'EMPTY_DICT',
  e: 'APPENDS', g: 'GET', h: 'BINGET', i: 'INST', j: 'LONG_BINGET', l: 'LIST', ']': 'EMPTY_LIST', o: 'OBJ', p: 'PUT',
  q: 'BINPUT', r: 'LONG_BINPUT', s: 'SETITEM', t: 'TUPLE', ')': 'EMPTY_TUPLE', u: 'SETITEMS', G: 'BINFLOAT',
  '\x80': 'PROTO', '\x81': 'NEWOBJ', '\x82': 'EXT1', '\x83': 'EXT2', '\x84': 'EXT4', '\x85': 'TUPLE1', '\x86': 'TUPLE2',
  '\x87': 'TUPLE3', '\x88': 'NEWTRUE', '\x89': 'NEWFALSE', '\x8a': 'LONG1', '\x8b': 'LONG4', B: 'BINBYTES',
  C: 'SHORT_BINBYTES', '\x8c': 'SHORT_BINUNICODE', '\x8d': 'BINUNICODE8', '\x8e': 'BINBYTES8', '\x8f': 'EMPTY_SET',
  '\x90': 'ADDITEMS', '\x91': 'FROZENSET', '\x92': 'NEWOBJ_EX', '\x93': 'STACK_GLOBAL', '\x94': 'MEMOIZE', '\x95': 'FRAME',
  '\x96': 'BYTEARRAY8', '\x97': 'NEXT_BUFFER', '\x98': 'READONLY_BUFFER',
})) {
  OPCODE_NAMES[ch.charCodeAt(0)] = name;
}

export interface UnpickleOptions {
  /** names the pickle in messages, e.g. "pytorch_model.bin: archive/data.pkl" */
  where: string;
  /** BINPERSID handler; without one, persistent ids are refused */
  persistentLoad?: (pid: PyValue) => PyValue;
  /** bounds (defaults in PICKLE_LIMITS) */
  limits?: Partial<PickleLimits>;
}

export interface PickleLimits {
  /** opcodes interpreted (each creates at most one value, so this bounds the values made too) */
  maxOps: number;
  /** values on the stack at once */
  maxStack: number;
  /** MARKs open at once (nesting of tuples/lists/dicts built with MARK) */
  maxMarks: number;
  /** memo entries */
  maxMemo: number;
}

/**
 * A state dict takes ~20 opcodes per tensor and nests 3-4 levels, so these leave a 200x margin over XLSR-large
 * (~420 tensors) and 10x over a 10,000-tensor model, while capping the interpreter's memory at a few hundred MB.
 */
export const PICKLE_LIMITS: Readonly<PickleLimits> = {
  maxOps: 2_000_000,
  maxStack: 1_000_000,
  maxMarks: 1000,
  maxMemo: 1_000_000,
};

/** Interprets a pickle made of data opcodes and allowlisted globals only. Throws on anything else. */
export function restrictedUnpickle(data: Uint8Array, opts: UnpickleOptions): PyValue {
  const { where } = opts;
  const limits: PickleLimits = { ...PICKLE_LIMITS, ...opts.limits };
  let ops = 0;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const latin1 = new TextDecoder('latin1');
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;

  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg} (pickle byte ${pos})`);
  };
  const need = (n: number) => {
    if (pos + n > data.byteLength) fail('pickle ends unexpectedly (truncated?)');
  };
  const u8 = () => (need(1), data[pos++]);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getUint32(pos, true) + dv.getUint32(pos + 4, true) * 4294967296;
    pos += 8;
    if (!Number.isSafeInteger(v)) fail('length field too large');
    return v;
  };
  const bytes = (n: number) => (need(n), (pos += n), data.subarray(pos - n, pos));
  const text = (n: number) => {
    const b = bytes(n);
    try {
      return utf8.decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const pop = (): PyValue => {
    if (stack.length <= (marks.length ? marks[marks.length - 1] : 0)) fail('stack underflow (malformed pickle)');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (!stack.length) fail('stack underflow (malformed pickle)');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    if (!marks.length) fail('no MARK on the stack (malformed pickle)');
    const m = marks.pop()!;
    return stack.splice(m);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) fail(`memo key ${i} is not set`);
    return memo.get(i)!;
  };
  const long = (b: Uint8Array): number | bigint => {
    // little-endian two's complement of any length
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b.length && b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const loadGlobal = (module: string, name: string): PyValue => {
    const q = `${module}.${name}`;
    if (!CALLABLES[q] && !TYPE_GLOBALS.has(q)) {
      fail(
        `refusing to load global '${q}': only plain state dicts of tensors can be read (allowed globals: ${ALLOWED_GLOBALS.join(', ')}); ` +
          'this loader never imports or runs code from a checkpoint',
      );
    }
    return new PyGlobal(module, name);
  };
  const setItems = (d: PyValue, kv: PyValue[]) => {
    if (!(d instanceof PyDict)) fail('SETITEM(S) on a value that is not a dict');
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) (d as PyDict).map.set(kv[i], kv[i + 1]);
  };

  const tooMany = (what: string, limit: number): never =>
    fail(`more than ${limit} ${what}: a state dict's pickle is far smaller (damaged or hostile file)`);
  for (;;) {
    const opPos = pos;
    const op = u8();
    if (++ops > limits.maxOps) tooMany('opcodes', limits.maxOps);
    if (stack.length > limits.maxStack) tooMany('values on the pickle stack', limits.maxStack);
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('unsupported pickle protocol');
        break;
      case 0x95: // FRAME (protocol 4): a length prefix, the framed bytes follow inline
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail('pickle stopped with a malformed stack');
        return stack[0];
      case 0x28: // MARK
        if (marks.length >= limits.maxMarks) tooMany('nested MARKs', limits.maxMarks);
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0 || n > 1024) fail('LONG4 length out of range');
        stack.push(long(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(text(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(text(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(text(u64()));
        break;
      case 0x54: {
        // BINSTRING (Python 2 str)
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        stack.push(latin1.decode(bytes(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x74: // TUPLE
        stack.push(new PyTuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail('APPEND to a value that is not a list');
        (l as PyValue[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail('APPENDS to a value that is not a list');
        // a loop, not push(...items): spreading a million items overflows the call stack
        for (const it of items) (l as PyValue[]).push(it);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        if (memo.size > limits.maxMemo) tooMany('memo entries', limits.maxMemo);
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        if (memo.size > limits.maxMemo) tooMany('memo entries', limits.maxMemo);
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const line = () => {
          const end = data.indexOf(0x0a, pos);
          if (end < 0) fail('GLOBAL without a newline');
          const s = latin1.decode(data.subarray(pos, end));
          pos = end + 1;
          return s;
        };
        const module = line();
        const name = line();
        stack.push(loadGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(loadGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!(args instanceof PyTuple)) fail('REDUCE arguments are not a tuple');
        stack.push(callGlobal(fn, (args as PyTuple).items, `${where} (pickle byte ${opPos})`));
        break;
      }
      case 0x62: {
        // BUILD: obj.__setstate__(state). Only OrderedDict attributes (state_dict's _metadata) and empty tensor
        // state are meaningful here; they carry no weights.
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict && (state instanceof PyDict || state === null)) obj.attributes = state;
        else if (obj instanceof TensorRef && (state === null || (state instanceof PyDict && state.map.size === 0))) {
          /* nothing */
        } else fail('BUILD on an unsupported object');
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) fail('persistent ids are not allowed here');
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      default: {
        const name = OPCODE_NAMES[op];
        fail(`unsupported pickle opcode ${name ?? 'unknown'} (0x${op.toString(16).padStart(2, '0')}) at byte ${opPos}: only the data opcodes of a state dict are understood`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PyTorch checkpoint -> TensorSource

/** pickle PROTO 2 + LONG1 of torch's legacy magic number 0x1950a86a20f9469cfc6c */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

export function legacyFormatMessage(fileName: string): string {
  return (
    `${fileName} is in PyTorch's legacy (pre-1.6, non-zip) serialization format, which is not supported. Convert it with Python:\n` +
    `  import torch; torch.save(torch.load('${fileName}', map_location='cpu'), 'converted.bin', _use_new_zipfile_serialization=True)\n` +
    `or save it as safetensors (model.save_pretrained(dir, safe_serialization=True)).`
  );
}

export async function readPytorch(reader: ByteReader, fileName: string): Promise<TensorSource> {
  const head = await reader.read(0, Math.min(reader.size, 64));
  if (isGitLfsPointer(head)) throw new Error(gitLfsPointerMessage(fileName, reader.size));
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    return readPytorchZip(reader, fileName);
  }
  if (head.length >= LEGACY_MAGIC.length && LEGACY_MAGIC.every((b, i) => head[i] === b)) throw new Error(legacyFormatMessage(fileName));
  if (head[0] === 0x80) throw new Error(`${fileName} is a bare pickle, not a PyTorch zip checkpoint. ${legacyFormatMessage(fileName).split('\n').slice(1).join('\n')}`);
  throw new Error(`${fileName}: not a PyTorch checkpoint (no zip signature at the start of the file)`);
}

interface StorageInfo {
  entry: ZipEntry;
  ref: StorageRef;
  dataOffset: number | null;
}

async function readPytorchZip(reader: ByteReader, fileName: string): Promise<TensorSource> {
  const zipEntries = await readZipDirectory(reader, fileName);
  const byName = new Map(zipEntries.map((e) => [e.name, e]));
  const pkls = zipEntries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pkls.length !== 1) {
    const hint = zipEntries.some((e) => e.name.endsWith('/constants.pkl')) ? ' (this looks like a TorchScript archive from torch.jit.save, not a state dict)' : '';
    throw new Error(`${fileName}: expected exactly one '<archive>/data.pkl' entry, found ${pkls.length}${hint}`);
  }
  const prefix = pkls[0].name.slice(0, -'data.pkl'.length);
  const byteorder = byName.get(`${prefix}byteorder`);
  if (byteorder) {
    const b = await reader.read(await zipEntryDataOffset(reader, byteorder, fileName), byteorder.size);
    const order = new TextDecoder().decode(b).trim();
    if (order !== 'little') throw new Error(`${fileName}: tensors are stored ${order}-endian; only little-endian checkpoints are supported`);
  }
  const pkl = pkls[0];
  if (pkl.size > 1 << 30) throw new Error(`${fileName}: ${pkl.name} is ${pkl.size} bytes; a state dict's pickle is far smaller`);
  const pklBytes = await reader.read(await zipEntryDataOffset(reader, pkl, fileName), pkl.size);

  const storages = new Map<string, StorageInfo>();
  const where = `${fileName}: ${pkl.name}`;
  const persistentLoad = (pid: PyValue): PyValue => {
    if (!(pid instanceof PyTuple) || pid.items[0] !== 'storage' || pid.items.length !== 5) {
      throw new Error(`${where}: unsupported persistent id (expected ('storage', type, key, location, numel))`);
    }
    const [, type, key, location, numel] = pid.items;
    if (!(type instanceof PyGlobal) || !STORAGE_TYPES[type.qualified]) {
      throw new Error(`${where}: unsupported storage type ${type instanceof PyGlobal ? `'${type.qualified}'` : String(type)}`);
    }
    if (typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) throw new Error(`${where}: malformed storage persistent id`);
    const dtype = STORAGE_TYPES[type.qualified];
    const known = storages.get(key);
    if (known) {
      if (known.ref.dtype !== dtype) throw new Error(`${where}: storage '${key}' is used as both ${known.ref.dtype} and ${dtype}`);
      return known.ref;
    }
    const entry = byName.get(`${prefix}data/${key}`);
    if (!entry) throw new Error(`${fileName}: storage '${key}' (${prefix}data/${key}) is missing from the archive`);
    if (entry.size !== numel * DTYPE_BYTES[dtype]) {
      throw new Error(`${fileName}: storage '${key}' holds ${entry.size} bytes, but ${numel} ${dtype} elements need ${numel * DTYPE_BYTES[dtype]}`);
    }
    const ref = new StorageRef(key, dtype, numel, typeof location === 'string' ? location : '?');
    storages.set(key, { entry, ref, dataOffset: null });
    return ref;
  };

  const root = restrictedUnpickle(pklBytes, { where, persistentLoad });
  const tensors = collectTensors(root, fileName);

  const entries = new Map<string, TensorEntry>();
  for (const [name, t] of tensors) {
    const info = storages.get(t.storage.key)!;
    entries.set(name, tensorEntry(name, t, info, reader, fileName));
  }
  return { entries, files: [fileName], metadata: {} };
}

/** The state dict: the top-level dict's tensors, or those of a nested 'state_dict' / 'model' dict (training checkpoints). */
function collectTensors(root: PyValue, fileName: string): Map<string, TensorRef> {
  if (!(root instanceof PyDict)) throw new Error(`${fileName}: the pickled object is not a dict of tensors (a state dict)`);
  const direct = new Map<string, TensorRef>();
  for (const [k, v] of root.map) if (typeof k === 'string' && v instanceof TensorRef) direct.set(k, v);
  if (direct.size) return direct;
  for (const key of ['state_dict', 'model', 'module']) {
    const inner = root.map.get(key);
    if (inner instanceof PyDict) {
      const nested = new Map<string, TensorRef>();
      for (const [k, v] of inner.map) if (typeof k === 'string' && v instanceof TensorRef) nested.set(k, v);
      if (nested.size) return nested;
    }
  }
  const keys = [...root.map.keys()].slice(0, 8).map(String);
  throw new Error(`${fileName}: no tensors found in the state dict (top-level keys: ${keys.join(', ') || 'none'})`);
}

function tensorEntry(name: string, t: TensorRef, info: StorageInfo, reader: ByteReader, fileName: string): TensorEntry {
  const dtype = t.storage.dtype;
  const el = DTYPE_BYTES[dtype];
  const numel = numelOf(t.shape);
  const what = `${fileName}: tensor '${name}'`;
  if (numel * el > 2 ** 32) throw new Error(`${what}: size ${shapeString(t.shape)} (${numel} elements) is too large for one tensor`);
  // a view may repeat storage elements (stride 0, overlapping strides), but what it expands to must still fit in the
  // file: the bytes a checkpoint yields are bounded by the bytes it holds
  if (numel * el > reader.size) {
    throw new Error(`${what}: size ${shapeString(t.shape)}, stride ${shapeString(t.stride)} would make ${numel * el} bytes from a ${reader.size}-byte file (a repeated or overlapping view; refused)`);
  }
  // the highest storage element the view touches
  let last = t.offset;
  for (let d = 0; d < t.shape.length; d++) if (t.shape[d] > 0) last += (t.shape[d] - 1) * t.stride[d];
  if (numel > 0 && last >= t.storage.numel) {
    throw new Error(`${what}: size ${shapeString(t.shape)}, stride ${shapeString(t.stride)}, offset ${t.offset} reach element ${last}, but storage '${t.storage.key}' has ${t.storage.numel}`);
  }
  let contiguous = true;
  for (let d = t.shape.length - 1, expect = 1; d >= 0; d--) {
    if (t.shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.shape[d];
  }
  const base = async () => {
    if (info.dataOffset === null) info.dataOffset = await zipEntryDataOffset(reader, info.entry, fileName);
    return info.dataOffset;
  };
  const readRaw = async (): Promise<Uint8Array> => {
    if (numel === 0) return new Uint8Array(0);
    const start = (await base()) + t.offset * el;
    if (contiguous) return reader.read(start, numel * el);
    // strided view (a transpose, an expand, a slice saved without .contiguous()): read the span it covers, gather
    const span = await reader.read(start, (last - t.offset + 1) * el);
    return gather(span, t.shape, t.stride, el);
  };
  return {
    name,
    shape: t.shape,
    dtype,
    file: fileName,
    readRaw,
    read: async () => toFloat32(await readRaw(), dtype, numel, what),
  };
}

/** Row-major copy of a strided view; `src` starts at the view's first element. */
function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], el: number): Uint8Array {
  const out = new Uint8Array(numelOf(shape) * el);
  const rank = shape.length;
  let o = 0;
  const walk = (d: number, at: number) => {
    if (d === rank - 1) {
      const n = shape[d];
      const s = stride[d] * el;
      if (s === el) {
        out.set(src.subarray(at * el, at * el + n * el), o);
        o += n * el;
        return;
      }
      for (let i = 0, p = at * el; i < n; i++, p += s) for (let b = 0; b < el; b++) out[o++] = src[p + b];
      return;
    }
    for (let i = 0; i < shape[d]; i++) walk(d + 1, at + i * stride[d]);
  };
  if (rank === 0) out.set(src.subarray(0, el));
  else walk(0, 0);
  return out;
}
