// The demo page: pick a model folder (or its files) and an audio file or a recording; the page predicts the emotion
// with the library bundle on the page's WebGPU device and shows class probabilities and timings. The import below is
// rewritten by the build to the library bundle (../../dist/ser.browser.js), so the page loads it like any user would.
import * as ser from '../src/browser.js';

type Model = ser.SpeechClassifier;

interface LoadedModel {
  model: Model;
  config: ser.ModelConfigBase;
  preprocessor: ser.AudioPreprocessor;
  name: string;
}

interface Clip {
  name: string;
  blob: Blob;
  rate: number;
  /** mono, at the model's sampling rate */
  samples: Float32Array;
  sourceRate: number;
  decodeMs: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const gpuStatus = $('gpu-status');
const modelStatus = $('model-status');
const audioStatus = $('audio-status');
const predictButton = $<HTMLButtonElement>('predict');
const recordButton = $<HTMLButtonElement>('record');
const player = $<HTMLAudioElement>('player');
const errorBox = $('error');

let runtime: Promise<ser.Runtime> | null = null;
let loaded: LoadedModel | null = null;
let clip: Clip | null = null;
let busy = false;
let predictions = 0;

function setStatus(el: HTMLElement, text: string, error = false): void {
  el.textContent = text;
  el.classList.toggle('error', error);
}

/** An error replaces the last result: a stale label next to an error would read as this clip's answer. */
function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  errorBox.textContent = msg;
  $('result').classList.remove('shown');
  $('label').textContent = '';
  $('probs').replaceChildren();
  delete $('probs').dataset.probs;
  $('timing').textContent = '';
  $('timeline').replaceChildren();
  console.error(e);
}

