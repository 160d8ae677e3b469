/** `check`: the file system checked like e2fsck -fn, read-only. */
import { Ext4Error } from '../core/errors.js';
import { UsageError } from '../core/args.js';
import { checkImage, type CheckResult } from '../check/check.js';
import { command, printJson } from './command.js';
import { jsonOption } from './options.js';

/** Exit codes as e2fsck's: 4 is its "errors left uncorrected", 8 its "operational error". */
const CLEAN = 0;
const PROBLEMS = 4;
const NOT_CHECKED = 8;

export const check = command({
  name: 'check',
  usage: `check <image> [--replay] [--json]
      check the file system like e2fsck -fn, read-only: exit 0 clean, 4 problems found, 8 not checkable;
      --replay checks it as it is once its journal is recovered (replayed in memory)`,
  options: { ...jsonOption, replay: { type: 'boolean' } },
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('check needs exactly one <image>');
    const image = positionals[0]!;
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
