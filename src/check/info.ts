/** The superblock summary of an image (what `dumpe2fs -h` shows), read by our own code. */
import { FileDevice, type BlockDevice } from '../io/device.js';
import { underReadLock, type LockOptions } from '../host/lock.js';
import { Ext4Error } from '../core/errors.js';
import {
  decodeSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  blocksCount,
  reservedBlocksCount,
  freeBlocksCount,
  cString,
} from '../ext4/superblock.js';
import { featureNames } from '../ext4/features.js';
import { formatUuid, join64 } from '../core/bytes.js';
import { Ext4Reader } from '../fs/reader.js';
import { decodeJournalSuperblock, JBD2_INCOMPAT, type JournalSuperblock } from '../ext4/journal.js';

export interface JournalInfo {
  blocks: number;
  bytes: number;
  features: string[];
  maxTransaction: number;
  fastCommitBlocks: number;
  sequence: number;
  start: number;
}

export interface ImageInfo {
  volumeName: string;
  lastMountedOn: string;
  uuid: string;
  magic: number;
  revision: number;
  features: string[];
  flags: string[];
  defaultMountOptions: string[];
  state: string;
  errorsBehavior: string;
  osType: string;
  inodeCount: number;
  blockCount: number;
  reservedBlockCount: number;
  overheadClusters: number;
  freeBlocks: number;
  freeInodes: number;
  firstBlock: number;
  blockSize: number;
  fragmentSize: number;
  groupDescriptorSize: number;
  reservedGdtBlocks: number;
  blocksPerGroup: number;
  fragmentsPerGroup: number;
  inodesPerGroup: number;
  inodeBlocksPerGroup: number;
  flexBlockGroupSize: number;
  created: number;
  lastMount: number;
  lastWrite: number;
  mountCount: number;
  maximumMountCount: number;
  lastChecked: number;
  checkInterval: number;
  lifetimeWritesKiB: number;
  reservedBlocksUid: number;
  reservedBlocksGid: number;
  firstInode: number;
  inodeSize: number;
  requiredExtraIsize: number;
  desiredExtraIsize: number;
  journalInode: number;
  defaultDirectoryHash: string;
  directoryHashSeed: string;
  journalBackup: string;
  checksumType: string;
  checksum: number;
  journal?: JournalInfo;
}

const HASHES = ['legacy', 'half_md4', 'tea', 'legacy_unsigned', 'half_md4_unsigned', 'tea_unsigned', 'siphash'];

function time(lo: number, hi: number): number {
  return lo + hi * 0x1_0000_0000;
}

function journalInfo(j: JournalSuperblock, bs: number): JournalInfo {
  const features: string[] = [];
  if (j.s_feature_compat & 1) features.push('journal_checksum');
  for (const [n, bit] of Object.entries(JBD2_INCOMPAT))
    if (j.s_feature_incompat & bit) features.push(`journal_${n === 'revoke' ? 'incompat_revoke' : n}`);
  const blocks = j.s_maxlen;
  return {
    blocks,
    bytes: blocks * bs,
    features,
    maxTransaction: j.s_max_transaction || blocks,
    fastCommitBlocks: j.s_num_fc_blks,
    sequence: j.s_sequence,
    start: j.s_start,
  };
}

