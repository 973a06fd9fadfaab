// What keeping derived weights between forwards saves (src/runtime/derived.ts): an XLSR-large forward (random
// weights, eval, no autograd) timed with the encoder's DerivedCache kept, against the same forward with the cache
// emptied first (what every forward paid before: weight norm of the positional conv, conv weights relaid), in
// interleaved rounds in one process.
//   node build/bench/derived.mjs [--rounds N] [--seconds 1,4] [--layers 24]
import { createNodeRuntime } from '../src/node/dawn.js';
import { Tensor } from '../src/tensor.js';
import { noGrad } from '../src/autograd.js';
import { Wav2Vec2ForSpeechClassification, disposeOutput } from '../src/model/classifier.js';
import { Wav2Vec2Encoder } from '../src/model/wav2vec2/encoder.js';
import { xlsrBenchConfig } from './lib/peers-torch.js';
import { randArray } from './lib/peers-common.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const rounds = Number(opt('rounds', '5'));
const secondsList = opt('seconds', '1,4').split(',').map(Number);
const layers = Number(opt('layers', '24'));

const rt = await createNodeRuntime();
console.log(`adapter: ${rt.adapter.description || rt.adapter.device}; XLSR-large (${layers} layers), batch 1; median of ${rounds} interleaved rounds`);
const model = Wav2Vec2ForSpeechClassification.random(rt, xlsrBenchConfig(layers), { head: 'speech-classification', initSeed: 1 });
model.eval();
const encoder = model.encoder;
if (!(encoder instanceof Wav2Vec2Encoder)) throw new Error('expected a wav2vec2 encoder');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const seconds of secondsList) {
  const x = Tensor.fromData(rt, randArray(seconds * 16000, 7), [1, seconds * 16000], 'f32', 'input_values');
  const forward = async (cleared: boolean) => {
    if (cleared) encoder.derived.dispose();
    await rt.sync();
    const t0 = performance.now();
    noGrad(() => disposeOutput(model.forward({ inputValues: x })));
    await rt.sync();
    return performance.now() - t0;
  };
  await forward(false); // warm-up: pipelines, tuner, the cache filled
  const times = { kept: [] as number[], cleared: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    times.kept.push(await forward(false));
    times.cleared.push(await forward(true));
  }
  const kept = median(times.kept);
  const cleared = median(times.cleared);
  const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;
  console.log(`${seconds} s wall: kept ${kept.toFixed(0)} ms (${range(times.kept)}), cleared ${cleared.toFixed(0)} ms (${range(times.cleared)}); kept tensors ${encoder.derived.size}`);
  // wall times move by more than the saving on a shared host: the profile of one cleared forward gives the GPU time
  // of exactly the dispatches a kept cache skips, against that forward's total
  encoder.derived.dispose();
  const { profile } = await rt.profile(() => noGrad(() => disposeOutput(model.forward({ inputValues: x }))));
  const derivedMs = profile.dispatches.filter((d) => /^weightnorm\.|relayoutWeights$/.test(d.kernel)).reduce((s, d) => s + d.durMs, 0);
  console.log(`${seconds} s profile of a cleared forward: the derived weights took ${derivedMs.toFixed(1)} ms of ${profile.gpuMs.toFixed(0)} ms GPU time (${((100 * derivedMs) / profile.gpuMs).toFixed(1)}%), skipped while the cache is kept`);
  x.dispose();
}
model.dispose();
process.exit(0);
