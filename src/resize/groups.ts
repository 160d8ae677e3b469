/**
 * The groups of one grow step: each new group's descriptor and the bitmaps that must be written (a
 * group holding other groups' tables, the last group, and every group without uninit_bg/metadata_csum;
 * the others are BLOCK_UNINIT and INODE_UNINIT and the kernel sets their bitmaps up itself), the old last
 * group grown to a whole group (its bitmap's padding cleared over the new blocks), the block the resize
 * inode frees, and every copy of every descriptor block that changed or that a new backup group keeps.
 */
import { COMPAT, RO_COMPAT } from '../ext4/features.js';
import {
  descBlockCopies,
  descsPerBlock,
  groupBlocks,
  groupFirstBlock,
  groupFixedMeta,
  superblockGroups,
} from '../ext4/geometry.js';
import {
  decodeGroupDesc,
  encodeGroupDesc,
  putGroupDescChecksum,
  BG_BLOCK_UNINIT,
  BG_INODE_UNINIT,
  BG_INODE_ZEROED,
  type GroupDesc,
} from '../ext4/group-desc.js';
import { bitmapChecksum, clearBit, setBitRange } from '../ext4/bitmap.js';
import type { Ext4Reader } from '../fs/reader.js';
import { droppedSuperGroups, groupUse, type GrowStep, type NewGroupTables } from './plan.js';
import type { StepWrites } from './writes.js';

export interface GroupChanges {
  /** Free blocks and inodes the step adds. */
  freeBlocks: number;
  freeInodes: number;
}

/** How the step treats the new groups' inode tables. */
export interface TableZeroing {
  /** Byte offset of the image from which it is known to read as zeros (a hole the grow made). */
  zeroFrom: number;
}

/**
 * Fills `w` with the step's descriptors and bitmaps; `freed` is a block of the old file system the
 * step frees (the resize inode's DIND block when turning to meta_bg; 0 for none).
 */
