/**
 * Inline data, both ways (kernel doc: inlinedata.rst): a small file's or directory's content kept in the
 * inode, i_block first, then the value of the system.data attribute. Read as bytes or as a directory's
 * two areas of entries; written for file content (how much fits, store, drop) and for a directory's
 * entries. Moving an outgrown directory to a block is fs/dir-edit.ts's.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, u32 } from '../core/bytes.js';
import { INCOMPAT } from '../ext4/features.js';
import { FL_EXTENTS, FL_INLINE_DATA, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { parseDirEntries, encodeDirent, direntSize, type DirEntry, type RawDirent } from '../ext4/dirent.js';
import { INLINE_DATA_INDEX, INLINE_DATA_NAME, isInlineDataAttr, xattrSpace } from '../ext4/xattr.js';
import { setSize } from './inodes.js';
import { rawXattrs, inodeAreaCapacity, listXattrs, writeXattrs, type StoredXattr } from './xattrs.js';
import type { XattrVolume } from './volume.js';
import type { WritableVolume } from './writable.js';

/** i_block of an inline directory starts with the parent's inode number. */
export const INLINE_DIR_PARENT_SIZE = 4;

/** Inline data: i_block then the system.data attribute. */
export function inlineData(v: XattrVolume, ino: number, i: Inode): Uint8Array {
  const x = rawXattrs(v, ino).find(isInlineDataAttr);
  const extra = x?.value ?? new Uint8Array(0);
  const all = new Uint8Array(I_BLOCK_SIZE + extra.length);
  all.set(i.block);
  all.set(extra, I_BLOCK_SIZE);
  return all;
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
  const first = d.subarray(0, I_BLOCK_SIZE);
  const areas = [
    {
      data: first,
      entries: parseDirEntries(first, INLINE_DIR_PARENT_SIZE, I_BLOCK_SIZE, I_BLOCK_SIZE, v.hasFileType, where),
    },
  ];
  if (d.length > I_BLOCK_SIZE) {
    const rest = d.subarray(I_BLOCK_SIZE);
    areas.push({ data: rest, entries: parseDirEntries(rest, 0, rest.length, rest.length, v.hasFileType, where) });
  }
  return { parent: u32(d, 0), areas };
}

// ---- file content ----

function emptyInlineData(): StoredXattr {
  return { index: INLINE_DATA_INDEX, name: INLINE_DATA_NAME, value: new Uint8Array(0) };
}

/** How many bytes of new content of this inode may be stored inline (0: none). */
export function inlineCapacity(v: WritableVolume, ino: number, inode: Inode): number {
  if (!(v.sb.s_feature_incompat & INCOMPAT.inline_data) || v.inodeSize <= 128) return 0;
  const others = listXattrs(v, ino).filter((x) => !isInlineDataAttr(x));
  const room = inodeAreaCapacity(v, inode.extraIsize) - xattrSpace([...others, emptyInlineData()]);
  if (room < 0) return 0;
  return I_BLOCK_SIZE + (room & ~3);
}

/** Stores `bytes` as the inode's inline data (i_block, then the system.data attribute). */
export function writeInline(v: WritableVolume, ino: number, inode: Inode, bytes: Uint8Array): void {
  inode.block = new Uint8Array(I_BLOCK_SIZE);
  inode.block.set(bytes.subarray(0, I_BLOCK_SIZE));
  inode.flags = (inode.flags & ~FL_EXTENTS) | FL_INLINE_DATA;
  setSize(v, inode, bytes.length);
  const rest = bytes.length > I_BLOCK_SIZE ? bytes.slice(I_BLOCK_SIZE) : new Uint8Array(0);
  const list: StoredXattr[] = listXattrs(v, ino).filter((x) => !isInlineDataAttr(x));
  list.unshift({ index: INLINE_DATA_INDEX, name: INLINE_DATA_NAME, value: rest });
  writeXattrs(v, ino, inode, list);
}

/** Drops an inode's inline data (flag, i_block and the system.data attribute). */
export function clearInline(v: WritableVolume, ino: number, inode: Inode): void {
  if (!(inode.flags & FL_INLINE_DATA)) return;
  inode.flags &= ~FL_INLINE_DATA;
  inode.block = new Uint8Array(I_BLOCK_SIZE);
  writeXattrs(
    v,
    ino,
    inode,
    listXattrs(v, ino).filter((x) => !isInlineDataAttr(x)),
  );
}

