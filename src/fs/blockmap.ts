/**
 * Block maps, the front over both kinds (fs/extents.ts: extent trees; fs/indirect.ts: classic maps): a
 * file's mapping read as runs, a map built for runs, one block appended, a map cut short or freed, and
 * map blocks or data blocks moved elsewhere (what resize does past a new end). Which kind a file has is
 * decided here.
 */
import { isZero } from '../core/bytes.js';
import { INCOMPAT } from '../ext4/features.js';
import { FL_EXTENTS, FL_INLINE_DATA, type Inode } from '../ext4/inode.js';
import { hasBlockMap } from './inodes.js';
import { extentMapping, buildExtents, appendExtent, moveExtentBlock } from './extents.js';
import { indirectMapping, buildIndirect, setBlockPointer, moveIndirectBlock } from './indirect.js';
import type { BlockRun, FileMapping, MapRun } from './runs.js';
import type { Ext4Volume } from './volume.js';
import type { WritableVolume } from './writable.js';

export { physicalBlock } from './runs.js';
export type { BlockRun, FileMapping, MapRun } from './runs.js';

/**
 * The whole mapping of a file: data runs sorted by logical block and the blocks of the map itself.
 * With `all` false, block-map pointers past the file's size are ignored (what a reader needs); with
 * `all` true every mapped block is listed (what freeing a file needs). `strict` also refuses what the
 * kernel and e2fsck refuse but a reader can pass over: zero-length extents, entries out of order in a
 * node, an index whose logical start is not its child's.
 */
export function mapping(v: Ext4Volume, ino: number, i: Inode, all: boolean, strict = false): FileMapping {
  if (!hasBlockMap(i)) return { runs: [], metaBlocks: [] };
  return i.flags & FL_EXTENTS ? extentMapping(v, ino, i, strict) : indirectMapping(v, ino, i, all);
}

/** The block map of a file, sorted by logical block, bounded by the file's size. */
export function blockRuns(v: Ext4Volume, ino: number, i: Inode): BlockRun[] {
  return mapping(v, ino, i, false).runs;
}

// ---- writing ----

/** Whether a new map of this inode is an extent tree (the feature is on) or a classic block map. */
export function usesExtents(v: WritableVolume, inode: Inode): boolean {
  if (inode.flags & FL_EXTENTS) return true;
  return (v.sb.s_feature_incompat & INCOMPAT.extent) !== 0 && !hasBlockPointers(inode);
}

function hasBlockPointers(i: Inode): boolean {
  return !(i.flags & (FL_EXTENTS | FL_INLINE_DATA)) && !isZero(i.block);
}

/**
 * Builds a fresh map for `runs` (sorted, non-overlapping) into `inode` (i_block and the extents flag).
 * Map blocks are allocated near `goal` and written. Returns how many map blocks it took.
 */
export function buildMap(
  v: WritableVolume,
  ino: number,
  inode: Inode,
  runs: readonly MapRun[],
  goal: number,
  extents: boolean,
): number {
  inode.flags &= ~FL_INLINE_DATA;
  return extents ? buildExtents(v, ino, inode, runs, goal) : buildIndirect(v, ino, inode, runs);
}

/** Frees every block of a file's map (data and map blocks; at commit). */
export function freeMap(v: WritableVolume, ino: number, inode: Inode): void {
  const m = mapping(v.r, ino, inode, true);
  for (const r of m.runs) v.freeLater(r.pblk, r.len);
  for (const b of m.metaBlocks) v.freeLater(b, 1);
}

/**
 * Maps logical block `lblk` (just past the end) to `pblk`, changing the map in place where it can.
 * Returns the number of map blocks added (may be negative after an extent tree is rebuilt).
 */
export function appendBlock(v: WritableVolume, ino: number, inode: Inode, lblk: number, pblk: number): number {
  if (!(inode.flags & FL_EXTENTS)) return setBlockPointer(v, inode, lblk, pblk, pblk);
  return appendExtent(v, ino, inode, lblk, pblk);
}

/**
 * Cuts a file's map at logical block `keep`: blocks from there on are freed (at commit) and, when any
 * were, the map is built again for what stays. Returns the runs kept and the map blocks they take.
 */
export function cutMap(
  v: WritableVolume,
  ino: number,
  inode: Inode,
  keep: number,
): { runs: MapRun[]; mapBlocks: number } {
  const m = mapping(v.r, ino, inode, true);
  const runs: MapRun[] = [];
  let dropped = false;
  for (const r of m.runs) {
    if (r.lblk >= keep) {
      v.freeLater(r.pblk, r.len);
      dropped = true;
    } else if (r.lblk + r.len > keep) {
      const n = keep - r.lblk;
      runs.push({ ...r, len: n });
      v.freeLater(r.pblk + n, r.len - n);
      dropped = true;
    } else runs.push(r);
  }
  if (!dropped) return { runs, mapBlocks: m.metaBlocks.length };
  for (const b of m.metaBlocks) v.freeLater(b, 1);
  const goal = runs.length ? runs[runs.length - 1]!.pblk : v.inodeGoal(ino);
  return { runs, mapBlocks: buildMap(v, ino, inode, runs, goal, usesExtents(v, inode)) };
}

// ---- moving blocks ----

/**
 * Moves one block of the map itself (an extent tree node or an indirect block) to `to`, a block the
 * caller allocated: its content is copied, the pointer to it changed and `from` freed at commit. The
 * caller writes `inode` (its i_block may have changed). False when `from` is not a block of the map.
 */
export function moveMapBlock(v: WritableVolume, ino: number, inode: Inode, from: number, to: number): boolean {
  if (!hasBlockMap(inode)) return false;
  return inode.flags & FL_EXTENTS ? moveExtentBlock(v, ino, inode, from, to) : moveIndirectBlock(v, inode, from, to);
}

/**
 * Points a file's data blocks elsewhere: every mapped block `b` is now at `to(b)` (the caller has copied
 * the data there); blocks that moved are freed at commit. The map is built again (its old blocks freed,
 * new ones allocated near the first data block) and i_blocks follows; the caller writes `inode`.
 */
export function remapData(v: WritableVolume, ino: number, inode: Inode, to: (pblk: number) => number): void {
  if (!hasBlockMap(inode)) return;
  const m = mapping(v.r, ino, inode, true);
  const runs: MapRun[] = [];
  // Moved blocks are freed in runs: one call per stretch, not per block.
  let freeStart = 0;
  let freeLen = 0;
  const free = (b: number) => {
    if (freeLen && freeStart + freeLen === b) return void freeLen++;
    if (freeLen) v.freeLater(freeStart, freeLen);
    freeStart = b;
    freeLen = 1;
  };
  for (const r of m.runs)
    for (let k = 0; k < r.len; k++) {
      const p = to(r.pblk + k);
      if (p !== r.pblk + k) free(r.pblk + k);
      const last = runs[runs.length - 1];
      if (last && last.uninit === r.uninit && last.lblk + last.len === r.lblk + k && last.pblk + last.len === p)
        last.len++;
      else runs.push({ lblk: r.lblk + k, pblk: p, len: 1, uninit: r.uninit });
    }
  if (freeLen) v.freeLater(freeStart, freeLen);
  for (const b of m.metaBlocks) v.freeLater(b, 1);
  const goal = runs.length ? runs[0]!.pblk : v.inodeGoal(ino);
  const mapBlocks = buildMap(v, ino, inode, runs, goal, (inode.flags & FL_EXTENTS) !== 0);
  v.addBlocks512(inode, (mapBlocks - m.metaBlocks.length) * (v.bs / 512));
}
