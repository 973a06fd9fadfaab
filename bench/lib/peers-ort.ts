// Peer: ONNX Runtime (onnxruntime-node) on the same forward ops, WebGPU execution provider and CPU provider.
// onnxruntime-node ships its own Dawn, so its WebGPU EP opens its own device on the same Vulkan driver (lavapipe
// here); it cannot share our GPUDevice. Each op is a one-node ONNX graph that this file writes itself (a minimal
// protobuf encoder below: ModelProto / GraphProto / NodeProto / TensorProto / ValueInfoProto / AttributeProto).
// Weights are initializers (uploaded once at session creation, like a real model); the activation is a graph input
// and the result a graph output, so one ORT run = upload input + op(s) + read back output (onnxruntime-node cannot
// hand us its GPU buffers: its Dawn is not ours). To time the op without the transfers, on both sides equally, ops
// whose output has the input's shape run as a chain of 1 and of 1 + CHAIN copies of the node (each feeding the next),
// and the op's time is (t[1 + CHAIN] - t[1]) / CHAIN: the upload and readback cancel. Our side runs the same chain
// with the same upload and readback. Other ops (conv) keep upload + op + readback on both sides, said in the note.
// Repetitions alternate between the two sides (so both see the same spells of a shared host); the two results (chain
// of 1) are compared element-wise.
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { tidy, noGrad } from '../../src/autograd.js';
import { matmul } from '../../src/ops/matmul.js';
import { conv1d } from '../../src/ops/conv.js';
import { layerNorm } from '../../src/ops/norm.js';
import { softmax } from '../../src/ops/loss.js';
import { gelu } from '../../src/ops/activation.js';
import { add } from '../../src/ops/elementwise.js';
import { timeAsync, summarize, type Row, type Timing } from './harness.js';
import { randArray, agree, type Peaks } from './peers-common.js';

// ---------------------------------------------------------------------------------------------------------------
// protobuf writer (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) and the ONNX messages we need

class PB {
  private chunks: Uint8Array[] = [];
  private len = 0;
  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.len += b.length;
  }
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x) byte |= 0x80;
      out.push(byte);
    } while (x);
    this.push(Uint8Array.from(out));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }
  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: PB): this {
    return this.bytes(field, m.finish());
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

const FLOAT = 1; // TensorProto.DataType.FLOAT

type Attr = { name: string; ints?: number[]; i?: number; f?: number };

function attribute(a: Attr): PB {
  const m = new PB().str(1, a.name);
  // AttributeProto.type: FLOAT 1, INT 2, INTS 7
  if (a.f !== undefined) m.float(2, a.f).int(20, 1);
  else if (a.i !== undefined) m.int(3, a.i).int(20, 2);
  else if (a.ints) {
    for (const v of a.ints) m.int(8, v);
    m.int(20, 7);
  }
  return m;
}

function tensorProto(name: string, dims: number[], data: Float32Array): PB {
  const m = new PB();
  for (const d of dims) m.int(1, d);
  m.int(2, FLOAT).str(8, name);
  m.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength)); // raw_data, little-endian
  return m;
}

function valueInfo(name: string, dims: number[]): PB {
  const shape = new PB();
  for (const d of dims) shape.msg(1, new PB().int(1, d)); // Dimension.dim_value
  const tensorType = new PB().int(1, FLOAT).msg(2, shape);
  return new PB().str(1, name).msg(2, new PB().msg(1, tensorType)); // TypeProto.tensor_type
}

export interface OneNodeGraph {
  op: string;
  inputs: { name: string; dims: number[] }[];
  initializers: { name: string; dims: number[]; data: Float32Array }[];
  /** node input order (names of inputs and initializers) */
  nodeInputs: string[];
  output: { name: string; dims: number[] };
  attrs?: Attr[];
  opset?: number;
}

/**
 * A serialized ONNX ModelProto holding the node, or `copies` of it chained (copy j reads copy j-1's output in place
 * of the first node input; only for ops whose output has that input's shape).
 */
