// The npm package as a user gets it: `npm pack` (which builds on prepack), then the tarball installed into an empty
// temporary folder outside the repository, where the CLI, a Node ESM script, TypeScript (nodenext, skipLibCheck
// false) and esbuild (browser export) must all work. The install is offline: the folder gets a package-lock.json
// whose entries are the repository's own locked runtime dependencies, so npm takes every tarball from its cache
// (they are there because this checkout installed them) and no registry is asked.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { encodeWav } from '../src/audio/wav.js';
import { startServer, stopServer, repos } from './fake-hub.js';

const root = process.cwd();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-package-'));
const app = path.join(tmp, 'app');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, env: { ...process.env, FORCE_COLOR: '0', npm_config_update_notifier: 'false' } });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}
function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.is(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

let tarball = '';

test('npm pack builds on prepack and ships dist, the CLI, README and LICENSE only', () => {
  const out = ok(run(npm, ['pack', '--json', '--pack-destination', tmp], root, 180_000), 'npm pack');
  // npm prints the build's own lines before the JSON report
  const report = JSON.parse(out.slice(out.indexOf('[\n'))) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(tmp, report[0].filename);
  assert.ok(fs.existsSync(tarball), `${tarball} was not written`);
  const files = report[0].files.map((f) => f.path);
  for (const want of ['package.json', 'README.md', 'LICENSE', 'bin/ser.mjs', 'dist/cli.mjs', 'dist/ser.node.js', 'dist/ser.node.d.ts', 'dist/ser.browser.js', 'dist/ser.browser.d.ts', 'dist/types/index.d.ts']) {
    assert.ok(files.includes(want), `the tarball lacks ${want}`);
  }
  const stray = files.filter((f) => /^(test|bench|tools|src|kernels|web|data|build)\//.test(f) || /fixtures|\.test\./.test(f));
  assert.equal(stray, [], 'the tarball carries files users do not need');
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  assert.not.ok(manifest.private, 'package.json is private: npm publish would refuse it');
  assert.is(manifest.license, 'MIT');
});

test('the tarball installs offline into an empty folder outside the repository', () => {
  assert.ok(tarball, 'no tarball (the pack test failed)');
  fs.mkdirSync(app);
  const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; dev?: boolean; resolved?: string; link?: boolean }> };
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string; license: string; dependencies: Record<string, string>; bin: Record<string, string>; engines: Record<string, string> };
  const spec = `file:${path.relative(app, tarball)}`;
  const integrity = `sha512-${crypto.createHash('sha512').update(fs.readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'app', dependencies: { 'ser-webgpu': spec } },
    'node_modules/ser-webgpu': { version: manifest.version, resolved: spec, integrity, license: manifest.license, dependencies: manifest.dependencies, bin: manifest.bin, engines: manifest.engines },
  };
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (!key || entry.dev || entry.link) continue;
    // this repository's lockfile omits registry URLs (omit-lockfile-registry-resolved); with them npm reads the
    // tarball from its cache by integrity instead of asking the registry for the package's metadata
    const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    packages[key] = { ...entry, resolved: entry.resolved ?? `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz` };
  }
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { 'ser-webgpu': spec } }, null, 2));
  fs.writeFileSync(path.join(app, 'package-lock.json'), JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }, null, 2));
  const r = run(npm, ['ci', '--offline', '--no-audit', '--no-fund'], app, 180_000);
  if (r.status !== 0 && /ENOTCACHED/.test(r.stderr)) {
    assert.unreachable(`npm's cache lacks a runtime dependency, so the offline install cannot work here (run npm install in the repository once with network): ${r.stderr.split('\n').find((l) => /ENOTCACHED|request to/.test(l))}`);
  }
  ok(r, 'npm ci --offline');
  assert.ok(fs.existsSync(path.join(app, 'node_modules/ser-webgpu/dist/ser.node.js')));
  assert.not.ok(fs.existsSync(path.join(app, 'node_modules/esbuild')), 'a devDependency was installed');
});

