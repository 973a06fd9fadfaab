// Fidelity: our wav2vec2 against the float64 reference outputs made by the real Hugging Face PyTorch code
// (tools/ref/) for every fixture under test/fixtures/ (w2v_*, fam_* of every family) and bench/fixtures/*: the relative L2 error
// of each layer's hidden state, the pooled features, logits, loss and the gradients (grouped per encoder layer, the
// largest in each group), in f32 and, where the adapter has shader-f16, in mixed precision (--fp16: linear layers in
// f16). The same comparison as `ser check-reference`; the rows carry each fixture's worst forward and gradient error,
// the Markdown gets the per-layer table.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Runtime } from '../../src/runtime/runtime.js';
import { runReferenceCheck, type ReferenceCheckResult, type TensorComparison } from '../../src/node/check-reference.js';
import type { Row } from './harness.js';
import type { Peaks } from './kernels.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function fidelityFixtures(): string[] {
  const dirs: string[] = [];
  for (const base of [path.join(root, 'test/fixtures'), path.join(root, 'bench/fixtures')]) {
    if (!fs.existsSync(base)) continue;
    for (const d of fs.readdirSync(base).sort()) {
      const dir = path.join(base, d);
      if (!fs.existsSync(path.join(dir, 'reference.safetensors')) || !fs.existsSync(path.join(dir, 'config.json'))) continue;
      // a loading-test fixture (an encoder-only seq2seq checkpoint, no head) is not a reference check
      const manifest = path.join(dir, 'manifest.json');
      if (fs.existsSync(manifest) && 'expected_loading' in JSON.parse(fs.readFileSync(manifest, 'utf8'))) continue;
      dirs.push(dir);
    }
  }
  return dirs;
}

/** Group a comparison under a row label: hidden states and heads one by one, gradients by layer (max over the group). */
function groupOf(t: TensorComparison): string {
  if (t.kind === 'forward') return t.name;
  // any family: <prefix>.encoder.layers.N (wav2vec2., hubert., wavlm., data2vec_audio.) or encoder.layers.N (Whisper)
  const layer = t.name.match(/^grad\.(?:[a-z0-9_]+\.)?encoder\.layers\.(\d+)\./);
  if (layer) return `grad: encoder layer ${layer[1]} weights`;
  const part = t.name.match(/^grad\.(?:[a-z0-9_]+\.)?(feature_extractor|feature_projection|encoder\.pos_conv_embed|encoder\.layer_norm|encoder\.conv[12]|encoder\.embed_positions)\./);
  if (part) {
    const names: Record<string, string> = {
      feature_extractor: 'feature encoder weights',
      feature_projection: 'feature projection weights',
      'encoder.pos_conv_embed': 'positional conv weights',
      'encoder.layer_norm': 'encoder layer norm',
      'encoder.conv1': 'conv stem weights',
      'encoder.conv2': 'conv stem weights',
      'encoder.embed_positions': 'position embeddings',
    };
    return `grad: ${names[part[1]]}`;
  }
  if (t.name.startsWith('grad.classifier.') || t.name.startsWith('grad.projector.') || t.name === 'grad.layer_weights') return 'grad: head weights';
  if (/^grad\.(wav2vec2|hubert|wavlm|data2vec_audio|encoder)\./.test(t.name)) return 'grad: other weights';
  return `grad: ${t.name.slice(5)}`; // gradients w.r.t. activations (hidden states, pooled features, ...)
}

function groups(r: ReferenceCheckResult): Map<string, { rel: number; n: number }> {
  const m = new Map<string, { rel: number; n: number }>();
  for (const t of r.tensors) {
    if (t.zero_reference) continue; // analytically zero: judged by max abs, no relative error to show
    const g = groupOf(t);
    const e = m.get(g) ?? { rel: 0, n: 0 };
    m.set(g, { rel: Math.max(e.rel, Number.isFinite(t.rel_l2) ? t.rel_l2 : Infinity), n: e.n + 1 });
  }
  return m;
}

