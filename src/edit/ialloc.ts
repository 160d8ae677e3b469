/**
 * The inode allocator of an open edit, over the on-disk inode bitmaps (an uninitialized group's bitmap
 * is all free, written out the first time the group is allocated from). A new inode goes in its
 * parent's group when it has room; directories directly under the root are spread over the flex groups
 * with the most free inodes and blocks (the kernel's Orlov allocator).
 */
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT } from '../ext4/features.js';
import { BG_BLOCK_UNINIT, BG_INODE_UNINIT } from '../ext4/group-desc.js';
import { setBit, clearBit, setBitRange, testBit } from '../ext4/bitmap.js';
import { ROOT_INO } from '../ext4/inode.js';
import type { EditVolume } from './groups.js';
import { firstFree, scanFree, type BlockAllocator } from './balloc.js';

export class InodeAllocator {
  /** Per group: no free inode before this bit; found lazily, forgotten when one is freed. */
  private readonly hint = new Map<number, number>();

  constructor(
    private readonly v: EditVolume,
    private readonly blocks: BlockAllocator,
  ) {
    v.tx.onRollback(() => this.hint.clear());
  }

  /** Allocates an inode: in the goal group when it has room, else the next group that has. */
  alloc(parentIno: number, isDir: boolean): number {
    const v = this.v;
    if (v.freeInodes <= 0) throw new Ext4Error('NO_SPACE', `${v.name}: no free inodes`);
    let goal = v.groupOfInode(parentIno);
    if (isDir && parentIno === ROOT_INO) goal = this.spreadGroup();
    return this.allocIn(goal, isDir, v.groupCount);
  }

  /**
   * Allocates an inode in the first `groups` groups only (a shrink fills the groups it keeps): in the
   * goal group when it has room, else the next of them that has.
   */
  allocIn(goal: number, isDir: boolean, groups: number): number {
    const v = this.v;
    for (let k = 0; k < groups; k++) {
      const g = (goal + k) % groups;
      const gd = v.r.groupDesc(g);
      if (gd.freeInodes === 0) continue;
      const ino = this.take(g, isDir);
      if (ino !== undefined) return ino;
    }
    throw new Ext4Error('NO_SPACE', `${v.name}: no free inodes`);
  }

  /** The group to put a new top-level directory in: the emptiest flex group with room, by inodes and blocks. */
  private spreadGroup(): number {
    const v = this.v;
    const flex = v.sb.s_feature_incompat & INCOMPAT.flex_bg ? 1 << v.sb.s_log_groups_per_flex : 1;
    const flexCount = Math.ceil(v.groupCount / flex);
    // Group 0 first on ties, which keeps small images compact.
    let best = 0;
    let bestScore = -1;
    const avgInodes = v.freeInodes / flexCount;
    const avgBlocks = v.freeBlocks / flexCount;
    for (let f = 0; f < flexCount && flexCount > 1; f++) {
      let inodes = 0;
      let blocks = 0;
      let dirs = 0;
      for (let g = f * flex; g < Math.min(v.groupCount, (f + 1) * flex); g++) {
        const gd = v.r.groupDesc(g);
        inodes += gd.freeInodes;
        blocks += gd.freeBlocks;
        dirs += gd.usedDirs;
      }
      if (inodes < avgInodes || blocks < avgBlocks) continue;
      const score = inodes + blocks / 64 - dirs * 16;
      if (score > bestScore) {
        bestScore = score;
        best = f * flex;
      }
    }
    return best;
  }

  /** The inode bitmap of group `g`, initialized on disk first when the group was uninitialized. */
  private bitmapForWrite(g: number): Uint8Array {
    const v = this.v;
    v.guard.group(g);
    let gd = v.groups.get(g);
    if (gd.flags & BG_INODE_UNINIT && v.hasGroupCsum) {
      gd = v.groups.copy(g);
      const init = new Uint8Array(v.bs);
      setBitRange(init, v.ipg, v.bs * 8);
      v.tx.put(gd.inodeBitmap, init);
      gd.flags &= ~BG_INODE_UNINIT;
      v.groups.set(g, gd);
    }
    v.groups.touch(g);
    return v.tx.modify(gd.inodeBitmap);
  }

  private take(g: number, isDir: boolean): number | undefined {
    const v = this.v;
    // Records past the used part of a group's table were never initialized: nothing to read there.
    const before = v.groups.get(g);
    const initialized = v.hasGroupCsum ? (before.flags & BG_INODE_UNINIT ? 0 : v.ipg - before.itableUnused) : v.ipg;
    const bm = this.bitmapForWrite(g);
    const first = Math.max(g === 0 ? v.sb.s_first_ino - 1 : 0, firstFree(this.hint, g, bm, v.ipg));
    const run = scanFree(bm, first, v.ipg, 1);
    if (!run) throw new Ext4Error('CORRUPT', `group ${g} counts free inodes but its bitmap has none`, { group: g });
    const idx = run.start;
    if (idx < initialized) v.guard.unusedInode(g * v.ipg + idx + 1);
    else this.zeroTableBlock(g, idx, initialized, bm);
    setBit(bm, idx);
    // The kernel also sets up the block bitmap of a group it starts using (ext4_new_inode).
    if (v.r.groupDesc(g).flags & BG_BLOCK_UNINIT && v.hasGroupCsum) this.blocks.bitmapForWrite(g);
    const gd = v.groups.copy(g);
    gd.freeInodes--;
    if (isDir) gd.usedDirs++;
    if (v.hasGroupCsum && idx >= v.ipg - gd.itableUnused) gd.itableUnused = v.ipg - idx - 1;
    v.groups.set(g, gd);
    v.tx.saveFields(v.counts);
    v.counts.freeInodes--;
    return g * v.ipg + idx + 1;
  }

  /**
   * A record in the never-initialized part of a group's table whose whole table block lies there: the
   * block starts as zeros, not read. Its bytes mean nothing (mkfs may have left them unwritten, and the
   * host file may hold a hole there whose first read cost more than the rest of an edit), and the kernel
   * does the same when every other record of the block is free (ext4_get_inode_loc). A bitmap that
   * calls one of them in use there (damage) keeps the block as it is on disk.
   */
  private zeroTableBlock(g: number, idx: number, initialized: number, bm: Uint8Array): void {
    const v = this.v;
    const perBlock = v.bs / v.r.inodeSize;
    const start = idx - (idx % perBlock);
    if (start < initialized) return;
    for (let k = start; k < start + perBlock; k++) if (testBit(bm, k)) return;
    const { block } = v.r.inodeLocation(g * v.ipg + idx + 1);
    if (!v.tx.has(block)) v.tx.put(block, new Uint8Array(v.bs));
  }

  /** Releases inode `ino` (its record must already be cleared by the caller). */
  free(ino: number, isDir: boolean): void {
    const v = this.v;
    const g = v.groupOfInode(ino);
    const idx = (ino - 1) % v.ipg;
    const bm = this.bitmapForWrite(g);
    if (!testBit(bm, idx)) throw new Ext4Error('CORRUPT', `inode ${ino} is freed but was not in use`, { inode: ino });
    clearBit(bm, idx);
    this.hint.delete(g);
    const gd = v.groups.copy(g);
    gd.freeInodes++;
    if (isDir) gd.usedDirs = Math.max(0, gd.usedDirs - 1);
    v.groups.set(g, gd);
    v.tx.saveFields(v.counts);
    v.counts.freeInodes++;
  }

  /** Forgets the hints (the edit was dropped). */
  discard(): void {
    this.hint.clear();
  }
}
