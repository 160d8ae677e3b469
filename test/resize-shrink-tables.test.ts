/**
 * Shrinking to a size that ends inside the packed table area of a kept flex group (mkfs.ext4 -G 32 or
 * more: the first group of a flex group holds every member's bitmaps, then the inode tables, so an end
 * just past that group's own 50 spare blocks cuts through its inode table): the kept groups' bitmaps
 * and inode tables move below the end (move-tables.ts). e2fsck -fn and our check clean, content and
 * times as before, the descriptors pointing below the end, resize2fs grows it again, the kernel mounts
 * it and sees the same tree; -G 4 (no table ever past such an end) moves none.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { resizeImage } from '../src/resize/image.js';
import { prepareShrink } from '../src/resize/shrink-image.js';
import { Volume } from '../src/edit/volume.js';
import { editImage } from '../src/edit/editor.js';
import { Ext4Reader } from '../src/fs/reader.js';
import { FileDevice } from '../src/io/device.js';
import { inodeTableBlocks } from '../src/ext4/geometry.js';
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
import { mount, umount, view, xattrView } from './helpers/model.js';
import { imageState } from './helpers/crash.js';

const runIt = oracleAvailable('shrink table move oracle (e2fsprogs)', HAVE_E2FSPROGS);
const kernel = oracleAvailable('shrink table move, the kernel (root, mount)', IS_ROOT && haveTool('mount'));
const work = scratchDir('ext4wd-shrink-tables');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const K = 1024;
let seq = 0;

const mkfs = (sizeK: number, args: string[]): string => mkfsImage(work, sizeK * K, args);

/**
 * Directories (the editor spreads them over the flex groups: a moved inode table holds inodes in use),
 * files in them (one with an extent tree block), links.
 */
function populate(img: string, fileBytes: number): void {
  editImage(
    img,
    (e) => {
      for (let k = 0; k < 10; k++) {
        e.mkdir(`/d${k}/sub`, { parents: true });
        e.writeFile(`/d${k}/f`, new Uint8Array(fileBytes + k * 1000).fill(k + 1));
        e.writeFile(`/d${k}/sub/small`, `small ${k}\n`);
        e.setXattr(`/d${k}/f`, 'user.k', `value ${k}`);
        for (let n = 0; n < 30; n++) e.writeFile(`/d${k}/entry-with-a-long-name-${n}`, `${k}.${n}\n`);
        e.symlink(`../d${(k + 1) % 10}/f`, `/d${k}/ln`);
      }
      const pieces: (Uint8Array | { hole: number })[] = [];
      for (let n = 0; n < 20; n++) pieces.push(new Uint8Array(4096).fill(n + 1), { hole: 8192 });
      e.writeFile('/d3/fragmented', pieces);
      e.link('/d7/f', '/hard-in-root');
    },
    { timestamp: 1700000000, sync: false },
  );
}

interface Layout {
  bs: number;
  firstDataBlock: number;
  bpg: number;
  itb: number;
  /** Per group: [block bitmap, inode bitmap, inode table]. */
  tables: [number, number, number][];
}

function layout(img: string): Layout {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    const tables: [number, number, number][] = [];
    for (let g = 0; g < r.groupCount; g++) {
      const d = r.groupDesc(g);
      tables.push([d.blockBitmap, d.inodeBitmap, d.inodeTable]);
    }
    return {
      bs: r.blockSize,
      firstDataBlock: r.sb.s_first_data_block,
      bpg: r.sb.s_blocks_per_group,
      itb: inodeTableBlocks(r.geo),
      tables,
    };
  } finally {
    dev.close();
  }
}

/** Inodes in use in group `g` (its descriptor's count). */
function usedInodes(img: string, g: number): number {
  const dev = FileDevice.open(img);
  try {
    const r = Ext4Reader.open(dev);
    return r.sb.s_inodes_per_group - r.groupDesc(g).freeInodes;
  } finally {
    dev.close();
  }
}

function expectClean(img: string, what: string): void {
  const f = fsck(img);
  expect(f.status, `${what}:\n${f.output}`).toBe(0);
}

/** Shrinks `img` to `blocks` and checks it (clean, same content, every kept table below the end). */
function shrinkChecked(img: string, blocks: number, what: string) {
  const before = imageState(img);
  const r = resizeImage(img, blocks * layout(img).bs, { sync: false });
  expectClean(img, what);
  expect(imageState(img), what).toBe(before);
  expect(r.newBlocks, what).toBe(blocks);
  const l = layout(img);
  for (const [bb, ib, it] of l.tables) expect(Math.max(bb, ib, it + l.itb - 1), what).toBeLessThan(blocks);
  return r;
}

