// Whisper's log-mel feature extractor (CPU, float64): one 30 s clip, 80 and 128 mel bins. Speed goal: well under a
// second per clip (it runs once per clip before the GPU sees anything).
import { WhisperFeatureExtractor } from '../../src/model/whisper/features.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { summarize, type Row } from './harness.js';
import type { Peaks } from './kernels.js';

export async function benchWhisperFeatures(_rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // noise-like speech stand-in: the cost does not depend on the content
  let seed = 1;
  const clip = Float32Array.from({ length: 30 * 16000 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2);
  for (const mels of [80, 128]) {
    const fx = WhisperFeatureExtractor.fromJson({ feature_size: mels });
    fx.logMel(clip); // warm-up (JIT)
    const times: number[] = [];
    for (let r = 0; r < (quick ? 3 : 7); r++) {
      const t0 = performance.now();
      fx.logMel(clip);
      times.push((performance.now() - t0) / 1000);
    }
    const t = summarize(times);
    rows.push({
      name: `Whisper log-mel of 30 s at 16 kHz (${mels} bins, 3000 frames, CPU float64)`,
      unit: 'ms',
      ours: t.median * 1000,
      spread: [t.min * 1000, t.max * 1000],
      command: 'npm run bench -- --only=features',
      note: 'goal: well under 1000 ms',
    });
  }
  return rows;
}