/** Reads the superblock summary (and the journal superblock when there is an internal journal). */
export function readInfo(dev: BlockDevice): ImageInfo {
  if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
    throw new Ext4Error('BAD_MAGIC', `image is too small to hold an ext4 superblock`);
  const sb = decodeSuperblock(dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE));
  const bs = 1024 << sb.s_log_block_size;
  const flags: string[] = [];
  if (sb.s_flags & 1) flags.push('signed_directory_hash');
  if (sb.s_flags & 2) flags.push('unsigned_directory_hash');
  if (sb.s_flags & 4) flags.push('test_filesystem');
  const mopts: string[] = [];
  const MOPTS: [number, string][] = [
    [0x1, 'debug'],
    [0x2, 'bsdgroups'],
    [0x4, 'user_xattr'],
    [0x8, 'acl'],
    [0x10, 'uid16'],
    [0x20, 'journal_data'],
    [0x40, 'journal_data_ordered'],
    [0x60, 'journal_data_writeback'],
    [0x100, 'nobarrier'],
    [0x200, 'block_validity'],
    [0x400, 'discard'],
    [0x800, 'nodelalloc'],
  ];
  for (const [bit, n] of MOPTS) if (bit !== 0x60 && sb.s_default_mount_opts & bit) mopts.push(n);
  const info: ImageInfo = {
    volumeName: cString(sb.s_volume_name),
    lastMountedOn: cString(sb.s_last_mounted),
    uuid: formatUuid(sb.s_uuid),
    magic: sb.s_magic,
    revision: sb.s_rev_level,
    features: featureNames({
      compat: sb.s_feature_compat,
      incompat: sb.s_feature_incompat,
      roCompat: sb.s_feature_ro_compat,
    }),
    flags,
    defaultMountOptions: mopts,
    state: sb.s_state & 1 ? 'clean' : 'not clean',
    errorsBehavior: ['Unknown', 'Continue', 'Remount read-only', 'Panic'][sb.s_errors] ?? 'Unknown',
    osType: ['Linux', 'Hurd', 'Masix', 'FreeBSD', 'Lites'][sb.s_creator_os] ?? '(unknown os)',
    inodeCount: sb.s_inodes_count,
    blockCount: blocksCount(sb),
    reservedBlockCount: reservedBlocksCount(sb),
    overheadClusters: sb.s_overhead_clusters,
    freeBlocks: freeBlocksCount(sb),
    freeInodes: sb.s_free_inodes_count,
    firstBlock: sb.s_first_data_block,
    blockSize: bs,
    fragmentSize: 1024 << sb.s_log_cluster_size,
    groupDescriptorSize: sb.s_feature_incompat & 0x80 ? sb.s_desc_size : 32,
    reservedGdtBlocks: sb.s_reserved_gdt_blocks,
    blocksPerGroup: sb.s_blocks_per_group,
    fragmentsPerGroup: sb.s_clusters_per_group,
    inodesPerGroup: sb.s_inodes_per_group,
    inodeBlocksPerGroup: Math.ceil((sb.s_inodes_per_group * sb.s_inode_size) / bs),
    flexBlockGroupSize: sb.s_feature_incompat & 0x200 ? 1 << sb.s_log_groups_per_flex : 0,
    created: time(sb.s_mkfs_time, sb.s_mkfs_time_hi),
    lastMount: time(sb.s_mtime, sb.s_mtime_hi),
    lastWrite: time(sb.s_wtime, sb.s_wtime_hi),
    mountCount: sb.s_mnt_count,
    maximumMountCount: sb.s_max_mnt_count === 0xffff ? -1 : sb.s_max_mnt_count,
    lastChecked: time(sb.s_lastcheck, sb.s_lastcheck_hi),
    checkInterval: sb.s_checkinterval,
    lifetimeWritesKiB: join64(sb.s_kbytes_written_lo, sb.s_kbytes_written_hi),
    reservedBlocksUid: sb.s_def_resuid,
    reservedBlocksGid: sb.s_def_resgid,
    firstInode: sb.s_first_ino,
    inodeSize: sb.s_inode_size,
    requiredExtraIsize: sb.s_min_extra_isize,
    desiredExtraIsize: sb.s_want_extra_isize,
    journalInode: sb.s_journal_inum,
    defaultDirectoryHash: HASHES[sb.s_def_hash_version] ?? String(sb.s_def_hash_version),
    directoryHashSeed: formatUuid(sb.s_hash_seed),
    journalBackup:
      sb.s_jnl_backup_type === 1
        ? 'inode blocks'
        : sb.s_jnl_backup_type === 0
          ? 'none'
          : `type ${sb.s_jnl_backup_type}`,
    checksumType: sb.s_checksum_type === 1 ? 'crc32c' : String(sb.s_checksum_type),
    checksum: sb.s_checksum,
  };
  if (sb.s_feature_compat & 0x4 && sb.s_journal_inum) {
    // The journal superblock is the journal inode's first block; the reader finds it (extents or block map).
    const r = Ext4Reader.open(dev, { verifyChecksums: false });
    const ino = sb.s_journal_inum;
    const first = r.blockRuns(ino, r.inode(ino)).find((run) => run.lblk === 0);
    if (!first) throw new Ext4Error('CORRUPT', 'the journal inode maps no first block', { inode: ino });
    info.journal = journalInfo(decodeJournalSuperblock(r.readBlocks(first.pblk)), bs);
  }
  return info;
}

/** Opens `imagePath` read-only and reads its summary (under a reader's lock). */
export function readImageInfo(imagePath: string, lock?: LockOptions): ImageInfo {
  return underReadLock(imagePath, lock, () => {
    const dev = FileDevice.open(imagePath);
    try {
      return readInfo(dev);
    } finally {
      dev.close();
    }
  });
}

