// trainer_state.json as Hugging Face's Trainer writes it, from our log.jsonl.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { trainerState } from '../src/report/trainer-state.js';

const LOG = [
  { event: 'start', config: {} },
  { type: 'train', step: 1, epoch: 0, loss: 1.6, lr: 1e-4, grad_norm: 2.5 },
  { type: 'train', step: 2, epoch: 0, loss: 1.5, lr: 2e-4, grad_norm: 2.1 },
  { type: 'eval', split: 'valid', step: 2, epoch: 0, loss: 1.4, wa: 0.5, ua: 0.45 },
  { type: 'train', step: 3, epoch: 1, loss: 1.2, lr: 1.5e-4, grad_norm: 1.9 },
  { type: 'train', step: 4, epoch: 1, loss: 1.1, lr: 1e-4, grad_norm: 1.7 },
  { type: 'eval', split: 'valid', step: 4, epoch: 1, loss: 1.3, wa: 0.55, ua: 0.6 },
  { type: 'eval', split: 'test', step: 4, wa: 0.5, ua: 0.52 },
].map((l) => JSON.stringify(l)).join('\n') + '\n{"type":"train","step":5,"lo'; // a torn last line after a kill

test('log.jsonl -> trainer_state.json: log_history entries, fractional epochs, the best metric and checkpoint', () => {
  const s = trainerState(LOG, { maxSteps: 4, numTrainEpochs: 2, metric: 'ua', bestModelCheckpoint: 'runs/x/model', trainBatchSize: 4, evalSteps: 2 });
  assert.is(s.global_step, 4);
  assert.is(s.epoch, 2);
  assert.is(s.max_steps, 4);
  assert.is(s.log_history.length, 6, 'four training lines and two validation evaluations; test results are not Trainer history');
  assert.equal(s.log_history[0], { epoch: 0.5, step: 1, loss: 1.6, learning_rate: 1e-4, grad_norm: 2.5 });
  assert.equal(s.log_history[2], { epoch: 1, step: 2, eval_loss: 1.4, eval_accuracy: 0.5, eval_ua: 0.45 });
  assert.is(s.best_metric, 0.6);
  assert.is(s.best_model_checkpoint, 'runs/x/model');
  const byAccuracy = trainerState(LOG, { maxSteps: 4, numTrainEpochs: 2, metric: 'accuracy', bestModelCheckpoint: null, trainBatchSize: 4, evalSteps: 2 });
  assert.is(byAccuracy.best_metric, 0.55);
});

test.run();
