/** `info`: the superblock summary of an image (like dumpe2fs -h). */
import { UsageError } from '../core/args.js';
import { readImageInfo, formatInfo } from '../check/info.js';
import { command, printJson } from './command.js';
import { jsonOption } from './options.js';

export const info = command({
  name: 'info',
  usage: `info <image> [--json]
      print the superblock summary (like dumpe2fs -h)`,
  reading: true,
  options: { ...jsonOption },
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('info needs exactly one <image> path');
    const info = readImageInfo(positionals[0]!);
    if (values.json) printJson(info, 2);
    else process.stdout.write(formatInfo(info));
  },
});
