/**
 * Directory blocks, both ways (kernel doc: directory.rst): one block read with its kind found (leaf or
 * htree index) and its checksum verified once, the blocks of a directory in order, listing, the search
 * of one block or of every block for a name; an entry put into or removed from a block, a leaf packed,
 * a block appended to a directory. Indexed lookup and insertion are fs/htree.ts and fs/htree-add.ts,
 * inline directories fs/inline.ts, the operations on a whole directory fs/dir-edit.ts, the choice
 * between index and linear search fs/resolve.ts.
 */
import { Ext4Error } from '../core/errors.js';
import { put16, put32, u16, u32 } from '../core/bytes.js';
import { FL_INDEX, FL_INLINE_DATA, S_IFMT, S_IFDIR, type Inode } from '../ext4/inode.js';
import {
  parseDirEntries,
  findDirEntry,
  hasDirTail,
  dirBlockChecksum,
  decodeRecLen,
  encodeDirent,
  encodeRecLen,
  direntSize,
  packDirBlocks,
  isDotOrDotDot,
  DIR_TAIL_SIZE,
  type DirEntry,
  type RawDirent,
} from '../ext4/dirent.js';
import { dxRootCountOffset, dxTailChecksum, readDxHeader, DX_NODE_COUNT_OFFSET } from '../ext4/htree.js';
import { checkReadable, inodeSeed, setSize } from './inodes.js';
import { blockRuns, appendBlock } from './blockmap.js';
import { inlineDir } from './inline.js';
import type { Ext4Volume, XattrVolume } from './volume.js';
import type { WritableVolume } from './writable.js';
/** Directory sizes read into memory are capped: a corrupt size must not exhaust memory. */
export const MAX_DIR_BYTES = 1 << 30;

export interface DirEntryInfo {
  name: Uint8Array;
  inode: number;
  fileType: number;
}

/** One block of a directory as read: its entries, or none for htree index blocks. */
export interface DirBlock {
  lblk: number;
  pblk: number;
  buf: Uint8Array;
  /** Live and unused entries in block order (the csum tail excluded). */
  entries: RawDirent[];
  /** An htree index block (dx_root or dx_node). */
  dx: boolean;
  /** The block ends with a metadata_csum tail. */
  tail: boolean;
}

/** Where a name was found in a directory. */
export interface DirSlot {
  inode: number;
  fileType: number;
  /** The directory block (logical and physical) and the entry's offset in it; inline dirs: lblk -1. */
  lblk: number;
  pblk: number;
  offset: number;
}

/**
 * One directory block, checked: htree index blocks (the dx_root at logical block 0 of an indexed
 * directory, dx_nodes that start with an empty entry spanning the block) keep a dx_tail and list no
 * entries; leaf blocks are parsed and their csum tail verified.
 */
export function dirBlock(v: Ext4Volume, ino: number, i: Inode, lblk: number, pblk: number, leaf = false): DirBlock {
  const bs = v.blockSize;
  const { buf, dx, tail } = dirBlockBuf(v, ino, i, lblk, pblk, leaf);
  // The dx_root keeps '.' and '..' in front of its index ('..' spans the rest of the block).
  const entries = !dx || lblk === 0 ? parseDirEntries(buf, 0, bs, bs, v.hasFileType, { inode: ino, block: pblk }) : [];
  return { lblk, pblk, buf, entries, dx, tail };
}

