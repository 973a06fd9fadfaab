// The `ser` command line (Node edge). Each command lives in its own module: it declares its options as a commander
// Command (the help is generated from them) and parses its own arguments; this file lists them and dispatches.
import { Command, CommanderError } from 'commander';
import { createNodeRuntime } from './dawn.js';
import { trainCommand, evalCommand, predictCommand, demoCommand, trainOptions, evalOptions, predictOptions, demoOptions } from './train-cmd.js';
import { checkReference, checkReferenceOptions } from './check-reference.js';
import { profileCommand, profileOptions } from './profile-cmd.js';
import { tuneCommand, tuneOptions } from './tune-cmd.js';
import { exitCodeOf, parseCommand, serCommand } from './cli-options.js';

interface CommandEntry {
  /** the command's options and arguments (a fresh Command each call: one parse each) */
  options: () => Command;
  run: (argv: string[]) => Promise<number | void>;
}

function infoOptions(): Command {
  return serCommand('info', 'show the WebGPU adapter, its limits and features').option('--json', 'one line of JSON');
}

async function infoCommand(argv: string[]): Promise<number> {
  const { options: v } = parseCommand(infoOptions(), argv);
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
  console.log(v.flag('json') ? JSON.stringify(info) : JSON.stringify(info, null, 2));
  rt.destroy();
  return 0;
}

export const commands: Record<string, CommandEntry> = {
  info: { options: infoOptions, run: infoCommand },
  train: { options: trainOptions, run: trainCommand },
  eval: { options: evalOptions, run: evalCommand },
  predict: { options: predictOptions, run: predictCommand },
  demo: { options: demoOptions, run: demoCommand },
  profile: { options: profileOptions, run: profileCommand },
  'check-reference': { options: checkReferenceOptions, run: (argv) => checkReference(argv) },
  tune: { options: tuneOptions, run: tuneCommand },
};

/** The top level: lists the commands (their summaries come from the commands themselves). */
function program(): Command {
  const p = new Command('ser')
    .usage('<command> [options]')
    .description('speech emotion recognition on WebGPU')
    .showSuggestionAfterError(true)
    .configureHelp({ styleTitle: (title: string) => title.toLowerCase(), helpWidth: 118 })
    .addHelpText('after', '\nser <command> --help for the options of one command')
    .exitOverride();
  for (const entry of Object.values(commands)) p.addCommand(entry.options());
  return p;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    program().outputHelp();
    return 0;
  }
  const cmd = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (cmd) return exitCodeOf(() => cmd.run(rest));
  if (name === 'help' && rest[0] && Object.hasOwn(commands, rest[0])) return exitCodeOf(() => commands[rest[0]].run(['--help']));
  // --help, help, or an unknown command (commander suggests the nearest one): exit 2 for a usage error
  try {
    program().parse(name === 'help' ? ['--help'] : argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' || e.code === 'commander.help' ? 0 : 2;
    throw e;
  }
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`ser: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.SER_DEBUG) console.error(e);
    process.exit(1);
  },
);
