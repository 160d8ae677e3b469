/** The ext4 superblock (kernel doc: super.rst). 1024 bytes at byte offset 1024 of the volume. */
import { type Field, readFields, writeFields, join64, lo32, hi32, u32, put32 } from '../core/bytes.js';
import { crc32c } from '../core/crc32c.js';
import { Ext4Error } from '../core/errors.js';

export const SUPERBLOCK_OFFSET = 1024;
export const SUPERBLOCK_SIZE = 1024;
export const EXT4_MAGIC = 0xef53;

const NUMERIC = [
  ['s_inodes_count', 0x0, 4],
  ['s_blocks_count_lo', 0x4, 4],
  ['s_r_blocks_count_lo', 0x8, 4],
  ['s_free_blocks_count_lo', 0xc, 4],
  ['s_free_inodes_count', 0x10, 4],
  ['s_first_data_block', 0x14, 4],
  ['s_log_block_size', 0x18, 4],
  ['s_log_cluster_size', 0x1c, 4],
  ['s_blocks_per_group', 0x20, 4],
  ['s_clusters_per_group', 0x24, 4],
  ['s_inodes_per_group', 0x28, 4],
  ['s_mtime', 0x2c, 4],
  ['s_wtime', 0x30, 4],
  ['s_mnt_count', 0x34, 2],
  ['s_max_mnt_count', 0x36, 2],
  ['s_magic', 0x38, 2],
  ['s_state', 0x3a, 2],
  ['s_errors', 0x3c, 2],
  ['s_minor_rev_level', 0x3e, 2],
  ['s_lastcheck', 0x40, 4],
  ['s_checkinterval', 0x44, 4],
  ['s_creator_os', 0x48, 4],
  ['s_rev_level', 0x4c, 4],
  ['s_def_resuid', 0x50, 2],
  ['s_def_resgid', 0x52, 2],
  ['s_first_ino', 0x54, 4],
  ['s_inode_size', 0x58, 2],
  ['s_block_group_nr', 0x5a, 2],
  ['s_feature_compat', 0x5c, 4],
  ['s_feature_incompat', 0x60, 4],
  ['s_feature_ro_compat', 0x64, 4],
  ['s_algorithm_usage_bitmap', 0xc8, 4],
  ['s_prealloc_blocks', 0xcc, 1],
  ['s_prealloc_dir_blocks', 0xcd, 1],
  ['s_reserved_gdt_blocks', 0xce, 2],
  ['s_journal_inum', 0xe0, 4],
  ['s_journal_dev', 0xe4, 4],
  ['s_last_orphan', 0xe8, 4],
  ['s_def_hash_version', 0xfc, 1],
  ['s_jnl_backup_type', 0xfd, 1],
  ['s_desc_size', 0xfe, 2],
  ['s_default_mount_opts', 0x100, 4],
  ['s_first_meta_bg', 0x104, 4],
  ['s_mkfs_time', 0x108, 4],
  ['s_blocks_count_hi', 0x150, 4],
  ['s_r_blocks_count_hi', 0x154, 4],
  ['s_free_blocks_count_hi', 0x158, 4],
  ['s_min_extra_isize', 0x15c, 2],
  ['s_want_extra_isize', 0x15e, 2],
  ['s_flags', 0x160, 4],
  ['s_raid_stride', 0x164, 2],
  ['s_mmp_interval', 0x166, 2],
  ['s_mmp_block_lo', 0x168, 4],
  ['s_mmp_block_hi', 0x16c, 4],
  ['s_raid_stripe_width', 0x170, 4],
  ['s_log_groups_per_flex', 0x174, 1],
  ['s_checksum_type', 0x175, 1],
  ['s_kbytes_written_lo', 0x178, 4],
  ['s_kbytes_written_hi', 0x17c, 4],
  ['s_error_count', 0x194, 4],
  ['s_first_error_time', 0x198, 4],
  ['s_last_error_time', 0x1cc, 4],
  ['s_usr_quota_inum', 0x240, 4],
  ['s_grp_quota_inum', 0x244, 4],
  ['s_overhead_clusters', 0x248, 4],
  ['s_backup_bgs_0', 0x24c, 4],
  ['s_backup_bgs_1', 0x250, 4],
  ['s_lpf_ino', 0x268, 4],
  ['s_prj_quota_inum', 0x26c, 4],
  ['s_checksum_seed', 0x270, 4],
  ['s_wtime_hi', 0x274, 1],
  ['s_mtime_hi', 0x275, 1],
  ['s_mkfs_time_hi', 0x276, 1],
  ['s_lastcheck_hi', 0x277, 1],
  ['s_first_error_time_hi', 0x278, 1],
  ['s_last_error_time_hi', 0x279, 1],
  ['s_encoding', 0x27c, 2],
  ['s_encoding_flags', 0x27e, 2],
  ['s_orphan_file_inum', 0x280, 4],
  ['s_checksum', 0x3fc, 4],
] as const satisfies readonly Field<string>[];

