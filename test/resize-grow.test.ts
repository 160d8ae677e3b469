/**
 * Growing images of every kind the editor edits (mkfs.ext4 option sets, ext2/ext3, 32-bit descriptors,
 * our formatter's, a populated one), across the reserved-GDT limit (into meta_bg) and past 2^32 blocks:
 * e2fsck -fn and our check clean, every file's content as before; parity with resize2fs where both
 * take the same path; as root the kernel mounts the result, sees the same tree and grows it further
 * online.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resizeImage } from '../src/resize/image.js';
import { formatImage } from '../src/mkfs/image.js';
import { editImage } from '../src/edit/editor.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { COMPAT, INCOMPAT } from '../src/ext4/features.js';
import { Ext4Error } from '../src/core/errors.js';
import {
  HAVE_E2FSPROGS,
  IS_ROOT,
  fsck,
  haveTool,
  oracleAvailable,
  run,
  scratchDir,
  mkfsImage,
} from './helpers/oracle.js';
import { imageState } from './helpers/crash.js';
import { mount, umount, view, xattrView } from './helpers/model.js';
import { guestDisk, guestMissing, runInGuest } from './helpers/guest.js';

const runIt = oracleAvailable('resize oracle (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('resize kernel checks (root, mount, losetup)', IS_ROOT && haveTool('losetup'));
/**
 * The kernel's online resize needs CAP_SYS_RESOURCE (bit 24), which containers often drop from root
 * (the development machine and CI's among them). Where the process has it, the host's kernel grows
 * the loop-mounted image; where it lacks it, a QEMU guest's kernel does (test/helpers/guest.ts), so
 * the step is never left out.
 */
const capResource = /CapEff:\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
const online = kernel && capResource !== null && (BigInt('0x' + capResource[1]) & (1n << 24n)) !== 0n;
const inGuest =
  kernel &&
  !online &&
  oracleAvailable('online resize in a QEMU guest (this process lacks CAP_SYS_RESOURCE)', guestMissing() === null);
const work = scratchDir('ext4wd-resize');
const huge = scratchDir('ext4wd-resize-huge', true);
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(huge, { recursive: true, force: true });
});

const K = 1024;
const M = K * K;
const G = K * M;
const T = K * G;

const mkfs = (size: number, args: string[], dir = work): string => mkfsImage(dir, size, args);

/** Files, directories, an htree directory, symlinks, a hard link and attributes. */
function populate(img: string): void {
  editImage(
    img,
    (e) => {
      e.mkdir('/etc');
      e.writeFile('/etc/hostname', 'vm\n');
      e.mkdir('/h');
      for (let k = 0; k < 150; k++) e.writeFile(`/h/a-rather-long-name-for-an-indexed-directory-${k}`, `entry ${k}\n`);
      e.writeFile('/big', [new Uint8Array(300_000).fill(7), { hole: 50_000 }, new Uint8Array(70_000).fill(9)]);
      e.writeFile('/x', 'with attributes\n');
      e.setXattr('/x', 'user.a', 'first');
      e.setXattr('/x', 'user.large', new Uint8Array(900).fill(0xab));
      e.symlink('/etc/hostname', '/link');
      e.link('/x', '/x2');
    },
    { timestamp: 1700000000, sync: false },
  );
}

function info(img: string): { blocks: number; groups: number; rsv: number; metaBg: boolean; resizeInode: boolean } {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    return {
      blocks: r.blocksCount,
      groups: r.groupCount,
      rsv: r.sb.s_reserved_gdt_blocks,
      metaBg: (r.sb.s_feature_incompat & INCOMPAT.meta_bg) !== 0,
      resizeInode: (r.sb.s_feature_compat & COMPAT.resize_inode) !== 0,
    };
  } finally {
    dev.close();
  }
}

function expectClean(img: string, what: string): void {
  const f = fsck(img);
  expect(f.status, `${what}:\n${f.output}`).toBe(0);
}

/** Grows `img` to `size` (or the file's size), checks it and that every entry is as before. */
function growChecked(img: string, size: number | undefined, what: string) {
  const before = imageState(img);
  const r = resizeImage(img, size, { sync: false });
  expectClean(img, what);
  expect(imageState(img), what).toBe(before);
  const i = info(img);
  expect(i.blocks).toBe(r.newBlocks);
  return { r, i };
}

