/**
 * The switch of a shrink: once nothing in use lies past the new end but the removed groups' own
 * metadata (move-blocks.ts saw to that), the groups are dropped in one jbd2 transaction: the kept
 * descriptors (the removed groups' entries stay in a shared block as they were: the old superblock,
 * should the commit stop half way home, still finds them), the last group's bitmap padded to its new
 * length, the removed groups' bitmaps and inode tables freed where flex_bg put them in kept groups,
 * descriptor blocks no longer needed turned back into reserved GDT blocks (resize_inode, its lists
 * following: kernel doc special_inodes.rst) or freed, and the superblock and its kept copies; the
 * superblock goes home last (journal-log.ts), as in a grow. The file is cut to the new size by the
 * caller once this is durable. Called again with no group dropped and more reserved GDT blocks, it takes
 * back reserved GDT room a switch gave up (shrink-image.ts says why one does).
 */
import { Ext4Error } from '../core/errors.js';
import { lo32, hi32, put32, u32 } from '../core/bytes.js';
import { RO_COMPAT } from '../ext4/features.js';
import {
  encodeSuperblock,
  setBlocksCount,
  setReservedBlocksCount,
  setFreeBlocksCount,
  SUPERBLOCK_OFFSET,
  type Superblock,
} from '../ext4/superblock.js';
import {
  type Geometry,
  descBlockCopies,
  descsPerBlock,
  groupBlocks,
  groupFirstBlock,
  groupFixedMeta,
  groupOfBlock,
  superblockBlock,
  superblockGroups,
} from '../ext4/geometry.js';
import {
  encodeGroupDesc,
  groupDescChecksum,
  groupDescCrc16,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  type GroupDesc,
} from '../ext4/group-desc.js';
import { bitmapChecksum, clearBit, countBits, setBitRange, testBit } from '../ext4/bitmap.js';
import { decodeInode, encodeInode, setInodeChecksum, RESIZE_INO } from '../ext4/inode.js';
import type { Ext4Reader } from '../fs/reader.js';
import { inodeTableBlocks } from '../ext4/geometry.js';
import { StepWrites } from './writes.js';
import { hasResizeInode } from './groups.js';
import {
  RESIZE_DIND_SLOT,
  reservedGdtBlock,
  resizeDindSlot,
  resizeGeometry,
  resizeInodeBlockCount,
  resizeListBlocks,
} from '../ext4/resize-inode.js';

/** The descriptors carry checksums (uninit_bg or metadata_csum): BLOCK_UNINIT means what it says. */
function groupCsum(r: Ext4Reader): boolean {
  return (r.sb.s_feature_ro_compat & (RO_COMPAT.metadata_csum | RO_COMPAT.gdt_csum)) !== 0;
}

/** Every group's bitmaps and inode table, as [start, length] ranges. */
function tables(r: Ext4Reader, g: number, itb: number): [number, number][] {
  const d = r.groupDesc(g);
  return [
    [d.blockBitmap, 1],
    [d.inodeBitmap, 1],
    [d.inodeTable, itb],
  ];
}

/**
 * The room sparse_super2's backup takes where the shrink moves it into the new last group (superblock,
 * descriptor and reserved GDT blocks at the group's start), [start, length]; undefined when none moves.
 */
export function newBackupArea(before: Geometry, after: Geometry): [number, number] | undefined {
  const had = new Set(superblockGroups(before));
  const g = superblockGroups(after).find((x) => !had.has(x));
  if (g === undefined) return undefined;
  return [groupFirstBlock(after, g), groupFixedMeta(after, g).reduce((a, [, n]) => a + n, 0)];
}

/**
 * The first block past the new end (or in the new backup area) in use by anything but the removed
 * groups' own metadata, if any.
 */
