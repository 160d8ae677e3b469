/** ext4-workdisk command line: parse, call the library, print. Every failure is one line and exit 1. */
import { parseArgs } from 'node:util';
import { Ext4Error } from './ext4/errors.js';
import { parseSize } from './ext4/layout.js';
import { autoSize, formatImage, parseSizeSlack } from './image.js';
import type { FormatResult } from './ext4/format.js';
import { openTreeSource } from './source/open.js';
import { readSpec } from './source/spec.js';
import { Ext4Reader } from './fs/reader.js';
import { fileTypeOf } from './ext4/filetype.js';
import { FileDevice } from './io/device.js';
import { extract } from './extract.js';
import { exportTar } from './tree/tar-export.js';
import { isatty } from 'node:tty';
import * as fs from 'node:fs';
import { buildWorkSeedImage, materializeWorkDisk, type Stage } from './workdisk/job.js';
import { workSeedPath } from './workdisk/paths.js';
import { readImageInfo, formatInfo } from './info.js';
import {
  COMMANDS,
  UsageError,
  parseCommand,
  parseScript,
  parseTime,
  parseOwner,
  type RunContext,
} from './edit/commands.js';
import { Ext4Editor } from './edit/editor.js';
import { recoverJournal } from './edit/recover.js';
import { checkImage, problemSummary, type CheckResult } from './check/check.js';
import { lockForRead, parseWait, setLockDefaults } from './host/lock.js';

/** The making and reading commands: usage line(s) and what each does (`<command> --help` prints its own). */
const MAIN_COMMANDS: Record<string, string> = {
  mkfs: `mkfs <image> --size <size>|auto [--size-slack N%|SIZE] [--from <source>] [--platform OS/ARCH[/VARIANT]]
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
  info: `info <image> [--json]
      print the superblock summary (like dumpe2fs -h)`,
  ls: `ls <image> [<path>] [-l]          list a directory`,
  cat: `cat <image> <path>                write a file's bytes to stdout`,
  stat: `stat <image> <path> [--json]      an inode's metadata`,
  extract: `extract <image> <path> <dest> [--xattrs-dump FILE] [--no-owners]
  extract <image> <path> --tar <out.tar>|- [--json]
      recreate <path> under the existing directory <dest> (like debugfs rdump); an entry that cannot
      be read (encrypted, damaged) is named in a warning and left out, the rest extracted, exit 1;
      --tar writes <path> as a pax archive instead (- for stdout; --json then goes to stderr) with
      owners, nanosecond times, xattrs, ACLs, hard links, devices and holes; restore it as root with
      tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -G -f <out.tar> -C <dir>
      (-G restores atimes too; sockets are left out, as tar does)`,
  seed: `seed <rootfs.ext4> [<out>] [--path /root] [--regular-only] [--replay] [--skip-unreadable] [--verify] [--json]
       [--spec <mtree>]
      make the work seed (default <rootfs>.work-seed.ext4) from <path> of the rootfs; prints its path;
      --spec: per-path owner, mode, time and xattrs (mtree(5), paths relative to <path>)`,
  check: `check <image> [--replay] [--json]
      check the file system like e2fsck -fn, read-only: exit 0 clean, 4 problems found, 8 not checkable;
      --replay checks it as it is once its journal is recovered (replayed in memory)`,
  edit: `edit <image> --script FILE|- [--json] [--no-sync] [--timestamp T] [--recover] [--verify]
      run editing commands, one per line (without the image), as one change: all or nothing`,
  recover: `recover <image> [--json] [--no-sync]
      replay a dirty journal into the image (a VM killed with it mounted), clean up orphan inodes`,
  materialize: `materialize <workdisk> --size <size> [--seed <seed.ext4>] [--regular-only] [--replay] [--skip-unreadable] [--verify] [--json]
       [--spec <mtree>]
      make a sparse work disk of exactly <size> holding the seed's contents, root:root;
      --spec: per-path owner, mode, time and xattrs (mtree(5), paths relative to the seed's root)`,
};

