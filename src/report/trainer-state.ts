// Hugging Face Trainer's trainer_state.json from our log.jsonl, so tools that read HF runs (TensorBoard exporters,
// scripts over log_history, the Hub's training-metrics view) read ours: training lines become {loss, learning_rate,
// grad_norm, epoch, step}, validation evaluations {eval_loss, eval_accuracy (WA), eval_ua, epoch, step}; the best
// metric and its checkpoint as Trainer records them. Epochs are fractional (step / steps per epoch), as in HF.
export interface TrainerStateOptions {
  /** optimizer steps of the whole run */
  maxSteps: number;
  numTrainEpochs: number;
  /** the metric used to pick the checkpoint ('ua' or 'accuracy') */
  metric: 'ua' | 'accuracy' | 'ccc';
  /** the folder the best model was saved to */
  bestModelCheckpoint: string | null;
  trainBatchSize: number;
  evalSteps: number;
}

export interface TrainerState {
  best_metric: number | null;
  best_model_checkpoint: string | null;
  epoch: number;
  eval_steps: number;
  global_step: number;
  is_hyper_param_search: false;
  is_local_process_zero: true;
  is_world_process_zero: true;
  log_history: Record<string, number>[];
  logging_steps: number;
  max_steps: number;
  num_train_epochs: number;
  save_steps: number;
  total_flos: number;
  train_batch_size: number;
  trial_name: null;
  trial_params: null;
}

/** trainer_state.json content from log.jsonl text (lines that do not parse are skipped: a torn last line after a kill). */
export function trainerState(logText: string, opts: TrainerStateOptions): TrainerState {
  const stepsPerEpoch = opts.maxSteps / Math.max(1, opts.numTrainEpochs);
  const epochOf = (step: number) => Math.round((step / Math.max(1e-9, stepsPerEpoch)) * 1e4) / 1e4;
  const history: Record<string, number>[] = [];
  let best: { value: number; step: number } | null = null;
  let lastStep = 0;
  for (const raw of logText.split('\n')) {
    if (!raw.trim()) continue;
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(raw);
    } catch {
      continue;
    }
    const num = (k: string) => (typeof line[k] === 'number' && Number.isFinite(line[k]) ? (line[k] as number) : null);
    const step = num('step');
    if (step === null) continue;
    lastStep = Math.max(lastStep, step);
    if (line.type === 'train') {
      const entry: Record<string, number> = { epoch: epochOf(step), step };
      const loss = num('loss');
      const lr = num('lr');
      const gradNorm = num('grad_norm');
      if (loss !== null) entry.loss = loss;
      if (lr !== null) entry.learning_rate = lr;
      if (gradNorm !== null) entry.grad_norm = gradNorm;
      history.push(entry);
    } else if (line.type === 'eval' && line.split === 'valid') {
      const entry: Record<string, number> = { epoch: epochOf(step), step };
      const loss = num('loss');
      const wa = num('wa');
      const ua = num('ua');
      if (loss !== null) entry.eval_loss = loss;
      if (wa !== null) entry.eval_accuracy = wa;
      if (ua !== null) entry.eval_ua = ua;
      // regression runs: mean MSE / MAE / CCC over targets
      for (const k of ['mse', 'mae', 'ccc']) if (num(k) !== null) entry[`eval_${k}`] = num(k)!;
      history.push(entry);
      const value = opts.metric === 'ccc' ? num('ccc') : opts.metric === 'ua' ? ua : wa;
      // Trainer keeps the first best on ties (greater_is_better with a strict comparison)
      if (value !== null && (!best || value > best.value)) best = { value, step };
    }
  }
  return {
    best_metric: best?.value ?? null,
    best_model_checkpoint: best ? opts.bestModelCheckpoint : null,
    epoch: epochOf(lastStep),
    eval_steps: opts.evalSteps,
    global_step: lastStep,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: history,
    logging_steps: 1,
    max_steps: opts.maxSteps,
    num_train_epochs: opts.numTrainEpochs,
    save_steps: opts.evalSteps,
    total_flos: 0,
    train_batch_size: opts.trainBatchSize,
    trial_name: null,
    trial_params: null,
  };
}
