/** `seed` and `materialize`: the work-seed image from a rootfs, and a fresh work disk holding a seed. */
import { UsageError, type OptionValues } from '../core/args.js';
import { parseSize } from '../ext4/layout.js';
import { readSpec } from '../tree/sources/spec.js';
import { buildWorkSeedImage, materializeWorkDisk, type JobOptions } from '../workdisk/job.js';
import { workSeedPath } from '../workdisk/paths.js';
import { command, endProgress, printJson, progress, warn } from './command.js';
import { jsonOption, syncOption } from './options.js';
import { formatUuid } from '../core/bytes.js';
import { uuidBytes } from '../edit/tune-values.js';

/** What both jobs take. */
const jobOptions = {
  'regular-only': { type: 'boolean' },
  ...jsonOption,
  ...syncOption,
  replay: { type: 'boolean' },
  'skip-unreadable': { type: 'boolean' },
  verify: { type: 'boolean' },
  check: { type: 'boolean' },
  spec: { type: 'string' },
  uuid: { type: 'string', short: 'U' },
} as const;

/** The library options `jobOptions` stand for. */
function jobSettings(values: OptionValues<typeof jobOptions>): JobOptions {
  return {
    regularOnly: values['regular-only'],
    onProgress: progress(),
    sync: !values['no-sync'],
    replayJournal: values.replay,
    onWarning: warn,
    skipUnreadable: values['skip-unreadable'],
    verify: values.verify,
    check: values.check,
    spec: values.spec === undefined ? undefined : readSpec(values.spec),
    // tune's words too: random, time, clear.
    uuid: values.uuid === undefined ? undefined : formatUuid(uuidBytes(values.uuid)),
  };
}

export const seed = command({
  name: 'seed',
  usage: `seed <rootfs.ext4> [<out>] [--path /root] [--regular-only] [--replay] [--skip-unreadable] [--verify] [--json]
       [--spec <mtree>] [--uuid U] [--check]
      make the work seed (default <rootfs>.work-seed.ext4) from <path> of the rootfs; prints its path;
      --check: refuse a rootfs the full check finds damaged;
      --spec: per-path owner, mode, time and xattrs (mtree(5), paths relative to <path>)`,
  reading: true,
  options: { path: { type: 'string' }, ...jobOptions },
  run(positionals, values) {
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError('seed needs <rootfs.ext4> [<out>]');
    const rootfs = positionals[0]!;
    const out = positionals[1] ?? workSeedPath(rootfs);
    if (!out) throw new UsageError('seed needs a rootfs path');
    try {
      const r = buildWorkSeedImage(rootfs, out, { path: values.path, ...jobSettings(values) });
      endProgress();
      if (values.json) printJson(r);
      else process.stdout.write(`${r.seedPath}\n`);
    } finally {
      endProgress();
    }
  },
});

export const materialize = command({
  name: 'materialize',
  usage: `materialize <workdisk> --size <size> [--seed <seed.ext4>] [--regular-only] [--replay] [--skip-unreadable] [--verify] [--json]
       [--spec <mtree>] [--uuid U] [--check]
      make a sparse work disk of exactly <size> holding the seed's contents, root:root;
      --check: refuse a seed the full check finds damaged;
      --spec: per-path owner, mode, time and xattrs (mtree(5), paths relative to the seed's root)`,
  reading: true,
  options: { size: { type: 'string', short: 's' }, seed: { type: 'string' }, ...jobOptions },
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('materialize needs exactly one <workdisk> path');
    if (values.spec !== undefined && values.seed === undefined) throw new UsageError('--spec needs --seed');
    const size = parseSize(values.size ?? '8G');
    try {
      const r = materializeWorkDisk(values.seed, positionals[0]!, size, jobSettings(values));
      endProgress();
      if (values.json) printJson(r);
      else process.stdout.write(`${r.workDiskPath}: ${r.sizeBytes} bytes, ${r.entries} entries from the seed\n`);
    } finally {
      endProgress();
    }
  },
});
