/** `resize`: grow an image's file system to the file's size or to SIZE, shrink it to SIZE or its minimum, print the minimum. */
import { UsageError } from '../core/args.js';
import { parseSize } from '../ext4/layout.js';
import { minimumSize, resizeImage } from '../resize/image.js';
import { command, printJson, warn } from './command.js';
import { jsonOption, writerOptions, writerSettings } from './options.js';

export const resize = command({
  name: 'resize',
  usage: `resize <image> [SIZE] [--min] [--print-min] [--recover] [--json] [--no-sync]
      grow the file system to the image file's size (after truncate -s) or to SIZE (the file is
      extended, sparse; K, M, G, T, P suffixes as mkfs --size), crash-safe through the journal;
      --min or a SIZE below the current one shrinks it (blocks and the journal past the new end
      moved, the file cut); --print-min prints the size --min shrinks to: resize2fs -P's estimate,
      or what holds the data where that is more (--json also gives the floor a SIZE may go down to)`,
  options: {
    ...jsonOption,
    ...writerOptions,
    recover: { type: 'boolean' },
    min: { type: 'boolean' },
    'print-min': { type: 'boolean' },
  },
  jsonErrors: true,
  run(positionals, values) {
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError('resize needs <image> [SIZE]');
    const image = positionals[0]!;
    if (values['print-min']) {
      if (positionals.length > 1 || values.min) throw new UsageError('--print-min takes no SIZE and no --min');
      const m = minimumSize(image, { onWarning: warn });
      if (values.json) printJson({ ok: true, command: 'resize', ...m });
      else
        process.stdout.write(
          `Estimated minimum size of the filesystem: ${m.minBlocks} blocks of ${m.blockSize} bytes, ${m.minBytes} bytes\n`,
        );
      return;
    }
    if (values.min && positionals.length > 1) throw new UsageError('--min takes no SIZE');
    const size = values.min ? 'min' : positionals[1] === undefined ? undefined : parseSize(positionals[1]);
    const r = resizeImage(image, size, { ...writerSettings(values), recover: !!values.recover, onWarning: warn });
    if (values.json) {
      printJson({ ok: true, command: 'resize', ...r });
      return;
    }
    const bytes = (n: number) => `${n * r.blockSize} bytes (${n} blocks of ${r.blockSize})`;
    if (r.newBlocks === r.oldBlocks) {
      process.stdout.write(`${image}: the file system is already ${bytes(r.oldBlocks)}; nothing to do\n`);
      return;
    }
    if (r.newBlocks < r.oldBlocks) {
      process.stdout.write(
        `${image}: shrunk from ${bytes(r.oldBlocks)} to ${r.newBlocks * r.blockSize} bytes (${r.newBlocks} blocks), ${r.oldGroups - r.newGroups} groups removed, ${r.inodesMoved ?? 0} inodes and ${r.blocksMoved ?? 0} blocks of ${r.filesMoved ?? 0} files moved\n`,
      );
      return;
    }
    process.stdout.write(
      `${image}: grown from ${bytes(r.oldBlocks)} to ${r.newBlocks * r.blockSize} bytes (${r.newBlocks} blocks), ${r.newGroups - r.oldGroups} new groups` +
        `${r.toMetaBg ? ', meta_bg turned on' : ''}, ${r.reservedGdtBlocks} reserved GDT blocks left\n`,
    );
  },
});
