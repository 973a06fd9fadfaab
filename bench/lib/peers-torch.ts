// Peer: PyTorch on the CPU (2 threads, OMP_WAIT_POLICY=PASSIVE, Debian's openblas build), on the whole XLSR-large
// stack: feature encoder + 24 layers + the notebook's head, random weights, real shapes. tools/bench_torch.py --serve
// builds the same model in plain torch and times one repetition per request; ours is src/model/wav2vec2 in the bench's
// process. The two alternate repetition by repetition (each side idle while the other runs), so that both see the
// same spells of a shared host. A CUDA peer (--torch-cuda) runs on its own, one-shot.
// Figures are milliseconds of compute per second of audio (lower is better); speedup = PyTorch time / ours.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Runtime } from '../../src/runtime/runtime.js';
import { Tensor } from '../../src/tensor.js';
import { backward, noGrad, tidy } from '../../src/autograd.js';
import { AdamW, gradNorm } from '../../src/ops/optim.js';
import { parseWav2Vec2Config } from '../../src/model/wav2vec2/config.js';
import { Wav2Vec2ForSpeechClassification, disposeOutput } from '../../src/model/classifier.js';
import { summarize, type Row, type Timing } from './harness.js';
import { randArray, type Peaks } from './peers-common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The run's sizes: full = the whole 24-layer stack on 4 s clips, forward batch 1 (5 rounds), training batch 2 (3
 * rounds); quick = 4 of the 24 layers (real layer sizes) on 1 s clips, batch 1, 2 rounds each (random init of the
 * full 316 M parameters alone takes ~30 s on 2 cores).
 */
