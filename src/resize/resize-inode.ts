/**
 * The resize inode (inode 7) through a grow (kernel doc: special_inodes.rst, resize2fs(8)): its
 * double-indirect block lists the primary reserved GDT blocks (entry `i % (block size / 4)` for
 * descriptor block `i`), and each primary reserved GDT block, read as an indirect block, lists its
 * copies in the backup groups, in group order. A reserved block taken into use as a descriptor block
 * leaves both lists (its DIND entry is cleared); a new backup group adds its copy to every list still
 * reserved; i_blocks counts what is listed. Turning to meta_bg drops the inode's blocks altogether
 * (the DIND block is freed; the reserved GDT blocks are all in use as descriptors by then), as the
 * kernel does when it converts.
 */
import { Ext4Error } from '../core/errors.js';
import { put32, u32 } from '../core/bytes.js';
import { decodeInode, encodeInode, setInodeChecksum, I_BLOCK_SIZE, RESIZE_INO, type Inode } from '../ext4/inode.js';
import { ZeroTail } from '../core/zero-tail.js';
import { type Geometry, groupFirstBlock, superblockBlock, superblockGroups } from '../ext4/geometry.js';
import type { Ext4Reader } from '../fs/reader.js';
import { newSuperGroups, type GrowStep } from './plan.js';
import type { StepWrites } from './writes.js';

/** The double-indirect slot of i_block. */
const DIND = 13;

/** Rewrites inode 7's record in its table block (checksum included). */
function writeResizeInode(r: Ext4Reader, w: StepWrites, change: (i: Inode) => void): void {
  const { block, offset } = r.inodeLocation(RESIZE_INO);
  const buf = w.modify(block);
  const inode = decodeInode(buf, offset, r.inodeSize);
  change(inode);
  encodeInode(buf, offset, r.inodeSize, inode);
  if (r.csum) setInodeChecksum(r.csumSeed, RESIZE_INO, buf, offset, r.inodeSize);
}

/** The DIND block of the resize inode (checked: it must lie inside the file system). */
function dindBlock(r: Ext4Reader): number {
  const dind = u32(r.inode(RESIZE_INO).block, DIND * 4);
  if (dind < r.sb.s_first_data_block || dind >= r.blocksCount)
    throw new Ext4Error(
      'CORRUPT',
      `the resize inode's double-indirect block ${dind} is not valid; check it first (e2fsck)`,
    );
  return dind;
}

/**
 * The lists of reserved GDT blocks `k0..k0+n-1` of a file system of geometry `geo`: block k lists its
 * copy in every backup group (the group's first block + 1 + k), in group order, then zeros.
 */
export function listBlocks(geo: Geometry, k0: number, n: number, bs: number): ZeroTail[] {
  const firsts = superblockGroups(geo)
    .filter((g) => g !== 0)
    .map((g) => groupFirstBlock(geo, g) + 1);
  const m = firsts.length;
  const entries = new Uint32Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) entries[i * m + j] = firsts[j]! + k0 + i;
  const bytes = new Uint8Array(entries.buffer);
  if (!LITTLE_ENDIAN) for (let o = 0; o < bytes.length; o += 4) bytes.subarray(o, o + 4).reverse();
  return Array.from({ length: n }, (_, i) => new ZeroTail(bytes.subarray(i * m * 4, (i + 1) * m * 4), bs));
}

/** Uint32Array holds the platform's byte order; the lists are little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Updates the resize inode for `step` (nothing when the file system has none). Returns the block it
 * frees (the DIND block, when the step turns to meta_bg), to be marked free by the caller.
 */
export function growResizeInode(r: Ext4Reader, step: GrowStep, w: StepWrites, hasResizeInode: boolean): number {
  if (!hasResizeInode) return 0;
  const dind = dindBlock(r);
  const bs = r.blockSize;
  const apb = bs / 4;
  if (step.toMetaBg) {
    writeResizeInode(r, w, (i) => {
      i.block = new Uint8Array(I_BLOCK_SIZE);
      i.blocks = 0;
    });
    return dind;
  }
  const sbBlock = superblockBlock(r.geo);
  const haveDesc = Math.ceil(step.before.groupCount / (bs / step.before.descSize));
  const table = r.readBlocks(dind);
  // Every reserved block must be where the DIND block says, before anything is written.
  for (let i = 0; i < step.before.reservedGdtBlocks; i++) {
    const k = haveDesc + i;
    if (u32(table, (k % apb) * 4) !== sbBlock + 1 + k)
      throw new Ext4Error(
        'CORRUPT',
        `the resize inode does not list reserved GDT block ${sbBlock + 1 + k}; check it first (e2fsck)`,
      );
  }
  const dindBuf = step.reservedTaken ? w.modify(dind) : undefined;
  for (let k = haveDesc; k < haveDesc + step.reservedTaken; k++) put32(dindBuf!, (k % apb) * 4, 0);
  const added = newSuperGroups(step).filter((g) => g !== 0);
  const rsvAfter = step.after.reservedGdtBlocks;
  const oldBackups = superblockGroups(step.before).length - 1;
  const newBackups = superblockGroups(step.after).length - 1;
  if (added.length && newBackups > apb)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `too many backup groups for the resize inode's lists`);
  if (added.length) {
    // Every list still reserved gains the new backups. A list's content follows from the geometry (the
    // copy of reserved block k in each backup group, in group order; e2fsck checks exactly that), so
    // the lists are written whole, not read first: up to 1024 blocks of the file system's first group,
    // each its entries and then zeros (kept as ZeroTail blocks: only the entries are ever in memory).
    const k0 = haveDesc + step.reservedTaken;
    listBlocks(step.after, k0, rsvAfter, bs).forEach((list, i) => w.put(sbBlock + 1 + k0 + i, list));
  }
  const delta = rsvAfter * (1 + newBackups) - step.before.reservedGdtBlocks * (1 + oldBackups);
  if (delta) writeResizeInode(r, w, (i) => (i.blocks = Math.max(0, i.blocks + (delta * bs) / 512)));
  return 0;
}
