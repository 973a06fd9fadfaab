// Training works for every registered family: the demo-size model of each (src/node/demo-configs.ts) with both
// heads fits a small fixed batch (loss falls), and the frozen feature encoder gets no gradient while the rest does.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { getRuntime, randn } from './helpers.js';
import { Tensor } from '../src/tensor.js';
import { backward, tidy } from '../src/autograd.js';
import { AdamW } from '../src/ops/optim.js';
import { SpeechClassifier } from '../src/model/classifier.js';
import { parseModelConfig, familyOf } from '../src/model/registry.js';
import { DEMO_CONFIGS } from '../src/node/demo-configs.js';
import type { ModelHead } from '../src/model/heads.js';

const LABELS = { 0: 'a', 1: 'b', 2: 'c' };

/** Three classes of 0.4 s "clips": tones of class-dependent pitch in noise, normalised per clip as the families expect. */
function batch(): { clips: Float32Array[]; labels: number[] } {
  const clips: Float32Array[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 6; i++) {
    const label = i % 3;
    const n = 6400 - 400 * i;
    const noise = randn(n, 50 + i, 0.3);
    const f = [180, 420, 900][label];
    clips.push(Float32Array.from({ length: n }, (_, t) => Math.sin((2 * Math.PI * f * t) / 16000) + noise[t]));
    labels.push(label);
  }
  return { clips, labels };
}

for (const [family, json] of Object.entries(DEMO_CONFIGS)) {
  for (const head of ['speech-classification', 'sequence-classification'] as ModelHead[]) {
    test(`${family} (${head} head): 12 AdamW steps on a fixed batch lower the loss; the frozen feature encoder gets no gradient`, async () => {
      const rt = await getRuntime();
      const config = parseModelConfig({ ...json, id2label: LABELS, hidden_dropout: 0, final_dropout: 0, mask_time_prob: 0 }, `${family}/config.json`);
      assert.is(familyOf(config).name, family);
      const model = SpeechClassifier.random(rt, config, { head, initSeed: 3 });
      model.train();
      const pp = model.family.parsePreprocessor({}, 'preprocessor_config.json', config);
      const { clips, labels } = batch();
      const x = pp.prepare(clips);
      const opt = new AdamW(model.trainableParameters(), { lr: 2e-3 });
      const losses: number[] = [];
      for (let step = 0; step < 12; step++) {
        const loss = tidy(() => {
          const input = Tensor.fromData(rt, x.values, x.shape, 'f32', 'input_values');
          const out = model.forward({ inputValues: input, attentionMask: x.mask, labels });
          return out.loss!;
        });
        losses.push((await loss.readFloat())[0]);
        backward(loss);
        if (step === 0) {
          for (const [name, t] of model.namedParameters()) {
            if (model.family.isFeatureEncoderParameter(name)) assert.is(t.grad, null, `${name} is frozen`);
            else if (!name.endsWith('masked_spec_embed')) assert.ok(t.grad, `${name} has a gradient`);
          }
        }
        opt.step();
        opt.zeroGrad();
        loss.dispose();
      }
      model.dispose();
      assert.ok(losses.every(Number.isFinite), `finite losses ${losses}`);
      assert.ok(losses[11] < 0.7 * losses[0], `loss fell: ${losses.map((l) => l.toFixed(3)).join(' ')}`);
      console.log(`${family}/${head}: loss ${losses[0].toFixed(3)} -> ${losses[11].toFixed(3)}`);
    });
  }
}

test.run();
