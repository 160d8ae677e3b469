/**
 * Geometry planning: what mkfs.ext4 (e2fsprogs 1.47, stock mke2fs.conf, type ext4) decides for a given
 * device size, as a pure function. Facts from the kernel docs (blockgroup.rst, super.rst) and from
 * observing mkfs.ext4's output across sizes; no e2fsprogs code.
 */
import { FIRST_INO } from './inode.js';
import { Ext4Error } from '../core/errors.js';
import { ceilDiv } from '../core/bytes.js';
import { IntervalSet } from './intervals.js';
import { type FeatureSet, MKFS_EXT4_FEATURES, COMPAT } from './features.js';
import { groupHasSuper, superGroups, groupFirstBlock, groupBlocks, groupCountOf } from './geometry.js';

export type SizeType = 'floppy' | 'small' | 'default' | 'big' | 'huge';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

/** mke2fs.conf [fs_types]: block size and bytes-per-inode ratio per size class. */
const SIZE_TYPES: Record<SizeType, { blockSize: number; inodeRatio: number }> = {
  floppy: { blockSize: 1024, inodeRatio: 8192 },
  small: { blockSize: 1024, inodeRatio: 4096 },
  default: { blockSize: 4096, inodeRatio: 16384 },
  big: { blockSize: 4096, inodeRatio: 32768 },
  huge: { blockSize: 4096, inodeRatio: 65536 },
};

/** The size class mkfs uses: floppy < 3 MiB <= small < 512 MiB <= default < 4 TiB <= big < 16 TiB <= huge. */
export function sizeTypeFor(sizeBytes: number): SizeType {
  if (sizeBytes < 3 * MiB) return 'floppy';
  if (sizeBytes < 512 * MiB) return 'small';
  if (sizeBytes < 4 * TiB) return 'default';
  if (sizeBytes < 16 * TiB) return 'big';
  return 'huge';
}

export const DEFAULT_INODE_SIZE = 256;
export const LOG_GROUPS_PER_FLEX = 4;
/** Largest blocks-per-group: group free counts are 16-bit in 32-byte descriptors, less 8 (64 KiB blocks). */
const MAX_BLOCKS_PER_GROUP = 65528;
const PAGE_SIZE = 4096;
/** The largest byte size this tool formats: sizes are JavaScript numbers, exact up to 2^53. */
export const MAX_SIZE_BYTES = Number.MAX_SAFE_INTEGER;

