/** Extent trees (kernel doc: ifork.rst, "Extent Tree"). */
import { u16, u32, put16, put32, hi32, lo32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { Ext4Error } from '../core/errors.js';

export const EXTENT_MAGIC = 0xf30a;
export const EXTENT_HEADER_SIZE = 12;
export const EXTENT_ENTRY_SIZE = 12;
/** An initialized extent covers at most 32768 blocks; uninitialized ones at most 32767. */
export const MAX_INIT_EXTENT_LEN = 32768;
export const MAX_UNINIT_EXTENT_LEN = 32767;
/** Deeper trees than this are corrupt (the kernel's own limit is 5). */
export const MAX_EXTENT_DEPTH = 5;

export interface ExtentHeader {
  magic: number;
  entries: number;
  max: number;
  depth: number;
  generation: number;
}
/** A leaf extent: `len` logical blocks from `lblk` mapped to physical `pblk`; `uninit` reads as zeros. */
export interface Extent {
  lblk: number;
  len: number;
  pblk: number;
  uninit?: boolean;
}
/** An index entry: the subtree for logical blocks from `lblk` lives in block `leaf`. */
export interface ExtentIndex {
  lblk: number;
  leaf: number;
}

export function decodeExtentHeader(b: Uint8Array, off: number): ExtentHeader {
  return {
    magic: u16(b, off),
    entries: u16(b, off + 2),
    max: u16(b, off + 4),
    depth: u16(b, off + 6),
    generation: u32(b, off + 8),
  };
}
export function encodeExtentHeader(b: Uint8Array, off: number, h: ExtentHeader): void {
  put16(b, off, h.magic);
  put16(b, off + 2, h.entries);
  put16(b, off + 4, h.max);
  put16(b, off + 6, h.depth);
  put32(b, off + 8, h.generation);
}
export function decodeExtent(b: Uint8Array, off: number): Extent {
  const rawLen = u16(b, off + 4);
  const uninit = rawLen > MAX_INIT_EXTENT_LEN;
  return {
    lblk: u32(b, off),
    len: uninit ? rawLen - MAX_INIT_EXTENT_LEN : rawLen,
    pblk: u16(b, off + 6) * 0x1_0000_0000 + u32(b, off + 8),
    uninit,
  };
}
export function encodeExtent(b: Uint8Array, off: number, e: Extent): void {
  put32(b, off, e.lblk);
  put16(b, off + 4, e.uninit ? e.len + MAX_INIT_EXTENT_LEN : e.len);
  put16(b, off + 6, hi32(e.pblk) & 0xffff);
  put32(b, off + 8, lo32(e.pblk));
}
export function decodeExtentIndex(b: Uint8Array, off: number): ExtentIndex {
  return { lblk: u32(b, off), leaf: u32(b, off + 4) + u16(b, off + 8) * 0x1_0000_0000 };
}
export function encodeExtentIndex(b: Uint8Array, off: number, e: ExtentIndex): void {
  put32(b, off, e.lblk);
  put32(b, off + 4, lo32(e.leaf));
  put16(b, off + 8, hi32(e.leaf) & 0xffff);
  put16(b, off + 10, 0);
}

/** Entries that fit in the inode's i_block (60 bytes) and in a tree block. */
export const ROOT_MAX_ENTRIES = 4;
export function blockMaxEntries(blockSize: number): number {
  return Math.floor((blockSize - EXTENT_HEADER_SIZE) / EXTENT_ENTRY_SIZE);
}

/** Number of tree blocks (leaves and index nodes) a file with `n` extents needs. */
export function extentTreeBlockCount(n: number, blockSize: number): number {
  const per = blockMaxEntries(blockSize);
  let total = 0;
  let level = n;
  while (level > ROOT_MAX_ENTRIES) {
    level = Math.ceil(level / per);
    total += level;
  }
  return total;
}

/** Checksum of an extent tree block: crc32c(inode seed, bytes before the tail), stored after the last slot. */
export function extentBlockChecksumOffset(blockSize: number): number {
  return EXTENT_HEADER_SIZE + blockMaxEntries(blockSize) * EXTENT_ENTRY_SIZE;
}

/** Whether an extent tree block's stored checksum is right. */
export function extentBlockChecksumOk(b: Uint8Array, inodeSeed: number): boolean {
  const t = extentBlockChecksumOffset(b.length);
  return crc32c(inodeSeed, b, 0, t) === u32(b, t);
}

/** Stores an extent tree block's checksum. */
export function sealExtentBlock(b: Uint8Array, inodeSeed: number): void {
  const t = extentBlockChecksumOffset(b.length);
  put32(b, t, crc32c(inodeSeed, b, 0, t));
}

export interface BuiltExtentTree {
  /** The 60 bytes for i_block. */
  iBlock: Uint8Array;
  /** Tree blocks to write, in the order of `treeBlocks`. */
  blocks: { block: number; data: Uint8Array }[];
  depth: number;
}

/**
 * Builds a tree of any depth for sorted, non-overlapping `extents`, using the given tree block numbers
 * (exactly extentTreeBlockCount(extents.length) of them). `inodeSeed` (the inode's checksum seed) adds
 * the metadata_csum tail to each tree block.
 */
export function buildExtentTree(
  extents: readonly Extent[],
  blockSize: number,
  treeBlocks: readonly number[],
  inodeSeed?: number,
): BuiltExtentTree {
  const need = extentTreeBlockCount(extents.length, blockSize);
  if (treeBlocks.length !== need)
    throw new Ext4Error('CORRUPT', `extent tree needs ${need} blocks, given ${treeBlocks.length}`);
  const per = blockMaxEntries(blockSize);
  const out: BuiltExtentTree['blocks'] = [];
  if (extents.length <= ROOT_MAX_ENTRIES) {
    // The common case: everything fits in i_block.
    const iBlock = new Uint8Array(60);
    encodeExtentHeader(iBlock, 0, {
      magic: EXTENT_MAGIC,
      entries: extents.length,
      max: ROOT_MAX_ENTRIES,
      depth: 0,
      generation: 0,
    });
    extents.forEach((e, k) => encodeExtent(iBlock, EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE, e));
    return { iBlock, blocks: out, depth: 0 };
  }
  let nextTree = 0;
  // Each level is a list of (first logical block, encoder of one entry).
  let entries: { lblk: number; put: (b: Uint8Array, off: number) => void }[] = extents.map((e) => ({
    lblk: e.lblk,
    put: (b, off) => encodeExtent(b, off, e),
  }));
  let depth = 0;
  while (entries.length > ROOT_MAX_ENTRIES) {
    const up: typeof entries = [];
    for (let i = 0; i < entries.length; i += per) {
      const chunk = entries.slice(i, i + per);
      const block = treeBlocks[nextTree++]!;
      const data = new Uint8Array(blockSize);
      encodeExtentHeader(data, 0, { magic: EXTENT_MAGIC, entries: chunk.length, max: per, depth, generation: 0 });
      chunk.forEach((c, k) => c.put(data, EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE));
      if (inodeSeed !== undefined) sealExtentBlock(data, inodeSeed);
      out.push({ block, data });
      const first = chunk[0]!.lblk;
      up.push({ lblk: first, put: (b, off) => encodeExtentIndex(b, off, { lblk: first, leaf: block }) });
    }
    entries = up;
    depth++;
  }
  const iBlock = new Uint8Array(60);
  encodeExtentHeader(iBlock, 0, {
    magic: EXTENT_MAGIC,
    entries: entries.length,
    max: ROOT_MAX_ENTRIES,
    depth,
    generation: 0,
  });
  entries.forEach((c, k) => c.put(iBlock, EXTENT_HEADER_SIZE + k * EXTENT_ENTRY_SIZE));
  return { iBlock, blocks: out, depth };
}

/** Splits a run of `len` blocks at `pblk` for logical block `lblk` into extents of at most 32768 blocks. */
export function runToExtents(lblk: number, pblk: number, len: number): Extent[] {
  return runsToExtents([{ lblk, pblk, len }]);
}

/**
 * Extents for runs sorted by logical block: runs contiguous both logically and physically, of the same
 * kind (initialized or not), are merged; each extent is split at its kind's length limit.
 */
export function runsToExtents(
  runs: readonly { lblk: number; pblk: number; len: number; uninit?: boolean }[],
): Extent[] {
  const out: Extent[] = [];
  for (const r of runs) {
    let { lblk, pblk, len } = r;
    const uninit = !!r.uninit;
    const max = uninit ? MAX_UNINIT_EXTENT_LEN : MAX_INIT_EXTENT_LEN;
    const last = out[out.length - 1];
    if (last && !!last.uninit === uninit && last.lblk + last.len === lblk && last.pblk + last.len === pblk) {
      const add = Math.min(len, max - last.len);
      last.len += add;
      lblk += add;
      pblk += add;
      len -= add;
    }
    while (len > 0) {
      const n = Math.min(len, max);
      out.push({ lblk, pblk, len: n, ...(uninit ? { uninit: true } : {}) });
      lblk += n;
      pblk += n;
      len -= n;
    }
  }
  return out;
}
