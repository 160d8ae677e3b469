/**
 * Extent trees, both ways (kernel doc: ifork.rst; the node formats are the ext4/extent.ts codec): the
 * tree read into runs (every pointer bounds-checked, depth-limited, loop-checked), a tree built for
 * runs, one block appended in place at the right edge, and a tree block moved elsewhere.
 */
import { Ext4Error } from '../core/errors.js';
import {
  decodeExtentHeader,
  encodeExtentHeader,
  decodeExtent,
  encodeExtent,
  decodeExtentIndex,
  encodeExtentIndex,
  buildExtentTree,
  extentTreeBlockCount,
  runsToExtents,
  sealExtentBlock,
  EXTENT_MAGIC,
  EXTENT_HEADER_SIZE,
  EXTENT_ENTRY_SIZE,
  MAX_INIT_EXTENT_LEN,
  ROOT_MAX_ENTRIES,
  extentBlockChecksumOk,
  blockMaxEntries,
} from '../ext4/extent.js';
import { FL_EXTENTS, type Inode } from '../ext4/inode.js';
import { inodeSeed } from './inodes.js';
import type { BlockRun, FileMapping, MapRun } from './runs.js';
import type { Ext4Volume } from './volume.js';
import type { WritableVolume } from './writable.js';

/** Deepest extent tree read; the kernel writes at most 5 levels but e2fsck accepts deeper ones. */
const MAX_READ_DEPTH = 32;

function corrupt(ino: number, what: string): Ext4Error {
  return new Ext4Error('CORRUPT', `inode ${ino}: ${what}`, { inode: ino });
}

