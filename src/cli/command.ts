/**
 * What a command of the CLI is (one table entry: name, usage, options, run) and what every command
 * shares at run time: the warning callback, the progress line, number options, JSON output.
 */
import type { OptionSet, OptionValues } from '../core/args.js';
import { Ext4Error } from '../core/errors.js';

export interface CliCommand<O extends OptionSet = OptionSet> {
  name: string;
  /** The usage line(s) and what the command does, as the main help lists it. */
  usage: string;
  options: O;
  /** What `<command> --help` prints; default: `usage: ext4-workdisk <usage>`. */
  help?: string;
  /** The help adds the note on the reading options (--no-verify, --replay). */
  reading?: boolean;
  /** The words that ask for the help, anywhere on the line; default --help and -h. */
  helpFlags?: readonly string[];
  /** With --json, a failure is reported on stdout too (as JSON), not only on stderr. */
  jsonErrors?: boolean;
  /** Does the work; returns the exit code (default 0). Failures are thrown (Ext4Error, UsageError). */
  run(positionals: string[], values: OptionValues<O>): number | void | Promise<number | void>;
}

/** Declares a command: types its `run` by its options. */
export function command<O extends OptionSet>(c: CliCommand<O>): CliCommand {
  return c;
}

/** The one warning callback: every library call that can warn gets this. */
export const warn = (m: string): void => {
  process.stderr.write(`ext4-workdisk: warning: ${m}\n`);
};

/** A one-line stage display on a terminal; silent otherwise. */
export function progress(): ((stage: string) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (stage) => process.stderr.write(`\r\x1b[K${stage}...`);
}

export function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/** A whole-number option (undefined when not given). */
export function intOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Ext4Error('BAD_OPTION', `--${name} must be a whole number, got "${v}"`);
  return Number(v);
}

/** Writes one JSON object and a newline to stdout. */
export function printJson(v: unknown, indent?: number): void {
  process.stdout.write(JSON.stringify(v, null, indent) + '\n');
}
