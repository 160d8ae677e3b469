/**
 * Shrinking images of several kinds (mkfs.ext4 option sets: 1 KiB and 4 KiB blocks, no flex_bg, no
 * resize_inode, meta_bg, ext2, ext3, gdt_csum, 32-byte descriptors; ours; kernel-churned; a Debian
 * rootfs): file data, extent trees, extended attribute blocks and the journal past the new end moved
 * below it, the inodes of the removed groups moved into kept ones (every name of them followed), the
 * groups dropped, the file cut; e2fsck -fn and our check clean, every entry as before (content, mode,
 * owner, links, xattrs; times), resize2fs grows it again, the kernel mounts it and sees the same tree.
 * What cannot be done is refused before anything is written, the image as it was.
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
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  cli,
  fsck,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
  mkfsImage,
} from './helpers/oracle.js';
import { mount, umount, view, xattrView } from './helpers/model.js';
import { imageState } from './helpers/crash.js';
import { Volume } from '../src/edit/volume.js';
import { moveBlocks } from '../src/resize/move-blocks.js';
import { storedXattrs } from '../src/fs/xattrs.js';

const runIt = oracleAvailable('shrink oracle (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-shrink');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const M = 2 ** 20;
let seq = 0;

const mkfs = (size: number, args: string[]): string => mkfsImage(work, size, args);

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

/**
 * Every entry's times by path, beside imageState's view; with `numbers` each entry's inode number too
 * (they stay unless the shrink moved inodes).
 */
function times(img: string, numbers: boolean): string {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const out: string[] = [];
    const walk = (dir: number, at: string) => {
      for (const d of r.readDir(dir)) {
        const i = r.inode(d.inode);
        const t = [i.mtime, i.ctime, i.atime, i.crtime].map((x) => `${x.sec}.${x.nsec}`).join(' ');
        const p = `${at}/${Buffer.from(d.name).toString()}`;
        out.push(`${p} ${numbers ? d.inode : ''} ${t}`);
        if ((i.mode & 0o170000) === 0o040000) walk(d.inode, p);
      }
    };
    walk(2, '');
    return out.sort().join('\n');
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
  const t = times(img, false);
  const numbered = times(img, true);
  const r = resizeImage(img, size, { sync: false });
  expectClean(img, what);
  expect(imageState(img), what).toBe(before);
  expect(times(img, false), what).toBe(t);
  if (!r.inodesMoved) expect(times(img, true), what).toBe(numbered);
  expect(fs.statSync(img).size).toBe(r.newBlocks * r.blockSize);
  expect(r.newBlocks).toBeLessThan(r.oldBlocks);
  return r;
}

describe.runIf(runIt)('resize: shrink', () => {
  const cases: { name: string; size: number; args: string[]; big: number }[] = [
    { name: 'mkfs.ext4 defaults (1 KiB blocks)', size: 256 * M, args: [], big: 40 * M },
    { name: '2 KiB blocks', size: 256 * M, args: ['-b', '2048'], big: 40 * M },
    { name: '4 KiB blocks', size: 512 * M, args: ['-b', '4096'], big: 100 * M },
    // One group holds 32 GiB of 64 KiB blocks: the shrink cuts the last (only) group short.
    { name: '64 KiB blocks', size: 1024 * M, args: ['-b', '65536'], big: 200 * M },
    { name: 'no flex_bg', size: 512 * M, args: ['-O', '^flex_bg'], big: 100 * M },
    { name: 'no resize_inode', size: 512 * M, args: ['-O', '^resize_inode'], big: 100 * M },
    { name: 'meta_bg', size: 512 * M, args: ['-O', 'meta_bg,^resize_inode'], big: 100 * M },
    { name: 'ext2 (no journal)', size: 256 * M, args: ['-t', 'ext2'], big: 40 * M },
    { name: 'ext3 (indirect maps)', size: 256 * M, args: ['-t', 'ext3'], big: 40 * M },
    { name: 'gdt_csum', size: 256 * M, args: ['-O', '^metadata_csum,uninit_bg'], big: 40 * M },
    { name: '32-byte descriptors', size: 512 * M, args: ['-O', '^64bit', '-b', '4096'], big: 100 * M },
  ];
  for (const c of cases)
    it(`${c.name}: to the smallest size it can be, then grown back by resize2fs`, () => {
      const img = mkfs(c.size, c.args);
      populate(img, c.big);
      const min = minimumSize(img);
      // --min goes to resize2fs -P's figure (test/resize-shrink-plan.test.ts); a given size may go down
      // to what holds the data.
      expect(min.floorBlocks).toBeLessThanOrEqual(min.minBlocks);
      const r = shrinkChecked(img, min.floorBlocks * min.blockSize, c.name);
      // The large file lay past that size: it moved.
      expect(r.filesMoved).toBeGreaterThan(0);
      expect(r.blocksMoved).toBeGreaterThan(1000);
      expect(r.newBlocks).toBeLessThanOrEqual(min.floorBlocks);
      expect(r.newBlocks).toBeGreaterThan(min.floorBlocks - 200);
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
    // --print-min is resize2fs -P's estimate; a given size may go below it, down to what holds the data.
    expect(min.floorBlocks).toBeLessThanOrEqual(min.minBlocks);
    expect(() => resizeImage(img, (min.floorBlocks - 10) * min.blockSize, { sync: false })).toThrow(
      expect.objectContaining({ code: 'NO_SPACE' }) as Error,
    );
    expect(sha(img)).toBe(before);
  });
});

