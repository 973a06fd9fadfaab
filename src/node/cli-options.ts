// Argument parsing for every `ser` command, through commander: help is generated from the declared options (so it
// cannot drift from them), unknown flags and commands get "did you mean" suggestions, and every number is checked by
// its option's own parser, so the error names the flag.
import { Command, CommanderError, InvalidArgumentError, Option, type OptionValues } from 'commander';

/** A `ser` sub-command: suggestions on, errors thrown (not process.exit), help titles in lower case. */
export function serCommand(name: string, summary: string): Command {
  return new Command(name)
    .description(summary)
    .showSuggestionAfterError(true)
    .showHelpAfterError(`(ser ${name} --help lists the options)`)
    .allowExcessArguments(false)
    .configureHelp({ styleTitle: (title: string) => title.toLowerCase(), helpWidth: 118 })
    .exitOverride();
}

type Parser = (value: string) => number;

/** An integer in [min, max]. */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER): Parser {
  return (value) => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isInteger(x) || x < min || x > max) {
      throw new InvalidArgumentError(`an integer${max === Number.MAX_SAFE_INTEGER ? ` >= ${min}` : ` from ${min} to ${max}`} is needed`);
    }
    return x;
  };
}

/** A finite number; `above` is exclusive, `atLeast` / `below` / `atMost` as named. */
export function number(bounds: { above?: number; atLeast?: number; below?: number; atMost?: number } = {}, what = 'number'): Parser {
  return (value) => {
    const x = Number(value);
    const ok = value.trim() !== '' && Number.isFinite(x) && (bounds.above === undefined || x > bounds.above) && (bounds.atLeast === undefined || x >= bounds.atLeast) && (bounds.below === undefined || x < bounds.below) && (bounds.atMost === undefined || x <= bounds.atMost);
    if (!ok) {
      const parts = [bounds.above !== undefined ? `> ${bounds.above}` : '', bounds.atLeast !== undefined ? `>= ${bounds.atLeast}` : '', bounds.below !== undefined ? `< ${bounds.below}` : '', bounds.atMost !== undefined ? `<= ${bounds.atMost}` : ''].filter(Boolean);
      throw new InvalidArgumentError(`a ${what}${parts.length ? ` ${parts.join(' and ')}` : ''} is needed`);
    }
    return x;
  };
}

/** A positive number (an integer when `integer`) up to max; the error names the flag. */
export function positiveNumber(flag: string, max: number, integer: boolean): Parser {
  return (value) => {
    const x = Number(value);
    if (value.trim() === '' || !Number.isFinite(x) || x <= 0 || x > max || (integer && !Number.isInteger(x))) {
      throw new InvalidArgumentError(`${flag} must be a positive ${integer ? 'integer' : 'number'} up to ${max}`);
    }
    return x;
  };
}

/** `--flag <value>` with a parser and an optional default (shown in the help). */
export function valueOption(flags: string, description: string, parse?: Parser, defaultValue?: number | string): Option {
  const o = new Option(flags, description);
  if (parse) o.argParser(parse);
  if (defaultValue !== undefined) o.default(defaultValue);
  return o;
}

/**
 * Another long name for an option (Hugging Face Trainer's names: --learning-rate for --lr, ...): it parses the same
 * way and stores into the same value, so the last one given wins.
 */
export function aliasOption(cmd: Command, aliasFlag: string, canonicalLong: string): void {
  const target = cmd.options.find((o) => o.long === canonicalLong);
  if (!target) throw new Error(`internal: ${cmd.name()} has no option ${canonicalLong} to alias`);
  const value = target.required ? ' <value>' : target.optional ? ' [value]' : '';
  const alias = new Option(`${aliasFlag}${value}`, `same as ${canonicalLong} (Hugging Face Trainer's name)`);
  if (target.parseArg) alias.argParser(target.parseArg);
  const attribute = target.attributeName();
  alias.attributeName = () => attribute;
  cmd.addOption(alias);
}

/**
 * The parsed values, read by type. A name that is not a declared option is a programming error and throws, so a
 * misspelt option name cannot read as "not given".
 */
export class ParsedOptions {
  private readonly values: OptionValues;
  private readonly names: Set<string>;
  constructor(cmd: Command) {
    this.values = cmd.opts();
    this.names = new Set(cmd.options.map((o) => o.attributeName()));
  }
  private get(key: string): unknown {
    if (!this.names.has(key)) throw new Error(`internal: no option named ${key}`);
    return this.values[key];
  }
  string(key: string): string | undefined {
    const x = this.get(key);
    if (x !== undefined && typeof x !== 'string') throw new Error(`internal: option ${key} is not a string`);
    return x;
  }
  number(key: string): number | undefined {
    const x = this.get(key);
    if (x !== undefined && typeof x !== 'number') throw new Error(`internal: option ${key} is not a number`);
    return x;
  }
  flag(key: string): boolean {
    const x = this.get(key);
    if (x !== undefined && typeof x !== 'boolean') throw new Error(`internal: option ${key} is not a flag`);
    return x === true;
  }
}

export class UsageExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

/**
 * Parses argv (the command's own arguments) into `cmd`. Help prints and throws UsageExit(0); a usage error has been
 * printed by commander and throws UsageExit(usageExitCode).
 */
export function parseCommand(cmd: Command, argv: readonly string[], usageExitCode = 1): { options: ParsedOptions; args: string[] } {
  // a parent named ser makes the generated usage line read `ser <command> ...`
  if (!cmd.parent) new Command('ser').addCommand(cmd);
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      throw new UsageExit(e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version' ? 0 : usageExitCode);
    }
    throw e;
  }
  return { options: new ParsedOptions(cmd), args: cmd.args };
}

/** Runs a command's body, turning UsageExit into its exit code (for callers that use the command as a function). */
export async function exitCodeOf(body: () => Promise<number | void>): Promise<number> {
  try {
    const r = await body();
    return typeof r === 'number' ? r : 0;
  } catch (e) {
    if (e instanceof UsageExit) return e.exitCode;
    throw e;
  }
}
