#!/usr/bin/env node
// The library in a real browser (`npm run test:browser`): Debian's chromium, headless, WebGPU on SwiftShader, driven
// by playwright-core (which never downloads a browser here: it is given /usr/bin/chromium).
//   1. web/check.html: the kernels (matmul, conv1d, layer norm, attention forward and backward) and two tiny
//      wav2vec2 models run in the page on fixed inputs (web/check.ts, on dist/ser.browser.js); the same function runs
//      in this process on Dawn (dist/ser.node.js); every output must agree to relative L2 <= 1e-5.
//   2. web/index.html, the demo page: a model folder like `npm run demo` writes (config.json, model.safetensors,
//      preprocessor_config.json) and a WAV are chosen through the page's file inputs; the page must show a label and
//      class probabilities equal (relative L2 <= 1e-5) to this process's prediction on the same files; then a
//      screenshot, which must be a real picture (size, many colours).
// Prints one line per output and a final verdict; exits 1 on any failure.
//   node tools/browser-test.mjs [--json FILE] [--out DIR]   (DIR: screenshot and model; default build/browser)
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const outDir = path.resolve(opt('--out', path.join(root, 'build/browser')));
const jsonFile = opt('--json', null);
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TOLERANCE = 1e-5;
// these gave a working WebGPU adapter (SwiftShader Vulkan) on a GPU-less Linux machine
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // the demo page's Record button: a fake microphone (a beep), no permission prompt
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];
const log = (m) => console.log(`[browser-test] ${m}`);