/**
 * Top-level directories spread over the groups (as the kernel spreads them), each holding what names an
 * inode in every way a shrink must follow: nested directories ('..'), hard links from other directories
 * and from the root (kept), an htree directory, symlinks, attributes, a file with an extent tree block,
 * inline files where inline_data is on.
 */
function spread(img: string): void {
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 12; k++) {
        const d = `/d${k}`;
        e.mkdir(d);
        e.mkdir(`${d}/sub/deeper`, { parents: true });
        e.writeFile(`${d}/sub/deeper/f`, `deep ${k}\n`);
        e.writeFile(`${d}/f`, new Uint8Array(3000 + k).fill(k));
        e.writeFile(`${d}/tiny`, `t${k}`);
        e.setXattr(`${d}/f`, 'user.k', `value ${k}`);
        e.symlink(`../d${(k + 1) % 12}/f`, `${d}/ln`);
        e.mkdir(`${d}/many`);
        for (let n = 0; n < 120; n++) e.writeFile(`${d}/many/an-entry-with-a-long-name-to-fill-blocks-${n}`, `${n}`);
        const pieces: (Uint8Array | { hole: number })[] = [];
        for (let n = 0; n < 8; n++) pieces.push(new Uint8Array(4096).fill(n + 1), { hole: 16384 });
        e.writeFile(`${d}/fragmented`, pieces);
      }
      e.link('/d11/f', '/hard-in-root');
      for (let k = 0; k < 11; k++) e.link(`/d${k}/f`, `/d${k + 1}/linked-from-${k}`);
    },
    { timestamp: 1700000000, sync: false },
  );
}

/** The highest group holding one of spread()'s directories. */
function highestGroup(img: string): number {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    let high = 0;
    for (let k = 0; k < 12; k++) high = Math.max(high, r.lookup(`/d${k}`));
    return Math.floor((high - 1) / r.sb.s_inodes_per_group);
  } finally {
    dev.close();
  }
}

