// Whisper: the log-mel feature extractor (CPU, float64) on one 30 s clip, 80 and 128 mel bins (goal: well under a
// second per clip: it runs once per clip before the GPU sees anything), the encoder forward at whisper-tiny's size
// (d_model 384, 4 layers, 6 heads, ffn 1536; random weights) on that clip's 3000 frames, f32, and a training step of a
// whisper-base-size encoder (d_model 512, 6 layers, 8 heads, ffn 2048) with HF's classification head: forward,
// backward and AdamW on every weight but the conv stem, batch 2 x 30 s (full mode; quick: 1 layer).
import { WhisperFeatureExtractor } from '../../src/model/whisper/features.js';
import { parseModelConfig } from '../../src/model/registry.js';
import { SpeechClassifier, disposeOutput } from '../../src/model/classifier.js';
import { backward, noGrad, tidy } from '../../src/autograd.js';
import { AdamW } from '../../src/ops/optim.js';
import { Tensor } from '../../src/tensor.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { summarize, timeAsync, type Row } from './harness.js';
import type { Peaks } from './kernels.js';

const COMMAND = 'npm run bench -- --only=whisper';

export async function benchWhisper(rt: Runtime, peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // a noise-like stand-in for speech: the cost does not depend on the content
  let seed = 1;
  const clip = Float32Array.from({ length: 30 * 16000 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2);
  let features: Float32Array | null = null;
  for (const mels of [80, 128]) {
    const fx = WhisperFeatureExtractor.fromJson({ feature_size: mels });
    fx.logMel(clip); // warm-up (JIT)
    const times: number[] = [];
    for (let r = 0; r < (quick ? 3 : 7); r++) {
      const t0 = performance.now();
      const out = fx.logMel(clip);
      times.push((performance.now() - t0) / 1000);
      if (mels === 80) features = Float32Array.from(out.data);
    }
    const t = summarize(times);
    rows.push({ name: `Whisper log-mel of 30 s at 16 kHz (${mels} bins, 3000 frames, CPU float64)`, unit: 'ms', ours: t.median * 1000, spread: [t.min * 1000, t.max * 1000], command: COMMAND, note: 'goal: well under 1000 ms' });
  }

  const config = parseModelConfig({ model_type: 'whisper', d_model: 384, encoder_layers: 4, encoder_attention_heads: 6, encoder_ffn_dim: 1536, num_mel_bins: 80, max_source_positions: 1500 }, 'whisper-tiny config');
  const model = SpeechClassifier.random(rt, config, { head: 'none' });
  const input = Tensor.fromData(rt, features!, [1, 80, 3000], 'f32', 'input_features');
  try {
    const run = async () => {
      const out = noGrad(() => tidy(() => model.forward({ inputValues: input }, { encoderOnly: true })));
      await out.last_hidden_state.readFloat();
      disposeOutput(out);
    };
    const t = await timeAsync(run, { reps: quick ? 1 : 3, warmup: 1 });
    // conv1 + conv2 + per layer: q, k, v, out (4 D^2), fc1 + fc2 (2 D F), attention scores and values (2 T^2 D)
    const T = 1500;
    const D = 384;
    const flops = 2 * (3000 * 80 * 3 * D + T * D * 3 * D) + 4 * 2 * (4 * T * D * D + 2 * T * D * 1536 + 2 * T * T * D);
    rows.push({
      name: 'Whisper-tiny-size encoder forward, one 30 s clip (3000 frames -> 1500, f32)',
      unit: 's',
      ours: t.median,
      spread: [t.min, t.max],
      peak_fraction: flops / t.median / 1e9 / peaks.fma,
      command: COMMAND,
      note: `${(flops / 1e9).toFixed(1)} GFLOP, ${(flops / t.median / 1e9).toFixed(1)} GFLOP/s; random weights`,
    });
  } finally {
    input.dispose();
    model.dispose();
  }
  rows.push(await whisperBaseTrainingStep(rt, features!, quick));
  return rows;
}

/** One optimizer step of a whisper-base-size encoder + HF head on B log-mel inputs (the conv stem frozen). */
async function whisperBaseTrainingStep(rt: Runtime, features: Float32Array, quick: boolean): Promise<Row> {
  const layers = quick ? 1 : 6;
  const B = 2;
  const config = parseModelConfig({ model_type: 'whisper', d_model: 512, encoder_layers: layers, encoder_attention_heads: 8, encoder_ffn_dim: 2048, num_mel_bins: 80, max_source_positions: 1500, id2label: { 0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e' } }, 'whisper-base config');
  const model = SpeechClassifier.random(rt, config, { head: 'sequence-classification' });
  model.train();
  const inputs = new Float32Array(B * features.length);
  for (let b = 0; b < B; b++) inputs.set(features, b * features.length);
  const input = Tensor.fromData(rt, inputs, [B, 80, 3000], 'f32', 'input_features');
  const opt = new AdamW(model.trainableParameters(), { lr: 1e-5, weightDecay: 0.01 });
  try {
    const step = async () => {
      const loss = tidy(() => {
        const out = model.forward({ inputValues: input, labels: [0, 3] });
        const l = out.loss!;
        out.loss = null;
        disposeOutput(out);
        return l;
      });
      backward(loss);
      opt.step();
      opt.zeroGrad();
      await loss.readFloat();
      loss.dispose();
    };
    const t = await timeAsync(step, { reps: quick ? 1 : 3, warmup: 1 });
    const T = 1500;
    const D = 512;
    // forward GEMM-class FLOPs of the layers (as above) times 3 for forward + backward; the frozen stem's forward once
    const layerFlops = layers * 2 * (4 * T * D * D + 2 * T * D * 2048 + 2 * T * T * D);
    const flops = B * (3 * layerFlops + 2 * (3000 * 80 * 3 * D + T * D * 3 * D));
    return {
      name: `Whisper-base-size encoder training step (${layers} layer${layers > 1 ? 's' : ''} of 512, batch ${B} x 30 s, HF head, AdamW)`,
      unit: 's',
      ours: t.median,
      spread: [t.min, t.max],
      command: COMMAND,
      note: `${(flops / 1e9).toFixed(0)} GFLOP, ${(flops / t.median / 1e9).toFixed(1)} GFLOP/s; conv stem frozen; peak GPU pool ${(rt.pool.peakBytes / 2 ** 30).toFixed(2)} GiB`,
    };
  } finally {
    input.dispose();
    model.dispose();
  }
}
