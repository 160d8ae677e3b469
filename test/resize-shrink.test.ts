/**
 * Shrinking images of several kinds (mkfs.ext4 option sets: 1 KiB and 4 KiB blocks, no flex_bg, no
 * resize_inode, meta_bg, ext2, ext3, gdt_csum, 32-byte descriptors; ours; kernel-churned; a Debian
 * rootfs): file data, extent trees, extended attribute blocks and the journal past the new end moved
 * below it, the groups dropped, the file cut; e2fsck -fn and our check clean, every entry as before
 * (content, mode, owner, links, xattrs; times), resize2fs grows it again, the kernel mounts it and sees
 * the same tree. What cannot be done is refused before anything is written, the image as it was.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { resizeImage, minimumSize } from '../src/resize/image.js';
import { formatImage } from '../src/mkfs/image.js';
import { editImage } from '../src/edit/editor.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { HAVE_E2FSPROGS, IS_ROOT, cli, fsck, haveTool, oracleAvailable, run, scratchDir } from './helpers/oracle.js';
import { mount, umount, view, xattrView } from './helpers/model.js';
import { imageState } from './helpers/crash.js';
import { Volume } from '../src/edit/volume.js';
import { moveBlocks } from '../src/resize/move-blocks.js';

const runIt = oracleAvailable('shrink oracle (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-shrink');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const M = 2 ** 20;
let seq = 0;

function mkfs(size: number, args: string[]): string {
  const img = path.join(work, `s${seq++}.img`);
  fs.writeFileSync(img, '');
  fs.truncateSync(img, size);
  const fsType = args.includes('-t') ? [] : ['-t', 'ext4'];
  const r = run('mkfs.ext4', ['-q', '-F', ...fsType, '-E', 'root_owner=0:0', ...args, img]);
  expect(r.status, r.stderr).toBe(0);
  return img;
}

/**
 * Files in the root directory (their inodes stay in group 0), one of them large enough to reach far up
 * the disk once the files before it are gone, attributes, a symlink and a hard link.
 */
function populate(img: string, bigBytes: number): void {
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 40; k++) e.writeFile(`/a-rather-long-name-${k}`, new Uint8Array(5000 + k * 300).fill(k));
      e.writeFile('/filler', new Uint8Array(bigBytes).fill(1));
      e.writeFile('/big', [new Uint8Array(bigBytes).fill(7), { hole: 50_000 }, new Uint8Array(70_000).fill(9)]);
      // An attribute block, shared by two files, allocated after the filler: it moves too.
      e.setXattr('/big', 'user.large', new Uint8Array(900).fill(0xab));
      e.writeFile('/x', 'with attributes\n');
      e.setXattr('/x', 'user.a', 'first');
      e.setXattr('/x', 'user.large', new Uint8Array(900).fill(0xab));
      e.symlink('/x', '/link');
      e.link('/x', '/x2');
    },
    { timestamp: 1700000000, sync: false },
  );
  // The filler goes: what follows it stays high up, to be moved.
  editImage(img, (e) => e.rm('/filler'), { timestamp: 1700000000, sync: false });
}

/** Every entry's times beside imageState's view (inode numbers stay: nothing here moves an inode). */
function times(img: string): string {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    return r
      .readDir(2)
      .map((d) => {
        const i = r.inode(d.inode);
        const t = [i.mtime, i.ctime, i.atime, i.crtime].map((x) => `${x.sec}.${x.nsec}`).join(' ');
        return `${Buffer.from(d.name).toString()} ${d.inode} ${t}`;
      })
      .join('\n');
  } finally {
    dev.close();
  }
}

const sha = (img: string) => createHash('sha256').update(fs.readFileSync(img)).digest('hex');

function expectClean(img: string, what: string): void {
  const f = fsck(img);
  expect(f.status, `${what}:\n${f.output}`).toBe(0);
}

