/** Builds varied source trees on the host and compares trees (source vs. the kernel's view of an image). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { run, IS_ROOT } from './oracle.js';
import { parseXattrDump } from '../../src/tree/sources/xattr-dump.js';

/** Sets atime/mtime with nanoseconds (Node's utimes loses them), without following symlinks. */
export function touchNs(p: string, atime: string, mtime: string): void {
  const a = run('touch', ['-h', '-a', '-d', atime, p]);
  const m = run('touch', ['-h', '-m', '-d', mtime, p]);
  if (a.status !== 0 || m.status !== 0) throw new Error(`touch ${p}: ${a.stderr}${m.stderr}`);
}

/** A tree with every file type and metadata case the host lets us make (devices and owners need root). */
export function makeVariedTree(root: string): void {
  fs.mkdirSync(root, { recursive: true });
  const f = (rel: string, data: string | Buffer, mode = 0o644) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    fs.chmodSync(p, mode);
    return p;
  };
  f('empty', '');
  f('small.txt', 'hello world\n');
  f('exactly-4k', Buffer.alloc(4096, 0x41));
  f('multi-block.bin', Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) & 0xff)));
  f('setuid', '#!/bin/sh\n', 0o4755);
  f('setgid', '#!/bin/sh\n', 0o2755);
  f('odd-mode', 'x', 0o0401);
  fs.mkdirSync(path.join(root, 'sticky'), { mode: 0o1777 });
  fs.chmodSync(path.join(root, 'sticky'), 0o1777);
  fs.mkdirSync(path.join(root, 'private'), { mode: 0o700 });
  f('private/secret', 'ssh-ed25519 AAAA\n', 0o600);
  f('deep/a/b/c/d/e/f/g/leaf', 'deep\n');
  f('unicode-ñame-日本', 'utf8 name\n');
  f('n'.repeat(255), 'longest name\n');
  // Holes: data at the start, a hole, data at the end.
  const sparse = path.join(root, 'sparse.bin');
  const fd = fs.openSync(sparse, 'w');
  fs.writeSync(fd, Buffer.from('start'), 0, 5, 0);
  fs.writeSync(fd, Buffer.from('end'), 0, 3, 50 * 1024 * 1024);
  fs.closeSync(fd);
  // A block of zeros written explicitly is a hole in the image too; the content is the same.
  f('zeros-in-middle', Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(8192), Buffer.alloc(10, 2)]));
  fs.symlinkSync('small.txt', path.join(root, 'fast-link'));
  fs.symlinkSync('t'.repeat(59), path.join(root, 'link-59'));
  fs.symlinkSync('t'.repeat(60), path.join(root, 'link-60'));
  fs.symlinkSync('/' + 'y/'.repeat(2046) + 'z', path.join(root, 'link-4095'));
  fs.symlinkSync('does/not/exist', path.join(root, 'dangling'));
  fs.linkSync(path.join(root, 'small.txt'), path.join(root, 'hardlink-1'));
  fs.linkSync(path.join(root, 'small.txt'), path.join(root, 'deep/hardlink-2'));
  fs.linkSync(path.join(root, 'fast-link'), path.join(root, 'hardlinked-symlink'));
  run('mkfifo', [path.join(root, 'fifo')]);
  run('python3', [
    '-c',
    `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path.join(root, 'socket'))})`,
  ]);
  const many = path.join(root, 'many');
  fs.mkdirSync(many);
  for (let i = 0; i < 2500; i++) fs.writeFileSync(path.join(many, `file-${i}-${'p'.repeat(i % 37)}`), `${i}\n`);
  if (IS_ROOT) {
    run('mknod', [path.join(root, 'null-dev'), 'c', '1', '3']);
    run('mknod', [path.join(root, 'big-dev'), 'b', '259', '300000']);
    run('mknod', [path.join(root, 'huge-major'), 'c', '4000', '5']);
    fs.linkSync(path.join(root, 'null-dev'), path.join(root, 'hardlinked-dev'));
    fs.chownSync(path.join(root, 'small.txt'), 1000, 1000);
    fs.chownSync(path.join(root, 'private'), 4_000_000_000, 70_000);
    fs.lchownSync(path.join(root, 'fast-link'), 123, 456);
  }
  // Times: nanoseconds, before 1970 and after 2038 (ext4's extra epoch bits); directories last.
  touchNs(path.join(root, 'small.txt'), '2001-02-03 04:05:06.123456789', '1999-12-31 23:59:59.987654321');
  touchNs(path.join(root, 'empty'), '1960-06-01 00:00:00.5', '1901-12-14 00:00:00.25');
  touchNs(path.join(root, 'multi-block.bin'), '2040-01-01 00:00:00.000000001', '2200-07-04 12:00:00.999999999');
  touchNs(path.join(root, 'fast-link'), '2030-01-01 00:00:00.1', '2003-01-01 00:00:00.2');
  touchNs(path.join(root, 'deep'), '2005-05-05 05:05:05.555', '2006-06-06 06:06:06.666');
  touchNs(root, '2010-10-10 10:10:10.101010101', '2011-11-11 11:11:11.111111111');
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  nlink: number;
  mtimeNs: bigint;
  atimeNs?: bigint;
  rdev?: bigint;
  target?: string;
  sha?: string;
}

