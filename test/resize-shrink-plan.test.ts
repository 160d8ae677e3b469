/**
 * The shrink planner (src/resize/shrink-plan.ts): the minimum size as pure arithmetic, the geometry a
 * shrink leaves and the refusal with the minimum; and `--print-min` against resize2fs -P on images of
 * several kinds: never above it by more than a few percent, within a few percent where resize2fs's own
 * estimate is not inflated by its flex_bg accounting, and always enough: resize2fs itself shrinks the
 * image to our figure and e2fsck finds it clean.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Geometry } from '../src/ext4/geometry.js';
import { groupFirstBlock } from '../src/ext4/geometry.js';
import {
  estimateBlocks,
  minimumBlocks,
  planShrink,
  groupOverhead,
  type ShrinkInput,
} from '../src/resize/shrink-plan.js';
import { minimumSize, resizeImage } from '../src/resize/image.js';
import { Ext4Error } from '../src/core/errors.js';
import { HAVE_E2FSPROGS, cli, fsck, oracleAvailable, run, scratchDir, mkfsImage } from './helpers/oracle.js';

/** 256 MiB of 4 KiB blocks: 2 groups of 32768, 8192 inodes (512 table blocks) each, no flex_bg. */
const geo: Geometry = {
  blockSize: 4096,
  blocksCount: 65536,
  firstDataBlock: 0,
  blocksPerGroup: 32768,
  inodesPerGroup: 8192,
  groupCount: 2,
  descSize: 64,
  inodeSize: 256,
  superPolicy: 'sparse',
  backupGroups: [0, 0],
  metaBg: false,
  firstMetaBg: 0,
  reservedGdtBlocks: 15,
};
const itb = 512;
/** Group 0's fixed metadata: superblock, 1 descriptor block, 15 reserved GDT blocks; then bitmaps and table. */
const meta0 = 1 + 1 + 15 + 2 + itb;

function input(usedData: number, more: Partial<ShrinkInput> = {}): ShrinkInput {
  const meta = groupOverhead(geo, 0, itb) + groupOverhead(geo, 1, itb);
  return {
    geo,
    usedInodes: 11,
    freeBlocks: geo.blocksCount - meta - usedData,
    inodeTableBlocks: itb,
    logGroupsPerFlex: 0,
    extents: false,
    tablesEnd: [meta0, groupFirstBlock(geo, 1) + meta0],
    resizeInode: true,
    ...more,
  };
}

describe('minimumBlocks', () => {
  it('is the kept metadata plus the data, the last group holding its metadata and 50 blocks more', () => {
    expect(groupOverhead(geo, 0, itb)).toBe(meta0);
    expect(minimumBlocks(input(0))).toBe(meta0 + 50);
    expect(minimumBlocks(input(1000))).toBe(meta0 + 1000);
    // Past group 0: group 1's metadata (a backup group: the same fixed blocks) comes with it.
    expect(minimumBlocks(input(40000))).toBe(2 * meta0 + 40000);
    // Everything in use: the current size.
    expect(minimumBlocks(input(65536 - 2 * meta0))).toBe(65536);
  });

  it('keeps the groups the used inodes need, and every kept group tables below the end', () => {
    expect(minimumBlocks(input(10, { usedInodes: 8193 }))).toBe(groupFirstBlock(geo, 1) + meta0 + 50);
    expect(minimumBlocks(input(10, { tablesEnd: [9000, 0] }))).toBe(9000);
  });

  it('keeps a margin for extent trees (a five-hundredth of what goes, at most one block per inode)', () => {
    const plain = minimumBlocks(input(1000));
    const ext = minimumBlocks(input(1000, { extents: true, usedInodes: 1000 }));
    expect(ext - plain).toBe(Math.floor((65536 - plain) / 500));
    expect(minimumBlocks(input(1000, { extents: true, usedInodes: 11 })) - plain).toBe(11);
  });

  it('with sparse_super2 counts the room of the backup following the last group into the last kept one', () => {
    /** `groups` groups, backups in groups 1 and `b1`, `data` blocks in use besides the metadata. */
    const s = (groups: number, b1: number, data: number): ShrinkInput => {
      const g: Geometry = { ...geo, blocksCount: groups * 32768, groupCount: groups, superPolicy: 'sparse2' };
      g.backupGroups = [1, b1];
      let meta = 0;
      for (let k = 0; k < groups; k++) meta += groupOverhead(g, k, itb);
      return { ...input(data), geo: g, freeBlocks: groups * 32768 - meta - data };
    };
    // Three kept of four: the backup in group 3 follows into group 2 (a superblock, 1 descriptor block,
    // 15 reserved GDT blocks): as much room as a backup already in group 2 takes, 17 blocks more than none.
    expect(minimumBlocks(s(4, 3, 70000))).toBe(minimumBlocks(s(4, 2, 70000)));
    expect(minimumBlocks(s(4, 3, 70000)) - minimumBlocks(s(4, 0, 70000))).toBe(1 + 1 + 15);
    // Two kept of three: the new last group is group 1, the first backup's already.
    expect(minimumBlocks(s(3, 2, 40000))).toBe(minimumBlocks(s(3, 0, 40000)));
  });

  it('with flex_bg counts the metadata of the groups completing the last kept flex group', () => {
    const flex = minimumBlocks(input(1000, { logGroupsPerFlex: 4 }));
    expect(flex - minimumBlocks(input(1000))).toBe(groupOverhead(geo, 1, itb));
  });
});