/** What the reading commands share. */
const READ_NOTE = `reading commands take --no-verify to read past checksum mismatches (salvage) and --replay to
replay a dirty journal in memory (the image is not changed; default: read it as it is on disk)`;
const READING = new Set(['info', 'ls', 'cat', 'stat', 'extract', 'seed', 'materialize']);
/** Image locks between our processes (src/host/lock.ts); --wait is taken by takeLockOption. */
const LOCK_NOTE = `every command takes --wait[=SECONDS]: an image another ext4-workdisk process is changing is refused
(IN_USE, naming that process) unless --wait waits for it (no value: without limit); readers wait for a
writer up to 60 s by default, and writers for readers up to 30 s`;

const USAGE = `usage: ext4-workdisk <command> [options]

commands:
${['mkfs', 'info', 'ls', 'cat', 'stat', 'extract', 'check'].map((c) => '  ' + MAIN_COMMANDS[c]).join('\n')}

${['seed', 'materialize'].map((c) => '  ' + MAIN_COMMANDS[c]).join('\n')}

editing (each also takes --json, --no-sync, --timestamp T, --recover, --verify and --help; nothing is written on
error; with a journal, each change is one transaction: a crash leaves the old or the new file system;
a tree copy or removal too big for the journal commits in several, each leaving a consistent one):
${Object.values(COMMANDS)
  .map((c) => `  ${c.usage}\n      ${c.summary}`)
  .join('\n')}
${['edit', 'recover'].map((c) => '  ' + MAIN_COMMANDS[c]).join('\n')}

${READ_NOTE.replace(/^/gm, '  ')}
${LOCK_NOTE.replace(/^/gm, '  ')}
`;

/** `<command> --help`: the command's own usage. */
function commandHelp(cmd: string): string {
  const note = READING.has(cmd) ? '\n' + READ_NOTE + '\n' : '';
  return `usage: ext4-workdisk ${MAIN_COMMANDS[cmd]}\n${note}`;
}

function intOption(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Ext4Error('BAD_OPTION', `--${name} must be a whole number, got "${v}"`);
  return Number(v);
}

/** --owner of mkfs and the work-disk job: both ids, UID:GID. */
function ownerOption(s: string): { uid: number; gid: number } {
  const { uid, gid } = parseOwner(s);
  if (uid === undefined || gid === undefined)
    throw new Ext4Error('BAD_OPTION', `--owner must be UID:GID (numbers), got "${s}"`);
  return { uid, gid };
}

async function cmdMkfs(args: string[]): Promise<void> {
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
      'skip-unreadable': { type: 'boolean' },
      verify: { type: 'boolean' },
      'size-slack': { type: 'string' },
      spec: { type: 'string' },
      platform: { type: 'string' },
    },
  });
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
  const from =
    values.from === undefined
      ? undefined
      : await openTreeSource(values.from, {
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
      owner: values.owner === undefined ? undefined : ownerOption(values.owner),
      spec,
      verify: values.verify,
    };
    r = formatImage(image, auto ? { ...opts, ...autoSize(opts, slack) } : { ...opts, sizeBytes });
  } finally {
    from?.close?.();
  }
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
        ...(from?.entries !== undefined ? { archiveEntries: from.entries } : {}),
      }) + '\n',
    );
  } else {
    process.stdout.write(
      `${image}: ${auto ? `${l.sizeBytes} bytes (--size auto), ` : ''}${l.blocksCount} blocks of ${l.blockSize} bytes, ${l.inodesCount} inodes, ${l.groupCount} groups, journal ${l.journalBlocks} blocks, UUID ${r.uuid}\n`,
    );
  }
}

function openReader(image: string, verify: boolean, replay = false): Ext4Reader {
  lockForRead(image); // held until the process exits (output may still be flowing)
  const dev = FileDevice.open(image);
  return Ext4Reader.open(dev, {
    verifyChecksums: verify,
    replayJournal: replay,
    onWarning: (m) => process.stderr.write(`ext4-workdisk: warning: ${m}\n`),
  });
}

