/**
 * An opened file system, read side: the superblock checked and gated on the features a reader handles,
 * the geometry, the group descriptors (decoded once, checksums verified) and the block source. Every
 * block goes through a BlockCache, which an editor shares: what is read is the image as it currently
 * is, including an open edit's changes and a replayed journal. The other fs/ modules work on this.
 */
import { Ext4Error } from '../core/errors.js';
import { crc32c } from '../core/crc32c.js';
import {
  decodeSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  blocksCount,
  type Superblock,
} from '../ext4/superblock.js';
import { INCOMPAT, RO_COMPAT, READ_INCOMPAT } from '../ext4/features.js';
import { decodeGroupDesc, groupDescChecksum, groupDescCrc16, type GroupDesc } from '../ext4/group-desc.js';
import { GOOD_OLD_INODE_SIZE } from '../ext4/inode.js';
import {
  type Geometry,
  geometryOf,
  groupFirstBlock,
  groupBlocks,
  groupFixedMeta,
  groupHasSuperblock,
  descBlockLoc,
  descLocation,
  inodeTableBlocks,
} from '../ext4/geometry.js';
import { BlockCache } from '../io/cache.js';
import type { BlockDevice } from '../io/device.js';

export interface ReaderOptions {
  /** Verify metadata checksums (default true). False reads on through mismatches (salvage). */
  verifyChecksums?: boolean;
  /** Called with warnings (dirty journal, ...). */
  onWarning?: (message: string) => void;
  /**
   * When the journal needs recovery, replay its committed transactions in memory (nothing is written)
   * and read the file system as the kernel would after mounting it. Default false: read it as it is.
   */
  replayJournal?: boolean;
  /** Open the device's cache for an editor (used by Ext4Editor; the reader itself never writes). */
  cache?: BlockCache;
}

export class Ext4Volume {
  readonly sb: Superblock;
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly groupCount: number;
  readonly descSize: number;
  readonly inodeSize: number;
  readonly geo: Geometry;
  readonly csum: boolean;
  readonly csumSeed: number;
  /** Every block read goes through here (shared with an editor). */
  readonly cache: BlockCache;
  /** Whether metadata checksums are verified as blocks are read. */
  readonly verify: boolean;
  /** The journal needs recovery (needs_recovery). */
  readonly dirty: boolean;
  private readonly gdCache = new Map<number, GroupDesc>();
  /** Inodes whose checksums were verified as read from the device (bounded; fs/inodes.ts keeps it). */
  readonly verifiedInodes = new Set<number>();