/**
 * Images mkfs.ext4 1.47 made, as counts: the figures resize2fs -P printed for them (and its -d 32 trace
 * showed working) come out of the arithmetic alone.
 */
describe('minimumBlocks against resize2fs -P, as arithmetic', () => {
  /** `groups` groups of 32768 4 KiB blocks, 8192 inodes each, `data` blocks in use besides the metadata. */
  function made(groups: number, reserved: number, logFlex: number, data: number, used: number): ShrinkInput {
    const g: Geometry = { ...geo, blocksCount: groups * 32768, groupCount: groups, reservedGdtBlocks: reserved };
    let meta = 0;
    const tablesEnd: number[] = [];
    for (let k = 0; k < groups; k++) {
      meta += groupOverhead(g, k, itb);
      // flex_bg packs every table at the start of group 0; without it each lies after its group's own copies.
      tablesEnd.push(logFlex ? 289 + 512 * (k + 1) : groupFirstBlock(g, k) + groupOverhead(g, k, itb));
    }
    return {
      geo: g,
      usedInodes: used,
      freeBlocks: groups * 32768 - meta - data,
      inodeTableBlocks: itb,
      logGroupsPerFlex: logFlex,
      extents: true,
      tablesEnd,
      resizeInode: true,
    };
  }

  it('2 GiB, flex_bg, small files: the whole first flex group held back, its metadata counted again in the last group', () => {
    const s = made(16, 255, 4, 23217, 4051);
    // The data and the kept groups' metadata fit in 34570 blocks; resize2fs asks 43547, and so do we.
    expect(estimateBlocks(s)).toBe(43547);
    expect(minimumBlocks(s)).toBe(43547);
  });

  it('64 GiB, no flex_bg, a Debian rootfs: our margin takes one more group, 3.2% above resize2fs', () => {
    const s = made(512, 1024, 0, 183632, 6776);
    expect(estimateBlocks(s)).toBe(197624);
    expect(minimumBlocks(s)).toBe(203948);
  });

  it('never more than the file system is now', () => {
    const s = made(16, 255, 4, 16 * 32768 - 9766 - 10, 4051);
    expect(minimumBlocks(s)).toBe(16 * 32768);
  });
});