function date(t: number): string {
  if (!t) return 'n/a';
  // dumpe2fs uses ctime(3) format in local time; we print UTC in the same shape.
  const d = new Date(t * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/** Journal size the way dumpe2fs prints it: KiB below 8 MiB, else MiB. */
function size(bytes: number): string {
  const kb = Math.floor(bytes / 1024);
  return kb < 8192 ? `${kb}k` : `${Math.floor(kb / 1024)}M`;
}

/** Lifetime writes the way dumpe2fs prints them: kB, then MB, GB, TB (rounded) from 8192 of the unit below. */
function kbytes(kb: number): string {
  const units = ['kB', 'MB', 'GB', 'TB'];
  for (let i = units.length - 1; i > 0; i--) {
    if (kb >= 8192 * 1024 ** (i - 1)) return `${Math.floor((kb + 2 ** (10 * i - 1)) / 2 ** (10 * i))} ${units[i]}`;
  }
  return `${kb} kB`;
}

/** Formats `info` in the layout of `dumpe2fs -h` (same labels, same order). */
export function formatInfo(i: ImageInfo): string {
  const rows: [string, string | number][] = [
    ['Filesystem volume name', i.volumeName || '<none>'],
    ['Last mounted on', i.lastMountedOn || '<not available>'],
    ['Filesystem UUID', i.uuid],
    ['Filesystem magic number', `0x${i.magic.toString(16).toUpperCase()}`],
    ['Filesystem revision #', `${i.revision} (${i.revision === 0 ? 'original' : 'dynamic'})`],
    ['Filesystem features', i.features.join(' ') || '(none)'],
    ['Filesystem flags', i.flags.map((f) => f + ' ').join('')],
    ['Default mount options', i.defaultMountOptions.join(' ') || '(none)'],
    ['Filesystem state', i.state],
    ['Errors behavior', i.errorsBehavior],
    ['Filesystem OS type', i.osType],
    ['Inode count', i.inodeCount],
    ['Block count', i.blockCount],
    ['Reserved block count', i.reservedBlockCount],
  ];
  if (i.overheadClusters) rows.push(['Overhead clusters', i.overheadClusters]);
  rows.push(
    ['Free blocks', i.freeBlocks],
    ['Free inodes', i.freeInodes],
    ['First block', i.firstBlock],
    ['Block size', i.blockSize],
    ['Fragment size', i.fragmentSize],
  );
  if (i.groupDescriptorSize !== 32) rows.push(['Group descriptor size', i.groupDescriptorSize]);
  if (i.reservedGdtBlocks) rows.push(['Reserved GDT blocks', i.reservedGdtBlocks]);
  rows.push(
    ['Blocks per group', i.blocksPerGroup],
    ['Fragments per group', i.fragmentsPerGroup],
    ['Inodes per group', i.inodesPerGroup],
    ['Inode blocks per group', i.inodeBlocksPerGroup],
  );
  if (i.flexBlockGroupSize) rows.push(['Flex block group size', i.flexBlockGroupSize]);
  rows.push(
    ['Filesystem created', date(i.created)],
    ['Last mount time', date(i.lastMount)],
    ['Last write time', date(i.lastWrite)],
    ['Mount count', i.mountCount],
    ['Maximum mount count', i.maximumMountCount],
    ['Last checked', date(i.lastChecked)],
    ['Check interval', `${i.checkInterval} (<none>)`],
  );
  if (i.lifetimeWritesKiB) rows.push(['Lifetime writes', kbytes(i.lifetimeWritesKiB)]);
  rows.push(
    ['Reserved blocks uid', `${i.reservedBlocksUid} (user ${i.reservedBlocksUid === 0 ? 'root' : 'unknown'})`],
    ['Reserved blocks gid', `${i.reservedBlocksGid} (group ${i.reservedBlocksGid === 0 ? 'root' : 'unknown'})`],
    ['First inode', i.firstInode],
    ['Inode size', i.inodeSize],
  );
  if (i.requiredExtraIsize) rows.push(['Required extra isize', i.requiredExtraIsize]);
  if (i.desiredExtraIsize) rows.push(['Desired extra isize', i.desiredExtraIsize]);
  if (i.journalInode) rows.push(['Journal inode', i.journalInode]);
  rows.push(['Default directory hash', i.defaultDirectoryHash], ['Directory Hash Seed', i.directoryHashSeed]);
  if (i.journalInode) rows.push(['Journal backup', i.journalBackup]);
  if (i.checksumType !== '0')
    rows.push(['Checksum type', i.checksumType], ['Checksum', `0x${i.checksum.toString(16).padStart(8, '0')}`]);
  if (i.journal) {
    const j = i.journal;
    rows.push(
      ['Journal features', j.features.join(' ') || '(none)'],
      ['Total journal size', size(j.bytes)],
      ['Total journal blocks', j.blocks],
      ['Max transaction length', j.maxTransaction],
      ['Fast commit length', j.fastCommitBlocks],
      ['Journal sequence', `0x${j.sequence.toString(16).padStart(8, '0')}`],
      ['Journal start', j.start],
    );
  }
  // dumpe2fs prints 'Inode size:' with a tab before the padding; keep its exact shape.
  return (
    rows
      .map(([k, v]) => (k === 'Inode size' ? `Inode size:\t          ${v}` : `${(k + ':').padEnd(26)}${v}`))
      .join('\n') + '\n\n'
  );
}
