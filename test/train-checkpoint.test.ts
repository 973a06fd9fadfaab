// A run's own checkpoint.safetensors is input like any other: its training state is checked field by field and
// bounded by what the file holds, so a damaged or hostile one is one named error, fast, never a long loop or a crash.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpointFile, writeCheckpointFile } from '../src/node/train-checkpoint.js';
import { saveSafetensorsFile } from '../src/node/modeldir.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-ckpt-'));
const good = {
  version: 1,
  position: { step: 3, epoch: 0, microBatch: 6 },
  best: { metric: 0.5, step: 2 },
  optimizer: { step: 3, paramSteps: [3], count: 1 },
  params: ['w'],
};

async function withState(name: string, state: unknown): Promise<string> {
  const file = path.join(dir, name);
  const w = Float32Array.from([1, 2, 3]);
  await saveSafetensorsFile(file, [{ name: 'param/w', shape: [3], data: w }, { name: 'adam_m/0', shape: [3], data: w }, { name: 'adam_v/0', shape: [3], data: w }], { ser_trainer_state: typeof state === 'string' ? state : JSON.stringify(state) });
  return file;
}

test('a checkpoint round-trips; a damaged training state is refused naming the field, before any loop over it', async () => {
  const ok = await loadCheckpointFile(await withState('good.safetensors', good));
  assert.equal(ok.position, good.position);
  assert.equal(Array.from(ok.weights.get('w')!), [1, 2, 3]);
  const file = path.join(dir, 'written.safetensors');
  await writeCheckpointFile(file, ok);
  assert.equal((await loadCheckpointFile(file)).optimizer.paramSteps, [3]);

  const cases: [string, unknown, RegExp][] = [
    ['count', { ...good, optimizer: { ...good.optimizer, count: 5e7 } }, /optimizer\.count = 50000000/],
    ['negative step', { ...good, position: { ...good.position, step: -1 } }, /position\.step = -1/],
    ['params', { ...good, params: new Array(100).fill('w') }, /params list/],
    ['best', { ...good, best: { metric: 'x', step: 1 } }, /best\.metric/],
    ['loss scale', { ...good, lossScale: { scale: -1, goodSteps: 0 } }, /lossScale/],
    ['version', { ...good, version: 7 }, /version 7/],
    ['not JSON', '{"version": 1,', /not valid JSON/],
    ['null', 'null', /not an object/],
  ];
  for (const [name, state, re] of cases) {
    const f = await withState(`${name.replace(/ /g, '_')}.safetensors`, state);
    const t0 = performance.now();
    let message = '';
    await loadCheckpointFile(f).catch((e: Error) => { message = e.message; });
    assert.match(message, re, `${name}: ${message}`);
    assert.ok(message.includes(f), `${name}: the error names the file`);
    assert.ok(performance.now() - t0 < 2000, `${name}: refused at once`);
  }
});

test.run();
