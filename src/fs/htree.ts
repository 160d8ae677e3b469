/**
 * Hash-indexed directories, the walk: from the dx_root down to the leaf for a hash (kernel: dx_probe),
 * moving on to the next leaf (ext4_htree_next_block), and the lookup of a name through the index. The
 * dx block formats are the ext4/htree.ts codec; the leaves are fs/dir.ts's; adding a name through the
 * index (splits, a new level) is fs/htree-add.ts.
 */
import { Ext4Error } from '../core/errors.js';
import { COMPAT, INCOMPAT } from '../ext4/features.js';
import { FLAG_UNSIGNED_HASH } from '../ext4/superblock.js';
import { FL_INDEX, FL_INLINE_DATA, FL_CASEFOLD, FL_ENCRYPT, type Inode } from '../ext4/inode.js';
import {
  decodeDxRootInfo,
  dxRootInfoValid,
  dxRootCountOffset,
  readDxEntries,
  dxLimit,
  DX_NODE_COUNT_OFFSET,
  type DxEntry,
} from '../ext4/htree.js';
import { dirHash, DX_HASH_TEA, DX_HASH_UNSIGNED_DELTA } from '../ext4/dirhash.js';
import { physicalBlock, type BlockRun } from './blockmap.js';
import { dirBlock, findInBlock, type DirSlot } from './dir.js';
import type { Ext4Volume } from './volume.js';

/** One level of an htree walk: the index block and the entry taken. */
export interface DxFrame {
  lblk: number;
  pblk: number;
  countOffset: number;
  limit: number;
  entries: DxEntry[];
  at: number;
}

/** The hash version names of an indexed directory are hashed with (the root's, + 3 when unsigned). */
export function dirHashVersion(v: Ext4Volume, root: Uint8Array): number {
  const h = decodeDxRootInfo(root).hashVersion;
  return h <= DX_HASH_TEA && v.sb.s_flags & FLAG_UNSIGNED_HASH ? h + DX_HASH_UNSIGNED_DELTA : h;
}

/** Whether lookups in this directory can go through its htree index. */
export function usesIndex(v: Ext4Volume, i: Inode): boolean {
  return (
    (i.flags & FL_INDEX) !== 0 &&
    (v.sb.s_feature_compat & COMPAT.dir_index) !== 0 &&
    !(i.flags & (FL_INLINE_DATA | FL_CASEFOLD | FL_ENCRYPT))
  );
}

/**
 * Walks the htree of directory `ino` down to the leaf for `hash`. Returns the index frames from the
 * root down and the logical block of the leaf. A malformed index is CORRUPT.
 */
export function dxProbe(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  hash: number,
  runs: readonly BlockRun[],
): { frames: DxFrame[]; leaf: number } {
  const bs = v.blockSize;
  const where = { inode: ino };
  const rootP = physicalBlock(runs, 0);
  if (rootP === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree root is a hole`, where);
  const root = dirBlock(v, ino, i, 0, rootP).buf;
  const info = decodeDxRootInfo(root);
  if (!dxRootInfoValid(info, (v.sb.s_feature_incompat & INCOMPAT.large_dir) !== 0))
    throw new Ext4Error('CORRUPT', `directory ${ino}: bad htree root info`, where);
  const frames: DxFrame[] = [];
  let buf = root;
  let countOffset = dxRootCountOffset(root);
  let lblk = 0;
  let pblk = rootP;
  const blocks = Math.ceil(i.size / bs);
  for (let level = 0; ; level++) {
    const { limit, count, entries } = readDxEntries(buf, countOffset);
    if (count === 0 || limit !== dxLimit(bs, countOffset, v.csum))
      throw new Ext4Error('CORRUPT', `directory ${ino}: htree block ${lblk} has count ${count}, limit ${limit}`, where);
    let lo = 1;
    let hi = count - 1;
    while (lo <= hi) {
      const m = (lo + hi) >> 1;
      if (entries[m]!.hash > hash) hi = m - 1;
      else lo = m + 1;
    }
    const at = lo - 1;
    frames.push({ lblk, pblk, countOffset, limit, entries, at });
    const next = entries[at]!.block;
    if (next === 0 || next >= blocks)
      throw new Ext4Error('CORRUPT', `directory ${ino}: htree points at block ${next} of ${blocks}`, where);
    if (level === info.levels) return { frames, leaf: next };
    const p = physicalBlock(runs, next);
    if (p === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is a hole`, where);
    const node = dirBlock(v, ino, i, next, p);
    if (!node.dx) throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is not an index block`, where);
    buf = node.buf;
    countOffset = DX_NODE_COUNT_OFFSET;
    lblk = next;
    pblk = p;
  }
}

/** The htree walk for `name`: its hash (with the directory's hash version) and the leaf it leads to. */
export function dxFind(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  name: Uint8Array,
  runs: readonly BlockRun[],
): { frames: DxFrame[]; leaf: number; hash: number } {
  const rootP = physicalBlock(runs, 0);
  if (rootP === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree root is a hole`, { inode: ino });
  const hash = dirHash(name, dirHashVersion(v, v.readBlocks(rootP)), v.sb.s_hash_seed).hash;
  return { ...dxProbe(v, ino, i, hash, runs), hash };
}

