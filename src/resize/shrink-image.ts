/**
 * A shrink applied to an open image, in the order its crash safety needs: refused before anything is
 * written when it cannot be done (planShrink: NO_SPACE with the minimum; checkMovable: what is not
 * implemented yet); then kept groups' bitmaps and inode tables past the new end move below it
 * (move-tables.ts), the inodes of the removed groups into kept groups (move-inodes.ts) and
 * the blocks past the new end below it (move-blocks.ts), through the editor, in journal transactions
 * that each leave a consistent file system; then the groups are dropped in one transaction
 * (shrink.ts); only once that is durable is the file cut to the new size.
 */
import { Ext4Error } from '../core/errors.js';
import { reservedBlocksCount, SUPERBLOCK_OFFSET } from '../ext4/superblock.js';
import { Volume } from '../edit/volume.js';
import { JournalLog, writeBlocks } from '../edit/journal-log.js';
import { planShrink, type ShrinkPlan } from './shrink-plan.js';
import { shrinkInput } from './shrink-input.js';
import { checkMovable, moveBlocks } from './move-blocks.js';
import { moveInodes } from './move-inodes.js';
import { checkTablesMovable, moveTables } from './move-tables.js';
import { checkNothingPastEnd, dropGroups, firstInUsePastEnd, newBackupArea } from './shrink.js';
import { journalPastEnd, moveJournal, DeferDevice } from './move-journal.js';
import { FileDevice } from '../io/device.js';
import { StepWrites } from './writes.js';
import { hasResizeInode } from './groups.js';
import { descsPerBlock } from '../ext4/geometry.js';

export interface ShrinkOutcome {
  plan: ShrinkPlan;
  /** Inodes moved out of the removed groups. */
  inodesMoved: number;
  /** Files whose blocks moved, and the blocks. */
  filesMoved: number;
  blocksMoved: number;
  /** Kept groups whose bitmaps or inode table moved below the new end. */
  tablesMoved: number;
  /** Transactions committed (the moves' and the switch). */
  steps: number;
}

/** Refuses (before anything is written) what the shrink of `v` to `want` blocks cannot do. */
export function prepareShrink(v: Volume, want: number): ShrinkPlan {
  const r = v.r;
  const plan = planShrink(shrinkInput(r), want);
  const a = plan.after;
  // meta_bg puts a descriptor block after a group's backup superblock: a backup moving into a group
  // would move that block too.
  if (newBackupArea(plan.before, a) && a.metaBg)
    throw new Ext4Error(
      'UNSUPPORTED_FEATURE',
      `${v.name}: moving a sparse_super2 backup on a meta_bg file system is not implemented yet`,
    );
  checkMovable(v, a.blocksCount);
  checkTablesMovable(v, a.blocksCount, a.groupCount, newBackupArea(plan.before, a));
  return plan;
}

/**
 * Shrinks the image at `image` (opened as `v`, which this closes) along `plan`; returns what it did.
 * `reopen` opens the image again (after the moves' commits).
 */
