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
import {
  RESIZE_DIND_SLOT,
  reservedGdtBlock,
  resizeDindSlot,
  resizeGeometry,
  resizeInodeBlockCount,
  resizeListBlocks,
} from '../ext4/resize-inode.js';
import type { Ext4Reader } from '../fs/reader.js';
import { newSuperGroups, type GrowStep } from './plan.js';
import type { StepWrites } from './writes.js';

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
  const dind = u32(r.inode(RESIZE_INO).block, RESIZE_DIND_SLOT * 4);
  if (dind < r.sb.s_first_data_block || dind >= r.blocksCount)
    throw new Ext4Error(
      'CORRUPT',
      `the resize inode's double-indirect block ${dind} is not valid; check it first (e2fsck)`,
    );
  return dind;
}

/**
 * Updates the resize inode for `step` (nothing when the file system has none). Returns the block it
 * frees (the DIND block, when the step turns to meta_bg), to be marked free by the caller.
 */
export function growResizeInode(r: Ext4Reader, step: GrowStep, w: StepWrites, hasResizeInode: boolean): number {
  if (!hasResizeInode) return 0;
  const dind = dindBlock(r);
  const bs = r.blockSize;
  if (step.toMetaBg) {
    writeResizeInode(r, w, (i) => {
      i.block = new Uint8Array(I_BLOCK_SIZE);
      i.blocks = 0;
    });
    return dind;
  }
  const before = resizeGeometry(step.before);
  const table = r.readBlocks(dind);
  // Every reserved block must be where the DIND block says, before anything is written.
  for (let i = 0; i < before.reservedGdtBlocks; i++)
    if (u32(table, resizeDindSlot(before, i) * 4) !== reservedGdtBlock(before, i))
      throw new Ext4Error(
        'CORRUPT',
        `the resize inode does not list reserved GDT block ${reservedGdtBlock(before, i)}; check it first (e2fsck)`,
      );
  const dindBuf = step.reservedTaken ? w.modify(dind) : undefined;
  for (let i = 0; i < step.reservedTaken; i++) put32(dindBuf!, resizeDindSlot(before, i) * 4, 0);
  const added = newSuperGroups(step).filter((g) => g !== 0);
  const after = { ...resizeGeometry(step.after), descBlocks: before.descBlocks + step.reservedTaken };
  if (added.length && after.superGroups.length - 1 > bs / 4)
    throw new Ext4Error('UNSUPPORTED_FEATURE', `too many backup groups for the resize inode's lists`);
  if (added.length) {
    // Every list still reserved gains the new backups. A list's content follows from the geometry (the
    // copy of reserved block k in each backup group, in group order; e2fsck checks exactly that), so
    // the lists are written whole, not read first: up to 1024 blocks of the file system's first group,
    // each its entries and then zeros (kept as ZeroTail blocks: only the entries are ever in memory).
    resizeListBlocks(after).forEach((list, i) => w.put(reservedGdtBlock(after, i), list));
  }
  const delta = resizeInodeBlockCount(after) - resizeInodeBlockCount(before);
  if (delta) writeResizeInode(r, w, (i) => (i.blocks = Math.max(0, i.blocks + (delta * bs) / 512)));
  return 0;
}
