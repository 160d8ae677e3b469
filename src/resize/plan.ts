/**
 * Planning a grow, as pure arithmetic on the geometry: the steps from the current size to the target
 * (each one a consistent file system, committed as one transaction), and where each new group's bitmaps
 * and inode table go. Descriptor blocks come first from the reserved GDT blocks (resize_inode); once
 * those run out, or without them, the file system turns to meta_bg, which puts every new descriptor
 * block in new groups (kernel doc: blockgroup.rst "Meta Block Groups", special_inodes.rst; what the
 * kernel's online resize does). Nothing here reads or writes.
 */
import { Ext4Error } from '../core/errors.js';
import { IntervalSet } from '../ext4/intervals.js';
import { lastGroupTooShort, placeTables, type TablePlan } from '../ext4/layout.js';
import {
  type Geometry,
  backupGroupsFor,
  descsPerBlock,
  groupBlocks,
  groupCountOf,
  groupFirstBlock,
  groupFixedMeta,
  superblockGroups,
} from '../ext4/geometry.js';

/** One step of a grow: the geometry before and after, and how the descriptors find room. */
export interface GrowStep {
  before: Geometry;
  after: Geometry;
  /** Reserved GDT blocks taken into use as descriptor blocks (descriptor blocks D..D+n-1 of `before`). */
  reservedTaken: number;
  /** The step turns meta_bg on (s_first_meta_bg = the descriptor blocks so far) and drops resize_inode. */
  toMetaBg: boolean;
}

export interface GrowPlanOptions {
  /** Blocks the grown file system is to have (the last group may be trimmed, as mkfs trims it). */
  target: number;
  /** The image has resize_inode (its reserved GDT blocks may be used). */
  resizeInode: boolean;
  /** The image has 64bit (past 2^32 blocks). */
  is64: boolean;
  /** Inode table blocks per group. */
  inodeTableBlocks: number;
  /** Reserved GDT blocks one step may take (the journal bounds a transaction); default no bound. */
  maxReservedPerStep?: number;
}

/** The largest block count a file system without 64bit (or with resize_inode's 32-bit lists) can have. */
export const MAX_32BIT_BLOCKS = 0xffffffff;

function descBlocksFor(geo: Pick<Geometry, 'blockSize' | 'descSize'>, groups: number): number {
  return Math.ceil(groups / descsPerBlock(geo));
}

function withBlocks(geo: Geometry, blocks: number, more: Partial<Geometry> = {}): Geometry {
  const groupCount = groupCountOf(blocks, geo.firstDataBlock, geo.blocksPerGroup);
  return { ...geo, ...more, blocksCount: blocks, groupCount, backupGroups: backupGroupsFor(geo, groupCount) };
}

/** Blocks the last group of `geo` needs for itself: fixed metadata, two bitmaps and an inode table. */
function lastGroupOverhead(geo: Geometry, itb: number): number {
  return groupFixedMeta(geo, geo.groupCount - 1).reduce((a, [, n]) => a + n, 0) + 2 + itb;
}

/**
 * The steps from `cur` to `opts.target` blocks. Refused (nothing written yet): past 2^32 blocks without
 * 64bit, more than 2^32 - 1 inodes, reserved GDT blocks without resize_inode to keep them consistent.
 */
export function planGrow(cur: Geometry, opts: GrowPlanOptions): GrowStep[] {
  let target = opts.target;
  if (target > MAX_32BIT_BLOCKS && !opts.is64)
    throw new Ext4Error(
      'TOO_LARGE',
      `${target} blocks is past 2^32, which needs the 64bit feature; this file system was made without it (the largest size it can have is ${MAX_32BIT_BLOCKS * cur.blockSize} bytes)`,
    );
  if (target > 2 ** 48) throw new Ext4Error('TOO_LARGE', `${target} blocks is more than ext4 can address (2^48)`);
  const groups = groupCountOf(target, cur.firstDataBlock, cur.blocksPerGroup);
  if (groups * cur.inodesPerGroup > 0xffffffff)
    throw new Ext4Error(
      'TOO_LARGE',
      `${groups} groups of ${cur.inodesPerGroup} inodes is more than 2^32 - 1 inodes; the largest size this file system can grow to is ${Math.floor(0xffffffff / cur.inodesPerGroup) * cur.blocksPerGroup * cur.blockSize} bytes`,
    );
  for (let pass = 0; pass < 2; pass++) {
    const steps = stepsTo(cur, target, opts);
    const last = steps.length ? steps[steps.length - 1]!.after : cur;
    // The new last group must hold its own metadata and 50 blocks more (mkfs's and resize2fs's rule).
    const rem = (last.blocksCount - last.firstDataBlock) % last.blocksPerGroup;
    if (last.groupCount > cur.groupCount && lastGroupTooShort(rem, lastGroupOverhead(last, opts.inodeTableBlocks))) {
      target -= rem;
      continue;
    }
    return steps;
  }
  return stepsTo(cur, target, opts);
}