/** The runs and tree blocks of an extent-mapped file (`strict`: see blockmap.ts's mapping). */
export function extentMapping(v: Ext4Volume, ino: number, i: Inode, strict: boolean): FileMapping {
  const runs: BlockRun[] = [];
  const metaBlocks: number[] = [];
  // Only trees with index nodes need the loop check: most files' extents all sit in i_block.
  let seen: Set<number> | undefined;
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
        seen ??= new Set<number>();
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

/** Entries of a node must start where the index pointing at it says and ascend; returns `lblk`. */
function checkOrder(ino: number, lblk: number, k: number, start: number | undefined, prev: number): number {
  if (k === 0 && start !== undefined && lblk !== start)
    throw corrupt(ino, `extent node starts at logical block ${lblk}, its index says ${start}`);
  if (lblk <= prev && k > 0) throw corrupt(ino, `extent entries out of order at logical block ${lblk}`);
  return lblk;
}

function seedOf(v: WritableVolume, ino: number, inode: Inode): number | undefined {
  return v.csum ? inodeSeed(v.r, ino, inode.generation) : undefined;
}

/**
 * Builds a fresh extent tree for `runs` (sorted, non-overlapping) into `inode`'s i_block; its blocks are
 * allocated near `goal` and written. Returns how many tree blocks it took.
 */
export function buildExtents(
  v: WritableVolume,
  ino: number,
  inode: Inode,
  runs: readonly MapRun[],
  goal: number,
): number {
  const ex = runsToExtents(runs);
  const lastLblk = ex.length ? ex[ex.length - 1]!.lblk + ex[ex.length - 1]!.len : 0;
  if (lastLblk > 2 ** 32)
    throw new Ext4Error('TOO_LARGE', `inode ${ino}: file too large for an extent tree`, { inode: ino });
  const count = extentTreeBlockCount(ex.length, v.bs);
  const tree: number[] = [];
  for (const r of v.allocBlocks(goal, count)) for (let k = 0; k < r.len; k++) tree.push(r.start + k);
  const built = buildExtentTree(ex, v.bs, tree, seedOf(v, ino, inode));
  for (const b of built.blocks) v.tx.put(b.block, b.data);
  inode.block = built.iBlock;
  inode.flags |= FL_EXTENTS;
  return count;
}

/**
 * Maps logical block `lblk` (past the last extent) to `pblk` in place where the right edge has room:
 * the last extent grows, or a new extent goes into the last leaf. A full edge rebuilds the whole tree.
 * Returns the number of tree blocks added (negative when a rebuild needs fewer).
 */
export function appendExtent(v: WritableVolume, ino: number, inode: Inode, lblk: number, pblk: number): number {
  const seed = seedOf(v, ino, inode);
  let node = inode.block;
  let nodeBlock = -1;
  for (let guard = 0; guard < 8; guard++) {
    const h = decodeExtentHeader(node, 0);
    if (h.magic !== EXTENT_MAGIC) throw corrupt(ino, 'bad extent header');
    if (h.depth === 0) {
      const lastOff = EXTENT_HEADER_SIZE + (h.entries - 1) * EXTENT_ENTRY_SIZE;
      const last = h.entries ? decodeExtent(node, lastOff) : undefined;
      const buf = nodeBlock < 0 ? node : v.tx.modify(nodeBlock);
      if (
        last &&
        !last.uninit &&
        last.lblk + last.len === lblk &&
        last.pblk + last.len === pblk &&
        last.len < MAX_INIT_EXTENT_LEN
      ) {
        encodeExtent(buf, lastOff, { ...last, len: last.len + 1 });
      } else if (h.entries < h.max && (!last || last.lblk + last.len <= lblk)) {
        encodeExtent(buf, EXTENT_HEADER_SIZE + h.entries * EXTENT_ENTRY_SIZE, { lblk, pblk, len: 1 });
        encodeExtentHeader(buf, 0, { ...h, entries: h.entries + 1 });
      } else break;
      if (nodeBlock >= 0 && seed !== undefined) sealExtentBlock(buf, seed);
      return 0;
    }
    if (!h.entries) break;
    const idx = decodeExtentIndex(node, EXTENT_HEADER_SIZE + (h.entries - 1) * EXTENT_ENTRY_SIZE);
    nodeBlock = idx.leaf;
    node = v.r.readBlocks(idx.leaf);
  }
  // No room on the right edge: the whole tree is built again with the new block.
  const m = extentMapping(v.r, ino, inode, false);
  for (const b of m.metaBlocks) v.freeLater(b, 1);
  const added = buildExtents(v, ino, inode, [...m.runs, { lblk, pblk, len: 1 }], pblk);
  return added - m.metaBlocks.length;
}

/**
 * Moves tree block `from` of the file to block `to` (allocated by the caller): the node is copied (its
 * checksum covers the inode, not the block number) and the index entry above it repointed, in i_block
 * or in a parent block. `from` is freed at commit. False when no index entry points at `from`.
 */
export function moveExtentBlock(v: WritableVolume, ino: number, inode: Inode, from: number, to: number): boolean {
  const find = (node: Uint8Array, nodeBlock: number, depth: number): boolean => {
    const h = decodeExtentHeader(node, 0);
    if (h.magic !== EXTENT_MAGIC) throw corrupt(ino, 'bad extent header');
    if (h.depth === 0 || depth > MAX_READ_DEPTH) return false;
    for (let k = 0; k < h.entries; k++) {
      const off = EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE;
      const x = decodeExtentIndex(node, off);
      if (x.leaf === from) {
        v.tx.put(to, v.r.readBlocks(from).slice());
        const buf = nodeBlock < 0 ? node : v.tx.modify(nodeBlock);
        encodeExtentIndex(buf, off, { lblk: x.lblk, leaf: to });
        const seed = seedOf(v, ino, inode);
        if (nodeBlock >= 0 && seed !== undefined) sealExtentBlock(buf, seed);
        v.freeLater(from, 1);
        return true;
      }
      if (find(v.r.readBlocks(x.leaf), x.leaf, depth + 1)) return true;
    }
    return false;
  };
  return find(inode.block, -1, 0);
}
