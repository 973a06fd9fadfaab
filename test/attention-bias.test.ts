// attention() with WavLM's gated relative position bias: the bucket function (kernel vs a float32 JS reference vs the
// float64 formula, vs the facts and the bucket tensor of the Hugging Face wavlm_tiny fixture when ../shared exists),
// then forward and every gradient (q, k, v, the embedding, the gate) against float64 attention with an explicit bias,
// on odd sizes with padding, for both kernel paths, plus finite differences.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import { getRuntime, randn, upload, close, maxAbs, finiteDifference, probeIndices, packQkv, unpackQkv, attentionTilePairs, withAttentionTiles } from './helpers.js';
import { attention, attentionPacked, attentionUsesSubgroups, relativePositionBucket, relativePositionBuckets, relativePositionGate, setAttentionSubgroups } from '../src/ops/attention.js';
import '../src/ops/elementwise.js'; // registers the gradient helpers backward() needs
import { backward, tidy } from '../src/autograd.js';
import { Tensor } from '../src/tensor.js';
import type { Runtime } from '../src/runtime/runtime.js';

/** Hugging Face's bucket in float64 (the formula as written, independent of the engine's helper). */
function bucketF64(delta: number, numBuckets: number, maxDistance: number): number {
  const nb = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(nb / 2);
  const n = Math.abs(delta);
  const side = delta > 0 ? nb : 0;
  if (n < maxExact) return side + n;
  return side + Math.min(nb - 1, Math.trunc(maxExact + (Math.log(n / maxExact) / Math.log(maxDistance / maxExact)) * (nb - maxExact)));
}

test('bucket: kernel == float32 reference == float64 formula for |delta| < 4000 (fixture and HF-default parameters)', async () => {
  const rt = await getRuntime();
  const T = 4000;
  for (const [numBuckets, maxDistance] of [[32, 100], [320, 800], [16, 20], [33, 50]]) {
    const kernel = (await relativePositionBuckets(rt, T, numBuckets, maxDistance).read()) as Int32Array;
    assert.is(kernel.length, 2 * T - 1);
    let f64Mismatch = 0;
    for (let e = 0; e < kernel.length; e++) {
      const delta = e - (T - 1);
      const f32 = relativePositionBucket(delta, numBuckets, maxDistance);
      assert.is(kernel[e], f32, `buckets (${numBuckets}, ${maxDistance}) delta ${delta}: kernel ${kernel[e]} vs float32 reference ${f32}`);
      if (f32 !== bucketF64(delta, numBuckets, maxDistance)) f64Mismatch++;
    }
    // no bucket boundary falls within float32 rounding of these parameters (the manifest says the same of (32, 100))
    assert.is(f64Mismatch, 0, `(${numBuckets}, ${maxDistance}): float32 and float64 buckets differ at ${f64Mismatch} positions`);
    const used = new Set(kernel);
    const nb = Math.floor(numBuckets / 2);
    assert.ok(used.has(nb - 1) && used.has(2 * nb - 1), `(${numBuckets}, ${maxDistance}): the cap was never reached`);
    assert.not.ok(used.has(nb), `bucket nb (${nb}) is used by no relative position (delta 0 is bucket 0)`);
  }
});

const FIXTURE = '../shared/fixtures/wavlm_tiny';

/** One tensor of a safetensors file (the test's own minimal reader: header JSON, then raw little-endian data). */
function readSafetensor(file: string, name: string): { dtype: string; shape: number[]; bytes: Uint8Array } {
  const buf = fs.readFileSync(file);
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8'));
  const entry = header[name];
  if (!entry) throw new Error(`${file}: no tensor ${name}`);
  const [from, to] = entry.data_offsets;
  return { dtype: entry.dtype, shape: entry.shape, bytes: new Uint8Array(buf.subarray(8 + headerLength + from, 8 + headerLength + to)) };
}