describe.runIf(runIt)('resize: a table move with no room', () => {
  it('refuses with NO_SPACE before writing when no free run below the end holds an inode table', () => {
    // 64 groups of 512 blocks, inode tables of 32 blocks packed in group 32 for groups 32-63.
    const img = mkfs(32 * K, ['-b', '1024', '-g', '512', '-G', '32']);
    // 16-block files over the groups kept, every other one removed: free runs of 16 blocks at most.
    editImage(
      img,
      (e) => {
        for (let k = 0; k < 900; k++) e.writeFile(`/f${k}`, new Uint8Array(16 * 1024).fill(1 + (k % 200)));
      },
      { timestamp: 1700000000, sync: false },
    );
    editImage(
      img,
      (e) => {
        for (let k = 0; k < 900; k += 2) e.rm(`/f${k}`);
      },
      { timestamp: 1700000000, sync: false },
    );
    const l = layout(img);
    const end = l.firstDataBlock + 32 * l.bpg + 90;
    // Group 32's inode table is cut by that end.
    expect(l.tables[32]![2] + l.itb).toBeGreaterThan(end);
    const before = fs.readFileSync(img);
    expect(() => resizeImage(img, end * l.bs, { sync: false })).toThrow(
      expect.objectContaining({
        code: 'NO_SPACE',
        message: expect.stringMatching(/no run of 32 free blocks/) as string,
      }) as Error,
    );
    expect(fs.readFileSync(img).equals(before)).toBe(true);
    // Refused by the checks before the shrink starts, not by a move that fails half way.
    const v = Volume.open(img, { sync: false });
    try {
      expect(() => prepareShrink(v, end)).toThrow(expect.objectContaining({ code: 'NO_SPACE' }) as Error);
    } finally {
      v.close();
    }
  });
});

describe.runIf(runIt)('resize: shrink through a kept flex group table area', () => {
  const cases: {
    name: string;
    sizeK: number;
    args: string[];
    leader: number;
    cuts: number[];
    file: number;
  }[] = [
    // 64 groups of 512 KiB: group 32's tables at +64 (bitmaps for 32 groups first), 32 blocks long.
    {
      name: '1 KiB blocks, -G 32',
      sizeK: 32 * K,
      args: ['-b', '1024', '-g', '512', '-G', '32'],
      leader: 32,
      cuts: [85, 90, 95],
      file: 200_000,
    },
    // Nothing written: every table past the end is uninitialized, placed and not copied.
    {
      name: '1 KiB blocks, -G 32, empty',
      sizeK: 32 * K,
      args: ['-b', '1024', '-g', '512', '-G', '32'],
      leader: 32,
      cuts: [90],
      file: 0,
    },
    // 128 groups: group 64's tables at +128, its inode bitmap at +64: both cut through.
    {
      name: '1 KiB blocks, -G 64',
      sizeK: 64 * K,
      args: ['-b', '1024', '-g', '512', '-G', '64'],
      leader: 64,
      cuts: [86, 140],
      file: 400_000,
    },
    // 64 groups of 128 MiB: group 32's inode table at +64, 512 blocks long.
    {
      name: '4 KiB blocks, -G 32',
      sizeK: 8 * K * K,
      args: ['-b', '4096', '-G', '32'],
      leader: 32,
      cuts: [570],
      file: 3_000_000,
    },
  ];
  for (const c of cases)
    it(`${c.name}: the kept tables move below the end, then grown back by resize2fs`, () => {
      const base = mkfs(c.sizeK, c.args);
      if (c.file) populate(base, c.file);
      const l = layout(base);
      // The leader's inode table holds inodes in use (copied, not only placed) where the case fills it.
      // The leader's inode table holds inodes in use (copied), or none (INODE_UNINIT: only placed).
      const used = usedInodes(base, c.leader);
      if (c.file) expect(used).toBeGreaterThan(0);
      else expect(used).toBe(0);
      const leaderStart = l.firstDataBlock + c.leader * l.bpg;
      // The leader's own inode table reaches past every cut: the move is needed.
      for (const cut of c.cuts) expect(l.tables[c.leader]![2] + l.itb).toBeGreaterThan(leaderStart + cut);
      for (const cut of c.cuts) {
        const img = path.join(work, `cut-${seq++}.img`);
        fs.copyFileSync(base, img);
        const what = `${c.name}, end at +${cut}`;
        const r = shrinkChecked(img, leaderStart + cut, what);
        expect(r.newGroups, what).toBe(c.leader + 1);
        expect(r.tablesMoved, what).toBeGreaterThanOrEqual(1);
        const grown = run('resize2fs', [img, `${c.sizeK}K`]);
        expect(grown.status, grown.stderr).toBe(0);
        expectClean(img, `${what}, grown again`);
        fs.rmSync(img);
      }
      fs.rmSync(base);
    }, 300_000);

  it('-G 4: an end just inside a flex group leaves every table below it; none moves', () => {
    const img = mkfs(K * K, ['-b', '4096', '-G', '4']);
    populate(img, 1_000_000);
    const l = layout(img);
    const r = shrinkChecked(img, l.firstDataBlock + 4 * l.bpg + 600, '-G 4');
    expect(r.tablesMoved).toBe(0);
  });
});

describe.runIf(runIt && kernel)('resize: shrink through a kept flex group table area, the kernel', () => {
  it('mounts the shrunk image, sees the same tree, writes to it', () => {
    const mnt = path.join(work, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const img = mkfs(32 * K, ['-b', '1024', '-g', '512', '-G', '32']);
    populate(img, 200_000);
    expect(usedInodes(img, 32)).toBeGreaterThan(0);
    mount(img, mnt, true);
    const before = [view(mnt, new Map()), xattrView(mnt)];
    umount(mnt);
    const l = layout(img);
    const r = shrinkChecked(img, l.firstDataBlock + 32 * l.bpg + 90, 'kernel');
    expect(r.tablesMoved).toBeGreaterThanOrEqual(1);
    mount(img, mnt, false);
    try {
      expect([view(mnt, new Map()), xattrView(mnt)]).toEqual(before);
      // New inodes in the moved table's group and blocks beside it.
      for (let k = 0; k < 40; k++) fs.writeFileSync(path.join(mnt, `after-${k}`), Buffer.alloc(k * 100, k));
    } finally {
      umount(mnt);
    }
    expectClean(img, 'mounted and written after the table move');
  }, 300_000);
});
