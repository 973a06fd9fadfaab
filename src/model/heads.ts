// Classifier heads on any encoder's output: last_hidden_state [B, T, H] (and every hidden state for the weighted
// layer sum) plus the valid-frame mask. Every family gets every head.
//   'speech-classification': the SER notebook's Wav2Vec2ClassificationHead: pool over time -> dropout ->
//       dense(H, H) -> tanh -> dropout -> out_proj(H, labels)   (classifier.dense.*, classifier.out_proj.*)
//   'sequence-classification': transformers' *ForSequenceClassification: [softmax(layer_weights)-weighted sum of
//       hidden_states] -> projector(H, P) per frame -> masked mean over valid frames -> classifier(P, labels)
//       (layer_weights, projector.*, classifier.*); with no mask, a plain mean over all frames (Whisper)
// Loss: cross entropy over classes (batch mean), or, for problem_type "regression", MSE over all B x labels outputs
// against float targets (the notebook's regression branch, as audeering's dimensional models are trained).
import { Tensor } from '../tensor.js';
import { tidy } from '../autograd.js';
import { linear } from '../ops/matmul.js';
import { dropout } from '../ops/activation.js';
import { poolTime, weightedLayerSum } from '../ops/reduce.js';
import { crossEntropy, mseLoss } from '../ops/loss.js';
import type { ModelConfigBase, PoolingMode } from '../io/config.js';
import { defaultRule, type InitRule } from './init.js';
import type { TensorHook } from './family.js';

export type ModelHead = 'speech-classification' | 'sequence-classification' | 'none';

/** Head parameters placed before the encoder's in state_dict order (registered on the model itself) and after. */
export function headParameterShapes(c: ModelConfigBase, head: ModelHead): { before: Map<string, number[]>; after: Map<string, number[]> } {
  const before = new Map<string, number[]>();
  const after = new Map<string, number[]>();
  const H = c.hidden_size;
  const linearShapes = (name: string, out: number, inp: number) => {
    after.set(`${name}.weight`, [out, inp]);
    after.set(`${name}.bias`, [out]);
  };
  if (head === 'sequence-classification') {
    if (c.use_weighted_layer_sum) before.set('layer_weights', [c.num_hidden_layers + 1]);
    linearShapes('projector', c.classifier_proj_size, H);
    linearShapes('classifier', c.num_labels, c.classifier_proj_size);
  } else if (head === 'speech-classification') {
    linearShapes('classifier.dense', H, H);
    linearShapes('classifier.out_proj', c.num_labels, H);
  }
  return { before, after };
}

/** HF's init of head parameters: nn.Linear N(0, initializer_range), bias 0; layer_weights 1/(layers + 1). */
export function headInitRule(name: string, shape: readonly number[], c: ModelConfigBase): InitRule {
  if (name === 'layer_weights') return { kind: 'fill', value: 1 / shape[0] };
  return defaultRule(name, c.initializer_range);
}

/** Which head a set of (canonical) parameter names carries; null when neither (a bare or CTC checkpoint). */
export function detectHead(names: Iterable<string>): ModelHead | null {
  const set = new Set(names);
  if (set.has('classifier.dense.weight') || set.has('classifier.out_proj.weight')) return 'speech-classification';
  if (set.has('projector.weight') || set.has('classifier.weight')) return 'sequence-classification';
  return null;
}

export interface HeadInput {
  lastHiddenState: Tensor;
  /** every hidden state (the weighted layer sum needs num_hidden_layers + 1) */
  hiddenStates: readonly Tensor[];
  /** i32 [B, T] valid frames, or null (no padding information: every frame counts) */
  frameMask: Tensor | null;
}

export interface HeadOptions {
  hook?: TensorHook;
  pooling?: PoolingMode;
  /** pool over valid frames only (needs the frame mask) */
  poolExcludePadding?: boolean;
  /** class indices [B] (classification) or float targets [B, labels] (regression) */
  labels?: Tensor | Int32Array | Float32Array | readonly number[] | null;
  training?: boolean;
}

export interface HeadOutput {
  pooled: Tensor;
  logits: Tensor;
  loss: Tensor | null;
}

/** The head's forward (and loss when labels are given) on parameters `p`. */
export function runHead(head: ModelHead, config: ModelConfigBase, p: (name: string) => Tensor, input: HeadInput, opts: HeadOptions): HeadOutput {
  const mode = opts.pooling ?? config.pooling_mode;
  const mask = opts.poolExcludePadding ? input.frameMask : null;
  const hook: TensorHook = opts.hook ?? ((_, t) => t);
  const training = opts.training ?? false;
  const last = input.lastHiddenState;
  return tidy(() => {
    let pooled: Tensor;
    let logits: Tensor;
    if (head === 'speech-classification') {
      pooled = hook('pooled', poolTime(last, mode, mask));
      let z = dropout(pooled, config.final_dropout, training);
      z = linear(z, p('classifier.dense.weight'), p('classifier.dense.bias'), 'tanh');
      z = dropout(z, config.final_dropout, training);
      logits = hook('logits', linear(z, p('classifier.out_proj.weight'), p('classifier.out_proj.bias')));
    } else if (head === 'sequence-classification') {
      let src = last;
      if (config.use_weighted_layer_sum) {
        const n = config.num_hidden_layers + 1;
        if (input.hiddenStates.length !== n) throw new Error(`head: the weighted layer sum needs ${n} hidden states, got ${input.hiddenStates.length}`);
        src = weightedLayerSum([...input.hiddenStates], p('layer_weights'));
      }
      const projected = hook('projected_states', linear(src, p('projector.weight'), p('projector.bias')));
      pooled = hook('pooled', poolTime(projected, mode, mask));
      logits = hook('logits', linear(pooled, p('classifier.weight'), p('classifier.bias')));
    } else {
      throw new Error('head: this model has no classification head');
    }
    let loss: Tensor | null = null;
    if (opts.labels) loss = headLoss(config, logits, opts.labels);
    return { pooled, logits, loss };
  });
}

/** Cross entropy (classification) or MSE (problem_type "regression") of logits [B, L]. */
export function headLoss(config: Pick<ModelConfigBase, 'problem_type'>, logits: Tensor, labels: Tensor | Int32Array | Float32Array | readonly number[]): Tensor {
  const [B, L] = logits.shape;
  const rt = logits.rt;
  if (config.problem_type === 'regression') {
    const targets = labels instanceof Tensor ? labels : Tensor.fromData(rt, Float32Array.from(labels), [B, L], 'f32', 'targets');
    if (targets.size !== B * L) throw new Error(`regression: ${targets.size} targets for ${B} items x ${L} outputs`);
    const loss = mseLoss(logits, targets.shape.length === 2 ? targets : targets.reshape([B, L]));
    if (!(labels instanceof Tensor)) targets.dispose();
    return loss;
  }
  const ids = labels instanceof Tensor ? labels : Tensor.fromData(rt, Int32Array.from(labels), [labels.length], 'i32', 'labels');
  const loss = crossEntropy(logits, ids);
  if (!(labels instanceof Tensor)) ids.dispose();
  return loss;
}
