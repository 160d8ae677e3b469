/**
 * The reader: opens an ext2/3/4 image and resolves paths, directories, file data, symlinks, devices and
 * extended attributes. Corrupt images are data: every structure is bounds-checked, walks are
 * depth-limited and loop-checked, and failures are Ext4Errors with a code and a location.
 *
 * Every block goes through a BlockCache, which the editor shares: what the reader returns is the image
 * as it currently is, including an open edit's changes and a replayed journal.
 */
import { Ext4Error } from './errors.js';
import { u16, u32, isZero, sameBytes } from './bytes.js';
import { crc32c } from './crc32c.js';
import {
  decodeSuperblock,
  SUPERBLOCK_OFFSET,
  SUPERBLOCK_SIZE,
  blocksCount,
  journalBackupOf,
  FLAG_UNSIGNED_HASH,
  type Superblock,
} from './superblock.js';
import { COMPAT, INCOMPAT, RO_COMPAT, READ_INCOMPAT } from './features.js';
import { decodeGroupDesc, groupDescChecksum, groupDescCrc16, type GroupDesc } from './group-desc.js';
import {
  decodeInode,
  inodeChecksum,
  inodeCsumSeed,
  storedInodeChecksum,
  type Inode,
  S_IFMT,
  S_IFDIR,
  S_IFREG,
  S_IFLNK,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  S_IFSOCK,
  FL_EXTENTS,
  FL_INLINE_DATA,
  FL_HUGE_FILE,
  FL_INDEX,
  decodeDeviceNumbers,
  GOOD_OLD_INODE_SIZE,
} from './inode.js';
import {
  decodeExtentHeader,
  decodeExtent,
  decodeExtentIndex,
  EXTENT_MAGIC,
  extentBlockChecksumOk,
  blockMaxEntries,
} from './extent.js';
import {
  parseDirEntries,
  findDirEntry,
  hasDirTail,
  dirBlockChecksum,
  decodeRecLen,
  isDotOrDotDot,
  type RawDirent,
} from './dirent.js';
import {
  XATTR_MAGIC,
  XATTR_BLOCK_HEADER,
  aclFromDisk,
  decodeXattrEntries,
  xattrBlockChecksum,
  type RawXattr,
} from './xattr.js';
import {
  dxRootCountOffset,
  dxTailChecksum,
  readDxEntries,
  dxLimit,
  DX_NODE_COUNT_OFFSET,
  DX_ROOT_INFO_OFFSET,
  type DxEntry,
} from './htree.js';
import { dirHash, DX_HASH_TEA, DX_HASH_UNSIGNED_DELTA } from './dirhash.js';
import { groupHasSuper } from './layout.js';
import { replayJournal } from './replay.js';
import { BlockCache } from '../io/cache.js';
import { FixedLayer } from '../io/layer.js';
import type { BlockDevice } from '../io/device.js';
import type { XattrEntry } from '../source/types.js';

export const FL_ENCRYPT = 0x800;
export const FL_CASEFOLD = 0x40000000;
export const FL_VERITY = 0x100000;
/** Deepest extent tree read; the kernel writes at most 5 levels but e2fsck accepts deeper ones. */
const MAX_READ_DEPTH = 32;
const FL_COMPR = 0x4;
const EXT4_MAX_SYMLINK = 4096;
/** Directory and xattr sizes read into memory are capped: a corrupt size must not exhaust memory. */
const MAX_DIR_BYTES = 1 << 30;
/** i_block of an inline directory starts with the parent's inode number. */
export const INLINE_DIR_PARENT_SIZE = 4;

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

export interface DirEntryInfo {
  name: Uint8Array;
  inode: number;
  fileType: number;
}

/** A mapped run of a file: logical blocks [lblk, lblk+len) at physical pblk; uninit reads as zeros. */
export interface BlockRun {
  lblk: number;
  pblk: number;
  len: number;
  uninit: boolean;
}

/** Everything a file's block map holds: its data runs and the blocks of the map itself. */
export interface FileMapping {
  runs: BlockRun[];
  /** Extent tree blocks (index and leaf nodes) or indirect blocks. */
  metaBlocks: number[];
}

/** One block of a directory as read: its entries, or none for htree index blocks. */
export interface DirBlock {
  lblk: number;
  pblk: number;
  buf: Uint8Array;
  /** Live and unused entries in block order (the csum tail excluded). */
  entries: RawDirent[];
  /** An htree index block (dx_root or dx_node). */
  dx: boolean;
  /** The block ends with a metadata_csum tail. */
  tail: boolean;
}

/** Where a name was found in a directory. */
export interface DirSlot {
  inode: number;
  fileType: number;
  /** The directory block (logical and physical) and the entry's offset in it; inline dirs: lblk -1. */
  lblk: number;
  pblk: number;
  offset: number;
}

/** One level of an htree walk: the index block and the entry taken. */
export interface DxFrame {
  lblk: number;
  pblk: number;
  countOffset: number;
  limit: number;
  entries: DxEntry[];
  at: number;
}

export type FileType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

export function fileTypeOf(mode: number): FileType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'chardev';
    case S_IFBLK:
      return 'blockdev';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return undefined;
  }
}

/** Name prefixes of the xattr name indexes (kernel doc: attributes.rst). */
const XATTR_PREFIX: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
};
/** The name index and name of the attribute that holds inline data past i_block. */
export const INLINE_DATA_INDEX = 7;
export const INLINE_DATA_NAME = new TextEncoder().encode('data');

export function isInlineDataAttr(x: { index: number; name: Uint8Array }): boolean {
  return x.index === INLINE_DATA_INDEX && x.name.length === 4 && Buffer.from(x.name).toString('latin1') === 'data';
}