export function firstInUsePastEnd(r: Ext4Reader, after: Geometry): number | undefined {
  const before = r.geo;
  const end = after.blocksCount;
  const itb = inodeTableBlocks(before);
  const own = new Set<number>();
  for (let g = after.groupCount; g < before.groupCount; g++) {
    for (const [s, n] of [...groupFixedMeta(before, g), ...tables(r, g, itb)])
      for (let k = 0; k < n; k++) own.add(s + k);
  }
  for (let g = after.groupCount - 1; g < before.groupCount; g++) {
    const d = r.groupDesc(g);
    if (d.flags & BG_BLOCK_UNINIT && groupCsum(r)) continue;
    const first = groupFirstBlock(before, g);
    const bm = r.readBlocks(d.blockBitmap);
    for (let i = Math.max(0, end - first); i < groupBlocks(before, g); i++)
      if (testBit(bm, i) && !own.has(first + i)) return first + i;
  }
  const hole = newBackupArea(before, after);
  if (hole) {
    const g = groupOfBlock(before, hole[0]);
    const d = r.groupDesc(g);
    const bm = d.flags & BG_BLOCK_UNINIT && groupCsum(r) ? undefined : r.readBlocks(d.blockBitmap);
    const first = groupFirstBlock(before, g);
    const inUse = (b: number) =>
      bm ? testBit(bm, b - first) : r.groupMetaRanges(g).all.some(([s, n]) => b >= s && b < s + n);
    for (let b = hole[0]; b < hole[0] + hole[1]; b++) if (inUse(b) && !own.has(b)) return b;
  }
  return undefined;
}

/**
 * Refuses (CORRUPT: a bug or a concurrent change, nothing written) when a block past the new end is in
 * use by anything but the removed groups' own metadata.
 */
export function checkNothingPastEnd(r: Ext4Reader, after: Geometry): void {
  const block = firstInUsePastEnd(r, after);
  if (block !== undefined)
    throw new Ext4Error('CORRUPT', `block ${block} past the new end is still in use; nothing was written`, { block });
}