test('bucket: the wavlm_tiny fixture facts and its relative_position_bucket tensor (skipped without ../shared)', async () => {
  if (!fs.existsSync(`${FIXTURE}/manifest.json`)) {
    console.log(`  skipped: ${FIXTURE} not present`);
    return;
  }
  const rt = await getRuntime();
  const manifest = JSON.parse(fs.readFileSync(`${FIXTURE}/manifest.json`, 'utf8'));
  const facts = manifest.hf_semantics_checks.wavlm_relative_position_bias;
  const { num_buckets: numBuckets, max_bucket_distance: maxDistance, T } = { ...facts, max_bucket_distance: facts.max_bucket_distance };
  const kernel = (await relativePositionBuckets(rt, T, numBuckets, maxDistance).read()) as Int32Array;
  const at = (delta: number) => kernel[delta + T - 1];
  assert.is(at(0), facts.bucket_of_rel_0);
  assert.equal([at(1), at(-1)], facts['bucket_of_rel_+1_and_-1']);
  assert.equal([Math.min(...kernel), Math.max(...kernel)], facts.bucket_range_at_this_T);
  assert.is(new Set(kernel).size, facts.distinct_buckets_at_this_T);
  const ref = readSafetensor(`${FIXTURE}/reference.safetensors`, 'relative_position_bucket');
  assert.equal(ref.shape, [T, T]);
  assert.is(ref.dtype, 'I32');
  const buckets = new Int32Array(ref.bytes.buffer, ref.bytes.byteOffset, T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) assert.is(at(j - i), buckets[i * T + j], `query ${i} key ${j}`);
  }
});

interface Case {
  B: number;
  T: number;
  H: number;
  D: number;
  lengths: number[] | null;
  numBuckets: number;
  maxDistance: number;
}

interface Reference {
  out: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dE: Float64Array;
  dgate: Float64Array;
}

/**
 * Softmax attention in float64 with scores scale * q_i . k_j + gate[b, h, i] * E[bucket(j - i), h] over the real keys,
 * and the gradients of loss = sum(out * w).
 */
function reference(c: Case, q: Float64Array, k: Float64Array, v: Float64Array, E: Float64Array, gate: Float64Array, w: Float64Array): Reference {
  const { B, T, H, D } = c;
  const scale = 1 / Math.sqrt(D);
  const n = B * T * H * D;
  const r: Reference = { out: new Float64Array(n), dq: new Float64Array(n), dk: new Float64Array(n), dv: new Float64Array(n), dE: new Float64Array(E.length), dgate: new Float64Array(gate.length) };
  const at = (b: number, t: number, h: number) => ((b * T + t) * H + h) * D;
  const P = new Float64Array(T);
  const dP = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    const len = c.lengths ? c.lengths[b] : T;
    if (len === 0) continue;
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < T; i++) {
        const qi = at(b, i, h);
        const g = gate[(b * H + h) * T + i];
        let m = -Infinity;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qi + d] * k[at(b, j, h) + d];
          P[j] = s * scale + g * E[bucketF64(j - i, c.numBuckets, c.maxDistance) * H + h];
          m = Math.max(m, P[j]);
        }
        let l = 0;
        for (let j = 0; j < len; j++) l += P[j] = Math.exp(P[j] - m);
        for (let j = 0; j < len; j++) P[j] /= l;
        for (let j = 0; j < len; j++) for (let d = 0; d < D; d++) r.out[qi + d] += P[j] * v[at(b, j, h) + d];
        let rowDot = 0;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += w[qi + d] * v[at(b, j, h) + d];
          dP[j] = s;
          rowDot += P[j] * s;
        }
        for (let j = 0; j < len; j++) {
          const kj = at(b, j, h);
          const ds = P[j] * (dP[j] - rowDot);
          const bucket = bucketF64(j - i, c.numBuckets, c.maxDistance);
          r.dgate[(b * H + h) * T + i] += ds * E[bucket * H + h];
          r.dE[bucket * H + h] += ds * g;
          for (let d = 0; d < D; d++) {
            r.dv[kj + d] += P[j] * w[qi + d];
            r.dq[qi + d] += ds * scale * k[kj + d];
            r.dk[kj + d] += ds * scale * q[qi + d];
          }
        }
      }
    }
  }
  return r;
}

