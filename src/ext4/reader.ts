/**
 * The reader: opens an ext2/3/4 image read-only and resolves paths, directories, file data, symlinks,
 * devices and extended attributes. Corrupt images are data: every structure is bounds-checked, walks
 * are depth-limited and loop-checked, and failures are Ext4Errors with a code and a location.
 */
import { Ext4Error } from './errors.js';
import { u16, u32, join64, isZero } from './bytes.js';
import { crc32c, crc32cU32 } from './crc32c.js';
import { decodeSuperblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, blocksCount, type Superblock } from './superblock.js';
import { COMPAT, INCOMPAT, RO_COMPAT } from './features.js';
import { decodeGroupDesc, groupDescChecksum, groupDescCrc16, type GroupDesc } from './group-desc.js';
import {
  decodeInode,
  inodeChecksum,
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
  GOOD_OLD_INODE_SIZE,
} from './inode.js';
import {
  decodeExtentHeader,
  decodeExtent,
  decodeExtentIndex,
  EXTENT_MAGIC,
  extentBlockChecksumOffset,
  blockMaxEntries,
} from './extent.js';
import { decodeRecLen, DIR_TAIL_SIZE, FT_DIR_CSUM } from './dirent.js';
import { XATTR_MAGIC, aclFromDisk } from './xattr.js';
import { groupHasSuper } from './layout.js';
import { replayJournal } from './replay.js';
import type { BlockDevice } from '../io/device.js';
import type { XattrEntry } from '../source/types.js';

export const FL_ENCRYPT = 0x800;
/** Deepest extent tree read; the kernel writes at most 5 levels but e2fsck accepts deeper ones. */
const MAX_READ_DEPTH = 32;
const FL_COMPR = 0x4;
const EXT4_MAX_SYMLINK = 4096;
/** Directory and xattr sizes read into memory are capped: a corrupt size must not exhaust memory. */
const MAX_DIR_BYTES = 1 << 30;

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

const KNOWN_INCOMPAT =
  INCOMPAT.filetype |
  INCOMPAT.needs_recovery |
  INCOMPAT.meta_bg |
  INCOMPAT.extent |
  INCOMPAT['64bit'] |
  INCOMPAT.mmp |
  INCOMPAT.flex_bg |
  INCOMPAT.ea_inode |
  INCOMPAT.metadata_csum_seed |
  INCOMPAT.large_dir |
  INCOMPAT.inline_data |
  INCOMPAT.encrypt |
  INCOMPAT.casefold;

export class Ext4Reader {
  readonly sb: Superblock;
  readonly blockSize: number;
  readonly blocksCount: number;
  readonly groupCount: number;
  readonly descSize: number;
  readonly inodeSize: number;
  readonly csum: boolean;
  readonly csumSeed: number;
  private readonly verify: boolean;
  private readonly gdCache = new Map<number, GroupDesc>();

  private constructor(
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
    const unknown = sb.s_feature_incompat & ~KNOWN_INCOMPAT;
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
    if (dirty && opts.replayJournal) this.replay(opts);
  }

  /** Blocks as they are after journal recovery (empty unless replayJournal found a dirty journal). */
  private overlay = new Map<number, Uint8Array>();

