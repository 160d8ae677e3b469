/**
 * mkfs --from: trees with every file type and metadata case, checked by e2fsck -fn and, as root, by the
 * kernel's view of the mounted image against the source tree.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatImage } from '../src/mkfs/image.js';
import { Ext4Error } from '../src/core/errors.js';
import { hostDirectorySource } from '../src/tree/sources/host.js';
import type { SourceNode, TreeSource, FileData } from '../src/core/types.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  oracleAvailable,
  run,
  fsck,
  scratchDir,
  haveTool,
  cli,
  allocatedBytes,
  IN_CI,
} from './helpers/oracle.js';
import { makeVariedTree, snapshot, contents, type NodeInfo } from './helpers/tree.js';
import { stubNode } from './helpers/source.mjs';

const haveOracles = oracleAvailable('populate oracle suite', HAVE_E2FSPROGS);
const canMount = oracleAvailable(
  'populate kernel-mount suite (needs root)',
  IS_ROOT && HAVE_E2FSPROGS && haveTool('mount'),
);

const work = scratchDir('ext4wd-pop');
const src = path.join(work, 'src');
afterAll(() => {
  run('sh', ['-c', `grep -q ${work} /proc/mounts && umount ${work}/mnt* 2>/dev/null; true`]);
  fs.rmSync(work, { recursive: true, force: true });
});
beforeAll(() => makeVariedTree(src));

function withMount<T>(img: string, fn: (dir: string) => T): T {
  const mnt = fs.mkdtempSync(path.join(work, 'mnt'));
  const r = run('mount', ['-t', 'ext4', '-o', 'loop,ro', img, mnt]);
  if (r.status !== 0) throw new Error(`mount: ${r.stderr}`);
  try {
    return fn(mnt);
  } finally {
    run('umount', [mnt]);
    fs.rmdirSync(mnt);
  }
}

const big = (_k: string, v: unknown) => (typeof v === 'bigint' ? v.toString() : v);

/** `source` is the metadata snapshot taken before the build; contents are read from `srcDir` after it. */
function compareTrees(source: Map<string, NodeInfo>, image: Map<string, NodeInfo>, srcDir: string): void {
  expect([...image.keys()].sort()).toEqual([...source.keys()].sort());
  const data = contents(srcDir);
  for (const [rel, meta] of source) {
    const want = { ...meta, ...data.get(rel) };
    for (const k of ['sha', 'target'] as const) if (want[k] === undefined) delete want[k];
    const got = image.get(rel)!;
    // The image's root also holds lost+found.
    const nlink = rel === '/' ? want.nlink + 1 : want.nlink;
    expect(JSON.stringify({ rel, ...got }, big)).toBe(JSON.stringify({ rel, ...want, nlink }, big));
  }
}

