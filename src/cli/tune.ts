/** `tune`: tune2fs's identity and policy changes (UUID, label, reserved blocks, checks, errors, seed). */
import { UsageError } from '../core/args.js';
import { Ext4Error } from '../core/errors.js';
import { checkImage, problemSummary } from '../check/check.js';
import { tuneImage, type TuneChanges } from '../edit/tune.js';
import { command, intOption, printJson, warn } from './command.js';
import { jsonOption, writerOptions, writerSettings } from './options.js';

const USAGE = `tune <image> [-U|--uuid random|time|clear|UUID] [--rewrite-checksums] [-L|--label L]
       [-m|--reserved-percent P] [-r|--reserved-blocks N] [-u|--reserved-uid N] [-g|--reserved-gid N]
       [-c|--max-mount-count N|random] [-C|--mount-count N] [-i|--check-interval N[d|w|m|s]]
       [-e|--errors continue|remount-ro|panic] [-O|--feature [^]metadata_csum_seed]
       [--recover] [--verify] [--json] [--no-sync]
      change the UUID, label and policy fields in place, as tune2fs does, through the journal`;

const HELP = `usage: ext4-workdisk ${USAGE}

Every change given is made in one journal transaction (a crash leaves the old or the new file system),
in the superblock and all its backups. Options take tune2fs's letters and values:
  -U, --uuid             random (version 4), time (version 1), clear (all zero) or a UUID
  --rewrite-checksums    with metadata_csum: rewrite every checksum for the new UUID, as tune2fs does;
                         default: set metadata_csum_seed to the old UUID's seed, so no checksum changes
                         (O(1); needs Linux 4.4 or e2fsprogs 1.43 or later to mount or check)
  -L, --label            at most 16 bytes (a longer label is refused; tune2fs truncates it)
  -m, --reserved-percent 0 to 50 (fractions allowed);   -r, --reserved-blocks N (at most half)
  -u, -g                 numeric uid/gid allowed to use the reserved blocks
  -c, --max-mount-count  -16000 to 16000 (0 or negative: never) or random (20 to 40);  -C the count
  -i, --check-interval   N days, or Nd, Nw, Nm (30 days), Ns; 0: never
  -e, --errors           continue, remount-ro or panic
  -O, --feature          metadata_csum_seed or ^metadata_csum_seed (turning it off rewrites every
                         checksum when the stored seed is not the UUID's, as tune2fs does)
Negative values are joined to their option: --max-mount-count=-1, -c-1.
`;

const options = {
  uuid: { type: 'string', short: 'U' },
  'rewrite-checksums': { type: 'boolean' },
  label: { type: 'string', short: 'L' },
  'reserved-percent': { type: 'string', short: 'm' },
  'reserved-blocks': { type: 'string', short: 'r' },
  'reserved-uid': { type: 'string', short: 'u' },
  'reserved-gid': { type: 'string', short: 'g' },
  'max-mount-count': { type: 'string', short: 'c' },
  'mount-count': { type: 'string', short: 'C' },
  'check-interval': { type: 'string', short: 'i' },
  errors: { type: 'string', short: 'e' },
  feature: { type: 'string', short: 'O' },
  recover: { type: 'boolean' },
  verify: { type: 'boolean' },
  ...jsonOption,
  ...writerOptions,
} as const;

function numberOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+(\.\d+)?$/.test(v.trim())) throw new Ext4Error('BAD_OPTION', `--${name} must be a number, got "${v}"`);
  return Number(v);
}

function idOption(v: string | undefined, name: string): number | undefined {
  if (v !== undefined && !/^\d+$/.test(v))
    throw new Ext4Error('BAD_OPTION', `--${name} takes a numeric id, got "${v}" (names are not looked up)`);
  return intOption(v, name);
}

export const tune = command({
  name: 'tune',
  usage: USAGE,
  help: HELP,
  options,
  jsonErrors: true,
  run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('tune needs exactly one <image>');
    const image = positionals[0]!;
    const mmc = values['max-mount-count'];
    const errors = values.errors;
    const changes: TuneChanges = {
      uuid: values.uuid,
      label: values.label,
      reservedPercent: numberOption(values['reserved-percent'], 'reserved-percent'),
      reservedBlocks: numberOption(values['reserved-blocks'], 'reserved-blocks'),
      reservedUid: idOption(values['reserved-uid'], 'reserved-uid'),
      reservedGid: idOption(values['reserved-gid'], 'reserved-gid'),
      maxMountCount: mmc === 'random' ? 'random' : numberOption(mmc, 'max-mount-count'),
      mountCount: numberOption(values['mount-count'], 'mount-count'),
      checkInterval: values['check-interval'],
      errors: errors as TuneChanges['errors'],
      features: values.feature === undefined ? undefined : [values.feature],
      rewriteChecksums: values['rewrite-checksums'],
    };
    if (Object.values(changes).every((x) => x === undefined || x === false))
      throw new UsageError('tune: nothing to change (give at least one of -U, -L, -m, -r, -u, -g, -c, -C, -i, -e, -O)');
    const r = tuneImage(image, changes, { ...writerSettings(values), recover: !!values.recover, onWarning: warn });
    if (values.verify) {
      const res = checkImage(image);
      if (!res.clean)
        throw new Ext4Error(
          'CORRUPT',
          `${image}: after the change the image fails its check (${problemSummary(res)})`,
          {
            path: image,
          },
        );
    }
    if (values.json) printJson({ ok: true, command: 'tune', image, ...r });
    else {
      const how = {
        seed: 'checksum seed kept (metadata_csum_seed)',
        rewrite: 'every checksum rewritten',
        descriptors: 'descriptor checksums rewritten',
        none: '',
      }[r.checksums];
      process.stdout.write(
        `${image}: UUID ${r.uuid}${r.label ? `, label "${r.label}"` : ''}${how ? `; ${how}` : ''}${r.changed ? '' : ' (nothing changed)'}\n`,
      );
    }
  },
});