export function applyShrink(
  image: string,
  v: Volume,
  plan: ShrinkPlan,
  reopen: () => Volume,
  opts: { sync: boolean; now: { sec: number; nsec: number }; onWarning?: (m: string) => void },
): ShrinkOutcome {
  const a = plan.after;
  const out: ShrinkOutcome = { plan, inodesMoved: 0, filesMoved: 0, blocksMoved: 0, tablesMoved: 0, steps: 0 };
  const percent = (reservedBlocksCount(v.r.sb) * 100.0) / v.r.blocksCount;
  // Kept groups' tables past the end first: every later move allocates below the end around them.
  // sparse_super2's backup moving into the new last group needs its room there emptied too.
  const hole = newBackupArea(plan.before, a);
  out.tablesMoved = moveTables(v, a.blocksCount, a.groupCount, opts.now, hole).length;
  if (out.tablesMoved) out.steps++;
  if (journalPastEnd(v.r, a.blocksCount, hole)) {
    v.close();
    const dev = new DeferDevice(FileDevice.open(image, true), plan.before.blockSize);
    const jv = Volume.openDevice(dev, { sync: opts.sync, onWarning: opts.onWarning });
    try {
      moveJournal(jv, dev, a.blocksCount, a.groupCount, opts.now, hole);
    } finally {
      jv.close();
    }
    out.steps++;
    v = reopen();
  }
  out.inodesMoved = moveInodes(v, a.groupCount, opts.now);
  // Committed before the blocks move: directory leaves the moves changed get their checksums at
  // commit, and a block copied below the end must be copied as sealed.
  if (v.changed) {
    v.commit(opts.now);
    out.steps++;
  }
  // Every inode's map is read only when a block past the end is still in use (the bitmaps say).
  const moved =
    firstInUsePastEnd(v.r, a) === undefined
      ? { files: 0, blocks: 0 }
      : moveBlocks(v, a.blocksCount, a.groupCount, hole);
  out.filesMoved = moved.files;
  out.blocksMoved = moved.blocks;
  if (v.changed) {
    v.commit(opts.now);
    out.steps++;
  }
  v.close();
  v = reopen();
  try {
    const r = v.r;
    checkNothingPastEnd(r, a);
    // A descriptor block the switch no longer needs becomes a reserved GDT block (resize_inode), whose
    // content is a list of block numbers. The kernel, mounting with the old superblock still on disk,
    // counts the old groups even after it replays the switch, reads that block as their descriptors and
    // refuses the mount. So the switch gives up the reserved GDT room (a valid state: a resize inode
    // whose room is all used), and a second transaction, once the new superblock is home, takes it back.
    const dpb = descsPerBlock(plan.before);
    const giveBack =
      hasResizeInode(r) &&
      !plan.before.metaBg &&
      a.reservedGdtBlocks > 0 &&
      Math.ceil(a.groupCount / dpb) < Math.ceil(plan.before.groupCount / dpb) &&
      JournalLog.open(r, v.name) !== undefined;
    const mid = giveBack ? { ...a, reservedGdtBlocks: 0 } : a;
    const w = new StepWrites(r, r.blocksCount);
    dropGroups(r, mid, w, opts.now.sec, percent);
    const journal = JournalLog.open(r, v.name);
    if (journal) {
      const { need, room } = journal.fits(w.home.size);
      if (need > room)
        throw new Ext4Error(
          'NO_SPACE',
          `${v.name}: dropping the groups changes ${w.home.size} blocks, more than the journal holds (${room}); the blocks moved so far stay moved, the size is unchanged`,
        );
      journal.commit(v.dev, [], w.home, opts.sync, opts.now, true);
      if (giveBack) {
        v.close();
        v = reopen();
        const back = new StepWrites(v.r, v.r.blocksCount);
        dropGroups(v.r, a, back, opts.now.sec, percent);
        JournalLog.open(v.r, v.name)!.commit(v.dev, [], back.home, opts.sync, opts.now, true);
        out.steps++;
      }
    } else {
      opts.onWarning?.('this image has no journal: a crash while shrinking it can leave it needing a check (e2fsck)');
      const sbBlock = Math.floor(SUPERBLOCK_OFFSET / r.blockSize);
      const rest = [...w.home].filter(([b]) => b !== sbBlock).map(([block, data]) => ({ block, data }));
      writeBlocks(v.dev, r.blockSize, rest);
      if (opts.sync) v.dev.sync();
      v.dev.write(sbBlock * r.blockSize, w.modify(sbBlock));
      if (opts.sync) v.dev.sync();
    }
    out.steps++;
    v.dev.truncate(a.blocksCount * r.blockSize);
    if (opts.sync) v.dev.sync();
  } finally {
    v.close();
  }
  return out;
}
