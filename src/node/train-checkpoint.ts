// Resumable training checkpoints: one safetensors file (written atomically: temp file, fsync, rename) holding every
// model parameter (`param/<name>`), the AdamW moments (`adam_m/<i>`, `adam_v/<i>`) and, in its metadata, the position
// in the run, the optimizer step counts, the best validation result and (fp16 runs) the dynamic loss scale. One file, so weights and state can never be
// out of step with each other after a crash.
import type { TrainerCheckpoint } from '../train/trainer.js';
import type { TensorToSave } from '../io/safetensors.js';
import { openTensorFile, saveSafetensorsFile } from './modeldir.js';
import { parseJsonBounded } from '../io/json.js';
import { isPlainObject } from '../io/source.js';

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

/** The trainer state stored in a checkpoint's metadata, checked field by field (the file may be damaged or hostile). */
interface StoredState {
  position: TrainerCheckpoint['position'];
  best: TrainerCheckpoint['best'];
  optimizer: { step: number; paramSteps: number[]; count: number };
  params: string[];
  lossScale?: TrainerCheckpoint['lossScale'];
}

function parseStoredState(raw: string, file: string, tensorsInFile: number): StoredState {
  const fail = (what: string): never => {
    throw new Error(`${file}: the training state (${STATE_KEY} metadata) ${what}; the checkpoint is damaged: delete it to start the run afresh`);
  };
  const o = parseJsonBounded(raw, `${file} (${STATE_KEY} metadata)`, { maxDepth: 8 });
  if (!isPlainObject(o)) return fail('is not an object');
  if (o.version !== 1) fail(`has version ${JSON.stringify(o.version)}; only 1 is supported`);
  const count = (v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) fail(`has ${what} = ${JSON.stringify(v)}`);
    return v as number;
  };
  const pos = o.position;
  if (!isPlainObject(pos)) return fail('has no position');
  const position = { step: count(pos.step, 'position.step'), epoch: count(pos.epoch, 'position.epoch'), microBatch: count(pos.microBatch, 'position.microBatch') };
  let best: TrainerCheckpoint['best'] = null;
  const storedBest = o.best;
  if (storedBest !== null && storedBest !== undefined) {
    if (!isPlainObject(storedBest)) return fail('has a malformed best');
    const metric = storedBest.metric;
    if (typeof metric !== 'number' || !Number.isFinite(metric)) return fail('has a malformed best.metric');
    best = { metric, step: count(storedBest.step, 'best.step') };
  }
  // every list is bounded by what the file really holds: one tensor per parameter, two per moment pair
  const opt = o.optimizer;
  if (!isPlainObject(opt)) return fail('has no optimizer state');
  const momentCount = count(opt.count, 'optimizer.count', tensorsInFile);
  if (!Array.isArray(opt.paramSteps) || opt.paramSteps.length > tensorsInFile) fail('has a malformed optimizer.paramSteps');
  const paramSteps = (opt.paramSteps as unknown[]).map((x, i) => count(x, `optimizer.paramSteps[${i}]`));
  if (!Array.isArray(o.params) || o.params.length > tensorsInFile || !o.params.every((x) => typeof x === 'string')) fail('has a malformed params list');
  const state: StoredState = { position, best, optimizer: { step: count(opt.step, 'optimizer.step'), paramSteps, count: momentCount }, params: o.params as string[] };
  if (o.lossScale !== undefined) {
    const ls = o.lossScale;
    if (!isPlainObject(ls) || typeof ls.scale !== 'number' || !(ls.scale > 0) || !Number.isFinite(ls.scale)) return fail('has a malformed lossScale');
    state.lossScale = { scale: ls.scale, goodSteps: count(ls.goodSteps, 'lossScale.goodSteps') };
  }
  return state;
}

export async function loadCheckpointFile(file: string): Promise<TrainerCheckpoint> {
  const src = await openTensorFile(file);
  try {
    const raw = src.metadata[STATE_KEY];
    if (!raw) throw new Error(`${file}: not a training checkpoint (no ${STATE_KEY} metadata)`);
    const state = parseStoredState(raw, file, src.entries.size);
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