const MODE_CHARS: Record<string, string> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  chardev: 'c',
  blockdev: 'b',
  fifo: 'p',
  socket: 's',
};
function modeString(mode: number): string {
  const t = MODE_CHARS[fileTypeOf(mode) ?? ''] ?? '?';
  const rwx = (v: number, s: boolean, sc: string) =>
    (v & 4 ? 'r' : '-') + (v & 2 ? 'w' : '-') + (s ? (v & 1 ? sc : sc.toUpperCase()) : v & 1 ? 'x' : '-');
  return (
    t +
    rwx((mode >> 6) & 7, !!(mode & 0o4000), 's') +
    rwx((mode >> 3) & 7, !!(mode & 0o2000), 's') +
    rwx(mode & 7, !!(mode & 0o1000), 't')
  );
}

function cmdLs(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { long: { type: 'boolean', short: 'l' }, 'no-verify': { type: 'boolean' }, replay: { type: 'boolean' } },
  });
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError('ls needs <image> [<path>]');
  const r = openReader(positionals[0]!, !values['no-verify'], values.replay);
  const ino = r.lookup(positionals[1] ?? '/', { followLast: true });
  const entries = r.readDir(ino).sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const out: string[] = [];
  for (const e of entries) {
    const name = Buffer.from(e.name).toString('utf8');
    if (!values.long) {
      out.push(name);
      continue;
    }
    const i = r.inode(e.inode);
    const t = fileTypeOf(i.mode);
    const size = t === 'chardev' || t === 'blockdev' ? r.deviceNumbers(i).join(', ') : String(i.size);
    const when = new Date(i.mtime.sec * 1000).toISOString().replace('T', ' ').slice(0, 19);
    const link = t === 'symlink' ? ` -> ${Buffer.from(r.readLink(e.inode, i)).toString('utf8')}` : '';
    out.push(
      `${modeString(i.mode)} ${String(i.linksCount).padStart(3)} ${String(i.uid).padStart(5)} ${String(i.gid).padStart(5)} ${size.padStart(12)} ${when} ${name}${link}`,
    );
  }
  process.stdout.write(out.map((l) => l + '\n').join(''));
}

