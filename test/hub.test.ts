// Hub model ids against test/fake-hub.ts, a stand-in for huggingface.co on 127.0.0.1 (nothing here reaches the
// internet): the cache layout, offline use, the one-line errors, the browser loader (Cache API, also in Chromium), and
// the CLI with HF_ENDPOINT.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { HubError, resolveModel, type DownloadProgress } from '../src/node/hub.js';
import { openModelDir } from '../src/node/modeldir.js';
import { fetchHubModelFiles, openHubModel, type CacheStorageLike } from '../src/io/hub-browser.js';
import { encodeWav } from '../src/audio/wav.js';
import { gitOid, isLfs, repos, requests, server, sha256, startServer, stopServer } from './fake-hub.js';

const root = process.cwd();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ser-hub-'));

let endpoint = '';
const quiet = { log: () => {}, onProgress: () => {} };
test.before(async () => {
  endpoint = await startServer();
});

function errorOf(p: Promise<unknown>): Promise<HubError> {
  return p.then(
    () => {
      throw new Error('expected a HubError');
    },
    (e: unknown) => {
      if (!(e instanceof HubError)) throw e;
      return e;
    },
  );
}

const cacheA = path.join(tmp, 'cache-a');
const w2v = repos.get('test-org/w2v-400')!;

test('a Hub id downloads into the huggingface_hub cache layout (blobs by etag, refs, relative snapshot symlinks)', async () => {
  const progress: DownloadProgress[] = [];
  const dir = await resolveModel('test-org/w2v-400', { endpoint, cacheDir: cacheA, offline: false, log: () => {}, onProgress: (p) => progress.push(p) });
  const storage = path.join(cacheA, 'models--test-org--w2v-400');
  assert.is(dir, path.join(storage, 'snapshots', w2v.commit));
  assert.is(fs.readFileSync(path.join(storage, 'refs/main'), 'utf8'), w2v.commit);
  // only what a model folder needs: the safetensors weights win over pytorch_model.bin, manifest.json is left
  assert.equal(fs.readdirSync(dir).sort(), ['config.json', 'model.safetensors', 'preprocessor_config.json']);
  for (const f of fs.readdirSync(dir)) {
    const b = w2v.files.get(f)!;
    const etag = isLfs(f) ? sha256(b) : gitOid(b);
    const link = fs.readlinkSync(path.join(dir, f));
    assert.is(link, path.join('..', '..', 'blobs', etag), `${f} links to its blob by a relative path`);
    assert.ok(fs.readFileSync(path.join(storage, 'blobs', etag)).equals(b), `${f}: blob content`);
  }
  assert.equal(fs.readdirSync(path.join(storage, 'blobs')).filter((f) => f.includes('incomplete')), []);
  const last = progress.filter((p) => p.file === 'model.safetensors').pop()!;
  assert.equal([last.loaded, last.total], [w2v.files.get('model.safetensors')!.length, w2v.files.get('model.safetensors')!.length]);
  // the folder opens as a model
  const md = await openModelDir(dir);
  assert.is(md.config.hidden_size, JSON.parse(w2v.files.get('config.json')!.toString()).hidden_size);
  await md.close();
});

