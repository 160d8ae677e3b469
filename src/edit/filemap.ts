/**
 * File contents of an image being edited: building a file's block map (an extent tree of any depth, or
 * classic indirect blocks on file systems without extents), freeing it, writing new data with holes
 * kept as holes, inline data, and truncation (kernel doc: ifork.rst, inlinedata.rst).
 */
import { Ext4Error } from '../core/errors.js';
import { u32, put32, isZero } from '../core/bytes.js';
import {
  buildExtentTree,
  extentTreeBlockCount,
  decodeExtentHeader,
  encodeExtentHeader,
  decodeExtent,
  encodeExtent,
  decodeExtentIndex,
  sealExtentBlock,
  EXTENT_MAGIC,
  EXTENT_HEADER_SIZE,
  EXTENT_ENTRY_SIZE,
  MAX_INIT_EXTENT_LEN,
  runsToExtents,
} from '../ext4/extent.js';
import { FL_EXTENTS, FL_INLINE_DATA, I_BLOCK_SIZE, type Inode } from '../ext4/inode.js';
import { INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { INLINE_DATA_INDEX, INLINE_DATA_NAME, isInlineDataAttr } from '../ext4/xattr.js';
import { xattrSpace } from '../ext4/xattr.js';
import { inodeAreaCapacity, listXattrs, writeXattrs, type StoredXattr } from './xattrs.js';
import type { Volume } from './volume.js';

/** A mapped run: logical blocks [lblk, lblk+len) at physical pblk. */
export interface Run {
  lblk: number;
  pblk: number;
  len: number;
  uninit?: boolean;
}

/** Bytes read from a source per step; pending new data is written out early past this much. */
const CHUNK = 4 << 20;
const EARLY_WRITE = 64 << 20;

/** A run of zero bytes the caller knows about: left as a hole without being scanned. */
export interface Hole {
  hole: number;
}

/** Sequential access to new file content. */
export interface DataSource {
  /** Total bytes when known up front (used to check for space before anything is written). */
  size?: number;
  /** The next piece of content (any length; `{ hole: n }` is n zero bytes left unallocated), or undefined at the end. */
  next(): Uint8Array | Hole | undefined;
  /** Releases what the source holds (a host file); called once the content is written or has failed. */
  close?(): void;
}

/** A source over bytes in memory. */
export function bytesSource(b: Uint8Array): DataSource {
  let done = false;
  return {
    size: b.length,
    next: () => {
      if (done || !b.length) return undefined;
      done = true;
      return b;
    },
  };
}

/** Whether a new file of this inode uses an extent tree (the feature is on) or a classic block map. */
export function usesExtents(v: Volume, inode: Inode): boolean {
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
  v: Volume,
  ino: number,
  inode: Inode,
  runs: readonly Run[],
  goal: number,
  extents: boolean,
): number {
  inode.flags &= ~FL_INLINE_DATA;
  if (extents) {
    const ex = runsToExtents(runs);
    const lastLblk = ex.length ? ex[ex.length - 1]!.lblk + ex[ex.length - 1]!.len : 0;
    if (lastLblk > 2 ** 32)
      throw new Ext4Error('TOO_LARGE', `inode ${ino}: file too large for an extent tree`, { inode: ino });
    const count = extentTreeBlockCount(ex.length, v.bs);
    const tree: number[] = [];
    for (const r of v.allocBlocks(goal, count)) for (let k = 0; k < r.len; k++) tree.push(r.start + k);
    const built = buildExtentTree(ex, v.bs, tree, v.csum ? v.r.inodeSeed(ino, inode.generation) : undefined);
    for (const b of built.blocks) v.tx.put(b.block, b.data);
    inode.block = built.iBlock;
    inode.flags |= FL_EXTENTS;
    return count;
  }
  inode.flags &= ~FL_EXTENTS;
  inode.block = new Uint8Array(I_BLOCK_SIZE);
  let metaBlocks = 0;
  for (const r of runs) {
    if (r.uninit)
      throw new Ext4Error('CORRUPT', `inode ${ino}: uninitialized extents in a block-mapped file`, { inode: ino });
    for (let k = 0; k < r.len; k++) metaBlocks += setBlockPointer(v, inode, r.lblk + k, r.pblk + k, r.pblk + k);
  }
  return metaBlocks;
}

/**
 * Sets logical block `lblk` of a block-mapped inode to `pblk`, allocating the indirect blocks on its
 * path when missing (near `goal`). Returns how many indirect blocks were allocated.
 */
export function setBlockPointer(v: Volume, inode: Inode, lblk: number, pblk: number, goal: number): number {
  const apb = v.bs / 4;
  if (pblk >= 2 ** 32) throw new Ext4Error('TOO_LARGE', 'block maps hold 32-bit block numbers only');
  if (lblk < 12) {
    put32(inode.block, lblk * 4, pblk);
    return 0;
  }
  // The path: the i_block slot (12, 13 or 14) and the index in each indirect level below it.
  let rest = lblk - 12;
  let slot = 12;
  let levels = 1;
  if (rest >= apb) {
    rest -= apb;
    slot = 13;
    levels = 2;
    if (rest >= apb * apb) {
      rest -= apb * apb;
      slot = 14;
      levels = 3;
      if (rest >= apb * apb * apb) throw new Ext4Error('TOO_LARGE', 'file too large for a block map');
    }
  }
  let allocated = 0;
  const child = (get: () => number, set: (b: number) => void): number => {
    let b = get();
    if (!b) {
      b = v.allocBlock(goal);
      v.tx.put(b, new Uint8Array(v.bs));
      set(b);
      allocated++;
    }
    return b;
  };
  let blk = child(
    () => u32(inode.block, slot * 4),
    (b) => put32(inode.block, slot * 4, b),
  );
  for (let level = levels; level >= 1; level--) {
    const span = apb ** (level - 1);
    const idx = Math.floor(rest / span);
    rest %= span;
    const cur = blk;
    if (level === 1) {
      put32(v.tx.modify(cur), idx * 4, pblk);
      break;
    }
    blk = child(
      () => u32(v.r.readBlocks(cur), idx * 4),
      (b) => put32(v.tx.modify(cur), idx * 4, b),
    );
  }
  return allocated;
}

/** Frees every block of a file's map (data and map blocks; at commit). */
export function freeMap(v: Volume, ino: number, inode: Inode): void {
  const m = v.r.mapping(ino, inode, true);
  for (const r of m.runs) v.freeLater(r.pblk, r.len);
  for (const b of m.metaBlocks) v.freeLater(b, 1);
}

/** i_blocks for a file with `dataBlocks` mapped and `mapBlocks` of map, plus its attribute block. */
export function setFileBlocks(v: Volume, inode: Inode, fsBlocks: number): void {
  v.setBlocks512(inode, (fsBlocks + (inode.fileAcl ? 1 : 0)) * (v.bs / 512));
}

/** Records a file size, setting large_file when it passes 2 GiB (what the kernel does). */
export function setSize(v: Volume, inode: Inode, size: number): void {
  inode.size = size;
  if (size > 0x7fffffff) v.needRoCompat(RO_COMPAT.large_file);
}

// ---- inline data ----

/** Whether new content of this inode may be stored inline, and how many bytes fit. */
export function inlineCapacity(v: Volume, ino: number, inode: Inode): number {
  if (!(v.sb.s_feature_incompat & INCOMPAT.inline_data) || v.inodeSize <= 128) return 0;
  const others = listXattrs(v, ino).filter((x) => !isInlineDataAttr(x));
  const cap = inodeAreaCapacity(v, inode.extraIsize);
  const room =
    cap - xattrSpace([...others, { index: INLINE_DATA_INDEX, name: INLINE_DATA_NAME, value: new Uint8Array(0) }]);
  if (room < 0) return 0;
  return I_BLOCK_SIZE + (room & ~3);
}

/** Stores `bytes` as the inode's inline data (i_block, then the system.data attribute). */
export function writeInline(v: Volume, ino: number, inode: Inode, bytes: Uint8Array): void {
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
export function clearInline(v: Volume, ino: number, inode: Inode): void {
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

// ---- writing content ----

/**
 * Replaces a regular file's content with what `src` yields: the old map (or inline data) is released,
 * all-zero blocks stay holes, data goes into newly allocated blocks near the inode (contiguous where
 * free space allows). Small content goes inline when the file system has inline_data.
 */
export function writeContent(
  v: Volume,
  ino: number,
  inode: Inode,
  src: DataSource,
  opts: { inline?: boolean } = {},
): void {
  try {
    const w = new ContentWriter(v, ino, inode, { ...opts, size: src.size });
    for (let c = src.next(); c; c = src.next()) w.push(c);
    w.finish();
  } finally {
    src.close?.();
  }
}

/**
 * The content of one file as it arrives, piece by piece (`writeContent` pulls the pieces; a stream
 * pushes them). The inode's old content is released when the writer is made; `finish` maps the new.
 */
export class ContentWriter {
  private readonly bs: number;
  private readonly extents: boolean;
  /** Inline data is possible up to this many bytes (0: never); pieces wait in `head` until decided. */
  private inlineMax: number;
  private head: (Uint8Array | Hole)[] = [];
  private headBytes = 0;
  private readonly runs: Run[] = [];
  private goal: number;
  private size = 0;
  private buf: Uint8Array;
  private fill = 0;

  constructor(
    private readonly v: Volume,
    private readonly ino: number,
    private readonly inode: Inode,
    opts: { inline?: boolean; size?: number } = {},
  ) {
    const bs = (this.bs = v.bs);
    if (opts.size !== undefined && Math.ceil(opts.size / bs) > v.freeBlocks)
      throw new Ext4Error(
        'NO_SPACE',
        `${v.name}: ${opts.size} bytes need up to ${Math.ceil(opts.size / bs)} blocks, ${v.freeBlocks} are free`,
      );
    // Release what the file holds now.
    if (inode.flags & FL_INLINE_DATA) clearInline(v, ino, inode);
    else if (v.r.hasBlockMap(inode)) freeMap(v, ino, inode);
    this.extents = usesExtents(v, inode);
    inode.block = new Uint8Array(I_BLOCK_SIZE);
    // Nothing mapped any more: i_blocks counts only an attribute block until the new content is in.
    setFileBlocks(v, inode, 0);
    if (this.extents) inode.flags |= FL_EXTENTS;
    this.inlineMax = opts.inline === false ? 0 : inlineCapacity(v, ino, inode);
    this.goal = v.inodeGoal(ino);
    this.buf = chunkBuffer(opts.size === undefined ? CHUNK : Math.min(CHUNK, Math.ceil(opts.size / bs) * bs || bs));
  }

  push(c: Uint8Array | Hole): void {
    if (!(c instanceof Uint8Array) && (!Number.isSafeInteger(c.hole) || c.hole < 0))
      throw new Ext4Error('BAD_OPTION', `hole of ${c.hole} bytes`);
    if (this.inlineMax) {
      // Small content may go inline: pieces wait until one byte more than fits has come.
      const n = c instanceof Uint8Array ? c.length : c.hole;
      // A copy: sources may hand out views of a buffer they reuse.
      this.head.push(c instanceof Uint8Array ? c.slice() : c);
      this.headBytes += n;
      if (this.headBytes <= this.inlineMax) return;
      this.inlineMax = 0;
      const head = this.head;
      this.head = [];
      for (const h of head) this.feed(h);
      return;
    }
    this.feed(c);
  }

  finish(): void {
    const { v, ino, inode } = this;
    if (this.inlineMax && this.headBytes > 0) {
      writeInline(v, ino, inode, concat(this.head, this.headBytes));
      return;
    }
    if (this.fill) this.emit(this.fill);
    const runs = this.runs;
    const mapBlocks = buildMap(v, ino, inode, runs, runs.length ? runs[0]!.pblk : v.inodeGoal(ino), this.extents);
    setSize(v, inode, this.size);
    setFileBlocks(v, inode, runs.reduce((a, r) => a + r.len, 0) + mapBlocks);
  }

  private feed(c: Uint8Array | Hole): void {
    if (c instanceof Uint8Array) this.take(c);
    else this.skip(c.hole);
    if (this.size > 2 ** 32 * this.bs)
      throw new Ext4Error('TOO_LARGE', `inode ${this.ino}: content larger than an ext4 file can be`);
  }

  /** Blocks [0, upto/bs) of the buffer, at logical block (size - fill) / bs: zero blocks become holes. */
  private emit(upto: number): void {
    const { v, bs, buf } = this;
    const base = (this.size - this.fill) / bs;
    const nb = Math.ceil(upto / bs);
    if (upto % bs) buf.fill(0, upto, nb * bs);
    let k = 0;
    while (k < nb) {
      if (isZero(buf, k * bs, bs)) {
        k++;
        continue;
      }
      let j = k + 1;
      while (j < nb && !isZero(buf, j * bs, bs)) j++;
      let off = k;
      for (const r of v.allocBlocks(this.goal, j - k)) {
        v.tx.addData(r.start, v.tx.keepData(buf.subarray(off * bs, (off + r.len) * bs)));
        this.runs.push({ lblk: base + off, pblk: r.start, len: r.len });
        off += r.len;
        this.goal = r.start + r.len;
      }
      k = j;
    }
    if (v.tx.pendingDataBytes >= EARLY_WRITE) v.writeDataEarly();
  }

  private take(c: Uint8Array): void {
    const buf = this.buf;
    let o = 0;
    while (o < c.length) {
      const n = Math.min(c.length - o, buf.length - this.fill);
      buf.set(c.subarray(o, o + n), this.fill);
      this.fill += n;
      this.size += n;
      o += n;
      if (this.fill === buf.length) {
        this.emit(this.fill);
        this.fill = 0;
      }
    }
  }

  /** Zeros up to a block boundary go through the buffer; whole blocks of hole are only counted. */
  private skip(n: number): void {
    const bs = this.bs;
    const pad = Math.min(n, (bs - (this.fill % bs)) % bs);
    if (pad) this.take(ZEROS.subarray(0, pad));
    n -= pad;
    if (n >= bs) {
      if (this.fill) this.emit(this.fill);
      this.fill = 0;
      const whole = Math.floor(n / bs) * bs;
      this.size += whole;
      n -= whole;
    }
    if (n) this.take(ZEROS.subarray(0, n));
  }
}

/** Zero bytes to pad with (never written to); as long as the largest block. */
const ZEROS = new Uint8Array(65536);

let shared: Uint8Array | undefined;
/**
 * The buffer content is cut into blocks in: one for every writer (writers never overlap, and every
 * block leaves it as a copy), grown to 4 MiB at most.
 */
function chunkBuffer(bytes: number): Uint8Array {
  const want = Math.min(CHUNK, Math.max(bytes, 65536));
  if (!shared || shared.length < want) shared = new Uint8Array(want);
  return shared;
}

function concat(parts: (Uint8Array | Hole)[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    if (p instanceof Uint8Array) out.set(p, o);
    o += p instanceof Uint8Array ? p.length : p.hole;
  }
  return out;
}

// ---- truncation ----

/** Zeros bytes [from, bs) of data block `pblk` (pending new data is patched where it waits). */
function zeroBlockTail(v: Volume, pblk: number, from: number): void {
  const pending = v.tx.modifyPending(pblk);
  if (pending) {
    pending.fill(0, from);
    return;
  }
  const cur = v.tx.readData(pblk, 1);
  if (isZero(cur, from, v.bs - from)) return;
  // Changed in place as a metadata block would be: it is one block, and the journal can carry it.
  v.tx.modify(pblk).fill(0, from);
}

/**
 * Sets a file's size: blocks past the new end are freed, the tail of the new last block is zeroed
 * (so growing the file again reads zeros), and growing leaves a hole. Inline files stay inline while
 * they fit.
 */
export function truncateFile(v: Volume, ino: number, inode: Inode, newSize: number, trim = false): void {
  const bs = v.bs;
  const oldSize = inode.size;
  // `trim`: also when the size stays, free what lies past it (an orphan's interrupted truncation).
  if (newSize === oldSize && !trim) return;
  if (newSize > 2 ** 32 * bs) throw new Ext4Error('TOO_LARGE', `size ${newSize} is more than an ext4 file can hold`);
  if (inode.flags & FL_INLINE_DATA) {
    const data = v.r.inlineData(ino, inode).subarray(0, oldSize);
    const next = new Uint8Array(Math.min(newSize, Math.max(bs, I_BLOCK_SIZE)));
    next.set(data.subarray(0, Math.min(data.length, newSize)));
    if (newSize <= inlineCapacity(v, ino, inode)) {
      writeInline(v, ino, inode, next.subarray(0, newSize));
      return;
    }
    // Too large for the inode: the content moves to a block, the rest of the file is a hole.
    clearInline(v, ino, inode);
    writeContent(v, ino, inode, bytesSource(next.subarray(0, Math.min(newSize, bs))));
    setSize(v, inode, newSize);
    return;
  }
  if (!v.r.hasBlockMap(inode)) {
    setSize(v, inode, newSize);
    return;
  }
  const m = v.r.mapping(ino, inode, true);
  const keep = Math.ceil(newSize / bs);
  const runs: Run[] = [];
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
  let mapBlocks = m.metaBlocks.length;
  if (dropped) {
    for (const b of m.metaBlocks) v.freeLater(b, 1);
    mapBlocks = buildMap(
      v,
      ino,
      inode,
      runs,
      runs.length ? runs[runs.length - 1]!.pblk : v.inodeGoal(ino),
      usesExtents(v, inode),
    );
  }
  // Zero the partial last block's tail: past the new end when shrinking, past the old end when growing.
  const edge = Math.min(oldSize, newSize);
  if (edge % bs) {
    const lblk = Math.floor(edge / bs);
    const r = runs.find((x) => lblk >= x.lblk && lblk < x.lblk + x.len);
    if (r && !r.uninit) zeroBlockTail(v, r.pblk + (lblk - r.lblk), edge % bs);
  }
  setSize(v, inode, newSize);
  setFileBlocks(v, inode, runs.reduce((a, r) => a + r.len, 0) + mapBlocks);
}

// ---- growing a directory by one block ----

/**
 * Maps logical block `lblk` (just past the end) of a directory to `pblk`, changing the map in place
 * where it can: the last extent grows, or a new extent goes in the last leaf; a full tree is rebuilt.
 * Returns the number of map blocks added (may be negative after a rebuild).
 */
export function appendBlock(v: Volume, ino: number, inode: Inode, lblk: number, pblk: number): number {
  if (!(inode.flags & FL_EXTENTS)) return setBlockPointer(v, inode, lblk, pblk, pblk);
  const seed = v.csum ? v.r.inodeSeed(ino, inode.generation) : undefined;
  // Follow the rightmost path to the last leaf.
  let node = inode.block;
  let nodeBlock = -1;
  for (let guard = 0; guard < 8; guard++) {
    const h = decodeExtentHeader(node, 0);
    if (h.magic !== EXTENT_MAGIC) throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent header`, { inode: ino });
    if (h.depth === 0) {
      const last = h.entries ? decodeExtent(node, EXTENT_HEADER_SIZE + (h.entries - 1) * EXTENT_ENTRY_SIZE) : undefined;
      const buf = nodeBlock < 0 ? node : v.tx.modify(nodeBlock);
      if (
        last &&
        !last.uninit &&
        last.lblk + last.len === lblk &&
        last.pblk + last.len === pblk &&
        last.len < MAX_INIT_EXTENT_LEN
      ) {
        encodeExtent(buf, EXTENT_HEADER_SIZE + (h.entries - 1) * EXTENT_ENTRY_SIZE, { ...last, len: last.len + 1 });
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
  // No room on the right edge: rebuild the whole tree with the new block.
  const m = v.r.mapping(ino, inode, true);
  for (const b of m.metaBlocks) v.freeLater(b, 1);
  const added = buildMap(v, ino, inode, [...m.runs, { lblk, pblk, len: 1 }], pblk, true);
  return added - m.metaBlocks.length;
}
