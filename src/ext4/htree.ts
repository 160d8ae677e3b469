/**
 * Hash-indexed directories (kernel doc: directory.rst, "Hash Tree Directories"): the dx_root / dx_node /
 * dx_tail codec that the reader, the editor and the builder share, and the builder of a whole new index.
 * Entries are sorted by hash into leaf blocks; the dx_root (logical block 0) indexes the leaves, through
 * levels of dx_node blocks when there are more leaves than the root can hold.
 */
import { put16, put32, u16, u32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { Ext4Error } from '../core/errors.js';
import { packDirBlocks, encodeDirent, direntSize, DIR_TAIL_SIZE, FT_DIR, type DirEntry } from './dirent.js';
import { dirHash, DX_HASH_HALF_MD4, DX_HASH_TEA } from './dirhash.js';

export interface HtreeInput {
  dirIno: number;
  parentIno: number;
  entries: readonly DirEntry[];
  blockSize: number;
  /** The directory inode's checksum seed; undefined without metadata_csum (no tails). */
  inodeSeed: number | undefined;
  hashSeed: Uint8Array;
  /** dx hash version stored in the root (default half_md4) and the one names are hashed with. */
  hashVersion?: number;
  /** The version names are hashed with when it differs (the superblock's unsigned flag adds 3). */
  effectiveHashVersion?: number;
  /** The directory file type byte (0 without the filetype feature). */
  dirFileType?: number;
}

/** dx_root: dot and dotdot entries, then dx_root_info (8 bytes at 0x18), then the count/limit header. */
export const DX_ROOT_INFO_OFFSET = 0x18;

/**
 * A dx_root block without its entries: '.' (12 bytes) and '..' (the rest of the block), then
 * dx_root_info (reserved, hash version, info length 8, indirect levels, flags).
 */
export function newDxRoot(
  bs: number,
  dirIno: number,
  parentIno: number,
  fileType: number,
  hashVersion: number,
  levels: number,
): Uint8Array {
  const root = new Uint8Array(bs);
  encodeDirent(root, 0, { inode: dirIno, name: new Uint8Array([0x2e]), fileType }, 12);
  encodeDirent(root, 12, { inode: parentIno, name: new Uint8Array([0x2e, 0x2e]), fileType }, bs - 12);
  root[DX_ROOT_INFO_OFFSET + 4] = hashVersion;
  root[DX_ROOT_INFO_OFFSET + 5] = 8;
  root[DX_ROOT_INFO_OFFSET + 6] = levels;
  return root;
}
export const DX_ROOT_COUNT_OFFSET = 0x20;
/** dx_node: an empty entry spanning the block, then the count/limit header. */
export const DX_NODE_COUNT_OFFSET = 8;

/** dx_root_info: the hash version names are hashed with, the info's length and the index depth below the root. */
export interface DxRootInfo {
  reserved: number;
  hashVersion: number;
  infoLength: number;
  levels: number;
}

export function decodeDxRootInfo(b: Uint8Array): DxRootInfo {
  const o = DX_ROOT_INFO_OFFSET;
  return { reserved: u32(b, o), hashVersion: b[o + 4]!, infoLength: b[o + 5]!, levels: b[o + 6]! };
}

/**
 * Whether a dx_root_info is one a lookup may follow: reserved word zero, info length 8, a known hash
 * version (legacy, half MD4 or TEA) and fewer levels than the maximum (2, or 3 with large_dir).
 */
export function dxRootInfoValid(info: DxRootInfo, largeDir: boolean): boolean {
  return (
    info.reserved === 0 && info.infoLength === 8 && info.levels < (largeDir ? 3 : 2) && info.hashVersion <= DX_HASH_TEA
  );
}

/** The limit and count of a dx block's header at `countOffset`. */
export function readDxHeader(b: Uint8Array, countOffset: number): { limit: number; count: number } {
  return { limit: u16(b, countOffset), count: u16(b, countOffset + 2) };
}

/** Where a dx_root's count/limit header starts (after its info, whose length the root records). */
export function dxRootCountOffset(b: Uint8Array): number {
  return DX_ROOT_INFO_OFFSET + b[DX_ROOT_INFO_OFFSET + 5]!;
}

/** Index entries a dx block holds after the header at `countOffset`, less one for the dx_tail. */
export function dxLimit(blockSize: number, countOffset: number, csum: boolean): number {
  return (blockSize - countOffset) / 8 - (csum ? 1 : 0);
}

/** One index entry: names hashing at or above `hash` (up to the next entry's) live under `block`. */
export interface DxEntry {
  hash: number;
  block: number;
}

/** The limit, count and entries of a dx block (the first entry's hash reads as 0). */
export function readDxEntries(
  b: Uint8Array,
  countOffset: number,
): { limit: number; count: number; entries: DxEntry[] } {
  const { limit, count } = readDxHeader(b, countOffset);
  const entries: DxEntry[] = [];
  if (count > limit || countOffset + count * 8 > b.length)
    throw new Ext4Error('CORRUPT', `htree index count ${count} over its limit ${limit}`);
  for (let i = 0; i < count; i++)
    entries.push({ hash: i === 0 ? 0 : u32(b, countOffset + i * 8), block: u32(b, countOffset + i * 8 + 4) });
  return { limit, count, entries };
}

const ZERO4 = new Uint8Array(4);

/**
 * The dx_tail checksum of a dx block: crc32c(inode seed, the header and used entries, the tail's reserved
 * word, a zero checksum). The tail sits after `limit` entries.
 */
export function dxTailChecksum(
  inodeSeed: number,
  b: Uint8Array,
  countOffset: number,
  limit: number,
  count: number,
): number {
  const tail = countOffset + limit * 8;
  let c = crc32c(inodeSeed, b, 0, countOffset + count * 8);
  c = crc32c(c, b, tail, tail + 4);
  return crc32c(c, ZERO4, 0, 4);
}

/** Stores the dx_tail (reserved word and checksum) after `limit` entries. */
export function setDxTail(b: Uint8Array, countOffset: number, limit: number, count: number, inodeSeed: number): void {
  const tail = countOffset + limit * 8;
  put32(b, tail, 0);
  put32(b, tail + 4, dxTailChecksum(inodeSeed, b, countOffset, limit, count));
}

/** Writes a dx entry array: limit/count then the first block, then (hash, block) pairs. */
export function putDxEntries(b: Uint8Array, countOffset: number, limit: number, items: readonly DxEntry[]): void {
  put16(b, countOffset, limit);
  put16(b, countOffset + 2, items.length);
  put32(b, countOffset + 4, items[0]!.block);
  for (let i = 1; i < items.length; i++) {
    put32(b, countOffset + i * 8, items[i]!.hash);
    put32(b, countOffset + i * 8 + 4, items[i]!.block);
  }
}

/** A dx_node's fixed start: an unused entry spanning the whole block, so linear readers skip it. */
export function initDxNode(b: Uint8Array, blockSize: number): void {
  put32(b, 0, 0);
  put16(b, 4, blockSize === 65536 ? 0xffff : blockSize);
  b[6] = 0;
  b[7] = 0;
}

/**
 * Builds the blocks of an indexed directory in logical order: dx_root, then dx_nodes (two-level trees),
 * then the leaves. Entries are packed into leaves in hash order; a hash value never straddles two
 * leaves unless one hash fills more than a block, in which case the next leaf's index entry carries
 * the collision bit.
 */
export function buildHtree(inp: HtreeInput): Uint8Array[] {
  const bs = inp.blockSize;
  // metadata_csum: every leaf keeps room for its tail, every index block for its dx_tail.
  const withCsum = inp.inodeSeed !== undefined;
  const stored = inp.hashVersion ?? DX_HASH_HALF_MD4;
  const version = inp.effectiveHashVersion ?? stored;
  const hashed = inp.entries.map((e) => ({ e, h: dirHash(e.name, version, inp.hashSeed) }));
  hashed.sort((a, b) => a.h.hash - b.h.hash || a.h.minor - b.h.minor);
  const usable = bs - (withCsum ? DIR_TAIL_SIZE : 0);
  // Pack leaves.
  const leaves: { first: number; items: DirEntry[]; continued: boolean }[] = [];
  let cur: DirEntry[] = [];
  let used = 0;
  let curFirst = 0;
  let continued = false;
  for (let i = 0; i < hashed.length; i++) {
    const { e, h } = hashed[i]!;
    const size = direntSize(e.name.length);
    if (cur.length && used + size > usable) {
      // Move trailing entries that share this hash into the next leaf, when that leaves something behind.
      let k = cur.length;
      while (k > 0 && hashed[i - (cur.length - k) - 1]!.h.hash === h.hash) k--;
      let carry: DirEntry[] = [];
      let nextContinued = false;
      if (k > 0 && k < cur.length) {
        carry = cur.slice(k);
        cur = cur.slice(0, k);
      } else if (k === 0) nextContinued = true;
      leaves.push({ first: curFirst, items: cur, continued });
      cur = carry;
      used = carry.reduce((a, c) => a + direntSize(c.name.length), 0);
      curFirst = h.hash;
      continued = nextContinued;
    }
    if (!cur.length) curFirst = h.hash;
    cur.push(e);
    used += size;
  }
  if (cur.length || !leaves.length) leaves.push({ first: curFirst, items: cur, continued });

  const rootLimit = dxLimit(bs, DX_ROOT_COUNT_OFFSET, withCsum);
  const nodeLimit = dxLimit(bs, DX_NODE_COUNT_OFFSET, withCsum);
  const levels = leaves.length <= rootLimit ? 0 : 1;
  const nodeCount = levels ? Math.ceil(leaves.length / nodeLimit) : 0;
  if (nodeCount > rootLimit)
    throw new Ext4Error(
      'TOO_LARGE',
      `directory ${inp.dirIno} needs ${leaves.length} leaf blocks, more than a two-level htree holds (large_dir is not enabled)`,
    );
  const firstLeaf = 1 + nodeCount;
  const leafItems = leaves.map((lf, i) => ({
    hash: i === 0 ? 0 : (lf.first | (lf.continued ? 1 : 0)) >>> 0,
    block: firstLeaf + i,
  }));

  const root = newDxRoot(bs, inp.dirIno, inp.parentIno, inp.dirFileType ?? FT_DIR, stored, levels);
  const out: Uint8Array[] = [root];
  if (!levels) {
    putDxEntries(root, DX_ROOT_COUNT_OFFSET, rootLimit, leafItems);
    if (withCsum) setDxTail(root, DX_ROOT_COUNT_OFFSET, rootLimit, leafItems.length, inp.inodeSeed!);
  } else {
    const rootItems: { hash: number; block: number }[] = [];
    for (let n = 0; n < nodeCount; n++) {
      const items = leafItems.slice(n * nodeLimit, (n + 1) * nodeLimit);
      const node = new Uint8Array(bs);
      initDxNode(node, bs);
      const nodeItems = items.map((it, k) => ({ hash: k === 0 ? 0 : it.hash, block: it.block }));
      putDxEntries(node, DX_NODE_COUNT_OFFSET, nodeLimit, nodeItems);
      if (withCsum) setDxTail(node, DX_NODE_COUNT_OFFSET, nodeLimit, nodeItems.length, inp.inodeSeed!);
      out.push(node);
      rootItems.push({ hash: n === 0 ? 0 : items[0]!.hash, block: 1 + n });
    }
    putDxEntries(root, DX_ROOT_COUNT_OFFSET, rootLimit, rootItems);
    if (withCsum) setDxTail(root, DX_ROOT_COUNT_OFFSET, rootLimit, rootItems.length, inp.inodeSeed!);
  }
  for (const lf of leaves) out.push(packDirBlocks(lf.items, bs, inp.inodeSeed)[0]!);
  return out;
}
