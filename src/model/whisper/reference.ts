// What `ser check-reference` compares for a Whisper fixture (format of ../shared/fixtures/whisper_tiny_cls): our
// input_features computed from the fixture's raw waveforms with our feature extractor, the encoder's activations,
// the head's outputs and loss, and the gradient of that loss for every parameter and for the tapped pooled_output and
// logits. Node-free: the caller opens the files and judges the numbers.
import type { Runtime } from '../../runtime/runtime.js';
import { Tensor } from '../../tensor.js';
import { backward, keep, record } from '../../autograd.js';
import { scale } from '../../ops/elementwise.js';
import type { TensorSource } from '../../io/source.js';
import type { WhisperConfig } from './config.js';
import { WhisperFeatureExtractor } from './features.js';
import { WhisperForAudioClassification, disposeWhisperOutput } from './model.js';

export interface ProducedTensor {
  name: string;
  shape: number[];
  values: Float32Array;
  kind: 'forward' | 'grad';
}

/** reference name -> our output name where they differ */
const FORWARD_NAMES: Record<string, string> = { pooled_output: 'pooled' };

/** An identity whose backward hands a copy of the incoming gradient to `sink`. */
function gradientTap(t: Tensor, sink: (g: Tensor) => void): Tensor {
  const y = t.reshape(t.shape);
  return record('gradientTap', y, [t], [], (g) => {
    sink(keep(scale(g, 1)));
    return [scale(g, 1)];
  }, true);
}

/**
 * Runs the model (f32) on the fixture: input_features from `raw_waveform.<i>` with the extractor, forward with all
 * hidden states, loss on `labels`, backward. `wanted` is the reference's tensor names (only those are produced).
 */
export async function whisperReferenceOutputs(
  rt: Runtime,
  config: WhisperConfig,
  weights: TensorSource,
  reference: TensorSource,
  extractor: WhisperFeatureExtractor,
  opts: { checkpoint?: string } = {},
): Promise<{ tensors: ProducedTensor[]; model: string; notices: string[] }> {
  const refFile = reference.files.join(', ');
  const need = (name: string) => {
    const e = reference.entries.get(name);
    if (!e) throw new Error(`${refFile}: no '${name}' tensor`);
    return e;
  };
  const waves: Float32Array[] = [];
  for (let i = 0; reference.entries.has(`raw_waveform.${i}`); i++) waves.push(await need(`raw_waveform.${i}`).read());
  if (!waves.length) throw new Error(`${refFile}: no raw_waveform.0 (the Whisper check computes input_features from the raw audio)`);
  const labels = Int32Array.from(await need('labels').read());
  if (labels.length !== waves.length) throw new Error(`${refFile}: ${labels.length} labels for ${waves.length} waveforms`);

  const { model, report } = await WhisperForAudioClassification.fromSource(rt, config, weights, { checkpoint: opts.checkpoint });
  const live: Tensor[] = [];
  try {
    if (report.newlyInitialized.length) throw new Error(`${opts.checkpoint ?? 'weights'}: lacks ${report.newlyInitialized.join(', ')}; a reference check needs every weight`);
    model.eval(); // dropout and layerdrop are 0 in the fixture; the reference gradients are of this graph
    const features = extractor.batch(waves);
    const tensors: ProducedTensor[] = [{ name: 'input_features', shape: [...features.shape], values: features.data, kind: 'forward' }];
    const input = Tensor.fromData(rt, features.data, features.shape, 'f32', 'input_features');
    live.push(input);
    const tapped = new Map<string, Tensor>();
    const hook = (name: string, t: Tensor) => {
      const refName = Object.entries(FORWARD_NAMES).find(([, ours]) => ours === name)?.[0] ?? name;
      return reference.entries.has(`grad.${refName}`) ? gradientTap(t, (g) => tapped.set(`grad.${refName}`, g)) : t;
    };
    const out = model.forward({ inputFeatures: input, labels }, { outputHiddenStates: true, hook });
    try {
      const ours = new Map<string, Tensor | null>([
        ['extract_features', out.extract_features],
        ['layer_weights_softmax', out.layer_weights_softmax],
        ['pooled', out.pooled],
        ['logits', out.logits],
        ['loss', out.loss],
        ['last_hidden_state', out.last_hidden_state],
      ]);
      out.hidden_states.forEach((t, i) => ours.set(`hidden_states.${i}`, t));
      for (const name of reference.entries.keys()) {
        if (name.startsWith('grad.')) continue;
        const t = ours.get(FORWARD_NAMES[name] ?? name);
        if (t) tensors.push({ name, shape: [...t.shape], values: await t.readFloat(), kind: 'forward' });
      }
      if (!out.loss) throw new Error('whisper: no loss (the model has no classification head)');
      backward(out.loss);
      for (const name of reference.entries.keys()) {
        if (!name.startsWith('grad.')) continue;
        const param = model.params.get(name.slice(5));
        const g = param ? param.grad : tapped.get(name);
        if (g) tensors.push({ name, shape: [...need(name).shape], values: await g.readFloat(), kind: 'grad' });
      }
    } finally {
      disposeWhisperOutput(out);
      for (const g of tapped.values()) g.dispose();
    }
    return { tensors, model: `WhisperForAudioClassification (${model.head} head)`, notices: report.notices };
  } finally {
    for (const t of live) t.dispose();
    model.dispose();
  }
}