describe.runIf(haveOracles)('mkfs --from a host directory', () => {
  it('passes e2fsck -fn, indexes the big directory, and the kernel sees the source exactly', () => {
    const img = path.join(work, 'tree.img');
    const before = snapshot(src, { read: false });
    const r = formatImage(img, {
      sizeBytes: 512 * 2 ** 20,
      blockSize: 4096,
      source: hostDirectorySource(src),
      sync: false,
    });
    expect(r.inodesUsed).toBeGreaterThan(2500);
    const f = fsck(img);
    expect(f.status, f.output).toBe(0);
    const ht = run('debugfs', ['-R', 'htree /many', img]);
    expect(ht.stdout).toMatch(/Indirect levels: 0/);
    expect(ht.stdout).toMatch(/Entry #1: Hash 0x[0-9a-f]+, block \d+/);
    // A sparse file's hole is not allocated: the 50 MiB file costs a couple of blocks.
    const st = run('debugfs', ['-R', 'stat /sparse.bin', img]).stdout;
    expect(st).toMatch(/Blockcount: 16\b/);
    if (canMount) withMount(img, (mnt) => compareTrees(before, snapshot(mnt), src));
  });

  it('--owner 0:0 makes every entry, / included, root:root and keeps modes', () => {
    const img = path.join(work, 'owned.img');
    const before = snapshot(src, { read: false, owner: [0, 0] });
    const r = cli([
      'mkfs',
      img,
      '--size',
      '256M',
      '--block-size',
      '4096',
      '--from',
      src,
      '--owner',
      '0:0',
      '--no-sync',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(fsck(img).status).toBe(0);
    if (canMount) withMount(img, (mnt) => compareTrees(before, snapshot(mnt), src));
    const root = run('debugfs', ['-R', 'stat /', img]).stdout;
    expect(root).toMatch(/User:\s+0\s+Group:\s+0/);
  });

  it('small block size (1 KiB) and a two-level htree for 100,000 entries; kernel lookups succeed', () => {
    const big = path.join(work, 'bigdir');
    const d = path.join(big, 'd');
    fs.mkdirSync(d, { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      const n = `entry-${i.toString(36)}-${'q'.repeat(i % 23)}`;
      names.push(n);
      fs.writeFileSync(path.join(d, n), '');
    }
    const img = path.join(work, 'bigdir.img');
    formatImage(img, { sizeBytes: 400 * 2 ** 20, source: hostDirectorySource(big), sync: false });
    const f = fsck(img);
    expect(f.status, f.output).toBe(0);
    expect(run('debugfs', ['-R', 'htree /d', img]).stdout).toMatch(/Indirect levels: 1/);
    if (canMount)
      withMount(img, (mnt) => {
        expect(fs.readdirSync(path.join(mnt, 'd')).length).toBe(100_000);
        for (let i = 0; i < names.length; i += 7)
          expect(fs.statSync(path.join(mnt, 'd', names[i]!)).isFile()).toBe(true);
        expect(fs.existsSync(path.join(mnt, 'd', 'not-there'))).toBe(false);
      });
    fs.rmSync(big, { recursive: true, force: true });
  });

  it('a 6 GiB sparse file with data islands: same content, allocation close to the data', () => {
    const s = path.join(work, 'sparse-src');
    fs.mkdirSync(s);
    const file = path.join(s, 'disk.raw');
    const fd = fs.openSync(file, 'w');
    const island = Buffer.alloc(1 << 20, 0x5a);
    for (const at of [0, 2 ** 30, 3 * 2 ** 30 + 12345, 6 * 2 ** 30 - (1 << 20)])
      fs.writeSync(fd, island, 0, island.length, at);
    fs.closeSync(fd);
    const img = path.join(work, 'sparse.img');
    const r = formatImage(img, { sizeBytes: 8 * 2 ** 30, source: hostDirectorySource(s), sync: false });
    expect(r.dataBytes).toBeLessThanOrEqual(5 * (1 << 20));
    const empty = path.join(work, 'empty8g.img');
    formatImage(empty, { sizeBytes: 8 * 2 ** 30, sync: false });
    expect(allocatedBytes(img) - allocatedBytes(empty)).toBeLessThan(6 * (1 << 20));
    expect(fsck(img).status).toBe(0);
    if (canMount) withMount(img, (mnt) => expect(run('cmp', [file, path.join(mnt, 'disk.raw')]).status).toBe(0));
    fs.rmSync(s, { recursive: true, force: true });
  });

  it('a file fragmented into 2,000 extents gets a two-level extent tree the kernel reads back', () => {
    const s = path.join(work, 'frag-src');
    fs.mkdirSync(s);
    const file = path.join(s, 'islands');
    const fd = fs.openSync(file, 'w');
    // 2,000 one-block islands with holes between them: each is its own extent (more than 4 * 340).
    for (let i = 0; i < 2000; i++) fs.writeSync(fd, Buffer.alloc(4096, (i % 250) + 1), 0, 4096, i * 3 * 4096);
    fs.closeSync(fd);
    const img = path.join(work, 'frag.img');
    formatImage(img, { sizeBytes: 256 * 2 ** 20, blockSize: 4096, source: hostDirectorySource(s), sync: false });
    const f = fsck(img);
    expect(f.status, f.output).toBe(0);
    expect(run('debugfs', ['-R', 'stat /islands', img]).stdout).toMatch(/\(ETB1\)/);
    if (canMount) withMount(img, (mnt) => expect(run('cmp', [file, path.join(mnt, 'islands')]).status).toBe(0));
    fs.rmSync(s, { recursive: true, force: true });
  });

  it('streams: a 1.5 GiB file does not need 1.5 GiB of memory', () => {
    const dir = scratchDir('ext4wd-stream', true);
    try {
      const s = path.join(dir, 'src');
      fs.mkdirSync(s);
      const fd = fs.openSync(path.join(s, 'big'), 'w');
      const chunk = Buffer.alloc(64 << 20, 0x11);
      for (let i = 0; i < 24; i++) fs.writeSync(fd, chunk);
      fs.closeSync(fd);
      const img = path.join(dir, 'big.img');
      const r = run('/usr/bin/time', [
        '-f',
        '%M',
        process.execPath,
        path.resolve(__dirname, '../dist/cli.cjs'),
        'mkfs',
        img,
        '--size',
        '4G',
        '--from',
        s,
        '--no-sync',
      ]);
      expect(r.status, r.stderr).toBe(0);
      const peakKiB = Number(r.stderr.trim().split('\n').pop());
      expect(peakKiB).toBeLessThan(200 * 1024);
      expect(fsck(img).status).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a tree that does not fit fails up front with the numbers and leaves no image', () => {
    const img = path.join(work, 'nofit.img');
    const r = cli(['mkfs', img, '--size', '8M', '--from', src]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^ext4-workdisk: error \[NO_SPACE\]: the source needs about \d+ blocks .* and \d+ inodes; .* has \d+ blocks and \d+ inodes free\n$/,
    );
    expect(fs.existsSync(img)).toBe(false);
  });
});

/** An in-memory tree source for cases the host cannot produce. */
function memorySource(children: Partial<SourceNode>[], file?: Partial<FileData>): TreeSource {
  const node = (p: Partial<SourceNode>): SourceNode =>
    stubNode({
      kind: 'dir',
      perm: 0o755,
      openData: () => ({ read: () => 0, verifyUnchanged: () => {}, close: () => {}, ...file }),
      ...p,
    });
  const root = node({ children: () => children.map(node) });
  return { root: () => root };
}

describe('bad sources give clear errors and no image', () => {
  const img = path.join(work, 'bad.img');
  it('a name longer than 255 bytes', () => {
    const s = memorySource([{ name: new Uint8Array(256).fill(0x61), displayPath: '/aaa…', kind: 'file' }]);
    expect(() => formatImage(img, { sizeBytes: 64 * 2 ** 20, source: s })).toThrowError(
      expect.objectContaining({ code: 'NAME_TOO_LONG' }),
    );
    expect(fs.existsSync(img)).toBe(false);
  });
  it('a file that changes while being read', () => {
    const s = memorySource(
      [{ name: new TextEncoder().encode('grows'), displayPath: '/grows', kind: 'file', size: 10 }],
      {
        read: (buf: Uint8Array, len: number) => (buf.fill(1, 0, len), len),
        verifyUnchanged: () => {
          throw new Ext4Error('SOURCE_CHANGED', '/grows changed');
        },
      },
    );
    expect(() => formatImage(img, { sizeBytes: 64 * 2 ** 20, source: s })).toThrowError(
      expect.objectContaining({ code: 'SOURCE_CHANGED' }),
    );
    expect(fs.existsSync(img)).toBe(false);
  });
  it('a directory listing one name twice, and a lost+found that is not a directory', () => {
    const enc = new TextEncoder();
    const twice = stubNode({ name: enc.encode('x'), displayPath: '/d/x' });
    const d = stubNode({ name: enc.encode('d'), displayPath: '/d', kind: 'dir', children: () => [twice, twice] });
    const root = stubNode({ kind: 'dir', children: () => [d] });
    expect(() => formatImage(img, { sizeBytes: 64 * 2 ** 20, source: { root: () => root } })).toThrowError(
      expect.objectContaining({ code: 'SOURCE_ERROR', message: '/d lists the name "x" twice' }),
    );
    expect(fs.existsSync(img)).toBe(false);
    const lpf = memorySource([{ name: enc.encode('lost+found'), displayPath: '/lost+found', kind: 'file' }]);
    expect(() => formatImage(img, { sizeBytes: 64 * 2 ** 20, source: lpf })).toThrowError(
      expect.objectContaining({
        code: 'SOURCE_ERROR',
        message: expect.stringMatching(/^\/lost\+found must be a directory/) as unknown,
      }),
    );
    expect(fs.existsSync(img)).toBe(false);
  });
  it('a source path that is not a directory, or missing', () => {
    expect(() => hostDirectorySource(path.join(work, 'nope'))).toThrowError(
      expect.objectContaining({ code: 'SOURCE_ERROR' }),
    );
    fs.writeFileSync(path.join(work, 'plain'), 'x');
    expect(() => hostDirectorySource(path.join(work, 'plain'))).toThrowError(
      expect.objectContaining({ code: 'SOURCE_ERROR' }),
    );
  });

  it('something that is not a tree source (a TarSource itself, not its .source): BAD_OPTION, no image', () => {
    const out = path.join(work, 'not-a-source.img');
    const notSource = { source: {}, entries: 0, close() {} } as unknown as TreeSource;
    expect(() => formatImage(out, { sizeBytes: 64 << 20, source: notSource })).toThrowError(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    );
    expect(fs.existsSync(out)).toBe(false);
  });
});

const setpriv = haveTool('setpriv');
describe.runIf(IN_CI || (IS_ROOT && setpriv && HAVE_E2FSPROGS))('as a non-root user', () => {
  it('builds a root-owned image from a tree it can read, and reports unreadable files', () => {
    const dir = fs.mkdtempSync('/tmp/ext4wd-nonroot-');
    fs.chmodSync(dir, 0o755);
    const s = path.join(dir, 'src');
    makeVariedTree(s);
    run('chown', ['-R', '65534:65534', dir]);
    const asNobody = (args: string[]) =>
      run('setpriv', [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        path.resolve(__dirname, '../dist/cli.cjs'),
        ...args,
      ]);
    const img = path.join(dir, 'out.img');
    const r = asNobody(['mkfs', img, '--size', '256M', '--block-size', '4096', '--from', s, '--owner', '0:0']);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.statSync(img).uid).toBe(65534);
    expect(fsck(img).status).toBe(0);
    if (canMount)
      withMount(img, (mnt) => {
        const snap = snapshot(mnt);
        for (const info of snap.values()) expect([info.uid, info.gid]).toEqual([0, 0]);
      });
    fs.chmodSync(path.join(s, 'small.txt'), 0o000);
    const bad = asNobody(['mkfs', path.join(dir, 'bad.img'), '--size', '256M', '--block-size', '4096', '--from', s]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(
      /^ext4-workdisk: error \[SOURCE_ERROR\]: cannot read .*(small\.txt|hardlink-\d): permission denied\n$/,
    );
    expect(fs.existsSync(path.join(dir, 'bad.img'))).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe.runIf(haveOracles)('memoryTreeSource', () => {
  it('builds an image from a description in memory', async () => {
    const { memoryTreeSource } = await import('../src/tree/sources/memory.js');
    const { Ext4Reader } = await import('../src/fs/reader.js');
    const { FileDevice } = await import('../src/io/device.js');
    const img = path.join(work, 'memory.img');
    formatImage(img, {
      sizeBytes: 16 * 2 ** 20,
      sync: false,
      source: memoryTreeSource({
        perm: 0o750,
        children: {
          etc: { children: { hostname: { data: 'vm\n' }, motd: { data: 'hi', perm: 0o600, uid: 7, gid: 8 } } },
          link: { target: 'etc/hostname' },
          null: { kind: 'chardev', rdev: [1, 3] },
          tagged: { data: 'x', xattrs: [{ name: 'user.tag', value: new TextEncoder().encode('on') }] },
        },
      }),
    });
    expect(fsck(img).status).toBe(0);
    const r = Ext4Reader.open(FileDevice.open(img));
    expect(new TextDecoder().decode(r.readFileBytes(r.lookup('/link', { followLast: true })))).toBe('vm\n');
    const motd = r.inode(r.lookup('/etc/motd'));
    expect([motd.mode & 0o7777, motd.uid, motd.gid]).toEqual([0o600, 7, 8]);
    expect(r.deviceNumbers(r.inode(r.lookup('/null')))).toEqual([1, 3]);
    expect(r.xattrs(r.lookup('/tagged'))).toEqual([{ name: 'user.tag', value: new TextEncoder().encode('on') }]);
    expect(r.inode(2).mode & 0o7777).toBe(0o750);
  });
});