export type SuperblockNumericField = (typeof NUMERIC)[number][0];

/** Where a numeric field lies in the superblock (from its table; add SUPERBLOCK_OFFSET for the device). */
export function superblockFieldOffset(name: SuperblockNumericField): number {
  return NUMERIC.find(([n]) => n === name)![1];
}

/** Byte-string fields: [name, offset, length]. */
const BYTES = [
  ['s_uuid', 0x68, 16],
  ['s_volume_name', 0x78, 16],
  ['s_last_mounted', 0x88, 64],
  ['s_journal_uuid', 0xd0, 16],
  ['s_hash_seed', 0xec, 16],
  ['s_mount_opts', 0x200, 64],
] as const;
export type SuperblockBytesField = (typeof BYTES)[number][0];

const JNL_BLOCKS_OFFSET = 0x10c;
export const JNL_BLOCKS_COUNT = 17;
const CHECKSUM_OFFSET = 0x3fc;

/** A decoded superblock: every numeric field by its kernel name, byte strings as Uint8Array. */
export type Superblock = Record<SuperblockNumericField, number> &
  Record<SuperblockBytesField, Uint8Array> & {
    /** s_jnl_blocks: i_block[15] of the journal inode, then i_size_high, i_size. */
    s_jnl_blocks: number[];
  };

/**
 * The fields that name inodes (super.rst): whatever renumbers an inode (a shrink moving it out of a
 * removed group) renumbers these too. s_last_orphan heads a list whose links are inode numbers as well.
 */
export const INODE_FIELDS = [
  's_journal_inum',
  's_last_orphan',
  's_usr_quota_inum',
  's_grp_quota_inum',
  's_prj_quota_inum',
  's_lpf_ino',
  's_orphan_file_inum',
] as const satisfies readonly SuperblockNumericField[];

/** s_state bits. */
export const STATE_VALID = 0x1;
/** s_flags bits. */
export const FLAG_SIGNED_HASH = 0x1;
export const FLAG_UNSIGNED_HASH = 0x2;
/** s_default_mount_opts bits. */
export const DEFM_XATTR_USER = 0x4;
export const DEFM_ACL = 0x8;
export const JNL_BACKUP_BLOCKS = 1;
export const CHECKSUM_TYPE_CRC32C = 1;

/** A superblock with every field zero; a starting point for the formatter. */
export function emptySuperblock(): Superblock {
  return decodeSuperblock(new Uint8Array(SUPERBLOCK_SIZE), { verify: false });
}

export interface DecodeSuperblockOptions {
  /** Check magic and, under metadata_csum, the checksum (default true). */
  verify?: boolean;
}

/** Decodes the 1024 superblock bytes `b` (not the whole volume). */
export function decodeSuperblock(b: Uint8Array, opts: DecodeSuperblockOptions = {}): Superblock {
  if (b.length < SUPERBLOCK_SIZE)
    throw new Ext4Error('CORRUPT', `superblock needs ${SUPERBLOCK_SIZE} bytes, got ${b.length}`);
  const sb = readFields(b, 0, NUMERIC) as Superblock;
  for (const [name, off, len] of BYTES) sb[name] = b.slice(off, off + len);
  sb.s_jnl_blocks = [];
  for (let i = 0; i < JNL_BLOCKS_COUNT; i++) sb.s_jnl_blocks.push(u32(b, JNL_BLOCKS_OFFSET + i * 4));
  if (opts.verify !== false) {
    if (sb.s_magic !== EXT4_MAGIC)
      throw new Ext4Error('BAD_MAGIC', `not an ext2/3/4 file system (magic 0x${sb.s_magic.toString(16)})`, {
        offset: SUPERBLOCK_OFFSET + superblockFieldOffset('s_magic'),
      });
    if (sb.s_feature_ro_compat & 0x400) {
      const want = superblockChecksum(b);
      if (want !== sb.s_checksum)
        throw new Ext4Error(
          'BAD_CHECKSUM',
          `superblock checksum 0x${sb.s_checksum.toString(16)} != computed 0x${want.toString(16)}`,
          {
            offset: SUPERBLOCK_OFFSET + CHECKSUM_OFFSET,
          },
        );
    }
  }
  return sb;
}

