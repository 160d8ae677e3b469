/**
 * Pass 0 (e2fsck's superblock and descriptor checks): the superblock's geometry and counts, every
 * group descriptor (its checksum, where its bitmaps and inode table lie), the fixed metadata laid out
 * without overlaps, the MMP block, the journal's superblock, the orphan list and orphan file, quota
 * inode numbers, and what a read-only check cannot go past (a journal that needs recovery).
 */
import { Ext4Error } from '../core/errors.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from '../ext4/features.js';
import { BG_BLOCK_UNINIT, BG_INODE_UNINIT } from '../ext4/group-desc.js';
import {
  decodeJournalSuperblock,
  journalSuperblockChecksum,
  JBD2_INCOMPAT,
  JBD2_SUPERBLOCK_V1,
  JBD2_SUPERBLOCK_V2,
} from '../ext4/journal.js';
import { isZero, u32 } from '../core/bytes.js';
import { ORPHAN_BLOCK_MAGIC, ORPHAN_TAIL_BYTES, orphanBlockChecksum, orphanEntries } from '../ext4/orphan.js';
import { reservedBlocksCount } from '../ext4/superblock.js';
import { mmpBlock, mmpBlockOk } from '../ext4/mmp.js';
import type { BlockDevice } from '../io/device.js';
import type { CheckContext, MetaRun } from './context.js';

export function checkSuperblock(ctx: CheckContext, dev: BlockDevice): void {
  const { sb, bs, problems: p } = ctx;
  const bad = (text: string) => p.add('SUPERBLOCK', text);
  const clusterBits = ctx.bpg / ctx.ratio;
  if (clusterBits > bs * 8 || ctx.bpg % ctx.ratio)
    bad(`${ctx.bpg} blocks per group cannot be described by one ${bs}-byte bitmap`);
  if (ctx.ipg > bs * 8) bad(`inodes per group ${ctx.ipg} is more than a bitmap block holds (${bs * 8})`);
  if (ctx.ipg % (bs / ctx.raw.inodeSize) && ctx.ipg % 8)
    bad(`inodes per group ${ctx.ipg} does not fill whole inode table blocks`);
  if (ctx.inodesCount !== ctx.ipg * ctx.groupCount)
    bad(`inode count ${ctx.inodesCount} is not ${ctx.ipg} per group x ${ctx.groupCount} groups`);
  const wantFirst = bs === 1024 && ctx.ratio === 1 ? 1 : 0;
  if (ctx.firstData !== wantFirst) bad(`first data block is ${ctx.firstData}, should be ${wantFirst}`);
  // e2fsck -n asks to abort and goes on, reading what is missing as zeros: what that breaks is found
  // by the passes; the shortfall itself is a warning (the kernel would refuse to mount it).
  if (ctx.blocksCount * bs > dev.size)
    p.warn(
      'SUPERBLOCK',
      `the file system has ${ctx.blocksCount} blocks but the image holds only ${Math.floor(dev.size / bs)}: it is truncated`,
    );
  if (reservedBlocksCount(sb) > ctx.blocksCount / 2)
    bad(`reserved blocks (${reservedBlocksCount(sb)}) are more than half the file system`);
  if (sb.s_rev_level > 0 && (ctx.firstIno < 11 || ctx.firstIno >= ctx.inodesCount))
    bad(`first non-reserved inode ${ctx.firstIno} is not valid`);
  if (sb.s_reserved_gdt_blocks > bs / 4) bad(`reserved descriptor blocks ${sb.s_reserved_gdt_blocks} exceed ${bs / 4}`);
  if (ctx.has(INCOMPAT.flex_bg) && sb.s_log_groups_per_flex > 31)
    bad(`groups per flex group 2^${sb.s_log_groups_per_flex} is not valid`);
  if (sb.s_feature_incompat & INCOMPAT.needs_recovery && sb.s_feature_compat & COMPAT.has_journal && !ctx.replayed)
    p.warn(
      'NEEDS_RECOVERY',
      'the journal needs recovery: what it holds is not in the file system yet (check --replay checks the state after it)',
    );
  if (sb.s_last_orphan) collectOrphans(ctx);
  if (sb.s_feature_compat & COMPAT.orphan_file) checkOrphanFile(ctx);
  // Quota files are inodes of their own: never one of the other reserved inodes, never past the count.
  const notQuota = new Set([1, 2, 5, 6, 7, 8, 9, 10]);
  for (const [which, ino] of [
    ['user', sb.s_usr_quota_inum],
    ['group', sb.s_grp_quota_inum],
    ['project', sb.s_prj_quota_inum],
  ] as const)
    if (ino && (notQuota.has(ino) || ino > ctx.inodesCount))
      bad(`the ${which} quota inode ${ino} cannot be a quota file`);
}

