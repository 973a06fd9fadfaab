// The `ser` command line (Node edge). Each command lives in its own module and registers here.
import { createNodeRuntime } from './dawn.js';
import { trainCommand, evalCommand, predictCommand, demoCommand, TRAIN_USAGE, EVAL_USAGE, PREDICT_USAGE, DEMO_USAGE } from './train-cmd.js';
import { checkReference, CHECK_REFERENCE_USAGE } from './check-reference.js';
import { profileCommand, PROFILE_USAGE } from './profile-cmd.js';
import { tuneCommand, TUNE_USAGE } from './tune-cmd.js';

interface Command {
  summary: string;
  usage: string;
  run: (argv: string[]) => Promise<number | void>;
}

export const commands: Record<string, Command> = {
  info: {
    summary: 'show the WebGPU adapter, its limits and features',
    usage: 'ser info [--json]',
    async run(argv) {
      const rt = await createNodeRuntime();
      const l = rt.limits;
      const info = {
        adapter: rt.adapter,
        features: [...rt.features].sort(),
        limits: {
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxBufferSize: l.maxBufferSize,
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        },
      };
      if (argv.includes('--json')) console.log(JSON.stringify(info));
      else console.log(JSON.stringify(info, null, 2));
      rt.destroy();
    },
  },
  train: { summary: 'fine-tune a wav2vec2 speech-emotion classifier', usage: TRAIN_USAGE, run: trainCommand },
  eval: { summary: 'WA, UA, per-class metrics and confusion matrix on labelled audio', usage: EVAL_USAGE, run: evalCommand },
  predict: { summary: 'label and class probabilities for audio files', usage: PREDICT_USAGE, run: predictCommand },
  demo: { summary: 'synthesize a Persian emotional-speech corpus and train a small model on it', usage: DEMO_USAGE, run: demoCommand },
  tune: { summary: 'time candidate kernel configurations (tile sizes, strategies) on this adapter and cache the fastest', usage: TUNE_USAGE, run: tuneCommand },
  profile: { summary: 'GPU time per kernel and per section of a forward pass or training step (table, Chrome trace)', usage: PROFILE_USAGE, run: profileCommand },
  'check-reference': {
    summary: 'compare the model (f32) with Hugging Face float64 reference outputs and gradients in a fixture directory',
    usage: CHECK_REFERENCE_USAGE,
    run: (argv) => checkReference(argv),
  },
};

function help(): void {
  console.log('usage: ser <command> [options]\n\ncommands:');
  for (const [name, c] of Object.entries(commands)) console.log(`  ${name.padEnd(18)} ${c.summary}`);
  console.log('\nser <command> --help for the options of one command');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    help();
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`ser: unknown command '${name}'`);
    help();
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(cmd.usage);
    return 0;
  }
  const code = await cmd.run(rest);
  return typeof code === 'number' ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`ser: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.SER_DEBUG) console.error(e);
    process.exit(1);
  },
);