function cmdCat(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { 'no-verify': { type: 'boolean' }, replay: { type: 'boolean' } },
  });
  if (positionals.length !== 2) throw new UsageError('cat needs <image> <path>');
  const r = openReader(positionals[0]!, !values['no-verify'], values.replay);
  const ino = r.lookup(positionals[1]!, { followLast: true });
  const i = r.inode(ino);
  if (fileTypeOf(i.mode) !== 'file')
    throw new Ext4Error('NOT_FOUND', `${positionals[1]} is not a regular file`, { path: positionals[1] });
  const zero = new Uint8Array(1 << 20);
  const out = (b: Uint8Array, n = b.length) => {
    for (let done = 0; done < n;) done += fs.writeSync(1, b, done, n - done);
  };
  try {
    r.readFile(
      ino,
      (data, _off, len) => {
        if (data) out(data);
        else for (let left = len; left > 0; left -= zero.length) out(zero, Math.min(left, zero.length));
      },
      i,
    );
  } catch (e) {
    // The reader went away (`| head`): stop quietly, like cat(1).
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

function cmdStat(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'no-verify': { type: 'boolean' }, replay: { type: 'boolean' } },
  });
  if (positionals.length !== 2) throw new UsageError('stat needs <image> <path>');
  const r = openReader(positionals[0]!, !values['no-verify'], values.replay);
  const ino = r.lookup(positionals[1]!);
  const i = r.inode(ino);
  const t = fileTypeOf(i.mode);
  const info = {
    inode: ino,
    type: t ?? 'unknown',
    mode: '0' + (i.mode & 0o7777).toString(8),
    uid: i.uid,
    gid: i.gid,
    size: i.size,
    links: i.linksCount,
    flags: '0x' + i.flags.toString(16),
    allocatedBytes: r.allocatedBytes(i),
    atime: i.atime,
    mtime: i.mtime,
    ctime: i.ctime,
    crtime: i.crtime,
    generation: i.generation,
    ...(t === 'symlink' ? { target: Buffer.from(r.readLink(ino, i)).toString('utf8') } : {}),
    ...(t === 'chardev' || t === 'blockdev' ? { device: r.deviceNumbers(i) } : {}),
    xattrs: Object.fromEntries(r.xattrs(ino).map((x) => [x.name, '0x' + Buffer.from(x.value).toString('hex')])),
    extents: r.blockRuns(ino, i),
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return;
  }
  const ts = (x: { sec: number; nsec: number }) =>
    `${x.sec}.${String(x.nsec).padStart(9, '0')} (${new Date(x.sec * 1000).toISOString()})`;
  const lines = [
    `Inode: ${ino}   Type: ${info.type}   Mode: ${info.mode}   Flags: ${info.flags}`,
    `User: ${i.uid}   Group: ${i.gid}   Size: ${i.size}   Links: ${i.linksCount}   Allocated: ${info.allocatedBytes}`,
    `atime: ${ts(i.atime)}`,
    `mtime: ${ts(i.mtime)}`,
    `ctime: ${ts(i.ctime)}`,
    `crtime: ${ts(i.crtime)}`,
  ];
  if ('target' in info) lines.push(`Target: ${info.target}`);
  if ('device' in info && info.device) lines.push(`Device: ${info.device.join(', ')}`);
  for (const [k, v] of Object.entries(info.xattrs)) lines.push(`Xattr: ${k}=${v}`);
  if (info.extents.length)
    lines.push(
      `Blocks: ${info.extents.map((e) => `(${e.lblk}${e.len > 1 ? '-' + (e.lblk + e.len - 1) : ''}):${e.pblk}${e.len > 1 ? '-' + (e.pblk + e.len - 1) : ''}${e.uninit ? ' [uninit]' : ''}`).join(', ')}`,
    );
  process.stdout.write(lines.join('\n') + '\n');
}

function cmdExtract(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      'xattrs-dump': { type: 'string' },
      'no-owners': { type: 'boolean' },
      'no-verify': { type: 'boolean' },
      replay: { type: 'boolean' },
      json: { type: 'boolean' },
      tar: { type: 'string' },
    },
  });
  if (values.tar !== undefined) return cmdExtractTar(positionals, values.tar, values);
  if (positionals.length !== 3) throw new UsageError('extract needs <image> <path> <dest>');
  const r = openReader(positionals[0]!, !values['no-verify'], values.replay);
  const res = extract(r, positionals[1]!, positionals[2]!, {
    owners: values['no-owners'] ? false : undefined,
    xattrDump: values['xattrs-dump'],
    onWarning: (m) => process.stderr.write(`ext4-workdisk: warning: ${m}\n`),
  });
  if (values.json) process.stdout.write(JSON.stringify(res) + '\n');
  const n = res.unreadable.length;
  if (n)
    throw new Ext4Error(
      'INCOMPLETE',
      `${n} ${n === 1 ? 'entry' : 'entries'} could not be read from the image and ${n === 1 ? 'was' : 'were'} not extracted (named above); everything else was`,
    );
}

