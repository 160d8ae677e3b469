/**
 * Moving a kept group's bitmaps and inode table from past a shrink's new end to free blocks below it
 * (flex_bg packs a flex group's tables at its first group's start: an end just inside that area cuts
 * through tables of groups that stay), or out of the room a sparse_super2 backup moving into the new
 * last group takes (there, without flex_bg, the group's own tables lie). Each table gets blocks that
 * were free below the end (an inode table one run of its length: checkTablesMovable refuses before
 * anything is written when there is none), its content copied there, the descriptor pointed at it and
 * the old blocks freed, one operation per group, committed before anything else moves:
 * - the bitmaps are metadata the same transaction changes (the allocator marks the new blocks, the
 *   frees at commit clear the old): they are copied into the transaction, journaled with the rest;
 * - the inode table is copied as new data (as a moved file's blocks are): written to blocks that were
 *   free before the commit that points the descriptor at them, so a crash before that commit leaves
 *   the old table in use and the copy in free blocks, and after it the new one, complete; the old
 *   blocks are freed in that same transaction and nothing is allocated in them before the file is cut;
 * - what is uninitialized is placed, not copied: a BLOCK_UNINIT bitmap is computed from the group's
 *   metadata (so every group whose computed bitmap the move changes, those holding the old or the new
 *   blocks, is initialized first), an INODE_UNINIT group's inode bitmap and table hold nothing, and of
 *   an inode table only the inodes below itable_unused are copied (the rest is no longer zeroed, so
 *   ITABLE_ZEROED is cleared: the kernel's lazy init zeroes it again).
 */
import { Ext4Error } from '../core/errors.js';
import { BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED } from '../ext4/group-desc.js';
import { inodeTableBlocks } from '../ext4/geometry.js';
import { setBitRange } from '../ext4/bitmap.js';
import { scanFree } from '../edit/balloc.js';
import type { Volume } from '../edit/volume.js';
import { outside, type Hole } from './move-blocks.js';

/** A group's tables: the descriptor field and its length (0: the inode table's, per group). */
const TABLES = [
  ['blockBitmap', 1],
  ['inodeBitmap', 1],
  ['inodeTable', 0],
] as const;
type TableField = (typeof TABLES)[number][0];

/** Groups below `keptGroups` whose bitmaps or inode table reach `end` or past it (or into `hole`). */
export function tablesPastEnd(v: Volume, end: number, keptGroups: number, hole?: Hole): number[] {
  const itb = inodeTableBlocks(v.r.geo);
  const out: number[] = [];
  for (let g = 0; g < keptGroups; g++) {
    const d = v.groups.get(g);
    if (TABLES.some(([f, n]) => outside(d[f], n || itb, end, hole).length)) out.push(g);
  }
  return out;
}

/**
 * Where a run of `n` free blocks below `end` lies in the bitmaps `bitmap(g)` gives: searched from the
 * group of `goal` on through the kept groups (a table must be contiguous); undefined when none is.
 */
function findRun(
  v: Volume,
  bitmap: (g: number) => Uint8Array,
  goal: number,
  n: number,
  end: number,
  keptGroups: number,
  hole: Hole,
): number | undefined {
  const g0 = Math.min(v.groupOfBlock(goal), keptGroups - 1);
  for (let k = 0; k < keptGroups; k++) {
    const g = (g0 + k) % keptGroups;
    const first = v.groupFirstBlock(g);
    const hi = Math.min(v.groupBlocks(g), end - first);
    const lo = hole && v.groupOfBlock(hole[0]) === g ? hole[0] + hole[1] - first : 0;
    if (v.groups.get(g).freeBlocks < n || hi - lo < n) continue;
    const run = scanFree(bitmap(g), lo, hi, n);
    if (run && run.len >= n) return first + run.start;
  }
  return undefined;
}

function noRoom(v: Volume, n: number): Ext4Error {
  return new Ext4Error(
    'NO_SPACE',
    `${v.name}: no run of ${n} free blocks below the new end for a group's table (a table moves whole); nothing was written`,
  );
}

/** One run of `n` free blocks below `end` (see findRun), taken from the allocator. */
function allocRun(v: Volume, goal: number, n: number, end: number, keptGroups: number, hole: Hole): number {
  const at = findRun(v, (g) => v.balloc.bitmap(g), goal, n, end, keptGroups, hole);
  if (at === undefined) throw noRoom(v, n);
  const got = v.balloc.alloc(at, n);
  if (got.length !== 1 || got[0]!.start !== at || got[0]!.len !== n)
    throw new Error(`resize: the allocator did not take blocks ${at}+${n}`);
  return at;
}

