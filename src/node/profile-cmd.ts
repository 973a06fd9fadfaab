// `ser profile`: time every kernel dispatch of one inference (or one training step) of a model directory on synthetic
// audio, and print where the GPU time goes (per kernel, per named section), optionally as a Chrome trace. One run
// first compiles every pipeline and fills the buffer pool; only the next run is profiled.
// The model-specific lines are in runOnce() and the loadModel() call; sections are marked through rt.section only.
// --roofline adds the roofline classification (Profile.roofline): each dispatch's attained fraction of the GEMM rate
// (GEMM-class kernels) or the copy bandwidth (memory-bound ones), both measured on this adapter unless given.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { Tensor } from '../tensor.js';
import { rooflineTable, type RooflinePeaks } from '../runtime/profile.js';
import { measureGemmGflops, measureCopyGBps } from '../runtime/peaks.js';
import { backward, noGrad, tidy } from '../autograd.js';
import { AdamW } from '../ops/optim.js';
import { takeOutput } from '../model/classifier.js';
import { mulberry32 } from '../data/random.js';
import type { Runtime } from '../runtime/runtime.js';
import { createNodeRuntime } from './dawn.js';
import { loadModel, type LoadedModel } from './train-cmd.js';
import { writeFileAtomic } from './modeldir.js';
import { parseCommand, positiveNumber, serCommand, valueOption } from './cli-options.js';

const MAX_SECONDS = 600;
const MAX_BATCH = 256;

export function profileOptions(): Command {
  return serCommand('profile', 'GPU time per kernel and per section of a forward pass or training step (table, Chrome trace)')
    .requiredOption('--model <dir>', 'a Hugging Face model folder or Hub id (config.json; weights optional: random init without them)')
    .option('--train', 'profile a training step (forward, backward, AdamW; feature encoder frozen) instead of inference')
    .addOption(valueOption('--seconds <s>', 'clip length in seconds of synthetic audio', positiveNumber('--seconds', MAX_SECONDS, false), 4))
    .addOption(valueOption('--batch-size <b>', 'clips per batch', positiveNumber('--batch-size', MAX_BATCH, true), 1))
    .option('--trace <file>', 'write a Chrome trace (Trace Event Format JSON; open in https://ui.perfetto.dev or chrome://tracing)')
    .option('--fallback', 'time by submitting each dispatch alone even when timestamp queries are available')
    .option('--json', 'print the profile as JSON (method, totals, per-kernel and per-section rows)')
    .option('--roofline', 'classify every dispatch against its roofline: GEMM-class vs the GEMM rate, memory-bound vs copy bandwidth')
    .addOption(valueOption('--gemm-gflops <x>', 'the GEMM rate for --roofline in GFLOP/s (default: a 1024^3 matmul measured here)', positiveNumber('--gemm-gflops', 1e9, false)))
    .addOption(valueOption('--copy-gbps <y>', 'the copy bandwidth for --roofline in GB/s (default: a large buffer copy measured here)', positiveNumber('--copy-gbps', 1e9, false)))
    .addHelpText('after', `
Times every kernel dispatch after one untimed run that compiles the pipelines. Prints GPU time per kernel and per
section (sorted by total; calls, total ms, mean ms, share). Uses GPU timestamp queries when the adapter has
'timestamp-query', else submits each dispatch alone (coarse).
With --roofline, each dispatch's attained fraction of its roofline is max(flops / time / GEMM rate, bytes / time /
copy bandwidth) from the work its op states; the table gives it per kernel, and the summary the share of GPU time
in dispatches below 50% of their roofline and the share of kernels that state no work (unclassified).`);
}