test('npx ser --help and npx ser predict work from the installed package', () => {
  const help = ok(run('npx', ['--no-install', 'ser', '--help'], app), 'npx ser --help');
  assert.match(help, /usage: ser <command>/);
  assert.match(help, /predict/);
  // a model folder and a clip, copied/written outside the repository
  const model = path.join(app, 'model');
  fs.mkdirSync(model);
  for (const f of ['config.json', 'preprocessor_config.json', 'model.safetensors']) fs.copyFileSync(path.join(root, 'test/fixtures/w2v_400', f), path.join(model, f));
  const sr = 16000;
  const clip = new Float32Array(sr);
  for (let i = 0; i < clip.length; i++) clip[i] = 0.3 * Math.sin((2 * Math.PI * 220 * i) / sr) + 0.05 * Math.sin((2 * Math.PI * 1375 * i) / sr);
  fs.writeFileSync(path.join(app, 'tone.wav'), encodeWav(clip, sr));
  const out = ok(run('npx', ['--no-install', 'ser', 'predict', 'model', 'tone.wav', '--json'], app, 300_000), 'npx ser predict');
  const rows = JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as { file: string; label: string; probs: Record<string, number> }[];
  const labels = Object.values((JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')) as { id2label: Record<string, string> }).id2label);
  assert.is(rows.length, 1);
  assert.is(rows[0].file, 'tone.wav');
  assert.equal(Object.keys(rows[0].probs).sort(), [...labels].sort());
  const total = Object.values(rows[0].probs).reduce((a, b) => a + b, 0);
  assert.ok(Math.abs(total - 1) < 1e-4, `probabilities sum to ${total}`);
  const best = Object.entries(rows[0].probs).sort((a, b) => b[1] - a[1])[0][0];
  assert.is(rows[0].label, best);
});

test('a Node ESM script imports ser-webgpu and reads the model folder through it', () => {
  fs.writeFileSync(
    path.join(app, 'script.mjs'),
    `import { openModelDir, decodeWav, parseWav2Vec2Config } from 'ser-webgpu';
import fs from 'node:fs';
const dir = await openModelDir('model');
const audio = decodeWav(new Uint8Array(fs.readFileSync('tone.wav')), 'tone.wav');
console.log(JSON.stringify({ hidden: dir.config.hidden_size, tensors: dir.weights.entries.size, rate: audio.sampleRate, parse: typeof parseWav2Vec2Config }));
await dir.close();
`,
  );
  const out = JSON.parse(ok(run(process.execPath, ['script.mjs'], app), 'node script.mjs').trim()) as { hidden: number; tensors: number; rate: number; parse: string };
  const config = JSON.parse(fs.readFileSync(path.join(app, 'model/config.json'), 'utf8')) as { hidden_size: number };
  assert.is(out.hidden, config.hidden_size);
  assert.ok(out.tensors > 10, `${out.tensors} tensors`);
  assert.is(out.rate, 16000);
  assert.is(out.parse, 'function');
});

test("README's One call example runs from the installed package (paths pointed at a model and clip here)", () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = readme.match(/## One call\n\n```js\n([\s\S]*?)```/);
  assert.ok(m, 'README has a One call section with a js block');
  const code = m![1].replaceAll("'demo-out/run/model'", "'model'").replaceAll("'demo-out/corpus/wav/F01A01.wav'", "'tone.wav'");
  assert.not.match(code, /demo-out/, 'every demo path was replaced');
  fs.writeFileSync(path.join(app, 'one-call.mjs'), code);
  const out = ok(run(process.execPath, ['one-call.mjs'], app, 300_000), 'node one-call.mjs');
  const labels = Object.values((JSON.parse(fs.readFileSync(path.join(app, 'model/config.json'), 'utf8')) as { id2label: Record<string, string> }).id2label);
  assert.match(out, /label: '/);
  assert.ok(labels.some((l) => out.includes(`label: '${l}'`)), `no model label in the output:\n${out}`);
  assert.match(out, /start: 0,/, 'the timeline');
});

test("README's Using the engine example trains from the installed package: the loss falls", () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = readme.match(/## Using the engine\n\n[^`]*```js\n([\s\S]*?)```/);
  assert.ok(m, 'README has a Using the engine section with a js block');
  fs.writeFileSync(path.join(app, 'engine.mjs'), m![1]);
  const out = ok(run(process.execPath, ['engine.mjs'], app, 300_000), 'node engine.mjs');
  const losses = [...out.matchAll(/step (\d+): loss ([\d.]+)/g)].map((x) => Number(x[2]));
  assert.is(losses.length, 3, out);
  assert.ok(Math.abs(losses[0] - Math.log(5)) < 1e-3, `zero weights: loss ln 5, got ${losses[0]}`);
  assert.ok(losses[2] < 0.5 * losses[0], `loss fell: ${losses.join(' ')}`);
});

test('a Hub id through the installed package: resolveModel from a script, npx ser predict with HF_ENDPOINT', async () => {
  // the fake Hub runs in this process, so the children run asynchronously (spawnSync would block its event loop)
  const endpoint = await startServer();
  try {
    const env = { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'hub-cache'), HF_HUB_OFFLINE: '' };
    const runAsync = (args: string[]) =>
      new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(args[0], args.slice(1), { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('close', (status) => resolve({ status, out, err }));
      });
    fs.writeFileSync(path.join(app, 'hub.mjs'), `import { resolveModel } from 'ser-webgpu';\nconsole.log(await resolveModel('test-org/w2v-400'));\n`);
    const script = await runAsync([process.execPath, 'hub.mjs']);
    assert.is(script.status, 0, script.err);
    const commit = repos.get('test-org/w2v-400')!.commit;
    assert.is(script.out.trim(), path.join(tmp, 'hub-cache', 'models--test-org--w2v-400', 'snapshots', commit));
    const predict = await runAsync(['npx', '--no-install', 'ser', 'predict', 'test-org/w2v-400', 'tone.wav', '--json']);
    assert.is(predict.status, 0, predict.err);
    const local = JSON.parse(ok(run('npx', ['--no-install', 'ser', 'predict', 'model', 'tone.wav', '--json'], app, 300_000), 'npx ser predict model').replace(/^[^[]*/, '').replace(/[^\]]*$/, '')) as { probs: unknown }[];
    const viaHub = JSON.parse(predict.out.replace(/^[^[]*/, '').replace(/[^\]]*$/, '')) as { probs: unknown }[];
    assert.equal(viaHub[0].probs, local[0].probs, 'the Hub copy and the local folder (same files) predict differently');
  } finally {
    await stopServer();
  }
});

test('the .d.ts type-check under moduleResolution nodenext with skipLibCheck false, and catch a wrong use', () => {
  const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
  fs.writeFileSync(
    path.join(app, 'use.ts'),
    `import { openModelDir, encodeWav, audioClassifier, type ModelDir, type LabelScore, type TimelineEntry } from 'ser-webgpu';
import * as browser from 'ser-webgpu/browser';
export async function top(file: string): Promise<string> {
  const clf = await audioClassifier('model', { dtype: 'f32', revision: 'main' });
  const r = await clf(file, { topK: 1 });
  const many = await clf([file, { samples: new Float32Array(16000), samplingRate: 16000 }]);
  const timeline: TimelineEntry[] = await clf(file, { window: 1, hop: 0.5 });
  clf.dispose();
  return (Array.isArray(r) ? (r as LabelScore[])[0].label : Object.keys(r)[0]) + many.length + timeline.length;
}
export const fromBrowserClassifier = browser.audioClassifier;
export async function hidden(dir: string): Promise<number> {
  const m: ModelDir = await openModelDir(dir);
  await m.close();
  return m.config.hidden_size;
}
export const bytes: Uint8Array = encodeWav(new Float32Array(16), 16000);
export const fromBrowser: unknown = browser;
`,
  );
  const config = { compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, skipLibCheck: false, noEmit: true }, files: ['use.ts'] };
  fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(config, null, 2));
  const good = run(process.execPath, [tsc, '-p', '.'], app);
  assert.is(good.status, 0, `tsc on the installed package:\n${good.stdout}${good.stderr}`);
  // the types are real: a misspelt field is an error (so the clean run above is not vacuous)
  fs.writeFileSync(path.join(app, 'use.ts'), `import { openModelDir } from 'ser-webgpu';\nexport const n = (await openModelDir('x')).config.hiddenSize;\n`);
  const bad = run(process.execPath, [tsc, '-p', '.'], app);
  assert.is.not(bad.status, 0, 'tsc accepted a field that does not exist');
  assert.match(bad.stdout + bad.stderr, /hiddenSize/);
});

test('esbuild bundles a page against the browser export without Node built-ins', async () => {
  const esbuild = await import('esbuild');
  fs.writeFileSync(path.join(app, 'page.js'), `import { decodeAudio, openModelFiles } from 'ser-webgpu';\nglobalThis.ser = { decodeAudio, openModelFiles };\n`);
  const r = await esbuild.build({ absWorkingDir: app, entryPoints: ['page.js'], bundle: true, format: 'esm', platform: 'browser', outdir: 'out', splitting: true, metafile: true, logLevel: 'silent' });
  const inputs = Object.keys(r.metafile.inputs);
  assert.ok(inputs.some((i) => i.endsWith('node_modules/ser-webgpu/dist/ser.browser.js')), `the browser condition did not pick dist/ser.browser.js: ${inputs.join(', ')}`);
  assert.not.ok(inputs.some((i) => i.includes('ser.node.js')), 'the Node entry was bundled for the browser');
  for (const file of Object.keys(r.metafile.outputs).filter((f) => f.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(app, file), 'utf8');
    assert.not.match(text, /["'`]node:[a-z]/, `${file} imports a Node built-in`);
  }
});

test.after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();
