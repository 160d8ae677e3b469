/**
 * Hash-indexed directories, write side (kernel doc: directory.rst; the dx block formats are the
 * ext4/htree.ts codec): a name added through the index, a full leaf split in two by hash, a full index
 * node split, a full root grown a level, and a one-block linear directory made indexed. The walk down
 * the index is fs/htree.ts's.
 */
import { Ext4Error } from '../core/errors.js';
import { INCOMPAT } from '../ext4/features.js';
import { FL_INDEX, type Inode } from '../ext4/inode.js';
import { parseDirEntries, direntSize, FT_DIR, isDotDot, isDotOrDotDot, type DirEntry } from '../ext4/dirent.js';
import {
  DX_NODE_COUNT_OFFSET,
  DX_ROOT_COUNT_OFFSET,
  DX_ROOT_INFO_OFFSET,
  dxLimit,
  initDxNode,
  newDxRoot,
  putDxEntries,
  setDxTail,
  type DxEntry,
} from '../ext4/htree.js';
import { dirHash, DX_HASH_HALF_MD4, DX_HASH_TEA } from '../ext4/dirhash.js';
import { blockRuns, physicalBlock } from './blockmap.js';
import { appendDirBlock, dirSeed, entryType, insertInto, leafEnd, packLeaf, sealLeaf } from './dir.js';
import { dirHashVersion, dxFind, type DxFrame } from './htree.js';
import type { WritableVolume } from './writable.js';

/**
 * Splits entries that no longer fit one leaf into two, by hash: the upper ones move until more than half
 * a block has moved (the kernel's do_split). `hash2` starts the upper leaf; `continued` (the index
 * entry's low bit) says names with that hash stand in the lower leaf too.
 */
function splitLeaf(
  v: WritableVolume,
  entries: DirEntry[],
  version: number,
  seed: number | undefined,
  dir: number,
): { lower: Uint8Array; upper: Uint8Array; hash2: number; continued: number } {
  const sorted = entries.map((x) => ({ e: x, h: dirHash(x.name, version, v.sb.s_hash_seed) }));
  sorted.sort((a, b) => a.h.hash - b.h.hash || a.h.minor - b.h.minor);
  const split = splitPoint(v, sorted);
  const hash2 = sorted[split]!.h.hash;
  const continued = hash2 === sorted[split - 1]!.h.hash ? 1 : 0;
  const lower = packLeaf(
    v,
    sorted.slice(0, split).map((x) => x.e),
    seed,
  );
  const upper = packLeaf(
    v,
    sorted.slice(split).map((x) => x.e),
    seed,
  );
  if (!lower || !upper)
    throw new Ext4Error('CORRUPT', `directory ${dir}: a split leaf does not fit a block`, { inode: dir });
  return { lower, upper, hash2, continued };
}

/** The kernel's split point of a full leaf: entries from the end until more than half the block moves. */
function splitPoint(v: WritableVolume, sorted: { e: DirEntry }[]): number {
  let size = 0;
  let move = 0;
  for (let k = sorted.length - 1; k > 0; k--) {
    const s = direntSize(sorted[k]!.e.name.length);
    if (size + s / 2 > v.bs / 2) break;
    size += s;
    move++;
  }
  return sorted.length - move;
}

interface DxContext {
  v: WritableVolume;
  dir: number;
  i: Inode;
  seed: number | undefined;
  maxLevels: number;
}

function writeDx(c: DxContext, f: DxFrame): void {
  const b = c.v.tx.modify(f.pblk);
  putDxEntries(b, f.countOffset, f.limit, f.entries);
  if (c.seed !== undefined) setDxTail(b, f.countOffset, f.limit, f.entries.length, c.seed);
}

function newDxNode(c: DxContext, entries: DxEntry[], at: number): DxFrame {
  const b = new Uint8Array(c.v.bs);
  initDxNode(b, c.v.bs);
  const { lblk, pblk } = appendDirBlock(c.v, c.dir, c.i, b);
  const f: DxFrame = {
    lblk,
    pblk,
    countOffset: DX_NODE_COUNT_OFFSET,
    limit: dxLimit(c.v.bs, DX_NODE_COUNT_OFFSET, c.seed !== undefined),
    entries,
    at,
  };
  writeDx(c, f);
  return f;
}

/**
 * Inserts index entry (hash, block) after the position of `frames[level]`, splitting full index nodes
 * on the way up and giving the root a new level when it is full (kernel: ext4_dx_add_entry).
 */