/** `extract <image> <path> --tar OUT|-`: the subtree as a pax archive, to a file (atomically) or stdout. */
function cmdExtractTar(
  positionals: string[],
  out: string,
  values: { json?: boolean; replay?: boolean; 'no-verify'?: boolean; 'xattrs-dump'?: string; 'no-owners'?: boolean },
): void {
  if (positionals.length !== 2) throw new UsageError('extract --tar needs <image> <path> (no <dest>)');
  if (values['xattrs-dump'] !== undefined || values['no-owners'])
    throw new UsageError('--xattrs-dump and --no-owners are for extracting to a directory, not with --tar');
  if (out === '') throw new UsageError('--tar needs a file name or - for standard output');
  const toStdout = out === '-';
  // As tar does: an archive is not for a terminal. (isatty, not process.stdout: that would make a pipe non-blocking.)
  if (toStdout && isatty(1)) throw new Ext4Error('BAD_OPTION', 'refusing to write the archive to a terminal');
  const r = openReader(positionals[0]!, !values['no-verify'], values.replay);
  const res = exportTar(r, positionals[1]!, toStdout ? { fd: 1 } : out, {
    onWarning: (m) => process.stderr.write(`ext4-workdisk: warning: ${m}\n`),
  });
  // With the archive on stdout, the result goes to stderr so it cannot corrupt the archive.
  if (values.json) (toStdout ? process.stderr : process.stdout).write(JSON.stringify(res) + '\n');
  const n = res.unreadable.length;
  if (n)
    throw new Ext4Error(
      'INCOMPLETE',
      `${n} ${n === 1 ? 'entry' : 'entries'} could not be read from the image and ${n === 1 ? 'was' : 'were'} left out of the archive (named above); everything else is in it`,
    );
}

const warn = (m: string) => process.stderr.write(`ext4-workdisk: warning: ${m}\n`);

/** A one-line stage display on a terminal; silent otherwise. */
function progress(): ((stage: Stage) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (stage) => process.stderr.write(`\r\x1b[K${stage}...`);
}
function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

function cmdSeed(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      path: { type: 'string' },
      'regular-only': { type: 'boolean' },
      json: { type: 'boolean' },
      'no-sync': { type: 'boolean' },
      replay: { type: 'boolean' },
      'skip-unreadable': { type: 'boolean' },
      verify: { type: 'boolean' },
      spec: { type: 'string' },
    },
  });
  if (positionals.length < 1 || positionals.length > 2) throw new UsageError('seed needs <rootfs.ext4> [<out>]');
  const rootfs = positionals[0]!;
  const out = positionals[1] ?? workSeedPath(rootfs);
  if (!out) throw new UsageError('seed needs a rootfs path');
  try {
    const r = buildWorkSeedImage(rootfs, out, {
      path: values.path,
      regularOnly: values['regular-only'],
      onProgress: progress(),
      sync: !values['no-sync'],
      replayJournal: values.replay,
      onWarning: warn,
      skipUnreadable: values['skip-unreadable'],
      verify: values.verify,
      spec: values.spec === undefined ? undefined : readSpec(values.spec),
    });
    endProgress();
    process.stdout.write(values.json ? JSON.stringify(r) + '\n' : `${r.seedPath}\n`);
  } finally {
    endProgress();
  }
}

function cmdMaterialize(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      size: { type: 'string', short: 's' },
      seed: { type: 'string' },
      'regular-only': { type: 'boolean' },
      json: { type: 'boolean' },
      'no-sync': { type: 'boolean' },
      replay: { type: 'boolean' },
      'skip-unreadable': { type: 'boolean' },
      verify: { type: 'boolean' },
      spec: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('materialize needs exactly one <workdisk> path');
  if (values.spec !== undefined && values.seed === undefined) throw new UsageError('--spec needs --seed');
  const size = parseSize(values.size ?? '8G');
  try {
    const r = materializeWorkDisk(values.seed, positionals[0]!, size, {
      regularOnly: values['regular-only'],
      onProgress: progress(),
      sync: !values['no-sync'],
      replayJournal: values.replay,
      onWarning: warn,
      skipUnreadable: values['skip-unreadable'],
      verify: values.verify,
      spec: values.spec === undefined ? undefined : readSpec(values.spec),
    });
    endProgress();
    process.stdout.write(
      values.json
        ? JSON.stringify(r) + '\n'
        : `${r.workDiskPath}: ${r.sizeBytes} bytes, ${r.entries} entries from the seed\n`,
    );
  } finally {
    endProgress();
  }
}

