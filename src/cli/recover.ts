/** `recover`: a dirty journal replayed into the image, orphan inodes cleaned up. */
import { UsageError } from '../core/args.js';
import { recoverJournal } from '../edit/recover.js';
import { command, printJson, warn } from './command.js';
import { jsonOption, writerOptions, writerSettings } from './options.js';

export const recover = command({
  name: 'recover',
  usage: `recover <image> [--json] [--no-sync]
      replay a dirty journal into the image (a VM killed with it mounted), clean up orphan inodes`,
  options: { ...jsonOption, ...writerOptions },
  jsonErrors: true,
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('recover needs exactly one <image>');
    const image = positionals[0]!;
    const r = recoverJournal(image, { ...writerSettings(values), onWarning: warn });
    if (values.json) printJson({ ok: true, command: 'recover', image, ...r });
    else
      process.stdout.write(
        r.recovered
          ? `${image}: replayed ${r.transactions} transaction(s), ${r.blocks} block(s); ${r.orphans} orphan inode(s) cleaned up\n`
          : `${image}: clean, nothing to recover\n`,
      );
  },
});
