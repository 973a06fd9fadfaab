// Long-audio run (not a test): predicts one long random clip with an XLSR-large-width feature encoder (7 convs of
// 512 channels, layer norm) and a small transformer, random weights, on whatever adapter Dawn gives (lavapipe here).
// Shows that the feature encoder's chunking keeps every binding under the adapter's limit; prints seconds, the GPU
// pool's peak bytes and the process's peak RSS.
// With --train: one training step instead (forward, backward, AdamW; feature encoder frozen as in fine-tuning) on
// --batch clips of --seconds each, e.g. XLSR-large width: --train --batch 4 --seconds 30 --hidden 1024 --heads 16
// --intermediate 4096.
//   node build/bench/long-audio.mjs [--seconds 600] [--hidden 64] [--layers 1] [--intermediate 256] [--heads 4] [--train --batch B]
import { parseArgs } from 'node:util';
import { createNodeRuntime } from '../src/node/dawn.js';
import { SpeechClassifier, disposeOutput, takeOutput } from '../src/model/classifier.js';
import { parseWav2Vec2Config } from '../src/model/wav2vec2/config.js';
import { Wav2Vec2Encoder, convOutputLength, featureEncoderPeakBytes, planFeatureEncoder } from '../src/model/wav2vec2/encoder.js';
import { Tensor } from '../src/tensor.js';
import { backward, noGrad, tidy } from '../src/autograd.js';
import { AdamW } from '../src/ops/optim.js';
import { softmax } from '../src/ops/loss.js';
import { mulberry32 } from '../src/data/random.js';

const { values: v } = parseArgs({ options: { seconds: { type: 'string', default: '600' }, hidden: { type: 'string', default: '64' }, layers: { type: 'string', default: '1' }, intermediate: { type: 'string', default: '256' }, heads: { type: 'string', default: '4' }, train: { type: 'boolean' }, batch: { type: 'string', default: '1' } } });
const seconds = Number(v.seconds);
const hidden = Number(v.hidden);
const rt = await createNodeRuntime();
const config = parseWav2Vec2Config({
  conv_dim: [512, 512, 512, 512, 512, 512, 512],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: hidden,
  num_hidden_layers: Number(v.layers),
  num_attention_heads: Number(v.heads),
  intermediate_size: Number(v.intermediate),
  num_conv_pos_embeddings: 128,
  num_conv_pos_embedding_groups: 16,
  id2label: { 0: 'anger', 1: 'happiness', 2: 'neutral', 3: 'sadness', 4: 'surprise' },
});
const S = Math.round(seconds * 16000);
const limit = Math.min(Number(rt.limits.maxStorageBufferBindingSize), Number(rt.limits.maxBufferSize));
const plan = planFeatureEncoder(config, 1, S, limit);
console.log(`adapter: ${rt.adapter.description || rt.adapter.vendor}; binding limit ${limit} bytes`);
console.log(`clip: ${seconds} s = ${S} samples -> ${convOutputLength(config, S)} frames; unchunked feature encoder peak ${featureEncoderPeakBytes(config, 1, S)} bytes; plan ${JSON.stringify(plan)}`);
const model = SpeechClassifier.random(rt, config, { initSeed: 1, head: 'speech-classification' });
model.eval();
if (!(model.encoder instanceof Wav2Vec2Encoder)) throw new Error('expected a wav2vec2 encoder');
const r = mulberry32(5);
const samples = new Float32Array(S);
for (let i = 0; i < S; i++) samples[i] = 0.3 * Math.sin(i / 20) + 0.1 * (r() - 0.5);
await rt.sync();
rt.pool.resetPeak();
if (v.train) {
  const B = Number(v.batch);
  const batch = new Float32Array(B * S);
  for (let b = 0; b < B; b++) batch.set(samples, b * S);
  model.train();
  const opt = new AdamW(model.trainableParameters(), { lr: 1e-5 });
  const t1 = performance.now();
  const loss = tidy(() => {
    return takeOutput(model.forward({ inputValues: Tensor.fromData(rt, batch, [B, S], 'f32', 'input_values'), labels: Array.from({ length: B }, (_, i) => i % 5) }), 'loss');
  });
  backward(loss);
  opt.step();
  const value = (await loss.readFloat())[0];
  const secs = (performance.now() - t1) / 1000;
  console.log(JSON.stringify({ train_step: true, batch: B, seconds_audio: seconds, frames: convOutputLength(config, S), loss: value, wall_seconds: Number(secs.toFixed(1)), gpu_pool_peak_bytes: rt.pool.peakBytes, max_rss_kb: process.resourceUsage().maxRSS, finite: Number.isFinite(value) }));
  process.exit(Number.isFinite(value) ? 0 : 1);
}
const t0 = performance.now();
const probsT = noGrad(() =>
  tidy(() => {
    const input = Tensor.fromData(rt, samples, [1, S], 'f32', 'input_values');
    const o = model.forward({ inputValues: input });
    const p = softmax(o.logits!);
    disposeOutput(o);
    return p;
  }),
);
const probs = await probsT.readFloat();
const secs = (performance.now() - t0) / 1000;
console.log(`probabilities: ${Array.from(probs, (p) => p.toFixed(4)).join(' ')}`);
console.log(JSON.stringify({ seconds_audio: seconds, frames: convOutputLength(config, S), wall_seconds: Number(secs.toFixed(1)), gpu_pool_peak_bytes: rt.pool.peakBytes, max_rss_kb: process.resourceUsage().maxRSS, finite: probs.every(Number.isFinite) }));
probsT.dispose();
model.dispose();
rt.destroy();
process.exit(0);