/** Fills `w` with the switch from `r`'s geometry to `after` (superblock and copies included). */
export function dropGroups(r: Ext4Reader, after: Geometry, w: StepWrites, now: number, reservedPercent: number): void {
  const before = r.geo;
  const bs = r.blockSize;
  const ds = r.descSize;
  const dpb = descsPerBlock(before);
  const itb = inodeTableBlocks(before);
  const csum = r.csum;
  const roCompat = r.sb.s_feature_ro_compat;
  const kept = after.groupCount;
  const end = after.blocksCount;
  const descs: GroupDesc[] = [];
  for (let g = 0; g < kept; g++) descs.push({ ...r.groupDesc(g) });
  const touched = new Set<number>();

  // A kept group's bitmap to change: initialized first when the kernel would compute it.
  const bitmap = (g: number): Uint8Array => {
    const d = descs[g]!;
    if (d.flags & BG_BLOCK_UNINIT && groupCsum(r)) {
      const bm = new Uint8Array(bs);
      const first = groupFirstBlock(after, g);
      const n = groupBlocks(after, g);
      const mark = (s: number, len: number) => {
        const a = Math.max(s, first);
        const b = Math.min(s + len, first + n);
        if (a < b) setBitRange(bm, a - first, b - first);
      };
      for (const [s, len] of groupFixedMeta(before, g)) mark(s, len);
      for (let h = 0; h < before.groupCount; h++) for (const [s, len] of tables(r, h, itb)) mark(s, len);
      setBitRange(bm, groupBlocks(before, g), bs * 8);
      w.put(d.blockBitmap, bm);
      d.flags &= ~BG_BLOCK_UNINIT;
    }
    touched.add(g);
    return w.modify(d.blockBitmap);
  };
  const free = (s: number, len: number) => {
    for (let b = s; b < s + len; b++) {
      if (b >= end) continue;
      const g = Math.floor((b - before.firstDataBlock) / before.blocksPerGroup);
      const bm = bitmap(g);
      const i = b - groupFirstBlock(before, g);
      if (!testBit(bm, i)) throw new Ext4Error('CORRUPT', `block ${b} is freed but was not in use`, { block: b });
      clearBit(bm, i);
      descs[g]!.freeBlocks++;
    }
  };

  // Room taken (a moved sparse_super2 backup's, reserved GDT room given back): it must be free.
  const take = (s: number, len: number, what: string) => {
    for (let b = s; b < s + len; b++) {
      const g = groupOfBlock(before, b);
      const bm = bitmap(g);
      const i = b - groupFirstBlock(before, g);
      if (testBit(bm, i)) throw new Ext4Error('CORRUPT', `block ${b} ${what} is in use`, { block: b });
      setBitRange(bm, i, i + 1);
      descs[g]!.freeBlocks--;
    }
  };

  // The removed groups' tables that flex_bg put in kept groups.
  for (let g = kept; g < before.groupCount; g++) for (const [s, n] of tables(r, g, itb)) free(s, n);

  // Descriptor blocks no longer needed: reserved GDT blocks again (resize_inode, up to what its lists
  // hold), the rest freed in every kept copy of the area.
  const oldDesc = Math.ceil(before.groupCount / dpb);
  const newDesc = Math.ceil(kept / dpb);
  if (hasResizeInode(r)) resizeInodeBack(r, after, w, newDesc, oldDesc);
  const hadSuper = new Set(superblockGroups(before));
  if (!before.metaBg) {
    const areaBefore = oldDesc + before.reservedGdtBlocks;
    const areaAfter = newDesc + after.reservedGdtBlocks;
    for (const g of superblockGroups(after).filter((x) => hadSuper.has(x))) {
      const base = g === 0 ? superblockBlock(before) : groupFirstBlock(before, g);
      if (areaAfter < areaBefore) free(base + 1 + areaAfter, areaBefore - areaAfter);
      else if (areaAfter > areaBefore) take(base + 1 + areaBefore, areaAfter - areaBefore, 'of the reserved GDT room');
    }
  }

  // sparse_super2's backup moved into the new last group: its room (emptied by the moves) taken, and
  // every descriptor block copied there.
  const hole = newBackupArea(before, after);
  if (hole) take(hole[0], hole[1], 'of the new backup area');

  // The last group: padded to its new length, its free count counted again.
  const last = kept - 1;
  const n = groupBlocks(after, last);
  const bm = bitmap(last);
  setBitRange(bm, n, bs * 8);
  descs[last]!.freeBlocks = n - countBits(bm, n);

  // Descriptors: every kept one that changed, written to every kept copy of its block.
  const blocks = new Map<number, Uint8Array>();
  for (const g of touched) {
    const d = descs[g]!;
    if (csum) d.blockBitmapCsum = bitmapChecksum(r.csumSeed, w.modify(d.blockBitmap), before.blocksPerGroup);
    const i = Math.floor(g / dpb);
    let b = blocks.get(i);
    if (!b) blocks.set(i, (b = r.readBlocks(r.descBlockLoc(i)).slice()));
    const off = (g % dpb) * ds;
    encodeGroupDesc(b, off, ds, d);
    if (csum) putGroupDescChecksum(b, off, groupDescChecksum(r.csumSeed, g, b, off, ds));
    else if (roCompat & RO_COMPAT.gdt_csum) putGroupDescChecksum(b, off, groupDescCrc16(r.sb.s_uuid, g, b, off, ds));
  }
  if (hole)
    for (let i = 0; i < newDesc; i++) if (!blocks.has(i)) blocks.set(i, r.readBlocks(r.descBlockLoc(i)).slice());
  for (const [i, data] of blocks) for (const block of descBlockCopies(after, i)) w.put(block, data);

  // The superblock and its kept copies.
  let freeBlocks = 0;
  let freeInodes = 0;
  for (const d of descs) {
    freeBlocks += d.freeBlocks;
    freeInodes += d.freeInodes;
  }
  const sb = shrunkSuperblock(r, after, freeBlocks, freeInodes, now, reservedPercent);
  const sbBlock = Math.floor(SUPERBLOCK_OFFSET / bs);
  w.modify(sbBlock).set(encodeSuperblock(sb), SUPERBLOCK_OFFSET - sbBlock * bs);
  for (const g of superblockGroups(after)) {
    if (g === 0) continue;
    const copy = encodeSuperblock({ ...sb, s_block_group_nr: g & 0xffff });
    // A new backup's block held data: only the superblock is kept in it.
    if (hadSuper.has(g)) w.modify(groupFirstBlock(after, g)).set(copy);
    else w.put(groupFirstBlock(after, g), padBlock(copy, bs));
  }
}