test('a cached model needs no network: by commit id, with HF_HUB_OFFLINE, and when the Hub is unreachable', async () => {
  const before = requests.length;
  const byCommit = await resolveModel(`test-org/w2v-400@${w2v.commit}`, { endpoint, cacheDir: cacheA, offline: false, ...quiet });
  assert.is(requests.length, before, 'a complete snapshot of a commit id made a request');
  assert.is(path.basename(byCommit), w2v.commit);
  const env = process.env.HF_HUB_OFFLINE;
  process.env.HF_HUB_OFFLINE = '1';
  try {
    assert.is(await resolveModel('test-org/w2v-400', { endpoint, cacheDir: cacheA, ...quiet }), byCommit);
    assert.is(requests.length, before, 'HF_HUB_OFFLINE=1 made a request');
    const e = await errorOf(resolveModel('test-org/never-downloaded', { endpoint, cacheDir: cacheA, ...quiet }));
    assert.is(e.code, 'offline');
    assert.match(e.message, /test-org\/never-downloaded/);
    assert.match(e.message, /HF_HUB_OFFLINE/);
  } finally {
    if (env === undefined) delete process.env.HF_HUB_OFFLINE;
    else process.env.HF_HUB_OFFLINE = env;
  }
  // online, a branch is re-resolved (one metadata request) and nothing is downloaded again
  const n = requests.length;
  await resolveModel('test-org/w2v-400', { endpoint, cacheDir: cacheA, offline: false, ...quiet });
  assert.equal(requests.slice(n), ['GET /api/models/test-org/w2v-400/revision/main']);
});

test('Hub refusals are one line naming the model and what to do: 404, gated (401/403), revision, no weights', async () => {
  const opts = { endpoint, cacheDir: path.join(tmp, 'cache-err'), offline: false, ...quiet };
  let e = await errorOf(resolveModel('test-org/missing', opts));
  assert.is(e.code, 'not-found');
  assert.match(e.message, /^model test-org\/missing: not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\).*HF_TOKEN/);
  e = await errorOf(resolveModel('test-org/missing', { ...opts, token: 'hf_other' }));
  assert.is(e.code, 'not-found');
  assert.match(e.message, /HTTP 404/);
  e = await errorOf(resolveModel('test-org/gated', opts));
  assert.is(e.code, 'gated');
  assert.match(e.message, /^model test-org\/gated is gated \(HTTP 401\): accept its terms at http:\/\/127\.0\.0\.1:\d+\/test-org\/gated .*set HF_TOKEN/);
  e = await errorOf(resolveModel('test-org/gated', { ...opts, token: 'hf_not_accepted' }));
  assert.is(e.code, 'gated');
  assert.match(e.message, /HTTP 403.*not allowed yet/);
  const dir = await resolveModel('test-org/gated', { ...opts, token: 'hf_accepted' });
  assert.ok(fs.existsSync(path.join(dir, 'model.safetensors')), 'with an accepted token the gated model downloads');
  e = await errorOf(resolveModel('test-org/w2v-400@v9', opts));
  assert.is(e.code, 'revision-not-found');
  assert.match(e.message, /revision 'v9'/);
  e = await errorOf(resolveModel('test-org/no-weights', opts));
  assert.is(e.code, 'no-weights');
  assert.match(e.message, /^model test-org\/no-weights \(revision main\) has no model\.safetensors or pytorch_model\.bin.*only tf_model\.h5/);
  e = await errorOf(resolveModel('not/a/hub/id', opts));
  assert.is(e.code, 'bad-id');
  e = await errorOf(resolveModel('test-org/w2v-400', { ...opts, token: 'not-a-token' }));
  assert.is(e.code, 'unauthorized');
  assert.match(e.message, /start with hf_/);
  assert.ok(!fs.existsSync(path.join(opts.cacheDir, 'models--test-org--no-weights', 'refs')), 'a failed resolve wrote a ref');
});

test('a Hub that does not answer metadata requests within HF_HUB_ETAG_TIMEOUT counts as unreachable', async () => {
  const env = process.env.HF_HUB_ETAG_TIMEOUT;
  process.env.HF_HUB_ETAG_TIMEOUT = '0.3';
  try {
    const t0 = Date.now();
    const e = await errorOf(resolveModel('test-org/slow', { endpoint, cacheDir: path.join(tmp, 'cache-slow'), offline: false, ...quiet }));
    assert.is(e.code, 'network');
    assert.match(e.message, /^model test-org\/slow: cannot reach .* \(timed out\)/);
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  } finally {
    if (env === undefined) delete process.env.HF_HUB_ETAG_TIMEOUT;
    else process.env.HF_HUB_ETAG_TIMEOUT = env;
  }
});

