/**
 * The grow planner as pure arithmetic (src/resize/plan.ts): the steps through the reserved GDT blocks
 * and into meta_bg, the last group trimmed as mkfs trims it, and what is refused before anything is
 * written; the new groups' tables placed in the new region only, flex_bg packed.
 */
import { describe, expect, it } from 'vitest';
import type { Geometry } from '../src/ext4/geometry.js';
import { groupFirstBlock } from '../src/ext4/geometry.js';
import { placeNewGroups, planGrow, groupUse } from '../src/resize/plan.js';

/** A 16 MiB mkfs.ext4 file system: 1 KiB blocks, 2 groups, 127 reserved GDT blocks, 64-byte descriptors. */
const small: Geometry = {
  blockSize: 1024,
  blocksCount: 16384,
  firstDataBlock: 1,
  blocksPerGroup: 8192,
  inodesPerGroup: 2048,
  groupCount: 2,
  descSize: 64,
  inodeSize: 256,
  superPolicy: 'sparse',
  backupGroups: [0, 0],
  metaBg: false,
  firstMetaBg: 0,
  reservedGdtBlocks: 127,
};
const opts = { resizeInode: true, is64: true, inodeTableBlocks: 512 };

describe('planGrow', () => {
  it('uses the reserved GDT blocks while they last, then turns to meta_bg', () => {
    const within = planGrow(small, { ...opts, target: 2 ** 20 });
    expect(within).toHaveLength(1);
    expect(within[0]).toMatchObject({ reservedTaken: 7, toMetaBg: false });
    expect(within[0]!.after).toMatchObject({ groupCount: 128, reservedGdtBlocks: 120, metaBg: false });

    const past = planGrow(small, { ...opts, target: 64 * 2 ** 20 });
    expect(past.map((s) => [s.reservedTaken, s.toMetaBg, s.after.groupCount])).toEqual([
      [127, false, 2048],
      [0, true, 8192],
    ]);
    expect(past[1]!.after).toMatchObject({ metaBg: true, firstMetaBg: 128, reservedGdtBlocks: 0 });
    // The first step ends where the reserve does: 128 descriptor blocks' worth of whole groups.
    expect(past[0]!.after.blocksCount).toBe(groupFirstBlock(small, 2048));
  });

  it('bounds the reserved GDT blocks one step takes (the journal bounds a transaction)', () => {
    const steps = planGrow(small, { ...opts, target: 16 * 2 ** 20, maxReservedPerStep: 10 });
    expect(steps).toHaveLength(13);
    expect(steps.every((s) => s.reservedTaken <= 10 && !s.toMetaBg)).toBe(true);
    expect(steps[12]!.after.reservedGdtBlocks).toBe(0);
  });

  it('goes straight to meta_bg without resize_inode; a meta_bg file system just grows', () => {
    const none = { ...small, reservedGdtBlocks: 0 };
    const s = planGrow(none, { ...opts, resizeInode: false, target: 2 ** 20 });
    expect(s.map((x) => x.toMetaBg)).toEqual([true]);
    expect(s[0]!.after.firstMetaBg).toBe(1);
    // Within the one descriptor block there is: no meta_bg needed.
    expect(planGrow(none, { ...opts, resizeInode: false, target: 100_000 })[0]!.toMetaBg).toBe(false);
    const meta = { ...none, metaBg: true };
    expect(planGrow(meta, { ...opts, resizeInode: false, target: 2 ** 20 })[0]!.toMetaBg).toBe(false);
  });

  it('leaves out a last group too short for its metadata plus 50 blocks', () => {
    // 3 groups and 100 blocks: the 4th group cannot hold 2 bitmaps, 512 inode-table blocks and 50 more.
    const s = planGrow(small, { ...opts, target: groupFirstBlock(small, 3) + 100 });
    expect(s[0]!.after.blocksCount).toBe(groupFirstBlock(small, 3));
  });

  it('refuses past 2^32 blocks without 64bit and past 2^32 - 1 inodes', () => {
    expect(() => planGrow(small, { ...opts, is64: false, target: 2 ** 32 })).toThrow(
      expect.objectContaining({ code: 'TOO_LARGE' }) as Error,
    );
    expect(() => planGrow({ ...small, inodesPerGroup: 8192 }, { ...opts, target: 2 ** 40 })).toThrow(
      expect.objectContaining({ code: 'TOO_LARGE' }) as Error,
    );
  });
});

describe('placeNewGroups', () => {
  it('packs the new groups of a flex group after the old last group, in the new region only', () => {
    const [step] = planGrow(small, { ...opts, target: groupFirstBlock(small, 20) });
    const p = placeNewGroups(step!, 512, 4);
    const oldEnd = groupFirstBlock(small, 2);
    for (let g = 2; g < 20; g++) {
      expect(p.blockBitmap[g]).toBeGreaterThanOrEqual(oldEnd);
      expect(p.inodeTable[g]).toBeGreaterThanOrEqual(oldEnd);
    }
    // Groups 2..15 share flex group 0: their block bitmaps lie side by side, then the inode bitmaps.
    for (let g = 3; g < 16; g++) expect(p.blockBitmap[g]).toBe(p.blockBitmap[g - 1]! + 1);
    expect(p.inodeBitmap[2]).toBeGreaterThan(p.blockBitmap[15]!);
    // Group 16 starts a flex group of its own, holding the tables of 16..19.
    expect(p.blockBitmap[16]).toBeGreaterThanOrEqual(groupFirstBlock(small, 16));
    // Group 2 holds the other groups' tables: not what the kernel would mark in a BLOCK_UNINIT group.
    const u = groupUse(step!.after, p, 2);
    expect(u.used).toBeGreaterThan(u.own);
    // Group 5 (a superblock backup) holds its own fixed metadata only.
    expect(groupUse(step!.after, p, 5)).toEqual({ used: 1 + 2 + 126, own: 1 + 2 + 126 });
  });
});