  protected constructor(
    readonly dev: BlockDevice,
    opts: ReaderOptions,
  ) {
    this.verify = opts.verifyChecksums !== false;
    if (dev.size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE)
      throw new Ext4Error('BAD_MAGIC', 'image is too small to hold an ext2/3/4 superblock');
    const sb = decodeSuperblock(dev.read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE), { verify: this.verify });
    if (!this.verify && sb.s_magic !== 0xef53) throw new Ext4Error('BAD_MAGIC', 'not an ext2/3/4 file system');
    this.sb = sb;
    if (sb.s_log_block_size > 6)
      throw new Ext4Error('CORRUPT', `block size 2^(10+${sb.s_log_block_size}) is not valid`);
    this.blockSize = 1024 << sb.s_log_block_size;
    const unknown = sb.s_feature_incompat & ~READ_INCOMPAT;
    if (sb.s_feature_incompat & INCOMPAT.journal_dev)
      throw new Ext4Error('UNSUPPORTED_FEATURE', 'this is an external journal device (journal_dev), not a file system');
    if (sb.s_feature_incompat & INCOMPAT.compression)
      throw new Ext4Error('UNSUPPORTED_FEATURE', 'compression is not supported');
    if (sb.s_feature_incompat & INCOMPAT.dirdata)
      throw new Ext4Error('UNSUPPORTED_FEATURE', 'dirdata is not supported');
    if (unknown) throw new Ext4Error('UNSUPPORTED_FEATURE', `unknown incompatible features 0x${unknown.toString(16)}`);
    this.dirty = (sb.s_feature_incompat & INCOMPAT.needs_recovery) !== 0;
    if (this.dirty && !opts.replayJournal)
      opts.onWarning?.(
        'the journal needs recovery (needs_recovery): reading the file system as it is on disk, without replaying the journal',
      );
    this.blocksCount = blocksCount(sb);
    if (sb.s_blocks_per_group === 0 || sb.s_inodes_per_group === 0 || this.blocksCount <= sb.s_first_data_block)
      throw new Ext4Error('CORRUPT', 'superblock geometry is invalid (zero blocks or inodes per group)');
    const is64 = (sb.s_feature_incompat & INCOMPAT['64bit']) !== 0;
    this.descSize = is64 ? sb.s_desc_size : 32;
    if (this.descSize < 32 || this.descSize > this.blockSize || this.descSize & (this.descSize - 1))
      throw new Ext4Error('CORRUPT', `bad descriptor size ${this.descSize}`);
    this.inodeSize = sb.s_rev_level === 0 ? GOOD_OLD_INODE_SIZE : sb.s_inode_size;
    if (
      this.inodeSize < GOOD_OLD_INODE_SIZE ||
      this.inodeSize > this.blockSize ||
      this.inodeSize & (this.inodeSize - 1)
    )
      throw new Ext4Error('CORRUPT', `bad inode size ${this.inodeSize}`);
    this.geo = geometryOf(sb, this);
    this.groupCount = this.geo.groupCount;
    if (sb.s_inodes_count > sb.s_inodes_per_group * this.groupCount)
      throw new Ext4Error('CORRUPT', 'inode count exceeds the groups');
    this.csum = (sb.s_feature_ro_compat & RO_COMPAT.metadata_csum) !== 0;
    this.csumSeed =
      sb.s_feature_incompat & INCOMPAT.metadata_csum_seed ? sb.s_checksum_seed : crc32c(0xffffffff, sb.s_uuid);
    this.cache = opts.cache ?? new BlockCache(dev, this.blockSize, this.blocksCount);
  }

  /** Reads whole blocks, checking they lie inside the file system. Callers must not modify the result. */
  readBlocks(block: number, count = 1): Uint8Array {
    return this.cache.read(block, count);
  }

  /** Read-ahead window for file data (consecutive small files usually sit in adjacent blocks). */
  private win: { start: number; count: number; buf: Uint8Array } | undefined;
  /** The buffer large file data is read into, reused from read to read. */
  private big: Uint8Array | undefined;

  /**
   * Reads file data blocks. Small reads are served from a read-ahead window of about 128 KiB, so a tree
   * of small files costs one host read per window rather than one per file, and data never displaces
   * metadata from the block cache. The result is only valid until the next call.
   */
  readData(block: number, count: number): Uint8Array {
    const bs = this.blockSize;
    const span = Math.max(1, Math.floor(131072 / bs));
    // Devices that can only hand out new buffers (memory-backed ones) gain nothing from reuse.
    if (!this.dev.readInto) return this.cache.readData(block, count);
    if (count * 2 > span || this.cache.changed) {
      // Large reads (and any read while an edit or a replayed journal is in the cache, which patches
      // its blocks in) go into one reused buffer: fresh memory for every 8 MiB costs page faults.
      this.win = undefined;
      const n = count * bs;
      if (!this.big || this.big.length < n) this.big = new Uint8Array(Math.max(n, 65536));
      const out = this.big.subarray(0, n);
      this.cache.readDataInto(block, out);
      return out;
    }
    this.cache.checkRange(block, count);
    let w = this.win;
    if (!w || block < w.start || block + count > w.start + w.count) {
      const n = Math.min(span, this.blocksCount - block);
      const buf = w && w.buf.length === span * bs ? w.buf : new Uint8Array(span * bs);
      this.dev.readInto(block * bs, buf.subarray(0, n * bs));
      w = this.win = { start: block, count: n, buf };
    }
    return w.buf.subarray((block - w.start) * bs, (block - w.start + count) * bs);
  }

  /**
   * The fixed metadata group `g` holds: `fixed`, its superblock copy and descriptor blocks (reserved
   * ones included; meta_bg's per-group descriptor block), and `all`, those plus the group's own block
   * bitmap, inode bitmap and inode table where they lie inside the group (what the kernel marks in
   * use when it sets up a BLOCK_UNINIT group's bitmap).
   */
  groupMetaRanges(g: number): { fixed: [number, number][]; all: [number, number][] } {
    const first = groupFirstBlock(this.geo, g);
    const n = groupBlocks(this.geo, g);
    const fixed = groupFixedMeta(this.geo, g);
    const all = [...fixed];
    const gd = this.groupDesc(g);
    for (const [s, len] of [
      [gd.blockBitmap, 1],
      [gd.inodeBitmap, 1],
      [gd.inodeTable, inodeTableBlocks(this.geo)],
    ] as [number, number][])
      if (s >= first && s < first + n) all.push([s, Math.min(len, first + n - s)]);
    return { fixed, all };
  }

  /** Whether group `g` holds a superblock copy (sparse_super, sparse_super2 or every group). */
  groupHasSuperblock(g: number): boolean {
    return groupHasSuperblock(this.geo, g);
  }

  /** The block holding descriptor block `i` (meta_bg moves later ones next to their groups). */
  descBlockLoc(i: number): number {
    return descBlockLoc(this.geo, i);
  }

  /** Where descriptor `g` lies: the block and the byte offset in it. */
  descLocation(g: number): { block: number; offset: number } {
    if (!Number.isSafeInteger(g) || g < 0 || g >= this.groupCount)
      throw new Ext4Error('CORRUPT', `group ${g} does not exist`, { group: g });
    return descLocation(this.geo, g);
  }

  /** Keeps the decoded form of a descriptor just written (its block changed with it). */
  rememberGroupDesc(g: number, d: GroupDesc): void {
    this.gdCache.set(g, d);
  }

  /** Forgets decoded descriptors (one group, or all) after their blocks changed. */
  forgetGroupDesc(g?: number): void {
    if (g === undefined) this.gdCache.clear();
    else this.gdCache.delete(g);
  }

  groupDesc(g: number): GroupDesc {
    const cached = this.gdCache.get(g);
    if (cached) return cached;
    const { block, offset: off } = this.descLocation(g);
    const raw = this.readBlocks(block);
    const d = decodeGroupDesc(raw, off, this.descSize);
    if (this.verify) {
      const want = this.descChecksum(g, raw, off);
      if (want !== undefined && want !== d.checksum)
        throw new Ext4Error('BAD_CHECKSUM', `group descriptor ${g} checksum mismatch`, { group: g });
    }
    this.gdCache.set(g, d);
    return d;
  }

  /**
   * The checksum descriptor `g`, encoded at `off` in `b`, should carry: crc32c with metadata_csum,
   * crc16 with gdt_csum (group_descr.rst, bg_checksum), undefined when the file system has neither.
   */
  descChecksum(g: number, b: Uint8Array, off: number): number | undefined {
    if (this.csum) return groupDescChecksum(this.csumSeed, g, b, off, this.descSize);
    if (this.sb.s_feature_ro_compat & RO_COMPAT.gdt_csum)
      return groupDescCrc16(this.sb.s_uuid, g, b, off, this.descSize);
    return undefined;
  }

  /** Whether directory entries carry a file type (filetype). */
  get hasFileType(): boolean {
    return (this.sb.s_feature_incompat & INCOMPAT.filetype) !== 0;
  }
}

/**
 * A volume that can also read files: reading an attribute value kept in an EA inode is reading a file,
 * which fs/file.ts does (and which itself reads attributes for inline data), so the front passes it in.
 */
export interface XattrVolume extends Ext4Volume {
  readFileBytes(ino: number, max?: number): Uint8Array;
}