function typeOf(st: fs.BigIntStats): string {
  return st.isFile()
    ? 'file'
    : st.isDirectory()
      ? 'dir'
      : st.isSymbolicLink()
        ? 'symlink'
        : st.isCharacterDevice()
          ? 'chr'
          : st.isBlockDevice()
            ? 'blk'
            : st.isFIFO()
              ? 'fifo'
              : 'sock';
}

/**
 * Reading a file or link can update its atime (relatime), so a source is compared in two steps: its
 * metadata (`read: false`) before the image is built, its contents after.
 */
export function contents(root: string): Map<string, { sha?: string; target?: string }> {
  const out = new Map<string, { sha?: string; target?: string }>();
  for (const [rel, info] of snapshot(root)) out.set(rel, { sha: info.sha, target: info.target });
  return out;
}

/**
 * Everything the kernel reports for a tree, keyed by relative path. `atime` is left out for
 * directories (reading them may update it) and `lost+found` is skipped.
 */
export function snapshot(root: string, opts: { owner?: [number, number]; read?: boolean } = {}): Map<string, NodeInfo> {
  const read = opts.read !== false;
  const out = new Map<string, NodeInfo>();
  const walk = (rel: string) => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p, { bigint: true });
    const type = typeOf(st);
    const info: NodeInfo = {
      type,
      mode: Number(st.mode) & 0o7777,
      uid: opts.owner ? opts.owner[0] : Number(st.uid),
      gid: opts.owner ? opts.owner[1] : Number(st.gid),
      nlink: Number(st.nlink),
      mtimeNs: st.mtimeNs,
    };
    if (type !== 'dir') info.atimeNs = st.atimeNs;
    if (type === 'file') info.size = Number(st.size);
    if (type === 'file' && read) {
      const h = createHash('sha256');
      const fd = fs.openSync(p, 'r');
      const buf = Buffer.allocUnsafe(1 << 20);
      let pos = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, pos);
        if (!n) break;
        h.update(buf.subarray(0, n));
        pos += n;
      }
      fs.closeSync(fd);
      info.sha = h.digest('hex');
    }
    if (type === 'symlink' && read) info.target = fs.readlinkSync(p);
    if (type === 'chr' || type === 'blk') info.rdev = st.rdev;
    out.set(rel || '/', info);
    if (type === 'dir')
      for (const n of fs.readdirSync(p).sort()) if (!(rel === '' && n === 'lost+found')) walk(path.join(rel, n));
  };
  walk('');
  return out;
}

/** Every attribute of a tree (ACLs included), by relative path; lost+found left out. */
export function allXattrs(root: string): Map<string, string> {
  const r = run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root]);
  const out = new Map<string, string>();
  for (const [p, xs] of parseXattrDump(r.stdout, '/')) {
    const rel = path.relative(root, Buffer.from(p, 'latin1').toString('utf8')) || '/';
    if (rel === 'lost+found') continue;
    out.set(
      rel,
      xs
        .map((x) => `${x.name}=${Buffer.from(x.value).toString('hex')}`)
        .sort()
        .join(','),
    );
  }
  return out;
}