function ms(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`;
}

function getRuntime(): Promise<ser.Runtime> {
  if (!runtime) {
    runtime = ser.createBrowserRuntime().then(
      (rt) => {
        const a = rt.adapter;
        const name = [a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'unnamed adapter';
        setStatus(gpuStatus, `WebGPU: ${name}${a.isCPU ? ' (software: expect slow inference)' : ''}; ${rt.hasSubgroups ? 'subgroups' : 'no subgroups'}, ${rt.hasF16 ? 'f16' : 'no f16'}`);
        return rt;
      },
      (e) => {
        setStatus(gpuStatus, (e as Error).message, true);
        throw e;
      },
    );
  }
  return runtime;
}

// ---------------------------------------------------------------------------------------------------------------
// model

/**
 * A folder pick (webkitdirectory) brings every file below it: group them by directory and take the shallowest one
 * that has both config.json and weights (picking demo-out finds demo-out/run/model).
 */
function chooseModelFiles(files: File[]): { name: string; files: [string, Blob][] } {
  const dirs = new Map<string, File[]>();
  for (const f of files) {
    const rel = f.webkitRelativePath || f.name;
    const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    if (!dirs.has(dir)) dirs.set(dir, []);
    dirs.get(dir)!.push(f);
  }
  const usable = [...dirs].filter(([, fs]) => {
    const names = fs.map((f) => f.name);
    return names.includes('config.json') && ser.WEIGHT_FILES.some((w) => names.includes(w));
  });
  usable.sort((a, b) => a[0].split('/').length - b[0].split('/').length || a[0].localeCompare(b[0]));
  const [dir, chosen] = usable[0] ?? [...dirs][0] ?? ['', []];
  return { name: dir || 'selected files', files: chosen.map((f) => [f.name, f]) };
}

type ModelFiles = Awaited<ReturnType<typeof ser.openModelFiles>>;

async function loadModel(files: File[]): Promise<void> {
  if (!files.length) return;
  const { name, files: entries } = chooseModelFiles(files);
  await loadModelFrom(name, () => ser.openModelFiles(entries, name));
}

/**
 * A model named in the text box: a URL of a folder (http(s)://, or a path on this site) is fetched file by file like
 * a Hub repository's resolve URLs; anything else is a Hub id org/name[@revision].
 */
async function loadModelByName(text: string): Promise<void> {
  const spec = text.trim();
  if (!spec) throw new Error('enter a Hub id (org/name or org/name@revision) or the URL of a model folder');
  if (/^(https?:\/\/|\/|\.\.?\/)/i.test(spec)) {
    const base = new URL(spec.endsWith('/') ? spec : `${spec}/`, location.href);
    await loadModelFrom(base.href.replace(/\/$/, ''), () => fetchModelFolder(base));
    return;
  }
  await loadModelFrom(spec, () =>
    ser.openHubModel(spec, {
      onProgress: (p) => setStatus(modelStatus, `Downloading ${p.repo}/${p.file}: ${(p.loaded / 1e6).toFixed(1)} of ${(p.total / 1e6).toFixed(1)} MB`),
    }),
  );
}

/** config.json, preprocessor_config.json (optional) and model.safetensors, else pytorch_model.bin, below a folder URL. */
async function fetchModelFolder(base: URL): Promise<ModelFiles> {
  const get = async (file: string, optional: boolean): Promise<Blob | null> => {
    const url = new URL(file, base).href;
    setStatus(modelStatus, `Fetching ${url}…`);
    let res: Response;
    try {
      res = await fetch(url);
    } catch (e) {
      throw new Error(`${url}: cannot fetch it (${(e as Error).message || 'network error'}; a server on another origin must allow it with CORS)`);
    }
    if (res.status === 404 && optional) return null;
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    return res.blob();
  };
  const files = new Map<string, Blob>();
  files.set('config.json', (await get('config.json', false))!);
  const pp = await get('preprocessor_config.json', true);
  if (pp) files.set('preprocessor_config.json', pp);
  const safetensors = await get('model.safetensors', true);
  if (safetensors) files.set('model.safetensors', safetensors);
  else {
    const bin = await get('pytorch_model.bin', true);
    if (!bin) throw new Error(`${base.href}: neither model.safetensors nor pytorch_model.bin is there (HTTP 404 for both)`);
    files.set('pytorch_model.bin', bin);
  }
  return ser.openModelFiles(files, base.href.replace(/\/$/, ''));
}

async function loadModelFrom(name: string, open: () => Promise<ModelFiles>): Promise<void> {
  errorBox.textContent = '';
  const rt = await getRuntime();
  setStatus(modelStatus, `Reading ${name}…`);
  modelStatus.dataset.loaded = 'false';
  const t0 = performance.now();
  const mf = await open();
  const { model, report } = await ser.SpeechClassifier.fromSource(rt, mf.config, mf.weights, {
    checkpoint: mf.weightsFile,
    onTensor: (tensorName, i, n) => {
      if (i % 16 === 0 || i === n - 1) setStatus(modelStatus, `Loading ${name}: ${i + 1}/${n} tensors (${tensorName})`);
    },
  });
  model.eval();
  await rt.sync();
  loaded?.model.dispose();
  loaded = { model, config: mf.config, preprocessor: mf.preprocessor, name };
  const c = mf.config;
  let params = 0;
  for (const [, t] of model.namedParameters()) params += t.size;
  const notes: string[] = [];
  if (report.newlyInitialized.length) notes.push(`not in the checkpoint, randomly initialised (predictions are meaningless): ${report.newlyInitialized.join(', ')}`);
  if (!mf.preprocessorFound) notes.push('no preprocessor_config.json: using the defaults (16 kHz, normalised)');
  for (const w of c.warnings) notes.push(w);
  setStatus(
    modelStatus,
    `Loaded ${name} in ${ms(performance.now() - t0)}: ${model.family.name} (${model.architectures()[0]}), ` +
      `${c.num_hidden_layers} layers, hidden ${c.hidden_size}, ${(params / 1e6).toFixed(params < 1e6 ? 2 : 1)} M parameters, ` +
      `labels: ${c.labels.join(', ')}${notes.length ? `\n${notes.join('\n')}` : ''}`,
  );
  modelStatus.dataset.loaded = 'true';
  updateButtons();
  if (clip && clip.rate !== mf.preprocessor.samplingRate) await useAudio(clip.blob, clip.name); // decodes again at this model's rate, then predicts
  else if (clip) await predict();
}

// ---------------------------------------------------------------------------------------------------------------
// audio

let audioContext: AudioContext | null = null;

/**
 * Audio bytes -> mono samples at `rate`, through the library's own path (decode WAV/FLAC/MP3/Ogg Vorbis, mix to
 * mono, resample), so the page sees exactly the samples `ser predict` sees. Only a format the library cannot decode
 * (a browser recording in WebM/Opus) goes through the browser's decoder, at the file's own rate; the resampling is
 * still the library's.
 */
async function decodeToRate(blob: Blob, name: string, rate: number): Promise<{ samples: Float32Array; sourceRate: number }> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const format = ser.sniffFormat(bytes);
  if (format !== 'unknown' && format !== 'ogg-opus' && format !== 'ogg-other') {
    const p = await ser.prepareAudio(bytes, name, { sampleRate: rate, minSamples: 1 });
    return { samples: p.samples, sourceRate: p.sourceRate };
  }
  // decodeAudioData returns the context's rate; the library's resampler then takes it to the model's
  audioContext ??= new AudioContext();
  let buf: AudioBuffer;
  try {
    buf = await audioContext.decodeAudioData(bytes.slice().buffer);
  } catch (e) {
    throw new Error(`${name}: neither the library nor this browser can decode it (${(e as Error).message || 'unsupported format'})`);
  }
  const channels = Array.from({ length: buf.numberOfChannels }, (_, i) => buf.getChannelData(i));
  const mono = ser.mixToMono(channels);
  return { samples: ser.resample(mono, buf.sampleRate, rate), sourceRate: buf.sampleRate };
}

async function useAudio(blob: Blob, name: string): Promise<void> {
  errorBox.textContent = '';
  const rate = loaded?.preprocessor.samplingRate ?? 16000;
  setStatus(audioStatus, `Decoding ${name}…`);
  const t0 = performance.now();
  const { samples, sourceRate } = await decodeToRate(blob, name, rate);
  clip = { name, blob, rate, samples, sourceRate, decodeMs: performance.now() - t0 };
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  setStatus(audioStatus, `${name}: ${(samples.length / rate).toFixed(2)} s${sourceRate !== rate ? ` (resampled from ${sourceRate} Hz to ${rate} Hz)` : ` at ${rate} Hz`}`);
  updateButtons();
  if (loaded) await predict();
}

let recorder: MediaRecorder | null = null;

async function toggleRecording(): Promise<void> {
  if (recorder) {
    recorder.stop();
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false } });
  const chunks: Blob[] = [];
  const r = new MediaRecorder(stream);
  recorder = r;
  const started = performance.now();
  const tick = setInterval(() => setStatus(audioStatus, `Recording… ${((performance.now() - started) / 1000).toFixed(1)} s (press Stop)`), 200);
  r.ondataavailable = (ev) => chunks.push(ev.data);
  r.onstop = () => {
    clearInterval(tick);
    for (const t of stream.getTracks()) t.stop();
    recorder = null;
    recordButton.textContent = '● Record';
    recordButton.classList.remove('recording');
    useAudio(new Blob(chunks, { type: r.mimeType }), 'recording').catch(showError);
  };
  r.start();
  recordButton.textContent = '■ Stop';
  recordButton.classList.add('recording');
}

// ---------------------------------------------------------------------------------------------------------------
// prediction

function updateButtons(): void {
  predictButton.disabled = busy || !loaded || !clip;
}

async function predict(): Promise<void> {
  if (!loaded || !clip || busy) return;
  busy = true;
  updateButtons();
  errorBox.textContent = '';
  try {
    const { model, config, preprocessor } = loaded;
    const rt = model.rt;
    const need = preprocessor.minSamples;
    if (clip.samples.length < need) throw new Error(`${clip.name} is ${clip.samples.length} samples long; the model needs at least ${need} (${((need / preprocessor.samplingRate) * 1000).toFixed(0)} ms)`);
    const x = preprocessor.prepare([clip.samples]);
    const t0 = performance.now();
    const probsT = ser.noGrad(() =>
      ser.tidy(() => {
        const input = ser.Tensor.fromData(rt, x.values, x.shape, 'f32', 'input_values');
        const out = model.forward({ inputValues: input });
        const p = ser.softmax(out.logits!);
        ser.disposeOutput(out);
        return p;
      }),
    );
    const probs = await probsT.readFloat();
    probsT.dispose();
    const inferenceMs = performance.now() - t0;
    predictions++;
    show(config.labels, probs, { inferenceMs, decodeMs: clip.decodeMs, seconds: clip.samples.length / preprocessor.samplingRate, first: predictions === 1 });
    await showTimeline(loaded, clip);
  } finally {
    busy = false;
    updateButtons();
  }
}

/** Clips longer than this get a timeline: 4 s windows every second, the probabilities of each class over time. */
const TIMELINE_MIN_SECONDS = 8;

async function showTimeline(m: LoadedModel, c: Clip): Promise<void> {
  const box = $('timeline');
  box.replaceChildren();
  const rate = m.preprocessor.samplingRate;
  if (c.samples.length < TIMELINE_MIN_SECONDS * rate || m.config.problem_type === 'regression') return;
  const spans = ser.windowSpans(c.samples.length, rate, 4, 1, m.preprocessor.minSamples);
  const points: ser.TimelinePoint[] = [];
  for (let i = 0; i < spans.length; i += 8) {
    const batch = spans.slice(i, i + 8);
    const x = m.preprocessor.prepare(batch.map(([a, b]) => c.samples.subarray(a, b)));
    const probsT = ser.noGrad(() =>
      ser.tidy(() => {
        // every window has the same length: no padding, so no mask (Whisper takes none)
        const out = m.model.forward({ inputValues: ser.Tensor.fromData(m.model.rt, x.values, x.shape, 'f32', 'windows') });
        const p = ser.softmax(out.logits!);
        ser.disposeOutput(out);
        return p;
      }),
    );
    const p = await probsT.readFloat();
    probsT.dispose();
    const L = m.config.labels.length;
    batch.forEach(([a, b], r) => points.push({ start: a / rate, end: b / rate, values: Object.fromEntries(m.config.labels.map((l, k) => [l, p[r * L + k]])) }));
  }
  // the SVG is built by the library from numbers and escaped label text
  box.innerHTML = ser.timelineSvg(points, { title: `Emotion over time (${points.length} windows of 4 s)` });
}

function show(labels: readonly string[], probs: Float32Array, t: { inferenceMs: number; decodeMs: number; seconds: number; first: boolean }): void {
  let best = 0;
  for (let k = 1; k < probs.length; k++) if (probs[k] > probs[best]) best = k;
  $('result').classList.add('shown');
  $('label').textContent = labels[best] ?? `class ${best}`;
  const list = $('probs');
  list.replaceChildren(
    ...labels.map((l, k) => {
      const row = document.createElement('div');
      row.className = k === best ? 'bar top' : 'bar';
      const name = document.createElement('span');
      name.textContent = l;
      const track = document.createElement('div');
      track.className = 'track';
      const fill = document.createElement('div');
      fill.className = 'fill';
      fill.style.width = `${(probs[k] * 100).toFixed(1)}%`;
      track.append(fill);
      const p = document.createElement('span');
      p.className = 'p';
      p.textContent = `${(probs[k] * 100).toFixed(1)}%`;
      row.append(name, track, p);
      return row;
    }),
  );
  list.dataset.probs = JSON.stringify(Array.from(probs));
  list.dataset.count = String(predictions);
  $('timing').textContent =
    `${t.seconds.toFixed(2)} s of audio · decode ${ms(t.decodeMs)} · inference ${ms(t.inferenceMs)}` +
    `${t.first ? ' (first run: includes compiling the kernels; press Predict again for the warm time)' : ''} · real-time factor ${(t.inferenceMs / 1000 / t.seconds).toFixed(3)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// wiring

const filesOf = (ev: Event) => [...((ev.target as HTMLInputElement).files ?? [])];
$('model-dir').addEventListener('change', (ev) => loadModel(filesOf(ev)).catch((e) => (setStatus(modelStatus, 'Could not load the model.', true), showError(e))));
$('model-files').addEventListener('change', (ev) => loadModel(filesOf(ev)).catch((e) => (setStatus(modelStatus, 'Could not load the model.', true), showError(e))));
$('audio-file').addEventListener('change', (ev) => {
  const f = filesOf(ev)[0];
  if (f) useAudio(f, f.name).catch((e) => (setStatus(audioStatus, 'Could not use this audio.', true), showError(e)));
});
const modelFailed = (e: unknown) => (setStatus(modelStatus, 'Could not load the model.', true), showError(e));
$('model-load').addEventListener('click', () => loadModelByName($<HTMLInputElement>('model-url').value).catch(modelFailed));
$('model-url').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter') loadModelByName($<HTMLInputElement>('model-url').value).catch(modelFailed);
});
recordButton.addEventListener('click', () => toggleRecording().catch(showError));
predictButton.addEventListener('click', () => predict().catch(showError));
if (typeof MediaRecorder === 'undefined' || !navigator.mediaDevices) recordButton.disabled = true;
getRuntime().catch(() => {});
