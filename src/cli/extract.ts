/** `extract`: a subtree of an image to a host directory (like debugfs rdump) or as a pax archive. */
import { isatty } from 'node:tty';
import { Ext4Error } from '../core/errors.js';
import { UsageError, type OptionValues } from '../core/args.js';
import { extract as extractTree } from '../tree/extract.js';
import { exportTar } from '../tree/tar-export.js';
import { command, printJson, warn } from './command.js';
import { jsonOption, readerOptions } from './options.js';
import { openReader } from './read.js';

const options = {
  'xattrs-dump': { type: 'string' },
  'no-owners': { type: 'boolean' },
  ...readerOptions,
  ...jsonOption,
  tar: { type: 'string' },
} as const;

/** Entries that could not be read fail the command (exit 1) once everything else is out. */
function incomplete(n: number, what: string): Ext4Error {
  return new Ext4Error(
    'INCOMPLETE',
    `${n} ${n === 1 ? 'entry' : 'entries'} could not be read from the image and ${n === 1 ? 'was' : 'were'} ${what}`,
  );
}

export const extract = command({
  name: 'extract',
  usage: `extract <image> <path> <dest> [--xattrs-dump FILE] [--no-owners]
  extract <image> <path> --tar <out.tar>|- [--json]
      recreate <path> under the existing directory <dest> (like debugfs rdump); an entry that cannot
      be read (encrypted, damaged) is named in a warning and left out, the rest extracted, exit 1;
      --tar writes <path> as a pax archive instead (- for stdout; --json then goes to stderr) with
      owners, nanosecond times, xattrs, ACLs, hard links, devices and holes; restore it as root with
      tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -G -f <out.tar> -C <dir>
      (-G restores atimes too; sockets are left out, as tar does)`,
  reading: true,
  options,
  run(positionals, values) {
    if (values.tar !== undefined) return extractTar(positionals, values.tar, values);
    if (positionals.length !== 3) throw new UsageError('extract needs <image> <path> <dest>');
    const r = openReader(positionals[0]!, values);
    const res = extractTree(r, positionals[1]!, positionals[2]!, {
      owners: values['no-owners'] ? false : undefined,
      xattrDump: values['xattrs-dump'],
      onWarning: warn,
    });
    if (values.json) printJson(res);
    const n = res.unreadable.length;
    if (n) throw incomplete(n, 'not extracted (named above); everything else was');
  },
});

/** `extract <image> <path> --tar OUT|-`: the subtree as a pax archive, to a file (atomically) or stdout. */
function extractTar(positionals: string[], out: string, values: OptionValues<typeof options>): void {
  if (positionals.length !== 2) throw new UsageError('extract --tar needs <image> <path> (no <dest>)');
  if (values['xattrs-dump'] !== undefined || values['no-owners'])
    throw new UsageError('--xattrs-dump and --no-owners are for extracting to a directory, not with --tar');
  if (out === '') throw new UsageError('--tar needs a file name or - for standard output');
  const toStdout = out === '-';
  // As tar does: an archive is not for a terminal. (isatty, not process.stdout: that would make a pipe non-blocking.)
  if (toStdout && isatty(1)) throw new Ext4Error('BAD_OPTION', 'refusing to write the archive to a terminal');
  const r = openReader(positionals[0]!, values);
  const res = exportTar(r, positionals[1]!, toStdout ? { fd: 1 } : out, { onWarning: warn });
  // With the archive on stdout, the result goes to stderr so it cannot corrupt the archive.
  if (values.json) (toStdout ? process.stderr : process.stdout).write(JSON.stringify(res) + '\n');
  const n = res.unreadable.length;
  if (n) throw incomplete(n, 'left out of the archive (named above); everything else is in it');
}
