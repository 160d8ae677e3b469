/** `mkfs`: a new image, empty or holding a copy of a tree source. */
import { Ext4Error } from '../core/errors.js';
import { UsageError } from '../core/args.js';
import { parseSize } from '../ext4/layout.js';
import { autoSize, formatImage, parseSizeSlack } from '../mkfs/image.js';
import type { FormatResult } from '../mkfs/format.js';
import { readSpec } from '../tree/sources/spec.js';
import { command, intOption, printJson, warn } from './command.js';
import { jsonOption, syncOption } from './options.js';

/** --owner of mkfs: both ids, UID:GID. */
async function ownerOption(s: string): Promise<{ uid: number; gid: number }> {
  // Loaded only when asked for, as the sources below: an empty image needs neither.
  const { parseOwner } = await import('../edit/commands.js');
  const { uid, gid } = parseOwner(s);
  if (uid === undefined || gid === undefined)
    throw new Ext4Error('BAD_OPTION', `--owner must be UID:GID (numbers), got "${s}"`);
  return { uid, gid };
}

export const mkfs = command({
  name: 'mkfs',
  usage: `mkfs <image> --size <size>|auto [--size-slack N%|SIZE] [--from <source>] [--platform OS/ARCH[/VARIANT]]
       [--xattrs <getfattr-dump>] [--owner UID:GID] [--block-size N]
       [--inode-size N] [--label L] [--uuid U] [--hash-seed U] [--skip-unreadable] [--spec <mtree>]
       [--timestamp UNIX_SECONDS] [--no-sync] [--verify] [--json]
      create a sparse ext4 image of exactly <size> bytes (K/M/G/T/P = powers of 1024),
      optionally holding a copy of <source>: a directory, <image>[:<path>], a tar archive (plain or
      gzip; - reads stdin), oci:<dir>[:<tag>] (an OCI image layout; --platform picks from a
      multi-platform index) or docker-archive:<file>[:<tag>] (docker save), layers applied with
      their whiteouts; --size auto picks the smallest size that holds it plus --size-slack (10%);
      --owner makes every entry, / included, UID:GID;
      --xattrs applies extended attributes from 'getfattr -R -d -m - -e hex <dir>' output;
      --spec sets owner, mode, time and xattrs per path from an mtree(5) spec (after --owner);
      --skip-unreadable leaves out (with a warning) entries of a source image that cannot be read;
      --verify checks the new image (as check does) before it is renamed into place`,
  options: {
    size: { type: 'string', short: 's' },
    'block-size': { type: 'string', short: 'b' },
    'inode-size': { type: 'string', short: 'I' },
    label: { type: 'string', short: 'L' },
    uuid: { type: 'string', short: 'U' },
    'hash-seed': { type: 'string' },
    timestamp: { type: 'string' },
    ...syncOption,
    ...jsonOption,
    from: { type: 'string', short: 'd' },
    xattrs: { type: 'string' },
    owner: { type: 'string' },
    'skip-unreadable': { type: 'boolean' },
    verify: { type: 'boolean' },
    'size-slack': { type: 'string' },
    spec: { type: 'string' },
    platform: { type: 'string' },
  },
  async run(positionals, values) {
    if (positionals.length !== 1) throw new UsageError('mkfs needs exactly one <image> path');
    if (values.size === undefined) throw new UsageError('mkfs needs --size');
    if (values.xattrs !== undefined && values.from === undefined) throw new UsageError('--xattrs needs --from');
    if (values.spec !== undefined && values.from === undefined) throw new UsageError('--spec needs --from');
    const spec = values.spec === undefined ? undefined : readSpec(values.spec);
    const image = positionals[0]!;
    const auto = values.size === 'auto';
    if (values['size-slack'] !== undefined && !auto) throw new UsageError('--size-slack goes with --size auto');
    const slack = values['size-slack'] === undefined ? undefined : parseSizeSlack(values['size-slack']);
    const sizeBytes = auto ? 0 : parseSize(values.size);
    const timestamp = intOption(values.timestamp, 'timestamp');
    const owner = values.owner === undefined ? undefined : await ownerOption(values.owner);
    const from =
      values.from === undefined
        ? undefined
        : await (
            await import('../tree/sources/open.js')
          ).openTreeSource(values.from, {
            xattrs: values.xattrs,
            output: image,
            skipUnreadable: !!values['skip-unreadable'],
            platform: values.platform,
            timestamp,
            onWarning: warn,
          });
    let r: FormatResult;
    try {
      const opts = {
        blockSize: intOption(values['block-size'], 'block-size'),
        inodeSize: intOption(values['inode-size'], 'inode-size'),
        label: values.label,
        uuid: values.uuid,
        hashSeed: values['hash-seed'],
        timestamp,
        sync: !values['no-sync'],
        source: from?.source,
        owner,
        spec,
        verify: values.verify,
      };
      r = formatImage(image, auto ? { ...opts, ...autoSize(opts, slack) } : { ...opts, sizeBytes });
    } finally {
      from?.close?.();
    }
    const l = r.layout;
    if (values.json)
      printJson({
        image,
        sizeBytes: l.sizeBytes,
        blockSize: l.blockSize,
        blocks: l.blocksCount,
        inodes: l.inodesCount,
        groups: l.groupCount,
        journalBlocks: l.journalBlocks,
        freeBlocks: r.freeBlocks,
        freeInodes: r.freeInodes,
        uuid: r.uuid,
        hashSeed: r.hashSeed,
        timestamp: r.timestamp,
        bytesWritten: r.bytesWritten,
        inodesUsed: r.inodesUsed,
        dataBytes: r.dataBytes,
        ...(from?.entries !== undefined ? { archiveEntries: from.entries } : {}),
      });
    else
      process.stdout.write(
        `${image}: ${auto ? `${l.sizeBytes} bytes (--size auto), ` : ''}${l.blocksCount} blocks of ${l.blockSize} bytes, ${l.inodesCount} inodes, ${l.groupCount} groups, journal ${l.journalBlocks} blocks, UUID ${r.uuid}\n`,
      );
  },
});
