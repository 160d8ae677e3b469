/**
 * extract sets modes, owners, times and sizes through each file's descriptor: checked under different
 * umasks, in a setgid destination of another group and under a default ACL (neither may leak into the
 * result), with special bits, trailing holes, many small files served from the read-ahead window, and
 * owners when root.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatDevice } from '../src/mkfs/format.js';
import { formatImage } from '../src/mkfs/image.js';
import { FileDevice, MemoryDevice } from '../src/io/device.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { extract } from '../src/tree/extract.js';
import { memoryTreeSource, type MemoryEntry } from '../src/tree/sources/memory.js';
import { scratchDir, IN_CI, IS_ROOT, fsck, run, oracleAvailable, HAVE_E2FSPROGS } from './helpers/oracle.js';
import { spawnSync } from 'node:child_process';

const scratch = scratchDir('extract-meta');
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;
const T = { sec: 1_650_000_000, nsec: 123_456_000 };

function image(children: Record<string, MemoryEntry>): Ext4Reader {
  const dev = new MemoryDevice(64 << 20);
  formatDevice(dev, { sizeBytes: 64 << 20, source: memoryTreeSource({ children }, T), timestamp: 1_600_000_000 });
  return Ext4Reader.open(dev);
}

const perms = [0o000, 0o400, 0o444, 0o600, 0o644, 0o664, 0o666, 0o700, 0o755, 0o777, 0o4755, 0o2755, 0o6711, 0o1644];

describe('extract metadata', () => {
  const files: Record<string, MemoryEntry> = {};
  for (const p of perms)
    files[`m${p.toString(8)}`] = { data: `mode ${p.toString(8)}\n`, perm: p, uid: 1234, gid: 5678 };
  // A file whose data ends before its size (a trailing hole), and one that is all hole.
  const holeTail = new Uint8Array(3 * 4096 + 100);
  holeTail.set([1, 2, 3], 0);
  files['hole-tail'] = { data: holeTail };
  files['all-hole'] = { data: new Uint8Array(10_000) };
  files['empty'] = { data: '' };
  const reader = image(files);

  for (const umask of [0o022, 0o077, 0o000]) {
    it(`modes, sizes and times are exact with umask ${umask.toString(8)}`, () => {
      const dest = path.join(scratch, `u${umask.toString(8)}`);
      fs.mkdirSync(dest);
      const old = process.umask(umask);
      try {
        extract(reader, '/', dest, { owners: isRoot });
      } finally {
        process.umask(old);
      }
      for (const p of perms) {
        const st = fs.lstatSync(path.join(dest, `m${p.toString(8)}`), { bigint: true });
        expect(Number(st.mode) & 0o7777, `mode ${p.toString(8)}`).toBe(p);
        expect(Number(st.mtimeNs / 1000n)).toBe(T.sec * 1e6 + T.nsec / 1000);
        if (isRoot) expect([Number(st.uid), Number(st.gid)]).toEqual([1234, 5678]);
      }
      const ht = fs.readFileSync(path.join(dest, 'hole-tail'));
      expect(ht.length).toBe(holeTail.length);
      expect(Buffer.compare(ht, Buffer.from(holeTail))).toBe(0);
      expect(fs.statSync(path.join(dest, 'all-hole')).size).toBe(10_000);
      expect(fs.statSync(path.join(dest, 'all-hole')).blocks).toBe(0);
      expect(fs.statSync(path.join(dest, 'empty')).size).toBe(0);
    });
  }

  it.runIf(isRoot)('a setgid destination owned by another group does not change owners or setgid files', () => {
    const dest = path.join(scratch, 'sgid');
    fs.mkdirSync(dest);
    fs.chownSync(dest, 0, 1234);
    fs.chmodSync(dest, 0o2775);
    const r = image({ d: { children: { f: { data: 'x', perm: 0o2755 } } }, g: { data: 'y', perm: 0o644 } });
    extract(r, '/', dest, { owners: true });
    for (const [rel, mode] of [
      ['d', 0o755],
      ['d/f', 0o2755],
      ['g', 0o644],
    ] as const) {
      const st = fs.lstatSync(path.join(dest, rel));
      expect([st.uid, st.gid, st.mode & 0o7777], rel).toEqual([0, 0, mode]);
    }
  });

  const haveSetfacl = spawnSync('sh', ['-c', 'command -v setfacl'], { encoding: 'utf8' }).status === 0;
  if (IN_CI && !haveSetfacl) throw new Error('setfacl (acl) is required in CI');
  it.runIf(haveSetfacl)('a default ACL on the destination does not change the modes', () => {
    const dest = path.join(scratch, 'acl');
    fs.mkdirSync(dest);
    const set = spawnSync('setfacl', ['-d', '-m', 'u::rwx,g::r-x,o::---', dest], { encoding: 'utf8' });
    expect(set.status, set.stderr).toBe(0);
    const r = image({
      a: { data: 'a', perm: 0o644 },
      x: { data: 'x', perm: 0o755 },
      w: { data: 'w', perm: 0o666 },
      sub: { children: {}, perm: 0o755 },
    });
    extract(r, '/', dest);
    for (const [rel, mode] of [
      ['a', 0o644],
      ['x', 0o755],
      ['w', 0o666],
      ['sub', 0o755],
    ] as const)
      expect(fs.lstatSync(path.join(dest, rel)).mode & 0o7777, rel).toBe(mode);
  });

  it('many small files come out intact through the read-ahead window (and a cat-like reread in between)', () => {
    const many: Record<string, MemoryEntry> = {};
    const want = new Map<string, Buffer>();
    for (let d = 0; d < 8; d++) {
      const kids: Record<string, MemoryEntry> = {};
      for (let i = 0; i < 60; i++) {
        const b = Buffer.alloc(4 + (((d * 60 + i) * 997) % 9000), (d * 60 + i) & 0xff);
        b.writeUInt32LE(d * 1000 + i, 0);
        kids[`f${i}`] = { data: b };
        want.set(`d${d}/f${i}`, b);
      }
      many[`d${d}`] = { children: kids };
    }
    const r = image(many);
    const dest = path.join(scratch, 'many');
    fs.mkdirSync(dest);
    extract(r, '/', dest);
    for (const [rel, b] of want) expect(Buffer.compare(fs.readFileSync(path.join(dest, rel)), b), rel).toBe(0);
    // Random-order reads through the same reader still return the right bytes.
    const keys = [...want.keys()].sort(
      (a, b) => ((a.length * 31 + b.charCodeAt(3)) % 7) - ((b.length * 31 + a.charCodeAt(3)) % 7),
    );
    for (const rel of keys.slice(0, 50))
      expect(Buffer.compare(Buffer.from(r.readFileBytes(r.lookup('/' + rel))), want.get(rel)!), rel).toBe(0);
  });
});

describe('FileDevice gathered writes and reads', () => {
  it('writev places parts back to back; readInto zero-fills past the end', () => {
    const p = path.join(scratch, 'dev.bin');
    const dev = FileDevice.create(p);
    const parts = Array.from({ length: 2500 }, (_, i) => new Uint8Array(i % 5 === 0 ? 0 : 3).fill(i & 0xff));
    dev.writev(100, parts);
    const total = parts.reduce((a, b) => a + b.length, 0);
    expect(dev.size).toBe(100 + total);
    const back = new Uint8Array(total + 50).fill(0xee);
    dev.readInto(100, back);
    let off = 0;
    for (const part of parts) {
      expect(back.subarray(off, off + part.length)).toEqual(part);
      off += part.length;
    }
    expect(back.subarray(total).every((x) => x === 0)).toBe(true);
    dev.close();
  });
});

describe('early write-back', () => {
  it('a synchronous loop of formats with data leaves no descriptors open, and every image is complete', () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const big = new Uint8Array(3 << 20).fill(7);
    const src = () => memoryTreeSource({ children: { big: { data: big }, small: { data: 'x' } } }, T);
    const img = path.join(scratch, 'loop.img');
    formatImage(img, { sizeBytes: 64 << 20, source: src() });
    const before = fds();
    for (let i = 0; i < 12; i++) {
      fs.rmSync(img, { force: true });
      formatImage(img, { sizeBytes: 64 << 20, source: src() });
    }
    expect(fds()).toBe(before);
    if (oracleAvailable('e2fsck', HAVE_E2FSPROGS)) {
      const f = fsck(img);
      expect(f.status, f.output).toBe(0);
    }
    const dev = FileDevice.open(img);
    const r = Ext4Reader.open(dev);
    expect(Buffer.from(r.readFileBytes(r.lookup('/big'))).equals(Buffer.from(big))).toBe(true);
    dev.close();
    if (IS_ROOT) {
      // The kernel sees the same bytes.
      const mnt = path.join(scratch, 'mnt');
      fs.mkdirSync(mnt);
      const m = run('mount', ['-o', 'loop,ro', img, mnt]);
      expect(m.status, m.stderr).toBe(0);
      try {
        expect(fs.readFileSync(path.join(mnt, 'big')).equals(Buffer.from(big))).toBe(true);
        expect(fs.readFileSync(path.join(mnt, 'small'), 'utf8')).toBe('x');
      } finally {
        run('umount', [mnt]);
      }
    } else if (IN_CI) throw new Error('CI runs as root: the loop mount must not be skipped');
  });
});
