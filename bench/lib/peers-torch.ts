// Peer: PyTorch on the CPU (2 threads, OMP_WAIT_POLICY=PASSIVE, Debian's openblas build), on the whole XLSR-large
// stack: feature encoder + 24 layers + the notebook's head, random weights, real shapes. tools/bench_torch.py builds
// the same model in plain torch and prints its timings as JSON; ours is src/model/wav2vec2.ts in the same process
// as the bench, timed right after (the GPU sits idle while PyTorch runs, and PyTorch has exited before ours starts).
// Figures are milliseconds of compute per second of audio (lower is better); speedup = PyTorch time / ours.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { backward, noGrad, tidy } from '../../src/autograd.js';
import { AdamW, gradNorm } from '../../src/ops/optim.js';
import { parseWav2Vec2Config } from '../../src/model/wav2vec2/config.js';
import { Wav2Vec2ForSpeechClassification, disposeOutput } from '../../src/model/classifier.js';
import { timeAsync, timeGPU, type Row, type Timing } from './harness.js';
import { randArray, type Peaks } from './peers-common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The run's sizes: full = the whole 24-layer stack on 4 s clips, forward batch 1, training batch 2; quick = 4 of the
 * 24 layers (real layer sizes) on 1 s clips, batch 1, 2 reps (random init of the full 316 M parameters alone takes
 * ~30 s on 2 cores).
 */
export function torchPlan(quick: boolean): { seconds: number; forwardBatch: number; trainBatch: number; reps: number; layers: number } {
  return quick ? { seconds: 1, forwardBatch: 1, trainBatch: 1, reps: 2, layers: 4 } : { seconds: 4, forwardBatch: 1, trainBatch: 2, reps: 3, layers: 24 };
}

/** XLSR-53's config (tools/xlsr_large_keys.json), made deterministic for timing: no layerdrop, no SpecAugment. */
export function xlsrBenchConfig(layers = 24) {
  return parseWav2Vec2Config({
    model_type: 'wav2vec2',
    architectures: ['Wav2Vec2ForSpeechClassification'],
    hidden_size: 1024,
    num_hidden_layers: layers,
    num_attention_heads: 16,
    intermediate_size: 4096,
    conv_dim: [512, 512, 512, 512, 512, 512, 512],
    conv_kernel: [10, 3, 3, 3, 3, 2, 2],
    conv_stride: [5, 2, 2, 2, 2, 2, 2],
    conv_bias: true,
    feat_extract_norm: 'layer',
    do_stable_layer_norm: true,
    num_conv_pos_embeddings: 128,
    num_conv_pos_embedding_groups: 16,
    hidden_dropout: 0.1,
    activation_dropout: 0.0,
    attention_dropout: 0.1,
    feat_proj_dropout: 0.1,
    final_dropout: 0.1,
    layerdrop: 0.0,
    apply_spec_augment: false,
    num_labels: 5,
  });
}

export interface TorchResult {
  torch: string;
  device: string;
  threads: number | null;
  parameters: number;
  frames: number;
  forward: Timing & { batch: number; seconds_per_audio_second: number };
  train_step?: Timing & { batch: number; seconds_per_audio_second: number; trainable_parameters: number };
}

/** A python3 that imports torch: $SER_PYTHON, Debian's /usr/bin/python3, then python3 on the PATH. */
export function findTorchPython(): { python: string | null; tried: string[] } {
  const candidates = [process.env.SER_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p);
  const tried: string[] = [];
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8', timeout: 120000 });
    if (r.status === 0) return { python: py, tried };
    tried.push(`${py}: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n').pop()}`);
  }
  return { python: null, tried };
}

