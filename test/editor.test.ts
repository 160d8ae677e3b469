/**
 * The editor's contract: operations by path, nothing written before commit, a failed operation leaves
 * the batch as it was, and every refusal leaves the image byte for byte as it was. Every image edited
 * here passes e2fsck -fn; as root the kernel's view is checked too.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Editor, editImage } from '../src/edit/editor.js';
import { mkdirExt4, writeExt4FileOwned } from '../src/edit/toolkit.js';
import { Ext4Error } from '../src/core/errors.js';
import { FileDevice, type BlockDevice } from '../src/io/device.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  oracleAvailable,
  run,
  scratchDir,
  haveTool,
  mkfsExt4,
  expectClean,
} from './helpers/oracle.js';
import { mount, umount } from './helpers/model.js';

const runIt = oracleAvailable('editor suite (e2fsprogs)', HAVE_E2FSPROGS);
const asRoot = oracleAvailable('editor kernel checks (needs root)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-editor');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
let n = 0;
const enc = new TextEncoder();

function ours(sizeMiB = 64): string {
  const img = path.join(work, `o${n++}.img`);
  formatImage(img, { sizeBytes: sizeMiB * 2 ** 20, sync: false });
  return img;
}
/** mkfs.ext4 with 4 KiB blocks (unless the options say otherwise). */
const mkfs = (opts: string[], size = '64M'): string =>
  mkfsExt4(work, [...(opts.includes('-b') ? [] : ['-b', '4096']), ...opts], size);
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const clean = expectClean;
function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof Ext4Error) return e.code;
    throw e;
  }
  return undefined;
}
function text(ed: Ext4Editor, p: string): string {
  return Buffer.from(ed.reader.readFileBytes(ed.reader.lookup(p, { followLast: true }))).toString();
}
function debugfs(img: string, cmd: string): string {
  return run('debugfs', ['-R', cmd, img]).stdout;
}