export function growGroups(
  r: Ext4Reader,
  step: GrowStep,
  plan: NewGroupTables,
  w: StepWrites,
  zeroing: TableZeroing,
  freed: number,
): GroupChanges {
  const { before, after } = step;
  const bs = r.blockSize;
  const ds = r.descSize;
  const dpb = descsPerBlock(after);
  const ipg = after.inodesPerGroup;
  const itb = plan.inodeBlocksPerGroup;
  const roCompat = r.sb.s_feature_ro_compat;
  const groupCsum = (roCompat & (RO_COMPAT.metadata_csum | RO_COMPAT.gdt_csum)) !== 0;
  const csum = r.csum;
  const out: GroupChanges = { freeBlocks: 0, freeInodes: 0 };

  // Descriptor blocks by index, as the new file system has them; `changed` ones are written everywhere.
  const descBlocks = new Map<number, Uint8Array>();
  const changed = new Set<number>();
  const haveDesc = Math.ceil(before.groupCount / dpb);
  const descBlock = (i: number): Uint8Array => {
    let b = descBlocks.get(i);
    if (!b) descBlocks.set(i, (b = i < haveDesc ? r.readBlocks(r.descBlockLoc(i)).slice() : new Uint8Array(bs)));
    return b;
  };
  const store = (g: number, d: GroupDesc) => {
    const i = Math.floor(g / dpb);
    const b = descBlock(i);
    const off = (g % dpb) * ds;
    encodeGroupDesc(b, off, ds, d);
    const c = r.descChecksum(g, b, off);
    if (c !== undefined) putGroupDescChecksum(b, off, c);
    changed.add(i);
  };
  const load = (g: number) => decodeGroupDesc(descBlock(Math.floor(g / dpb)), (g % dpb) * ds, ds);

  // The old last group, grown (when it was short): its new blocks are free.
  const last = before.groupCount - 1;
  const grownBy = groupBlocks(after, last) - groupBlocks(before, last);
  if (grownBy > 0) {
    const d = load(last);
    d.freeBlocks += grownBy;
    if (!(d.flags & BG_BLOCK_UNINIT)) {
      const bm = w.modify(d.blockBitmap);
      const from = groupBlocks(before, last);
      for (let k = from; k < from + grownBy; k++) clearBit(bm, k);
      if (csum) d.blockBitmapCsum = bitmapChecksum(r.csumSeed, bm, after.blocksPerGroup);
    }
    store(last, d);
    out.freeBlocks += grownBy;
  }

  // A block of the old file system freed by the step (its group is an old one, initialized).
  if (freed) {
    const g = Math.floor((freed - after.firstDataBlock) / after.blocksPerGroup);
    const d = load(g);
    if (!(d.flags & BG_BLOCK_UNINIT)) {
      const bm = w.modify(d.blockBitmap);
      clearBit(bm, freed - groupFirstBlock(after, g));
      if (csum) d.blockBitmapCsum = bitmapChecksum(r.csumSeed, bm, after.blocksPerGroup);
    }
    d.freeBlocks += 1;
    store(g, d);
    out.freeBlocks += 1;
  }

  // Old groups that stop keeping a backup (sparse_super2's moved to the new last group): their
  // superblock copy and descriptor area become free blocks of the group, but for what the group still
  // holds (meta_bg's descriptor block, which moves up into the superblock's place: written there).
  for (const g of droppedSuperGroups(before, after)) {
    const d = load(g);
    const still = new Set<number>();
    for (const [s, len] of groupFixedMeta(after, g)) for (let k = s; k < s + len; k++) still.add(k);
    const uninit = (d.flags & BG_BLOCK_UNINIT) !== 0 && groupCsum;
    let n = 0;
    for (const [s, len] of groupFixedMeta(before, g))
      for (let k = s; k < s + len; k++) {
        if (still.has(k)) continue;
        n++;
        if (!uninit) clearBit(w.modify(d.blockBitmap), k - groupFirstBlock(before, g));
      }
    if (csum && !uninit) d.blockBitmapCsum = bitmapChecksum(r.csumSeed, w.modify(d.blockBitmap), after.blocksPerGroup);
    d.freeBlocks += n;
    store(g, d);
    out.freeBlocks += n;
    if (after.metaBg && Math.floor(g / dpb) >= after.firstMetaBg) {
      descBlock(Math.floor(g / dpb));
      changed.add(Math.floor(g / dpb));
    }
  }

  // The new groups.
  const bitmaps = new Map<string, { bm: Uint8Array; csum: number }>();
  let inodeBitmap: Uint8Array | undefined;
  for (let g = before.groupCount; g < after.groupCount; g++) {
    const start = groupFirstBlock(after, g);
    const n = groupBlocks(after, g);
    const { used, own } = groupUse(after, plan, g);
    const it = plan.inodeTable[g]!;
    const zeroed = it * bs >= zeroing.zeroFrom;
    const blockUninit = groupCsum && g !== after.groupCount - 1 && used === own;
    let flags = 0;
    if (groupCsum) flags = BG_INODE_UNINIT | (blockUninit ? BG_BLOCK_UNINIT : 0) | (zeroed ? BG_INODE_ZEROED : 0);
    const d: GroupDesc = {
      blockBitmap: plan.blockBitmap[g]!,
      inodeBitmap: plan.inodeBitmap[g]!,
      inodeTable: it,
      freeBlocks: n - used,
      freeInodes: ipg,
      usedDirs: 0,
      flags,
      excludeBitmap: 0,
      blockBitmapCsum: 0,
      inodeBitmapCsum: 0,
      itableUnused: groupCsum ? ipg : 0,
      checksum: 0,
    };
    if (!blockUninit) {
      // Most groups holding a flex group's tables have the same bitmap: built and checksummed once.
      const ranges: number[] = [n];
      plan.used.forEachIn(start, start + n, (s, e) => ranges.push(s - start, e - start));
      const key = ranges.join(',');
      let made = bitmaps.get(key);
      if (!made) {
        const bm = new Uint8Array(bs);
        for (let k = 1; k < ranges.length; k += 2) setBitRange(bm, ranges[k]!, ranges[k + 1]!);
        setBitRange(bm, n, bs * 8);
        made = { bm, csum: csum ? bitmapChecksum(r.csumSeed, bm, after.blocksPerGroup) : 0 };
        bitmaps.set(key, made);
      }
      d.blockBitmapCsum = made.csum;
      w.put(d.blockBitmap, made.bm);
    }
    if (!groupCsum) {
      if (!inodeBitmap) setBitRange((inodeBitmap = new Uint8Array(bs)), ipg, bs * 8);
      w.put(d.inodeBitmap, inodeBitmap);
      if (!zeroed) w.zeroRuns.push([it, itb]);
    }
    store(g, d);
    out.freeBlocks += n - used;
    out.freeInodes += ipg;
  }

  // Old-style descriptor blocks a new backup group copies, even unchanged ones.
  const oldStyle = after.metaBg ? after.firstMetaBg : Math.ceil(after.groupCount / dpb);
  const copiedInNew = superblockGroups(after).some(
    (g) => g >= before.groupCount && (!after.metaBg || Math.floor(g / dpb) < after.firstMetaBg),
  );
  if (copiedInNew) for (let i = 0; i < oldStyle; i++) descBlock(i);

  for (const [i, data] of descBlocks) {
    const copies = descBlockCopies(after, i);
    copies.forEach((block, k) => {
      if (block >= w.oldEnd) w.put(block, data);
      // A reserved GDT block's backup copy: nothing reads it before the switch.
      else if (changed.has(i)) w.put(block, data, i >= haveDesc && k > 0 && !after.metaBg);
    });
  }
  return out;
}

/** Whether the file system keeps a resize inode (its lists must follow the grow). */
export function hasResizeInode(r: Ext4Reader): boolean {
  return (r.sb.s_feature_compat & COMPAT.resize_inode) !== 0;
}