/** Find PyTorch; with --torch on the bench's command line, install it first (node tools/setup.mjs --torch). */
function torchPython(): string {
  let found = findTorchPython();
  if (!found.python && process.argv.includes('--torch')) {
    console.log('  [torch] PyTorch not found: node tools/setup.mjs --torch');
    const r = spawnSync(process.execPath, [path.join(root, 'tools/setup.mjs'), '--torch'], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error('node tools/setup.mjs --torch failed (see its output); PyTorch rows skipped');
    found = findTorchPython();
  }
  if (!found.python) {
    throw new Error(`PyTorch not found (${found.tried.join('; ')}); install it with \`node tools/setup.mjs --torch\` or run \`npm run bench -- --torch\`, or point SER_PYTHON at a python3 that has torch`);
  }
  return found.python;
}

/** Run tools/bench_torch.py and parse the JSON on its last line. */
export async function runTorchBench(python: string, args: string[], timeoutMs = 1200000): Promise<TorchResult> {
  const script = path.join(root, 'tools/bench_torch.py');
  if (!fs.existsSync(script)) throw new Error(`${script} missing`);
  const env = { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', PYTHONUNBUFFERED: '1' };
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`bench_torch.py exited with ${code ?? signal}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      try {
        resolve(JSON.parse(last) as TorchResult);
      } catch {
        reject(new Error(`bench_torch.py printed no JSON: ${last.slice(0, 200)}`));
      }
    });
  });
}

interface OurTimes {
  forward: Timing | Error;
  train: Timing | Error | null;
  initSeconds: number;
  lastLoss: number;
}

/** Our model on the same sizes: forward (eval, no autograd) and the training step, each timed once. */
async function timeOurs(rt: Runtime, plan: ReturnType<typeof torchPlan>, withTrain: boolean): Promise<OurTimes> {
  const samples = Math.round(plan.seconds * 16000);
  const res: OurTimes = { forward: new Error('not run'), train: null, initSeconds: NaN, lastLoss: NaN };
  let model: Wav2Vec2ForSpeechClassification | null = null;
  let opt: AdamW | null = null;
  try {
    const t0 = performance.now();
    try {
      model = Wav2Vec2ForSpeechClassification.random(rt, xlsrBenchConfig(plan.layers), { head: 'speech-classification', initSeed: 1 });
      await rt.sync();
    } catch (e) {
      res.forward = e as Error;
      if (withTrain) res.train = e as Error;
      return res;
    }
    res.initSeconds = (performance.now() - t0) / 1000;
    const m = model;

    try {
      const fx = Tensor.fromData(rt, randArray(plan.forwardBatch * samples, 41), [plan.forwardBatch, samples], 'f32', 'input_values');
      m.eval();
      res.forward = await timeGPU(rt, () => noGrad(() => disposeOutput(m.forward({ inputValues: fx }))), { reps: plan.reps, warmup: 1 });
      fx.dispose();
    } catch (e) {
      res.forward = e as Error;
    }

    // training step as the Trainer does it: train mode (dropout 0.1), frozen feature encoder, cross entropy, loss
    // read back, backward, clip 1.0, AdamW, zero grads
    if (withTrain) {
      try {
        m.train();
        const params = m.trainableParameters();
        opt = new AdamW(params, { lr: 1e-5, weightDecay: 0 });
        const o = opt;
        const tx = Tensor.fromData(rt, randArray(plan.trainBatch * samples, 42), [plan.trainBatch, samples], 'f32', 'input_values');
        const labels = Array.from({ length: plan.trainBatch }, (_, i) => i % 5);
        const step = async () => {
          const loss = tidy(() => {
            const out = m.forward({ inputValues: tx, labels });
            const l = out.loss!;
            out.loss = null;
            disposeOutput(out);
            return l;
          });
          res.lastLoss = (await loss.readFloat())[0];
          backward(loss);
          loss.dispose();
          // the trainer's path: clip_grad_norm_(1.0) applied inside the AdamW update
          const norm = gradNorm(params.filter((p) => p.grad));
          o.step(undefined, { clip: { norm, maxNorm: 1.0 } });
          norm.dispose();
          o.zeroGrad();
          await rt.sync();
        };
        res.train = await timeAsync(step, { reps: plan.reps, warmup: 1 });
        tx.dispose();
        if (!Number.isFinite(res.lastLoss)) throw new Error(`non-finite loss ${res.lastLoss}`);
      } catch (e) {
        res.train = e as Error;
      }
    }
  } finally {
    opt?.dispose();
    model?.dispose();
  }
  return res;
}

/**
 * Rows: ours vs PyTorch CPU; with --torch-cuda on the command line (tools/gpu-bench.sh passes it where PyTorch sees
 * a CUDA GPU) also vs PyTorch CUDA fp32 and fp16 (autocast) on the same stack and sizes.
 */
export async function benchTorch(rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const python = torchPython();
  const plan = torchPlan(quick);
  const common = ['--seconds', String(plan.seconds), '--layers', String(plan.layers), '--forward-batch', String(plan.forwardBatch), '--train-batch', String(plan.trainBatch), '--reps', String(plan.reps)];
  const peers: { label: string; result: TorchResult }[] = [];
  const cpu = await runTorchBench(python, ['--device', 'cpu', '--threads', '2', ...common]);
  peers.push({ label: `PyTorch ${cpu.torch} CPU (${cpu.threads} threads)`, result: cpu });
  const cudaErrors: string[] = [];
  if (process.argv.includes('--torch-cuda')) {
    for (const dtype of ['fp32', 'fp16']) {
      try {
        const r = await runTorchBench(python, ['--device', 'cuda', '--dtype', dtype, ...common]);
        peers.push({ label: `PyTorch ${r.torch} CUDA ${dtype}${dtype === 'fp16' ? ' (autocast)' : ''} (${r.device})`, result: r });
      } catch (e) {
        cudaErrors.push(`CUDA ${dtype}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  const ours = await timeOurs(rt, plan, !!cpu.train_step);

  const ms = (seconds: number, batch: number) => (1000 * seconds) / (batch * plan.seconds);
  const stack = `XLSR-large (FE + ${plan.layers}${plan.layers < 24 ? ' of 24' : ''} layers, ${cpu.parameters.toLocaleString('en-US')} params)`;
  const fwdName = `${stack} forward, ${plan.seconds} s clip, batch ${plan.forwardBatch}`;
  const trainName = `${stack} training step, ${plan.seconds} s clips, batch ${plan.trainBatch}, frozen feature encoder`;
  const rows: Row[] = [];
  const emit = (name: string, mine: Timing | Error | null, theirs: (Timing & { seconds_per_audio_second: number }) | undefined, batch: number, label: string, note: string) => {
    if (!theirs || mine === null) return;
    const peerValue = 1000 * theirs.seconds_per_audio_second;
    if (mine instanceof Error) {
      // PyTorch's figure is still reported; ours NaN fails the bench run, as it should
      rows.push({ name: `${name} vs ${label}`, unit: 'ms / audio s', ours: NaN, peer: label, peer_value: peerValue, note: `ours failed: ${mine.message.split('\n')[0]}` });
      return;
    }
    rows.push({
      name: `${name} vs ${label}`,
      unit: 'ms / audio s',
      ours: ms(mine.median, batch),
      spread: [ms(mine.max, batch), ms(mine.min, batch)],
      peer: label,
      peer_value: peerValue,
      speedup: theirs.median / mine.median,
      note,
    });
  };
  for (const { label, result } of peers) {
    emit(fwdName, ours.forward, result.forward, plan.forwardBatch, label, `lower is better; ${result.frames} frames; our model init+upload ${ours.initSeconds.toFixed(1)} s`);
    const tt = result.train_step;
    emit(trainName, ours.train, tt, plan.trainBatch, label, `lower is better; forward + cross entropy + backward + clip_grad_norm(1.0) + AdamW over ${(tt?.trainable_parameters ?? 0).toLocaleString('en-US')} trainable params; our last loss ${ours.lastLoss.toFixed(3)}`);
  }
  if (cudaErrors.length) rows[rows.length - 1].note += `; PyTorch CUDA failed: ${cudaErrors.join('; ')}`;
  return rows;
}