// ---- directories ----

/** An inline directory's content as the editor changes it. */
export interface InlineLayout {
  parent: number;
  entries: DirEntry[];
  /** Current length of the system.data value (the second area). */
  extra: number;
}

export function inlineLayout(v: WritableVolume, dir: number, i: Inode): InlineLayout {
  const { parent, areas } = inlineDir(v.r, dir, i);
  const entries: DirEntry[] = [];
  for (const a of areas)
    for (const e of a.entries) if (e.inode) entries.push({ inode: e.inode, name: e.name, fileType: e.fileType });
  return { parent, entries, extra: areas[1]?.data.length ?? 0 };
}

/** Packs entries into an inline area of `len` bytes (an unused entry fills an empty area). */
function packArea(entries: DirEntry[], len: number): Uint8Array {
  const b = new Uint8Array(len);
  if (!len) return b;
  let off = 0;
  entries.forEach((e, k) => {
    const size = k === entries.length - 1 ? len - off : direntSize(e.name.length);
    encodeDirent(b, off, e, size);
    off += size;
  });
  if (!entries.length) encodeDirent(b, 0, { inode: 0, name: new Uint8Array(0), fileType: 0 }, len);
  return b;
}

/**
 * Makes `i` an empty inline directory (the parent number and an empty area, like the kernel on
 * inline_data file systems) and writes its record. False when inline data is off or does not fit.
 */
export function initInlineDir(v: WritableVolume, ino: number, i: Inode, parent: number): boolean {
  const emptyData = [emptyInlineData()];
  if (!(v.sb.s_feature_incompat & INCOMPAT.inline_data) || inodeAreaCapacity(v, i.extraIsize) < xattrSpace(emptyData))
    return false;
  const block = new Uint8Array(I_BLOCK_SIZE);
  put32(block, 0, parent);
  encodeDirent(block, INLINE_DIR_PARENT_SIZE, { inode: 0, name: new Uint8Array(0), fileType: 0 }, I_BLOCK_SIZE - 4);
  i.block = block;
  i.flags = (i.flags & ~FL_EXTENTS) | FL_INLINE_DATA;
  i.size = I_BLOCK_SIZE;
  v.initInode(ino, i);
  writeXattrs(v, ino, i, emptyData);
  return true;
}

/**
 * Writes an inline directory's entries: the first area holds what fits in i_block, the rest goes to
 * system.data (grown as needed, never past what the inode holds). False when they do not fit.
 */
export function writeInlineDir(v: WritableVolume, dir: number, i: Inode, lay: InlineLayout): boolean {
  const first: DirEntry[] = [];
  const rest: DirEntry[] = [];
  let used = 0;
  const area0 = I_BLOCK_SIZE - INLINE_DIR_PARENT_SIZE;
  for (const e of lay.entries) {
    const size = direntSize(e.name.length);
    if (!rest.length && used + size <= area0) {
      first.push(e);
      used += size;
    } else rest.push(e);
  }
  const restBytes = rest.reduce((a, e) => a + direntSize(e.name.length), 0);
  const others = listXattrs(v, dir).filter((x) => !isInlineDataAttr(x));
  // system.data may take the whole attribute area: other attributes move to the block if need be.
  const room = (inodeAreaCapacity(v, i.extraIsize) - xattrSpace([emptyInlineData()])) & ~3;
  if (restBytes > room) return false;
  const extra = (Math.min(Math.max(lay.extra, restBytes), room) + 3) & ~3;
  const block = new Uint8Array(I_BLOCK_SIZE);
  put32(block, 0, lay.parent);
  block.set(packArea(first, area0), INLINE_DIR_PARENT_SIZE);
  i.block = block;
  i.size = I_BLOCK_SIZE + extra;
  try {
    writeXattrs(v, dir, i, [
      { index: INLINE_DATA_INDEX, name: INLINE_DATA_NAME, value: packArea(rest, extra) },
      ...others,
    ]);
  } catch (e) {
    // The other attributes do not fit beside it: the directory moves to a block instead.
    if (e instanceof Ext4Error && e.code === 'NO_SPACE') return false;
    throw e;
  }
  return true;
}