export function torchPlan(quick: boolean): { seconds: number; forwardBatch: number; trainBatch: number; forwardReps: number; reps: number; layers: number } {
  return quick
    ? { seconds: 1, forwardBatch: 1, trainBatch: 1, forwardReps: 2, reps: 2, layers: 4 }
    : { seconds: 4, forwardBatch: 1, trainBatch: 2, forwardReps: 9, reps: 3, layers: 24 };
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
  trainable_parameters: number;
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

/** PyTorch on 2 threads whose idle OpenMP threads sleep (they would spin while we run otherwise). */
function torchEnv(): NodeJS.ProcessEnv {
  return { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OMP_NUM_THREADS: '2', OPENBLAS_NUM_THREADS: '2', PYTHONUNBUFFERED: '1' };
}

/** Run tools/bench_torch.py and parse the JSON on its last line. */
export async function runTorchBench(python: string, args: string[], timeoutMs = 1200000): Promise<TorchResult> {
  const script = path.join(root, 'tools/bench_torch.py');
  if (!fs.existsSync(script)) throw new Error(`${script} missing`);
  const env = torchEnv();
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

/** One repetition's time from tools/bench_torch.py --serve, and the loss of a training step (null for a forward). */
export interface TorchRep {
  seconds: number;
  loss: number | null;
}

/**
 * tools/bench_torch.py --serve: PyTorch builds its model once, then times one repetition per request, so the bench can
 * alternate PyTorch's repetitions with its own. On a shared host the speed drifts over minutes; timed back to back in
 * separate blocks, the two sides see different spells and their ratio moves with them (2.75-3.31x in five runs).
 */
export class TorchServer {
  private buffered = '';
  private stderr = '';
  private waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  private exited: Error | null = null;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => {
      this.buffered += d.toString();
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        if (line.startsWith('{')) this.waiting.shift()?.resolve(line);
      }
    });
    child.stderr.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    const fail = (why: string) => {
      this.exited = new Error(`bench_torch.py --serve ${why}: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    };
    child.on('error', (e) => fail(`failed to start (${e.message})`));
    child.on('close', (code, signal) => fail(`exited with ${code ?? signal}`));
  }

  /** Start the server and wait until its model is built; `meta` is its description line (without 'ready'). */
  static async start(python: string, args: string[], timeoutMs = 600000): Promise<{ server: TorchServer; meta: Omit<TorchResult, 'forward' | 'train_step'> }> {
    const script = path.join(root, 'tools/bench_torch.py');
    if (!fs.existsSync(script)) throw new Error(`${script} missing`);
    const child = spawn(python, [script, '--serve', ...args], { env: torchEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    const server = new TorchServer(child);
    const meta = JSON.parse(await server.nextLine(timeoutMs, 'building the model'));
    if (meta.ready !== true) throw new Error(`bench_torch.py --serve: unexpected first line ${JSON.stringify(meta).slice(0, 200)}`);
    return { server, meta };
  }

  /** Time one repetition on the PyTorch side: cmd 'forward' or 'train' (anything else is answered with an error). */
  async run(cmd: string, timeoutMs = 600000): Promise<TorchRep> {
    this.child.stdin.write(`${cmd}\n`);
    const reply = JSON.parse(await this.nextLine(timeoutMs, cmd));
    if (reply.error || !Number.isFinite(reply.seconds)) throw new Error(`bench_torch.py --serve ${cmd}: ${reply.error ?? JSON.stringify(reply).slice(0, 200)}`);
    return { seconds: reply.seconds, loss: reply.loss };
  }

  close(): void {
    if (this.exited) return;
    this.child.stdin.end('quit\n');
    setTimeout(() => this.child.kill('SIGKILL'), 10000).unref();
  }

  private nextLine(timeoutMs: number, what: string): Promise<string> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`bench_torch.py --serve: no answer within ${timeoutMs / 1000} s (${what})`));
      }, timeoutMs);
      this.waiting.push({
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }
}

/** Our XLSR-large on the bench's sizes: one timed repetition per call, as TorchServer.run on the PyTorch side. */
class OurXlsr {
  readonly initSeconds: number;
  lastLoss = NaN;
  private readonly model: Wav2Vec2ForSpeechClassification;
  private opt: AdamW | null = null;
  private readonly inputs: Tensor[] = [];

  constructor(private readonly rt: Runtime, private readonly plan: ReturnType<typeof torchPlan>) {
    const t0 = performance.now();
    this.model = Wav2Vec2ForSpeechClassification.random(rt, xlsrBenchConfig(plan.layers), { head: 'speech-classification', initSeed: 1 });
    this.initSeconds = (performance.now() - t0) / 1000;
  }

  private input(batch: number, seed: number): Tensor {
    const samples = Math.round(this.plan.seconds * 16000);
    const found = this.inputs.find((t) => t.shape[0] === batch);
    if (found) return found;
    const t = Tensor.fromData(this.rt, randArray(batch * samples, seed), [batch, samples], 'f32', 'input_values');
    this.inputs.push(t);
    return t;
  }

  /** forward in eval mode without autograd: seconds */
  async forward(): Promise<number> {
    const m = this.model;
    const x = this.input(this.plan.forwardBatch, 41);
    m.eval();
    await this.rt.sync();
    const t0 = performance.now();
    noGrad(() => disposeOutput(m.forward({ inputValues: x })));
    await this.rt.sync();
    return (performance.now() - t0) / 1000;
  }

  /**
   * A training step as the Trainer does it: train mode (dropout 0.1), frozen feature encoder, cross entropy, loss read
   * back, backward, clip 1.0 inside the AdamW update, zero grads. Seconds.
   */
  async step(): Promise<number> {
    const m = this.model;
    const x = this.input(this.plan.trainBatch, 42);
    m.train();
    const params = m.trainableParameters();
    const opt = (this.opt ??= new AdamW(params, { lr: 1e-5, weightDecay: 0 }));
    const labels = Array.from({ length: this.plan.trainBatch }, (_, i) => i % 5);
    await this.rt.sync();
    const t0 = performance.now();
    const loss = tidy(() => {
      const out = m.forward({ inputValues: x, labels });
      const l = out.loss!;
      out.loss = null;
      disposeOutput(out);
      return l;
    });
    this.lastLoss = (await loss.readFloat())[0];
    backward(loss);
    loss.dispose();
    const norm = gradNorm(params.filter((p) => p.grad));
    opt.step(undefined, { clip: { norm, maxNorm: 1.0 } });
    norm.dispose();
    opt.zeroGrad();
    await this.rt.sync();
    const seconds = (performance.now() - t0) / 1000;
    if (!Number.isFinite(this.lastLoss)) throw new Error(`non-finite loss ${this.lastLoss}`);
    return seconds;
  }

  dispose(): void {
    this.opt?.dispose();
    for (const t of this.inputs) t.dispose();
    this.model.dispose();
  }
}

/** Both sides' repetitions of one kind, alternated after one warm-up each: PyTorch, ours, PyTorch, ours, ... */
async function interleaved(reps: number, theirs: () => Promise<TorchRep>, ours: () => Promise<number>): Promise<{ theirs: Timing; ours: Timing | Error; ratios: number[] }> {
  await theirs();
  const t: number[] = [];
  const o: number[] = [];
  let failure: Error | null = null;
  try {
    await ours();
  } catch (e) {
    failure = e as Error;
  }
  for (let r = 0; r < reps; r++) {
    t.push((await theirs()).seconds);
    if (failure) continue;
    try {
      o.push(await ours());
    } catch (e) {
      failure = e as Error;
    }
  }
  return { theirs: summarize(t), ours: failure ?? summarize(o), ratios: failure ? [] : o.map((x, i) => t[i] / x) };
}

/**
 * Rows: ours vs PyTorch CPU; with --torch-cuda on the command line (tools/gpu-bench.sh passes it where PyTorch sees
 * a CUDA GPU) also vs PyTorch CUDA fp32 and fp16 (autocast) on the same stack and sizes.
 */
export async function benchTorch(rt: Runtime, _peaks: Peaks, quick: boolean): Promise<Row[]> {
  const python = torchPython();
  const plan = torchPlan(quick);
  const common = ['--seconds', String(plan.seconds), '--layers', String(plan.layers), '--forward-batch', String(plan.forwardBatch), '--train-batch', String(plan.trainBatch), '--reps', String(plan.reps)];
  const peers: { label: string; result: TorchResult; ratios?: { forward: number[]; train: number[] } }[] = [];
  const { server, meta } = await TorchServer.start(python, ['--device', 'cpu', '--threads', '2', ...common]);
  const ours: { forward: Timing | Error; train: Timing | Error | null; initSeconds: number; lastLoss: number } = { forward: new Error('not run'), train: null, initSeconds: NaN, lastLoss: NaN };
  let cpu: TorchResult;
  let model: OurXlsr | null = null;
  try {
    try {
      model = new OurXlsr(rt, plan);
      await rt.sync();
      ours.initSeconds = model.initSeconds;
    } catch (e) {
      ours.forward = e as Error;
    }
    const m = model;
    const fail = (e: Error) => async (): Promise<number> => {
      throw e;
    };
    const perAudio = (t: Timing, batch: number) => ({ ...t, batch, seconds_per_audio_second: t.median / (batch * plan.seconds) });
    const fwd = await interleaved(plan.forwardReps, () => server.run('forward'), m ? () => m.forward() : fail(ours.forward as Error));
    ours.forward = fwd.ours;
    const train = await interleaved(plan.reps, () => server.run('train'), m ? () => m.step() : fail(ours.forward as Error));
    ours.train = train.ours;
    ours.lastLoss = m?.lastLoss ?? NaN;
    cpu = {
      ...meta,
      forward: perAudio(fwd.theirs, plan.forwardBatch),
      train_step: { ...perAudio(train.theirs, plan.trainBatch), trainable_parameters: meta.trainable_parameters },
    };
    peers.push({ label: `PyTorch ${cpu.torch} CPU (${cpu.threads} threads)`, result: cpu, ratios: { forward: fwd.ratios, train: train.ratios } });
  } finally {
    server.close();
    model?.dispose();
  }
  const cudaErrors: string[] = [];
  if (process.argv.includes('--torch-cuda')) {
    // a GPU peer does not share the CPU with us: its repetitions run on their own, before nothing else
    for (const dtype of ['fp32', 'fp16']) {
      try {
        const r = await runTorchBench(python, ['--device', 'cuda', '--dtype', dtype, ...common]);
        peers.push({ label: `PyTorch ${r.torch} CUDA ${dtype}${dtype === 'fp16' ? ' (autocast)' : ''} (${r.device})`, result: r });
      } catch (e) {
        cudaErrors.push(`CUDA ${dtype}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }

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
  // per-round ratios (PyTorch's time over ours in the same round): how much the host moved the comparison
  const howTimed = (ratios: number[] | undefined, rounds: number) =>
    ratios?.length
      ? `; interleaved, PyTorch and ours alternating for ${rounds} rounds after a warm-up each: ours ${(1 / Math.max(...ratios)).toFixed(2)}-${(1 / Math.min(...ratios)).toFixed(2)}x PyTorch's time per round, median ${summarize(ratios.map((r) => 1 / r)).median.toFixed(2)}x`
      : '';
  for (const { label, result, ratios } of peers) {
    emit(fwdName, ours.forward, result.forward, plan.forwardBatch, label, `lower is better; ${result.frames} frames; our model init+upload ${ours.initSeconds.toFixed(1)} s${howTimed(ratios?.forward, plan.forwardReps)}`);
    const tt = result.train_step;
    emit(trainName, ours.train, tt, plan.trainBatch, label, `lower is better; forward + cross entropy + backward + clip_grad_norm(1.0) + AdamW over ${(tt?.trainable_parameters ?? 0).toLocaleString('en-US')} trainable params; our last loss ${ours.lastLoss.toFixed(3)}${howTimed(ratios?.train, plan.reps)}`);
  }
  if (cudaErrors.length) rows[rows.length - 1].note += `; PyTorch CUDA failed: ${cudaErrors.join('; ')}`;
  return rows;
}