function cmdInfo(args: string[]): void {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  if (positionals.length !== 1) throw new UsageError('info needs exactly one <image> path');
  const info = readImageInfo(positionals[0]!);
  process.stdout.write(values.json ? JSON.stringify(info, null, 2) + '\n' : formatInfo(info));
}

const EDIT_OPTIONS = {
  json: { type: 'boolean' as const },
  verify: { type: 'boolean' as const },
  recover: { type: 'boolean' as const },
  'no-sync': { type: 'boolean' as const },
  timestamp: { type: 'string' as const },
  help: { type: 'boolean' as const },
};

/** Set by an editing command run with --json, so a failure is reported on stdout too. */
let jsonErrors = false;

function openEditor(image: string, values: Record<string, unknown>, atomic = false): Ext4Editor {
  return Ext4Editor.open(image, {
    atomic,
    recover: !!values.recover,
    sync: !values['no-sync'],
    timestamp: typeof values.timestamp === 'string' ? parseTime(values.timestamp) : undefined,
    onWarning: warn,
  });
}

function cmdEditOne(name: string, args: string[]): void {
  if (args.includes('--help')) {
    process.stdout.write(
      `usage: ext4-workdisk ${COMMANDS[name]!.usage} [--json] [--no-sync] [--timestamp T] [--recover] [--verify]\n  ${COMMANDS[name]!.summary}\n`,
    );
    return;
  }
  const p = parseCommand(name, args, true, EDIT_OPTIONS);
  jsonErrors = !!p.values.json;
  const ed = openEditor(p.image!, p.values);
  const ctx: RunContext = { stdinFree: true, result: {} };
  try {
    p.cmd.run(ed, p.positionals, p.values, ctx);
    ed.commit();
  } finally {
    ed.close();
  }
  if (p.values.verify) verifyEdited(p.image!);
  if (p.values.json)
    process.stdout.write(JSON.stringify({ ok: true, command: name, image: p.image, ...ctx.result }) + '\n');
}

function cmdEdit(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { script: { type: 'string' }, ...EDIT_OPTIONS },
  });
  jsonErrors = !!values.json;
  if (positionals.length !== 1) throw new UsageError('edit needs exactly one <image>');
  if (values.script === undefined) throw new UsageError('edit needs --script FILE or --script -');
  const fromStdin = values.script === '-';
  let text: string;
  try {
    text = fs.readFileSync(fromStdin ? 0 : values.script, 'utf8');
  } catch (e) {
    throw new Ext4Error('SOURCE_ERROR', `cannot read the script: ${(e as Error).message}`);
  }
  const lines = parseScript(text);
  // A script is one change, all or nothing: one transaction, refused when the journal cannot hold it.
  const ed = openEditor(positionals[0]!, values, true);
  try {
    for (const l of lines) {
      try {
        l.cmd.run(ed, l.positionals, l.values, { stdinFree: !fromStdin, result: {} });
      } catch (e) {
        if (e instanceof Ext4Error) throw new Ext4Error(e.code, `line ${l.line} (${l.name}): ${e.message}`, e.context);
        if (e instanceof UsageError) throw new UsageError(`line ${l.line} (${l.name}): ${e.message}`);
        throw e;
      }
    }
    ed.commit();
  } finally {
    ed.close();
  }
  if (values.verify) verifyEdited(positionals[0]!);
  if (values.json)
    process.stdout.write(
      JSON.stringify({ ok: true, command: 'edit', image: positionals[0], commands: lines.length }) + '\n',
    );
}