/** A directory block, its kind found and its checksum verified (once), without parsing its entries. */
export function dirBlockBuf(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  lblk: number,
  pblk: number,
  leaf = false,
): { buf: Uint8Array; dx: boolean; tail: boolean } {
  const bs = v.blockSize;
  const b = v.readBlocks(pblk);
  const indexed = (i.flags & FL_INDEX) !== 0;
  const isRoot = indexed && lblk === 0;
  // An emptied leaf of a directory without csum tails looks like a dx_node; the htree walk knows which
  // blocks are leaves (`leaf`), a linear read cannot tell and finds no entries in either.
  const dx = !leaf && (isRoot || (indexed && u32(b, 0) === 0 && decodeRecLen(u16(b, 4), bs) === bs));
  const check = v.csum && v.verify && !v.cache.isTrusted(pblk);
  if (dx) {
    if (check) {
      verifyDxTail(v, ino, i, b, isRoot, pblk);
      v.cache.markVerified(pblk);
    }
    return { buf: b, dx: true, tail: false };
  }
  const tail = v.csum && hasDirTail(b, bs);
  if (tail && check) {
    if (dirBlockChecksum(inodeSeed(v, ino, i.generation), b, bs) !== u32(b, bs - 4))
      throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: block ${pblk} checksum mismatch`, {
        inode: ino,
        block: pblk,
      });
    v.cache.markVerified(pblk);
  }
  return { buf: b, dx: false, tail };
}

/** Verifies an htree block's dx_tail; blocks without room for the tail have none. */
function verifyDxTail(v: Ext4Volume, ino: number, i: Inode, b: Uint8Array, isRoot: boolean, block: number): void {
  const countOffset = isRoot ? dxRootCountOffset(b) : DX_NODE_COUNT_OFFSET;
  if (countOffset + 4 > b.length)
    throw new Ext4Error('CORRUPT', `directory ${ino}: bad htree root`, { inode: ino, block });
  const { limit, count } = readDxHeader(b, countOffset);
  const tail = countOffset + limit * 8;
  if (count > limit || tail + 8 > b.length) return;
  if (dxTailChecksum(inodeSeed(v, ino, i.generation), b, countOffset, limit, count) !== u32(b, tail + 4))
    throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: htree block ${block} checksum mismatch`, {
      inode: ino,
      block,
    });
}

function checkDirSize(ino: number, i: Inode): void {
  if (i.size > MAX_DIR_BYTES) throw new Ext4Error('CORRUPT', `directory ${ino} claims ${i.size} bytes`, { inode: ino });
}

/** The blocks of a directory in logical order (holes and uninitialized extents skipped). */
export function* dirBlocks(v: Ext4Volume, ino: number, i: Inode): Generator<DirBlock> {
  checkDirSize(ino, i);
  const bs = v.blockSize;
  for (const r of blockRuns(v, ino, i)) {
    if (r.uninit) continue;
    for (let k = 0; k < r.len; k++) {
      if ((r.lblk + k) * bs >= i.size) return;
      yield dirBlock(v, ino, i, r.lblk + k, r.pblk + k);
    }
  }
}

/** Looks for `name` in one directory block (dx blocks hold no entries). */
export function findInBlock(
  v: Ext4Volume,
  ino: number,
  i: Inode,
  lblk: number,
  pblk: number,
  name: Uint8Array,
  leaf: boolean,
): DirSlot | undefined {
  const { buf, dx } = dirBlockBuf(v, ino, i, lblk, pblk, leaf);
  if (dx) return undefined;
  const off = findDirEntry(buf, 0, v.blockSize, v.blockSize, name, { inode: ino, block: pblk });
  if (off < 0) return undefined;
  return { inode: u32(buf, off), fileType: v.hasFileType ? buf[off + 7]! : 0, lblk, pblk, offset: off };
}

/** Looks for `name` in every block of a (block-mapped) directory, in order. */
export function findLinear(v: Ext4Volume, ino: number, i: Inode, name: Uint8Array): DirSlot | undefined {
  checkDirSize(ino, i);
  const bs = v.blockSize;
  for (const r of blockRuns(v, ino, i)) {
    if (r.uninit) continue;
    for (let k = 0; k < r.len && (r.lblk + k) * bs < i.size; k++) {
      const hit = findInBlock(v, ino, i, r.lblk + k, r.pblk + k, name, false);
      if (hit) return hit;
    }
  }
  return undefined;
}

/** Directory entries other than . and .., in on-disk order. */
export function readDir(v: XattrVolume, ino: number, i: Inode): DirEntryInfo[] {
  if ((i.mode & S_IFMT) !== S_IFDIR)
    throw new Ext4Error('NOT_FOUND', `inode ${ino} is not a directory`, { inode: ino });
  checkReadable(ino, i);
  const out: DirEntryInfo[] = [];
  const take = (entries: RawDirent[]) => {
    for (const e of entries)
      if (e.inode && !isDotOrDotDot(e.name)) out.push({ name: e.name, inode: e.inode, fileType: e.fileType });
  };
  if (i.flags & FL_INLINE_DATA) {
    for (const a of inlineDir(v, ino, i).areas) take(a.entries);
    return out;
  }
  for (const b of dirBlocks(v, ino, i)) if (!b.dx) take(b.entries);
  return out;
}

// ---- writing ----

