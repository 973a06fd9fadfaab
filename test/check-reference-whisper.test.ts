// `ser check-reference` on the Whisper fixture made by the real Hugging Face WhisperForAudioClassification (float64):
// input_features computed from the raw waveforms by our extractor and compared, then every activation, the HF head's
// outputs and loss within 1e-4, every gradient within 1e-3, from both weight files. Skipped without ../shared.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime } from './helpers.js';
import { runReferenceCheck, formatTable, FORWARD_TOLERANCE, GRAD_TOLERANCE } from '../src/node/check-reference.js';

const SHARED = '../shared/fixtures/whisper_tiny_cls';
const haveShared = fs.existsSync(path.join(SHARED, 'reference.safetensors'));
const sharedTest = haveShared ? test : test.skip;

for (const weights of ['safetensors', 'bin'] as const) {
  sharedTest(`whisper_tiny_cls (${weights}): input_features from the raw audio, every forward tensor within 1e-4, every gradient within 1e-3`, async () => {
    const rt = await getRuntime();
    const r = await runReferenceCheck(rt, SHARED, weights);
    assert.ok(r.weightsFile.endsWith(weights === 'bin' ? 'pytorch_model.bin' : 'model.safetensors'));
    assert.is(r.head, 'sequence-classification');
    const names = new Set(r.tensors.map((t) => t.name));
    const manifest = JSON.parse(fs.readFileSync(path.join(SHARED, 'manifest.json'), 'utf8'));
    const refNames: string[] = manifest.tensors.map((t: { name: string }) => t.name);
    for (const n of ['input_features', 'extract_features', 'pooled_output', 'logits', 'loss', 'grad.pooled_output', 'grad.logits']) assert.ok(names.has(n), `${n} compared`);
    for (const n of refNames) if (n.startsWith('hidden_states.')) assert.ok(names.has(n), `${n} compared`);
    const weightNames = new Set<string>(manifest.weights.keys.map((k: { name: string }) => k.name));
    assert.is(weightNames.size, 42);
    for (const n of weightNames) assert.ok(names.has(`grad.${n}`), `grad.${n} compared`);
    const failed = r.tensors.filter((t) => !t.pass);
    assert.ok(r.ok && failed.length === 0, `${failed.map((t) => `${t.name} rel ${t.rel_l2}`).join('; ')}\n${formatTable(r)}`);
    assert.ok(r.worst_forward <= FORWARD_TOLERANCE && r.worst_grad <= GRAD_TOLERANCE);
    const features = r.tensors.find((t) => t.name === 'input_features')!;
    assert.ok(features.max_abs <= 1e-5, `input_features max abs ${features.max_abs}`);
    console.log(
      `whisper_tiny_cls/${weights}: input_features max abs ${features.max_abs.toExponential(2)}, worst forward ${r.worst_forward.toExponential(2)} (${r.worst_forward_name}), ` +
        `worst grad ${r.worst_grad.toExponential(2)} (${r.worst_grad_name}), ${r.tensors.length} tensors`,
    );
  });
}

test.run();