describe.runIf(runIt)('resize: grow', () => {
  const cases: { name: string; size: number; args: string[]; to: number[]; populated?: boolean }[] = [
    { name: 'mkfs.ext4 defaults (1 KiB blocks)', size: 16 * M, args: [], to: [20 * M, 64 * M, G], populated: true },
    { name: '4 KiB blocks', size: 48 * M, args: ['-b', '4096'], to: [16 * G], populated: true },
    { name: 'no flex_bg', size: 64 * M, args: ['-O', '^flex_bg'], to: [4 * G], populated: true },
    { name: 'no resize_inode (straight to meta_bg)', size: 64 * M, args: ['-O', '^resize_inode'], to: [8 * G] },
    { name: 'meta_bg', size: 64 * M, args: ['-O', 'meta_bg,^resize_inode'], to: [300 * M, 8 * G], populated: true },
    { name: 'ext2 (no journal)', size: 64 * M, args: ['-t', 'ext2'], to: [2 * G], populated: true },
    { name: 'ext3', size: 64 * M, args: ['-t', 'ext3'], to: [2 * G], populated: true },
    { name: 'gdt_csum (uninit_bg)', size: 64 * M, args: ['-O', '^metadata_csum,uninit_bg'], to: [4 * G] },
    { name: '32-byte descriptors (no 64bit)', size: 64 * M, args: ['-O', '^64bit'], to: [4 * G], populated: true },
    { name: '128-byte inodes, 2 KiB blocks', size: 32 * M, args: ['-I', '128', '-b', '2048'], to: [3 * G] },
    { name: '64 KiB blocks', size: 64 * M, args: ['-b', '65536', '-O', '^resize_inode'], to: [3 * G] },
    { name: 'sparse_super2', size: 64 * M, args: ['-O', 'sparse_super2'], to: [3 * G], populated: true },
    {
      name: 'no sparse_super (every group a backup)',
      size: 64 * M,
      args: ['-O', '^sparse_super,^resize_inode'],
      to: [G],
    },
    // Straight to meta_bg with each descriptor and checksum kind, journal or none, flex_bg or not.
    { name: '32-byte descriptors into meta_bg', size: 64 * M, args: ['-O', '^64bit,^resize_inode'], to: [3 * G] },
    {
      name: 'gdt_csum into meta_bg',
      size: 64 * M,
      args: ['-O', '^metadata_csum,uninit_bg,^resize_inode'],
      to: [3 * G],
      populated: true,
    },
    { name: 'ext3 into meta_bg', size: 64 * M, args: ['-t', 'ext3', '-O', '^resize_inode'], to: [3 * G] },
    { name: 'ext2 into meta_bg', size: 64 * M, args: ['-t', 'ext2', '-O', '^resize_inode'], to: [3 * G] },
    { name: 'no flex_bg into meta_bg', size: 64 * M, args: ['-O', '^flex_bg,^resize_inode'], to: [3 * G] },
  ];
  for (const c of cases)
    it(`${c.name}: ${c.to.map((t) => `${t / M} MiB`).join(', ')}`, () => {
      const img = mkfs(c.size, c.args);
      if (c.populated) populate(img);
      for (const to of c.to) growChecked(img, to, `${c.name} grown to ${to}`);
    }, 300_000);

  it('our formatter: grown to the file size after truncate -s, and to the same size again (nothing to do)', () => {
    const img = path.join(work, 'ours.img');
    formatImage(img, { sizeBytes: 64 * M, timestamp: 1700000000 });
    populate(img);
    // Not a whole number of pages: the file system ends at the last whole page (as resize2fs takes it).
    fs.truncateSync(img, 3 * G + 5 * M + 3 * K);
    const { r } = growChecked(img, undefined, 'ours, to the file size');
    expect(r.newBlocks * r.blockSize).toBe(3 * G + 5 * M);
    const again = resizeImage(img, undefined, { sync: false });
    expect(again.newBlocks).toBe(again.oldBlocks);
    expect(again.steps).toBe(0);
  });

  it('across the reserved GDT limit: 16 MiB to 64 GiB and to 2 TiB, into meta_bg', () => {
    for (const to of [64 * G, 2 * T]) {
      const img = mkfs(16 * M, []);
      populate(img);
      const { r, i } = growChecked(img, to, `16 MiB to ${to}`);
      expect(r.toMetaBg).toBe(true);
      expect(r.steps).toBe(2);
      expect(i).toMatchObject({ metaBg: true, resizeInode: false, rsv: 0 });
      fs.rmSync(img);
    }
  }, 600_000);

  it('past 2^32 blocks with 64bit; refused without it, nothing written', () => {
    const img = mkfs(8 * G, [], huge);
    populate(img);
    const { i } = growChecked(img, 16 * T + 4 * G, '8 GiB to 16 TiB + 4 GiB');
    expect(i.blocks).toBeGreaterThan(2 ** 32);
    fs.rmSync(img);

    const small = mkfs(64 * M, ['-O', '^64bit', '-b', '4096'], huge);
    const bytes = fs.readFileSync(small);
    expect(() => resizeImage(small, 16 * T + 4 * G, { sync: false })).toThrow(
      expect.objectContaining({ code: 'TOO_LARGE' }) as Ext4Error,
    );
    expect(fs.statSync(small).size).toBe(64 * M);
    expect(Buffer.compare(fs.readFileSync(small), bytes)).toBe(0);
  }, 600_000);

  it('in steps: the reserved GDT blocks taken a few at a time, each step a consistent file system', () => {
    const img = mkfs(16 * M, []);
    populate(img);
    const before = imageState(img);
    const r = resizeImage(img, 16 * G, { sync: false, maxReservedPerStep: 10 });
    expect(r.steps).toBe(13);
    expectClean(img, '16 MiB to 16 GiB in 13 steps');
    expect(imageState(img)).toBe(before);
    expect(info(img)).toMatchObject({ resizeInode: true, rsv: 0, metaBg: false });
  });

  it('parity with resize2fs (dumpe2fs -h) where both take the same path', () => {
    const fields =
      /^(Block count|Inode count|Blocks per group|Inodes per group|Free inodes|Free blocks|Reserved GDT blocks|Reserved block count|Filesystem features):.*$/gm;
    for (const [size, to, args] of [
      [16 * M, G, []],
      [48 * M, 16 * G, ['-b', '4096']],
      [64 * M, 4 * G, ['-O', '^flex_bg']],
      [64 * M, 2 * G, ['-t', 'ext3']],
    ] as [number, number, string[]][]) {
      const ours = mkfs(size, args);
      const theirs = ours + '.resize2fs';
      fs.copyFileSync(ours, theirs);
      resizeImage(ours, to, { sync: false });
      fs.truncateSync(theirs, to);
      const r2 = run('resize2fs', [theirs]);
      expect(r2.status, r2.stderr).toBe(0);
      const head = (img: string) => run('dumpe2fs', ['-h', img]).stdout.match(fields)!.join('\n');
      expect(head(ours), `${args.join(' ')} ${size} -> ${to}`).toBe(head(theirs));
    }
  });

  it('kernel: mounts the grown image, sees the same tree, grows it further online', () => {
    if (!kernel) return;
    const mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    /** Grown by us, mounted and written by the host's kernel: for the guest's kernel to grow online. */
    const forGuest: { img: string; to: number; grown: number }[] = [];
    for (const [size, to, args] of [
      [16 * M, 256 * M, []],
      [16 * M, 20 * G, []],
      [64 * M, 2 * G, ['-t', 'ext3']],
      [64 * M, 4 * G, ['-O', '^resize_inode']],
    ] as [number, number, string[]][]) {
      const img = mkfs(size, args);
      populate(img);
      // Kernel-churned: files written and deleted across the groups by the kernel itself.
      mount(img, mnt, false);
      for (let k = 0; k < 120; k++) fs.writeFileSync(path.join(mnt, `k${k}`), Buffer.alloc(k * 700, k));
      for (let k = 0; k < 120; k += 3) fs.rmSync(path.join(mnt, `k${k}`));
      umount(mnt);
      mount(img, mnt, true);
      const before = [view(mnt, new Map()), xattrView(mnt)];
      umount(mnt);
      resizeImage(img, to, { sync: false });
      expectClean(img, `grown to ${to}`);
      const grown = info(img).blocks;
      mount(img, mnt, false);
      try {
        expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
        if (online) {
          const dev = run('findmnt', ['-n', '-o', 'SOURCE', mnt]).stdout.trim();
          fs.truncateSync(img, to + 512 * M);
          expect(run('losetup', ['-c', dev]).status).toBe(0);
          const grow = run('resize2fs', [dev]);
          expect(grow.status, grow.stderr + grow.stdout).toBe(0);
        }
        fs.writeFileSync(path.join(mnt, 'after-mount'), 'written\n');
      } finally {
        umount(mnt);
      }
      expectClean(img, `grown to ${to}, then mounted${online ? ' and grown online by the kernel' : ''}`);
      if (online) expect(info(img).blocks).toBeGreaterThan(grown);
      if (inGuest) {
        fs.truncateSync(img, to + 512 * M);
        forGuest.push({ img, to, grown });
      } else fs.rmSync(img);
    }
    if (!inGuest) return;
    // One boot for all four: each disk mounted, grown online to the disk's end, written, unmounted.
    const script = forGuest
      .map((_, i) => {
        const [dev, at] = [guestDisk(i), `/mnt/${i}`];
        return `mkdir ${at}; mount -t ext4 ${dev} ${at}; resize2fs ${dev}; echo written > ${at}/after-guest; umount ${at}`;
      })
      .join('\n');
    const g = runInGuest(script, { disks: forGuest.map((f) => f.img), tools: ['resize2fs'], timeoutMs: 300_000 });
    console.log(
      `online resize in a QEMU guest (${g.accel}${g.accelWhy ? `: ${g.accelWhy}` : ''}): ${forGuest.length} images, ${g.ms} ms`,
    );
    expect(g.status, g.output).toBe(0);
    // resize2fs's own words that it found the file system mounted and asked the kernel to grow it.
    for (let i = 0; i < forGuest.length; i++)
      expect(g.output).toContain(`${guestDisk(i)} is mounted on /mnt/${i}; on-line resizing required`);
    for (const { img, to, grown } of forGuest) {
      expectClean(img, `grown to ${to}, mounted, then grown online by a guest's kernel`);
      const after = info(img).blocks;
      expect(after).toBeGreaterThan(grown);
      // grown = to / block size: the guest grew it to the disk's end.
      expect(after * (to / grown)).toBe(to + 512 * M);
      const dev = FileDevice.open(img);
      try {
        const r = Ext4Reader.open(dev);
        expect(Buffer.from(r.readFileBytes(r.lookup('/after-guest'))).toString()).toBe('written\n');
      } finally {
        dev.close();
      }
      fs.rmSync(img);
    }
  }, 600_000);
});
