/**
 * The editing commands (`write`, `mkdir`, ... from the table in edit/commands.ts, each with the image
 * first) and `edit`, which runs a script of them as one change; what they share: the options, opening the
 * editor, --verify after the commit.
 */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { UsageError, type OptionValues } from '../core/args.js';
import { COMMANDS, commandOperands, parseScript, parseTime, type RunContext } from '../edit/commands.js';
import { Ext4Editor } from '../edit/editor.js';
import { checkImage, problemSummary } from '../check/check.js';
import { command, printJson, warn, type CliCommand } from './command.js';
import { jsonOption, writerOptions, writerSettings } from './options.js';

/** What every editing command takes besides its own options. */
const editOptions = {
  ...jsonOption,
  verify: { type: 'boolean' },
  check: { type: 'boolean' },
  recover: { type: 'boolean' },
  ...writerOptions,
  timestamp: { type: 'string' },
  help: { type: 'boolean' },
} as const;

/** `editOptions` as the help of each editing command shows them. */
const EDIT_USAGE = '[--json] [--no-sync] [--timestamp T] [--recover] [--check] [--verify]';

/** The main help's section on the editing commands. */
export function editingHelp(): string {
  return `editing (each also takes --json, --no-sync, --timestamp T, --recover, --check, --verify and --help; nothing is
written on error; --check runs the full check first and refuses a damaged image; with a journal, each change is one
transaction: a crash leaves the old or the new file system; a tree copy or removal too big for the journal commits
in several, each leaving a consistent one):
${Object.values(COMMANDS)
  .map((c) => `  ${c.usage}\n      ${c.summary}`)
  .join('\n')}`;
}

function openEditor(image: string, values: OptionValues<typeof editOptions>, atomic = false): Ext4Editor {
  return Ext4Editor.open(image, {
    atomic,
    recover: !!values.recover,
    check: !!values.check,
    ...writerSettings(values),
    timestamp: values.timestamp === undefined ? undefined : parseTime(values.timestamp),
    onWarning: warn,
  });
}

/** --verify of the editing commands: the edited image is checked (the edit itself is committed). */
function verifyEdited(image: string): void {
  const res = checkImage(image);
  if (res.clean) return;
  throw new Ext4Error('CORRUPT', `${image}: after the edit the image fails its check (${problemSummary(res)})`, {
    path: image,
  });
}

/** The CLI entry of the editing command `name` (undefined when there is none). */
export function editingCommand(name: string): CliCommand | undefined {
  if (!Object.hasOwn(COMMANDS, name)) return undefined;
  const cmd = COMMANDS[name]!;
  return command({
    name,
    usage: `${cmd.usage}\n      ${cmd.summary}`,
    help: `usage: ext4-workdisk ${cmd.usage} ${EDIT_USAGE}\n  ${cmd.summary}\n`,
    // -h is an option of some (chown -h, setfattr -h).
    helpFlags: ['--help'],
    options: { ...cmd.options, ...editOptions },
    jsonErrors: true,
    run(positionals, values) {
      const { image, positionals: operands } = commandOperands(cmd, positionals, true);
      const ed = openEditor(image!, values);
      const ctx: RunContext = { stdinFree: true, result: {} };
      try {
        cmd.run(ed, operands, values, ctx);
        ed.commit();
      } finally {
        ed.close();
      }
      if (values.verify) verifyEdited(image!);
      if (values.json) printJson({ ok: true, command: name, image, ...ctx.result });
    },
  });
}

export const edit = command({
  name: 'edit',
  usage: `edit <image> --script FILE|- [--json] [--no-sync] [--timestamp T] [--recover] [--check] [--verify]
      run editing commands, one per line (without the image), as one change: all or nothing`,
  options: { script: { type: 'string' }, ...editOptions },
  jsonErrors: true,
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('edit needs exactly one <image>');
    if (values.script === undefined) throw new UsageError('edit needs --script FILE or --script -');
    const image = positionals[0]!;
    const fromStdin = values.script === '-';
    let text: string;
    try {
      text = fs.readFileSync(fromStdin ? 0 : values.script, 'utf8');
    } catch (e) {
      throw new Ext4Error('SOURCE_ERROR', `cannot read the script: ${(e as Error).message}`);
    }
    const lines = parseScript(text);
    // A script is one change, all or nothing: one transaction, refused when the journal cannot hold it.
    const ed = openEditor(image, values, true);
    try {
      for (const l of lines) {
        try {
          l.cmd.run(ed, l.positionals, l.values, { stdinFree: !fromStdin, result: {} });
        } catch (e) {
          if (e instanceof Ext4Error)
            throw new Ext4Error(e.code, `line ${l.line} (${l.name}): ${e.message}`, e.context);
          if (e instanceof UsageError) throw new UsageError(`line ${l.line} (${l.name}): ${e.message}`);
          throw e;
        }
      }
      ed.commit();
    } finally {
      ed.close();
    }
    if (values.verify) verifyEdited(image);
    if (values.json) printJson({ ok: true, command: 'edit', image, commands: lines.length });
  },
});
