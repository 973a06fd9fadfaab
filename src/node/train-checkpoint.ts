// Resumable training checkpoints: one safetensors file (written atomically: temp file, fsync, rename) holding every
// model parameter (`param/<name>`), the AdamW moments (`adam_m/<i>`, `adam_v/<i>`) and, in its metadata, the position
// in the run, the optimizer step counts, the best validation result and (fp16 runs) the dynamic loss scale. One file, so weights and state can never be
// out of step with each other after a crash.
import type { TrainerCheckpoint } from '../train/trainer.js';
import type { TensorToSave } from '../io/safetensors.js';
import { openTensorFile, saveSafetensorsFile } from './modeldir.js';

const STATE_KEY = 'ser_trainer_state';

export async function writeCheckpointFile(file: string, ck: TrainerCheckpoint): Promise<void> {
  const tensors: TensorToSave[] = [];
  for (const [name, w] of ck.weights) tensors.push({ name: `param/${name}`, shape: [w.length], data: w });
  ck.optimizer.m.forEach((m, i) => { if (m) tensors.push({ name: `adam_m/${i}`, shape: [m.length], data: m }); });
  ck.optimizer.v.forEach((v, i) => { if (v) tensors.push({ name: `adam_v/${i}`, shape: [v.length], data: v }); });
  const state = {
    version: 1,
    position: ck.position,
    best: ck.best,
    optimizer: { step: ck.optimizer.step, paramSteps: ck.optimizer.paramSteps, count: ck.optimizer.m.length },
    params: [...ck.weights.keys()],
    ...(ck.lossScale ? { lossScale: ck.lossScale } : {}),
  };
  await saveSafetensorsFile(file, tensors, { [STATE_KEY]: JSON.stringify(state) });
}

export async function loadCheckpointFile(file: string): Promise<TrainerCheckpoint> {
  const src = await openTensorFile(file);
  try {
    const raw = src.metadata[STATE_KEY];
    if (!raw) throw new Error(`${file}: not a training checkpoint (no ${STATE_KEY} metadata)`);
    const state = JSON.parse(raw) as { version: number; position: TrainerCheckpoint['position']; best: TrainerCheckpoint['best']; optimizer: { step: number; paramSteps: number[]; count: number }; params: string[]; lossScale?: TrainerCheckpoint['lossScale'] };
    if (state.version !== 1) throw new Error(`${file}: checkpoint version ${state.version} is not supported`);
    const read = async (name: string) => {
      const e = src.entries.get(name);
      return e ? e.read() : null;
    };
    const weights = new Map<string, Float32Array>();
    for (const p of state.params) {
      const w = await read(`param/${p}`);
      if (!w) throw new Error(`${file}: missing tensor param/${p}`);
      weights.set(p, w);
    }
    const m: (Float32Array | null)[] = [];
    const v: (Float32Array | null)[] = [];
    for (let i = 0; i < state.optimizer.count; i++) {
      m.push(await read(`adam_m/${i}`));
      v.push(await read(`adam_v/${i}`));
    }
    return { position: state.position, best: state.best, weights, optimizer: { step: state.optimizer.step, paramSteps: state.optimizer.paramSteps, m, v }, ...(state.lossScale ? { lossScale: state.lossScale } : {}) };
  } finally {
    await src.close();
  }
}