function maskTensor(rt: Runtime, c: Case): Tensor | null {
  if (!c.lengths) return null;
  const m = new Int32Array(c.B * c.T);
  for (let b = 0; b < c.B; b++) for (let t = 0; t < c.T; t++) m[b * c.T + t] = t < c.lengths[b] ? 1 : 0;
  return Tensor.fromData(rt, m, [c.B, c.T], 'i32', 'key_mask');
}

const paths = ['subgroup', 'portable'] as const;
type Path = (typeof paths)[number];

async function onPath(path: Path, fn: () => Promise<void>): Promise<void> {
  const rt = await getRuntime();
  setAttentionSubgroups(path === 'subgroup');
  try {
    if (path === 'subgroup' && !attentionUsesSubgroups(rt)) {
      console.log('  subgroup kernels not available on this adapter: skipped');
      return;
    }
    await fn();
  } finally {
    setAttentionSubgroups(true);
  }
}

const names = ['q', 'k', 'v', 'E', 'gate'] as const;
type Name = (typeof names)[number];

/**
 * opts.packed: q, k, v go in as one [B, T, 3*H*D] tensor through attentionPacked (WavLM's fused projection); they
 * then all need a gradient or none (grads.q decides).
 */
async function check(c: Case, seed: number, path: Path, opts: { fdProbes?: number; grads?: Partial<Record<Name, boolean>>; packed?: boolean } = {}): Promise<void> {
  const rt = await getRuntime();
  const { B, T, H, D } = c;
  const n = B * T * H * D;
  const shape = [B, T, H * D];
  const data: Record<Name, Float64Array> = {
    q: randn(n, seed),
    k: randn(n, seed + 1),
    v: randn(n, seed + 2),
    // bias magnitudes comparable to the scores, so an error in either shows
    E: randn(c.numBuckets * H, seed + 3),
    gate: Float64Array.from(randn(B * H * T, seed + 4), (x) => Math.fround(1 + 0.5 * x)),
  };
  const shapes: Record<Name, number[]> = { q: shape, k: shape, v: shape, E: [c.numBuckets, H], gate: [B, H, T] };
  const wd = randn(n, seed + 5);
  const ref = reference(c, data.q, data.k, data.v, data.E, data.gate, wd);
  const refGrads: Record<Name, Float64Array> = { q: ref.dq, k: ref.dk, v: ref.dv, E: ref.dE, gate: ref.dgate };
  const mask = maskTensor(rt, c);
  const wants = (name: Name) => opts.grads?.[name] ?? true;
  const t = Object.fromEntries(names.map((name) => [name, upload(rt, data[name], shapes[name], { requiresGrad: wants(name), label: name })])) as Record<Name, Tensor>;
  const biasOpts = (x: Record<Name, Tensor>) => ({ heads: H, keyMask: mask, relativeBias: { embedding: x.E, gate: x.gate, numBuckets: c.numBuckets, maxDistance: c.maxDistance } });
  const run = (x: Record<Name, Tensor>) => attention(x.q, x.k, x.v, biasOpts(x));
  const C = H * D;
  const packedData = opts.packed ? packQkv(C, [data.q, data.k, data.v]) : null;
  const qkv = packedData ? upload(rt, packedData, [B, T, 3 * C], { requiresGrad: wants('q'), label: 'qkv' }) : null;
  const y = qkv ? attentionPacked(qkv, biasOpts(t)) : run(t);
  const what = `[${path}]${qkv ? ' packed' : ''} B=${B} T=${T} H=${H} D=${D} lengths=${c.lengths ?? 'none'} buckets=(${c.numBuckets}, ${c.maxDistance})`;
  close(await y.read(), ref.out, 1e-5, `${what}: forward`);
  const w = upload(rt, wd, shape, { label: 'grad_out' });
  backward(y, w);
  const got: Partial<Record<Name, Float32Array>> = {};
  const packedGrad = qkv?.grad ? ((await qkv.grad.read()) as Float32Array) : null;
  if (qkv && !wants('q')) assert.is(qkv.grad, null, `${what}: dqkv computed though qkv needs no gradient`);
  for (const name of names) {
    const part = ['q', 'k', 'v'].indexOf(name);
    if (qkv && part >= 0) {
      if (packedGrad) got[name] = unpackQkv(C, packedGrad, part);
    } else if (!wants(name)) {
      assert.is(t[name].grad, null, `${what}: d${name} computed though ${name} needs no gradient`);
      continue;
    } else got[name] = (await t[name].grad!.read()) as Float32Array;
    if (!got[name]) continue;
    if (refGrads[name].some((x) => x !== 0)) close(got[name]!, refGrads[name], 1e-4, `${what}: d${name}`);
    else assert.ok(maxAbs(got[name]!, refGrads[name]) <= 1e-5, `${what}: d${name} should be 0`);
  }
  if (opts.fdProbes && packedData && packedGrad) {
    await finiteDifference({
      what: `${what}: dqkv`,
      x: packedData,
      w: wd,
      analytic: packedGrad,
      indices: probeIndices(packedData.length, 3 * opts.fdProbes, seed + 13),
      forward: async (x) => {
        const out = tidy(() => attentionPacked(upload(rt, x, [B, T, 3 * C]), biasOpts(Object.fromEntries(names.map((m) => [m, upload(rt, data[m], shapes[m])])) as Record<Name, Tensor>)));
        const values = await out.read();
        out.dispose();
        return values;
      },
    });
  }
  if (opts.fdProbes) {
    for (const name of names) {
      if (!got[name] || (qkv && ['q', 'k', 'v'].includes(name))) continue;
      await finiteDifference({
        what: `${what}: d${name}`,
        x: data[name],
        w: wd,
        analytic: got[name]!,
        indices: probeIndices(data[name].length, opts.fdProbes, seed + 11),
        forward: async (x) => {
          const out = tidy(() => run(Object.fromEntries(names.map((m) => [m, upload(rt, m === name ? x : data[m], shapes[m])])) as Record<Name, Tensor>));
          const values = await out.read();
          out.dispose();
          return values;
        },
      });
    }
  }
  for (const x of [...Object.values(t), ...Object.values(t).map((x) => x.grad), w, y, qkv, qkv?.grad]) x?.dispose();
  mask?.dispose();
}