describe.runIf(runIt)('editing by path', () => {
  it('nothing reaches the image before commit; the reader sees the edit as it goes', () => {
    const img = ours();
    const before = sha(img);
    const ed = Ext4Editor.open(img, { timestamp: 1_700_000_000 });
    ed.mkdir('/etc');
    ed.writeFile('/etc/hostname', 'vm1\n');
    ed.mkdir('/root/.ssh', { parents: true, mode: 0o700 });
    ed.writeFile('/root/.ssh/authorized_keys', 'ssh-ed25519 AAAA key\n', { mode: 0o600, uid: 0, gid: 0 });
    ed.symlink('/etc/hostname', '/hn');
    ed.symlink('t'.repeat(300), '/long-link');
    ed.link('/etc/hostname', '/etc/hostname.bak');
    ed.mknod('/dev-null', 'chardev', { rdev: [1, 3], mode: 0o666 });
    ed.mknod('/big-dev', 'blockdev', { rdev: [259, 300000] });
    ed.mknod('/fifo', 'fifo');
    expect(text(ed, '/hn')).toBe('vm1\n');
    expect(ed.reader.inode(ed.reader.lookup('/etc/hostname')).linksCount).toBe(2);
    expect(sha(img)).toBe(before);
    ed.commit();
    ed.close();
    expect(sha(img)).not.toBe(before);
    clean(img);
    const out = debugfs(img, 'stat /root/.ssh/authorized_keys');
    expect(out).toMatch(/Mode:\s+0600/);
    expect(out).toMatch(/ctime: 0x6553f100/);
    expect(debugfs(img, 'stat /big-dev')).toMatch(/Device major\/minor number: 259:300000/);
  });

  it('a failed operation leaves the rest of the batch as it was', () => {
    const img = ours(16);
    const ed = Ext4Editor.open(img);
    ed.mkdir('/a');
    ed.writeFile('/a/x', 'kept');
    expect(code(() => ed.writeFile('/missing/dir/x', 'no'))).toBe('NOT_FOUND');
    // Allocates most of the disk before running out: every block of it must come back.
    expect(
      code(() => ed.writeFile('/a/huge', [new Uint8Array(8 << 20).fill(1), new Uint8Array(30 << 20).fill(2)])),
    ).toBe('NO_SPACE');
    expect(code(() => ed.rename('/a', '/a/inside'))).toBe('INVALID_ARGUMENT');
    ed.mkdir('/c');
    ed.writeFile('/c/y', new Uint8Array(4 << 20).fill(3));
    ed.commit();
    ed.close();
    clean(img);
    const again = Ext4Editor.open(img);
    expect(text(again, '/a/x')).toBe('kept');
    expect(code(() => again.reader.lookup('/a/huge'))).toBe('NOT_FOUND');
    expect(
      again.reader
        .readDir(again.reader.lookup('/'))
        .map((e) => Buffer.from(e.name).toString())
        .sort(),
    ).toEqual(['a', 'c', 'lost+found']);
    again.close();
  });

  it('replacing a file keeps its inode, hard links and attributes; holes stay holes', () => {
    const img = ours();
    editImage(img, (ed) => {
      ed.writeFile('/f', 'first version');
      ed.link('/f', '/g');
      ed.setXattr('/f', 'user.keep', 'yes');
    });
    const ino = editImage(img, (ed) => {
      const ino = ed.reader.lookup('/f');
      ed.writeFile('/f', [new Uint8Array(5000).fill(7), { hole: 10 << 20 }, new Uint8Array(8192), enc.encode('end')]);
      return ino;
    });
    clean(img);
    const ed = Ext4Editor.open(img);
    expect(ed.reader.lookup('/g')).toBe(ino);
    expect(ed.getXattrs('/g')).toEqual([{ name: 'user.keep', value: enc.encode('yes') }]);
    const i = ed.reader.inode(ino);
    expect(i.size).toBe(5000 + (10 << 20) + 8192 + 3);
    // The 5,000 bytes at the start and one block at the end: the hole and the zero block are not stored.
    const bs = ed.reader.blockSize;
    expect(ed.reader.allocatedBytes(i)).toBe((Math.ceil(5000 / bs) + 1) * bs);
    const bytes = ed.reader.readFileBytes(ino);
    expect(bytes[4999]).toBe(7);
    expect(Buffer.from(bytes.subarray(bytes.length - 3)).toString()).toBe('end');
    ed.close();
  });

  it('writeFileStream takes a Node.js stream; nothing else runs until it settles', async () => {
    const img = ours();
    const ed = Ext4Editor.open(img);
    const chunks = [Buffer.from('a'.repeat(3000)), Buffer.alloc(70_000), Buffer.from('tail')];
    const p = ed.writeFileStream('/streamed', Readable.from(chunks), { mode: 0o640 });
    expect(code(() => ed.mkdir('/meanwhile'))).toBe('INVALID_ARGUMENT');
    await p;
    await expect(ed.writeFileStream('/nope/x', Readable.from([Buffer.from('x')]))).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    ed.commit();
    ed.close();
    clean(img);
    const r = Ext4Editor.open(img);
    const bytes = r.reader.readFileBytes(r.reader.lookup('/streamed'));
    expect(Buffer.compare(Buffer.from(bytes), Buffer.concat(chunks))).toBe(0);
    expect(r.reader.inode(r.reader.lookup('/streamed')).mode & 0o777).toBe(0o640);
    r.close();
  });

  it('rename(2) semantics: replace a file, move directories with .. and link counts, same-inode no-op', () => {
    const img = ours();
    editImage(img, (ed) => {
      ed.mkdir('/a/b/c', { parents: true });
      ed.mkdir('/z');
      ed.writeFile('/a/f', '1');
      ed.writeFile('/z/f', '2');
      ed.link('/a/f', '/a/f2');
      ed.rename('/a/f', '/a/f2'); // same inode: nothing happens
      ed.rename('/a/f', '/z/f'); // replaces /z/f
      ed.rename('/a/b', '/z/b'); // moves a directory
      ed.mkdir('/empty');
      ed.rename('/z/b', '/empty'); // replaces an empty directory
    });
    clean(img);
    const ed = Ext4Editor.open(img);
    const r = ed.reader;
    expect(text(ed, '/z/f')).toBe('1');
    expect(r.inode(r.lookup('/z/f')).linksCount).toBe(2);
    expect(r.lookup('/empty/c')).toBeGreaterThan(0);
    expect(r.inode(r.lookup('/a')).linksCount).toBe(2);
    expect(r.inode(r.lookup('/z')).linksCount).toBe(2);
    expect(code(() => ed.rename('/z', '/empty'))).toBe('NOT_EMPTY');
    expect(code(() => ed.rename('/z/f', '/empty'))).toBe('IS_A_DIRECTORY');
    expect(code(() => ed.rename('/empty', '/z/f'))).toBe('NOT_A_DIRECTORY');
    expect(code(() => ed.rename('/empty', '/empty/c/deeper'))).toBe('INVALID_ARGUMENT');
    expect(code(() => ed.rename('/empty/c', '/empty'))).toBe('NOT_EMPTY');
    ed.close();
  });

  it('chmod, chown (setuid dropped like chown(2)), utimes with nanoseconds, truncate', () => {
    const img = ours();
    editImage(img, (ed) => {
      ed.writeFile('/s', '#!/bin/sh\n', { mode: 0o6755 });
      ed.chown('/s', 1000, 1000);
      ed.writeFile('/t', new Uint8Array(100_000).fill(9));
      ed.truncate('/t', 5000);
      ed.truncate('/t', 9000);
      ed.chmod('/t', 0o1640);
      ed.utimes('/t', { sec: -1_000_000_000, nsec: 123_456_789 }, { sec: 9_000_000_000, nsec: 987_654_321 });
    });
    clean(img);
    const ed = Ext4Editor.open(img);
    const s = ed.reader.inode(ed.reader.lookup('/s'));
    expect([s.mode & 0o7777, s.uid, s.gid]).toEqual([0o755, 1000, 1000]);
    const t = ed.reader.inode(ed.reader.lookup('/t'));
    expect([t.mode & 0o7777, t.size]).toEqual([0o1640, 9000]);
    expect(t.atime).toEqual({ sec: -1_000_000_000, nsec: 123_456_789 });
    expect(t.mtime).toEqual({ sec: 9_000_000_000, nsec: 987_654_321 });
    const bytes = ed.reader.readFileBytes(ed.reader.lookup('/t'));
    expect(bytes[4999]).toBe(9);
    expect(bytes.subarray(5000).every((b) => b === 0)).toBe(true);
    ed.close();
  });

  it('rm: files, links, recursive trees; force ignores a missing path', () => {
    const img = ours();
    const free0 = Number(/Free blocks:\s+(\d+)/.exec(run('dumpe2fs', ['-h', img]).stdout)![1]);
    editImage(img, (ed) => {
      ed.mkdir('/t/a/b', { parents: true });
      for (let k = 0; k < 50; k++) ed.writeFile(`/t/a/b/f${k}`, new Uint8Array(20_000).fill(k));
      ed.writeFile('/t/x', 'x');
      ed.link('/t/x', '/y');
    });
    editImage(img, (ed) => {
      expect(code(() => ed.rm('/t'))).toBe('IS_A_DIRECTORY');
      ed.rm('/t', { recursive: true });
      ed.rm('/nothing', { force: true });
      expect(code(() => ed.rm('/nothing'))).toBe('NOT_FOUND');
      expect(code(() => ed.rm('/'))).toBe('INVALID_ARGUMENT');
      expect(ed.reader.inode(ed.reader.lookup('/y')).linksCount).toBe(1);
      ed.rm('/y');
    });
    clean(img);
    const free1 = Number(/Free blocks:\s+(\d+)/.exec(run('dumpe2fs', ['-h', img]).stdout)![1]);
    expect(free1).toBe(free0);
  });

  it('the seed toolkit calls: mkdirExt4 and writeExt4FileOwned', () => {
    const img = ours();
    mkdirExt4(img, '/home/user/.config', 0o750, 1000, 1000);
    mkdirExt4(img, '/home/user/.config', 0o700, 1000, 1000);
    writeExt4FileOwned(img, '/home/user/.config/app.toml', 0o640, 1000, 1000, 'key = 1\n');
    writeExt4FileOwned(img, '/home/user/.config/app.toml', 0o4750, 0, 0, 'key = 2\n');
    clean(img);
    const ed = Ext4Editor.open(img);
    const d = ed.reader.inode(ed.reader.lookup('/home/user/.config'));
    expect([d.mode & 0o7777, d.uid, d.gid]).toEqual([0o700, 1000, 1000]);
    const f = ed.reader.inode(ed.reader.lookup('/home/user/.config/app.toml'));
    expect([f.mode & 0o7777, f.uid, f.gid]).toEqual([0o4750, 0, 0]);
    expect(text(ed, '/home/user/.config/app.toml')).toBe('key = 2\n');
    ed.close();
  });

  it('the same edit with a fixed time gives the same bytes (timestamp and SOURCE_DATE_EPOCH)', () => {
    const opts = {
      sizeBytes: 64 * 2 ** 20,
      uuid: '2f1e0d4c-3b2a-4918-8776-655443322110',
      timestamp: 1_700_000_000,
      sync: false,
    };
    const edit = (img: string, timestamp?: number) => {
      const ed = Ext4Editor.open(img, { timestamp, sync: false });
      ed.mkdir('/etc');
      ed.writeFile('/etc/hostname', 'vm\n');
      ed.commit();
      ed.close();
    };
    const images = [0, 1, 2, 3].map((k) => {
      const img = path.join(work, `repro-${k}.img`);
      formatImage(img, { ...opts, hashSeed: '0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9' });
      return img;
    });
    edit(images[0]!, 1_700_000_123);
    edit(images[1]!, 1_700_000_123);
    process.env.SOURCE_DATE_EPOCH = '1700000123';
    try {
      edit(images[2]!);
      edit(images[3]!);
    } finally {
      delete process.env.SOURCE_DATE_EPOCH;
    }
    for (const img of images) clean(img);
    expect(sha(images[1]!)).toBe(sha(images[0]!));
    expect(sha(images[2]!)).toBe(sha(images[0]!));
    expect(sha(images[3]!)).toBe(sha(images[0]!));
  });

  it('host files are copied whole, whatever their size, /proc files (which stat as empty) too', () => {
    const img = ours();
    const files: [string, string][] = [0, 100, 4095, 4096, 4097, 70000].map((size) => {
      const f = path.join(work, `host-${size}`);
      fs.writeFileSync(f, Buffer.alloc(size, size % 251));
      return [f, `/host-${size}`];
    });
    if (fs.existsSync('/proc/version')) files.push(['/proc/version', '/version']);
    const ed = Ext4Editor.open(img, { sync: false });
    for (const [h, i] of files) ed.writeFile(i, { hostPath: h });
    ed.commit();
    for (const [h, i] of files) {
      const got = Buffer.from(ed.reader.readFileBytes(ed.reader.lookup(i)));
      expect(got.equals(fs.readFileSync(h)), i).toBe(true);
    }
    ed.close();
    clean(img);
  });

  it('adding a name to a linear directory changes only the block that takes it', () => {
    // ext2 without dir_index: the directory stays linear and grows block by block.
    const img = mkfs(['-t', 'ext2', '-O', '^dir_index', '-b', '1024']);
    editImage(img, (e) => {
      e.mkdir('/d');
      for (let k = 0; k < 200; k++) e.writeFile(`/d/a-long-enough-name-${k}`, '');
    });
    const ed = Ext4Editor.open(img, { onWarning: () => {} });
    const r = ed.reader;
    const dir = r.lookup('/d');
    const blocks = new Set<number>();
    for (const run of r.blockRuns(dir, r.inode(dir))) for (let k = 0; k < run.len; k++) blocks.add(run.pblk + k);
    expect(blocks.size).toBeGreaterThan(4);
    ed.link('/d/a-long-enough-name-0', '/d/one-more');
    expect([...blocks].filter((b) => r.cache.overlaid(b)).length).toBe(1);
    ed.commit();
    ed.close();
    clean(img);
  });

  it('a commit refused for its size forgets the directories the dropped edit made', () => {
    const img = mkfs(['-b', '1024', '-J', 'size=1', '-N', '4096'], '16M');
    const ed = Ext4Editor.open(img, { atomic: true });
    ed.mkdir('/made');
    for (let d = 0; d < 40; d++) {
      ed.mkdir(`/made/d${d}`);
      for (let k = 0; k < 90; k++) ed.writeFile(`/made/d${d}/f${k}`, 'x');
    }
    expect(() => ed.commit()).toThrowError(expect.objectContaining({ code: 'NO_SPACE' }));
    // /made was never written: it cannot be found now, and nothing goes into its freed inode.
    expect(() => ed.writeFile('/made/late', 'x')).toThrowError(expect.objectContaining({ code: 'NOT_FOUND' }));
    ed.writeFile('/kept', 'x');
    ed.commit();
    ed.close();
    clean(img);
  });

  it('a batch of 1,000 files writes each changed block once home and once to the journal', () => {
    const img = ours(256);
    const dev = FileDevice.open(img, true);
    const writes = new Map<number, number>();
    let bytes = 0;
    const counting: BlockDevice = {
      get size() {
        return dev.size;
      },
      read: (p, l) => dev.read(p, l),
      readInto: (p, b) => dev.readInto(p, b),
      write: (p, d) => {
        writes.set(p, (writes.get(p) ?? 0) + 1);
        bytes += d.length;
        dev.write(p, d);
      },
      truncate: (s) => dev.truncate(s),
      sync: () => dev.sync(),
      close: () => dev.close(),
    };
    const ed = Ext4Editor.openDevice(counting);
    for (let d = 0; d < 10; d++) {
      ed.mkdir(`/d${d}`);
      for (let k = 0; k < 100; k++) ed.writeFile(`/d${d}/file-${k}`, `content ${d}/${k}\n`);
    }
    ed.commit();
    ed.close();
    // Through the journal: only the superblock (needs_recovery set, then cleared), the journal's
    // superblock (pointing at the transaction, then empty) and the commit block's slot (zeroed with
    // the log, then the commit block) are written more than once.
    expect([...writes].filter(([, c]) => c > 1).length).toBeLessThanOrEqual(3);
    expect(writes.get(1024)).toBe(3);
    // 1,000 one-block files once; their inodes, 10 directories, bitmaps, descriptors and superblock twice.
    expect(bytes).toBeLessThan((1000 + 2 * 200) * 4096);
    clean(img);
  });
});