function ensureChromium() {
  if (fs.existsSync(CHROMIUM)) return;
  log(`${CHROMIUM} is missing: installing Debian's chromium (node tools/setup.mjs --browser)`);
  const r = spawnSync(process.execPath, [path.join(root, 'tools/setup.mjs'), '--browser'], { stdio: 'inherit', cwd: root });
  if (r.status !== 0 || !fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (setup --browser failed); set CHROMIUM_PATH to a Chromium 113+ binary`);
}

function ensureBuilt() {
  const need = ['dist/ser.browser.js', 'dist/ser.node.js', 'web/dist/app.js', 'web/dist/check.js'];
  if (need.every((f) => fs.existsSync(path.join(root, f)))) return;
  log('building (node tools/build.mjs)');
  const r = spawnSync(process.execPath, [path.join(root, 'tools/build.mjs')], { stdio: 'inherit', cwd: root });
  const missing = need.filter((f) => !fs.existsSync(path.join(root, f)));
  if (r.status !== 0 || missing.length) throw new Error(`build failed; missing ${missing.join(', ') || 'nothing, but the build reported errors'}`);
}

// ---------------------------------------------------------------------------------------------------------------
// the demo inputs: a model folder in the layout `npm run demo` writes, and a clip

const LABELS = ['anger', 'happiness', 'neutral', 'sadness', 'surprise'];
/** the demo's XLSR layout, one layer fewer */
const DEMO_MODEL_CONFIG = {
  model_type: 'wav2vec2',
  architectures: ['Wav2Vec2ForSpeechClassification'],
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  intermediate_size: 128,
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
  layer_norm_eps: 1e-5,
  pooling_mode: 'mean',
  id2label: Object.fromEntries(LABELS.map((l, i) => [String(i), l])),
  label2id: Object.fromEntries(LABELS.map((l, i) => [l, i])),
};

async function writeDemoInputs(api, dir) {
  const config = api.parseWav2Vec2Config(DEMO_MODEL_CONFIG);
  const weights = api.initWeights(config, { head: 'speech-classification', seed: 3 });
  // HF's init gives logits of ~1e-3 (probabilities all ~0.2): widen the last layer so the probabilities differ
  // and comparing them means something
  const out = weights.get('classifier.out_proj.weight').data;
  for (let i = 0; i < out.length; i++) out[i] *= 60;
  const modelDir = path.join(dir, 'model');
  await api.saveModelDir(modelDir, {
    config: DEMO_MODEL_CONFIG,
    preprocessor: api.preprocessorConfigJson(api.parsePreprocessorConfig({})),
    tensors: [...weights].map(([name, t]) => ({ name, shape: t.shape, data: t.data })),
  });
  // 1.3 s at 16 kHz: a vowel-like harmonic tone with vibrato, an amplitude envelope and a little noise
  const rate = 16000;
  const n = Math.round(1.3 * rate);
  const noise = (await import(pathToFileURL(path.join(root, 'web/dist/check.js')).href)).fixedRandom(99, n);
  const x = new Float32Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    phase += (2 * Math.PI * (140 + 25 * Math.sin(2 * Math.PI * 5 * t))) / rate;
    let v = 0;
    for (let h = 1; h <= 8; h++) v += Math.sin(h * phase) / h;
    x[i] = 0.25 * v * Math.sin((Math.PI * i) / n) + 0.01 * noise[i];
  }
  const wav = path.join(dir, 'clip.wav');
  fs.writeFileSync(wav, api.encodeWav(x, rate));
  // 9.1 s (the clip seven times): long enough for the page's emotion-over-time plot (4 s windows every second)
  const long = new Float32Array(7 * n);
  for (let r = 0; r < 7; r++) long.set(x, r * n);
  const longWav = path.join(dir, 'long.wav');
  fs.writeFileSync(longWav, api.encodeWav(long, rate));
  return { modelDir, wav, longWav, files: ['config.json', 'model.safetensors', 'preprocessor_config.json'].map((f) => path.join(modelDir, f)) };
}

/** What `ser predict` computes for one file: the same steps as the page on a 16 kHz WAV. */
async function nodePredict(api, rt, modelDir, wav) {
  const md = await api.openModelDir(modelDir);
  try {
    const { model } = await api.Wav2Vec2ForSpeechClassification.fromSource(rt, md.config, md.weights, { checkpoint: md.weightsFile });
    model.eval();
    const d = api.decodeWav(new Uint8Array(fs.readFileSync(wav)), wav);
    const mono = api.mixToMono(d.channels);
    const x = md.preprocessor.prepare([mono]);
    const p = api.noGrad(() =>
      api.tidy(() => {
        const input = api.Tensor.fromData(rt, x.values, x.shape, 'f32', 'input_values');
        const o = model.forward({ inputValues: input });
        const probs = api.softmax(o.logits);
        api.disposeOutput(o);
        return probs;
      }),
    );
    const probs = await p.readFloat();
    p.dispose();
    model.dispose();
    return { labels: md.config.labels, probs: Array.from(probs) };
  } finally {
    await md.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// screenshot check: decode the PNG (8-bit RGB/RGBA, no interlace: what Chromium writes) and count colours

function pngStats(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x89504e47) throw new Error(`${file} is not a PNG`);
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      const colorType = data[9];
      channels = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
      if (depth !== 8 || !channels || data[12] !== 0) throw new Error(`${file}: unexpected PNG format (depth ${depth}, colour type ${colorType})`);
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const prev = new Uint8Array(stride);
  const cur = new Uint8Array(stride);
  const colours = new Set();
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels] : 0;
      const b = prev[i];
      const c = i >= channels ? prev[i - channels] : 0;
      let p = line[i];
      if (f === 1) p += a;
      else if (f === 2) p += b;
      else if (f === 3) p += (a + b) >> 1;
      else if (f === 4) {
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        p += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      cur[i] = p & 255;
    }
    for (let i = 0; i < stride; i += channels) colours.add((cur[i] << 16) | (cur[i + 1] << 8) | cur[i + 2]);
    prev.set(cur);
  }
  return { width, height, bytes: buf.length, colours: colours.size };
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * A model host for the page's "load by URL": the files of one folder under /model/, on 127.0.0.1 (its own port, so
 * another origin than the page), with the CORS header a public host such as the Hub sends.
 */
async function serveFolder(dir) {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    const headers = { 'access-control-allow-origin': '*' };
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname).replace(/^\/model\//, '');
    const file = /^[\w.-]+$/.test(name) && !name.startsWith('.') ? path.join(dir, name) : null;
    if (req.method !== 'GET' || !file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

async function main() {
  const t0 = performance.now();
  ensureChromium();
  ensureBuilt();
  fs.mkdirSync(outDir, { recursive: true });
  const api = await import(pathToFileURL(path.join(root, 'dist/ser.node.js')).href);
  const check = await import(pathToFileURL(path.join(root, 'web/dist/check.js')).href);
  const { serve } = await import(pathToFileURL(path.join(root, 'tools/serve-web.mjs')).href);
  const { chromium } = await import('playwright-core');
  const result = { ok: false, node: {}, browser: {}, outputs: [], demo: null, seconds: 0, failures: [] };
  const fail = (m) => {
    result.failures.push(m);
    log(`FAIL ${m}`);
  };

  // Node (Dawn) side first: the reference outputs, and the demo inputs with their prediction
  const rt = await api.createNodeRuntime();
  const nodeT0 = performance.now();
  const nodeReport = await check.runChecks(api, rt);
  result.node = { adapter: nodeReport.adapter, ms: Math.round(performance.now() - nodeT0) };
  log(`node: ${nodeReport.adapter}: ${nodeReport.outputs.length} outputs in ${result.node.ms} ms`);
  const demoDir = path.join(outDir, 'demo-input');
  fs.rmSync(demoDir, { recursive: true, force: true });
  const demo = await writeDemoInputs(api, demoDir);
  const nodePrediction = await nodePredict(api, rt, demo.modelDir, demo.wav);
  rt.destroy();

  const server = await serve({ port: 0 });
  const modelServer = await serveFolder(demo.modelDir);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, timeout: 60000 });
  const pageErrors = [];
  // while the page is made to fail on purpose (a URL with no model), its console errors are the expected ones
  let expectingErrors = false;
  try {
    result.browser.version = browser.version();
    const context = await browser.newContext({ viewport: { width: 900, height: 1000 }, permissions: ['microphone'] });
    const watch = (page, what) => {
      page.on('pageerror', (e) => pageErrors.push(`${what}: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error' && !expectingErrors) pageErrors.push(`${what} console: ${m.text()}`);
      });
    };

    // 1. kernels in the page vs Node
    const page = await context.newPage();
    watch(page, 'check.html');
    await page.goto(`${server.url}/web/check.html`);
    const browserT0 = performance.now();
    const browserReport = await page.evaluate(async () => {
      const api = await import('/dist/ser.browser.js');
      const { runChecks } = await import('/web/dist/check.js');
      const rt = await api.createBrowserRuntime();
      try {
        return await runChecks(api, rt);
      } finally {
        rt.destroy();
      }
    });
    result.browser.adapter = browserReport.adapter;
    result.browser.ms = Math.round(performance.now() - browserT0);
    log(`browser: Chromium ${result.browser.version}, ${browserReport.adapter}: ${browserReport.outputs.length} outputs in ${result.browser.ms} ms`);
    const failed = (report, name) => report.outputs.find((o) => o.error && (o.name === name || name.startsWith(`${o.name}.`)));
    // first line; a long one (a batch error lists its dispatches first) keeps its start and its end, where the cause is
    const short = (msg) => {
      const line = msg.split('\n')[0];
      return line.length > 400 ? `${line.slice(0, 120)} … ${line.slice(-280)}` : line;
    };
    for (const e of nodeReport.outputs.filter((o) => o.error)) fail(`${e.name} failed in Node: ${short(e.error)}`);
    for (const e of browserReport.outputs.filter((o) => o.error)) fail(`${e.name} failed in the browser: ${short(e.error)}`);
    for (const ref of nodeReport.outputs.filter((o) => !o.error)) {
      const got = browserReport.outputs.find((o) => o.name === ref.name && !o.error);
      if (!got) {
        const e = failed(browserReport, ref.name);
        result.outputs.push({ name: ref.name, shape: ref.shape, relL2: null, error: e?.error ?? 'missing' });
        if (e) log(`FAIL ${ref.name}: not computed (${e.name} failed)`);
        else fail(`${ref.name}: missing from the browser's outputs`);
        continue;
      }
      const err = got.shape.join() === ref.shape.join() ? check.relativeL2(got.data, ref.data) : Infinity;
      result.outputs.push({ name: ref.name, shape: ref.shape, relL2: err, browserMs: Math.round(got.ms), nodeMs: Math.round(ref.ms) });
      const line = `${ref.name.padEnd(72)} [${ref.shape.join(', ')}]`.padEnd(90) + ` rel-L2 ${err.toExponential(2)}  (browser ${Math.round(got.ms)} ms, node ${Math.round(ref.ms)} ms)`;
      if (err <= TOLERANCE) log(`ok   ${line}`);
      else fail(`${line} > ${TOLERANCE}`);
    }
    await page.close();

    // 2. the demo page, driven through its inputs like a user: the folder picker (given the folder above the model, as
    // when one picks demo-out), a WAV, the Predict button, the file picker, and a recording from Chromium's fake
    // microphone (a beep: exercises MediaRecorder, decodeAudioData and the OfflineAudioContext resampler)
    const demoPage = await context.newPage();
    watch(demoPage, 'index.html');
    await demoPage.goto(`${server.url}/web/index.html`);
    await demoPage.waitForFunction(() => /WebGPU:/.test(document.getElementById('gpu-status')?.textContent ?? '') || document.getElementById('gpu-status')?.classList.contains('error'), null, { timeout: 60000 });
    const gpuLine = await demoPage.textContent('#gpu-status');
    if (!/^WebGPU:/.test(gpuLine ?? '')) throw new Error(`demo page has no WebGPU: ${gpuLine}`);
    const state = () =>
      demoPage.evaluate(() => {
        const el = (id) => document.getElementById(id);
        const r = el('label')?.getBoundingClientRect();
        return {
          label: el('label')?.textContent ?? '',
          labelVisible: !!r && r.width > 0 && r.height > 0,
          probs: JSON.parse(el('probs')?.dataset.probs ?? 'null'),
          count: Number(el('probs')?.dataset.count ?? 0),
          timing: el('timing')?.textContent ?? '',
          model: el('model-status')?.textContent ?? '',
          audio: el('audio-status')?.textContent ?? '',
          error: el('error')?.textContent ?? '',
        };
      });
    const modelLoaded = () => demoPage.waitForFunction(() => document.getElementById('model-status')?.dataset.loaded === 'true' || document.getElementById('error')?.textContent, null, { timeout: 120000 });
    const prediction = async (n) => {
      await demoPage.waitForFunction((k) => Number(document.getElementById('probs')?.dataset.count ?? 0) >= k || document.getElementById('error')?.textContent, n, { timeout: 120000 });
      const st = await state();
      if (st.error) throw new Error(`demo page: ${st.error}`);
      return st;
    };
    const d0 = performance.now();
    await demoPage.setInputFiles('#model-dir', demoDir);
    await modelLoaded();
    await demoPage.setInputFiles('#audio-file', demo.wav);
    const first = await prediction(1);
    await demoPage.click('#predict');
    const again = await prediction(2);
    await demoPage.setInputFiles('#model-files', demo.files);
    const reloaded = await prediction(3); // a new model with a clip present predicts at once
    // the same model by URL (another origin, as a model host would be): the page fetches config, preprocessor config
    // and weights (at the end, a URL with no model behind it: the error names what failed and the stale result goes)
    await demoPage.fill('#model-url', `${modelServer.url}/model/`);
    await demoPage.click('#model-load');
    const byUrl = await prediction(4);
    const screenshot = path.join(outDir, 'demo.png');
    await demoPage.screenshot({ path: screenshot, fullPage: true });
    const png = pngStats(screenshot);
    await demoPage.click('#record');
    await demoPage.waitForTimeout(1500);
    await demoPage.click('#record');
    const recorded = await prediction(5);
    // a long clip: the page adds the timeline plot (one line per label over 4 s windows)
    await demoPage.setInputFiles('#audio-file', demo.longWav);
    await prediction(6);
    await demoPage.waitForFunction(() => document.querySelector('#timeline svg') || document.getElementById('error')?.textContent, null, { timeout: 120000 });
    const timeline = await demoPage.evaluate(() => ({ svg: !!document.querySelector('#timeline svg'), text: document.querySelector('#timeline')?.textContent ?? '' }));
    expectingErrors = true;
    await demoPage.fill('#model-url', `${modelServer.url}/nothing-here`);
    await demoPage.click('#model-load');
    await demoPage.waitForFunction(() => document.getElementById('error')?.textContent, null, { timeout: 60000 });
    const badUrl = await state();
    expectingErrors = false;

    const best = nodePrediction.probs.indexOf(Math.max(...nodePrediction.probs));
    const expected = nodePrediction.labels[best];
    const err = (st) => (st.probs ? check.relativeL2(st.probs, nodePrediction.probs) : Infinity);
    result.demo = {
      label: first.label,
      expected,
      probs: first.probs,
      nodeProbs: nodePrediction.probs,
      relL2: Math.max(err(first), err(again), err(reloaded), err(byUrl)),
      url: { model: byUrl.model.split('\n')[0], label: byUrl.label, relL2: err(byUrl), badError: badUrl.error, staleCleared: !badUrl.labelVisible && badUrl.probs === null },
      timing: first.timing,
      warmTiming: again.timing,
      recording: { label: recorded.label, audio: recorded.audio, timing: recorded.timing },
      timeline,
      seconds: Math.round(performance.now() - d0) / 1000,
      screenshot,
      png,
    };
    log(`demo page: folder picker -> "${first.model.split('\n')[0]}"`);
    log(`demo page: label "${first.label}" (Node: "${expected}"), probabilities rel-L2 ${err(first).toExponential(2)}; ${first.timing}`);
    log(`demo page: Predict again: rel-L2 ${err(again).toExponential(2)}; ${again.timing}`);
    log(`demo page: files picker: label "${reloaded.label}", rel-L2 ${err(reloaded).toExponential(2)}`);
    log(`demo page: model by URL: "${byUrl.model.split('\n')[0]}": label "${byUrl.label}", rel-L2 ${err(byUrl).toExponential(2)}`);
    log(`demo page: a URL with no model: "${badUrl.error}"`);
    log(`demo page: recording (fake microphone): ${recorded.audio}; label "${recorded.label}"; ${recorded.timing}`);
    log(`screenshot ${path.relative(root, screenshot)}: ${png.width}x${png.height}, ${png.bytes} bytes, ${png.colours} colours`);
    if (!/model/.test(first.model.split('\n')[0])) fail(`the folder picker did not find the model folder: ${first.model}`);
    for (const [what, st] of [['first prediction', first], ['Predict again', again], ['after choosing the files', reloaded], ['model by URL', byUrl], ['recording', recorded]]) {
      if (!LABELS.includes(st.label) || !st.labelVisible) fail(`demo page (${what}) shows no label (got "${st.label}")`);
    }
    if (!byUrl.model.includes(`${modelServer.url}/model`)) fail(`the model loaded by URL is not named by its URL: ${byUrl.model}`);
    if (!badUrl.error.includes(`${modelServer.url}/nothing-here/config.json: HTTP 404`)) fail(`a URL with no model: the error does not name the file that failed: "${badUrl.error}"`);
    if (badUrl.labelVisible || badUrl.probs !== null) fail('a failed model load left the previous result on the page');
    if (!timeline.svg || !LABELS.every((l) => timeline.text.includes(l))) fail(`a 9 s clip got no emotion-over-time plot with every label (${JSON.stringify(timeline)})`);
    log(`demo page: 9.1 s clip: timeline plot with ${LABELS.length} label lines`);
    for (const [what, st] of [['first prediction', first], ['Predict again', again], ['after choosing the files', reloaded], ['model by URL', byUrl]]) {
      if (st.label !== expected) fail(`demo page (${what}): label "${st.label}" != Node's "${expected}"`);
      if (!(err(st) <= TOLERANCE)) fail(`demo page (${what}): probabilities differ from Node's: rel-L2 ${err(st)}`);
    }
    if (!/resampled from \d+ Hz to 16000 Hz/.test(recorded.audio)) fail(`the recording was not resampled to 16 kHz: ${recorded.audio}`);
    if (png.width < 400 || png.height < 400 || png.bytes < 10000 || png.colours < 50) fail(`screenshot looks empty: ${JSON.stringify(png)}`);
  } finally {
    await browser.close();
    await server.close();
    await modelServer.close();
  }
  if (pageErrors.length) for (const e of pageErrors) fail(`page: ${e}`);
  result.seconds = Math.round(performance.now() - t0) / 1000;
  result.ok = result.failures.length === 0;
  log(`${result.ok ? 'PASS' : 'FAIL'}: ${result.outputs.length} outputs compared, demo page checked, ${result.seconds} s`);
  return result;
}

let result;
try {
  result = await main();
} catch (e) {
  result = { ok: false, failures: [String(e?.stack ?? e)] };
  console.error(`[browser-test] ERROR ${e?.stack ?? e}`);
}
if (jsonFile) fs.writeFileSync(jsonFile, JSON.stringify(result, null, 1));
// Dawn's pinned instance can keep the event loop alive: leave explicitly
process.exit(result.ok ? 0 : 1);