for (const path of paths) {
  test(`[${path}] bias: T=37 H=3 D=16 with padding, small buckets (16, 20: cap reached), finite differences`, async () => {
    await onPath(path, () => check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23], numBuckets: 16, maxDistance: 20 }, 100, path, { fdProbes: 3 }));
  });

  test(`[${path}] bias: T=150 over several blocks, D=5, uneven padding, fixture buckets (32, 100), odd bucket count 33`, async () => {
    await onPath(path, async () => {
      await check({ B: 3, T: 150, H: 3, D: 5, lengths: [131, 150, 9], numBuckets: 32, maxDistance: 100 }, 200, path, { fdProbes: 2 });
      await check({ B: 1, T: 41, H: 3, D: 5, lengths: null, numBuckets: 33, maxDistance: 50 }, 210, path);
    });
  });

  test(`[${path}] bias: D=64 H=2 T=70 with HF-default buckets (320, 800); an all-padding element; some gradients only`, async () => {
    await onPath(path, async () => {
      await check({ B: 1, T: 70, H: 2, D: 64, lengths: null, numBuckets: 320, maxDistance: 800 }, 300, path, { fdProbes: 2 });
      await check({ B: 2, T: 19, H: 2, D: 16, lengths: [0, 19], numBuckets: 16, maxDistance: 20 }, 310, path);
      await check({ B: 2, T: 21, H: 3, D: 16, lengths: [21, 6], numBuckets: 16, maxDistance: 20 }, 320, path, { grads: { q: false, k: false, v: false, E: true, gate: false } });
      await check({ B: 2, T: 21, H: 3, D: 16, lengths: [21, 6], numBuckets: 16, maxDistance: 20 }, 330, path, { grads: { q: false, k: true, v: false, E: false, gate: true } });
    });
  });

  test(`[${path}] bias on packed q|k|v (WavLM's fused projection): padding, D=16 and D=5, finite differences; bias gradients only`, async () => {
    await onPath(path, async () => {
      await check({ B: 2, T: 37, H: 3, D: 16, lengths: [37, 23], numBuckets: 16, maxDistance: 20 }, 400, path, { fdProbes: 2, packed: true });
      await check({ B: 2, T: 45, H: 3, D: 5, lengths: [45, 9], numBuckets: 33, maxDistance: 50 }, 410, path, { fdProbes: 2, packed: true });
      await check({ B: 2, T: 21, H: 3, D: 16, lengths: [21, 6], numBuckets: 16, maxDistance: 20 }, 420, path, { packed: true, grads: { q: false, k: false, v: false, E: true, gate: true } });
    });
  });

  // every tile the autotuner may pick, with the bias: several row blocks (the partial diagonal sums), padding, the
  // packed layout, finite differences
  for (const pair of attentionTilePairs(path).slice(1)) {
    test(`[${path}] bias with tiles ${pair.name}`, async () => {
      await onPath(path, () =>
        withAttentionTiles(pair, async () => {
          await check({ B: 2, T: 150, H: 2, D: 16, lengths: [150, 71], numBuckets: 16, maxDistance: 20 }, 1200, path, { fdProbes: 2, packed: true });
        }),
      );
    });
  }

  test(`[${path}] bias with a zero gate is plain attention, bit for bit`, async () => {
    await onPath(path, async () => {
      const rt = await getRuntime();
      const [B, T, H, D] = [2, 33, 3, 16];
      const shape = [B, T, H * D];
      const [q, k, v] = [0, 1, 2].map((i) => upload(rt, randn(B * T * H * D, 50 + i), shape));
      const E = upload(rt, randn(32 * H, 60), [32, H]);
      const gate = upload(rt, new Float64Array(B * H * T), [B, H, T]);
      const plain = (await attention(q, k, v, { heads: H }).read()) as Float32Array;
      const zero = (await attention(q, k, v, { heads: H, relativeBias: { embedding: E, gate, numBuckets: 32, maxDistance: 100 } }).read()) as Float32Array;
      assert.ok(plain.every((x, i) => x === zero[i]), 'a zero gate changed the output');
      for (const x of [q, k, v, E, gate]) x.dispose();
    });
  });
}