/** Pipeline order: feature encoder, projection, positional conv, layers by number, head; then the gradients. */
const ORDER = ['extract_features', 'extract_features_normed', 'feature_projection_output', 'pos_conv_embed_output', 'hidden_states', 'encoder_last_layer_output', 'last_hidden_state', 'pooled', 'classifier_hidden', 'logits', 'loss', 'derived'];
function rank(label: string): [number, number, number] {
  const grad = label.startsWith('grad: ') ? 1 : 0;
  const bare = label.replace(/^grad: /, '');
  const num = Number(bare.match(/(\d+)/)?.[1] ?? 0);
  const i = ORDER.findIndex((o) => bare.startsWith(o));
  return [grad, i < 0 ? ORDER.length : i, num];
}
function byPipeline(a: string, b: string): number {
  const [x, y] = [rank(a), rank(b)];
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2] || a.localeCompare(b);
}

const e = (x: number | undefined) => (x === undefined ? '' : Number.isFinite(x) ? x.toExponential(1) : String(x));

export async function benchFidelity(rt: Runtime, _peaks: Peaks, _quick: boolean): Promise<{ rows: Row[]; markdown: string[] }> {
  const fixtures = fidelityFixtures();
  if (fixtures.length === 0) throw new Error('no reference fixtures under test/fixtures or bench/fixtures');
  const precisions: ('f32' | 'f16')[] = rt.hasF16 ? ['f32', 'f16'] : ['f32'];
  const rows: Row[] = [];
  const md: string[] = [
    '## Fidelity against Hugging Face PyTorch (float64 reference)',
    '',
    `Relative L2 error, ours vs the reference, per tensor (gradients: the largest in each group). f16 = \`--fp16\` mixed precision (linear layers in f16 with f32 accumulation). Limits used by \`ser check-reference\`: f32 forward 1e-4, gradients 1e-3; f16 forward 2e-2, gradients 5e-2.${rt.hasF16 ? '' : ' This adapter has no shader-f16, so only f32 is shown.'}`,
    '',
  ];
  for (const dir of fixtures) {
    const name = path.relative(root, dir);
    const results = new Map<string, ReferenceCheckResult>();
    for (const p of precisions) {
      const r = await runReferenceCheck(rt, dir, 'auto', { fp16: p === 'f16' });
      results.set(p, r);
      const cmd = `npx ser check-reference ${name}${p === 'f16' ? ' --fp16' : ''}`;
      rows.push({ name: `fidelity ${path.basename(dir)} (${p}): worst forward tensor`, unit: 'rel L2', ours: r.worst_forward, command: cmd, note: `${r.worst_forward_name}; ${r.ok ? 'all within limits' : 'OUT OF LIMITS'}` });
      rows.push({ name: `fidelity ${path.basename(dir)} (${p}): worst gradient`, unit: 'rel L2', ours: r.worst_grad, command: cmd, note: `${r.worst_grad_name}; ${r.tensors.filter((t) => t.kind === 'grad').length} gradients compared` });
    }
    const g32 = groups(results.get('f32')!);
    const g16 = results.has('f16') ? groups(results.get('f16')!) : null;
    const ck = results.get('f32')!;
    md.push(`### ${name} (${ck.head} head, weights ${path.basename(ck.weightsFile)})`, '', `| tensor | f32 | ${g16 ? 'f16 |' : ''}`, `|---|---|${g16 ? '---|' : ''}`);
    for (const [label, v] of [...g32].sort((a, b) => byPipeline(a[0], b[0]))) md.push(`| ${label}${v.n > 1 ? ` (${v.n} tensors)` : ''} | ${e(v.rel)} | ${g16 ? `${e(g16.get(label)?.rel)} |` : ''}`);
    md.push('');
  }
  return { rows, markdown: md };
}
