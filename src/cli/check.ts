/**
 * `check`: the file system checked like e2fsck -fn, read-only; with --repair, preened like e2fsck -p;
 * with --repair=all, repaired like e2fsck -y.
 */
import { Ext4Error } from '../core/errors.js';
import { UsageError } from '../core/args.js';
import { checkImage, type CheckResult, type Problem } from '../check/check.js';
import { command, printJson, warn } from './command.js';
import type { OptionValues } from '../core/args.js';
import { jsonOption, writerOptions, writerSettings } from './options.js';

/** Exit codes as e2fsck's: 4 is its "errors left uncorrected", 8 its "operational error". */
const CLEAN = 0;
const PROBLEMS = 4;
const NOT_CHECKED = 8;

export const check = command({
  name: 'check',
  usage: `check <image> [--replay | --repair[=all]] [--json] [--no-sync]
      check the file system like e2fsck -fn, read-only: exit 0 clean, 4 problems found, 8 not checkable;
      --replay checks it as it is once its journal is recovered (replayed in memory);
      --repair fixes counts, bitmaps, checksums, link counts and dtimes as e2fsck -p does, through the
      journal, after recovering a dirty journal and orphans: exit 0 clean, 1 fixed, 4 other problems
      (nothing of them written), 8 refused;
      --repair=all fixes what e2fsck -y fixes (directory entries, '.'/'..', htree indexes, unattached
      inodes and directories reconnected to /lost+found, then counts and bitmaps), as one journal
      transaction: exit 0 clean, 1 fixed, 4 left uncorrected (listed), 8 refused`,
  options: {
    ...jsonOption,
    ...writerOptions,
    replay: { type: 'boolean' },
    repair: { type: 'string', optionalValue: true },
  },
  async run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('check needs exactly one <image>');
    const image = positionals[0]!;
    if (values.repair !== undefined) {
      if (values.replay)
        throw new UsageError('check: --repair recovers the journal itself; --replay is for a read-only check');
      if (values.repair !== true && values.repair !== 'all' && values.repair !== 'preen')
        throw new UsageError(`check: --repair=${values.repair}: give --repair (preen) or --repair=all`);
      return repair(image, values, values.repair === 'all' ? 'all' : 'preen');
    }
    let res: CheckResult;
    try {
      res = checkImage(image, { replay: values.replay });
    } catch (e) {
      if (!(e instanceof Ext4Error)) throw e;
      process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
      if (values.json) printJson({ image, checked: false, code: e.code, message: e.message });
      return NOT_CHECKED;
    }
    if (values.json)
      printJson({
        image,
        checked: true,
        clean: res.clean,
        problemCount: res.problemCount,
        problems: res.problems,
        warnings: res.warnings,
      });
    else {
      for (const w of res.warnings) process.stdout.write(`warning: ${w.code}: ${w.text}\n`);
      for (const pr of res.problems) process.stdout.write(`${pr.code}: ${pr.text}\n`);
      if (res.problemCount > res.problems.length)
        process.stdout.write(`... and ${res.problemCount - res.problems.length} more\n`);
      process.stdout.write(
        res.clean
          ? `${image}: clean, ${res.inodesInUse} inodes in use, ${res.groups} groups\n`
          : `${image}: ${res.problemCount} problem(s) found\n`,
      );
    }
    return res.clean ? CLEAN : PROBLEMS;
  },
});

const FIXED = 1;

/** `check --repair[=all]`: the library's repair (edit/repair-all.ts, loaded only here), its report and exit code. */
async function repair(
  image: string,
  values: OptionValues<typeof writerOptions> & { json?: boolean },
  mode: 'preen' | 'all',
): Promise<number> {
  const { repairImage } = await import('../edit/repair-all.js');
  let res;
  try {
    res = repairImage(image, { ...writerSettings(values), onWarning: warn, mode });
  } catch (e) {
    if (!(e instanceof Ext4Error)) throw e;
    process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
    if (values.json) printJson({ image, checked: false, repaired: false, code: e.code, message: e.message });
    return NOT_CHECKED;
  }
  if (values.json) printJson({ image, checked: true, mode, ...res });
  else {
    const line = (p: Problem) => `${p.code}: ${p.text}`;
    if (res.recovered) process.stdout.write('recovered the journal\n');
    for (const p of res.fixed) process.stdout.write(`fixed: ${line(p)}\n`);
    for (const p of res.remaining) process.stdout.write(`${line(p)}\n`);
    if (res.remainingCount > res.remaining.length)
      process.stdout.write(`... and ${res.remainingCount - res.remaining.length} more\n`);
    process.stdout.write(
      res.status === PROBLEMS && mode === 'all'
        ? `${image}: ${res.fixed.length} problem(s) fixed, ${res.remainingCount} left uncorrected\n`
        : res.status === PROBLEMS
          ? `${image}: UNEXPECTED INCONSISTENCY: ${res.remainingCount} problem(s) a preen does not fix; nothing of them written (run check --repair=all, or e2fsck)\n`
          : res.status === FIXED
            ? `${image}: repaired (${res.fixed.length} problem(s) fixed)\n`
            : `${image}: clean, nothing to repair\n`,
    );
  }
  return res.status === 0 ? CLEAN : res.status === 1 ? FIXED : PROBLEMS;
}