test('gate: forward and the gradients of x, W, bias, const against float64, with finite differences (B=2, T=23, H=3, D=5)', async () => {
  const rt = await getRuntime();
  const [B, T, H, D] = [2, 23, 3, 5];
  const data = {
    x: randn(B * T * H * D, 1000),
    weight: randn(8 * D, 1001, 0.4),
    bias: randn(8, 1002, 0.3),
    gateConst: Float64Array.from([1.0, -0.6, 2.3].map(Math.fround)),
  };
  const shapes = { x: [B, T, H * D], weight: [8, D], bias: [8], gateConst: [1, H, 1, 1] };
  const wd = randn(B * H * T, 1003);
  // float64 reference: gate[b, h, t] and the gradients of sum(gate * w)
  const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
  const ref = new Float64Array(B * H * T);
  const grads = { x: new Float64Array(data.x.length), weight: new Float64Array(8 * D), bias: new Float64Array(8), gateConst: new Float64Array(H) };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const base = ((b * T + t) * H + h) * D;
        const r = Array.from({ length: 8 }, (_, e) => {
          let s = data.bias[e];
          for (let d = 0; d < D; d++) s += data.weight[e * D + d] * data.x[base + d];
          return s;
        });
        const a = sigmoid(r[0] + r[1] + r[2] + r[3]);
        const c = sigmoid(r[4] + r[5] + r[6] + r[7]);
        const k = data.gateConst[h];
        const i = (b * H + h) * T + t;
        ref[i] = a * (c * k - 1) + 2;
        const dz = [wd[i] * (c * k - 1) * a * (1 - a), wd[i] * a * k * c * (1 - c)];
        for (let e = 0; e < 8; e++) {
          const dr = dz[e < 4 ? 0 : 1];
          grads.bias[e] += dr;
          for (let d = 0; d < D; d++) {
            grads.weight[e * D + d] += dr * data.x[base + d];
            grads.x[base + d] += dr * data.weight[e * D + d];
          }
        }
        grads.gateConst[h] += wd[i] * a * c;
      }
    }
  }
  type Name = keyof typeof data;
  const gateNames = Object.keys(data) as Name[];
  const t = Object.fromEntries(gateNames.map((name) => [name, upload(rt, data[name], shapes[name], { requiresGrad: true, label: name })])) as Record<Name, Tensor>;
  const gate = relativePositionGate(t.x, t.weight, t.bias, t.gateConst, H);
  assert.equal(gate.shape, [B, H, T]);
  close(await gate.read(), ref, 1e-6, 'gate forward');
  const w = upload(rt, wd, [B, H, T], { label: 'grad_gate' });
  backward(gate, w);
  for (const name of gateNames) {
    const got = await t[name].grad!.read();
    close(got, grads[name], 1e-5, `d ${name}`);
    await finiteDifference({
      what: `gate: d ${name}`,
      x: data[name],
      w: wd,
      analytic: got,
      indices: probeIndices(data[name].length, 3, 5),
      forward: async (x) => {
        const u = Object.fromEntries(gateNames.map((m) => [m, upload(rt, m === name ? x : data[m], shapes[m])])) as Record<Name, Tensor>;
        const out = tidy(() => relativePositionGate(u.x, u.weight, u.bias, u.gateConst, H));
        const values = await out.read();
        for (const x of [out, ...Object.values(u)]) x.dispose();
        return values;
      },
    });
  }
  assert.throws(() => relativePositionGate(t.x, t.weight, t.bias, t.gateConst, 2), /do not split into 2 heads/);
  assert.throws(() => relativePositionGate(t.x, t.bias, t.bias, t.gateConst, H), /weight must be f32 \[8,5\]/);
  assert.throws(() => relativePositionGate(t.x, t.weight, t.weight, t.gateConst, H), /bias must be f32 \[8\]/);
  assert.throws(() => relativePositionGate(t.x, t.weight, t.bias, t.bias, H), /gateConst must be f32 with 3 values/);
  for (const x of [...Object.values(t), ...Object.values(t).map((x) => x.grad), gate, w]) x?.dispose();
});

test('bias: shape and parameter errors are loud', async () => {
  const rt = await getRuntime();
  const x = Tensor.empty(rt, [2, 5, 6]);
  const E = Tensor.empty(rt, [32, 2]);
  const gate = Tensor.empty(rt, [2, 2, 5]);
  const bias = { embedding: E, gate, numBuckets: 32, maxDistance: 100 };
  assert.throws(() => attention(x, x, x, { heads: 2, relativeBias: { ...bias, embedding: gate } }), /embedding must be f32 \[32, 2\]/);
  assert.throws(() => attention(x, x, x, { heads: 2, relativeBias: { ...bias, gate: E } }), /gate must be f32 \[2, 2, 5\]/);
  assert.throws(() => attention(x, x, x, { heads: 2, relativeBias: { ...bias, numBuckets: 3 } }), /numBuckets must be an integer/);
  assert.throws(() => attention(x, x, x, { heads: 2, relativeBias: { ...bias, maxDistance: 8 } }), /maxDistance must be an integer above max_exact = 8/);
  assert.throws(() => relativePositionBucket(1, 32, 1.5), /maxDistance/);
  for (const t of [x, E, gate]) t.dispose();
});

test.run();