  private replay(opts: ReaderOptions): void {
    const sb = this.sb;
    if (!(sb.s_feature_compat & COMPAT.has_journal) || !sb.s_journal_inum) {
      opts.onWarning?.(
        'the journal needs recovery but is external (journal_dev): reading the file system as it is on disk',
      );
      return;
    }
    const ino = sb.s_journal_inum;
    let jinode = this.inode(ino);
    if ((jinode.mode & S_IFMT) !== S_IFREG && sb.s_jnl_backup_type === 1) {
      // A damaged journal inode: the superblock keeps a copy of its block map and size (s_jnl_blocks).
      const block = new Uint8Array(60);
      for (let k = 0; k < 15; k++)
        block.set(
          [
            sb.s_jnl_blocks[k]! & 0xff,
            (sb.s_jnl_blocks[k]! >>> 8) & 0xff,
            (sb.s_jnl_blocks[k]! >>> 16) & 0xff,
            sb.s_jnl_blocks[k]! >>> 24,
          ],
          k * 4,
        );
      const size = sb.s_jnl_blocks[15]! * 0x1_0000_0000 + sb.s_jnl_blocks[16]!;
      const extents = block[0] === 0x0a && block[1] === 0xf3;
      jinode = { ...jinode, mode: S_IFREG | 0o600, size, block, flags: extents ? FL_EXTENTS : 0 };
      opts.onWarning?.("the journal inode is damaged: using the superblock's backup of its block map");
    }
    const runs = this.blockRuns(ino, jinode);
    const map = (n: number) => {
      const r = runs.find((x) => n >= x.lblk && n < x.lblk + x.len);
      if (!r) throw new Ext4Error('CORRUPT', `journal block ${n} is not mapped`, { inode: ino });
      return r.pblk + (n - r.lblk);
    };
    const res = replayJournal({ blockSize: this.blockSize, read: (n) => this.readBlocks(map(n)) }, this.blocksCount);
    this.overlay = res.overlay;
    // What was read to find the journal came from before recovery.
    this.cache.clear();
    this.gdCache.clear();
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

  /** Recently read single blocks (inode tables, directories, index blocks are read again and again). */
  private readonly cache = new Map<number, Uint8Array>();

  private checkRange(block: number, count: number): void {
    if (!Number.isSafeInteger(block) || block < 0 || block + count > this.blocksCount)
      throw new Ext4Error(
        'CORRUPT',
        `block ${block} (+${count}) is outside the file system (${this.blocksCount} blocks)`,
        { block },
      );
  }

  /** Reads whole blocks, checking they lie inside the file system. Callers must not modify the result. */
  readBlocks(block: number, count = 1): Uint8Array {
    this.checkRange(block, count);
    if (this.overlay.size) {
      const out = this.dev.read(block * this.blockSize, count * this.blockSize);
      for (let k = 0; k < count; k++) {
        const o = this.overlay.get(block + k);
        if (o) out.set(o, k * this.blockSize);
      }
      return out;
    }
    if (count !== 1) return this.dev.read(block * this.blockSize, count * this.blockSize);
    const hit = this.cache.get(block);
    if (hit) {
      this.cache.delete(block);
      this.cache.set(block, hit);
      return hit;
    }
    const b = this.dev.read(block * this.blockSize, this.blockSize);
    this.remember(block, b);
    return b;
  }

  private remember(block: number, b: Uint8Array): void {
    this.cache.delete(block);
    this.cache.set(block, b);
    if (this.cache.size > 256) this.cache.delete(this.cache.keys().next().value!);
  }

  /** Read-ahead window for file data (consecutive small files usually sit in adjacent blocks). */
  private win: { start: number; count: number; buf: Uint8Array } | undefined;

  /**
   * Reads file data blocks. Small reads are served from a read-ahead window of about 128 KiB, so a tree
   * of small files costs one host read per window rather than one per file, and data never displaces
   * metadata from the block cache. The result is only valid until the next call.
   */
  private readData(block: number, count: number): Uint8Array {
    const bs = this.blockSize;
    const span = Math.max(1, Math.floor(131072 / bs));
    // Devices that can only hand out new buffers (memory-backed ones) gain nothing from a window.
    if (this.overlay.size || count * 2 > span || !this.dev.readInto) return this.readBlocks(block, count);
    this.checkRange(block, count);
    let w = this.win;
    if (!w || block < w.start || block + count > w.start + w.count) {
      const n = Math.min(span, this.blocksCount - block);
      const buf = w && w.buf.length === span * bs ? w.buf : new Uint8Array(span * bs);
      this.dev.readInto(block * bs, buf.subarray(0, n * bs));
      w = this.win = { start: block, count: n, buf };
    }
    return w.buf.subarray((block - w.start) * bs, (block - w.start + count) * bs);
  }

  private hasSuper(g: number): boolean {
    const sb = this.sb;
    if (sb.s_feature_compat & COMPAT.sparse_super2)
      return g === 0 || g === sb.s_backup_bgs_0 || g === sb.s_backup_bgs_1;
    if (!(sb.s_feature_ro_compat & RO_COMPAT.sparse_super)) return true;
    return groupHasSuper(g);
  }

  /** The block holding descriptor block `i` (meta_bg moves later ones next to their groups). */
  private descBlockLoc(i: number): number {
    const sb = this.sb;
    const dpb = this.blockSize / this.descSize;
    // The superblock sits at byte 1024: block 1 with 1 KiB blocks even when bigalloc makes the first
    // data block 0.
    const sbBlock = sb.s_first_data_block || (this.blockSize === 1024 ? 1 : 0);
    if (!(sb.s_feature_incompat & INCOMPAT.meta_bg) || i < sb.s_first_meta_bg) return sbBlock + 1 + i;
    const g = i * dpb;
    const first = g === 0 ? sbBlock : sb.s_first_data_block + g * sb.s_blocks_per_group;
    return first + (this.hasSuper(g) ? 1 : 0);
  }

  groupDesc(g: number): GroupDesc {
    const cached = this.gdCache.get(g);
    if (cached) return cached;
    if (g < 0 || g >= this.groupCount) throw new Ext4Error('CORRUPT', `group ${g} does not exist`, { group: g });
    const dpb = this.blockSize / this.descSize;
    const blockIdx = Math.floor(g / dpb);
    const raw = this.readBlocks(this.descBlockLoc(blockIdx));
    const off = (g % dpb) * this.descSize;
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

  /**
   * Where inode `ino` lies in the block cache, checked. Inode table blocks are read 16 at a time
   * (within the group's table), so walking a tree does not cost a host read per table block.
   */
  private inodeRecord(ino: number): { buf: Uint8Array; off: number } {
    const sb = this.sb;
    if (!Number.isSafeInteger(ino) || ino < 1 || ino > sb.s_inodes_count)
      throw new Ext4Error('CORRUPT', `inode number ${ino} is out of range`, { inode: ino });
    const g = Math.floor((ino - 1) / sb.s_inodes_per_group);
    const idx = (ino - 1) % sb.s_inodes_per_group;
    const gd = this.groupDesc(g);
    const perBlock = this.blockSize / this.inodeSize;
    const k = Math.floor(idx / perBlock);
    const block = gd.inodeTable + k;
    let b = this.overlay.size ? undefined : this.cache.get(block);
    if (!b) {
      const tableBlocks = Math.ceil(sb.s_inodes_per_group / perBlock);
      const n = this.overlay.size ? 1 : Math.max(1, Math.min(16, tableBlocks - k, this.blocksCount - block));
      if (n > 1) {
        const run = this.readBlocks(block, n);
        for (let j = n - 1; j >= 0; j--)
          this.remember(block + j, run.subarray(j * this.blockSize, (j + 1) * this.blockSize));
        b = run.subarray(0, this.blockSize);
      } else b = this.readBlocks(block);
    }
    const off = (idx % perBlock) * this.inodeSize;
    if (this.verify && this.csum && !isZero(b, off, this.inodeSize)) {
      if (inodeChecksum(this.csumSeed, ino, b, off, this.inodeSize) !== storedInodeChecksum(b, off, this.inodeSize))
        throw new Ext4Error('BAD_CHECKSUM', `inode ${ino} checksum mismatch`, { inode: ino, block });
    }
    return { buf: b, off };
  }

  inode(ino: number): Inode {
    const { buf, off } = this.inodeRecord(ino);
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

  private inodeSeed(ino: number, gen: number): number {
    return crc32cU32(crc32cU32(this.csumSeed, ino), gen);
  }

  /** The block map of a file, sorted by logical block, bounded by the file's size. */
  blockRuns(ino: number, i: Inode): BlockRun[] {
    if (i.flags & FL_INLINE_DATA || this.isFastSymlink(i)) return [];
    // Device numbers, FIFOs and sockets keep no blocks; their i_block is not a map.
    const t = i.mode & S_IFMT;
    if (t === S_IFCHR || t === S_IFBLK || t === S_IFIFO || t === S_IFSOCK) return [];
    const maxLblk = Math.ceil(i.size / this.blockSize);
    const runs: BlockRun[] = [];
    if (i.flags & FL_EXTENTS) {
      const seen = new Set<number>();
      const walk = (node: Uint8Array, depth: number, expectDepth: number | undefined, capacity: number) => {
        const h = decodeExtentHeader(node, 0);
        if (h.magic !== EXTENT_MAGIC)
          throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent header magic`, { inode: ino });
        if (h.entries > h.max || h.max > capacity)
          throw new Ext4Error('CORRUPT', `inode ${ino}: extent node claims ${h.entries}/${h.max} entries`, {
            inode: ino,
          });
        if (h.depth > MAX_READ_DEPTH || (expectDepth !== undefined && h.depth !== expectDepth))
          throw new Ext4Error('CORRUPT', `inode ${ino}: bad extent tree depth ${h.depth}`, { inode: ino });
        for (let k = 0; k < h.entries; k++) {
          const off = 12 + k * 12;
          if (h.depth === 0) {
            const e = decodeExtent(node, off);
            if (e.len === 0) continue;
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
            if (this.verify && this.csum) {
              const t = extentBlockChecksumOffset(this.blockSize);
              if (crc32c(this.inodeSeed(ino, i.generation), child, 0, t) !== u32(child, t))
                throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extent block ${x.leaf} checksum mismatch`, {
                  inode: ino,
                  block: x.leaf,
                });
            }
            walk(child, depth + 1, h.depth - 1, blockMaxEntries(this.blockSize));
          }
        }
      };
      walk(i.block, 0, undefined, 4);
      runs.sort((a, b) => a.lblk - b.lblk);
      for (let k = 1; k < runs.length; k++)
        if (runs[k]!.lblk < runs[k - 1]!.lblk + runs[k - 1]!.len)
          throw new Ext4Error('CORRUPT', `inode ${ino}: overlapping extents`, { inode: ino });
      return runs;
    }
    // Classic block map: 12 direct pointers, then single, double and triple indirect blocks.
    const apb = this.blockSize / 4;
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
      // A file of maxLblk blocks needs about maxLblk / apb indirect blocks; more means garbage pointers.
      if (++visited > maxLblk / apb + 3 * apb + 3)
        throw new Ext4Error('CORRUPT', `inode ${ino}: indirect block map larger than the file`, { inode: ino });
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
    return runs;
  }

  private checkReadable(ino: number, i: Inode): void {
    if (i.flags & FL_ENCRYPT)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is encrypted (encrypt): its contents cannot be read`, {
        inode: ino,
      });
    if (i.flags & FL_COMPR)
      throw new Ext4Error('UNSUPPORTED_FEATURE', `inode ${ino} is compressed (compression)`, { inode: ino });
  }

  /** Inline data: i_block then the system.data attribute. */
  private inlineData(ino: number, i: Inode): Uint8Array {
    const x = this.rawXattrs(ino).find((e) => e.index === 7 && Buffer.from(e.name).toString('latin1') === 'data');
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
    const a = u32(i.block, 0);
    if (a) return [(a >> 8) & 0xff, a & 0xff];
    const b = u32(i.block, 4);
    return [(b & 0xfff00) >> 8, (b & 0xff) | ((b >> 12) & 0xfff00)];
  }

  /** Directory entries other than . and .., in on-disk order. */
  readDir(ino: number, i = this.inode(ino)): DirEntryInfo[] {
    if ((i.mode & S_IFMT) !== S_IFDIR)
      throw new Ext4Error('NOT_FOUND', `inode ${ino} is not a directory`, { inode: ino });
    this.checkReadable(ino, i);
    const out: DirEntryInfo[] = [];
    const hasFt = (this.sb.s_feature_incompat & INCOMPAT.filetype) !== 0;
    const parse = (b: Uint8Array, start: number, end: number, blockNo?: number) => {
      let off = start;
      while (off < end) {
        if (off + 8 > end)
          throw new Ext4Error('CORRUPT', `directory ${ino}: entry header crosses the block end`, {
            inode: ino,
            block: blockNo,
          });
        const rec = decodeRecLen(u16(b, off + 4), this.blockSize);
        const nameLen = b[off + 6]!;
        if (rec < 8 || rec % 4 || off + rec > end || (u32(b, off) && 8 + nameLen > rec))
          throw new Ext4Error('CORRUPT', `directory ${ino}: bad entry length ${rec} at offset ${off - start}`, {
            inode: ino,
            block: blockNo,
            offset: off,
          });
        const child = u32(b, off);
        const isTail = child === 0 && rec === DIR_TAIL_SIZE && nameLen === 0 && b[off + 7] === FT_DIR_CSUM;
        if (child && !isTail) {
          const name = b.slice(off + 8, off + 8 + nameLen);
          const dot = nameLen === 1 && name[0] === 0x2e;
          const dotdot = nameLen === 2 && name[0] === 0x2e && name[1] === 0x2e;
          if (!dot && !dotdot) out.push({ name, inode: child, fileType: hasFt ? b[off + 7]! : 0 });
        }
        off += rec;
      }
    };
    if (i.flags & FL_INLINE_DATA) {
      const d = this.inlineData(ino, i);
      parse(d, 4, 60);
      if (d.length > 60) parse(d, 60, d.length);
      return out;
    }
    if (i.size > MAX_DIR_BYTES)
      throw new Ext4Error('CORRUPT', `directory ${ino} claims ${i.size} bytes`, { inode: ino });
    const bs = this.blockSize;
    const seed = this.inodeSeed(ino, i.generation);
    for (const r of this.blockRuns(ino, i)) {
      if (r.uninit) continue;
      for (let k = 0; k < r.len; k++) {
        if ((r.lblk + k) * bs >= i.size) break;
        const b = this.readBlocks(r.pblk + k);
        const tail = bs - DIR_TAIL_SIZE;
        // htree interior blocks (the dx_root at logical block 0, dx_nodes that start with an empty entry
        // spanning the block) keep a dx_tail, not a dirent tail.
        const isRoot = (i.flags & FL_INDEX) !== 0 && r.lblk + k === 0;
        const dxBlock = isRoot || (u32(b, 0) === 0 && decodeRecLen(u16(b, 4), bs) === bs);
        if (dxBlock && this.csum && this.verify && i.flags & FL_INDEX)
          this.verifyDxTail(ino, b, isRoot, seed, r.pblk + k);
        const hasTail =
          !dxBlock &&
          this.csum &&
          u32(b, tail) === 0 &&
          u16(b, tail + 4) === DIR_TAIL_SIZE &&
          b[tail + 7] === FT_DIR_CSUM;
        if (hasTail && this.verify && crc32c(seed, b, 0, tail) !== u32(b, tail + 8))
          throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: block ${r.pblk + k} checksum mismatch`, {
            inode: ino,
            block: r.pblk + k,
          });
        parse(b, 0, bs, r.pblk + k);
      }
    }
    return out;
  }

  /**
   * htree interior blocks carry a dx_tail after `limit` entries: crc32c(inode seed, the header and used
   * entries, the tail's reserved word, a zero checksum). Blocks without room for the tail have none.
   */
  private verifyDxTail(ino: number, b: Uint8Array, isRoot: boolean, seed: number, block: number): void {
    const countOffset = isRoot ? 0x18 + b[0x1d]! : 8;
    if (countOffset + 4 > b.length)
      throw new Ext4Error('CORRUPT', `directory ${ino}: bad htree root`, { inode: ino, block });
    const limit = u16(b, countOffset);
    const count = u16(b, countOffset + 2);
    const tail = countOffset + limit * 8;
    if (count > limit || tail + 8 > b.length) return;
    let c = crc32c(seed, b, 0, countOffset + count * 8);
    c = crc32c(c, b, tail, tail + 4);
    c = crc32c(c, ZERO4, 0, 4);
    if (c !== u32(b, tail + 4))
      throw new Ext4Error('BAD_CHECKSUM', `directory ${ino}: htree block ${block} checksum mismatch`, {
        inode: ino,
        block,
      });
  }

  /** In-inode attributes then block attributes, as stored (index, name suffix, value). */
  rawXattrs(ino: number, raw = this.inodeBytes(ino)): { index: number; name: Uint8Array; value: Uint8Array }[] {
    const out: { index: number; name: Uint8Array; value: Uint8Array }[] = [];
    const extra = this.inodeSize > GOOD_OLD_INODE_SIZE ? u16(raw, 128) : 0;
    const ibody = GOOD_OLD_INODE_SIZE + extra;
    const parseEntries = (b: Uint8Array, first: number, end: number, valueBase: number, valueEnd: number) => {
      let e = first;
      let n = 0;
      while (e + 4 <= end && u32(b, e) !== 0) {
        if (e + 16 > end || ++n > 10_000)
          throw new Ext4Error('CORRUPT', `inode ${ino}: extended attribute entries overrun`, { inode: ino });
        const nameLen = b[e]!;
        const index = b[e + 1]!;
        const voff = u16(b, e + 2);
        const vino = u32(b, e + 4);
        const vsize = u32(b, e + 8);
        if (e + 16 + nameLen > end)
          throw new Ext4Error('CORRUPT', `inode ${ino}: extended attribute name overruns`, { inode: ino });
        const name = b.slice(e + 16, e + 16 + nameLen);
        let value: Uint8Array;
        if (vino) {
          if (vsize > 64 << 20)
            throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value of ${vsize} bytes`, { inode: ino });
          if (vino === ino)
            throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value inode refers to itself`, { inode: ino });
          value = this.readFileBytes(vino, 64 << 20).slice(0, vsize);
        } else {
          if (valueBase + voff + vsize > valueEnd)
            throw new Ext4Error('CORRUPT', `inode ${ino}: attribute value outside its area`, { inode: ino });
          value = b.slice(valueBase + voff, valueBase + voff + vsize);
        }
        out.push({ index, name, value });
        e += (16 + nameLen + 3) & ~3;
      }
    };
    if (ibody + 4 <= this.inodeSize && u32(raw, ibody) === XATTR_MAGIC)
      parseEntries(raw, ibody + 4, this.inodeSize, ibody + 4, this.inodeSize);
    const i = decodeInode(raw, 0, this.inodeSize);
    if (i.fileAcl) {
      const b = this.readBlocks(i.fileAcl);
      if (u32(b, 0) !== XATTR_MAGIC || u32(b, 8) !== 1)
        throw new Ext4Error('CORRUPT', `inode ${ino}: bad extended attribute block ${i.fileAcl}`, {
          inode: ino,
          block: i.fileAcl,
        });
      if (this.verify && this.csum) {
        const nr = new Uint8Array(8);
        nr.set([i.fileAcl & 0xff, (i.fileAcl >>> 8) & 0xff, (i.fileAcl >>> 16) & 0xff, (i.fileAcl >>> 24) & 0xff]);
        const hi = Math.floor(i.fileAcl / 2 ** 32);
        nr.set([hi & 0xff, (hi >>> 8) & 0xff], 4);
        const copy = b.slice();
        copy.fill(0, 16, 20);
        if (crc32c(crc32c(this.csumSeed, nr), copy) !== u32(b, 16))
          throw new Ext4Error('BAD_CHECKSUM', `inode ${ino}: extended attribute block ${i.fileAcl} checksum mismatch`, {
            inode: ino,
            block: i.fileAcl,
          });
      }
      parseEntries(b, 32, this.blockSize, 0, this.blockSize);
    }
    return out;
  }

  /** Extended attributes with full names, ACLs in the VFS format; inline-data storage is hidden. */
  xattrs(ino: number): XattrEntry[] {
    const PREFIX: Record<number, string> = {
      1: 'user.',
      2: 'system.posix_acl_access',
      3: 'system.posix_acl_default',
      4: 'trusted.',
      6: 'security.',
      7: 'system.',
      8: 'system.richacl',
    };
    const out: XattrEntry[] = [];
    for (const x of this.rawXattrs(ino)) {
      const suffix = Buffer.from(x.name).toString('utf8');
      if (x.index === 7 && suffix === 'data') continue;
      const prefix = PREFIX[x.index];
      if (prefix === undefined) continue;
      const name = x.index === 2 || x.index === 3 || x.index === 8 ? prefix : prefix + suffix;
      out.push({ name, value: x.index === 2 || x.index === 3 ? aclFromDisk(x.value) : x.value });
    }
    return out;
  }

  /**
   * Resolves an absolute path inside the image; returns the inode number. Symlinks in the middle of the
   * path are followed inside the image (absolute targets start at the image's root, so a path can never
   * leave it); the last component is followed only with `followLast`. At most 40 links are followed.
   */
  lookup(path: string, opts: { followLast?: boolean } = {}): number {
    let budget = 40;
    const resolve = (base: number[], p: string, followLast: boolean): number[] => {
      // `stack` is the chain of directory inodes from the root; its last element is the current inode.
      let stack = p.startsWith('/') ? [2] : [...base];
      const parts = p.split('/').filter((x) => x !== '' && x !== '.');
      for (let k = 0; k < parts.length; k++) {
        const part = parts[k]!;
        if (part === '..') {
          if (stack.length > 1) stack.pop();
          continue;
        }
        const dir = stack[stack.length - 1]!;
        const i = this.inode(dir);
        if ((i.mode & S_IFMT) !== S_IFDIR)
          throw new Ext4Error('NOT_FOUND', `${path}: a component is not a directory`, { path });
        const want = Buffer.from(part, 'utf8');
        const hit = this.readDir(dir, i).find(
          (e) => e.name.length === want.length && Buffer.compare(Buffer.from(e.name), want) === 0,
        );
        if (!hit) throw new Ext4Error('NOT_FOUND', `${path}: no such file or directory`, { path });
        const last = k === parts.length - 1;
        const child = this.inode(hit.inode);
        if ((child.mode & S_IFMT) === S_IFLNK && (!last || followLast)) {
          if (--budget < 0) throw new Ext4Error('CORRUPT', `${path}: too many levels of symbolic links`, { path });
          const target = Buffer.from(this.readLink(hit.inode, child)).toString('utf8');
          stack = resolve(stack, target, true);
          continue;
        }
        stack = [...stack, hit.inode];
      }
      return stack;
    };
    const chain = resolve([2], path.startsWith('/') ? path : '/' + path, opts.followLast ?? false);
    return chain[chain.length - 1]!;
  }
}

const ZERO4 = new Uint8Array(4);

export { join64 };
