// Smoke test of the benchmark harness with its peers: runs the built bench (quick sizes, a few sections) into a temp
// dir and checks that it finishes, writes both result files, and that every figure is finite and every peer's
// result agrees with ours. Speed is not checked. PyTorch's script runs at a tiny size when PyTorch is installed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findTorchPython, runTorchBench, TorchServer } from '../bench/lib/peers-torch.js';
import type { Row } from '../bench/lib/harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bench = path.join(root, 'build/bench/run.mjs');


test('quick bench with the TensorFlow.js and ONNX Runtime peers: runs, writes results, all figures finite', () => {
  assert.ok(fs.existsSync(bench), `${bench} missing: run node tools/build.mjs first`);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-bench-smoke-'));
  try {
    const r = spawnSync(process.execPath, [bench, '--quick', '--only=fidelity,layernorm,tfjs,ort', `--out=${out}`], { cwd: root, encoding: 'utf8', timeout: 240000, maxBuffer: 16 << 20 });
    const log = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => !l.startsWith('Warning: maxDynamic')).join('\n');
    assert.is(r.status, 0, `bench exited with ${r.status ?? r.signal}:\n${log.slice(-3000)}`);
    const json = JSON.parse(fs.readFileSync(path.join(out, 'results.quick.json'), 'utf8'));
    const md = fs.readFileSync(path.join(out, 'RESULTS.quick.md'), 'utf8');
    assert.ok(md.includes('| name | unit | ours |'));
    assert.ok(md.includes('## Fidelity against Hugging Face PyTorch') && md.includes('| hidden_states.0 |'), 'per-layer fidelity tables written');
    for (const k of ['vendor', 'architecture', 'description']) assert.type(json.adapter[k], 'string');
    assert.ok(!Number.isNaN(Date.parse(json.date)));
    assert.equal(json.skipped, [], `sections skipped: ${json.skipped}`);
    const rows = json.rows as Row[];
    const tfjs = rows.filter((x) => x.peer?.startsWith('TensorFlow.js'));
    const ortGpu = rows.filter((x) => x.peer === 'ONNX Runtime WebGPU EP');
    const ortCpu = rows.filter((x) => x.peer === 'ONNX Runtime CPU EP');
    const fidelity = rows.filter((x) => x.name.startsWith('fidelity ') && x.name.includes('(f32)'));
    assert.ok(fidelity.length >= 2, `fidelity rows: ${fidelity.map((x) => x.name)}`);
    for (const f of fidelity) assert.ok(f.ours <= (f.name.includes('gradient') ? 1e-3 : 1e-4), `${f.name}: ${f.ours}`);
    assert.is(tfjs.length, 12, `tfjs rows: ${tfjs.map((x) => x.name)}`);
    assert.is(ortGpu.length, 7, `ORT WebGPU rows: ${ortGpu.map((x) => x.name)}`);
    assert.is(ortCpu.length, 7, `ORT CPU rows: ${ortCpu.map((x) => x.name)}`);
    for (const row of rows) {
      const nums: [string, number | undefined][] = [['ours', row.ours], ['peer_value', row.peer_value], ['speedup', row.speedup], ['peak_fraction', row.peak_fraction], ['spread[0]', row.spread?.[0]], ['spread[1]', row.spread?.[1]]];
      for (const [k, v] of nums) if (v !== undefined || k === 'ours') assert.ok(Number.isFinite(v) && (v as number) > 0, `${row.name}: ${k} = ${v} (${row.note ?? ''})`);
      if (row.peer) {
        assert.ok(row.peer_value !== undefined && row.speedup !== undefined, `${row.name}: peer row without peer figures`);
        // the ratio is peer time / our time, i.e. our rate / the peer's rate for these rate units
        assert.ok(Math.abs(row.speedup! / (row.ours / row.peer_value!) - 1) < 1e-9, `${row.name}: speedup ${row.speedup} is not ours/peer`);
        const m = row.note?.match(/rel\. L2 ([\d.e+-]+)/);
        assert.ok(m, `${row.name}: no agreement figure in note ${row.note}`);
        assert.ok(Number(m![1]) < 1e-4, `${row.name}: ours and the peer disagree (rel. L2 ${m![1]})`);
      }
    }
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

const torch = findTorchPython();
(torch.python ? test : test.skip)('tools/bench_torch.py at a tiny size prints finite timings (skipped without PyTorch)', async () => {
  const t = await runTorchBench(torch.python!, ['--seconds', '0.5', '--layers', '1', '--reps', '1', '--warmup', '0', '--train-batch', '1'], 180000);
  assert.is(t.frames, 24);
  assert.ok(t.parameters > 1e7);
  for (const v of [t.forward.median, t.forward.seconds_per_audio_second, t.train_step?.median, t.train_step?.seconds_per_audio_second]) assert.ok(Number.isFinite(v) && (v as number) > 0, `non-finite timing ${v}`);
});

(torch.python ? test : test.skip)('tools/bench_torch.py --serve times one repetition per request and refuses unknown ones (skipped without PyTorch)', async () => {
  const { server, meta } = await TorchServer.start(torch.python!, ['--seconds', '0.5', '--layers', '1', '--train-batch', '1'], 180000);
  try {
    assert.is(meta.frames, 24);
    const f = await server.run('forward');
    assert.ok(f.seconds > 0 && f.loss === null, `forward: ${JSON.stringify(f)}`);
    const t = await server.run('train');
    assert.ok(t.seconds > 0 && Number.isFinite(t.loss), `train: ${JSON.stringify(t)}`);
    // a bad request is answered with an error and the server keeps serving
    let refused = '';
    await server.run('bogus').catch((e: Error) => (refused = e.message));
    assert.match(refused, /unknown command 'bogus'/);
    assert.ok((await server.run('forward')).seconds > 0);
  } finally {
    server.close();
  }
});

test.run();