/**
 * Moves an htree walk to the next leaf. Returns the hash the new leaf starts at, or undefined at the
 * end of the index.
 */
export function dxNextLeaf(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  frames: DxFrame[],
  runs: readonly BlockRun[],
): { hash: number; leaf: number } | undefined {
  let level = frames.length - 1;
  while (level >= 0 && frames[level]!.at + 1 >= frames[level]!.entries.length) level--;
  if (level < 0) return undefined;
  const f = frames[level]!;
  f.at++;
  const hash = f.entries[f.at]!.hash;
  let next = f.entries[f.at]!.block;
  for (let l = level + 1; l < frames.length; l++) {
    const p = physicalBlock(runs, next);
    if (p === undefined)
      throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is a hole`, { inode: ino });
    const node = dirBlock(v, ino, i, next, p);
    const { limit, entries } = readDxEntries(node.buf, DX_NODE_COUNT_OFFSET);
    if (!entries.length) throw new Ext4Error('CORRUPT', `directory ${ino}: empty htree node ${next}`, { inode: ino });
    frames[l] = { lblk: next, pblk: p, countOffset: DX_NODE_COUNT_OFFSET, limit, entries, at: 0 };
    next = entries[0]!.block;
  }
  return { hash, leaf: next };
}

/**
 * Finds `name` through the htree index: the leaf its hash leads to, then the following leaves while
 * they go on with the same hash. Undefined when the index is malformed (CORRUPT), so the caller can
 * fall back to reading every block; `null` when the index says the name is not there.
 */
export function dxLookup(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  name: Uint8Array,
  runs: readonly BlockRun[],
): DirSlot | null | undefined {
  let probe: { frames: DxFrame[]; leaf: number; hash: number };
  try {
    probe = dxFind(v, ino, i, name, runs);
  } catch (e) {
    if (!(e instanceof Ext4Error) || e.code !== 'CORRUPT') throw e;
    return undefined;
  }
  let leaf: number | undefined = probe.leaf;
  for (let guard = 0; leaf !== undefined && guard < 1_000_000; guard++) {
    const p = physicalBlock(runs, leaf);
    if (p === undefined)
      throw new Ext4Error('CORRUPT', `directory ${ino}: htree leaf ${leaf} is a hole`, { inode: ino });
    const hit = findInBlock(v, ino, i, leaf, p, name, true);
    if (hit) return hit;
    // Names with the same hash may continue in the next leaf.
    const next = dxNextLeaf(v, ino, i, probe.frames, runs);
    leaf = next && (next.hash & ~1) >>> 0 === probe.hash ? next.leaf : undefined;
  }
  return null;
}