export class Ext4Reader {
  readonly sb: Superblock;
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly groupCount: number;
  readonly descSize: number;
  readonly inodeSize: number;
  readonly csum: boolean;
  readonly csumSeed: number;
  /** Every block read goes through here (shared with an editor). */
  readonly cache: BlockCache;
  protected readonly verify: boolean;
  private readonly gdCache = new Map<number, GroupDesc>();
  /** Inodes whose checksums were verified as read from the device (bounded). */
  private readonly verifiedInodes = new Set<number>();

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
    const dirty = (sb.s_feature_incompat & INCOMPAT.needs_recovery) !== 0;
    if (dirty && !opts.replayJournal)
      opts.onWarning?.(
        'the journal needs recovery (needs_recovery): reading the file system as it is on disk, without replaying the journal',
      );
    this.blocksCount = blocksCount(sb);
    if (sb.s_blocks_per_group === 0 || sb.s_inodes_per_group === 0 || this.blocksCount <= sb.s_first_data_block)
      throw new Ext4Error('CORRUPT', 'superblock geometry is invalid (zero blocks or inodes per group)');
    this.groupCount = Math.ceil((this.blocksCount - sb.s_first_data_block) / sb.s_blocks_per_group);
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
    if (sb.s_inodes_count > sb.s_inodes_per_group * this.groupCount)
      throw new Ext4Error('CORRUPT', 'inode count exceeds the groups');
    this.csum = (sb.s_feature_ro_compat & RO_COMPAT.metadata_csum) !== 0;
    this.csumSeed =
      sb.s_feature_incompat & INCOMPAT.metadata_csum_seed ? sb.s_checksum_seed : crc32c(0xffffffff, sb.s_uuid);
    this.cache = opts.cache ?? new BlockCache(dev, this.blockSize, this.blocksCount);
    if (dirty && opts.replayJournal) this.replay(opts);
  }

  /**
   * The physical block of each block of the internal journal. A damaged journal inode is replaced by the
   * superblock's backup of its block map and size (s_jnl_blocks), with a warning.
   */
  journalMap(onWarning?: (message: string) => void): (n: number) => number {
    const sb = this.sb;
    const ino = sb.s_journal_inum;
    let jinode = this.inode(ino);
    if ((jinode.mode & S_IFMT) !== S_IFREG && sb.s_jnl_backup_type === 1) {
      const backup = journalBackupOf(sb);
      const extents = backup.iBlock[0] === 0x0a && backup.iBlock[1] === 0xf3;
      jinode = {
        ...jinode,
        mode: S_IFREG | 0o600,
        size: backup.size,
        block: backup.iBlock,
        flags: extents ? FL_EXTENTS : 0,
      };
      onWarning?.("the journal inode is damaged: using the superblock's backup of its block map");
    }
    const runs = this.blockRuns(ino, jinode);
    return (n: number) => {
      const p = this.physicalBlock(runs, n);
      if (p === undefined) throw new Ext4Error('CORRUPT', `journal block ${n} is not mapped`, { inode: ino });
      return p;
    };
  }

  private replay(opts: ReaderOptions): void {
    const sb = this.sb;
    if (!(sb.s_feature_compat & COMPAT.has_journal) || !sb.s_journal_inum) {
      opts.onWarning?.(
        'the journal needs recovery but is external (journal_dev): reading the file system as it is on disk',
      );
      return;
    }
    const map = this.journalMap(opts.onWarning);
    const res = replayJournal({ blockSize: this.blockSize, read: (n) => this.readBlocks(map(n)) }, this.blocksCount);
    this.cache.stack(new FixedLayer(res.overlay));
    this.forgetGroupDesc();
    opts.onWarning?.(
      `replayed ${res.transactions} journal transaction(s) in memory (${res.overlay.size} blocks); the image is unchanged`,
    );
    if (res.fastCommit)
      opts.onWarning?.(
        'the journal has fast-commit blocks, which are not replayed: the most recent changes may be missing',
      );
  }

  static open(dev: BlockDevice, opts: ReaderOptions = {}): Ext4Reader {
    return new Ext4Reader(dev, opts);
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
  private readData(block: number, count: number): Uint8Array {
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
    const sb = this.sb;
    const first = sb.s_first_data_block + g * sb.s_blocks_per_group;
    const n = Math.min(sb.s_blocks_per_group, this.blocksCount - first);
    const fixed: [number, number][] = [];
    const dpb = this.blockSize / this.descSize;
    const descBlocks = Math.ceil(this.groupCount / dpb);
    const metaBg = (sb.s_feature_incompat & INCOMPAT.meta_bg) !== 0;
    const hasSuper = this.groupHasSuperblock(g);
    if (hasSuper) {
      // Block 0 of a 1 KiB-block file system is the boot block, outside every group.
      fixed.push([first, 1]);
      const old = metaBg ? sb.s_first_meta_bg : descBlocks + sb.s_reserved_gdt_blocks;
      if (old) fixed.push([first + 1, Math.min(old, n - 1)]);
    }
    if (metaBg) {
      const mbg = Math.floor(g / dpb);
      const k = g % dpb;
      if (mbg >= sb.s_first_meta_bg && (k === 0 || k === 1 || k === dpb - 1))
        fixed.push([first + (hasSuper ? 1 : 0), 1]);
    }
    const all = [...fixed];
    const gd = this.groupDesc(g);
    const tableBlocks = Math.ceil((sb.s_inodes_per_group * this.inodeSize) / this.blockSize);
    for (const [s, len] of [
      [gd.blockBitmap, 1],
      [gd.inodeBitmap, 1],
      [gd.inodeTable, tableBlocks],
    ] as [number, number][])
      if (s >= first && s < first + n) all.push([s, Math.min(len, first + n - s)]);
    return { fixed, all };
  }

  /** Whether group `g` holds a superblock copy (sparse_super, sparse_super2 or every group). */
  groupHasSuperblock(g: number): boolean {
    const sb = this.sb;
    if (sb.s_feature_compat & COMPAT.sparse_super2)
      return g === 0 || g === sb.s_backup_bgs_0 || g === sb.s_backup_bgs_1;
    if (!(sb.s_feature_ro_compat & RO_COMPAT.sparse_super)) return true;
    return groupHasSuper(g);
  }

  /** The block holding descriptor block `i` (meta_bg moves later ones next to their groups). */
  descBlockLoc(i: number): number {
    const sb = this.sb;
    const dpb = this.blockSize / this.descSize;
    // The superblock sits at byte 1024: block 1 with 1 KiB blocks even when bigalloc makes the first
    // data block 0.
    const sbBlock = sb.s_first_data_block || (this.blockSize === 1024 ? 1 : 0);
    if (!(sb.s_feature_incompat & INCOMPAT.meta_bg) || i < sb.s_first_meta_bg) return sbBlock + 1 + i;
    const g = i * dpb;
    const first = g === 0 ? sbBlock : sb.s_first_data_block + g * sb.s_blocks_per_group;
    return first + (this.groupHasSuperblock(g) ? 1 : 0);
  }

  /** Where descriptor `g` lies: the block and the byte offset in it. */
  descLocation(g: number): { block: number; offset: number } {
    if (!Number.isSafeInteger(g) || g < 0 || g >= this.groupCount)
      throw new Ext4Error('CORRUPT', `group ${g} does not exist`, { group: g });
    const dpb = this.blockSize / this.descSize;
    return { block: this.descBlockLoc(Math.floor(g / dpb)), offset: (g % dpb) * this.descSize };
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
      if (this.csum) {
        if (groupDescChecksum(this.csumSeed, g, raw, off, this.descSize) !== d.checksum)
          throw new Ext4Error('BAD_CHECKSUM', `group descriptor ${g} checksum mismatch`, { group: g });
      } else if (this.sb.s_feature_ro_compat & RO_COMPAT.gdt_csum) {
        if (groupDescCrc16(this.sb.s_uuid, g, raw, off, this.descSize) !== d.checksum)
          throw new Ext4Error('BAD_CHECKSUM', `group descriptor ${g} checksum mismatch`, { group: g });
      }
    }
    this.gdCache.set(g, d);
    return d;
  }

  /** The raw bytes of inode `ino` (inodeSize of them), a copy the caller may keep. */
  inodeBytes(ino: number): Uint8Array {
    const { buf, off } = this.inodeRecord(ino);
    return buf.slice(off, off + this.inodeSize);
  }

  /** Where inode `ino` lies: its inode table block and byte offset. */
  inodeLocation(ino: number): { block: number; offset: number; group: number; index: number } {
    const sb = this.sb;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.s_inodes_count)
      throw new Ext4Error('CORRUPT', `inode number ${ino} is out of range`, { inode: ino });
    const group = Math.floor((ino - 1) / sb.s_inodes_per_group);
    const index = (ino - 1) % sb.s_inodes_per_group;
    const perBlock = this.blockSize / this.inodeSize;
    const block = this.groupDesc(group).inodeTable + Math.floor(index / perBlock);
    return { block, offset: (index % perBlock) * this.inodeSize, group, index };
  }

  /**
   * Where inode `ino` lies in the block cache, checked. Inode table blocks are read 16 at a time
   * (within the group's table), so walking a tree does not cost a host read per table block.
   */
  private inodeRecord(ino: number): { buf: Uint8Array; off: number } {
    const { block, offset: off, index } = this.inodeLocation(ino);
    if (!this.cache.has(block)) {
      const perBlock = this.blockSize / this.inodeSize;
      const k = Math.floor(index / perBlock);
      const tableBlocks = Math.ceil(this.sb.s_inodes_per_group / perBlock);
      const n = Math.max(1, Math.min(16, tableBlocks - k, this.blocksCount - block));
      if (n > 1 && !this.cache.changed) this.cache.prefetch(block, n);
    }
    const b = this.readBlocks(block);
    if (
      this.verify &&
      this.csum &&
      !this.cache.isTrusted(block) &&
      !this.verifiedInodes.has(ino) &&
      !isZero(b, off, this.inodeSize)
    ) {
      if (inodeChecksum(this.csumSeed, ino, b, off, this.inodeSize) !== storedInodeChecksum(b, off, this.inodeSize))
        throw new Ext4Error('BAD_CHECKSUM', `inode ${ino} checksum mismatch`, { inode: ino, block });
      if (!this.cache.overlaid(block)) {
        if (this.verifiedInodes.size >= 100_000) this.verifiedInodes.clear();
        this.verifiedInodes.add(ino);
      }
    }
    return { buf: b, off };
  }

  inode(ino: number): Inode {
    const { buf, off } = this.inodeRecord(ino);
    return this.decodeRecord(ino, buf, off);
  }

  /** Inode `ino` from its record at `off` of `buf` (checks past the checksum: i_extra_isize). */
  decodeRecord(ino: number, buf: Uint8Array, off: number): Inode {
    const i = decodeInode(buf, off, this.inodeSize);
    if (this.inodeSize > GOOD_OLD_INODE_SIZE && i.extraIsize > this.inodeSize - GOOD_OLD_INODE_SIZE)
      throw new Ext4Error('CORRUPT', `inode ${ino} has i_extra_isize ${i.extraIsize} past the inode`, { inode: ino });
    if (!(this.sb.s_feature_ro_compat & RO_COMPAT.large_file) && (i.mode & S_IFMT) === S_IFDIR)
      i.size = i.size % 0x1_0000_0000;
    return i;
  }

  /** 512-byte units to bytes, honouring huge_file. */
  allocatedBytes(i: Inode): number {
    return i.flags & FL_HUGE_FILE && this.sb.s_feature_ro_compat & RO_COMPAT.huge_file
      ? i.blocks * this.blockSize
      : i.blocks * 512;
  }

  /** The checksum seed of inode `ino` with generation `gen`. */
  inodeSeed(ino: number, gen: number): number {
    return inodeCsumSeed(this.csumSeed, ino, gen);
  }

  /** True when the inode keeps a block map in i_block (not inline data, a fast symlink or a device). */
  hasBlockMap(i: Inode): boolean {
    if (i.flags & FL_INLINE_DATA || this.isFastSymlink(i)) return false;
    // Device numbers, FIFOs and sockets keep no blocks; their i_block is not a map.
    const t = i.mode & S_IFMT;
    return !(t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK);
  }

  /** The block map of a file, sorted by logical block, bounded by the file's size. */
  blockRuns(ino: number, i: Inode): BlockRun[] {
    return this.mapping(ino, i, false).runs;
  }

  /**
   * The whole mapping of a file: data runs sorted by logical block and the blocks of the map itself.
   * With `all` false, block-map pointers past the file's size are ignored (what a reader needs); with
   * `all` true every mapped block is listed (what freeing a file needs). `strict` also refuses what the
   * kernel and e2fsck refuse but a reader can pass over: zero-length extents, entries out of order in a
   * node, an index whose logical start is not its child's.
   */
  mapping(ino: number, i: Inode, all: boolean, strict = false): FileMapping {
    const runs: BlockRun[] = [];
    const metaBlocks: number[] = [];
    if (!this.hasBlockMap(i)) return { runs, metaBlocks };
    if (i.flags & FL_EXTENTS) {
      const seen = new Set<number>();
      const bad = (what: string) => new Ext4Error('CORRUPT', `inode ${ino}: ${what}`, { inode: ino });
      const walk = (node: Uint8Array, expectDepth: number | undefined, capacity: number, start?: number) => {
        const h = decodeExtentHeader(node, 0);
        if (h.magic !== EXTENT_MAGIC)
          throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent header magic`, { inode: ino });
        if (h.entries > h.max || h.max > capacity)
          throw new Ext4Error('CORRUPT', `inode ${ino}: extent node claims ${h.entries}/${h.max} entries`, {
            inode: ino,
          });
        if (h.depth > MAX_READ_DEPTH || (expectDepth !== undefined && h.depth !== expectDepth))
          throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent tree depth ${h.depth}`, { inode: ino });
        let prev = -1;
        for (let k = 0; k < h.entries; k++) {
          const off = 12 + k * 12;
          if (strict) {
            const lblk = u32(node, off);
            if (k === 0 && start !== undefined && lblk !== start)
              throw bad(`extent node starts at logical block ${lblk}, its index says ${start}`);
            if (lblk <= prev && k > 0) throw bad(`extent entries out of order at logical block ${lblk}`);
            prev = lblk;
          }
          if (h.depth === 0) {
            const e = decodeExtent(node, off);
            if (e.len === 0) {
              if (strict) throw bad(`zero-length extent at logical block ${e.lblk}`);
              continue;
            }
            if (e.pblk + e.len > this.blocksCount || e.pblk < this.sb.s_first_data_block)
              throw new Ext4Error(
                'CORRUPT',
                `inode ${ino}: extent maps blocks ${e.pblk}..${e.pblk + e.len - 1} outside the file system`,
                { inode: ino, block: e.pblk },
              );
            runs.push({ lblk: e.lblk, pblk: e.pblk, len: e.len, uninit: !!e.uninit });
          } else {
            const x = decodeExtentIndex(node, off);
            if (seen.has(x.leaf))
              throw new Ext4Error('CORRUPT', `inode ${ino}: extent tree loop at block ${x.leaf}`, {
                inode: ino,
                block: x.leaf,
              });
            seen.add(x.leaf);
            if (seen.size > 1_000_000)
              throw new Ext4Error('CORRUPT', `inode ${ino}: extent tree too large`, { inode: ino });
            const child = this.readBlocks(x.leaf);
            if (this.verify && this.csum && !this.cache.isTrusted(x.leaf)) {
              if (!extentBlockChecksumOk(child, this.inodeSeed(ino, i.generation)))
                throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extent block ${x.leaf} checksum mismatch`, {
                  inode: ino,
                  block: x.leaf,
                });
              this.cache.markVerified(x.leaf);
            }
            metaBlocks.push(x.leaf);
            walk(child, h.depth - 1, blockMaxEntries(this.blockSize), x.lblk);
          }
        }
      };
      walk(i.block, undefined, 4);
      runs.sort((a, b) => a.lblk - b.lblk);
      for (let k = 1; k < runs.length; k++)
        if (runs[k]!.lblk < runs[k - 1]!.lblk + runs[k - 1]!.len)
          throw new Ext4Error('CORRUPT', `inode ${ino}: overlapping extents`, { inode: ino });
      return { runs, metaBlocks };
    }
    // Classic block map: 12 direct pointers, then single, double and triple indirect blocks.
    const apb = this.blockSize / 4;
    const maxLblk = all ? Infinity : Math.ceil(i.size / this.blockSize);
    // A map can need no more blocks than the inode says it holds (plus slack for the map itself).
    const maxVisits = all
      ? Math.ceil(this.allocatedBytes(i) / this.blockSize) + 3
      : Math.ceil(i.size / this.blockSize) / apb + 3 * apb + 3;
    const push = (lblk: number, pblk: number) => {
      if (pblk === 0 || lblk >= maxLblk) return;
      if (pblk >= this.blocksCount || pblk < this.sb.s_first_data_block)
        throw new Ext4Error('CORRUPT', `inode ${ino}: block pointer ${pblk} outside the file system`, {
          inode: ino,
          block: pblk,
        });
      const last = runs[runs.length - 1];
      if (last && last.lblk + last.len === lblk && last.pblk + last.len === pblk) last.len++;
      else runs.push({ lblk, pblk, len: 1, uninit: false });
    };
    let visited = 0;
    const indirect = (blk: number, level: number, base: number) => {
      if (blk === 0 || base >= maxLblk) return;
      if (++visited > maxVisits)
        throw new Ext4Error('CORRUPT', `inode ${ino}: indirect block map larger than the file`, { inode: ino });
      if (blk >= this.blocksCount || blk < this.sb.s_first_data_block)
        throw new Ext4Error('CORRUPT', `inode ${ino}: indirect block ${blk} outside the file system`, {
          inode: ino,
          block: blk,
        });
      metaBlocks.push(blk);
      const b = this.readBlocks(blk);
      const span = apb ** (level - 1);
      for (let k = 0; k < apb; k++) {
        const p = u32(b, k * 4);
        if (level === 1) push(base + k, p);
        else indirect(p, level - 1, base + k * span);
      }
    };
    for (let k = 0; k < 12; k++) push(k, u32(i.block, k * 4));
    indirect(u32(i.block, 48), 1, 12);
    indirect(u32(i.block, 52), 2, 12 + apb);
    indirect(u32(i.block, 56), 3, 12 + apb + apb * apb);
    return { runs, metaBlocks };
  }

  /** Refuses (UNSUPPORTED_FEATURE) an inode whose contents this reader cannot give: encrypted, compressed. */
  checkReadable(ino: number, i: Inode): void {
    if (i.flags & FL_ENCRYPT)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is encrypted (encrypt): its contents cannot be read`, {
        inode: ino,
      });
    if (i.flags & FL_COMPR)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is compressed (compression)`, { inode: ino });
  }

  /** Inline data: i_block then the system.data attribute. */
  inlineData(ino: number, i: Inode): Uint8Array {
    const x = this.rawXattrs(ino).find(isInlineDataAttr);
    const extra = x?.value ?? new Uint8Array(0);
    const all = new Uint8Array(60 + extra.length);
    all.set(i.block);
    all.set(extra, 60);
    return all;
  }

  /**
   * Streams a file's bytes: `sink(bytes, offset)` is called in order; holes and uninitialized extents
   * come as `undefined` with their length so callers can keep them sparse. The bytes handed to `sink`
   * are only valid during the call (they may be a view of a reused read-ahead buffer).
   */
  readFile(
    ino: number,
    sink: (data: Uint8Array | undefined, offset: number, length: number) => void,
    i = this.inode(ino),
  ): void {
    this.checkReadable(ino, i);
    const size = i.size;
    if (i.flags & FL_INLINE_DATA) {
      const d = this.inlineData(ino, i);
      if (size > d.length)
        throw new Ext4Error('CORRUPT', `inode ${ino}: inline data shorter than the file size`, { inode: ino });
      if (size) sink(d.subarray(0, size), 0, size);
      return;
    }
    const bs = this.blockSize;
    let pos = 0;
    const MAXRUN = Math.max(1, Math.floor((8 << 20) / bs));
    for (const r of this.blockRuns(ino, i)) {
      const start = r.lblk * bs;
      if (start >= size) break;
      if (start > pos) {
        sink(undefined, pos, start - pos);
        pos = start;
      }
      const end = Math.min(size, (r.lblk + r.len) * bs);
      if (r.uninit) sink(undefined, pos, end - pos);
      else
        for (let b = 0; b < r.len && r.lblk * bs + b * bs < end; b += MAXRUN) {
          const n = Math.min(MAXRUN, r.len - b);
          const data = this.readData(r.pblk + b, n);
          const off = (r.lblk + b) * bs;
          const len = Math.min(end - off, n * bs);
          sink(data.subarray(0, len), off, len);
        }
      pos = end;
    }
    if (pos < size) sink(undefined, pos, size - pos);
  }

  /** The whole content of a file, for small reads (capped). */
  readFileBytes(ino: number, max = 256 << 20): Uint8Array {
    const i = this.inode(ino);
    if (i.size > max)
      throw new Ext4Error('TOO_LARGE', `inode ${ino} is ${i.size} bytes, more than ${max} to read into memory`, {
        inode: ino,
      });
    const out = new Uint8Array(i.size);
    this.readFile(ino, (d, off) => d && out.set(d, off), i);
    return out;
  }

  /** A symlink whose target lives in i_block (e2fsprogs and the kernel: shorter than 60 bytes, no extents). */
  isFastSymlink(i: Inode): boolean {
    return (i.mode & S_IFMT) === S_IFLNK && !(i.flags & (FL_INLINE_DATA | FL_EXTENTS)) && i.size > 0 && i.size < 60;
  }

  readLink(ino: number, i = this.inode(ino)): Uint8Array {
    this.checkReadable(ino, i);
    if (i.size <= 0 || i.size >= EXT4_MAX_SYMLINK)
      throw new Ext4Error('CORRUPT', `symlink inode ${ino} has size ${i.size}`, { inode: ino });
    if (i.flags & FL_INLINE_DATA) return this.inlineData(ino, i).slice(0, i.size);
    if (this.isFastSymlink(i)) return i.block.slice(0, i.size);
    return this.readFileBytes(ino).slice(0, i.size);
  }

  /** Major and minor numbers of a device inode (old or new encoding). */
  deviceNumbers(i: Inode): [number, number] {
    return decodeDeviceNumbers(i.block);
  }

  private get hasFileType(): boolean {
    return (this.sb.s_feature_incompat & INCOMPAT.filetype) !== 0;
  }

  /**
   * One directory block, checked: htree index blocks (the dx_root at logical block 0 of an indexed
   * directory, dx_nodes that start with an empty entry spanning the block) keep a dx_tail and list no
   * entries; leaf blocks are parsed and their csum tail verified.
   */
  dirBlock(ino: number, i: Inode, lblk: number, pblk: number, leaf = false): DirBlock {
    const bs = this.blockSize;
    const { buf, dx, tail } = this.dirBlockBuf(ino, i, lblk, pblk, leaf);
    const where = { inode: ino, block: pblk };
    // The dx_root keeps '.' and '..' in front of its index ('..' spans the rest of the block).
    const entries = dx
      ? lblk === 0
        ? parseDirEntries(buf, 0, bs, bs, this.hasFileType, where)
        : []
      : parseDirEntries(buf, 0, bs, bs, this.hasFileType, where);
    return { lblk, pblk, buf, entries, dx, tail };
  }

  /** A directory block, its kind found and its checksum verified (once), without parsing its entries. */
  dirBlockBuf(
    ino: number,
    i: Inode,
    lblk: number,
    pblk: number,
    leaf = false,
  ): { buf: Uint8Array; dx: boolean; tail: boolean } {
    const bs = this.blockSize;
    const b = this.readBlocks(pblk);
    const indexed = (i.flags & FL_INDEX) !== 0;
    const isRoot = indexed && lblk === 0;
    // An emptied leaf of a directory without csum tails looks like a dx_node; the htree walk knows which
    // blocks are leaves (`leaf`), a linear read cannot tell and finds no entries in either.
    const dx = !leaf && (isRoot || (indexed && u32(b, 0) === 0 && decodeRecLen(u16(b, 4), bs) === bs));
    const check = this.csum && this.verify && !this.cache.isTrusted(pblk);
    if (dx) {
      if (check) {
        this.verifyDxTail(ino, i, b, isRoot, pblk);
        this.cache.markVerified(pblk);
      }
      return { buf: b, dx: true, tail: false };
    }
    const tail = this.csum && hasDirTail(b, bs);
    if (tail && check) {
      if (dirBlockChecksum(this.inodeSeed(ino, i.generation), b, bs) !== u32(b, bs - 4))
        throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: block ${pblk} checksum mismatch`, {
          inode: ino,
          block: pblk,
        });
      this.cache.markVerified(pblk);
    }
    return { buf: b, dx: false, tail };
  }

  /** The blocks of a directory in logical order (holes and uninitialized extents skipped). */
  *dirBlocks(ino: number, i: Inode): Generator<DirBlock> {
    if (i.size > MAX_DIR_BYTES)
      throw new Ext4Error('CORRUPT', `directory ${ino} claims ${i.size} bytes`, { inode: ino });
    const bs = this.blockSize;
    for (const r of this.blockRuns(ino, i)) {
      if (r.uninit) continue;
      for (let k = 0; k < r.len; k++) {
        if ((r.lblk + k) * bs >= i.size) return;
        yield this.dirBlock(ino, i, r.lblk + k, r.pblk + k);
      }
    }
  }

  /**
   * An inline directory's areas: i_block after the parent number, then the system.data value. Each is
   * parsed on its own (entries never span the two).
   */
  inlineDir(ino: number, i: Inode): { parent: number; areas: { data: Uint8Array; entries: RawDirent[] }[] } {
    const d = this.inlineData(ino, i);
    const where = { inode: ino };
    const first = d.subarray(0, 60);
    const areas = [
      { data: first, entries: parseDirEntries(first, INLINE_DIR_PARENT_SIZE, 60, 60, this.hasFileType, where) },
    ];
    if (d.length > 60) {
      const rest = d.subarray(60);
      areas.push({ data: rest, entries: parseDirEntries(rest, 0, rest.length, rest.length, this.hasFileType, where) });
    }
    return { parent: u32(d, 0), areas };
  }

  /** Directory entries other than . and .., in on-disk order. */
  readDir(ino: number, i = this.inode(ino)): DirEntryInfo[] {
    if ((i.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4Error('NOT_FOUND', `inode ${ino} is not a directory`, { inode: ino });
    this.checkReadable(ino, i);
    const out: DirEntryInfo[] = [];
    const take = (entries: RawDirent[]) => {
      for (const e of entries)
        if (e.inode && !isDotOrDotDot(e.name)) out.push({ name: e.name, inode: e.inode, fileType: e.fileType });
    };
    if (i.flags & FL_INLINE_DATA) {
      for (const a of this.inlineDir(ino, i).areas) take(a.entries);
      return out;
    }
    for (const b of this.dirBlocks(ino, i)) if (!b.dx) take(b.entries);
    return out;
  }

  /** Verifies an htree block's dx_tail; blocks without room for the tail have none. */
  private verifyDxTail(ino: number, i: Inode, b: Uint8Array, isRoot: boolean, block: number): void {
    const countOffset = isRoot ? dxRootCountOffset(b) : DX_NODE_COUNT_OFFSET;
    if (countOffset + 4 > b.length)
      throw new Ext4Error('CORRUPT', `directory ${ino}: bad htree root`, { inode: ino, block });
    const limit = u16(b, countOffset);
    const count = u16(b, countOffset + 2);
    const tail = countOffset + limit * 8;
    if (count > limit || tail + 8 > b.length) return;
    if (dxTailChecksum(this.inodeSeed(ino, i.generation), b, countOffset, limit, count) !== u32(b, tail + 4))
      throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: htree block ${block} checksum mismatch`, {
        inode: ino,
        block,
      });
  }

  /** The physical block of logical block `lblk` of a file (undefined in a hole). */
  physicalBlock(runs: readonly BlockRun[], lblk: number): number | undefined {
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = runs[mid]!;
      if (lblk < r.lblk) hi = mid - 1;
      else if (lblk >= r.lblk + r.len) lo = mid + 1;
      else return r.pblk + (lblk - r.lblk);
    }
    return undefined;
  }

  /** The hash version names of an indexed directory are hashed with (the root's, + 3 when unsigned). */
  dirHashVersion(root: Uint8Array): number {
    const v = root[DX_ROOT_INFO_OFFSET + 4]!;
    return v <= DX_HASH_TEA && this.sb.s_flags & FLAG_UNSIGNED_HASH ? v + DX_HASH_UNSIGNED_DELTA : v;
  }

  /** Whether lookups in this directory can go through its htree index. */
  usesIndex(i: Inode): boolean {
    return (
      (i.flags & FL_INDEX) !== 0 &&
      (this.sb.s_feature_compat & COMPAT.dir_index) !== 0 &&
      !(i.flags & (FL_INLINE_DATA | FL_CASEFOLD | FL_ENCRYPT))
    );
  }

  /**
   * Walks the htree of directory `ino` down to the leaf for `hash` (kernel: dx_probe). Returns the index
   * frames from the root down and the logical block of the leaf. A malformed index is CORRUPT.
   */
  dxProbe(ino: number, i: Inode, hash: number, runs: readonly BlockRun[]): { frames: DxFrame[]; leaf: number } {
    const bs = this.blockSize;
    const where = { inode: ino };
    const rootP = this.physicalBlock(runs, 0);
    if (rootP === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree root is a hole`, where);
    const root = this.dirBlock(ino, i, 0, rootP).buf;
    const info = DX_ROOT_INFO_OFFSET;
    const levels = root[info + 6]!;
    const maxLevels = this.sb.s_feature_incompat & INCOMPAT.large_dir ? 3 : 2;
    if (u32(root, info) !== 0 || root[info + 5] !== 8 || levels >= maxLevels || root[info + 4]! > DX_HASH_TEA)
      throw new Ext4Error('CORRUPT', `directory ${ino}: bad htree root info`, where);
    const frames: DxFrame[] = [];
    let buf = root;
    let countOffset = dxRootCountOffset(root);
    let lblk = 0;
    let pblk = rootP;
    const blocks = Math.ceil(i.size / bs);
    for (let level = 0; ; level++) {
      const { limit, count, entries } = readDxEntries(buf, countOffset);
      if (count === 0 || limit !== dxLimit(bs, countOffset, this.csum))
        throw new Ext4Error(
          'CORRUPT',
          `directory ${ino}: htree block ${lblk} has count ${count}, limit ${limit}`,
          where,
        );
      let lo = 1;
      let hi = count - 1;
      while (lo <= hi) {
        const m = (lo + hi) >> 1;
        if (entries[m]!.hash > hash) hi = m - 1;
        else lo = m + 1;
      }
      const at = lo - 1;
      frames.push({ lblk, pblk, countOffset, limit, entries, at });
      const next = entries[at]!.block;
      if (next === 0 || next >= blocks)
        throw new Ext4Error('CORRUPT', `directory ${ino}: htree points at block ${next} of ${blocks}`, where);
      if (level === levels) return { frames, leaf: next };
      const p = this.physicalBlock(runs, next);
      if (p === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is a hole`, where);
      const node = this.dirBlock(ino, i, next, p);
      if (!node.dx) throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is not an index block`, where);
      buf = node.buf;
      countOffset = DX_NODE_COUNT_OFFSET;
      lblk = next;
      pblk = p;
    }
  }

  /** The htree walk for `name`: its hash (with the directory's hash version) and the leaf it leads to. */
  dxFind(
    ino: number,
    i: Inode,
    name: Uint8Array,
    runs: readonly BlockRun[],
  ): { frames: DxFrame[]; leaf: number; hash: number } {
    const rootP = this.physicalBlock(runs, 0);
    if (rootP === undefined) throw new Ext4Error('CORRUPT', `directory ${ino}: htree root is a hole`, { inode: ino });
    const hash = dirHash(name, this.dirHashVersion(this.readBlocks(rootP)), this.sb.s_hash_seed).hash;
    return { ...this.dxProbe(ino, i, hash, runs), hash };
  }

  /**
   * Moves an htree walk to the next leaf (kernel: ext4_htree_next_block). Returns the hash the new leaf
   * starts at, or undefined at the end of the index.
   */
  dxNextLeaf(
    ino: number,
    i: Inode,
    frames: DxFrame[],
    runs: readonly BlockRun[],
  ): { hash: number; leaf: number } | undefined {
    let level = frames.length - 1;
    while (level >= 0 && frames[level]!.at + 1 >= frames[level]!.entries.length) level--;
    if (level < 0) return undefined;
    const f = frames[level]!;
    f.at++;
    const hash = f.entries[f.at]!.hash;
    let next = f.entries[f.at]!.block;
    for (let l = level + 1; l < frames.length; l++) {
      const p = this.physicalBlock(runs, next);
      if (p === undefined)
        throw new Ext4Error('CORRUPT', `directory ${ino}: htree node ${next} is a hole`, { inode: ino });
      const node = this.dirBlock(ino, i, next, p);
      const { limit, entries } = readDxEntries(node.buf, DX_NODE_COUNT_OFFSET);
      if (!entries.length) throw new Ext4Error('CORRUPT', `directory ${ino}: empty htree node ${next}`, { inode: ino });
      frames[l] = { lblk: next, pblk: p, countOffset: DX_NODE_COUNT_OFFSET, limit, entries, at: 0 };
      next = entries[0]!.block;
    }
    return { hash, leaf: next };
  }

  /**
   * Finds `name` in directory `ino`: through the htree index when it has one (a malformed index falls
   * back to reading every block), else by reading the blocks in order.
   */
  findEntry(ino: number, name: Uint8Array, i = this.inode(ino)): DirSlot | undefined {
    if ((i.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4Error('NOT_A_DIRECTORY', `inode ${ino} is not a directory`, { inode: ino });
    this.checkReadable(ino, i);
    const match = (e: RawDirent) => e.inode !== 0 && sameBytes(e.name, name);
    if (i.flags & FL_INLINE_DATA) {
      const { areas } = this.inlineDir(ino, i);
      for (let a = 0; a < areas.length; a++)
        for (const e of areas[a]!.entries)
          if (match(e)) return { inode: e.inode, fileType: e.fileType, lblk: -1, pblk: a, offset: e.offset };
      return undefined;
    }
    if (this.usesIndex(i)) {
      const runs = this.blockRuns(ino, i);
      let probe: { frames: DxFrame[]; leaf: number; hash: number } | undefined;
      try {
        probe = this.dxFind(ino, i, name, runs);
      } catch (e) {
        if (!(e instanceof Ext4Error) || e.code !== 'CORRUPT') throw e;
      }
      if (probe) {
        let leaf: number | undefined = probe.leaf;
        for (let guard = 0; leaf !== undefined && guard < 1_000_000; guard++) {
          const p = this.physicalBlock(runs, leaf);
          if (p === undefined)
            throw new Ext4Error('CORRUPT', `directory ${ino}: htree leaf ${leaf} is a hole`, { inode: ino });
          const hit = this.findIn(ino, i, leaf, p, name, true);
          if (hit) return hit;
          // Names with the same hash may continue in the next leaf.
          const next = this.dxNextLeaf(ino, i, probe.frames, runs);
          leaf = next && (next.hash & ~1) >>> 0 === probe.hash ? next.leaf : undefined;
        }
        return undefined;
      }
    }
    if (i.size > MAX_DIR_BYTES)
      throw new Ext4Error('CORRUPT', `directory ${ino} claims ${i.size} bytes`, { inode: ino });
    const bs = this.blockSize;
    for (const r of this.blockRuns(ino, i)) {
      if (r.uninit) continue;
      for (let k = 0; k < r.len && (r.lblk + k) * bs < i.size; k++) {
        const hit = this.findIn(ino, i, r.lblk + k, r.pblk + k, name, false);
        if (hit) return hit;
      }
    }
    return undefined;
  }

  /** Looks for `name` in one directory block (dx blocks hold no entries). */
  private findIn(
    ino: number,
    i: Inode,
    lblk: number,
    pblk: number,
    name: Uint8Array,
    leaf: boolean,
  ): DirSlot | undefined {
    const { buf, dx } = this.dirBlockBuf(ino, i, lblk, pblk, leaf);
    if (dx) return undefined;
    const off = findDirEntry(buf, 0, this.blockSize, this.blockSize, name, { inode: ino, block: pblk });
    if (off < 0) return undefined;
    return { inode: u32(buf, off), fileType: this.hasFileType ? buf[off + 7]! : 0, lblk, pblk, offset: off };
  }

  /** The attribute area inside an inode's bytes: [start, end) after i_extra_isize, when it has one. */
  inodeXattrArea(raw: Uint8Array): { start: number; end: number } | undefined {
    if (this.inodeSize <= GOOD_OLD_INODE_SIZE) return undefined;
    const start = GOOD_OLD_INODE_SIZE + u16(raw, 128);
    if (start + 4 > this.inodeSize) return undefined;
    return { start, end: this.inodeSize };
  }

  /**
   * An inode's attributes as stored: in-inode entries, then those of its attribute block. Values kept
   * in EA inodes are read unless `withInodeValues` is false.
   */
  storedXattrs(
    ino: number,
    raw = this.inodeBytes(ino),
    withInodeValues = true,
  ): { inInode: RawXattr[]; block: RawXattr[]; blockNr: number; refcount: number } {
    const where = { inode: ino };
    const area = this.inodeXattrArea(raw);
    const inInode =
      area && u32(raw, area.start) === XATTR_MAGIC
        ? decodeXattrEntries(raw, area.start + 4, area.end, area.start + 4, area.end, where)
        : [];
    const i = decodeInode(raw, 0, this.inodeSize);
    let block: RawXattr[] = [];
    let refcount = 0;
    if (i.fileAcl) {
      const b = this.readBlocks(i.fileAcl);
      if (u32(b, 0) !== XATTR_MAGIC || u32(b, 8) !== 1)
        throw new Ext4Error('CORRUPT', `inode ${ino}: bad extended attribute block ${i.fileAcl}`, {
          inode: ino,
          block: i.fileAcl,
        });
      if (
        this.verify &&
        this.csum &&
        !this.cache.isTrusted(i.fileAcl) &&
        xattrBlockChecksum(this.csumSeed, i.fileAcl, b) !== u32(b, 16)
      )
        throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extended attribute block ${i.fileAcl} checksum mismatch`, {
          inode: ino,
          block: i.fileAcl,
        });
      block = decodeXattrEntries(b, XATTR_BLOCK_HEADER, this.blockSize, 0, this.blockSize, {
        ...where,
        block: i.fileAcl,
      });
      refcount = u32(b, 4);
    }
    if (withInodeValues)
      for (const x of [...inInode, ...block]) {
        if (!x.valueInum) continue;
        if (x.valueSize > 64 << 20)
          throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value of ${x.valueSize} bytes`, where);
        if (x.valueInum === ino)
          throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value inode refers to itself`, where);
        x.value = this.readFileBytes(x.valueInum, 64 << 20).slice(0, x.valueSize);
      }
    return { inInode, block, blockNr: i.fileAcl, refcount };
  }

  /** In-inode attributes then block attributes, as stored (index, name suffix, value). */
  rawXattrs(ino: number, raw = this.inodeBytes(ino)): { index: number; name: Uint8Array; value: Uint8Array }[] {
    const s = this.storedXattrs(ino, raw);
    return [...s.inInode, ...s.block];
  }

  /** Extended attributes with full names, ACLs in the VFS format; inline-data storage is hidden. */
  xattrs(ino: number): XattrEntry[] {
    const out: XattrEntry[] = [];
    for (const x of this.rawXattrs(ino)) {
      if (isInlineDataAttr(x)) continue;
      const full = xattrFullName(x);
      if (full === undefined) continue;
      out.push({ name: full, value: x.index === 2 || x.index === 3 ? aclFromDisk(x.value) : x.value });
    }
    return out;
  }

  /**
   * Resolves an absolute path inside the image; returns the inode number. Symlinks in the middle of the
   * path are followed inside the image (absolute targets start at the image's root, so a path can never
   * leave it); the last component is followed only with `followLast`. At most 40 links are followed.
   */
  lookup(path: string, opts: { followLast?: boolean } = {}): number {
    const chain = this.resolve(path, opts);
    return chain[chain.length - 1]!;
  }

  /**
   * Like `lookup`, returning the chain of inodes from the root to the result (the directories walked
   * through, after `..` and symlinks are applied).
   */
  resolve(path: string, opts: { followLast?: boolean } = {}): number[] {
    let budget = 40;
    const walk = (base: number[], p: string, followLast: boolean): number[] => {
      // `stack` is the chain of directory inodes from the root; its last element is the current inode.
      let stack = p.startsWith('/') ? [2] : [...base];
      const parts = p.split('/').filter((x) => x !== '' && x !== '.');
      for (let k = 0; k < parts.length; k++) {
        const part = parts[k]!;
        if (part === '..') {
          const i = this.inode(stack[stack.length - 1]!);
          if ((i.mode & S_IFMT) !== S_IFDIR)
            throw new Ext4Error('NOT_A_DIRECTORY', `${path}: a component is not a directory`, { path });
          if (stack.length > 1) stack.pop();
          continue;
        }
        const dir = stack[stack.length - 1]!;
        const i = this.inode(dir);
        if ((i.mode & S_IFMT) !== S_IFDIR)
          throw new Ext4Error('NOT_A_DIRECTORY', `${path}: a component is not a directory`, { path });
        const want = Buffer.from(part, 'utf8');
        if (want.length > 255)
          throw new Ext4Error('NAME_TOO_LONG', `${path}: a name is longer than 255 bytes`, { path });
        const hit = this.findEntry(dir, want, i);
        if (!hit) throw new Ext4Error('NOT_FOUND', `${path}: no such file or directory`, { path });
        const last = k === parts.length - 1;
        const child = this.inode(hit.inode);
        if ((child.mode & S_IFMT) === S_IFLNK && (!last || followLast)) {
          if (--budget < 0) throw new Ext4Error('CORRUPT', `${path}: too many levels of symbolic links`, { path });
          const target = Buffer.from(this.readLink(hit.inode, child)).toString('utf8');
          stack = walk(stack, target, true);
          continue;
        }
        stack = [...stack, hit.inode];
      }
      return stack;
    };
    return walk([2], path.startsWith('/') ? path : '/' + path, opts.followLast ?? false);
  }
}

/** The full name of a stored attribute (prefix + suffix), or undefined for an unknown index. */
export function xattrFullName(x: { index: number; name: Uint8Array }): string | undefined {
  const prefix = XATTR_PREFIX[x.index];
  if (prefix === undefined) return undefined;
  const exact = x.index === 2 || x.index === 3 || x.index === 8;
  return exact ? prefix : prefix + Buffer.from(x.name).toString('utf8');
}