/** Shrinks `img` to `size` (or its minimum) and checks it; returns the result. */
function shrinkChecked(img: string, size: number | 'min', what: string) {
  const before = imageState(img);
  const t = times(img);
  const r = resizeImage(img, size, { sync: false });
  expectClean(img, what);
  expect(imageState(img), what).toBe(before);
  expect(times(img), what).toBe(t);
  expect(fs.statSync(img).size).toBe(r.newBlocks * r.blockSize);
  expect(r.newBlocks).toBeLessThan(r.oldBlocks);
  return r;
}

describe.runIf(runIt)('resize: shrink', () => {
  const cases: { name: string; size: number; args: string[]; big: number }[] = [
    { name: 'mkfs.ext4 defaults (1 KiB blocks)', size: 256 * M, args: [], big: 40 * M },
    { name: '4 KiB blocks', size: 512 * M, args: ['-b', '4096'], big: 100 * M },
    { name: 'no flex_bg', size: 512 * M, args: ['-O', '^flex_bg'], big: 100 * M },
    { name: 'no resize_inode', size: 512 * M, args: ['-O', '^resize_inode'], big: 100 * M },
    { name: 'meta_bg', size: 512 * M, args: ['-O', 'meta_bg,^resize_inode'], big: 100 * M },
    { name: 'ext2 (no journal)', size: 256 * M, args: ['-t', 'ext2'], big: 40 * M },
    { name: 'ext3 (indirect maps)', size: 256 * M, args: ['-t', 'ext3'], big: 40 * M },
    { name: 'gdt_csum', size: 256 * M, args: ['-O', '^metadata_csum,uninit_bg'], big: 40 * M },
    { name: '32-byte descriptors', size: 512 * M, args: ['-O', '^64bit', '-b', '4096'], big: 100 * M },
  ];
  for (const c of cases)
    it(`${c.name}: to its minimum, then grown back by resize2fs`, () => {
      const img = mkfs(c.size, c.args);
      populate(img, c.big);
      const min = minimumSize(img);
      const r = shrinkChecked(img, 'min', c.name);
      // The large file lay past the minimum: it moved.
      expect(r.filesMoved).toBeGreaterThan(0);
      expect(r.blocksMoved).toBeGreaterThan(1000);
      expect(r.newBlocks).toBeLessThanOrEqual(min.minBlocks);
      expect(r.newBlocks).toBeGreaterThan(min.minBlocks - 200);
      // The kernel's tool takes it from here: grows it and finds it clean.
      const grown = run('resize2fs', [img, `${c.size / 1024}K`]);
      expect(grown.status, grown.stderr).toBe(0);
      expectClean(img, `${c.name} grown again`);
    });

  it('our own mkfs image, to a size between', () => {
    const img = path.join(work, `ours-${seq++}.img`);
    formatImage(img, { sizeBytes: 256 * M, sync: false });
    populate(img, 40 * M);
    shrinkChecked(img, 160 * M, 'ours');
    shrinkChecked(img, 'min', 'ours, then to its minimum');
  });

  it('refuses below the minimum with NO_SPACE, the image byte for byte as it was', () => {
    const img = mkfs(64 * M, []);
    populate(img, 10 * M);
    const before = sha(img);
    const min = minimumSize(img);
    expect(() => resizeImage(img, (min.minBlocks - 10) * min.blockSize, { sync: false })).toThrow(
      expect.objectContaining({ code: 'NO_SPACE' }) as Error,
    );
    expect(sha(img)).toBe(before);
  });

  it('refuses (not implemented yet) when inodes are in use in a group it would remove, nothing written', () => {
    const img = mkfs(256 * M, []);
    // Top-level directories spread over the groups, as the kernel spreads them.
    editImage(
      img,
      (e) => {
        for (let k = 0; k < 12; k++) e.mkdir(`/d${k}`);
      },
      { timestamp: 1700000000, sync: false },
    );
    const dev = FileDevice.open(img);
    let high = 0;
    try {
      const r = Ext4Reader.open(dev);
      for (let k = 0; k < 12; k++) high = Math.max(high, r.lookup(`/d${k}`));
      expect(Math.floor((high - 1) / r.sb.s_inodes_per_group)).toBeGreaterThan(2);
    } finally {
      dev.close();
    }
    const before = sha(img);
    expect(() => resizeImage(img, 'min', { sync: false })).toThrow(
      /inodes are in use in the groups the shrink removes/,
    );
    expect(sha(img)).toBe(before);
  });
});