export async function profileCommand(argv: string[]): Promise<number> {
  const { options } = parseCommand(profileOptions(), argv);
  const v = { model: options.string('model')!, train: options.flag('train'), trace: options.string('trace'), fallback: options.flag('fallback'), json: options.flag('json'), roofline: options.flag('roofline') };
  const givenGemm = options.number('gemmGflops');
  const givenCopy = options.number('copyGbps');
  if ((givenGemm !== undefined || givenCopy !== undefined) && !v.roofline) throw new InvalidArgumentError('--gemm-gflops and --copy-gbps go with --roofline');
  const seconds = options.number('seconds')!;
  const batch = options.number('batchSize')!;
  const rt = await createNodeRuntime();
  const loaded = await loadModel(rt, v.model, { untrainedOk: true }); // timing only: random weights time the same
  const samples = Math.max(Math.round(seconds * loaded.preprocessor.samplingRate), loaded.preprocessor.minSamples);
  // the family's own input preparation (waveforms normalised and padded, or Whisper's log-mel)
  const clips = Array.from({ length: batch }, (_, b) => syntheticAudio(samples, 1 + b));
  const audio = loaded.preprocessor.prepare(clips);
  const optimizer = v.train ? new AdamW(loaded.model.trainableParameters(), { lr: 1e-5, weightDecay: 0.01 }) : null;
  const run = () => runOnce(rt, loaded, audio, batch, optimizer);

  await run(); // compiles pipelines, sizes the pool: not profiled
  const { profile } = await rt.profile(run, { method: v.fallback ? 'fallback' : 'auto' });
  const what = `${v.train ? 'training step' : 'forward'}, batch ${batch} x ${(samples / loaded.preprocessor.samplingRate).toFixed(2)} s`;
  let peaks: (RooflinePeaks & { measured: { gemm: boolean; copy: boolean } }) | null = null;
  if (v.roofline) {
    peaks = {
      gemmGflops: givenGemm ?? (await measureGemmGflops(rt)),
      copyGBps: givenCopy ?? (await measureCopyGBps(rt)),
      measured: { gemm: givenGemm === undefined, copy: givenCopy === undefined },
    };
  }
  const roofline = peaks ? profile.roofline(peaks) : null;
  if (v.trace) {
    const trace = profile.trace();
    trace.otherData.what = what;
    trace.otherData.model = path.resolve(v.model);
    trace.otherData.adapter = rt.adapter.description || rt.adapter.device;
    await writeFileAtomic(v.trace, JSON.stringify(trace));
  }
  if (v.json) {
    console.log(JSON.stringify({ what, adapter: rt.adapter, method: profile.method, dispatches: profile.dispatches.length, gpuMs: profile.gpuMs, wallMs: profile.wallMs, kernels: profile.byKernel(), sections: profile.bySection(), trace: v.trace ?? null, ...(roofline && peaks ? { roofline: { ...roofline, measured: peaks.measured } } : {}) }));
  } else {
    console.log(`${what} on ${rt.adapter.description || rt.adapter.device}`);
    console.log(profile.table(40));
    if (roofline && peaks) {
      const src = (m: boolean) => (m ? 'measured here' : 'given');
      console.log(`\nroofline: GEMM ${peaks.gemmGflops.toFixed(1)} GFLOP/s (${src(peaks.measured.gemm)}, 1024^3 matmul), copy ${peaks.copyGBps.toFixed(1)} GB/s (${src(peaks.measured.copy)})`);
      console.log(rooflineTable(roofline, 40));
    }
    if (v.trace) console.log(`\ntrace: ${v.trace} (${fs.statSync(v.trace).size} bytes)`);
  }
  loaded.model.dispose();
  rt.destroy();
  return 0;
}

/** One forward (or forward + backward + AdamW step), waited for. The model-specific part of the command. */
async function runOnce(rt: Runtime, loaded: LoadedModel, audio: { values: Float32Array; shape: number[] }, batch: number, optimizer: AdamW | null): Promise<void> {
  const { model } = loaded;
  model.train(optimizer !== null);
  if (!optimizer) {
    const logits = rt.section('forward', () => noGrad(() => tidy(() => {
      const input = Tensor.fromData(rt, audio.values, audio.shape, 'f32', 'input_values');
      return takeOutput(model.forward({ inputValues: input }), 'logits');
    })));
    await logits.read();
    logits.dispose();
    return;
  }
  const labels = Array.from({ length: batch }, (_, i) => i % loaded.config.labels.length);
  const loss = rt.section('forward', () => tidy(() => {
    const input = Tensor.fromData(rt, audio.values, audio.shape, 'f32', 'input_values');
    return takeOutput(model.forward({ inputValues: input, labels }), 'loss');
  }));
  rt.section('backward', () => backward(loss));
  loss.dispose();
  rt.section('optimizer', () => {
    optimizer.step();
    optimizer.zeroGrad();
  });
  await rt.sync();
}

/** Deterministic noise in [-0.5, 0.5): the kernels' cost does not depend on the audio's content. */
function syntheticAudio(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() - 0.5;
  return out;
}
