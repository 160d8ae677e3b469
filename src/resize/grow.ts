/**
 * One grow step applied to an open image: the new groups' metadata, the resize inode, the superblock
 * and its copies, then the switch. Crash safety: the fresh blocks (new region; copies nothing reads yet)
 * are written as the transaction's data, durable before its commit block; every block the old file
 * system reads changes in that one jbd2 transaction (journal-log.ts), so a crash leaves the old file
 * system or the grown one. Without a journal (ext2) the order is fresh blocks, the old file system's
 * changed blocks, and the superblock last, each made durable; a crash in the middle step can leave the
 * old last group's counts for e2fsck.
 */
import { Ext4Error } from '../core/errors.js';
import { lo32, hi32 } from '../core/bytes.js';
import { COMPAT, INCOMPAT } from '../ext4/features.js';
import {
  encodeSuperblock,
  freeBlocksCount,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  type Superblock,
  setBlocksCount,
  setReservedBlocksCount,
  setFreeBlocksCount,
} from '../ext4/superblock.js';
import { groupFirstBlock, inodeTableBlocks, superblockGroups } from '../ext4/geometry.js';
import type { Ext4Reader } from '../fs/reader.js';
import type { BlockDevice } from '../io/device.js';
import { writeBlocks, type JournalLog } from '../edit/journal-log.js';
import { placeNewGroups, type GrowStep } from './plan.js';
import { growResizeInode } from './resize-inode.js';
import { growGroups, hasResizeInode, type TableZeroing } from './groups.js';
import { StepWrites } from './writes.js';

export interface StepContext {
  r: Ext4Reader;
  dev: BlockDevice;
  name: string;
  journal: JournalLog | undefined;
  sync: boolean;
  now: { sec: number; nsec: number };
  zeroing: TableZeroing;
  /** The share of blocks reserved for root, in percent, as it was before the grow (kept; resize2fs's arithmetic). */
  reservedPercent: number;
}

export interface StepResult {
  /** Bytes written (fresh blocks, journal not counted). */
  bytesWritten: number;
  /** Blocks that went through the journal. */
  journaled: number;
}

/** The superblock of the grown file system (counts, geometry, features); backups differ in s_block_group_nr. */
function grownSuperblock(
  r: Ext4Reader,
  step: GrowStep,
  free: { blocks: number; inodes: number },
  now: number,
  percent: number,
): Superblock {
  const sb: Superblock = { ...r.sb };
  const a = step.after;
  setBlocksCount(sb, a.blocksCount);
  setReservedBlocksCount(sb, Math.floor((percent * a.blocksCount) / 100.0));
  setFreeBlocksCount(sb, freeBlocksCount(r.sb) + free.blocks);
  sb.s_free_inodes_count = r.sb.s_free_inodes_count + free.inodes;
  sb.s_inodes_count = a.inodesPerGroup * a.groupCount;
  sb.s_reserved_gdt_blocks = a.reservedGdtBlocks;
  [sb.s_backup_bgs_0, sb.s_backup_bgs_1] = a.backupGroups;
  if (step.toMetaBg) {
    sb.s_feature_incompat |= INCOMPAT.meta_bg;
    sb.s_feature_compat &= ~COMPAT.resize_inode;
    sb.s_first_meta_bg = a.firstMetaBg;
  }
  // What mkfs counted as overhead no longer holds; 0 lets the kernel count it (as after resize2fs).
  sb.s_overhead_clusters = 0;
  sb.s_wtime = lo32(now);
  sb.s_wtime_hi = hi32(now) & 0xff;
  return sb;
}

/** Plans and applies one step; on return the image holds the grown file system (committed). */
export function applyStep(cx: StepContext, step: GrowStep): StepResult {
  const { r, dev } = cx;
  const bs = r.blockSize;
  const before = step.before;
  const w = new StepWrites(r, before.blocksCount);
  const plan = placeNewGroups(step, inodeTableBlocks(r.geo), logFlexOf(r));
  const freed = growResizeInode(r, step, w, hasResizeInode(r));
  const changes = growGroups(r, step, plan, w, cx.zeroing, freed);
  const sb = grownSuperblock(
    r,
    step,
    { blocks: changes.freeBlocks, inodes: changes.freeInodes },
    cx.now.sec,
    cx.reservedPercent,
  );

  // The superblock and its copies (a copy sits at the start of its group's first block).
  const sbBlock = Math.floor(SUPERBLOCK_OFFSET / bs);
  const primary = w.modify(sbBlock);
  primary.set(encodeSuperblock(sb), SUPERBLOCK_OFFSET - sbBlock * bs);
  for (const g of superblockGroups(step.after)) {
    if (g === 0) continue;
    const block = groupFirstBlock(step.after, g);
    const copy = encodeSuperblock({ ...sb, s_block_group_nr: g & 0xffff });
    if (block >= w.oldEnd) {
      const b = new Uint8Array(bs);
      b.set(copy.subarray(0, SUPERBLOCK_SIZE));
      w.put(block, b);
    } else w.modify(block).set(copy);
  }

  const journal = cx.journal;
  if (journal) {
    const { need, room } = journal.fits(w.home.size);
    if (need > room)
      throw new Ext4Error(
        'NO_SPACE',
        `${cx.name}: this grow step changes ${w.home.size} blocks of the file system, more than its journal holds (${room} blocks); nothing was written`,
      );
  }

  // 1. Fresh blocks, durable before anything points at them: with a journal, the fsync that makes its
  // log durable before the commit block covers them (they go in as the transaction's data); without
  // one, an fsync of their own.
  const fresh = [...w.fresh].map(([block, data]) => ({ block, data }));
  writeZeros(dev, bs, w.zeroRuns);
  // 2. The switch.
  if (journal) journal.commit(dev, fresh, w.home, cx.sync, cx.now, true);
  else {
    writeBlocks(dev, bs, fresh);
    if (cx.sync) dev.sync();
    const rest = [...w.home].filter(([b]) => b !== sbBlock).map(([block, data]) => ({ block, data }));
    writeBlocks(dev, bs, rest);
    if (cx.sync) dev.sync();
    dev.write(sbBlock * bs, w.modify(sbBlock));
    if (cx.sync) dev.sync();
  }
  return { bytesWritten: w.bytes(bs), journaled: w.home.size };
}

/** log2 of the groups per flex group; 0 without flex_bg (each group keeps its own tables). */
export function logFlexOf(r: Ext4Reader): number {
  return r.sb.s_feature_incompat & INCOMPAT.flex_bg ? r.sb.s_log_groups_per_flex : 0;
}

/** Inode tables that must read as zeros and may not: written out (1 MiB at a time). */
function writeZeros(dev: BlockDevice, bs: number, runs: readonly [number, number][]): void {
  if (!runs.length) return;
  const zero = new Uint8Array(Math.max(bs, 1 << 20));
  for (const [start, n] of runs)
    for (let off = 0; off < n * bs; off += zero.length)
      dev.write(start * bs + off, zero.subarray(0, Math.min(zero.length, n * bs - off)));
}