export function oneNodeModel(g: OneNodeGraph, copies = 1): Uint8Array {
  const graph = new PB();
  for (let j = 0; j < copies; j++) {
    const node = new PB();
    const out = j === copies - 1 ? g.output.name : `${g.output.name}_${j}`;
    g.nodeInputs.forEach((n, k) => node.str(1, k === 0 && j > 0 ? `${g.output.name}_${j - 1}` : n));
    node.str(2, out).str(3, `${g.op}_${j}`).str(4, g.op);
    for (const a of g.attrs ?? []) node.msg(5, attribute(a));
    graph.msg(1, node);
  }
  graph.str(2, `bench_${g.op}`);
  for (const t of g.initializers) graph.msg(5, tensorProto(t.name, t.dims, t.data));
  for (const i of g.inputs) graph.msg(11, valueInfo(i.name, i.dims));
  graph.msg(12, valueInfo(g.output.name, g.output.dims));
  const opset = new PB().str(1, '').int(2, g.opset ?? 17);
  return new PB().int(1, 8).str(2, 'ser-webgpu bench').msg(7, graph).msg(8, opset).finish(); // ir_version 8
}

// ---------------------------------------------------------------------------------------------------------------
// the cases

interface Case {
  name: string;
  unit: 'GFLOP/s' | 'GB/s';
  /** flops or bytes of one run, for the unit */
  work: number;
  graph: OneNodeGraph;
  /** input data (one input) */
  input: Float32Array;
  /** our op, from the uploaded input and the initializers (uploaded once) */
  ours: (x: Tensor, w: Tensor[]) => Tensor;
  /** output shape == input shape: timed as a chain (transfers cancel) */
  chainable: boolean;
  note?: string;
}

/** extra chained copies of a chainable op (see the header); fewer in quick runs */
let CHAIN = 8;

function cases(quick: boolean): Case[] {
  const list: Case[] = [];
  // MatMul 1024^3 (or 512^3 quick) and a wav2vec2 shape: qkv projection on 4 s of audio (200 frames) x 1024 . 1024x1024
  const mm = (label: string, M: number, K: number, N: number): Case => {
    const w = randArray(K * N, 2, 1 / Math.sqrt(K));
    return {
      name: `MatMul ${label} ${M}x${K}x${N}`,
      unit: 'GFLOP/s',
      work: 2 * M * K * N,
      graph: { op: 'MatMul', inputs: [{ name: 'x', dims: [M, K] }], initializers: [{ name: 'w', dims: [K, N], data: w }], nodeInputs: ['x', 'w'], output: { name: 'y', dims: [M, N] } },
      input: randArray(M * K, 1),
      ours: (x, [wt]) => matmul(x, wt),
      chainable: K === N,
    };
  };
  list.push(quick ? mm('square', 512, 512, 512) : mm('square', 1024, 1024, 1024));
  list.push(mm('wav2vec2 proj', quick ? 200 : 800, 1024, 1024));
  // Conv 1-D: feature-encoder layer 1 (512 -> 512, k3 s2) on 4 s of audio (T = 12799), NCW like PyTorch
  {
    const cin = 512, cout = 512, k = 3, stride = 2, T = quick ? 1599 : 12799;
    const tout = Math.floor((T - k) / stride) + 1;
    const w = randArray(cout * cin * k, 3, 1 / Math.sqrt(cin * k));
    list.push({
      name: `Conv 1-D ${cin}->${cout} k${k} s${stride} T=${T}`,
      unit: 'GFLOP/s',
      work: 2 * cout * cin * k * tout,
      graph: { op: 'Conv', inputs: [{ name: 'x', dims: [1, cin, T] }], initializers: [{ name: 'w', dims: [cout, cin, k], data: w }], nodeInputs: ['x', 'w'], output: { name: 'y', dims: [1, cout, tout] }, attrs: [{ name: 'kernel_shape', ints: [k] }, { name: 'strides', ints: [stride] }, { name: 'pads', ints: [0, 0] }] },
      input: randArray(cin * T, 4),
      ours: (x, [wt]) => conv1d(x, wt, null, { stride }),
      chainable: false,
    });
  }
  // LayerNormalization over 1024 channels, 4 s x batch 4 of frames (800 rows)
  {
    const R = quick ? 200 : 800, C = 1024;
    list.push({
      name: `LayerNormalization ${R}x${C}`,
      unit: 'GB/s',
      work: 2 * R * C * 4,
      graph: { op: 'LayerNormalization', inputs: [{ name: 'x', dims: [R, C] }], initializers: [{ name: 'g', dims: [C], data: randArray(C, 5) }, { name: 'b', dims: [C], data: randArray(C, 6) }], nodeInputs: ['x', 'g', 'b'], output: { name: 'y', dims: [R, C] }, attrs: [{ name: 'axis', i: -1 }, { name: 'epsilon', f: 1e-5 }] },
      input: randArray(R * C, 7),
      ours: (x, [g, b]) => layerNorm(x, g, b, 1e-5),
      chainable: true,
    });
  }
  // Softmax over the last axis of attention scores: 16 heads x T x T at T = 200
  {
    const T = 200, H = 16;
    list.push({
      name: `Softmax ${H}x${T}x${T} (last axis)`,
      unit: 'GB/s',
      work: 2 * H * T * T * 4,
      graph: { op: 'Softmax', inputs: [{ name: 'x', dims: [H * T, T] }], initializers: [], nodeInputs: ['x'], output: { name: 'y', dims: [H * T, T] }, attrs: [{ name: 'axis', i: -1 }], opset: 13 },
      input: randArray(H * T * T, 8, 8),
      ours: (x) => softmax(x),
      chainable: true,
    });
  }
  // the elementwise ops of a transformer layer on the bench's memory-bound size: GELU (ONNX opset 20's Gelu, exact erf
  // form) and the residual add (the residual an initializer, as a resident tensor)
  {
    const R = quick ? 200 : 4000, C = 1024;
    list.push({
      name: `Gelu ${R}x${C}`,
      unit: 'GB/s',
      work: 2 * R * C * 4,
      graph: { op: 'Gelu', inputs: [{ name: 'x', dims: [R, C] }], initializers: [], nodeInputs: ['x'], output: { name: 'y', dims: [R, C] }, opset: 20 },
      input: randArray(R * C, 9),
      ours: (x) => gelu(x),
      chainable: true,
    });
    list.push({
      name: `Add ${R}x${C}`,
      unit: 'GB/s',
      work: 3 * R * C * 4,
      graph: { op: 'Add', inputs: [{ name: 'x', dims: [R, C] }], initializers: [{ name: 'r', dims: [R, C], data: randArray(R * C, 10) }], nodeInputs: ['x', 'r'], output: { name: 'y', dims: [R, C] } },
      input: randArray(R * C, 11),
      ours: (x, [r]) => add(x, r),
      chainable: true,
    });
  }
  return list;
}

