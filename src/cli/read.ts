/** `ls`, `cat`, `stat`: a directory, a file's bytes, an inode's metadata, read from an image; opening one for reading. */
import * as fs from 'node:fs';
import { Ext4Error } from '../core/errors.js';
import { UsageError, type OptionValues } from '../core/args.js';
import { Ext4Reader } from '../fs/reader.js';
import { fileTypeOf, typeLetterOf } from '../ext4/filetype.js';
import { lockForRead } from '../host/lock.js';
import { FileDevice } from '../io/device.js';
import { command, printJson, warn } from './command.js';
import { jsonOption, readerOptions } from './options.js';

/** Opens an image for reading as `readerOptions` ask. */
export function openReader(image: string, values: OptionValues<typeof readerOptions>): Ext4Reader {
  lockForRead(image); // held until the process exits (output may still be flowing)
  return Ext4Reader.open(FileDevice.open(image), {
    verifyChecksums: !values['no-verify'],
    replayJournal: values.replay,
    onWarning: warn,
  });
}

/** `ls -l`'s mode column: type letter and rwx triplets with set-id and sticky bits. */
function modeString(mode: number): string {
  const t = typeLetterOf(mode);
  const rwx = (v: number, s: boolean, sc: string) =>
    (v & 4 ? 'r' : '-') + (v & 2 ? 'w' : '-') + (s ? (v & 1 ? sc : sc.toUpperCase()) : v & 1 ? 'x' : '-');
  return (
    t +
    rwx((mode >> 6) & 7, !!(mode & 0o4000), 's') +
    rwx((mode >> 3) & 7, !!(mode & 0o2000), 's') +
    rwx(mode & 7, !!(mode & 0o1000), 't')
  );
}

export const ls = command({
  name: 'ls',
  usage: `ls <image> [<path>] [-l]          list a directory`,
  reading: true,
  options: { long: { type: 'boolean', short: 'l' }, ...readerOptions },
  run(positionals, values) {
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError('ls needs <image> [<path>]');
    const r = openReader(positionals[0]!, values);
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
  },
});

export const cat = command({
  name: 'cat',
  usage: `cat <image> <path>                write a file's bytes to stdout`,
  reading: true,
  options: { ...readerOptions },
  run(positionals, values) {
    if (positionals.length !== 2) throw new UsageError('cat needs <image> <path>');
    const r = openReader(positionals[0]!, values);
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
  },
});

export const stat = command({
  name: 'stat',
  usage: `stat <image> <path> [--json]      an inode's metadata`,
  reading: true,
  options: { ...jsonOption, ...readerOptions },
  run(positionals, values) {
    if (positionals.length !== 2) throw new UsageError('stat needs <image> <path>');
    const r = openReader(positionals[0]!, values);
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
      printJson(info, 2);
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
  },
});
