/**
 * Block maps, read side: a file's logical-to-physical mapping from its extent tree (decoded with the
 * ext4/extent.ts codec) or its classic direct/indirect map, as sorted runs plus the blocks of the map
 * itself. Every pointer is bounds-checked, trees are depth-limited and loop-checked.
 */
import { Ext4Error } from '../core/errors.js';
import { u32 } from '../core/bytes.js';
import { FL_EXTENTS, type Inode } from '../ext4/inode.js';
import {
  decodeExtentHeader,
  decodeExtent,
  decodeExtentIndex,
  EXTENT_MAGIC,
  EXTENT_HEADER_SIZE,
  EXTENT_ENTRY_SIZE,
  ROOT_MAX_ENTRIES,
  extentBlockChecksumOk,
  blockMaxEntries,
} from '../ext4/extent.js';
import { allocatedBytes, hasBlockMap, inodeSeed } from './inodes.js';
import type { Ext4Volume } from './volume.js';

/** Deepest extent tree read; the kernel writes at most 5 levels but e2fsck accepts deeper ones. */
const MAX_READ_DEPTH = 32;

/** A mapped run of a file: logical blocks [lblk, lblk+len) at physical pblk; uninit reads as zeros. */
export interface BlockRun {
  lblk: number;
  pblk: number;
  len: number;
  uninit: boolean;
}

/** Everything a file's block map holds: its data runs and the blocks of the map itself. */
export interface FileMapping {
  runs: BlockRun[];
  /** Extent tree blocks (index and leaf nodes) or indirect blocks. */
  metaBlocks: number[];
}

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

/** The physical block of logical block `lblk` of a file (undefined in a hole). */
export function physicalBlock(runs: readonly BlockRun[], lblk: number): number | undefined {
  let lo = 0;
  let hi = runs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (lblk < r.lblk) hi = mid - 1;
    else if (lblk >= r.lblk + r.len) lo = mid + 1;
    else return r.pblk + (lblk - r.lblk);
  }
  return undefined;
}

function extentMapping(v: Ext4Volume, ino: number, i: Inode, strict: boolean): FileMapping {
  const runs: BlockRun[] = [];
  const metaBlocks: number[] = [];
  const seen = new Set<number>();
  const walk = (node: Uint8Array, expectDepth: number | undefined, capacity: number, start?: number) => {
    const h = decodeExtentHeader(node, 0);
    if (h.magic !== EXTENT_MAGIC)
      throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent header magic`, { inode: ino });
    if (h.entries > h.max || h.max > capacity)
      throw new Ext4Error('CORRUPT', `inode ${ino}: extent node claims ${h.entries}/${h.max} entries`, {
        inode: ino,
      });
    if (h.depth > MAX_READ_DEPTH || (expectDepth !== undefined && h.depth !== expectDepth))
      throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent tree depth ${h.depth}`, { inode: ino });
    let prev = -1;
    for (let k = 0; k < h.entries; k++) {
      const off = EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE;
      if (h.depth === 0) {
        const e = decodeExtent(node, off);
        if (strict) prev = checkOrder(ino, e.lblk, k, start, prev);
        if (e.len === 0) {
          if (strict) throw corrupt(ino, `zero-length extent at logical block ${e.lblk}`);
          continue;
        }
        if (e.pblk + e.len > v.blocksCount || e.pblk < v.sb.s_first_data_block)
          throw new Ext4Error(
            'CORRUPT',
            `inode ${ino}: extent maps blocks ${e.pblk}..${e.pblk + e.len - 1} outside the file system`,
            { inode: ino, block: e.pblk },
          );
        runs.push({ lblk: e.lblk, pblk: e.pblk, len: e.len, uninit: !!e.uninit });
      } else {
        const x = decodeExtentIndex(node, off);
        if (strict) prev = checkOrder(ino, x.lblk, k, start, prev);
        if (seen.has(x.leaf))
          throw new Ext4Error('CORRUPT', `inode ${ino}: extent tree loop at block ${x.leaf}`, {
            inode: ino,
            block: x.leaf,
          });
        seen.add(x.leaf);
        if (seen.size > 1_000_000)
          throw new Ext4Error('CORRUPT', `inode ${ino}: extent tree too large`, { inode: ino });
        const child = v.readBlocks(x.leaf);
        if (v.verify && v.csum && !v.cache.isTrusted(x.leaf)) {
          if (!extentBlockChecksumOk(child, inodeSeed(v, ino, i.generation)))
            throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extent block ${x.leaf} checksum mismatch`, {
              inode: ino,
              block: x.leaf,
            });
          v.cache.markVerified(x.leaf);
        }
        metaBlocks.push(x.leaf);
        walk(child, h.depth - 1, blockMaxEntries(v.blockSize), x.lblk);
      }
    }
  };
  walk(i.block, undefined, ROOT_MAX_ENTRIES);
  runs.sort((a, b) => a.lblk - b.lblk);
  for (let k = 1; k < runs.length; k++)
    if (runs[k]!.lblk < runs[k - 1]!.lblk + runs[k - 1]!.len)
      throw new Ext4Error('CORRUPT', `inode ${ino}: overlapping extents`, { inode: ino });
  return { runs, metaBlocks };
}

function corrupt(ino: number, what: string): Ext4Error {
  return new Ext4Error('CORRUPT', `inode ${ino}: ${what}`, { inode: ino });
}

/** Entries of a node must start where the index pointing at it says and ascend; returns `lblk`. */
function checkOrder(ino: number, lblk: number, k: number, start: number | undefined, prev: number): number {
  if (k === 0 && start !== undefined && lblk !== start)
    throw corrupt(ino, `extent node starts at logical block ${lblk}, its index says ${start}`);
  if (lblk <= prev && k > 0) throw corrupt(ino, `extent entries out of order at logical block ${lblk}`);
  return lblk;
}

/** Classic block map: 12 direct pointers, then single, double and triple indirect blocks. */
function indirectMapping(v: Ext4Volume, ino: number, i: Inode, all: boolean): FileMapping {
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
  for (let k = 0; k < 12; k++) push(k, u32(i.block, k * 4));
  indirect(u32(i.block, 48), 1, 12);
  indirect(u32(i.block, 52), 2, 12 + apb);
  indirect(u32(i.block, 56), 3, 12 + apb + apb * apb);
  return { runs, metaBlocks };
}