/** The file type byte stored in entries (0 without the filetype feature). */
export function entryType(v: WritableVolume, ft: number): number {
  return v.r.hasFileType ? ft : 0;
}

/** The checksum seed of directory `dir`'s blocks (undefined without metadata_csum). */
export function dirSeed(v: WritableVolume, dir: number, i: Inode): number | undefined {
  return v.csum ? inodeSeed(v.r, dir, i.generation) : undefined;
}

/** Where entries may go in a leaf block: up to its csum tail when it has one. */
export function leafEnd(v: WritableVolume, b: Uint8Array): number {
  return v.csum && hasDirTail(b, v.bs) ? v.bs - DIR_TAIL_SIZE : v.bs;
}

/** The leaf's csum tail is due (computed at commit). */
export function sealLeaf(v: WritableVolume, dir: number, i: Inode, block: number): void {
  if (v.csum) v.sealLeafLater(block, dirSeed(v, dir, i)!);
}

/**
 * Puts an entry into [start, end) of a block: into an unused entry that is large enough, or into the
 * slack after a live entry (kernel: add_dirent_to_buf). `recBase` decodes rec_len (the block size).
 */
export function insertInto(b: Uint8Array, start: number, end: number, recBase: number, e: DirEntry): boolean {
  const x = roomIn(parseDirEntries(b, start, end, recBase), direntSize(e.name.length));
  if (x) putInto(b, x, e);
  return x !== undefined;
}

/** The entry whose record has room for `need` more bytes (an unused one, or a live one's slack). */
export function roomIn(entries: Iterable<RawDirent>, need: number): RawDirent | undefined {
  for (const x of entries) if (x.recLen - (x.inode === 0 ? 0 : direntSize(x.name.length)) >= need) return x;
  return undefined;
}

/** Writes `e` into the room `roomIn` found at `x`: over an unused entry, or after a live one cut short. */
export function putInto(b: Uint8Array, x: RawDirent, e: DirEntry): void {
  if (x.inode === 0) return encodeDirent(b, x.offset, e, x.recLen);
  const used = direntSize(x.name.length);
  put16(b, x.offset + 4, encodeRecLen(used));
  encodeDirent(b, x.offset + used, e, x.recLen - used);
}

/** Removes the entry at `offset` of [start, end): merged into the previous entry, or marked unused. */
export function removeAt(b: Uint8Array, start: number, end: number, recBase: number, offset: number): void {
  let prev: RawDirent | undefined;
  for (const x of parseDirEntries(b, start, end, recBase)) {
    if (x.offset === offset) {
      if (prev) put16(b, prev.offset + 4, encodeRecLen(prev.recLen + x.recLen));
      else put32(b, x.offset, 0);
      return;
    }
    prev = x;
  }
  throw new Ext4Error('CORRUPT', `no directory entry at offset ${offset}`);
}

/** Packs entries into one leaf block (with a csum tail when `seed` is given); undefined when they do not fit. */
export function packLeaf(v: WritableVolume, entries: DirEntry[], seed: number | undefined): Uint8Array | undefined {
  const usable = v.bs - (seed !== undefined ? DIR_TAIL_SIZE : 0);
  if (entries.reduce((a, e) => a + direntSize(e.name.length), 0) > usable) return undefined;
  return packDirBlocks(entries, v.bs, seed)[0]!;
}

/** Appends a block holding `data` to the directory, updating its map, size and i_blocks in `i`. */
export function appendDirBlock(
  v: WritableVolume,
  dir: number,
  i: Inode,
  data: Uint8Array,
): { lblk: number; pblk: number } {
  const runs = blockRuns(v.r, dir, i);
  const last = runs[runs.length - 1];
  const lblk = Math.ceil(i.size / v.bs);
  const pblk = v.allocBlock(last ? last.pblk + last.len : v.inodeGoal(dir));
  // The allocator trusts the bitmap: one calling a block of this directory free would map it twice.
  if (runs.some((r) => pblk >= r.pblk && pblk < r.pblk + r.len))
    throw new Ext4Error('NEEDS_CHECK', `block ${pblk} of directory ${dir} is free in its group's bitmap`, {
      inode: dir,
      block: pblk,
    });
  v.tx.put(pblk, data);
  const mapAdded = appendBlock(v, dir, i, lblk, pblk);
  setSize(v, i, (lblk + 1) * v.bs);
  v.addBlocks512(i, (1 + mapAdded) * (v.bs / 512));
  return { lblk, pblk };
}
