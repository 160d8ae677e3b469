#!/usr/bin/env node
/** ext4-workdisk command line: parse, call the library, print. Every failure is one line and exit 1. */
import { parseArgs } from 'node:util';
import { Ext4Error } from './ext4/errors.js';
import { parseSize } from './ext4/layout.js';
import { formatImage } from './image.js';
import { hostDirectorySource } from './source/host.js';
import { readXattrDump } from './source/xattr-dump.js';
import { readImageInfo, formatInfo } from './info.js';

const USAGE = `usage: ext4-workdisk <command> [options]

commands:
  mkfs <image> --size <size> [--from <dir> [--xattrs <getfattr-dump>]] [--owner UID:GID] [--block-size N]
       [--inode-size N] [--label L] [--uuid U] [--hash-seed U]
       [--timestamp UNIX_SECONDS] [--no-sync] [--json]
      create a sparse ext4 image of exactly <size> bytes (K/M/G/T/P = powers of 1024),
      optionally holding a copy of <dir>; --owner makes every entry, / included, UID:GID;
      --xattrs applies extended attributes from 'getfattr -R -d -m - -e hex <dir>' output
  info <image> [--json]
      print the superblock summary (like dumpe2fs -h)
`;

class UsageError extends Error {}

function intOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Ext4Error('BAD_OPTION', `--${name} must be a whole number, got "${v}"`);
  return Number(v);
}

function parseOwner(s: string): { uid: number; gid: number } {
  const m = /^(\d+):(\d+)$/.exec(s);
  if (!m || Number(m[1]) > 0xffffffff || Number(m[2]) > 0xffffffff) throw new Ext4Error('BAD_OPTION', `--owner must be UID:GID (numbers), got "${s}"`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

function cmdMkfs(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      size: { type: 'string', short: 's' },
      'block-size': { type: 'string', short: 'b' },
      'inode-size': { type: 'string', short: 'I' },
      label: { type: 'string', short: 'L' },
      uuid: { type: 'string', short: 'U' },
      'hash-seed': { type: 'string' },
      timestamp: { type: 'string' },
      'no-sync': { type: 'boolean' },
      json: { type: 'boolean' },
      from: { type: 'string', short: 'd' },
      xattrs: { type: 'string' },
      owner: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('mkfs needs exactly one <image> path');
  if (values.size === undefined) throw new UsageError('mkfs needs --size');
  if (values.xattrs !== undefined && values.from === undefined) throw new UsageError('--xattrs needs --from');
  const image = positionals[0]!;
  const r = formatImage(image, {
    sizeBytes: parseSize(values.size),
    blockSize: intOption(values['block-size'], 'block-size'),
    inodeSize: intOption(values['inode-size'], 'inode-size'),
    label: values.label,
    uuid: values.uuid,
    hashSeed: values['hash-seed'],
    timestamp: intOption(values.timestamp, 'timestamp'),
    sync: !values['no-sync'],
    source: values.from === undefined ? undefined : hostDirectorySource(values.from, { xattrs: values.xattrs === undefined ? undefined : readXattrDump(values.xattrs) }),
    owner: values.owner === undefined ? undefined : parseOwner(values.owner),
  });
  const l = r.layout;
  if (values.json) {
    process.stdout.write(
      JSON.stringify({
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
      }) + '\n',
    );
  } else {
    process.stdout.write(
      `${image}: ${l.blocksCount} blocks of ${l.blockSize} bytes, ${l.inodesCount} inodes, ${l.groupCount} groups, journal ${l.journalBlocks} blocks, UUID ${r.uuid}\n`,
    );
  }
}

function cmdInfo(args: string[]): void {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('info needs exactly one <image> path');
  const info = readImageInfo(positionals[0]!);
  process.stdout.write(values.json ? JSON.stringify(info, null, 2) + '\n' : formatInfo(info));
}

export function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'mkfs':
        cmdMkfs(rest);
        return 0;
      case 'info':
        cmdInfo(rest);
        return 0;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof Ext4Error) {
      process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
      return 1;
    }
    const code = (e as { code?: string }).code;
    if (e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`ext4-workdisk: ${(e as Error).message.split('\n')[0]} (see ext4-workdisk --help)\n`);
      return 2;
    }
    process.stderr.write(`ext4-workdisk: internal error: ${(e as Error).message ?? String(e)}\n`);
    return 70;
  }
}

process.exitCode = main(process.argv.slice(2));
