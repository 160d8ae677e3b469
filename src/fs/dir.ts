/**
 * Directories, read side: one block read with its kind found (leaf or htree index) and its checksum
 * verified once, the blocks of a directory in order, inline directories, listing, and the search of
 * one block or of every block for a name. Indexed lookup is fs/htree.ts; the choice between the two
 * is fs/resolve.ts.
 */
import { Ext4Error } from '../core/errors.js';
import { u16, u32 } from '../core/bytes.js';
import { FL_INDEX, FL_INLINE_DATA, S_IFMT, S_IFDIR, type Inode } from '../ext4/inode.js';
import {
  parseDirEntries,
  findDirEntry,
  hasDirTail,
  dirBlockChecksum,
  decodeRecLen,
  isDotOrDotDot,
  type RawDirent,
} from '../ext4/dirent.js';
import { dxRootCountOffset, dxTailChecksum, readDxHeader, DX_NODE_COUNT_OFFSET } from '../ext4/htree.js';
import { checkReadable, inodeSeed } from './inodes.js';
import { blockRuns } from './blockmap.js';
import { inlineData, type XattrVolume } from './xattrs.js';
import type { Ext4Volume } from './volume.js';

/** i_block of an inline directory starts with the parent's inode number. */
export const INLINE_DIR_PARENT_SIZE = 4;
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

/**
 * An inline directory's areas: i_block after the parent number, then the system.data value. Each is
 * parsed on its own (entries never span the two).
 */
export function inlineDir(
  v: XattrVolume,
  ino: number,
  i: Inode,
): { parent: number; areas: { data: Uint8Array; entries: RawDirent[] }[] } {
  const d = inlineData(v, ino, i);
  const where = { inode: ino };
  const first = d.subarray(0, 60);
  const areas = [
    { data: first, entries: parseDirEntries(first, INLINE_DIR_PARENT_SIZE, 60, 60, v.hasFileType, where) },
  ];
  if (d.length > 60) {
    const rest = d.subarray(60);
    areas.push({ data: rest, entries: parseDirEntries(rest, 0, rest.length, rest.length, v.hasFileType, where) });
  }
  return { parent: u32(d, 0), areas };
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
