/**
 * Changing a directory as a whole (kernel doc: directory.rst, inlinedata.rst): a new directory set up,
 * an entry added, removed or repointed, '..' changed. Each goes to where the directory keeps its
 * entries: linear blocks (fs/dir.ts), the htree (fs/htree-add.ts; a linear directory that outgrows its
 * one block becomes indexed, as the kernel does when dir_index is on) or the inode (fs/inline.ts; an
 * inline directory that outgrows it moves to a block).
 */
import { Ext4Error } from '../core/errors.js';
import { put32, sameBytes, u16 } from '../core/bytes.js';
import { COMPAT, INCOMPAT } from '../ext4/features.js';
import { direntSize, parseDirEntries, FT_DIR, isDot, isDotDot, type DirEntry } from '../ext4/dirent.js';
import { dxRootCountOffset, setDxTail } from '../ext4/htree.js';
import { FL_INDEX, FL_INLINE_DATA, type Inode } from '../ext4/inode.js';
import { setFileBlocks } from './inodes.js';
import { blockRuns, buildMap, physicalBlock } from './blockmap.js';
import {
  appendDirBlock,
  dirBlocks,
  dirSeed,
  entryType,
  leafEnd,
  packLeaf,
  putInto,
  readDir,
  removeAt,
  roomIn,
  sealLeaf,
  type DirSlot,
} from './dir.js';
import { usesIndex } from './htree.js';
import { dxAdd, makeIndexed } from './htree-add.js';
import { clearInline, initInlineDir, inlineLayout, writeInlineDir, type InlineLayout } from './inline.js';
import { findEntry } from './resolve.js';
import type { WritableVolume } from './writable.js';

const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

/**
 * Sets up the content of a new directory inode `i` (not yet written) and writes its record: inline
 * (like the kernel on inline_data file systems) or one block with '.' and '..'.
 */
export function initDir(v: WritableVolume, ino: number, i: Inode, parent: number): void {
  if (initInlineDir(v, ino, i, parent)) return;
  setFirstBlock(v, ino, i, parent, []);
  v.initInode(ino, i);
}

/** Gives directory `dir` its first (and only) block: '.', '..' and `entries`. */
function setFirstBlock(v: WritableVolume, dir: number, i: Inode, parent: number, entries: DirEntry[]): void {
  const ft = entryType(v, FT_DIR);
  const data = packLeaf(
    v,
    [{ inode: dir, name: DOT, fileType: ft }, { inode: parent, name: DOTDOT, fileType: ft }, ...entries],
    dirSeed(v, dir, i),
  );
  if (!data) throw new Ext4Error('CORRUPT', `directory ${dir}: its entries do not fit one block`, { inode: dir });
  const pblk = v.allocBlock(v.inodeGoal(dir));
  v.tx.put(pblk, data);
  const extents = (v.sb.s_feature_incompat & INCOMPAT.extent) !== 0;
  const mapBlocks = buildMap(v, dir, i, [{ lblk: 0, pblk, len: 1 }], pblk, extents);
  i.size = v.bs;
  setFileBlocks(v, i, 1 + mapBlocks);
}

/** Stores an inline directory's entries, moving it to a block when they no longer fit the inode. */
function storeInline(v: WritableVolume, dir: number, i: Inode, lay: InlineLayout): void {
  if (writeInlineDir(v, dir, i, lay)) return;
  inlineToBlock(v, dir, i, lay);
  v.writeInode(dir, i);
}

/** Moves an inline directory into a block of its own (kernel: ext4_convert_inline_dir). */
function inlineToBlock(v: WritableVolume, dir: number, i: Inode, lay: InlineLayout): void {
  clearInline(v, dir, i);
  setFirstBlock(v, dir, i, lay.parent, lay.entries);
}

/**
 * Adds `name` -> `ino` to directory `dir` (the caller has checked the name is free). Returns the
 * directory's inode as updated and written; `touch` changes it (times, link count) before that write,
 * so a caller that changes more does not encode the record twice.
 */
export function addEntry(
  v: WritableVolume,
  dir: number,
  name: Uint8Array,
  ino: number,
  fileType: number,
  touch?: (i: Inode) => void,
): Inode {
  const i = v.readInode(dir);
  const e: DirEntry = { inode: ino, name, fileType: entryType(v, fileType) };
  if (i.flags & FL_INLINE_DATA) {
    const lay = inlineLayout(v, dir, i);
    lay.entries.push(e);
    if (!writeInlineDir(v, dir, i, lay)) {
      lay.entries.pop();
      inlineToBlock(v, dir, i, lay);
      v.writeInode(dir, i);
      return addEntry(v, dir, name, ino, fileType, touch);
    }
    const after = v.readInode(dir);
    if (!touch) return after;
    touch(after);
    v.writeInode(dir, after);
    return after;
  }
  if (usesIndex(v.r, i)) dxAdd(v, dir, i, e);
  else {
    let added = false;
    let blocks = 0;
    for (const blk of dirBlocks(v.r, dir, i)) {
      blocks++;
      if (blk.dx) continue;
      // Only the block that takes the entry is changed (and so journaled).
      const x = roomIn(blk.entries, direntSize(e.name.length));
      if (x) {
        putInto(v.tx.modify(blk.pblk), x, e);
        sealLeaf(v, dir, i, blk.pblk);
        added = true;
        break;
      }
    }
    if (!added) {
      const indexable = v.sb.s_feature_compat & COMPAT.dir_index && !(i.flags & FL_INDEX) && blocks === 1;
      if (indexable) makeIndexed(v, dir, i, e);
      else appendDirBlock(v, dir, i, packLeaf(v, [e], dirSeed(v, dir, i))!);
    }
  }
  touch?.(i);
  v.writeInode(dir, i);
  return i;
}