describe('planShrink', () => {
  it('refuses below the minimum with NO_SPACE naming it', () => {
    const s = input(1000);
    let err: unknown;
    try {
      planShrink(s, 1000);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Ext4Error);
    expect(err).toMatchObject({ code: 'NO_SPACE' });
    expect((err as Error).message).toContain(`${meta0 + 1000} blocks`);
  });

  it('leaves out a last group too short to keep, and refuses when what is left does not hold the data', () => {
    const p = planShrink(input(1000), groupFirstBlock(geo, 1) + 100);
    expect(p.after).toMatchObject({ blocksCount: 32768, groupCount: 1 });
    expect(() => planShrink(input(32300), groupFirstBlock(geo, 1) + 100)).toThrow(
      expect.objectContaining({ code: 'NO_SPACE' }) as Error,
    );
  });

  it('takes a given size that ends inside kept tables (they move), keeping the minimum as it is', () => {
    const s = input(1000, { tablesEnd: [9000, 0] });
    expect(minimumBlocks(s)).toBe(9000);
    const p = planShrink(s, 8000);
    expect(p.after.blocksCount).toBe(8000);
    expect(p.minimum).toBe(9000);
    expect(() => planShrink(s, meta0 + 999)).toThrow(expect.objectContaining({ code: 'NO_SPACE' }) as Error);
  });

  it('turns descriptor blocks that go back into reserved GDT blocks (resize_inode), the area keeping its size', () => {
    const big: Geometry = {
      ...geo,
      blockSize: 1024,
      blocksPerGroup: 8192,
      blocksCount: 8192 * 40 + 1,
      firstDataBlock: 1,
    };
    big.groupCount = 40;
    const s: ShrinkInput = {
      ...input(0),
      geo: big,
      freeBlocks: 8192 * 30,
      tablesEnd: Array.from({ length: 40 }, (_, g) => groupFirstBlock(big, g) + 600),
    };
    // 16 descriptors of 64 bytes per 1 KiB block: 40 groups take 3 blocks, 10 groups 1.
    const p = planShrink(s, 8192 * 10 + 1);
    expect(p.after.groupCount).toBe(10);
    expect(p.after.reservedGdtBlocks).toBe(15 + 2);
    expect(planShrink({ ...s, resizeInode: false }, 8192 * 10 + 1).after.reservedGdtBlocks).toBe(15);
  });
});