/** The tables of group `g` that must move, with their lengths. */
function movingTables(v: Volume, g: number, end: number, hole: Hole, itb: number): [TableField, number][] {
  const d = v.groups.get(g);
  return TABLES.map(([f, n]): [TableField, number] => [f, n === 1 ? 1 : itb]).filter(
    ([f, n]) => outside(d[f], n, end, hole).length,
  );
}

/** Where a group's tables are moved to: the first group of its flex group (where mkfs packs them). */
function tableGoal(v: Volume, g: number): number {
  return v.groupFirstBlock(g - (g % 2 ** (v.sb.s_log_groups_per_flex || 0)));
}

/**
 * Refuses (NO_SPACE, before anything is written) a shrink whose table moves would not all find room:
 * the runs moveTables takes, found in the same order on copies of the bitmaps.
 */
export function checkTablesMovable(v: Volume, end: number, keptGroups: number, hole?: Hole): void {
  const itb = inodeTableBlocks(v.r.geo);
  const copies = new Map<number, Uint8Array>();
  const bitmap = (g: number) => {
    let b = copies.get(g);
    if (!b) copies.set(g, (b = v.balloc.bitmap(g).slice()));
    return b;
  };
  for (const g of tablesPastEnd(v, end, keptGroups, hole))
    for (const [, n] of movingTables(v, g, end, hole, itb)) {
      const at = findRun(v, bitmap, tableGoal(v, g), n, end, keptGroups, hole);
      if (at === undefined) throw noRoom(v, n);
      const first = v.groupFirstBlock(v.groupOfBlock(at));
      setBitRange(bitmap(v.groupOfBlock(at)), at - first, at - first + n);
    }
}

/**
 * Moves the tables of every kept group that has one past `end` (or in `hole`: the room a moved
 * sparse_super2 backup takes); returns the groups, committed.
 */
export function moveTables(
  v: Volume,
  end: number,
  keptGroups: number,
  now: { sec: number; nsec: number },
  hole?: Hole,
): number[] {
  const groups = tablesPastEnd(v, end, keptGroups, hole);
  const itb = inodeTableBlocks(v.r.geo);
  const csum = v.hasGroupCsum;
  for (const g of groups) {
    v.runOp(() => {
      const old = v.groups.get(g);
      const moving = movingTables(v, g, end, hole, itb);
      // Groups whose computed bitmap changes once the old blocks are freed: initialized now, while the
      // descriptors still say where everything lies (the new blocks' groups are, by the allocator).
      for (const [f, n] of moving)
        for (let b = old[f]; b < old[f] + n; b = v.groupFirstBlock(v.groupOfBlock(b) + 1))
          if (v.groups.get(v.groupOfBlock(b)).flags & BG_BLOCK_UNINIT && csum)
            v.balloc.bitmapForWrite(v.groupOfBlock(b));
      const goal = tableGoal(v, g);
      for (const [f, n] of moving) {
        const to = allocRun(v, goal, n, end, keptGroups, hole);
        const d = v.groups.copy(g);
        const from = d[f];
        if (f === 'inodeTable') {
          const used = !csum
            ? itb
            : d.flags & BG_INODE_UNINIT
              ? 0
              : Math.ceil(((v.ipg - d.itableUnused) * v.inodeSize) / v.bs);
          if (used) v.tx.addData(to, v.tx.keepData(v.tx.readData(from, used)));
          if (used < itb) d.flags &= ~BG_INODE_ZEROED;
        } else if (f === 'blockBitmap') {
          // An uninitialized group's bitmap is computed, not read: nothing to copy.
          if (!(d.flags & BG_BLOCK_UNINIT && csum)) v.tx.put(to, v.tx.read(from).slice());
        } else if (!(d.flags & BG_INODE_UNINIT && csum)) v.tx.put(to, v.tx.read(from).slice());
        d[f] = to;
        v.groups.set(g, d);
        // The bitmap checksums (unchanged by the move) are refreshed at commit from the new blocks.
        v.groups.touch(g);
        v.freeLater(from, n);
      }
    });
    v.checkpoint();
  }
  if (v.changed) v.commit(now);
  return groups;
}
