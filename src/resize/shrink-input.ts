/**
 * What the shrink planner needs from an open file system: the used inodes, the free blocks (the
 * groups' own counts, which the superblock's may lag behind) and where each group's bitmaps and inode
 * table end. Reads only the descriptors.
 */
import { INCOMPAT } from '../ext4/features.js';
import { inodeTableBlocks } from '../ext4/geometry.js';
import type { Ext4Reader } from '../fs/reader.js';
import { logFlexOf } from './grow.js';
import { hasResizeInode } from './groups.js';
import type { ShrinkInput } from './shrink-plan.js';

export function shrinkInput(r: Ext4Reader): ShrinkInput {
  const geo = r.geo;
  const itb = inodeTableBlocks(geo);
  let freeBlocks = 0;
  let freeInodes = 0;
  const tablesEnd = new Float64Array(geo.groupCount);
  for (let g = 0; g < geo.groupCount; g++) {
    const d = r.groupDesc(g);
    freeBlocks += d.freeBlocks;
    freeInodes += d.freeInodes;
    tablesEnd[g] = Math.max(d.blockBitmap + 1, d.inodeBitmap + 1, d.inodeTable + itb);
  }
  return {
    geo,
    usedInodes: geo.inodesPerGroup * geo.groupCount - freeInodes,
    freeBlocks,
    inodeTableBlocks: itb,
    logGroupsPerFlex: logFlexOf(r),
    extents: (r.sb.s_feature_incompat & INCOMPAT.extent) !== 0,
    tablesEnd,
    resizeInode: hasResizeInode(r),
  };
}
