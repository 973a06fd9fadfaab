// `ser tune`: time the candidate kernel configurations (src/runtime/tune.ts) for the shapes of a model's forward pass
// (or training step), or without --model for the XLSR-large shapes of the kernel bench, keep the winners in the tune
// cache, and print the table of candidates and winners.
import type { Command } from 'commander';
import { Tensor } from '../tensor.js';
import { backward, noGrad, tidy } from '../autograd.js';
import { matmul } from '../ops/matmul.js';
import { conv1d } from '../ops/conv.js';
import { attention } from '../ops/attention.js';
import { takeOutput } from '../model/classifier.js';
import { mulberry32 } from '../data/random.js';
import type { Runtime } from '../runtime/runtime.js';
import { setTuneOptions, tuneResults, tuneTable, type TuneCache } from '../runtime/tune.js';
import { createNodeRuntime } from './dawn.js';
import { defaultTuneCachePath } from './tune-cache.js';
import { loadModel } from './train-cmd.js';
import { parseCommand, positiveNumber, serCommand, valueOption } from './cli-options.js';

export function tuneOptions(): Command {
  return serCommand('tune', 'time candidate kernel configurations (tile sizes, strategies) on this adapter and cache the fastest')
    .option('--model <dir>', 'tune the shapes of one forward pass of this model (Hugging Face folder or Hub id; weights optional) on B clips of S seconds of synthetic audio; without it, the XLSR-large GEMM, convolution and attention shapes of the kernel bench (4 s of audio)')
    .option('--train', 'also tune the backward passes (forward + backward of a training step)')
    .option('--quick', '3 timed rounds per candidate instead of 7; without --model, fewer shapes')
    .addOption(valueOption('--rounds <n>', 'timed rounds per candidate (interleaved; the median is kept)', positiveNumber('--rounds', 50, true)))
    .addOption(valueOption('--seconds <s>', 'clip length', positiveNumber('--seconds', 600, false), 4))
    .addOption(valueOption('--batch-size <b>', 'clips per batch', positiveNumber('--batch-size', 256, true), 1))
    .option('--json', 'print the results as JSON')
    .addHelpText('after', `
Times every candidate configuration (strategy, tile sizes) of the GEMM, conv1d and attention kernels for each shape class a run
uses, on this adapter, and keeps the fastest in the tune cache (${defaultTuneCachePath() ?? 'disabled by SER_TUNE_CACHE=off'};
SER_TUNE_CACHE=<file> elsewhere). Later runs on the same adapter and driver use the winners; without a winner the
hand-picked defaults run. Classes already in the cache are timed again.`);
}

/** The runtime's cache with lookups disabled: every class is timed again, winners still written. */
function retimeEverything(cache: TuneCache | null): TuneCache | null {
  if (!cache) return null;
  return { get: () => undefined, set: (k, e) => cache.set(k, e), entries: () => cache.entries() };
}

export async function tuneCommand(argv: string[]): Promise<number> {
  const { options: v } = parseCommand(tuneOptions(), argv);
  const rounds = v.number('rounds') ?? (v.flag('quick') ? 3 : 7);
  const seconds = v.number('seconds')!;
  const batch = v.number('batchSize')!;
  const modelDir = v.string('model');
  const train = v.flag('train');
  const rt = await createNodeRuntime();
  const cache = rt.tuneCache;
  rt.tuneCache = retimeEverything(cache);
  rt.autotune = true;
  setTuneOptions(rt, { rounds });
  let what: string;
  if (modelDir) {
    const loaded = await loadModel(rt, modelDir, { untrainedOk: true }); // timing only: random weights time the same
    const samples = Math.max(Math.round(seconds * loaded.preprocessor.samplingRate), loaded.preprocessor.minSamples);
    const clips = Array.from({ length: batch }, (_, b) => syntheticAudio(samples, 1 + b));
    const audio = loaded.preprocessor.prepare(clips);
    const model = loaded.model;
    model.train(train);
    const input = () => Tensor.fromData(rt, audio.values, audio.shape, 'f32', 'input_values');
    if (train) {
      const labels = Array.from({ length: batch }, (_, i) => i % loaded.config.labels.length);
      const loss = tidy(() => {
        return takeOutput(model.forward({ inputValues: input(), labels }), 'loss');
      });
      backward(loss);
      loss.dispose();
    } else {
      const logits = noGrad(() => tidy(() => {
        return takeOutput(model.forward({ inputValues: input() }), 'logits');
      }));
      logits.dispose();
    }
    // the first sync times every shape class the run queued
    await rt.sync();
    model.dispose();
    what = `${train ? 'training step' : 'forward'} of ${modelDir}, batch ${batch} x ${(samples / loaded.preprocessor.samplingRate).toFixed(2)} s`;
  } else {
    await benchShapes(rt, v.flag('quick'), train);
    what = 'XLSR-large kernel-bench shapes (4 s of audio)';
  }
  rt.tuneCache = cache;
  const results = tuneResults(rt);
  if (v.flag('json')) {
    const finite = (x: number) => (Number.isFinite(x) ? x : null);
    console.log(JSON.stringify({ what, adapter: rt.adapter, cache: cache ? defaultTuneCachePath() : null, rounds, results: results.map((r) => ({ ...r, timings: r.timings.map((t) => ({ ...t, medianMs: finite(t.medianMs) })) })) }));
  } else {
    console.log(`tuned ${results.length} shape class(es): ${what}, on ${rt.adapter.description || rt.adapter.device}; ${rounds} interleaved rounds, medians`);
    console.log(tuneTable(results));
    const changed = results.filter((r) => r.winner !== r.defaultId).length;
    console.log(`\n${changed} of ${results.length} classes use a configuration other than the default; ${cache ? `winners written to ${defaultTuneCachePath()}` : 'no cache (SER_TUNE_CACHE=off): winners not kept'}`);
  }
  rt.destroy();
  return 0;
}

