/**
 * The resize inode rewritten from the one layout (ext4/resize-inode.ts), inside a repair's open edit
 * (so through the journal at its commit): the inode (a regular file, one link, its DIND block only,
 * i_size and i_blocks as the layout says), its DIND block and every reserved GDT block's list of
 * copies. Only blocks that differ from the layout are staged, so a rewrite that fixes a count stays a
 * small transaction. The reserved blocks and their copies are fixed metadata, whose bitmap bits pass
 * 5's fixes already cover; a DIND block taken anew is allocated (its bit set) near where mkfs puts it.
 *
 * What the check found decides when (check/resize-inode.ts, ResizeInodeFix): `check --repair` (a
 * preen) rewrites it where e2fsck -p fixes what is wrong (i_blocks, i_size, a mode), or where e2fsck
 * does not look (lists past the first quarter, a stray DIND entry); an inode e2fsck's superblock
 * checks find not valid, or one naming blocks outside the file system, stops a preen as it stops
 * e2fsck -p, and is left to a repair that recreates it as e2fsck -y does (`recreate`).
 */
import { u32 } from '../core/bytes.js';
import { blockBytes } from '../core/zero-tail.js';
import { inodeTableBlocks, superblockBlock } from '../ext4/geometry.js';
import { FL_EXTENTS, FL_HUGE_FILE, FL_INLINE_DATA, I_BLOCK_SIZE, RESIZE_INO, S_IFREG } from '../ext4/inode.js';
import {
  RESIZE_DIND_SLOT,
  reservedGdtBlock,
  resizeDindBlock,
  resizeGeometry,
  resizeInodeBlockCount,
  resizeInodeSize,
  resizeListBlocks,
} from '../ext4/resize-inode.js';
import type { CheckResult, Problem } from '../check/check.js';
import type { Volume } from './volume.js';

/** Whether the repair's rewrite of the resize inode takes care of `p` (a preen's, unless `recreate`). */
export function resizeInodeFixes(res: CheckResult, p: Problem, recreate = false): boolean {
  const fix = res.resizeInodeFix;
  return p.code === 'RESIZE_INODE' && fix !== undefined && (fix.preen || recreate);
}

/**
 * Stages the rewrite in `v`'s open operation (see the module comment); `now` is the change time.
 * Returns the blocks staged (the inode's table block not counted).
 */
export function rewriteResizeInode(v: Volume, res: CheckResult, now: { sec: number; nsec: number }): number {
  const fix = res.resizeInodeFix;
  if (!fix) return 0;
  const rg = resizeGeometry(v.r.geo);
  const bs = v.bs;
  const old = v.readInode(RESIZE_INO);
  // mkfs's place for it: past group 0's metadata (e2fsck's recreate asks for the same).
  const goal = superblockBlock(rg) + rg.descBlocks + rg.reservedGdtBlocks + 2 + inodeTableBlocks(v.r.geo);
  const dind = fix.keepDind ? u32(old.block, RESIZE_DIND_SLOT * 4) : v.allocBlock(goal);
  let staged = 0;
  const stage = (block: number, want: Uint8Array) => {
    if (Buffer.compare(v.r.readBlocks(block), want) === 0) return;
    v.tx.put(block, want);
    staged++;
  };
  stage(dind, resizeDindBlock(rg));
  resizeListBlocks(rg).forEach((list, k) => stage(reservedGdtBlock(rg, k), blockBytes(list)));
  const block = new Uint8Array(I_BLOCK_SIZE);
  new DataView(block.buffer).setUint32(RESIZE_DIND_SLOT * 4, dind, true);
  v.writeInode(RESIZE_INO, {
    ...old,
    mode: S_IFREG | 0o600,
    linksCount: 1,
    dtime: 0,
    flags: old.flags & ~(FL_EXTENTS | FL_INLINE_DATA | FL_HUGE_FILE),
    size: resizeInodeSize(bs),
    blocks: (resizeInodeBlockCount(rg) * bs) / 512,
    block,
    ctime: now,
    mtime: now,
  });
  return staged;
}