describe.runIf(runIt)('moving blocks below a given end', () => {
  it('moves extended attribute blocks, their users pointed at the copies', () => {
    const img = mkfs(64 * M, []);
    const large = new Uint8Array(900).fill(0xab);
    editImage(
      img,
      (e) => {
        e.writeFile('/hole', new Uint8Array(20_000).fill(1));
        e.writeFile('/a', 'a\n');
        e.writeFile('/b', 'b\n');
        e.setXattr('/a', 'user.large', large);
        e.setXattr('/b', 'user.large', large);
      },
      { timestamp: 1700000000, sync: false },
    );
    // Room below the attribute blocks.
    editImage(img, (e) => e.rm('/hole'), { timestamp: 1700000000, sync: false });
    const acl = (v: { r: Ext4Reader }, p: string) => v.r.inode(v.r.lookup(p)).fileAcl;
    const before = imageState(img);
    const v = Volume.open(img, { sync: false });
    let from = 0;
    try {
      // The editor gives each file its own block (the kernel may share one: the move keeps the refcount).
      from = Math.min(acl(v, '/a'), acl(v, '/b'));
      expect(from).toBeGreaterThan(0);
      // Everything from the attribute block on counts as past the end (group 0 kept).
      const r = moveBlocks(v, from, 1);
      expect(r.blocks).toBeGreaterThanOrEqual(1);
      v.commit();
    } finally {
      v.close();
    }
    expectClean(img, 'attribute block moved');
    expect(imageState(img)).toBe(before);
    const dev = FileDevice.open(img);
    try {
      const r = Ext4Reader.open(dev);
      for (const p of ['/a', '/b']) expect(r.inode(r.lookup(p)).fileAcl).toBeLessThan(from);
    } finally {
      dev.close();
    }
  });
});

const kernel = oracleAvailable('shrink kernel checks (root, mount)', IS_ROOT && haveTool('mount'));

describe.runIf(runIt && kernel)('resize: shrink, the kernel', () => {
  it('kernel-churned images (files written and deleted by the kernel) shrunk: it mounts them and sees the same tree', () => {
    const mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    for (const args of [[], ['-b', '4096'], ['-t', 'ext3']]) {
      const img = mkfs(256 * M, args);
      populate(img, 30 * M);
      mount(img, mnt, false);
      for (let k = 0; k < 150; k++) fs.writeFileSync(path.join(mnt, `k${k}`), Buffer.alloc(k * 3000, k));
      for (let k = 0; k < 150; k += 3) fs.rmSync(path.join(mnt, `k${k}`));
      umount(mnt);
      mount(img, mnt, true);
      const before = [view(mnt, new Map()), xattrView(mnt)];
      umount(mnt);
      const r = shrinkChecked(img, 'min', `kernel-churned ${args.join(' ')}`);
      expect(r.blocksMoved).toBeGreaterThan(0);
      mount(img, mnt, false);
      try {
        expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
        fs.writeFileSync(path.join(mnt, 'after-mount'), 'written\n');
      } finally {
        umount(mnt);
      }
      expectClean(img, `kernel-churned ${args.join(' ')}, shrunk, then mounted and written`);
    }
  }, 600_000);
});

const ROOTFS = '/work/benchroot/debian-minbase';
describe.runIf(runIt && fs.existsSync(ROOTFS))('resize: shrink a Debian rootfs', () => {
  it('made by our mkfs --from and by mkfs.ext4 -d, to the minimum', () => {
    const ours = path.join(work, 'debian-ours.img');
    const made = cli(['mkfs', ours, '--size', '1G', '--from', ROOTFS]);
    expect(made.status, made.stderr).toBe(0);
    shrinkChecked(ours, 'min', 'Debian rootfs (ours)');
    const theirs = mkfs(1024 * M, ['-d', ROOTFS]);
    shrinkChecked(theirs, 'min', 'Debian rootfs (mkfs.ext4 -d)');
  }, 300_000);
});