/** jbd2 journal size in blocks for a file system of `blocks` blocks (0: too small for a journal). */
export function defaultJournalBlocks(blocks: number): number {
  if (blocks < 2048) return 0;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

export interface LayoutOptions {
  /** Size of the device in bytes; the file system covers it rounded down to whole pages. */
  sizeBytes: number;
  /** 1024, 2048, 4096, ... 65536; default from the size class. */
  blockSize?: number;
  /** 128, 256, 512, ... up to the block size; default 256. */
  inodeSize?: number;
}

/** The complete geometry of a new file system; `groupStart(g)` and friends derive per-group facts. */
export interface Layout {
  sizeBytes: number;
  sizeType: SizeType;
  blockSize: number;
  logBlockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  groupCount: number;
  inodeRatio: number;
  inodeSize: number;
  inodesPerGroup: number;
  inodeBlocksPerGroup: number;
  inodesCount: number;
  descSize: number;
  descBlocks: number;
  reservedGdtBlocks: number;
  reservedBlocks: number;
  logGroupsPerFlex: number;
  journalBlocks: number;
  features: FeatureSet;
  /** Per group: block bitmap, inode bitmap and first inode-table block. */
  blockBitmap: Float64Array;
  inodeBitmap: Float64Array;
  inodeTable: Float64Array;
  /** Groups holding a superblock backup, ascending (group 0 first). */
  superGroups: number[];
  /** Every block used by superblocks, descriptors, reserved GDT, bitmaps and inode tables. */
  used: IntervalSet;
}

/** Parses a whole number of bytes with an optional K, M, G, T or P suffix (powers of 1024; "KiB" style accepted). */
export function parseSize(s: string): number {
  const m = /^\s*(\d+)\s*([kKmMgGtTpP]?)(i?[bB])?\s*$/.exec(s);
  if (!m)
    throw new Ext4Error('BAD_SIZE', `bad size "${s}": use bytes or a number with K, M, G, T or P (powers of 1024)`);
  const n = BigInt(m[1]!);
  const mult = { '': 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n, p: 1n << 50n }[
    m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't' | 'p'
  ];
  const bytes = n * mult;
  if (bytes > BigInt(MAX_SIZE_BYTES))
    throw new Ext4Error('TOO_LARGE', `size ${s} is larger than this tool supports (8 PiB)`);
  return Number(bytes);
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/**
 * Plans the geometry mkfs.ext4 would choose for `opts.sizeBytes`, including where every group's
 * bitmaps and inode table go under flex_bg.
 */
export function planLayout(opts: LayoutOptions): Layout {
  const sizeBytes = opts.sizeBytes;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0)
    throw new Ext4Error('BAD_SIZE', `size must be a positive whole number of bytes`);
  const sizeType = sizeTypeFor(sizeBytes);
  const st = SIZE_TYPES[sizeType];
  const blockSize = opts.blockSize ?? st.blockSize;
  if (!isPow2(blockSize) || blockSize < 1024 || blockSize > 65536)
    throw new Ext4Error('BAD_OPTION', `block size ${blockSize} is not a power of two from 1024 to 65536`);
  const inodeSize = opts.inodeSize ?? DEFAULT_INODE_SIZE;
  if (!isPow2(inodeSize) || inodeSize < 128 || inodeSize > blockSize)
    throw new Ext4Error('BAD_OPTION', `inode size ${inodeSize} is not a power of two from 128 to the block size`);
  const logBlockSize = Math.log2(blockSize) - 10;
  const firstDataBlock = blockSize === 1024 ? 1 : 0;
  // The inode ratio never goes below one inode per block.
  const inodeRatio = Math.max(st.inodeRatio, blockSize);

  // mkfs sizes the file system to the device rounded down to whole pages.
  let blocksCount = Math.floor(sizeBytes / blockSize);
  if (blockSize < PAGE_SIZE) blocksCount -= blocksCount % (PAGE_SIZE / blockSize);
  const requestedBlocks = blocksCount;
  if (blocksCount > 2 ** 48)
    throw new Ext4Error('TOO_LARGE', `${blocksCount} blocks is more than ext4 can address (2^48)`);

  // Inode count from the ratio, capped to 32 bits.
  let inodesWanted = Math.floor((blocksCount * blockSize) / inodeRatio);
  if (inodesWanted > 0xffffffff) inodesWanted = 0xffffffff;
  if (inodesWanted < FIRST_INO + 1) inodesWanted = FIRST_INO + 1;

  const blocksPerGroup = Math.min(blockSize * 8, MAX_BLOCKS_PER_GROUP);
  const descSize = 64;
  const descPerBlock = blockSize / descSize;
  const inodesPerBlock = blockSize / inodeSize;
  const addrPerBlock = blockSize / 4;
  const features: FeatureSet = { ...MKFS_EXT4_FEATURES };
  // resize_inode can only describe growth up to 2^32 blocks.
  if (blocksCount > 0xffffffff) features.compat &= ~COMPAT.resize_inode;

  for (;;) {
    if (blocksCount <= firstDataBlock)
      throw new Ext4Error('TOO_SMALL', `size ${sizeBytes} bytes is too small for an ext4 file system`);
    const groupCount = groupCountOf(blocksCount, firstDataBlock, blocksPerGroup);
    const descBlocks = ceilDiv(groupCount, descPerBlock);
    let reservedGdtBlocks = 0;
    if (features.compat & COMPAT.resize_inode) {
      // Room for the descriptors of a file system 1024 times larger, up to 2^32 blocks.
      const maxBlocks = blocksCount < Math.floor(0xffffffff / 1024) ? blocksCount * 1024 : 0xffffffff;
      const rsvGroups = ceilDiv(maxBlocks - firstDataBlock, blocksPerGroup);
      reservedGdtBlocks = Math.max(0, Math.min(ceilDiv(rsvGroups, descPerBlock) - descBlocks, addrPerBlock));
    }

    // Past this point mkfs switches to meta_bg (descriptors spread over the disk), which the formatter
    // does not write yet: refuse rather than make a file system mkfs would not.
    if (descBlocks + reservedGdtBlocks > Math.floor((blocksPerGroup * 3) / 4))
      throw new Ext4Error(
        'UNSUPPORTED_FEATURE',
        `a ${sizeBytes}-byte file system needs meta_bg (${descBlocks} descriptor blocks), which this version cannot format; the largest supported size with ${blockSize}-byte blocks is ${Math.floor((blocksPerGroup * 3) / 4) * descPerBlock * blocksPerGroup * blockSize} bytes`,
      );

    let ipg = ceilDiv(inodesWanted, groupCount);
    if (ipg > blockSize * 8) ipg = blockSize * 8;
    const maxIpg = 65536 - inodesPerBlock;
    if (ipg > maxIpg) ipg = maxIpg;
    // Fill whole inode-table blocks, then keep a multiple of 8 for the bitmap.
    let itb = ceilDiv(ipg * inodeSize, blockSize);
    ipg = Math.floor((itb * blockSize) / inodeSize);
    if (ipg < 8) ipg = 8;
    ipg &= ~7;
    itb = ceilDiv(ipg * inodeSize, blockSize);
    while (ipg * groupCount > 0xffffffff) {
      itb -= 1;
      ipg = Math.floor((itb * blockSize) / inodeSize) & ~7;
      itb = ceilDiv(ipg * inodeSize, blockSize);
    }

    // A last group too small to hold its own metadata plus 50 blocks is dropped.
    const rem = (blocksCount - firstDataBlock) % blocksPerGroup;
    let overhead = 2 + itb;
    if (groupHasSuper(groupCount - 1)) overhead += 1 + descBlocks + reservedGdtBlocks;
    if (groupCount === 1 && rem !== 0 && rem < overhead)
      throw new Ext4Error('TOO_SMALL', `size ${sizeBytes} bytes is too small for an ext4 file system`);
    if (lastGroupTooShort(rem, overhead) && groupCount > 1) {
      blocksCount -= rem;
      continue;
    }
    if (ipg * groupCount < FIRST_INO + 1)
      throw new Ext4Error(
        'TOO_SMALL',
        `size ${sizeBytes} bytes is too small for an ext4 file system (needs at least ${FIRST_INO + 1} inodes)`,
      );

    const journalBlocks = defaultJournalBlocks(blocksCount);
    if (journalBlocks === 0) features.compat &= ~COMPAT.has_journal;

    const layout: Layout = {
      sizeBytes,
      sizeType,
      blockSize,
      logBlockSize,
      blocksCount,
      firstDataBlock,
      blocksPerGroup,
      groupCount,
      inodeRatio,
      inodeSize,
      inodesPerGroup: ipg,
      inodeBlocksPerGroup: itb,
      inodesCount: ipg * groupCount,
      descSize,
      descBlocks,
      reservedGdtBlocks,
      reservedBlocks: reservedBlocksFor(requestedBlocks, blocksCount),
      logGroupsPerFlex: LOG_GROUPS_PER_FLEX,
      journalBlocks,
      features,
      blockBitmap: new Float64Array(groupCount),
      inodeBitmap: new Float64Array(groupCount),
      inodeTable: new Float64Array(groupCount),
      superGroups: superGroups(groupCount),
      used: new IntervalSet(),
    };
    placeGroupTables(layout);
    const minBlocks = layout.used.total() + 2 + (journalBlocks ? journalBlocks : 0);
    if (minBlocks > blocksCount - firstDataBlock)
      throw new Ext4Error('TOO_SMALL', `size ${sizeBytes} bytes is too small for an ext4 file system`);
    return layout;
  }
}

/**
 * Whether a last group of `rem` blocks (0: a whole group) is too short to keep: it must hold its own
 * metadata (`overhead` blocks) and 50 more, else mkfs and resize2fs leave it out.
 */
export function lastGroupTooShort(rem: number, overhead: number): boolean {
  return rem !== 0 && rem < overhead + 50;
}

/**
 * 5% of the blocks are reserved for root. When the last group was dropped, mkfs keeps the ratio it
 * computed for the requested size (a hair under 5%), so the result can be one block lower; the same
 * double-precision steps give the same figure.
 */
function reservedBlocksFor(requested: number, final: number): number {
  const r = Math.floor((5.0 * requested) / 100.0);
  if (final === requested) return r;
  return Math.floor((((100.0 * r) / requested) * final) / 100.0);
}

/**
 * Finds `num` free blocks in a row, searching forward from `start` up to (not including) `finish`.
 * Returns -1 when there are none. Used blocks are skipped a range at a time.
 */
export function findFreeRun(
  l: Pick<Layout, 'used' | 'blocksCount' | 'firstDataBlock'>,
  start: number,
  finish: number,
  num: number,
): number {
  let b = start === 0 ? l.firstDataBlock : start;
  let wrapped = false;
  for (;;) {
    if (b + num > l.blocksCount) {
      if (finish > start || wrapped) return -1;
      b = l.firstDataBlock;
      wrapped = true;
    }
    const hit = l.used.firstOverlap(b, num);
    if (!hit) return b;
    const next = hit[1];
    if ((b < finish && next >= finish) || (wrapped && next >= start)) return -1;
    b = next;
  }
}

/**
 * Marks `n` blocks used, taking free runs from the first free block at or after `goal` onwards (and,
 * with `wrap`, from the start of the file system after that). Runs are as long as the free space allows.
 */
export function takeRuns(
  l: Pick<Layout, 'used' | 'blocksCount' | 'firstDataBlock'>,
  goal: number,
  n: number,
  wrap = false,
): { start: number; len: number }[] {
  const runs: { start: number; len: number }[] = [];
  let b = goal;
  let wrapped = !wrap;
  while (n > 0) {
    const s = findFreeRun(l, b, l.blocksCount, 1);
    if (s < 0) {
      if (wrapped) throw new Ext4Error('NO_SPACE', `the file system is full (${l.blocksCount} blocks)`);
      wrapped = true;
      b = l.firstDataBlock;
      continue;
    }
    const hit = l.used.firstOverlap(s, Math.min(n, l.blocksCount - s));
    const len = hit ? hit[0] - s : Math.min(n, l.blocksCount - s);
    l.used.add(s, len);
    runs.push({ start: s, len });
    n -= len;
    b = s + len;
  }
  return runs;
}

/** Superblock/descriptor backups first, then every group's bitmaps and inode table (placeTables). */
function placeGroupTables(l: Layout): void {
  const used = l.used;
  if (l.firstDataBlock) used.add(0, l.firstDataBlock);
  for (const g of l.superGroups) used.add(groupFirstBlock(l, g), 1 + l.descBlocks + l.reservedGdtBlocks);
  placeTables(l, 0);
}

/** What placing groups' tables needs: the geometry, the blocks already in use, and the placements so far. */
export type TablePlan = Pick<
  Layout,
  | 'used'
  | 'blocksCount'
  | 'firstDataBlock'
  | 'blocksPerGroup'
  | 'groupCount'
  | 'logGroupsPerFlex'
  | 'inodeBlocksPerGroup'
  | 'blockBitmap'
  | 'inodeBitmap'
  | 'inodeTable'
>;

/**
 * Places the block bitmap, inode bitmap and inode table of groups `from` onwards (those below keep
 * theirs: a grown file system's), packed per flex group: all block bitmaps of a flex group together,
 * then all inode bitmaps, then all inode tables, starting in the flex group's first group (how
 * mkfs.ext4 lays out flex_bg; a flex group of one is the classic layout, each group's own).
 */
export function placeTables(l: TablePlan, from: number): void {
  const used = l.used;
  const flex = 1 << l.logGroupsPerFlex;
  const itb = l.inodeBlocksPerGroup;
  let tableOffset = flex;
  for (let g = from; g < l.groupCount; g++) {
    const lastGrp = Math.min(g | (flex - 1), l.groupCount - 1);
    const remGrps = lastGrp - g + 1;
    const lastBlk = groupFirstBlock(l, lastGrp) + groupBlocks(l, lastGrp) - 1;
    const groupBlk = groupFirstBlock(l, g);
    const flexStart = (prev: number, elem: number): number => {
      let size = remGrps * elem;
      if (size > Math.floor(l.blocksPerGroup / 4)) size = Math.floor(l.blocksPerGroup / 4);
      if (prev && prev < l.blocksCount) {
        const f = findFreeRun(l, prev, prev + size, elem);
        if (f >= 0) return f;
      }
      const start = groupFirstBlock(l, g - (g % flex));
      const f = findFreeRun(l, start, lastBlk, size);
      if (f >= 0) return f;
      const f2 = findFreeRun(l, start, lastBlk, elem);
      return f2 >= 0 ? f2 : groupBlk;
    };
    const alloc = (from: number, n: number, what: string): number => {
      let b = findFreeRun(l, from, lastBlk, n);
      if (b < 0) b = findFreeRun(l, groupBlk, lastBlk, n);
      if (b < 0) throw new Ext4Error('TOO_SMALL', `no room for the ${what} of group ${g}`, { group: g });
      used.add(b, n);
      return b;
    };

    // A grow's first new group may fall inside a flex group: its groups are packed as a flex group's.
    const follows = g % flex !== 0 && g !== from;
    let prev = 0;
    if (follows) prev = l.blockBitmap[g - 1]! + 1;
    else if (g % flex) tableOffset = remGrps;
    else {
      tableOffset = flex;
      if (lastGrp === l.groupCount - 1) {
        tableOffset = lastGrp & (flex - 1);
        tableOffset = tableOffset === 0 ? flex : tableOffset + 1;
      }
    }
    l.blockBitmap[g] = alloc(flexStart(prev, 1), 1, 'block bitmap');
    prev = follows ? l.inodeBitmap[g - 1]! + 1 : l.blockBitmap[g]! + tableOffset;
    l.inodeBitmap[g] = alloc(flexStart(prev, 1), 1, 'inode bitmap');
    prev = follows ? l.inodeTable[g - 1]! + itb : l.inodeBitmap[g]! + tableOffset;
    l.inodeTable[g] = alloc(flexStart(prev, itb), itb, 'inode table');
  }
}