/**
 * The resize inode after a shrink: the descriptor blocks `newDesc..oldDesc-1` become reserved GDT
 * blocks again (listed in its DIND block), and every reserved block lists its copies in the kept backup
 * groups only; i_blocks counts what is listed.
 */
function resizeInodeBack(r: Ext4Reader, after: Geometry, w: StepWrites, newDesc: number, oldDesc: number): void {
  const bs = r.blockSize;
  const ino = r.inode(RESIZE_INO);
  const dind = u32(ino.block, RESIZE_DIND_SLOT * 4);
  if (dind < r.geo.firstDataBlock || dind >= after.blocksCount)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `the resize inode's block ${dind} lies past the new end`);
  const before = { ...resizeGeometry(r.geo), descBlocks: oldDesc };
  const rg = { ...resizeGeometry(after), descBlocks: newDesc };
  const rsv = rg.reservedGdtBlocks;
  if (rsv > bs / 4) throw new Error(`resize: ${rsv} reserved GDT blocks cannot be listed`);
  const table = w.modify(dind);
  // Slots of blocks the area no longer holds are cleared first (a slot may be taken again below).
  for (let i = rsv; i < oldDesc + before.reservedGdtBlocks - newDesc; i++) put32(table, resizeDindSlot(rg, i) * 4, 0);
  for (let i = 0; i < rsv; i++) put32(table, resizeDindSlot(rg, i) * 4, reservedGdtBlock(rg, i));
  resizeListBlocks(rg).forEach((list, i) => w.put(reservedGdtBlock(rg, i), list));
  const delta = resizeInodeBlockCount(rg) - resizeInodeBlockCount(before);
  if (!delta) return;
  const { block, offset } = r.inodeLocation(RESIZE_INO);
  const buf = w.modify(block);
  const i = decodeInode(buf, offset, r.inodeSize);
  i.blocks = Math.max(0, i.blocks + (delta * bs) / 512);
  encodeInode(buf, offset, r.inodeSize, i);
  if (r.csum) setInodeChecksum(r.csumSeed, RESIZE_INO, buf, offset, r.inodeSize);
}

function shrunkSuperblock(
  r: Ext4Reader,
  a: Geometry,
  freeBlocks: number,
  freeInodes: number,
  now: number,
  percent: number,
): Superblock {
  const sb: Superblock = { ...r.sb };
  setBlocksCount(sb, a.blocksCount);
  setReservedBlocksCount(sb, Math.floor((percent * a.blocksCount) / 100.0));
  setFreeBlocksCount(sb, freeBlocks);
  sb.s_free_inodes_count = freeInodes;
  sb.s_inodes_count = a.inodesPerGroup * a.groupCount;
  sb.s_reserved_gdt_blocks = a.reservedGdtBlocks;
  [sb.s_backup_bgs_0, sb.s_backup_bgs_1] = a.backupGroups;
  sb.s_overhead_clusters = 0;
  sb.s_wtime = lo32(now);
  sb.s_wtime_hi = hi32(now) & 0xff;
  return sb;
}

function padBlock(data: Uint8Array, bs: number): Uint8Array {
  const b = new Uint8Array(bs);
  b.set(data.subarray(0, Math.min(bs, data.length)));
  return b;
}
