/**
 * Block-group geometry, pure arithmetic on superblock numbers: which group a block or inode belongs
 * to, where a group starts and how many blocks it has, which groups keep a superblock backup, where
 * the descriptor blocks lie (meta_bg) and the fixed metadata each group holds (kernel doc:
 * ext4 "Blocks", "Layout", "Meta Block Groups"; sparse_super, sparse_super2).
 */
import { COMPAT, INCOMPAT, RO_COMPAT } from './features.js';
import type { Superblock } from './superblock.js';

export interface Geometry {
  blockSize: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  inodesPerGroup: number;
  groupCount: number;
  descSize: number;
  inodeSize: number;
  /** Which groups keep a superblock: every group, sparse_super's, or sparse_super2's two backups. */
  superPolicy: 'all' | 'sparse' | 'sparse2';
  backupGroups: [number, number];
  metaBg: boolean;
  firstMetaBg: number;
  reservedGdtBlocks: number;
}

/** The geometry a superblock describes (its numbers taken as they are; the caller validates them). */
export function geometryOf(
  sb: Superblock,
  g: Pick<Geometry, 'blockSize' | 'blocksCount' | 'descSize' | 'inodeSize'>,
): Geometry {
  return {
    blockSize: g.blockSize,
    blocksCount: g.blocksCount,
    descSize: g.descSize,
    inodeSize: g.inodeSize,
    firstDataBlock: sb.s_first_data_block,
    blocksPerGroup: sb.s_blocks_per_group,
    inodesPerGroup: sb.s_inodes_per_group,
    groupCount: groupCountOf(g.blocksCount, sb.s_first_data_block, sb.s_blocks_per_group),
    superPolicy:
      sb.s_feature_compat & COMPAT.sparse_super2
        ? 'sparse2'
        : sb.s_feature_ro_compat & RO_COMPAT.sparse_super
          ? 'sparse'
          : 'all',
    backupGroups: [sb.s_backup_bgs_0, sb.s_backup_bgs_1],
    metaBg: (sb.s_feature_incompat & INCOMPAT.meta_bg) !== 0,
    firstMetaBg: sb.s_first_meta_bg,
    reservedGdtBlocks: sb.s_reserved_gdt_blocks,
  };
}

type Groups = Pick<Geometry, 'firstDataBlock' | 'blocksPerGroup'>;

/** Groups covering the blocks from the first data block on (the last one may be short). */
export function groupCountOf(blocksCount: number, firstDataBlock: number, blocksPerGroup: number): number {
  return Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
}

export function groupOfBlock(geo: Groups, block: number): number {
  return Math.floor((block - geo.firstDataBlock) / geo.blocksPerGroup);
}

export function groupFirstBlock(geo: Groups, g: number): number {
  return geo.firstDataBlock + g * geo.blocksPerGroup;
}

/** Blocks in group `g`: blocks per group, fewer in a short last group. */
export function groupBlocks(geo: Groups & Pick<Geometry, 'blocksCount'>, g: number): number {
  return Math.min(geo.blocksPerGroup, geo.blocksCount - groupFirstBlock(geo, g));
}

export function groupOfInode(geo: Pick<Geometry, 'inodesPerGroup'>, ino: number): number {
  return Math.floor((ino - 1) / geo.inodesPerGroup);
}

/** Inode table blocks per group. */
export function inodeTableBlocks(geo: Pick<Geometry, 'inodesPerGroup' | 'inodeSize' | 'blockSize'>): number {
  return Math.ceil((geo.inodesPerGroup * geo.inodeSize) / geo.blockSize);
}

/** The index of inode `ino` in its group's inode table. */
export function inodeIndex(geo: Pick<Geometry, 'inodesPerGroup'>, ino: number): number {
  return (ino - 1) % geo.inodesPerGroup;
}

/** The inode number of entry `index` of group `g`'s inode table. */
export function groupInode(geo: Pick<Geometry, 'inodesPerGroup'>, g: number, index: number): number {
  return g * geo.inodesPerGroup + index + 1;
}

export function inodesPerBlock(geo: Pick<Geometry, 'inodeSize' | 'blockSize'>): number {
  return geo.blockSize / geo.inodeSize;
}

/** Groups that hold a superblock backup under sparse_super: 0, 1 and powers of 3, 5 and 7. */
export function groupHasSuper(g: number): boolean {
  if (g <= 1) return true;
  if (g % 2 === 0) return false;
  for (const base of [3, 5, 7]) {
    let p = base;
    while (p < g) p *= base;
    if (p === g) return true;
  }
  return false;
}

/** All groups below `groupCount` that hold superblock backups under sparse_super, ascending. */
export function superGroups(groupCount: number): number[] {
  const set = new Set<number>([0]);
  if (groupCount > 1) set.add(1);
  for (const base of [3, 5, 7]) for (let p = base; p < groupCount; p *= base) set.add(p);
  return [...set].filter((g) => g < groupCount).sort((a, b) => a - b);
}

/** Whether group `g` holds a superblock copy under the file system's policy. */
export function groupHasSuperblock(geo: Pick<Geometry, 'superPolicy' | 'backupGroups'>, g: number): boolean {
  if (geo.superPolicy === 'sparse2') return g === 0 || g === geo.backupGroups[0] || g === geo.backupGroups[1];
  if (geo.superPolicy === 'all') return true;
  return groupHasSuper(g);
}

/** Descriptors per descriptor block. */
export function descsPerBlock(geo: Pick<Geometry, 'blockSize' | 'descSize'>): number {
  return geo.blockSize / geo.descSize;
}