/** The orphan list (s_last_orphan, through i_dtime): its inodes are in use but unlinked. */
function collectOrphans(ctx: CheckContext): void {
  let ino = ctx.sb.s_last_orphan;
  while (ino) {
    if (ino < ctx.firstIno || ino > ctx.inodesCount || ctx.orphans.has(ino)) {
      ctx.problems.add('ORPHANS', `the orphan list holds inode ${ino}, which cannot be an orphan`, { inode: ino });
      return;
    }
    ctx.orphans.add(ino);
    let next: number;
    try {
      next = ctx.raw.inode(ino).dtime;
    } catch {
      return;
    }
    ino = next;
  }
  ctx.problems.add('ORPHANS', `${ctx.orphans.size} orphan inode(s) wait for the clean-up a mount or recover does`);
}

/**
 * The orphan file: its blocks' magic (and checksums), and orphan_present set exactly when it lists an
 * orphan. Listed orphans are in use though unlinked, like those of the orphan list.
 */
function checkOrphanFile(ctx: CheckContext): void {
  const p = ctx.problems;
  const ino = ctx.sb.s_orphan_file_inum;
  if (!ino || ino > ctx.inodesCount) {
    p.add('ORPHANS', `the orphan file inode ${ino} is not valid`);
    return;
  }
  let listed = 0;
  try {
    const i = ctx.raw.inode(ino);
    const seed = ctx.raw.csum ? ctx.raw.inodeSeed(ino, i.generation) : undefined;
    for (const run of ctx.raw.blockRuns(ino, i))
      for (let k = 0; k < run.len; k++) {
        const b = ctx.raw.readBlocks(run.pblk + k);
        if (u32(b, ctx.bs - ORPHAN_TAIL_BYTES) !== ORPHAN_BLOCK_MAGIC)
          throw new Ext4Error('CORRUPT', `orphan file block ${run.pblk + k} has a bad magic number`);
        if (seed !== undefined && orphanBlockChecksum(seed, run.pblk + k, b) !== u32(b, ctx.bs - 4))
          throw new Ext4Error('BAD_CHECKSUM', `orphan file block ${run.pblk + k} checksum does not match`);
        for (const o of orphanEntries(b)) {
          listed++;
          ctx.orphans.add(u32(b, o));
        }
      }
  } catch (e) {
    p.fromError('ORPHANS', e, { inode: ino });
    return;
  }
  const present = ctx.hasRo(RO_COMPAT.orphan_present);
  if (present && !listed) p.add('ORPHANS', 'orphan_present is set but the orphan file lists no orphan');
  if (listed) p.add('ORPHANS', `the orphan file lists ${listed} orphan inode(s) waiting for clean-up`);
}

/** Descriptors: checksums, metadata locations, counts, flags; builds the fixed metadata map. */
export function checkDescriptors(ctx: CheckContext): void {
  const { problems: p, raw } = ctx;
  const tableBlocks = ctx.inodeTableBlocks();
  const meta: MetaRun[] = [];
  const badChecksum: number[] = [];
  for (let g = 0; g < ctx.groupCount; g++) {
    try {
      ctx.r.groupDesc(g);
    } catch (e) {
      if (!(e instanceof Ext4Error) || e.code !== 'BAD_CHECKSUM') throw e;
      // e2fsck -n recomputes it and goes on (IGNORED); the kernel would refuse to mount.
      p.warn('GROUP_DESC_CHECKSUM', `group ${g}: descriptor checksum does not match`, { group: g });
      badChecksum.push(g);
    }
    const d = ctx.gd(g);
    const first = ctx.groupFirstBlock(g);
    const n = ctx.groupBlocks(g);
    // The superblock and descriptor copies of this group (what the reader knows of meta_bg and sparse_super2).
    for (const [s, len] of raw.groupMetaRanges(g).fixed)
      meta.push({ start: s, len, group: g, what: 'superblock or descriptor copy' });
    const inRange = (b: number, len: number) =>
      b >= ctx.firstData && b + len <= ctx.blocksCount && (ctx.flexBg || (b >= first && b + len <= first + n));
    for (const [b, len, what] of [
      [d.blockBitmap, 1, 'block bitmap'],
      [d.inodeBitmap, 1, 'inode bitmap'],
      [d.inodeTable, tableBlocks, 'inode table'],
    ] as const) {
      if (!inRange(b, len)) {
        p.add(
          'GROUP_DESC',
          `group ${g}: ${what} at block ${b} lies outside ${ctx.flexBg ? 'the file system' : 'the group'}`,
          {
            group: g,
            block: b,
          },
        );
        continue;
      }
      meta.push({ start: b, len, group: g, what });
    }
    if (d.flags & (BG_BLOCK_UNINIT | BG_INODE_UNINIT) && !ctx.groupCsum)
      p.add('GROUP_DESC', `group ${g} is marked uninitialized without group checksums`, { group: g });
    if (d.freeBlocks > n)
      p.add('FREE_BLOCKS_GROUP', `group ${g}: ${d.freeBlocks} free blocks in a group of ${n}`, { group: g });
    if (d.freeInodes > ctx.ipg)
      p.add('FREE_INODES_GROUP', `group ${g}: ${d.freeInodes} free inodes in a group of ${ctx.ipg}`, { group: g });
    if (ctx.groupCsum && d.itableUnused > ctx.ipg)
      p.add('ITABLE_UNUSED', `group ${g}: ${d.itableUnused} unused inode table entries of ${ctx.ipg}`, { group: g });
  }
  const mmp = mmpBlock(ctx.sb);
  if (ctx.has(INCOMPAT.mmp)) {
    if (mmp >= ctx.firstData && mmp < ctx.blocksCount) {
      meta.push({ start: mmp, len: 1, group: ctx.groupOfBlock(mmp), what: 'MMP block' });
      if (!mmpBlockOk(raw.readBlocks(mmp), raw.csum ? raw.csumSeed : undefined))
        p.add('SUPERBLOCK', `the MMP block ${mmp} has a bad magic number or checksum`, { block: mmp });
    } else p.add('SUPERBLOCK', `the MMP block ${mmp} lies outside the file system`, { block: mmp });
  }
  meta.sort((a, b) => a.start - b.start || b.len - a.len);
  // Two pieces of metadata in one block: the file system cannot be consistent.
  const merged: MetaRun[] = [];
  for (const m of meta) {
    const last = merged[merged.length - 1];
    if (last && m.start < last.start + last.len) {
      p.add(
        'GROUP_METADATA_OVERLAP',
        `the ${m.what} of group ${m.group} (block ${m.start}) overlaps the ${last.what} of group ${last.group}`,
        { group: m.group, block: m.start },
      );
      if (m.start + m.len > last.start + last.len) last.len = m.start + m.len - last.start;
      continue;
    }
    merged.push({ ...m });
  }
  ctx.meta = merged;
  // The verifying reader's copies are not needed any more (each group's is read again if used); those
  // whose checksum failed are handed to it as they are, so reading their inodes goes on.
  if (ctx.r !== ctx.raw) ctx.r.forgetGroupDesc();
  for (const g of badChecksum) ctx.r.rememberGroupDesc(g, ctx.gd(g));
}

