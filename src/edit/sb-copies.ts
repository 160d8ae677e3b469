/**
 * The copies of the superblock and of the descriptor table an edit of identity must keep in step (tune):
 * where the backups lie (sparse_super's groups 0, 1 and powers of 3, 5, 7; sparse_super2's two; every
 * group without either; meta_bg's first, second and last group of each meta group), writing the backup
 * superblocks through the open transaction, and the descriptor table: its primary copy changed in
 * place, then copied over every backup. The kernel
 * never updates backups; tune2fs does (its closing flush writes all of them), and so does `tune`, so a
 * file system repaired from a backup comes back with its new identity.
 */
import { encodeSuperblock, STATE_VALID, SUPERBLOCK_SIZE, type Superblock } from '../ext4/superblock.js';
import { descBlockCopies, descsPerBlock, groupFirstBlock, superblockGroups } from '../ext4/geometry.js';
import type { Geometry } from '../ext4/geometry.js';
import type { Transaction } from './transaction.js';

/** Groups other than 0 that keep a superblock backup. */
export function backupGroups(geo: Geometry): number[] {
  return superblockGroups(geo).filter((g) => g > 0);
}

/**
 * Writes `sb` as the backup superblock of every backup group: s_block_group_nr set to the group, and
 * marked not cleanly unmounted as e2fsprogs writes its backups (a file system brought back from one is
 * then checked in full).
 */
export function writeBackupSuperblocks(tx: Transaction, geo: Geometry, sb: Superblock): number {
  const groups = backupGroups(geo);
  for (const g of groups) {
    const b = tx.modify(groupFirstBlock(geo, g));
    b.set(
      encodeSuperblock({ ...sb, s_block_group_nr: g & 0xffff, s_state: sb.s_state & ~STATE_VALID }).subarray(
        0,
        SUPERBLOCK_SIZE,
      ),
      0,
    );
  }
  return groups.length;
}

/** One block of a descriptor table: where it lies and the first group it describes. */
export interface DescBlock {
  block: number;
  firstGroup: number;
  primary: boolean;
}

/** Every block of every copy of the descriptor table: the primary one and each backup. */
export function descriptorBlocks(geo: Geometry): DescBlock[] {
  const dpb = descsPerBlock(geo);
  const out: DescBlock[] = [];
  for (let i = 0; i < Math.ceil(geo.groupCount / dpb); i++)
    descBlockCopies(geo, i).forEach((block, k) => out.push({ block, firstGroup: i * dpb, primary: k === 0 }));
  return out;
}

/**
 * Calls `fix(group, block, offset)` for every descriptor of the primary table, on the block as the
 * transaction holds it (made writable), then copies the primary blocks over every backup copy, as
 * tune2fs's closing flush does: a backup then describes the file system as it is, not as mkfs left it.
 */
export function rewriteDescriptors(
  tx: Transaction,
  geo: Geometry,
  fix: (group: number, b: Uint8Array, off: number) => void,
): number {
  const dpb = descsPerBlock(geo);
  const blocks = descriptorBlocks(geo);
  const primary = new Map<number, number>();
  for (const d of blocks) {
    if (!d.primary) continue;
    primary.set(d.firstGroup, d.block);
    const b = tx.modify(d.block);
    for (let k = 0; k < dpb && d.firstGroup + k < geo.groupCount; k++) fix(d.firstGroup + k, b, k * geo.descSize);
  }
  for (const d of blocks) if (!d.primary) tx.put(d.block, tx.read(primary.get(d.firstGroup)!).slice());
  return blocks.length;
}