/** crc32c(~0, bytes 0..0x3FB): the superblock checksum starts from ~0, not the fs seed. */
export function superblockChecksum(b: Uint8Array): number {
  return crc32c(0xffffffff, b, 0, CHECKSUM_OFFSET);
}

/**
 * A copy of encoded superblock bytes with incompatible feature bits `set` and `clear` changed and the
 * checksum (under metadata_csum) recomputed; every other byte is kept as it is.
 */
export function patchIncompat(b: Uint8Array, set: number, clear: number): Uint8Array {
  const out = b.slice(0, SUPERBLOCK_SIZE);
  const off = NUMERIC.find(([name]) => name === 's_feature_incompat')![1];
  put32(out, off, ((u32(out, off) | set) & ~clear) >>> 0);
  if (u32(out, NUMERIC.find(([name]) => name === 's_feature_ro_compat')![1]) & 0x400)
    put32(out, CHECKSUM_OFFSET, superblockChecksum(out));
  return out;
}

/** Encodes `sb` into 1024 bytes; under metadata_csum the checksum is computed and stored. */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const b = new Uint8Array(SUPERBLOCK_SIZE);
  writeFields(b, 0, NUMERIC, sb);
  for (const [name, off, len] of BYTES) b.set(sb[name].subarray(0, len), off);
  for (let i = 0; i < JNL_BLOCKS_COUNT; i++) put32(b, JNL_BLOCKS_OFFSET + i * 4, sb.s_jnl_blocks[i] ?? 0);
  if (sb.s_feature_ro_compat & 0x400) {
    sb.s_checksum = superblockChecksum(b);
    put32(b, CHECKSUM_OFFSET, sb.s_checksum);
  }
  return b;
}

export function blocksCount(sb: Superblock): number {
  return join64(sb.s_blocks_count_lo, sb.s_feature_incompat & 0x80 ? sb.s_blocks_count_hi : 0);
}
export function reservedBlocksCount(sb: Superblock): number {
  return join64(sb.s_r_blocks_count_lo, sb.s_feature_incompat & 0x80 ? sb.s_r_blocks_count_hi : 0);
}
export function freeBlocksCount(sb: Superblock): number {
  return join64(sb.s_free_blocks_count_lo, sb.s_feature_incompat & 0x80 ? sb.s_free_blocks_count_hi : 0);
}
/** Stores a block count in its _lo field and, with 64bit, its _hi field (zero without). */
function set64(
  sb: Superblock,
  lo: 's_blocks_count_lo' | 's_r_blocks_count_lo' | 's_free_blocks_count_lo',
  v: number,
): void {
  sb[lo] = lo32(v);
  const hi = lo.replace('_lo', '_hi') as 's_blocks_count_hi' | 's_r_blocks_count_hi' | 's_free_blocks_count_hi';
  sb[hi] = sb.s_feature_incompat & 0x80 ? hi32(v) : 0;
}
export function setBlocksCount(sb: Superblock, v: number): void {
  set64(sb, 's_blocks_count_lo', v);
}
export function setReservedBlocksCount(sb: Superblock, v: number): void {
  set64(sb, 's_r_blocks_count_lo', v);
}
export function setFreeBlocksCount(sb: Superblock, v: number): void {
  set64(sb, 's_free_blocks_count_lo', v);
}
export function blockSize(sb: Superblock): number {
  return 1024 << sb.s_log_block_size;
}
/** A zero-terminated byte string field as text. */
export function cString(b: Uint8Array): string {
  const end = b.indexOf(0);
  return Buffer.from(b.subarray(0, end < 0 ? b.length : end)).toString('utf8');
}

/** s_jnl_blocks for a journal inode: its i_block words, then the size's high and low halves. */
export function jnlBlocksOf(iBlock: Uint8Array, size: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < 15; i++) out.push(u32(iBlock, i * 4));
  out.push(Math.floor(size / 0x1_0000_0000) >>> 0, (size % 0x1_0000_0000) >>> 0);
  return out;
}

/** The journal inode's i_block and size as the superblock's backup (s_jnl_blocks) keeps them. */
export function journalBackupOf(sb: Superblock): { iBlock: Uint8Array; size: number } {
  const iBlock = new Uint8Array(60);
  for (let k = 0; k < 15; k++) put32(iBlock, k * 4, sb.s_jnl_blocks[k] ?? 0);
  return { iBlock, size: join64(sb.s_jnl_blocks[16] ?? 0, sb.s_jnl_blocks[15] ?? 0) };
}