/** The journal's superblock: magic, type, block size, length within its inode. */
export function checkJournal(ctx: CheckContext): void {
  const sb = ctx.sb;
  if (!(sb.s_feature_compat & COMPAT.has_journal) || !sb.s_journal_inum) return;
  const p = ctx.problems;
  let map: (n: number) => number;
  try {
    map = ctx.raw.journalMap();
  } catch (e) {
    p.fromError('JOURNAL', e, { inode: sb.s_journal_inum });
    return;
  }
  try {
    const b = ctx.raw.readBlocks(map(0));
    const j = decodeJournalSuperblock(b);
    if (j.h_blocktype !== JBD2_SUPERBLOCK_V1 && j.h_blocktype !== JBD2_SUPERBLOCK_V2)
      throw new Ext4Error('CORRUPT', `the journal superblock has type ${j.h_blocktype}`);
    // A version 1 superblock ends before the feature fields: anything there is damage.
    if (j.h_blocktype === JBD2_SUPERBLOCK_V1 && !isZero(b, 0x24, 0x400 - 0x24))
      throw new Ext4Error('CORRUPT', 'the version 1 journal superblock has fields of version 2 set');
    if (j.h_blocktype === JBD2_SUPERBLOCK_V2 && j.s_nr_users > 1)
      throw new Ext4Error('CORRUPT', `the internal journal lists ${j.s_nr_users} users`);
    if (
      j.h_blocktype === JBD2_SUPERBLOCK_V2 &&
      j.s_feature_incompat & (JBD2_INCOMPAT.csum_v2 | JBD2_INCOMPAT.csum_v3) &&
      journalSuperblockChecksum(b) !== j.s_checksum
    )
      throw new Ext4Error('BAD_CHECKSUM', 'the journal superblock checksum does not match');
    if (j.s_blocksize !== ctx.bs)
      throw new Ext4Error('CORRUPT', `the journal block size ${j.s_blocksize} is not the file system's`);
    const size = ctx.raw.inode(sb.s_journal_inum).size;
    if (j.s_maxlen > Math.floor(size / ctx.bs) || j.s_first < 1 || j.s_first >= j.s_maxlen)
      throw new Ext4Error('CORRUPT', `the journal's bounds (first ${j.s_first}, length ${j.s_maxlen}) do not fit it`);
    if (j.s_start !== 0 && !(sb.s_feature_incompat & INCOMPAT.needs_recovery))
      throw new Ext4Error(
        'CORRUPT',
        'the journal holds transactions but the file system does not say it needs recovery',
      );
  } catch (e) {
    p.fromError('JOURNAL', e, { inode: sb.s_journal_inum });
  }
}