describe.runIf(runIt)('resize: shrink moving inodes out of the removed groups', () => {
  const cases: { name: string; size: number; args: string[] }[] = [
    { name: 'mkfs.ext4 defaults (1 KiB blocks)', size: 256 * M, args: [] },
    { name: '4 KiB blocks', size: 4096 * M, args: ['-b', '4096'] },
    { name: 'no flex_bg', size: 256 * M, args: ['-O', '^flex_bg'] },
    { name: 'inline_data', size: 256 * M, args: ['-O', 'inline_data'] },
    { name: 'gdt_csum', size: 256 * M, args: ['-O', '^metadata_csum,uninit_bg'] },
    { name: 'ext2', size: 256 * M, args: ['-t', 'ext2'] },
    { name: 'ext3', size: 256 * M, args: ['-t', 'ext3'] },
  ];
  for (const c of cases)
    it(`${c.name}: to its minimum, every name followed, then grown back by resize2fs`, () => {
      const img = mkfs(c.size, c.args);
      spread(img);
      const r = shrinkChecked(img, 'min', c.name);
      expect(highestGroup(img)).toBeLessThan(r.newGroups);
      expect(r.inodesMoved).toBeGreaterThan(0);
      const grown = run('resize2fs', [img, `${c.size / 1024}K`]);
      expect(grown.status, grown.stderr).toBe(0);
      expectClean(img, `${c.name} grown again`);
    });

  it('our own mkfs image', () => {
    const img = path.join(work, `ours-spread-${seq++}.img`);
    formatImage(img, { sizeBytes: 256 * M, sync: false });
    spread(img);
    const r = shrinkChecked(img, 'min', 'ours, inodes moved');
    expect(r.inodesMoved).toBeGreaterThan(0);
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
      // The smallest size it can be (below --min's, resize2fs -P's figure, on flex_bg images).
      const min = minimumSize(img);
      expect(min.floorBlocks).toBeLessThanOrEqual(min.minBlocks);
      const r = shrinkChecked(img, min.floorBlocks * min.blockSize, `kernel-churned ${args.join(' ')}`);
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

  it('inodes moved out of the removed groups: the kernel sees the same tree, links and attributes', () => {
    const mnt = path.join(work, 'mnt-inodes');
    fs.mkdirSync(mnt, { recursive: true });
    for (const args of [[], ['-O', 'inline_data,^flex_bg'], ['-t', 'ext3']]) {
      const img = mkfs(256 * M, args);
      spread(img);
      // The kernel adds its own files and hard links in the spread directories.
      mount(img, mnt, false);
      for (let k = 0; k < 12; k++) {
        fs.writeFileSync(path.join(mnt, `d${k}`, 'by-kernel'), Buffer.alloc(k * 5000, k));
        fs.linkSync(path.join(mnt, `d${k}`, 'tiny'), path.join(mnt, `d${(k + 5) % 12}`, `kernel-link-${k}`));
      }
      umount(mnt);
      mount(img, mnt, true);
      const before = [view(mnt, new Map()), xattrView(mnt)];
      umount(mnt);
      // A little above the minimum: the kernel writes to it after (at the minimum it is full).
      const min = minimumSize(img);
      const r = shrinkChecked(img, (min.minBlocks + 4096) * min.blockSize, `inodes moved ${args.join(' ')}`);
      expect(r.inodesMoved).toBeGreaterThan(0);
      mount(img, mnt, false);
      try {
        expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
        fs.mkdirSync(path.join(mnt, 'd3', 'after-mount'));
        fs.writeFileSync(path.join(mnt, 'd3', 'after-mount', 'f'), 'written\n');
      } finally {
        umount(mnt);
      }
      expectClean(img, `inodes moved ${args.join(' ')}, then mounted and written`);
    }
  }, 600_000);
});

/** The EA inodes (ea_inode) the attributes of `paths` keep their values in. */
function valueInodes(img: string, paths: string[]): number[] {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    return paths.flatMap((p) => {
      const s = storedXattrs(r, r.lookup(p), undefined, false);
      return [...s.inInode, ...s.block].map((x) => x.valueInum).filter((n) => n > 0);
    });
  } finally {
    dev.close();
  }
}

describe.runIf(runIt && kernel && haveTool('setfattr'))('resize: shrink, EA inodes', () => {
  it('values kept in EA inodes (the kernel puts each beside its owner) move with them', () => {
    const mnt = path.join(work, 'mnt-ea');
    fs.mkdirSync(mnt, { recursive: true });
    const img = mkfs(256 * M, ['-O', 'ea_inode,^flex_bg']);
    mount(img, mnt, false);
    const owners: string[] = [];
    try {
      for (let k = 0; k < 12; k++) {
        fs.mkdirSync(path.join(mnt, `d${k}`));
        const f = path.join(mnt, `d${k}`, 'f');
        fs.writeFileSync(f, `owner ${k}\n`);
        // Larger than a 1 KiB block: the value goes to an EA inode.
        const set = run('setfattr', ['-n', 'user.big', '-v', `0x${Buffer.alloc(3000, k + 1).toString('hex')}`, f]);
        expect(set.status, set.stderr).toBe(0);
        if (k % 2) fs.linkSync(f, path.join(mnt, `d${k}`, 'f2'));
        owners.push(`/d${k}/f`);
      }
    } finally {
      umount(mnt);
    }
    mount(img, mnt, true);
    const before = [view(mnt, new Map()), xattrView(mnt)];
    umount(mnt);
    const ipg = (() => {
      const dev = FileDevice.open(img);
      try {
        return Ext4Reader.open(dev).sb.s_inodes_per_group;
      } finally {
        dev.close();
      }
    })();
    const min = minimumSize(img);
    const keptGroups = Math.ceil((min.minBlocks + 4096 - 1) / (8192 * (1024 / min.blockSize)));
    expect(Math.max(...valueInodes(img, owners))).toBeGreaterThan(keptGroups * ipg);
    const r = shrinkChecked(img, (min.minBlocks + 4096) * min.blockSize, 'EA inodes moved');
    expect(r.inodesMoved).toBeGreaterThan(0);
    expect(Math.max(...valueInodes(img, owners))).toBeLessThanOrEqual(r.newGroups * ipg);
    mount(img, mnt, false);
    try {
      expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
      run('setfattr', [
        '-n',
        'user.after',
        '-v',
        `0x${Buffer.alloc(3000, 9).toString('hex')}`,
        path.join(mnt, 'd1', 'f'),
      ]);
    } finally {
      umount(mnt);
    }
    expectClean(img, 'EA inodes moved, then mounted and written');
  }, 300_000);
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
