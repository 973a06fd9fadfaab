// `ser check-reference` against fixtures computed by the real Hugging Face code in float64: the shared XLSR-layout
// fixture (both weight formats) and every test/fixtures/w2v_* present (base layout, batch 4, a 400-sample clip, ...).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import path from 'node:path';
import { getRuntime } from './helpers.js';
import { openTensorFile } from '../src/node/modeldir.js';
import { runReferenceCheck, checkReference, formatTable, FORWARD_TOLERANCE, GRAD_TOLERANCE, type ReferenceCheckResult } from '../src/node/check-reference.js';

const SHARED = '../shared/fixtures/xlsr_tiny';
const LOCAL = 'test/fixtures';
const REQUIRED_FORWARD = ['extract_features', 'feature_projection_output', 'last_hidden_state', 'pooled_plain_mean', 'pooled_masked_mean', 'logits_plain_mean', 'logits_masked_mean', 'loss_plain_mean', 'loss_masked_mean'];

function assertResult(r: ReferenceCheckResult, what: string, manifestPath: string): void {
  const names = new Set(r.tensors.map((t) => t.name));
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const refNames = new Set<string>(manifest.tensors.map((t: { name: string }) => t.name));
  for (const n of REQUIRED_FORWARD) if (refNames.has(n)) assert.ok(names.has(n), `${what}: ${n} compared`);
  for (const n of refNames) if (n.startsWith('hidden_states.')) assert.ok(names.has(n), `${what}: ${n} compared`);
  // every weight gradient in the reference is compared
  const weights = new Set<string>(manifest.weights.keys.map((k: { name: string }) => k.name));
  for (const n of refNames) if (n.startsWith('grad.') && weights.has(n.slice(5))) assert.ok(names.has(n), `${what}: ${n} compared`);
  const failed = r.tensors.filter((t) => !t.pass);
  assert.ok(r.ok && failed.length === 0, `${what}: ${failed.map((t) => `${t.name} rel ${t.rel_l2} abs ${t.max_abs}`).join('; ')}\n${formatTable(r)}`);
  assert.ok(r.worst_forward <= FORWARD_TOLERANCE && r.worst_grad <= GRAD_TOLERANCE);
  console.log(`${what}: worst forward ${r.worst_forward.toExponential(2)} (${r.worst_forward_name}), worst grad ${r.worst_grad.toExponential(2)} (${r.worst_grad_name}), ${r.tensors.length} tensors`);
}

for (const weights of ['safetensors', 'bin'] as const) {
  test(`xlsr_tiny (${weights}): every forward tensor within 1e-4, every gradient within 1e-3`, async () => {
    const rt = await getRuntime();
    const r = await runReferenceCheck(rt, SHARED, weights);
    assert.ok(r.weightsFile.endsWith(weights === 'bin' ? 'pytorch_model.bin' : 'model.safetensors'));
    assertResult(r, `xlsr_tiny/${weights}`, path.join(SHARED, 'manifest.json'));
    const zero = r.tensors.filter((t) => t.zero_reference).map((t) => t.name);
    assert.ok(zero.some((n) => n.endsWith('attention.k_proj.bias')), 'k_proj.bias gradients judged by max abs');
  });
}

const local = fs.existsSync(LOCAL) ? fs.readdirSync(LOCAL).filter((d) => d.startsWith('w2v_') && fs.existsSync(path.join(LOCAL, d, 'reference.safetensors'))).sort() : [];
for (const d of local) {
  test(`${d}: every forward tensor within 1e-4, every gradient within 1e-3`, async () => {
    const rt = await getRuntime();
    const dir = path.join(LOCAL, d);
    const r = await runReferenceCheck(rt, dir, 'auto');
    assertResult(r, d, path.join(dir, 'manifest.json'));
  });
}

test('--fp16 (autocast: linear layers in f16) on w2v_xlsr_b4: every tensor within the f16 limits, and f16 really ran', async () => {
  const rt = await getRuntime();
  const dir = path.join(LOCAL, 'w2v_xlsr_b4');
  if (!fs.existsSync(dir)) return;
  if (!rt.hasF16) {
    let message = '';
    await runReferenceCheck(rt, dir, 'auto', { fp16: true }).catch((e: Error) => { message = e.message; });
    assert.match(message, /shader-f16/);
    return;
  }
  const r16 = await runReferenceCheck(rt, dir, 'auto', { fp16: true });
  const failed = r16.tensors.filter((t) => !t.pass);
  assert.ok(r16.ok && failed.length === 0, `fp16: ${failed.map((t) => `${t.name} rel ${t.rel_l2} abs ${t.max_abs}`).join('; ')}`);
  assert.is(r16.precision, 'f16');
  const r32 = await runReferenceCheck(rt, dir, 'auto');
  // f16 rounding (11 significant bits) must show: an autocast that silently ran in f32 would match f32's error
  assert.ok(r16.worst_forward > 10 * r32.worst_forward, `f16 worst forward ${r16.worst_forward} is not above f32's ${r32.worst_forward}`);
  console.log(`w2v_xlsr_b4 --fp16: worst forward ${r16.worst_forward.toExponential(2)} (f32: ${r32.worst_forward.toExponential(2)}), worst grad ${r16.worst_grad.toExponential(2)} (f32: ${r32.worst_grad.toExponential(2)})`);
});

test('a safetensors file whose header length has low byte 0x80 is not mistaken for a pickle (w2v_400_single)', async () => {
  const file = path.join(LOCAL, 'w2v_400_single', 'reference.safetensors');
  if (!fs.existsSync(file)) return;
  const head = fs.readFileSync(file).subarray(0, 1);
  assert.is(head[0], 0x80, 'the fixture still exercises the case');
  const src = await openTensorFile(file);
  assert.ok(src.entries.has('input_values'));
  await src.close();
});

test('the command: --json prints exactly one JSON object; bad options exit 2', async () => {
  const rt = await getRuntime();
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  let code: number;
  try {
    code = await checkReference([SHARED, '--weights', 'safetensors', '--json'], rt);
  } finally {
    console.log = log;
  }
  assert.is(code, 0);
  assert.is(lines.length, 1, 'one line on stdout');
  const j = JSON.parse(lines[0]);
  assert.ok(Array.isArray(j.tensors) && j.tensors.length > 0);
  for (const t of j.tensors) for (const k of ['name', 'shape', 'rel_l2', 'max_abs']) assert.ok(k in t, `tensor entry has ${k}`);
  assert.is(typeof j.worst_forward, 'number');
  assert.is(typeof j.worst_grad, 'number');
  assert.is(j.ok, true);
  const err = console.error;
  console.error = () => {};
  try {
    assert.is(await checkReference([SHARED, '--weights', 'onnx'], rt), 2);
    assert.is(await checkReference([], rt), 2);
  } finally {
    console.error = err;
  }
});

test.run();