/** The GEMM and conv shapes of bench/lib/kernels.ts (XLSR-large, 4 s of audio, batch 4 x 200 frames for the GEMMs), and its attention. */
async function benchShapes(rt: Runtime, quick: boolean, train: boolean): Promise<void> {
  const rand = (shape: number[], seed: number) => {
    const r = mulberry32(seed);
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) d[i] = r() - 0.5;
    return Tensor.fromData(rt, d, shape, 'f32', 'tune.input');
  };
  const gemms: [number, number, number, boolean][] = [
    [1024, 1024, 1024, false],
    [800, 1024, 1024, true],
    [800, 1024, 4096, true],
    [800, 4096, 1024, true],
  ];
  for (const [M, K, N, transB] of quick ? gemms.slice(0, 2) : gemms) {
    const a = rand([M, K], 1);
    const b = rand(transB ? [N, K] : [K, N], 2);
    a.requiresGrad = train;
    b.requiresGrad = train;
    tidy(() => {
      const y = matmul(a, b, { transB });
      if (train) backward(y, rand([M, N], 3));
    });
    await rt.sync();
    for (const t of [a, b]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
  const convs: [number, number, number, number, number, number, number][] = [
    [1, 512, 10, 5, 64000, 0, 1],
    [512, 512, 3, 2, 12799, 0, 1],
    [512, 512, 3, 2, 6399, 0, 1],
    [512, 512, 3, 2, 3199, 0, 1],
    [512, 512, 3, 2, 1599, 0, 1],
    [512, 512, 2, 2, 799, 0, 1],
    [512, 512, 2, 2, 399, 0, 1],
    [1024, 1024, 128, 1, 199, 64, 16],
  ];
  for (const [cin, cout, k, stride, tin, padding, groups] of quick ? [convs[0], convs[1], convs[6], convs[7]] : convs) {
    const x = rand([1, cin, tin], 4);
    const w = rand([cout, cin / groups, k], 5);
    x.requiresGrad = train && cin > 1;
    w.requiresGrad = train;
    tidy(() => {
      const y = conv1d(x, w, null, { stride, padding, groups });
      if (train) backward(y, rand(y.shape as number[], 6));
    });
    await rt.sync();
    for (const t of [x, w]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
  // self-attention of XLSR-large's layers: 16 heads x 64, 199 frames (4 s), batch 1 and 4
  for (const B of quick ? [1] : [1, 4]) {
    const [q, k, v] = [7, 8, 9].map((seed) => rand([B, 199, 1024], seed));
    for (const t of [q, k, v]) t.requiresGrad = train;
    tidy(() => {
      const y = attention(q, k, v, { heads: 16 });
      if (train) backward(y, rand([B, 199, 1024], 10));
    });
    await rt.sync();
    for (const t of [q, k, v]) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}

/** Deterministic noise in [-0.5, 0.5): the kernels' cost does not depend on the audio's content. */
function syntheticAudio(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() - 0.5;
  return out;
}
