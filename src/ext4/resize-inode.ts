/**
 * The resize inode's layout (inode 7, resize_inode; kernel doc: special_inodes.rst, blockgroup.rst
 * "reserved GDT blocks"), the one place it is worked out: mkfs writes it, a grow and a shrink rewrite
 * it, check compares the image with it and the repair writes it again.
 *
 * The inode maps the reserved GDT blocks through its double-indirect block (DIND) only: the primary
 * reserved block that follows descriptor block `k` (block `superblock + 1 + k`) is entry `k % (block
 * size / 4)` of the DIND block, and that block, read as an indirect block, lists its copies in the
 * backup groups (the same block `g * blocks per group` further on, for every group g > 0 holding a
 * superblock copy, in group order), then zeros. i_blocks counts the DIND block, every reserved block
 * and every copy; i_size is that of a file reaching the end of the double-indirect range.
 */
import { ZeroTail } from '../core/zero-tail.js';
import { type Geometry, descsPerBlock, superblockBlock, superblockGroups } from './geometry.js';

/** The slot of i_block holding the double-indirect block. */
export const RESIZE_DIND_SLOT = 13;

/** What the layout depends on. */
export interface ResizeGeometry {
  blockSize: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  /** Descriptor blocks in use: the reserved ones follow them. */
  descBlocks: number;
  reservedGdtBlocks: number;
  /** Groups holding a superblock copy, ascending (group 0's is the primary, not a backup). */
  superGroups: readonly number[];
}

/** The layout's inputs for file system geometry `geo` (its descriptor blocks and backup groups). */
export function resizeGeometry(geo: Geometry): ResizeGeometry {
  return {
    blockSize: geo.blockSize,
    firstDataBlock: geo.firstDataBlock,
    blocksPerGroup: geo.blocksPerGroup,
    descBlocks: Math.ceil(geo.groupCount / descsPerBlock(geo)),
    reservedGdtBlocks: geo.reservedGdtBlocks,
    superGroups: superblockGroups(geo),
  };
}

/** Block pointers per block. */
const perBlock = (geo: Pick<ResizeGeometry, 'blockSize'>): number => geo.blockSize / 4;

/** The backup groups (every superblock group but group 0), in group order. */
function backupGroups(geo: ResizeGeometry): number[] {
  return geo.superGroups.filter((g) => g > 0);
}

/** The primary reserved GDT block `i` (0 = the first after the descriptor blocks). */
export function reservedGdtBlock(geo: ResizeGeometry, i: number): number {
  return superblockBlock(geo) + 1 + geo.descBlocks + i;
}

/** The DIND block's entry that names reserved block `i`. */
export function resizeDindSlot(geo: ResizeGeometry, i: number): number {
  return (geo.descBlocks + i) % perBlock(geo);
}

/** What reserved block `i` lists: its copy in every backup group, in group order. */
export function resizeListEntries(geo: ResizeGeometry, i: number): number[] {
  const primary = reservedGdtBlock(geo, i);
  return backupGroups(geo).map((g) => primary + g * geo.blocksPerGroup);
}

/** The DIND block: the primary reserved blocks, each at its slot; zeros elsewhere. */
export function resizeDindBlock(geo: ResizeGeometry): Uint8Array {
  const b = new Uint8Array(geo.blockSize);
  const v = new DataView(b.buffer);
  for (let i = 0; i < geo.reservedGdtBlocks; i++)
    v.setUint32(resizeDindSlot(geo, i) * 4, reservedGdtBlock(geo, i), true);
  return b;
}

/**
 * The lists of reserved blocks `from..from+n-1` (all of them by default), each its entries and then
 * zeros, kept as ZeroTail blocks: up to 1,024 blocks whose entries are a few dozen bytes.
 */
export function resizeListBlocks(geo: ResizeGeometry, from = 0, n = geo.reservedGdtBlocks - from): ZeroTail[] {
  const m = backupGroups(geo).length;
  const entries = new Uint32Array(n * m);
  for (let i = 0; i < n; i++) entries.set(resizeListEntries(geo, from + i), i * m);
  const bytes = new Uint8Array(entries.buffer);
  if (!LITTLE_ENDIAN) for (let o = 0; o < bytes.length; o += 4) bytes.subarray(o, o + 4).reverse();
  return Array.from({ length: n }, (_, i) => new ZeroTail(bytes.subarray(i * m * 4, (i + 1) * m * 4), geo.blockSize));
}

/** Uint32Array holds the platform's byte order; the lists are little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The blocks the inode maps: its DIND block, every primary reserved block and every copy. */
export function resizeInodeBlockCount(geo: ResizeGeometry): number {
  return 1 + geo.reservedGdtBlocks * (1 + backupGroups(geo).length);
}

/** i_size: a file reaching the end of the double-indirect range (12 + a + a^2 blocks of a pointers). */
export function resizeInodeSize(blockSize: number): number {
  const a = blockSize / 4;
  return (12 + a + a * a) * blockSize;
}

/** The largest i_size of a file mapped by classic indirect blocks (12 + a + a^2 + a^3 blocks). */
export function indirectMaxSize(blockSize: number): number {
  const a = blockSize / 4;
  return (12 + a + a * a + a * a * a) * blockSize;
}

/** The logical block of entry `j` of the indirect block in DIND slot `s`. */
export function dindLogicalBlock(blockSize: number, s: number, j: number): number {
  const a = blockSize / 4;
  return 12 + a + s * a + j;
}