/**
 * The block the superblock lies in, group 0's first: it sits at byte 1024, so block 1 with 1 KiB
 * blocks even when bigalloc makes the first data block 0.
 */
export function superblockBlock(geo: Pick<Geometry, 'firstDataBlock' | 'blockSize'>): number {
  return geo.firstDataBlock || (geo.blockSize === 1024 ? 1 : 0);
}

/** The block holding descriptor block `i` (meta_bg moves later ones next to their groups). */
export function descBlockLoc(geo: Geometry, i: number): number {
  const sbBlock = superblockBlock(geo);
  if (!geo.metaBg || i < geo.firstMetaBg) return sbBlock + 1 + i;
  const g = i * descsPerBlock(geo);
  const first = g === 0 ? sbBlock : groupFirstBlock(geo, g);
  return first + (groupHasSuperblock(geo, g) ? 1 : 0);
}

/** Where descriptor `g` lies: the block and the byte offset in it (`g` must be a group). */
export function descLocation(geo: Geometry, g: number): { block: number; offset: number } {
  const dpb = descsPerBlock(geo);
  return { block: descBlockLoc(geo, Math.floor(g / dpb)), offset: (g % dpb) * geo.descSize };
}

/**
 * The fixed metadata of group `g`: its superblock copy and descriptor blocks (reserved ones included;
 * meta_bg's per-group descriptor block), as [start, length] ranges.
 */
export function groupFixedMeta(geo: Geometry, g: number): [number, number][] {
  const first = groupFirstBlock(geo, g);
  const n = groupBlocks(geo, g);
  const fixed: [number, number][] = [];
  const dpb = descsPerBlock(geo);
  const descBlocks = Math.ceil(geo.groupCount / dpb);
  const hasSuper = groupHasSuperblock(geo, g);
  // Block 0 of a 1 KiB-block file system is the boot block, outside every group.
  if (hasSuper) fixed.push([first, 1]);
  const mbg = Math.floor(g / dpb);
  if (!geo.metaBg || mbg < geo.firstMetaBg) {
    // The old-style descriptor blocks are copied into every superblock group before the meta_bg part
    // (e2fsprogs counts no reserved GDT blocks beside meta_bg; the kernel does, and resize_inode and
    // meta_bg never come together, so a meta_bg file system has none).
    const old = geo.metaBg ? geo.firstMetaBg : descBlocks + geo.reservedGdtBlocks;
    if (hasSuper && old) fixed.push([first + 1, Math.min(old, n - 1)]);
  } else {
    const k = g % dpb;
    if (k === 0 || k === 1 || k === dpb - 1) fixed.push([first + (hasSuper ? 1 : 0), 1]);
  }
  return fixed;
}

/** The groups holding a superblock copy, ascending (group 0 first). */
export function superblockGroups(geo: Pick<Geometry, 'superPolicy' | 'backupGroups' | 'groupCount'>): number[] {
  if (geo.superPolicy === 'all') return Array.from({ length: geo.groupCount }, (_, g) => g);
  if (geo.superPolicy === 'sparse') return superGroups(geo.groupCount);
  const [a, b] = geo.backupGroups;
  return [...new Set([0, a, b])].filter((g) => g === 0 || (g > 0 && g < geo.groupCount)).sort((x, y) => x - y);
}

/**
 * sparse_super2's two backup groups once the file system has `groups` groups instead of
 * `geo.groupCount` (as resize2fs moves them, so its results and ours agree): a grow gives a one-group
 * file system its first backup in group 1, and moves the second backup (or gives one, where there was
 * no room before) to the new last group; a shrink drops a backup whose group goes, and keeps the
 * second backup in the last group when it was there. Other policies keep what they have.
 */
export function backupGroupsFor(
  geo: Pick<Geometry, 'superPolicy' | 'backupGroups' | 'groupCount'>,
  groups: number,
): [number, number] {
  let [a, b] = geo.backupGroups;
  if (geo.superPolicy !== 'sparse2' || groups === geo.groupCount) return [a, b];
  const last = groups - 1;
  const oldLast = geo.groupCount - 1;
  if (groups > geo.groupCount) {
    if (geo.groupCount === 1) a = 1;
    if (b || (geo.groupCount < 3 && groups > 2)) b = last;
    return [a, b];
  }
  if (a > last) a = 0;
  if (b > last) b = 0;
  if (last > 1 && geo.backupGroups[1] === oldLast) b = last;
  return [a, b];
}

/**
 * Every block holding descriptor block `i`: the primary first, then its backups (an old-style block
 * in every superblock group; a meta_bg block in the first, second and last group of its meta group).
 */
export function descBlockCopies(geo: Geometry, i: number): number[] {
  const sbBlock = superblockBlock(geo);
  const dpb = descsPerBlock(geo);
  if (!geo.metaBg || i < geo.firstMetaBg)
    return superblockGroups(geo)
      .filter((g) => !geo.metaBg || Math.floor(g / dpb) < geo.firstMetaBg)
      .map((g) => (g === 0 ? sbBlock : groupFirstBlock(geo, g)) + 1 + i);
  const out: number[] = [];
  for (const g of [i * dpb, i * dpb + 1, i * dpb + dpb - 1])
    if (g < geo.groupCount && !out.includes(g))
      out.push((g === 0 ? sbBlock : groupFirstBlock(geo, g)) + (groupHasSuperblock(geo, g) ? 1 : 0));
  return out;
}