describe.runIf(runIt)('refusals leave the image byte for byte as it was', () => {
  const cases: [string, () => string, (img: string) => void, string][] = [
    ['a missing parent', () => ours(), (img) => editImage(img, (e) => e.writeFile('/no/such/dir/f', 'x')), 'NOT_FOUND'],
    [
      'a name over 255 bytes',
      () => ours(),
      (img) => editImage(img, (e) => e.mkdir('/' + 'n'.repeat(256))),
      'NAME_TOO_LONG',
    ],
    [
      'a file where a directory is needed',
      () => {
        const i = ours();
        editImage(i, (e) => e.writeFile('/file', 'x'));
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/file/sub')),
      'NOT_A_DIRECTORY',
    ],
    ['an existing name', () => ours(), (img) => editImage(img, (e) => e.mkdir('/lost+found')), 'EXISTS'],
    [
      'file content that is none of the kinds content can be',
      () => ours(),
      (img) => editImage(img, (e) => e.writeFile('/f', { data: 'x' } as unknown as Uint8Array)),
      'BAD_OPTION',
    ],
    [
      'content larger than the free space',
      () => ours(4),
      (img) => editImage(img, (e) => e.writeFile('/big', new Uint8Array(8 << 20))),
      'NO_SPACE',
    ],
    [
      'a tree larger than the free space',
      () => ours(4),
      (img) => {
        const src = path.join(work, `big-src-${n++}`);
        fs.mkdirSync(src);
        fs.writeFileSync(path.join(src, 'a'), Buffer.alloc(6 << 20, 1));
        editImage(img, (e) => e.copyIn(src, '/dest'));
      },
      'NO_SPACE',
    ],
    [
      'a journal that needs recovery',
      () => {
        const i = mkfs([]);
        run('debugfs', ['-w', '-R', 'feature needs_recovery', i]);
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'NEEDS_RECOVERY',
    ],
    [
      'a file system marked with errors',
      () => {
        const i = mkfs([]);
        run('debugfs', ['-w', '-R', 'ssv state 3', i]);
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'NEEDS_CHECK',
    ],
    [
      'orphan inodes',
      () => {
        const i = mkfs([]);
        run('debugfs', ['-w', '-R', 'ssv last_orphan 12', i]);
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'NEEDS_RECOVERY',
    ],
    [
      'an ext2 file system not cleanly unmounted (or mounted)',
      () => {
        const i = mkfs(['-t', 'ext2']);
        run('debugfs', ['-w', '-R', 'ssv state 0', i]);
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'IN_USE',
    ],
    [
      'multiple-mount protection held by another node',
      () => {
        const i = mkfs(['-O', 'mmp']);
        // Another node's sequence number in the MMP block (debugfs would restore it on close).
        const blk = Number(/MMP block number:\s+(\d+)/.exec(run('dumpe2fs', ['-h', i]).stdout)![1]);
        const fd = fs.openSync(i, 'r+');
        fs.writeSync(fd, Buffer.from([0x34, 0x12, 0, 0]), 0, 4, blk * 4096 + 4);
        fs.closeSync(fd);
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'IN_USE',
    ],
    [
      'bigalloc',
      () => mkfs(['-O', 'bigalloc', '-C', '16384']),
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'UNSUPPORTED_FEATURE',
    ],
    ['quota', () => mkfs(['-O', 'quota']), (img) => editImage(img, (e) => e.mkdir('/x')), 'UNSUPPORTED_FEATURE'],
    ['casefold', () => mkfs(['-O', 'casefold']), (img) => editImage(img, (e) => e.mkdir('/x')), 'UNSUPPORTED_FEATURE'],
    ['encrypt', () => mkfs(['-O', 'encrypt']), (img) => editImage(img, (e) => e.mkdir('/x')), 'UNSUPPORTED_FEATURE'],
    ['verity', () => mkfs(['-O', 'verity']), (img) => editImage(img, (e) => e.mkdir('/x')), 'UNSUPPORTED_FEATURE'],
    [
      'not an ext file system',
      () => {
        const i = path.join(work, `zero-${n++}.img`);
        fs.writeFileSync(i, Buffer.alloc(1 << 20));
        return i;
      },
      (img) => editImage(img, (e) => e.mkdir('/x')),
      'BAD_MAGIC',
    ],
  ];
  for (const [what, make, act, want] of cases)
    it(what, () => {
      const img = make();
      const before = sha(img);
      expect(code(() => act(img))).toBe(want);
      expect(sha(img)).toBe(before);
    });

  it.runIf(asRoot)('a mounted image', () => {
    const img = ours();
    const mnt = path.join(work, `mnt-${n++}`);
    fs.mkdirSync(mnt);
    mount(img, mnt, false);
    try {
      const before = sha(img);
      expect(code(() => editImage(img, (e) => e.mkdir('/x')))).toBe('IN_USE');
      expect(sha(img)).toBe(before);
    } finally {
      umount(mnt);
    }
  });

  it('an MMP image is edited and left clean', () => {
    const img = mkfs(['-O', 'mmp']);
    editImage(img, (e) => e.writeFile('/f', 'mmp'));
    clean(img);
    expect(run('debugfs', ['-R', 'dump_mmp', img]).stdout).toMatch(/sequence: ff4d4d50/);
  });
});
