/**
 * Classic block maps, both ways (ext2/ext3 files on file systems without extents): 12 direct pointers
 * in i_block, then a single, a double and a triple indirect block. Read into runs (bounded by what the
 * inode says it holds), built pointer by pointer, and an indirect block moved elsewhere.
 */
import { Ext4Error } from '../core/errors.js';
import { u32, put32 } from '../core/bytes.js';
import { FL_EXTENTS, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { allocatedBytes } from './inodes.js';
import type { BlockRun, FileMapping, MapRun } from './runs.js';
import type { Ext4Volume } from './volume.js';
import type { WritableVolume } from './writable.js';

/** i_block slots of the single, double and triple indirect blocks. */
const IND_SLOT = 12;

/**
 * The runs and indirect blocks of a block-mapped file. With `all` false, pointers past the file's size
 * are ignored (what a reader needs); with `all` true every mapped block is listed (freeing a file).
 */
export function indirectMapping(v: Ext4Volume, ino: number, i: Inode, all: boolean): FileMapping {
  const runs: BlockRun[] = [];
  const metaBlocks: number[] = [];
  const apb = v.blockSize / 4;
  const maxLblk = all ? Infinity : Math.ceil(i.size / v.blockSize);
  // A map can need no more blocks than the inode says it holds (plus slack for the map itself).
  const maxVisits = all
    ? Math.ceil(allocatedBytes(v, i) / v.blockSize) + 3
    : Math.ceil(i.size / v.blockSize) / apb + 3 * apb + 3;
  const first = v.sb.s_first_data_block;
  const push = (lblk: number, pblk: number) => {
    if (pblk === 0 || lblk >= maxLblk) return;
    if (pblk >= v.blocksCount || pblk < first)
      throw new Ext4Error('CORRUPT', `inode ${ino}: block pointer ${pblk} outside the file system`, {
        inode: ino,
        block: pblk,
      });
    const last = runs[runs.length - 1];
    if (last && last.lblk + last.len === lblk && last.pblk + last.len === pblk) last.len++;
    else runs.push({ lblk, pblk, len: 1, uninit: false });
  };
  let visited = 0;
  const indirect = (blk: number, level: number, base: number) => {
    if (blk === 0 || base >= maxLblk) return;
    if (++visited > maxVisits)
      throw new Ext4Error('CORRUPT', `inode ${ino}: indirect block map larger than the file`, { inode: ino });
    if (blk >= v.blocksCount || blk < first)
      throw new Ext4Error('CORRUPT', `inode ${ino}: indirect block ${blk} outside the file system`, {
        inode: ino,
        block: blk,
      });
    metaBlocks.push(blk);
    const b = v.readBlocks(blk);
    const span = apb ** (level - 1);
    for (let k = 0; k < apb; k++) {
      const p = u32(b, k * 4);
      if (level === 1) push(base + k, p);
      else indirect(p, level - 1, base + k * span);
    }
  };
  for (let k = 0; k < IND_SLOT; k++) push(k, u32(i.block, k * 4));
  indirect(u32(i.block, IND_SLOT * 4), 1, IND_SLOT);
  indirect(u32(i.block, (IND_SLOT + 1) * 4), 2, IND_SLOT + apb);
  indirect(u32(i.block, (IND_SLOT + 2) * 4), 3, IND_SLOT + apb + apb * apb);
  return { runs, metaBlocks };
}

/** Builds a fresh classic map for `runs` into `inode`'s i_block. Returns how many indirect blocks it took. */
export function buildIndirect(v: WritableVolume, ino: number, inode: Inode, runs: readonly MapRun[]): number {
  inode.flags &= ~FL_EXTENTS;
  inode.block = new Uint8Array(I_BLOCK_SIZE);
  let metaBlocks = 0;
  for (const r of runs) {
    if (r.uninit)
      throw new Ext4Error('CORRUPT', `inode ${ino}: uninitialized extents in a block-mapped file`, { inode: ino });
    for (let k = 0; k < r.len; k++) metaBlocks += setBlockPointer(v, inode, r.lblk + k, r.pblk + k, r.pblk + k);
  }
  return metaBlocks;
}

/**
 * Sets logical block `lblk` of a block-mapped inode to `pblk`, allocating the indirect blocks on its
 * path when missing (near `goal`). Returns how many indirect blocks were allocated.
 */
export function setBlockPointer(v: WritableVolume, inode: Inode, lblk: number, pblk: number, goal: number): number {
  const apb = v.bs / 4;
  if (pblk >= 2 ** 32) throw new Ext4Error('TOO_LARGE', 'block maps hold 32-bit block numbers only');
  if (lblk < IND_SLOT) {
    put32(inode.block, lblk * 4, pblk);
    return 0;
  }
  // The path: the i_block slot (12, 13 or 14) and the index in each indirect level below it.
  let rest = lblk - IND_SLOT;
  let slot = IND_SLOT;
  let levels = 1;
  if (rest >= apb) {
    rest -= apb;
    slot = IND_SLOT + 1;
    levels = 2;
    if (rest >= apb * apb) {
      rest -= apb * apb;
      slot = IND_SLOT + 2;
      levels = 3;
      if (rest >= apb * apb * apb) throw new Ext4Error('TOO_LARGE', 'file too large for a block map');
    }
  }
  let allocated = 0;
  const child = (get: () => number, set: (b: number) => void): number => {
    let b = get();
    if (!b) {
      b = v.allocBlock(goal);
      v.tx.put(b, new Uint8Array(v.bs));
      set(b);
      allocated++;
    }
    return b;
  };
  let blk = child(
    () => u32(inode.block, slot * 4),
    (b) => put32(inode.block, slot * 4, b),
  );
  for (let level = levels; level >= 1; level--) {
    const span = apb ** (level - 1);
    const idx = Math.floor(rest / span);
    rest %= span;
    const cur = blk;
    if (level === 1) {
      put32(v.tx.modify(cur), idx * 4, pblk);
      break;
    }
    blk = child(
      () => u32(v.r.readBlocks(cur), idx * 4),
      (b) => put32(v.tx.modify(cur), idx * 4, b),
    );
  }
  return allocated;
}

/**
 * Moves indirect block `from` of the file to block `to` (allocated by the caller): its pointers are
 * copied and the pointer to it changed, in i_block or in the indirect block above. `from` is freed at
 * commit. False when nothing points at `from`.
 */
export function moveIndirectBlock(v: WritableVolume, inode: Inode, from: number, to: number): boolean {
  const apb = v.bs / 4;
  const moved = () => {
    v.tx.put(to, v.r.readBlocks(from).slice());
    v.freeLater(from, 1);
    return true;
  };
  // Depth-first below a block of `level` levels (1: it points at data).
  const find = (blk: number, level: number): boolean => {
    if (level === 1) return false;
    const b = v.r.readBlocks(blk);
    for (let k = 0; k < apb; k++) {
      const p = u32(b, k * 4);
      if (!p) continue;
      if (p === from) {
        put32(v.tx.modify(blk), k * 4, to);
        return moved();
      }
      if (find(p, level - 1)) return true;
    }
    return false;
  };
  for (let level = 1; level <= 3; level++) {
    const off = (IND_SLOT + level - 1) * 4;
    const top = u32(inode.block, off);
    if (!top) continue;
    if (top === from) {
      put32(inode.block, off, to);
      return moved();
    }
    if (find(top, level)) return true;
  }
  return false;
}
