// A fine-tuned model is saved as a Hugging Face directory that loads back bit-identically here and loads in PyTorch
// with the same values as the checkpoint it came from (checked by tools/torch_load_check.py with Debian's torch).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { getRuntime } from './helpers.js';
import { loadModel, saveModel } from '../src/node/train-cmd.js';

const fixture = path.join(process.cwd(), 'test/fixtures/w2v_xlsr_b4');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-save-'));

test('save -> load is bit-identical, config carries the classifier fields', async () => {
  const rt = await getRuntime();
  const a = await loadModel(rt, fixture);
  await saveModel(a.model, a.config, a.preprocessor, tmp);
  const b = await loadModel(rt, tmp);
  const pa = a.model.namedParameters();
  const pb = new Map(b.model.namedParameters());
  assert.is(pb.size, pa.length);
  for (const [name, t] of pa) {
    const x = await t.readFloat();
    const y = await pb.get(name)!.readFloat();
    assert.is(y.length, x.length, name);
    assert.ok(x.every((v, i) => Object.is(v, y[i])), `${name} changed in the round trip`);
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(tmp, 'config.json'), 'utf8'));
  for (const k of ['architectures', 'id2label', 'label2id', 'pooling_mode']) assert.ok(k in cfg, `config.json has ${k}`);
  assert.ok(fs.existsSync(path.join(tmp, 'preprocessor_config.json')));
  a.model.dispose();
  b.model.dispose();
});

test('the saved model.safetensors loads in PyTorch with the original values', () => {
  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);
  assert.ok(python, 'PyTorch is installed by `npm test` (node tools/setup.mjs --torch)');
  const r = spawnSync(python!, ['tools/torch_load_check.py', path.join(tmp, 'model.safetensors'), '--against', path.join(fixture, 'pytorch_model.bin')], { encoding: 'utf8' });
  assert.is(r.status, 0, `torch_load_check failed:\n${r.stdout}\n${r.stderr}`);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