type Ort = typeof import('onnxruntime-node');

async function loadOrt(): Promise<Ort> {
  try {
    const m = await import('onnxruntime-node');
    return ((m as any).default ?? m) as Ort;
  } catch (e) {
    throw new Error(`onnxruntime-node not installed (npm install): ${(e as Error).message.split('\n')[0]}`);
  }
}

/** One row per op and provider: ours vs ORT WebGPU, ours vs ORT CPU. */
export async function benchOrt(rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const ort = await loadOrt();
  const supported = (ort as any).listSupportedBackends?.() as { name: string }[] | undefined;
  const hasWebGPU = !supported || supported.some((b) => b.name === 'webgpu');
  const reps = quick ? 3 : 5;
  CHAIN = quick ? 4 : 8;
  const rows: Row[] = [];
  for (const c of cases(quick)) {
    try {
      rows.push(...(await benchCase(ort, rt, c, hasWebGPU, reps)));
    } catch (e) {
      // our op failed: a NaN row makes the bench exit non-zero, with the reason in the table
      rows.push({ name: c.name, unit: c.unit, ours: NaN, note: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  return rows;
}

async function benchCase(ort: Ort, rt: Runtime, c: Case, hasWebGPU: boolean, reps: number): Promise<Row[]> {
  const rows: Row[] = [];
  const inName = c.graph.inputs[0].name;
  const dims = c.graph.inputs[0].dims;
  const lengths = c.chainable ? [1, 1 + CHAIN] : [1];
  // per-op time: the chain difference of the fastest repetitions (the least disturbed by other load), or the single
  // run (transfers included). When either side's difference drowns in noise (not above 5% of its chain's time per
  // op), both sides use the chain's time per op instead (transfers amortized over 1 + CHAIN ops), and the note says so.
  const chainDiff = (t: Timing[]) => (t[1].min - t[0].min) / CHAIN;
  const chainMean = (t: Timing[]) => t[1].min / (1 + CHAIN);
  const usable = (t: Timing[]) => chainDiff(t) > 0.05 * chainMean(t);
  const perOp = (t: Timing[], both: boolean): number => (!c.chainable ? t[0].median : both ? chainDiff(t) : chainMean(t));
  const how = (both: boolean) =>
    !c.chainable
      ? 'upload + op + readback on both sides (median; the output shape differs from the input: no chain)'
      : both
        ? `op alone on both sides: (t[${1 + CHAIN} chained ops] - t[1 op]) / ${CHAIN}, fastest repetitions, upload + readback in both runs`
        : `t[${1 + CHAIN} chained ops] / ${1 + CHAIN} on both sides, transfers amortized (a chain difference was lost in timing noise)`;
  // ours: weights resident, input uploaded, op chain, result read back
  const weights = c.graph.initializers.map((t) => Tensor.fromData(rt, t.data, t.dims, 'f32', t.name));
  let oursOut: Float32Array = new Float32Array(0);
  const oursRun = (copies: number) => async () => {
    const x = Tensor.fromData(rt, c.input, dims, 'f32', 'x');
    const y = noGrad(() => tidy(() => {
      let h = x;
      for (let j = 0; j < copies; j++) h = c.ours(h, weights);
      return h;
    }));
    const out = await y.readFloat();
    if (copies === 1) oursOut = out;
    y.dispose();
    x.dispose();
  };
  const rate = (t: number) => c.work / t / 1e9;
  try {
    for (const provider of hasWebGPU ? ['webgpu', 'cpu'] : ['cpu']) {
      const peerName = provider === 'webgpu' ? 'ONNX Runtime WebGPU EP' : 'ONNX Runtime CPU EP';
      let peerOut: Float32Array = new Float32Array(0);
      const sessions: any[] = [];
      let failed = '';
      for (const copies of lengths) {
        try {
          sessions.push(await ort.InferenceSession.create(oneNodeModel(c.graph, copies), { executionProviders: [provider], graphOptimizationLevel: 'all', logSeverityLevel: 3 } as any));
        } catch (e) {
          failed = (e as Error).message.split('\n')[0];
          break;
        }
      }
      const feed = { [inName]: new ort.Tensor('float32', c.input, dims) };
      const peerRun = (k: number) => async () => {
        const r = await sessions[k].run(feed);
        if (lengths[k] === 1) peerOut = r[c.graph.output.name].data as Float32Array;
      };
      // repetitions alternate between the two sides (ours, ORT, ours, ...) for each chain length, after a warm-up each
      const oursTimes: number[][] = lengths.map(() => []);
      const peerTimes: number[][] = lengths.map(() => []);
      for (let k = 0; k < lengths.length; k++) {
        await oursRun(lengths[k])();
        if (!failed) await peerRun(k)();
      }
      for (let r = 0; r < reps; r++) {
        for (let k = 0; k < lengths.length; k++) {
          oursTimes[k].push((await timeAsync(oursRun(lengths[k]), { reps: 1, warmup: 0 })).median);
          if (!failed) peerTimes[k].push((await timeAsync(peerRun(k), { reps: 1, warmup: 0 })).median);
        }
      }
      for (const session of sessions) await session.release();
      const oursT = oursTimes.map(summarize);
      if (failed) {
        rows.push({ name: `${c.name} vs ${peerName}`, unit: c.unit, ours: rate(perOp(oursT, c.chainable && usable(oursT))), peer: peerName, note: `peer failed: ${failed}` });
        continue;
      }
      const peerT = peerTimes.map(summarize);
      const both = c.chainable && usable(oursT) && usable(peerT);
      const ours = perOp(oursT, both);
      const peer = perOp(peerT, both);
      rows.push({
        name: `${c.name} vs ${peerName}`,
        unit: c.unit,
        ours: rate(ours),
        ...(c.chainable ? {} : { spread: [rate(oursT[0].max), rate(oursT[0].min)] as [number, number] }),
        peer: peerName,
        peer_value: rate(peer),
        speedup: peer / ours,
        note: `timed: ${how(both)}, repetitions alternating between the two sides; results agree to rel. L2 ${agree(oursOut, peerOut)}${c.note ? `; ${c.note}` : ''}${hasWebGPU ? '' : '; this onnxruntime-node build has no WebGPU EP'}`,
      });
    }
  } finally {
    for (const w of weights) w.dispose();
  }
  return rows;
}
