/**
 * Directory changes in an image being edited (kernel doc: directory.rst, inlinedata.rst): entries are
 * added, removed and repointed in linear blocks, in htree leaves (a full leaf splits in two by hash, a
 * full index node splits, a full root grows a level) and in inline directories (which move to a block
 * when they outgrow the inode). A linear directory that outgrows its one block becomes indexed, as the
 * kernel does when dir_index is on.
 */
import { Ext4Error } from '../core/errors.js';
import { put16, put32, sameBytes, u16 } from '../core/bytes.js';
import { COMPAT, INCOMPAT } from '../ext4/features.js';
import {
  parseDirEntries,
  encodeDirent,
  encodeRecLen,
  direntSize,
  hasDirTail,
  packDirBlocks,
  DIR_TAIL_SIZE,
  FT_DIR,
  type DirEntry,
  isDotDot,
  isDotOrDotDot,
  type RawDirent,
} from '../ext4/dirent.js';
import {
  DX_NODE_COUNT_OFFSET,
  DX_ROOT_COUNT_OFFSET,
  DX_ROOT_INFO_OFFSET,
  dxLimit,
  dxRootCountOffset,
  initDxNode,
  newDxRoot,
  putDxEntries,
  setDxTail,
  type DxEntry,
} from '../ext4/htree.js';
import { dirHash, DX_HASH_HALF_MD4, DX_HASH_TEA } from '../ext4/dirhash.js';
import { FL_EXTENTS, FL_INDEX, FL_INLINE_DATA, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { INLINE_DIR_PARENT_SIZE, type DirSlot } from '../fs/dir.js';
import type { DxFrame } from '../fs/htree.js';
import { xattrSpace, INLINE_DATA_INDEX, INLINE_DATA_NAME, isInlineDataAttr } from '../ext4/xattr.js';
import { appendBlock, buildMap, clearInline, setFileBlocks, setSize } from './filemap.js';
import { inodeAreaCapacity, listXattrs, writeXattrs } from './xattrs.js';
import type { Volume } from './volume.js';

const DOT = new Uint8Array([0x2e]);
const DOTDOT = new Uint8Array([0x2e, 0x2e]);

function hasFileType(v: Volume): boolean {
  return (v.sb.s_feature_incompat & INCOMPAT.filetype) !== 0;
}

/** The file type byte stored in entries (0 without the filetype feature). */
export function entryType(v: Volume, ft: number): number {
  return hasFileType(v) ? ft : 0;
}

function seedOf(v: Volume, ino: number, i: Inode): number | undefined {
  return v.csum ? v.r.inodeSeed(ino, i.generation) : undefined;
}

/** Where entries may go in a leaf block: up to its csum tail when it has one. */
function leafEnd(v: Volume, b: Uint8Array): number {
  return v.csum && hasDirTail(b, v.bs) ? v.bs - DIR_TAIL_SIZE : v.bs;
}

/** The leaf's csum tail is due (computed at commit). */
function sealLeaf(v: Volume, dir: number, i: Inode, block: number): void {
  if (v.csum) v.sealLeafLater(block, seedOf(v, dir, i)!);
}

/**
 * Puts an entry into [start, end) of a block: into an unused entry that is large enough, or into the
 * slack after a live entry (kernel: add_dirent_to_buf). `recBase` decodes rec_len (the block size).
 */
function insertInto(b: Uint8Array, start: number, end: number, recBase: number, e: DirEntry): boolean {
  const x = roomIn(parseDirEntries(b, start, end, recBase), direntSize(e.name.length));
  if (x) putInto(b, x, e);
  return x !== undefined;
}

/** The entry whose record has room for `need` more bytes (an unused one, or a live one's slack). */
function roomIn(entries: Iterable<RawDirent>, need: number): RawDirent | undefined {
  for (const x of entries) if (x.recLen - (x.inode === 0 ? 0 : direntSize(x.name.length)) >= need) return x;
  return undefined;
}

/** Writes `e` into the room `roomIn` found at `x`: over an unused entry, or after a live one cut short. */
function putInto(b: Uint8Array, x: RawDirent, e: DirEntry): void {
  if (x.inode === 0) return encodeDirent(b, x.offset, e, x.recLen);
  const used = direntSize(x.name.length);
  put16(b, x.offset + 4, encodeRecLen(used));
  encodeDirent(b, x.offset + used, e, x.recLen - used);
}

/** Removes the entry at `offset` of [start, end): merged into the previous entry, or marked unused. */
function removeAt(b: Uint8Array, start: number, end: number, recBase: number, offset: number): void {
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
function packLeaf(v: Volume, entries: DirEntry[], seed: number | undefined): Uint8Array | undefined {
  const usable = v.bs - (seed !== undefined ? DIR_TAIL_SIZE : 0);
  if (entries.reduce((a, e) => a + direntSize(e.name.length), 0) > usable) return undefined;
  return packDirBlocks(entries, v.bs, seed)[0]!;
}

// ---- growing a directory ----

/** Appends a block holding `data` to the directory, updating its map, size and i_blocks in `i`. */
function appendDirBlock(v: Volume, dir: number, i: Inode, data: Uint8Array): { lblk: number; pblk: number } {
  const runs = v.r.blockRuns(dir, i);
  const last = runs[runs.length - 1];
  const lblk = Math.ceil(i.size / v.bs);
  const pblk = v.allocBlock(last ? last.pblk + last.len : v.inodeGoal(dir));
  v.tx.put(pblk, data);
  const mapAdded = appendBlock(v, dir, i, lblk, pblk);
  setSize(v, i, (lblk + 1) * v.bs);
  v.addBlocks512(i, (1 + mapAdded) * (v.bs / 512));
  return { lblk, pblk };
}

// ---- new directories ----

/**
 * Sets up the content of a new directory inode `i` (not yet written): inline (the parent number and
 * an empty area, like the kernel on inline_data file systems) or one block with '.' and '..'.
 */
export function initDir(v: Volume, ino: number, i: Inode, parent: number): void {
  const emptyData = [emptyInlineData()];
  if (v.sb.s_feature_incompat & INCOMPAT.inline_data && inodeAreaCapacity(v, i.extraIsize) >= xattrSpace(emptyData)) {
    const block = new Uint8Array(I_BLOCK_SIZE);
    put32(block, 0, parent);
    encodeDirent(block, INLINE_DIR_PARENT_SIZE, { inode: 0, name: new Uint8Array(0), fileType: 0 }, I_BLOCK_SIZE - 4);
    i.block = block;
    i.flags = (i.flags & ~FL_EXTENTS) | FL_INLINE_DATA;
    i.size = I_BLOCK_SIZE;
    v.initInode(ino, i);
    writeXattrs(v, ino, i, emptyData);
    return;
  }
  setFirstBlock(v, ino, i, parent, []);
  v.initInode(ino, i);
}

/** Gives directory `dir` its first (and only) block: '.', '..' and `entries`. */
function setFirstBlock(v: Volume, dir: number, i: Inode, parent: number, entries: DirEntry[]): void {
  const ft = entryType(v, FT_DIR);
  const data = packLeaf(
    v,
    [{ inode: dir, name: DOT, fileType: ft }, { inode: parent, name: DOTDOT, fileType: ft }, ...entries],
    seedOf(v, dir, i),
  );
  if (!data) throw new Ext4Error('CORRUPT', `directory ${dir}: its entries do not fit one block`, { inode: dir });
  const pblk = v.allocBlock(v.inodeGoal(dir));
  v.tx.put(pblk, data);
  const extents = (v.sb.s_feature_incompat & INCOMPAT.extent) !== 0;
  const mapBlocks = buildMap(v, dir, i, [{ lblk: 0, pblk, len: 1 }], pblk, extents);
  i.size = v.bs;
  setFileBlocks(v, i, 1 + mapBlocks);
}

// ---- inline directories ----

interface InlineLayout {
  parent: number;
  entries: DirEntry[];
  /** Current length of the system.data value (the second area). */
  extra: number;
}

function inlineLayout(v: Volume, dir: number, i: Inode): InlineLayout {
  const { parent, areas } = v.r.inlineDir(dir, i);
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
 * Writes an inline directory's entries: the first area holds what fits in i_block, the rest goes to
 * system.data (grown as needed, never past what the inode holds). False when they do not fit.
 */
function writeInlineDir(v: Volume, dir: number, i: Inode, lay: InlineLayout): boolean {
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

function emptyInlineData(): { index: number; name: Uint8Array; value: Uint8Array } {
  return { index: INLINE_DATA_INDEX, name: INLINE_DATA_NAME, value: new Uint8Array(0) };
}

/** Stores an inline directory's entries, moving it to a block when they no longer fit the inode. */
function storeInline(v: Volume, dir: number, i: Inode, lay: InlineLayout): void {
  if (writeInlineDir(v, dir, i, lay)) return;
  inlineToBlock(v, dir, i, lay);
  v.writeInode(dir, i);
}

/** Moves an inline directory into a block of its own (kernel: ext4_convert_inline_dir). */
function inlineToBlock(v: Volume, dir: number, i: Inode, lay: InlineLayout): void {
  clearInline(v, dir, i);
  setFirstBlock(v, dir, i, lay.parent, lay.entries);
}

// ---- htree ----

/**
 * Splits entries that no longer fit one leaf into two, by hash: the upper ones move until more than half
 * a block has moved (the kernel's do_split). `hash2` starts the upper leaf; `continued` (the index
 * entry's low bit) says names with that hash stand in the lower leaf too.
 */
function splitLeaf(
  v: Volume,
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
function splitPoint(v: Volume, sorted: { e: DirEntry }[]): number {
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
  v: Volume;
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

function dxAdd(v: Volume, dir: number, i: Inode, e: DirEntry): void {
  const r = v.r;
  const bs = v.bs;
  const runs = r.blockRuns(dir, i);
  const { frames, leaf } = r.dxFind(dir, i, e.name, runs);
  const leafP = r.physicalBlock(runs, leaf)!;
  const b = v.tx.modify(leafP);
  const end = leafEnd(v, b);
  if (insertInto(b, 0, end, bs, e)) {
    sealLeaf(v, dir, i, leafP);
    return;
  }
  const rootBuf = r.readBlocks(frames[0]!.pblk);
  const version = r.dirHashVersion(rootBuf);
  const seed = seedOf(v, dir, i);
  const all = parseDirEntries(b, 0, end, bs, hasFileType(v))
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
function makeIndexed(v: Volume, dir: number, i: Inode, e: DirEntry): void {
  const bs = v.bs;
  const runs = v.r.blockRuns(dir, i);
  const p0 = v.r.physicalBlock(runs, 0)!;
  const old = v.r.readBlocks(p0);
  const list = parseDirEntries(old, 0, leafEnd(v, old), bs, hasFileType(v));
  const dotdot = list.find((x) => x.inode && isDotDot(x.name));
  const parent = dotdot?.inode ?? 2;
  const entries: DirEntry[] = list
    .filter((x) => x.inode && !isDotOrDotDot(x.name))
    .map((x) => ({ inode: x.inode, name: x.name, fileType: x.fileType }));
  entries.push(e);
  const stored = v.sb.s_def_hash_version <= DX_HASH_TEA ? v.sb.s_def_hash_version : DX_HASH_HALF_MD4;
  const root = newDxRoot(bs, dir, parent, entryType(v, FT_DIR), stored, 0);
  const version = v.r.dirHashVersion(root);
  const seed = seedOf(v, dir, i);
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

// ---- the operations ----

/**
 * Adds `name` -> `ino` to directory `dir` (the caller has checked the name is free). Returns the
 * directory's inode as updated and written.
 */
export function addEntry(v: Volume, dir: number, name: Uint8Array, ino: number, fileType: number): Inode {
  const i = v.readInode(dir);
  const e: DirEntry = { inode: ino, name, fileType: entryType(v, fileType) };
  if (i.flags & FL_INLINE_DATA) {
    const lay = inlineLayout(v, dir, i);
    lay.entries.push(e);
    if (!writeInlineDir(v, dir, i, lay)) {
      lay.entries.pop();
      inlineToBlock(v, dir, i, lay);
      v.writeInode(dir, i);
      return addEntry(v, dir, name, ino, fileType);
    }
    return v.readInode(dir);
  }
  if (v.r.usesIndex(i)) dxAdd(v, dir, i, e);
  else {
    let added = false;
    let blocks = 0;
    for (const blk of v.r.dirBlocks(dir, i)) {
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
      else {
        const data = packLeaf(v, [e], seedOf(v, dir, i))!;
        appendDirBlock(v, dir, i, data);
      }
    }
  }
  v.writeInode(dir, i);
  return i;
}

/** Directory `dir` and where `name` stands in it (NOT_FOUND when it does not). */
function slotOf(v: Volume, dir: number, name: Uint8Array): { i: Inode; slot: DirSlot } {
  const i = v.readInode(dir);
  const slot = v.r.findEntry(dir, name, i);
  if (!slot)
    throw new Ext4Error('NOT_FOUND', `no entry ${Buffer.from(name).toString('utf8')} in directory ${dir}`, {
      inode: dir,
    });
  return { i, slot };
}

/** Removes `name` from directory `dir`; returns the entry's inode number. */
export function removeEntry(v: Volume, dir: number, name: Uint8Array): number {
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
export function retarget(v: Volume, dir: number, name: Uint8Array, ino: number, fileType: number): void {
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
  if (hasFileType(v)) b[slot.offset + 7] = fileType;
  sealLeaf(v, dir, i, slot.pblk);
}

/** Sets the '..' of directory `dir` to `parent` (after a move). */
export function setDotDot(v: Volume, dir: number, parent: number): void {
  const i = v.readInode(dir);
  if (i.flags & FL_INLINE_DATA) {
    const lay = inlineLayout(v, dir, i);
    lay.parent = parent;
    storeInline(v, dir, i, lay);
    return;
  }
  const runs = v.r.blockRuns(dir, i);
  const p0 = v.r.physicalBlock(runs, 0);
  if (p0 === undefined) throw new Ext4Error('CORRUPT', `directory ${dir} has no first block`, { inode: dir });
  const b = v.tx.modify(p0);
  if (i.flags & FL_INDEX) {
    // The dx_root keeps '..' at offset 12, covered by its dx_tail checksum.
    put32(b, 12, parent);
    const countOffset = dxRootCountOffset(b);
    const limit = u16(b, countOffset);
    const count = u16(b, countOffset + 2);
    const seed = seedOf(v, dir, i);
    if (seed !== undefined && countOffset + limit * 8 + 8 <= v.bs) setDxTail(b, countOffset, limit, count, seed);
    return;
  }
  const dd = parseDirEntries(b, 0, leafEnd(v, b), v.bs, hasFileType(v)).find((x) => x.inode && isDotDot(x.name));
  if (!dd) throw new Ext4Error('CORRUPT', `directory ${dir} has no '..' entry`, { inode: dir });
  put32(b, dd.offset, parent);
  sealLeaf(v, dir, i, p0);
}

/** True when the directory lists nothing but '.' and '..'. */
export function isEmptyDir(v: Volume, dir: number): boolean {
  return v.r.readDir(dir).length === 0;
}
