/**
 * The command line's dispatcher: the table of commands, the help, and the one way out (an Ext4Error is
 * its message and exit 1, a usage mistake one line and exit 2, anything else exit 70, never a stack trace).
 * Each command's module is loaded when that command runs, so a command pays only for its own code.
 */
import { Ext4Error } from '../core/errors.js';
import { UsageError, parseArgv, type OptionSet } from '../core/args.js';
import type { CliCommand } from './command.js';
import { LOCK_NOTE, READ_NOTE, lockOption } from './options.js';
import { parseWait, setLockDefaults } from '../host/lock.js';

const TABLE: Record<string, () => Promise<CliCommand>> = {
  mkfs: async () => (await import('./mkfs.js')).mkfs,
  info: async () => (await import('./info.js')).info,
  ls: async () => (await import('./read.js')).ls,
  cat: async () => (await import('./read.js')).cat,
  stat: async () => (await import('./read.js')).stat,
  extract: async () => (await import('./extract.js')).extract,
  check: async () => (await import('./check.js')).check,
  seed: async () => (await import('./workdisk.js')).seed,
  materialize: async () => (await import('./workdisk.js')).materialize,
  edit: async () => (await import('./edit.js')).edit,
  recover: async () => (await import('./recover.js')).recover,
  tune: async () => (await import('./tune.js')).tune,
  resize: async () => (await import('./resize.js')).resize,
};

/** The command called `name`: one of the table, else one of the editing commands. */
async function findCommand(name: string): Promise<CliCommand | undefined> {
  if (Object.hasOwn(TABLE, name)) return TABLE[name]!();
  return (await import('./edit.js')).editingCommand(name);
}

/** `ext4-workdisk --help`: every command, the making and reading ones first, then the editing ones. */
async function mainHelp(): Promise<string> {
  const list = async (names: string[]) =>
    (await Promise.all(names.map((n) => TABLE[n]!()))).map((c) => '  ' + c.usage).join('\n');
  const { editingHelp } = await import('./edit.js');
  return `usage: ext4-workdisk <command> [options]

commands:
${await list(['mkfs', 'info', 'ls', 'cat', 'stat', 'extract', 'check'])}

${await list(['seed', 'materialize'])}

${editingHelp()}
${await list(['edit', 'recover', 'tune', 'resize'])}

${READ_NOTE.replace(/^/gm, '  ')}
${LOCK_NOTE.replace(/^/gm, '  ')}
`;
}

/** `<command> --help`: the command's own usage. */
function commandHelp(c: CliCommand): string {
  return c.help ?? `usage: ext4-workdisk ${c.usage}\n${c.reading ? '\n' + READ_NOTE + '\n' : ''}`;
}

/** Reports a failure on stderr (and stdout, as JSON, for a command run with --json that asks so); the exit code. */
function fail(e: unknown, jsonErrors: boolean): number {
  if (e instanceof Ext4Error) {
    process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
    if (jsonErrors) process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }) + '\n');
    return 1;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`ext4-workdisk: ${e.message.split('\n')[0]} (see ext4-workdisk --help)\n`);
    return 2;
  }
  process.stderr.write(`ext4-workdisk: internal error: ${(e as Error).message ?? String(e)}\n`);
  return 70;
}

/** Runs one command line (without the program name); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  let jsonErrors = false;
  try {
    if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
      process.stdout.write(await mainHelp());
      return name === undefined ? 2 : 0;
    }
    const c = await findCommand(name);
    if (!c) throw new UsageError(`unknown command "${name}"`);
    if ((c.helpFlags ?? ['--help', '-h']).some((f) => rest.includes(f))) {
      process.stdout.write(commandHelp(c));
      return 0;
    }
    const options: OptionSet = { ...c.options, ...lockOption };
    const { values, positionals } = parseArgv(rest, options, name);
    const wait = values.wait as string | true | undefined;
    setLockDefaults({
      command: `ext4-workdisk ${name}`,
      ...(wait === undefined ? {} : { wait: parseWait(wait === true ? '' : wait) }),
    });
    jsonErrors = !!c.jsonErrors && values.json === true;
    return (await c.run(positionals, values)) ?? 0;
  } catch (e) {
    return fail(e, jsonErrors);
  }
}