test('pytorch_model.bin when there is no safetensors; sharded indexes bring their shards', async () => {
  const cacheDir = path.join(tmp, 'cache-kinds');
  const bin = await resolveModel('test-org/bin-only', { endpoint, cacheDir, offline: false, ...quiet });
  assert.equal(fs.readdirSync(bin).sort(), ['config.json', 'pytorch_model.bin']);
  const md = await openModelDir(bin);
  assert.ok(md.weights.entries.size > 10);
  await md.close();
  const sharded = await resolveModel('test-org/sharded', { endpoint, cacheDir, offline: false, ...quiet });
  assert.equal(fs.readdirSync(sharded).sort(), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
});

test('two resolves of the same model at once both succeed and leave intact blobs, no temporary files', async () => {
  const cacheDir = path.join(tmp, 'cache-race');
  const [a, b] = await Promise.all([1, 2].map(() => resolveModel('test-org/w2v-400', { endpoint, cacheDir, offline: false, ...quiet })));
  assert.is(a, b);
  for (const f of fs.readdirSync(a)) assert.ok(fs.readFileSync(path.join(a, f)).equals(w2v.files.get(f)!), `${f} differs from the repository's`);
  const storage = path.join(cacheDir, 'models--test-org--w2v-400');
  const stray = [...fs.readdirSync(path.join(storage, 'blobs')), ...fs.readdirSync(a), ...fs.readdirSync(path.join(storage, 'refs'))].filter((f) => /tmp|incomplete/.test(f));
  assert.equal(stray, []);
});

test('a download that does not match its sha256 is refused and leaves nothing in the cache', async () => {
  const cacheDir = path.join(tmp, 'cache-corrupt');
  const e = await errorOf(resolveModel('test-org/corrupt', { endpoint, cacheDir, offline: false, ...quiet }));
  assert.is(e.code, 'bad-response');
  assert.match(e.message, /model\.safetensors of model test-org\/corrupt: the download's sha256 is [0-9a-f]{64}, not/);
  const blobs = fs.readdirSync(path.join(cacheDir, 'models--test-org--corrupt', 'blobs'));
  assert.equal(blobs.filter((b) => b === sha256(repos.get('test-org/corrupt')!.files.get('model.safetensors')!) || b.includes('incomplete')), []);
});

test('browser loader: resolve URLs of the commit, kept in the Cache API; a cached model loads offline', async () => {
  const store = new Map<string, Map<string, { body: ArrayBuffer; headers: [string, string][] }>>();
  const caches: CacheStorageLike = {
    async open(name) {
      const c = store.get(name) ?? new Map();
      store.set(name, c);
      return {
        async match(url) {
          const hit = c.get(url);
          return hit ? new Response(hit.body, { headers: hit.headers }) : undefined;
        },
        async put(url, res) {
          c.set(url, { body: await res.arrayBuffer(), headers: [...res.headers] });
        },
      };
    },
  };
  const loaded: string[] = [];
  const model = await openHubModel('test-org/w2v-400', { endpoint, caches, onProgress: (p) => p.loaded === p.total && loaded.push(p.file) });
  assert.is(model.commit, w2v.commit);
  assert.is(model.weightsFile, 'model.safetensors');
  assert.ok(model.weights.entries.size > 10);
  assert.ok(loaded.includes('model.safetensors'));
  const keys = [...store.get('ser-webgpu-hub')!.keys()];
  assert.ok(keys.includes(`${endpoint}/test-org/w2v-400/resolve/${w2v.commit}/model.safetensors`), `cache keys: ${keys.join(', ')}`);
  // a throwing fetch stands for no network: everything comes from the cache, by branch and by commit
  const offline = (() => Promise.reject(new TypeError('fetch failed'))) as typeof fetch;
  const again = await fetchHubModelFiles('test-org/w2v-400', { endpoint, caches, fetch: offline });
  assert.ok(Buffer.from(await again.files.get('model.safetensors')!.arrayBuffer()).equals(w2v.files.get('model.safetensors')!));
  const byCommit = await fetchHubModelFiles(`test-org/w2v-400@${w2v.commit}`, { endpoint, caches, fetch: offline });
  assert.equal([...byCommit.files.keys()].sort(), ['config.json', 'model.safetensors', 'preprocessor_config.json']);
  const e = await errorOf(fetchHubModelFiles('test-org/bin-only', { endpoint, caches, fetch: offline }));
  assert.is(e.code, 'network');
  const gated = await errorOf(fetchHubModelFiles('test-org/gated', { endpoint, caches: null }));
  assert.is(gated.code, 'gated');
});

// Python's huggingface_hub, when importable (SER_HUB_PYTHON names the interpreter; default python3): it reads what we
// downloaded, offline, and what it downloads from the same fake Hub we read offline, with the same blob names.
const PY_INTEROP = `
import sys, json
from huggingface_hub import snapshot_download, hf_hub_download, scan_cache_dir
ours, theirs = sys.argv[1], sys.argv[2]
out = {"snapshot": snapshot_download("test-org/w2v-400", cache_dir=ours, local_files_only=True)}
out["warnings"] = [str(w) for w in scan_cache_dir(ours).warnings]
out["downloaded"] = [hf_hub_download("test-org/w2v-400", f, cache_dir=theirs) for f in ["config.json", "preprocessor_config.json", "model.safetensors"]]
print(json.dumps(out))
`;
test('huggingface_hub (Python) and resolveModel share the cache both ways', async () => {
  const python = process.env.SER_HUB_PYTHON || 'python3';
  const probe = spawnSync(python, ['-c', 'import huggingface_hub'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log(`  (skipped: ${python} cannot import huggingface_hub; set SER_HUB_PYTHON to an interpreter that can)`);
    return;
  }
  const theirs = path.join(tmp, 'cache-python');
  const { spawn } = await import('node:child_process');
  const py = await new Promise<{ status: number | null; out: string; err: string }>((resolve) => {
    const p = spawn(python, ['-c', PY_INTEROP, cacheA, theirs], { env: { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_OFFLINE: '', HF_HUB_DISABLE_TELEMETRY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (status) => resolve({ status, out, err }));
  });
  assert.is(py.status, 0, py.err.slice(-2000));
  const got = JSON.parse(py.out.trim().split('\n').pop()!) as { snapshot: string; warnings: string[]; downloaded: string[] };
  assert.is(got.snapshot, path.join(cacheA, 'models--test-org--w2v-400', 'snapshots', w2v.commit));
  assert.equal(got.warnings, []);
  const blobs = (cache: string) => fs.readdirSync(path.join(cache, 'models--test-org--w2v-400', 'blobs')).sort();
  assert.equal(blobs(theirs), blobs(cacheA), 'Python and we name the same files differently');
  const dir = await resolveModel('test-org/w2v-400', { cacheDir: theirs, offline: true, ...quiet });
  assert.is(dir, path.dirname(got.downloaded[0]));
  const md = await openModelDir(dir);
  assert.is(md.weightsFile, path.join(dir, 'model.safetensors'));
  await md.close();
});

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
test('in Chromium: the browser loader fills the real Cache API and loads from it without network', async () => {
  if (!fs.existsSync(CHROMIUM) || !fs.existsSync(path.join(root, 'dist/ser.browser.js'))) {
    console.log(`  (skipped: no ${fs.existsSync(CHROMIUM) ? 'dist/ser.browser.js' : CHROMIUM})`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--no-first-run'], timeout: 60000 });
  try {
    const page = await browser.newPage();
    await page.goto(`${endpoint}/page.html`);
    const out = await page.evaluate(async (commit) => {
      const bundle = '/dist/ser.browser.js'; // a variable: loaded by the page, not bundled into this test
      const ser = (await import(bundle)) as typeof import('../src/browser.js');
      const first = await ser.openHubModel('test-org/w2v-400', { endpoint: location.origin });
      const keys = (await (await caches.open('ser-webgpu-hub')).keys()).map((r: Request) => new URL(r.url).pathname);
      const offline = () => Promise.reject(new TypeError('Failed to fetch'));
      const again = await ser.openHubModel('test-org/w2v-400', { endpoint: location.origin, fetch: offline });
      const byCommit = await ser.fetchHubModelFiles(`test-org/w2v-400@${commit}`, { endpoint: location.origin, fetch: offline });
      let gated = '';
      try {
        await ser.fetchHubModelFiles('test-org/gated', { endpoint: location.origin });
      } catch (e) {
        gated = (e as Error).message;
      }
      return { commit: first.commit, tensors: first.weights.entries.size, again: again.weights.entries.size, keys, files: [...byCommit.files.keys()].sort(), gated };
    }, w2v.commit);
    assert.is(out.commit, w2v.commit);
    assert.ok(out.tensors > 10);
    assert.is(out.again, out.tensors);
    assert.ok(out.keys.includes(`/test-org/w2v-400/resolve/${w2v.commit}/model.safetensors`), out.keys.join(', '));
    assert.equal(out.files, ['config.json', 'model.safetensors', 'preprocessor_config.json']);
    assert.match(out.gated, /^model test-org\/gated is gated \(HTTP 401\)/);
  } finally {
    await browser.close();
  }
});

test('the CLI predicts with a Hub id (HF_ENDPOINT, HF_HUB_CACHE), and again with the server stopped', async () => {
  const cli = path.join(root, 'build/cli.mjs');
  const sr = 16000;
  const clip = new Float32Array(sr / 2);
  for (let i = 0; i < clip.length; i++) clip[i] = 0.3 * Math.sin((2 * Math.PI * 330 * i) / sr);
  const wav = path.join(tmp, 'clip.wav');
  fs.writeFileSync(wav, encodeWav(clip, sr));
  const env = { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'cache-cli'), HF_HUB_OFFLINE: '' };
  // spawnSync would block this process's event loop and so the server: run the CLI asynchronously
  const runCli = () =>
    new Promise<{ status: number | null; out: string }>((resolve) => {
      import('node:child_process').then(({ spawn }) => {
        const p = spawn(process.execPath, [cli, 'predict', 'test-org/w2v-400', wav, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (out += d));
        p.on('close', (status) => resolve({ status, out }));
      });
    });
  const first = await runCli();
  assert.is(first.status, 0, first.out);
  const rows = JSON.parse(first.out.slice(first.out.indexOf('['), first.out.lastIndexOf(']') + 1)) as { probs: Record<string, number> }[];
  await stopServer();
  const second = spawnSync(process.execPath, [cli, 'predict', 'test-org/w2v-400', wav, '--json'], { env, encoding: 'utf8' });
  assert.is(second.status, 0, second.stdout + second.stderr);
  assert.match(second.stderr, /unreachable; using the cached snapshot/);
  const again = JSON.parse(second.stdout.slice(second.stdout.indexOf('['), second.stdout.lastIndexOf(']') + 1)) as { probs: Record<string, number> }[];
  assert.equal(again[0].probs, rows[0].probs);
  // nothing cached and nobody to ask
  const none = spawnSync(process.execPath, [cli, 'predict', 'test-org/other-model', wav], { env: { ...env, HF_HUB_CACHE: path.join(tmp, 'cache-empty') }, encoding: 'utf8' });
  assert.is(none.status, 1);
  assert.match(none.stderr, /^ser: model test-org\/other-model: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/m);
});

test.after(() => {
  if (server.listening) server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();
