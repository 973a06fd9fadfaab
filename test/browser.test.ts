// The library in headless Chromium (WebGPU on SwiftShader), checked against Node (Dawn on lavapipe): tools/browser-test.mjs
// runs the kernels, two tiny wav2vec2 forwards and a backward in the page on fixed inputs, compares every output with
// the same computation in Node, then drives the demo page through its file inputs and screenshots it. This file runs
// that tool once and asserts on what it measured.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

interface Output {
  name: string;
  shape: number[];
  relL2: number | null;
  error?: string;
}

interface Result {
  ok: boolean;
  failures: string[];
  outputs?: Output[];
  browser?: { version?: string; adapter?: string };
  demo?: {
    label: string;
    expected: string;
    probs: number[] | null;
    relL2: number;
    recording: { label: string; audio: string };
    url: { model: string; label: string; relL2: number; badError: string; staleCleared: boolean };
    png: { width: number; height: number; bytes: number; colours: number };
    screenshot: string;
  } | null;
}

const TOLERANCE = 1e-5;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-browser-'));
const jsonFile = path.join(tmp, 'result.json');
const run = spawnSync(process.execPath, ['tools/browser-test.mjs', '--json', jsonFile, '--out', path.join(tmp, 'out')], {
  cwd: process.cwd(),
  encoding: 'utf8',
  timeout: 8 * 60 * 1000,
  maxBuffer: 16 << 20,
});
const transcript = `${run.stdout ?? ''}${run.stderr ?? ''}`;
console.log(transcript.split('\n').filter((l) => l.startsWith('[browser-test]')).join('\n'));
const result: Result = fs.existsSync(jsonFile) ? JSON.parse(fs.readFileSync(jsonFile, 'utf8')) : { ok: false, failures: [`browser-test wrote no result (exit ${run.status}, ${run.signal ?? 'no signal'}):\n${transcript.slice(-3000)}`] };
const outputs = result.outputs ?? [];
const byPrefix = (prefix: string) => outputs.filter((o) => o.name === prefix || o.name.startsWith(`${prefix}.`));

function assertClose(prefix: string, expected: number) {
  const found = byPrefix(prefix);
  assert.is(found.length, expected, `${prefix}: ${found.length} outputs compared, expected ${expected}\n${result.failures.join('\n')}`);
  for (const o of found) {
    assert.ok(o.relL2 !== null && o.relL2 <= TOLERANCE, `${o.name} [${o.shape}]: ${o.error ? `failed: ${o.error.split('\n')[0]}` : `rel-L2 ${o.relL2} > ${TOLERANCE}`}`);
  }
}

test('the tool ran: Chromium with a WebGPU adapter', () => {
  assert.ok(outputs.length > 0, result.failures.join('\n'));
  assert.ok(result.browser?.adapter, 'no adapter reported by the page');
});

test('kernels in the browser match Node: matmul, conv1d, layer norm, attention forward and backward', () => {
  assertClose('matmul', 1);
  assertClose('conv1d', 1);
  assertClose('layerNorm', 1);
  assertClose('attention.forward', 1);
  assertClose('attention.backward', 3);
});

test('tiny wav2vec2 forward (both layouts) and backward in the browser match Node', () => {
  assertClose('wav2vec2.stable', 2);
  assertClose('wav2vec2.base', 2);
  assertClose('wav2vec2.backward', 8);
});

test('demo page: a model folder and a WAV through the file inputs give a label and Node\'s probabilities; screenshot', () => {
  const d = result.demo;
  assert.ok(d, `the demo page was not checked:\n${result.failures.join('\n')}`);
  assert.ok(d!.label.length > 0, 'no label shown');
  assert.is(d!.label, d!.expected);
  assert.ok(d!.relL2 <= TOLERANCE, `probabilities rel-L2 ${d!.relL2}`);
  assert.ok(fs.existsSync(d!.screenshot), 'no screenshot file');
  assert.ok(d!.png.width >= 400 && d!.png.height >= 400 && d!.png.colours >= 50, `screenshot looks empty: ${JSON.stringify(d!.png)}`);
});

test('demo page: a model loaded by URL (another origin) gives Node\'s probabilities; a URL with no model names the file and clears the result', () => {
  const u = result.demo?.url;
  assert.ok(u, `the URL case was not checked:\n${result.failures.join('\n')}`);
  assert.match(u!.model, /^Loaded http:\/\/127\.0\.0\.1:\d+\/model /);
  assert.is(u!.label, result.demo!.expected);
  assert.ok(u!.relL2 <= TOLERANCE, `probabilities rel-L2 ${u!.relL2}`);
  assert.match(u!.badError, /\/nothing-here\/config\.json: HTTP 404/);
  assert.ok(u!.staleCleared, 'the previous result stayed on the page after the failed load');
});

test('demo page: a recording (Chromium\'s fake microphone) is decoded, resampled to 16 kHz and labelled', () => {
  const r = result.demo?.recording;
  assert.ok(r, 'no recording checked');
  assert.match(r!.audio, /resampled from \d+ Hz to 16000 Hz/);
  assert.ok(r!.label.length > 0, 'no label for the recording');
});

test('no other failure (page errors, console errors)', () => {
  assert.ok(result.ok, result.failures.join('\n'));
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test.run();
