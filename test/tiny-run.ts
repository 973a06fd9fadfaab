// What the CLI run tests share: the demo's layout at the smallest size (a run trains in seconds on lavapipe) and a
// folder-per-label dataset of tones whose pitch is the label (low 220 Hz, mid 700 Hz, high 2 kHz), with an option to
// break chosen clips (a WAV header with no audio behind it).
import fs from 'node:fs';
import path from 'node:path';
import { encodeWav } from '../src/audio/wav.js';
import { rng } from './helpers.js';

export const TINY_LABELS = ['high', 'low', 'mid'];

/** config.json of the tiny model; `over` sets or adds fields (dropout, SpecAugment, ...). */
export function tinyConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'wav2vec2',
    conv_dim: [8, 8, 8, 8, 8, 8, 8],
    conv_kernel: [10, 3, 3, 3, 3, 2, 2],
    conv_stride: [5, 2, 2, 2, 2, 2, 2],
    conv_bias: true,
    feat_extract_norm: 'layer',
    do_stable_layer_norm: true,
    hidden_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    intermediate_size: 24,
    num_conv_pos_embeddings: 8,
    num_conv_pos_embedding_groups: 2,
    id2label: { 0: 'high', 1: 'low', 2: 'mid' },
    label2id: { high: 0, low: 1, mid: 2 },
    ...over,
  };
}

/** `perLabel` clips of 3000-5000 samples per label under dir/<label>/, speakers S0..S2; broken(label, i) spoils one. */
export function makeToneData(dir: string, perLabel: number, broken: (label: string, i: number) => boolean = () => false): string {
  const r = rng(99);
  const freq: Record<string, number> = { low: 220, mid: 700, high: 2000 };
  for (const label of TINY_LABELS) {
    fs.mkdirSync(path.join(dir, label), { recursive: true });
    for (let i = 0; i < perLabel; i++) {
      const n = 3000 + Math.floor(r() * 2000);
      const f = freq[label] * (0.9 + 0.2 * r());
      const x = new Float32Array(n);
      for (let t = 0; t < n; t++) x[t] = 0.5 * Math.sin((2 * Math.PI * f * t) / 16000) + 0.05 * (r() - 0.5);
      const file = path.join(dir, label, `S${i % 3}_${label}_${i}.wav`);
      fs.writeFileSync(file, broken(label, i) ? Buffer.from('RIFF\x10\x00\x00\x00WAVEjunk') : encodeWav(x, 16000));
    }
  }
  return dir;
}