function insertIndex(c: DxContext, frames: DxFrame[], level: number, hash: number, block: number): void {
  const f = frames[level]!;
  if (f.entries.length < f.limit) {
    f.entries.splice(f.at + 1, 0, { hash, block });
    writeDx(c, f);
    return;
  }
  if (level === 0) {
    const root = c.v.tx.modify(f.pblk);
    const levels = root[DX_ROOT_INFO_OFFSET + 6]!;
    if (levels + 1 >= c.maxLevels)
      throw new Ext4Error(
        'NO_SPACE',
        `directory ${c.dir}: its index is full${c.maxLevels < 3 ? ' (large_dir would allow a third level)' : ''}`,
        { inode: c.dir },
      );
    // The root's entries move to a new node below it; the root points at that node alone.
    const node = newDxNode(c, f.entries, f.at);
    root[DX_ROOT_INFO_OFFSET + 6] = levels + 1;
    f.entries = [{ hash: 0, block: node.lblk }];
    f.at = 0;
    writeDx(c, f);
    frames.splice(1, 0, node);
    insertIndex(c, frames, 1, hash, block);
    return;
  }
  // Split the node: its upper half moves to a new sibling, indexed in the parent after this node.
  const half = Math.floor(f.entries.length / 2);
  const moved = f.entries.slice(half);
  const movedHash = moved[0]!.hash;
  f.entries = f.entries.slice(0, half);
  const sibling = newDxNode(c, moved, f.at - half);
  writeDx(c, f);
  insertIndex(c, frames, level - 1, movedHash, sibling.lblk);
  const at = frames.indexOf(f);
  if (f.at >= half) {
    frames[at] = sibling;
    frames[at - 1]!.at++;
  }
  insertIndex(c, frames, at, hash, block);
}

/** Adds entry `e` to indexed directory `dir` through its index (the caller has checked the name is free). */
export function dxAdd(v: WritableVolume, dir: number, i: Inode, e: DirEntry): void {
  const r = v.r;
  const bs = v.bs;
  const runs = blockRuns(r, dir, i);
  const { frames, leaf } = dxFind(r, dir, i, e.name, runs);
  const leafP = physicalBlock(runs, leaf)!;
  const b = v.tx.modify(leafP);
  const end = leafEnd(v, b);
  if (insertInto(b, 0, end, bs, e)) {
    sealLeaf(v, dir, i, leafP);
    return;
  }
  const rootBuf = r.readBlocks(frames[0]!.pblk);
  const version = dirHashVersion(r, rootBuf);
  const seed = dirSeed(v, dir, i);
  const all = parseDirEntries(b, 0, end, bs, r.hasFileType)
    .filter((x) => x.inode)
    .map((x) => ({ inode: x.inode, name: x.name, fileType: x.fileType }));
  all.push(e);
  const { lower, upper, hash2, continued } = splitLeaf(v, all, version, seed, dir);
  b.set(lower);
  const c: DxContext = {
    v,
    dir,
    i,
    seed,
    maxLevels: v.sb.s_feature_incompat & INCOMPAT.large_dir ? 3 : 2,
  };
  const nb = appendDirBlock(v, dir, i, upper);
  insertIndex(c, frames, frames.length - 1, (hash2 | continued) >>> 0, nb.lblk);
}

/** Turns a full one-block linear directory into an indexed one with two leaves (kernel: make_indexed_dir). */
export function makeIndexed(v: WritableVolume, dir: number, i: Inode, e: DirEntry): void {
  const bs = v.bs;
  const runs = blockRuns(v.r, dir, i);
  const p0 = physicalBlock(runs, 0)!;
  const old = v.r.readBlocks(p0);
  const list = parseDirEntries(old, 0, leafEnd(v, old), bs, v.r.hasFileType);
  const dotdot = list.find((x) => x.inode && isDotDot(x.name));
  const parent = dotdot?.inode ?? 2;
  const entries: DirEntry[] = list
    .filter((x) => x.inode && !isDotOrDotDot(x.name))
    .map((x) => ({ inode: x.inode, name: x.name, fileType: x.fileType }));
  entries.push(e);
  const stored = v.sb.s_def_hash_version <= DX_HASH_TEA ? v.sb.s_def_hash_version : DX_HASH_HALF_MD4;
  const root = newDxRoot(bs, dir, parent, entryType(v, FT_DIR), stored, 0);
  const version = dirHashVersion(v.r, root);
  const seed = dirSeed(v, dir, i);
  const { lower, upper, hash2, continued } = splitLeaf(v, entries, version, seed, dir);
  i.flags |= FL_INDEX;
  const l1 = appendDirBlock(v, dir, i, lower);
  const l2 = appendDirBlock(v, dir, i, upper);
  const limit = dxLimit(bs, DX_ROOT_COUNT_OFFSET, seed !== undefined);
  putDxEntries(root, DX_ROOT_COUNT_OFFSET, limit, [
    { hash: 0, block: l1.lblk },
    { hash: (hash2 | continued) >>> 0, block: l2.lblk },
  ]);
  if (seed !== undefined) setDxTail(root, DX_ROOT_COUNT_OFFSET, limit, 2, seed);
  v.tx.put(p0, root);
}