function cmdRecover(args: string[]): void {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'no-sync': { type: 'boolean' } },
  });
  jsonErrors = !!values.json;
  if (positionals.length !== 1) throw new UsageError('recover needs exactly one <image>');
  const r = recoverJournal(positionals[0]!, { sync: !values['no-sync'], onWarning: warn });
  if (values.json)
    process.stdout.write(JSON.stringify({ ok: true, command: 'recover', image: positionals[0], ...r }) + '\n');
  else
    process.stdout.write(
      r.recovered
        ? `${positionals[0]}: replayed ${r.transactions} transaction(s), ${r.blocks} block(s); ${r.orphans} orphan inode(s) cleaned up\n`
        : `${positionals[0]}: clean, nothing to recover\n`,
    );
}

/** --verify of the editing commands: the edited image is checked (the edit itself is committed). */
function verifyEdited(image: string): void {
  const res = checkImage(image);
  if (res.clean) return;
  throw new Ext4Error('CORRUPT', `${image}: after the edit the image fails its check (${problemSummary(res)})`, {
    path: image,
  });
}

/** `check`: exit 0 clean, 4 problems found (e2fsck's "errors left uncorrected"), 8 could not check. */
function cmdCheck(args: string[]): number {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, replay: { type: 'boolean' } },
  });
  if (positionals.length !== 1) throw new UsageError('check needs exactly one <image>');
  const image = positionals[0]!;
  let res: CheckResult;
  try {
    res = checkImage(image, { replay: values.replay });
  } catch (e) {
    if (!(e instanceof Ext4Error)) throw e;
    process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
    if (values.json)
      process.stdout.write(JSON.stringify({ image, checked: false, code: e.code, message: e.message }) + '\n');
    return 8;
  }
  if (values.json)
    process.stdout.write(
      JSON.stringify({
        image,
        checked: true,
        clean: res.clean,
        problemCount: res.problemCount,
        problems: res.problems,
        warnings: res.warnings,
      }) + '\n',
    );
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
  return res.clean ? 0 : 4;
}

/**
 * `--wait[=SECONDS]`, taken by every command before its own options are parsed: how long to wait for
 * another process's lock on an image (src/host/lock.ts); no value waits without limit.
 */
function takeLockOption(cmd: string | undefined, args: string[]): string[] {
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  const isWait = (a: string, i: number) => i < end && (a === '--wait' || a.startsWith('--wait='));
  const given = args.filter(isWait).pop();
  const wait = given === undefined ? {} : { wait: parseWait(given.slice(7)) };
  setLockDefaults({ command: `ext4-workdisk ${cmd ?? ''}`.trim(), ...wait });
  return args.filter((a, i) => !isWait(a, i));
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  try {
    const rest = takeLockOption(cmd, args);
    if (cmd !== undefined && Object.hasOwn(MAIN_COMMANDS, cmd) && (rest.includes('--help') || rest.includes('-h'))) {
      process.stdout.write(commandHelp(cmd));
      return 0;
    }
    switch (cmd) {
      case 'mkfs':
        await cmdMkfs(rest);
        return 0;
      case 'info':
        cmdInfo(rest);
        return 0;
      case 'ls':
        cmdLs(rest);
        return 0;
      case 'cat':
        cmdCat(rest);
        return 0;
      case 'stat':
        cmdStat(rest);
        return 0;
      case 'extract':
        cmdExtract(rest);
        return 0;
      case 'seed':
        cmdSeed(rest);
        return 0;
      case 'materialize':
        cmdMaterialize(rest);
        return 0;
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(USAGE);
        return cmd === undefined ? 2 : 0;
      case 'edit':
        cmdEdit(rest);
        return 0;
      case 'recover':
        cmdRecover(rest);
        return 0;
      case 'check':
        return cmdCheck(rest);
      default:
        if (cmd in COMMANDS) {
          cmdEditOne(cmd, rest);
          return 0;
        }
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof Ext4Error) {
      process.stderr.write(`ext4-workdisk: error [${e.code}]: ${e.message}\n`);
      if (jsonErrors) process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }) + '\n');
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

// A command whose work never settles (a stream that neither ends nor fails) must not look like success.
process.exitCode = 70;
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