/** Directory `dir` and where `name` stands in it (NOT_FOUND when it does not). */
function slotOf(v: WritableVolume, dir: number, name: Uint8Array): { i: Inode; slot: DirSlot } {
  const i = v.readInode(dir);
  const slot = findEntry(v.r, dir, name, i);
  if (!slot)
    throw new Ext4Error('NOT_FOUND', `no entry ${Buffer.from(name).toString('utf8')} in directory ${dir}`, {
      inode: dir,
    });
  return { i, slot };
}

/** Removes `name` from directory `dir`; returns the entry's inode number. */
export function removeEntry(v: WritableVolume, dir: number, name: Uint8Array): number {
  const { i, slot } = slotOf(v, dir, name);
  if (i.flags & FL_INLINE_DATA) {
    const lay = inlineLayout(v, dir, i);
    lay.entries = lay.entries.filter((x) => !sameBytes(x.name, name));
    storeInline(v, dir, i, lay);
    return slot.inode;
  }
  const b = v.tx.modify(slot.pblk);
  removeAt(b, 0, leafEnd(v, b), v.bs, slot.offset);
  sealLeaf(v, dir, i, slot.pblk);
  return slot.inode;
}

/** Points the existing entry `name` of `dir` at another inode (rename over an existing name). */
export function retarget(v: WritableVolume, dir: number, name: Uint8Array, ino: number, fileType: number): void {
  const { i, slot } = slotOf(v, dir, name);
  if (i.flags & FL_INLINE_DATA) {
    const lay = inlineLayout(v, dir, i);
    for (const x of lay.entries)
      if (sameBytes(x.name, name)) {
        x.inode = ino;
        x.fileType = entryType(v, fileType);
      }
    storeInline(v, dir, i, lay);
    return;
  }
  const b = v.tx.modify(slot.pblk);
  put32(b, slot.offset, ino);
  if (v.r.hasFileType) b[slot.offset + 7] = fileType;
  sealLeaf(v, dir, i, slot.pblk);
}

/** Sets the '..' of directory `dir` to `parent` (after a move). */
export function setDotDot(v: WritableVolume, dir: number, parent: number): void {
  setDotEntry(v, dir, true, parent);
}

/** Sets the '.' of directory `dir` to `self` (the directory was renumbered). Inline directories keep none. */
export function setDot(v: WritableVolume, dir: number, self: number): void {
  setDotEntry(v, dir, false, self);
}

/** Points '.' or '..' (the first two entries of a directory's first block) at `ino`. */
function setDotEntry(v: WritableVolume, dir: number, dotDot: boolean, ino: number): void {
  const i = v.readInode(dir);
  if (i.flags & FL_INLINE_DATA) {
    if (!dotDot) return;
    const lay = inlineLayout(v, dir, i);
    lay.parent = ino;
    storeInline(v, dir, i, lay);
    return;
  }
  const p0 = physicalBlock(blockRuns(v.r, dir, i), 0);
  if (p0 === undefined) throw new Ext4Error('CORRUPT', `directory ${dir} has no first block`, { inode: dir });
  const b = v.tx.modify(p0);
  if (i.flags & FL_INDEX) {
    // The dx_root keeps '.' at offset 0 and '..' at 12, both covered by its dx_tail checksum.
    put32(b, dotDot ? 12 : 0, ino);
    const countOffset = dxRootCountOffset(b);
    const limit = u16(b, countOffset);
    const count = u16(b, countOffset + 2);
    const seed = dirSeed(v, dir, i);
    if (seed !== undefined && countOffset + limit * 8 + 8 <= v.bs) setDxTail(b, countOffset, limit, count, seed);
    return;
  }
  const want = dotDot ? isDotDot : isDot;
  const e = parseDirEntries(b, 0, leafEnd(v, b), v.bs, v.r.hasFileType).find((x) => x.inode && want(x.name));
  if (!e) throw new Ext4Error('CORRUPT', `directory ${dir} has no '${dotDot ? '..' : '.'}' entry`, { inode: dir });
  put32(b, e.offset, ino);
  sealLeaf(v, dir, i, p0);
}

/** True when the directory lists nothing but '.' and '..'. */
export function isEmptyDir(v: WritableVolume, dir: number): boolean {
  return readDir(v.r, dir, v.readInode(dir)).length === 0;
}