const runIt = oracleAvailable('print-min against resize2fs -P (e2fsprogs)', HAVE_E2FSPROGS);
const work = scratchDir('ext4wd-shrink-plan');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A tree of files of many sizes (about 24 MiB), for mkfs.ext4 -d. */
function tree(): string {
  const dir = path.join(work, 'tree');
  if (fs.existsSync(dir)) return dir;
  for (let d = 0; d < 12; d++) {
    const sub = path.join(dir, `d${d}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 40; f++)
      fs.writeFileSync(path.join(sub, `f${f}`), Buffer.alloc(((d * 40 + f) % 23) * 4500 + 7, d + f));
  }
  fs.writeFileSync(path.join(dir, 'big'), Buffer.alloc(20 * 2 ** 20, 3));
  return dir;
}

const mkfs = (size: string, args: string[]): string => mkfsImage(work, size, args);

function resize2fsMin(img: string): number {
  const r = run('resize2fs', ['-P', img]);
  expect(r.status, r.stderr).toBe(0);
  return Number(/minimum size of the filesystem: (\d+)/.exec(r.stdout)![1]);
}

/** Every other file of the tree removed by debugfs (its directories lie in several groups), and `big`. */
function deleteHalf(img: string): void {
  const cmds = ['rm /big'];
  for (let d = 0; d < 12; d++) for (let f = 0; f < 40; f += 2) cmds.push(`rm /d${d}/f${f}`);
  const file = path.join(work, 'rm.cmds');
  fs.writeFileSync(file, cmds.join('\n') + '\n');
  const r = run('debugfs', ['-w', '-f', file, img]);
  expect(r.status, r.stderr).toBe(0);
}

/** Grown by resize2fs to `size` (its new groups' tables in new flex groups). */
const grownTo = (size: string) => (img: string) => {
  run('truncate', ['-s', size, img]);
  const r = run('resize2fs', [img]);
  expect(r.status, r.stderr).toBe(0);
};

describe.runIf(runIt)('--print-min against resize2fs -P', () => {
  // `tol`: how far from resize2fs's figure ours may be. Ours is resize2fs's estimate, or what holds the
  // data where that is more: exactly resize2fs's on most kinds, a little above where our margin for
  // extent trees takes one more group (sparse_super2 and inline_data at 2 GiB: 4.1% and 3.5%).
  const cases: { name: string; size: string; args: string[]; tol: number; prep?: (img: string) => void }[] = [
    { name: 'defaults, 4 KiB blocks, populated', size: '2G', args: ['-b', '4096', '-d', '*'], tol: 0.03 },
    { name: '1 KiB blocks, populated', size: '256M', args: ['-b', '1024', '-d', '*'], tol: 0.03 },
    { name: 'no flex_bg', size: '512M', args: ['-O', '^flex_bg', '-d', '*'], tol: 0.03 },
    { name: 'no resize_inode', size: '1G', args: ['-b', '4096', '-O', '^resize_inode', '-d', '*'], tol: 0.03 },
    { name: 'meta_bg', size: '1G', args: ['-O', 'meta_bg,^resize_inode'], tol: 0.03 },
    { name: 'ext2', size: '256M', args: ['-t', 'ext2', '-d', '*'], tol: 0.03 },
    { name: 'ext3', size: '256M', args: ['-t', 'ext3'], tol: 0.03 },
    { name: 'empty 8 GiB', size: '8G', args: [], tol: 0.03 },
    { name: 'defaults, empty 2 GiB (one flex group)', size: '2G', args: [], tol: 0.03 },
    { name: '1 KiB blocks, populated 2 GiB', size: '2G', args: ['-b', '1024', '-d', '*'], tol: 0.03 },
    { name: '64bit, populated 16 GiB', size: '16G', args: ['-O', '64bit', '-d', '*'], tol: 0.03 },
    { name: 'no flex_bg, empty 16 GiB', size: '16G', args: ['-O', '^flex_bg'], tol: 0.03 },
    { name: 'ext3, populated 2 GiB', size: '2G', args: ['-t', 'ext3', '-d', '*'], tol: 0.03 },
    { name: 'sparse_super2, populated 2 GiB', size: '2G', args: ['-O', 'sparse_super2', '-d', '*'], tol: 0.05 },
    { name: 'inline_data, populated 2 GiB', size: '2G', args: ['-O', 'inline_data', '-d', '*'], tol: 0.05 },
    {
      name: 'files deleted across groups, 512 MiB',
      size: '512M',
      args: ['-d', '*'],
      tol: 0.03,
      prep: deleteHalf,
    },
    { name: 'grown by resize2fs, 256 MiB to 4 GiB', size: '256M', args: ['-d', '*'], tol: 0.03, prep: grownTo('4G') },
  ];
  for (const c of cases)
    it(c.name, () => {
      const img = mkfs(
        c.size,
        c.args.map((a) => (a === '*' ? tree() : a)),
      );
      c.prep?.(img);
      const theirs = resize2fsMin(img);
      const r = cli(['resize', img, '--print-min', '--json']);
      expect(r.status, r.stderr).toBe(0);
      const m = JSON.parse(r.stdout) as { minBlocks: number; blockSize: number; minBytes: number };
      expect(m.minBytes).toBe(m.minBlocks * m.blockSize);
      expect(minimumSize(img).minBlocks).toBe(m.minBlocks);
      expect(m.minBlocks).toBeLessThanOrEqual(theirs * (1 + c.tol));
      expect(Math.abs(m.minBlocks - theirs) / theirs).toBeLessThanOrEqual(c.tol);
      // Reachable: our shrink goes to exactly that figure and the result is clean.
      const ours = `${img}.ours`;
      run('cp', ['--sparse=always', img, ours]);
      const done = resizeImage(ours, 'min', { sync: false });
      if (m.minBlocks < done.oldBlocks) expect(done.newBlocks).toBe(m.minBlocks);
      expect(fs.statSync(ours).size).toBe(m.minBlocks * m.blockSize);
      const o = fsck(ours);
      expect(o.status, o.output).toBe(0);
      fs.rmSync(ours);
      // Enough by resize2fs's reckoning too: it shrinks the image to our figure and the result is clean.
      const shrunk = run('resize2fs', ['-f', img, `${(m.minBlocks * m.blockSize) / 1024}K`]);
      expect(shrunk.status, shrunk.stderr).toBe(0);
      const f = fsck(img);
      expect(f.status, f.output).toBe(0);
      // Text output, as resize2fs -P words it.
      expect(cli(['resize', img, '--print-min']).stdout).toMatch(
        /^Estimated minimum size of the filesystem: \d+ blocks/,
      );
    });
});

const ROOTFS = '/work/benchroot/debian-minbase';
describe.runIf(runIt && fs.existsSync(ROOTFS))('--print-min of a Debian rootfs made by our mkfs --from', () => {
  it('agrees with resize2fs -P within a few percent, and resize2fs shrinks it to our figure', () => {
    const img = path.join(work, 'debian.img');
    const made = cli(['mkfs', img, '--size', '1G', '--from', ROOTFS]);
    expect(made.status, made.stderr).toBe(0);
    const theirs = resize2fsMin(img);
    const m = minimumSize(img);
    expect(Math.abs(m.minBlocks - theirs) / theirs).toBeLessThan(0.03);
    const shrunk = run('resize2fs', ['-f', img, `${(m.minBlocks * m.blockSize) / 1024}K`]);
    expect(shrunk.status, shrunk.stderr).toBe(0);
    const f = fsck(img);
    expect(f.status, f.output).toBe(0);
  });
});
