#!/usr/bin/env node
// Writes a full-size XLSR-large checkpoint with random weights as safetensors, from the key list in
// tools/xlsr_large_keys.json (424 tensors, 315,479,720 parameters, 1.26 GB in f32). For testing the loader and the
// model at real size without downloading a checkpoint. Streamed: values are generated and written in 1 Mi-value
// chunks, so memory stays small whatever the size. Deterministic for a given --seed. Written to a temp file beside
// the target, then renamed.
//
//   node tools/make_random_checkpoint.mjs --out DIR [--seed 1] [--dtype F32|F16|BF16] [--head ctc|classifier]
//                                         [--labels 5] [--layers N]
//   --out DIR      writes DIR/model.safetensors, DIR/config.json and DIR/preprocessor_config.json
//   --head         ctc (default: lm_head.* as in a fine-tuned CTC checkpoint) or classifier (the notebook's
//                  classifier.dense / classifier.out_proj with --labels classes, in place of lm_head)
//   --layers N     keep only the first N transformer layers (smaller files with the real layer sizes)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const o = { out: null, seed: 1, dtype: 'F32', head: 'ctc', labels: 5, layers: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--out') o.out = v();
    else if (a === '--seed') o.seed = Number(v());
    else if (a === '--dtype') o.dtype = v();
    else if (a === '--head') o.head = v();
    else if (a === '--labels') o.labels = Number(v());
    else if (a === '--layers') o.layers = Number(v());
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 16).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.out) throw new Error('--out DIR is required');
  if (!['F32', 'F16', 'BF16'].includes(o.dtype)) throw new Error('--dtype must be F32, F16 or BF16');
  if (!['ctc', 'classifier'].includes(o.head)) throw new Error('--head must be ctc or classifier');
  if (!Number.isInteger(o.labels) || o.labels < 1) throw new Error('--labels must be a positive integer');
  return o;
}

/** mulberry32: small, fast, deterministic */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(x) {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}
function toBf16(x) {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** value generator per tensor: roughly what a trained model's statistics look like, so activations stay finite */
function generatorFor(name, shape, next) {
  const fanIn = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : shape[0];
  if (name.endsWith('weight_g')) return () => 0.5 + next();
  if (/layer_norm\.weight$/.test(name)) return () => 1 + 0.2 * (next() - 0.5);
  if (name.endsWith('.bias') || name.endsWith('masked_spec_embed')) return () => 0.02 * (next() - 0.5);
  const a = Math.sqrt(3 / fanIn); // uniform(-a, a) has variance 1/fanIn
  return () => a * (2 * next() - 1);
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  const list = JSON.parse(fs.readFileSync(path.join(here, 'xlsr_large_keys.json'), 'utf8'));
  const cfg = { ...list.config };
  let keys = list.keys;
  if (o.layers !== null) {
    if (!Number.isInteger(o.layers) || o.layers < 1 || o.layers > cfg.num_hidden_layers) throw new Error(`--layers must be 1..${cfg.num_hidden_layers}`);
    keys = keys.filter(([k]) => {
      const m = /encoder\.layers\.(\d+)\./.exec(k);
      return !m || Number(m[1]) < o.layers;
    });
    cfg.num_hidden_layers = o.layers;
  }
  const H = cfg.hidden_size;
  const labels = Array.from({ length: o.labels }, (_, i) => `class_${i}`);
  if (o.head === 'classifier') {
    keys = keys.filter(([k]) => !k.startsWith('lm_head.'));
    keys.push(['classifier.dense.weight', [H, H]], ['classifier.dense.bias', [H]], ['classifier.out_proj.weight', [o.labels, H]], ['classifier.out_proj.bias', [o.labels]]);
    cfg.architectures = ['Wav2Vec2ForSpeechClassification'];
    cfg.id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
    cfg.label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
    cfg.pooling_mode = 'mean';
  }

  const bytesPer = o.dtype === 'F32' ? 4 : 2;
  const header = { __metadata__: { format: 'pt', generator: 'tools/make_random_checkpoint.mjs', seed: String(o.seed) } };
  let offset = 0;
  let params = 0;
  for (const [name, shape] of keys) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: o.dtype, shape, data_offsets: [offset, offset + n * bytesPer] };
    offset += n * bytesPer;
    params += n;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));

  fs.mkdirSync(o.out, { recursive: true });
  const target = path.join(o.out, 'model.safetensors');
  const tmp = path.join(o.out, `.model.safetensors.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  const t0 = Date.now();
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, json);
    const next = rng(o.seed);
    const CHUNK = 1 << 20;
    const f32buf = new Float32Array(CHUNK);
    const u16buf = new Uint16Array(CHUNK);
    for (const [name, shape] of keys) {
      const n = shape.reduce((a, b) => a * b, 1);
      const gen = generatorFor(name, shape, next);
      for (let done = 0; done < n; done += CHUNK) {
        const m = Math.min(CHUNK, n - done);
        for (let i = 0; i < m; i++) f32buf[i] = gen();
        if (o.dtype === 'F32') fs.writeSync(fd, new Uint8Array(f32buf.buffer, 0, m * 4));
        else {
          const conv = o.dtype === 'F16' ? toHalf : toBf16;
          for (let i = 0; i < m; i++) u16buf[i] = conv(f32buf[i]);
          fs.writeSync(fd, new Uint8Array(u16buf.buffer, 0, m * 2));
        }
      }
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, target);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {}
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  const config = { ...cfg, model_type: 'wav2vec2', hidden_act: 'gelu', feat_extract_activation: 'gelu', layer_norm_eps: 1e-5 };
  fs.writeFileSync(path.join(o.out, 'config.json'), `${JSON.stringify(Object.fromEntries(Object.entries(config).sort()), null, 2)}\n`);
  const pre = { do_normalize: true, feature_extractor_type: 'Wav2Vec2FeatureExtractor', feature_size: 1, padding_side: 'right', padding_value: 0.0, return_attention_mask: true, sampling_rate: 16000 };
  fs.writeFileSync(path.join(o.out, 'preprocessor_config.json'), `${JSON.stringify(pre, null, 2)}\n`);
  const size = fs.statSync(target).size;
  console.log(`wrote ${target}: ${keys.length} tensors, ${params} parameters, ${o.dtype}, ${(size / 1e9).toFixed(3)} GB in ${((Date.now() - t0) / 1000).toFixed(1)} s; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
}

try {
  main();
} catch (e) {
  console.error(`make_random_checkpoint: ${e.message}`);
  process.exit(1);
}