function stepsTo(cur: Geometry, target: number, opts: GrowPlanOptions): GrowStep[] {
  const steps: GrowStep[] = [];
  const dpb = descsPerBlock(cur);
  while (cur.blocksCount < target) {
    const groupsWanted = groupCountOf(target, cur.firstDataBlock, cur.blocksPerGroup);
    const have = descBlocksFor(cur, cur.groupCount);
    const need = descBlocksFor(cur, groupsWanted);
    let step: GrowStep;
    if (cur.metaBg || need <= have) {
      step = { before: cur, after: withBlocks(cur, target), reservedTaken: 0, toMetaBg: false };
    } else if (opts.resizeInode && cur.reservedGdtBlocks > 0) {
      const take = Math.min(need - have, cur.reservedGdtBlocks, opts.maxReservedPerStep ?? Infinity);
      const groups = (have + take) * dpb;
      // resize_inode lists block numbers in 32 bits: its steps stay below 2^32 blocks.
      const blocks = Math.min(target, groupFirstBlock(cur, groups), MAX_32BIT_BLOCKS);
      if (blocks <= cur.blocksCount)
        throw new Ext4Error(
          'UNSUPPORTED_FEATURE',
          `the reserved GDT blocks of this file system reach past 2^32 blocks, which resize_inode cannot describe; growing it past ${cur.blocksCount * cur.blockSize} bytes is not supported`,
        );
      const after = withBlocks(cur, blocks);
      const used = descBlocksFor(cur, after.groupCount) - have;
      after.reservedGdtBlocks = cur.reservedGdtBlocks - used;
      step = { before: cur, after, reservedTaken: used, toMetaBg: false };
    } else {
      if (cur.reservedGdtBlocks > 0)
        throw new Ext4Error(
          'UNSUPPORTED_FEATURE',
          `the file system has ${cur.reservedGdtBlocks} reserved GDT blocks but no resize inode to describe them; check it first (e2fsck)`,
        );
      // meta_bg from the next descriptor block on: every new descriptor block lies in new groups.
      step = {
        before: cur,
        after: withBlocks(cur, target, { metaBg: true, firstMetaBg: have }),
        reservedTaken: 0,
        toMetaBg: true,
      };
    }
    steps.push(step);
    cur = step.after;
  }
  return steps;
}

/** Where one step's new groups keep their tables, and every block of the new region in use. */
export interface NewGroupTables extends TablePlan {
  /** The first new group. */
  first: number;
  /** Blocks of fixed metadata (superblock, descriptors) of the new groups that have any. */
  fixed: Map<number, number>;
}

/**
 * Places the bitmaps and inode tables of the groups a step adds, as mkfs would place them in a file
 * system of the new size, in the new region only (the old file system, the old last group's new
 * blocks included, stays as it is); new groups inside the old last flex group are packed as a flex
 * group of their own.
 */
export function placeNewGroups(step: GrowStep, itb: number, logGroupsPerFlex: number): NewGroupTables {
  const a = step.after;
  const first = step.before.groupCount;
  const plan: NewGroupTables = {
    first,
    fixed: new Map(),
    used: new IntervalSet(),
    blocksCount: a.blocksCount,
    firstDataBlock: a.firstDataBlock,
    blocksPerGroup: a.blocksPerGroup,
    groupCount: a.groupCount,
    logGroupsPerFlex,
    inodeBlocksPerGroup: itb,
    blockBitmap: new Float64Array(a.groupCount),
    inodeBitmap: new Float64Array(a.groupCount),
    inodeTable: new Float64Array(a.groupCount),
  };
  plan.used.add(0, groupFirstBlock(a, first));
  for (const g of fixedMetaGroups(a, first)) {
    const fixed = groupFixedMeta(a, g);
    for (const [s, n] of fixed) plan.used.add(s, n);
    const total = fixed.reduce((t, [, n]) => t + n, 0);
    if (total) plan.fixed.set(g, total);
  }
  placeTables(plan, first);
  return plan;
}

/**
 * The groups from `first` on that can hold fixed metadata: superblock groups and, with meta_bg, the
 * first, second and last group of each meta group (every other group holds none: not asked one by one).
 */
function fixedMetaGroups(geo: Geometry, first: number): number[] {
  const out = new Set(superblockGroups(geo).filter((g) => g >= first));
  if (geo.metaBg) {
    const dpb = descsPerBlock(geo);
    for (let m = Math.max(geo.firstMetaBg, Math.floor(first / dpb)); m * dpb < geo.groupCount; m++)
      for (const g of [m * dpb, m * dpb + 1, m * dpb + dpb - 1]) if (g >= first && g < geo.groupCount) out.add(g);
  }
  return [...out].sort((x, y) => x - y);
}

/** Blocks of group `g` in use and how many of them the kernel would mark itself (BLOCK_UNINIT test). */
export function groupUse(geo: Geometry, plan: NewGroupTables, g: number): { used: number; own: number } {
  const start = groupFirstBlock(geo, g);
  const n = groupBlocks(geo, g);
  const used = plan.used.countIn(start, start + n);
  let own = plan.fixed.get(g) ?? 0;
  const inside = (b: number, len: number) => Math.max(0, Math.min(b + len, start + n) - Math.max(b, start));
  own += inside(plan.blockBitmap[g]!, 1) + inside(plan.inodeBitmap[g]!, 1);
  own += inside(plan.inodeTable[g]!, plan.inodeBlocksPerGroup);
  return { used, own };
}

/** The old groups that stop holding a superblock copy (sparse_super2's backup moved to the new last group). */
export function droppedSuperGroups(before: Geometry, after: Geometry): number[] {
  const kept = new Set(superblockGroups(after));
  return superblockGroups(before).filter((g) => !kept.has(g) && g < after.groupCount);
}

/** The superblock groups `after` adds: those at or past `before`'s group count. */
export function newSuperGroups(step: GrowStep): number[] {
  return superblockGroups(step.after).filter((g) => g >= step.before.groupCount);
}
